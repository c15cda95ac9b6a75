// Starting a command task: posix_spawn in a new process group, output into a pipe.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "core/task.h"

namespace rota {

struct Spawned {
  pid_t pid = -1;   // also the process group id
  int pidfd = -1;   // readable once the process has exited
  int output = -1;  // read end of the pipe that is the task's stdout and stderr
};

// Starts `command` (argv looked up in the command's own PATH, or /bin/sh -c for shell) in
// `command.cwd`, in a new process group, with exactly `command.env`, default signal
// dispositions and stdin from /dev/null, plus ROTA_TASK_ID, ROTA_ATTEMPT and
// ROTA_ATTEMPT_TOKEN. Only stdio is inherited. The caller owns the returned fds.
Result<Spawned> spawn_command(const Command& command, int64_t task_id = 0, int attempt = 0,
                              const std::string& token = {}, const std::string& result_path = {});

// Kills (SIGKILL) the process group of every process of these attempts, found by the
// ROTA_ATTEMPT_TOKEN in its environment (a token is random, so no other attempt or home
// matches), in one look at /proc. For attempts whose worker died before reporting the task's
// process group, or did not come back after a daemon restart.
int kill_attempt_processes(const std::vector<std::string>& tokens);

// Finds `name` in the PATH of `env` (as execvp would); a name with a slash is returned as is.
std::string resolve_program(const std::string& name, const Env& env, const std::string& cwd);

}  // namespace rota
