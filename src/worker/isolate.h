// Isolation for command tasks: a fresh temporary directory (--workdir temp) or a fresh git
// worktree (--worktree REPO --ref REF) per attempt, removed afterwards.
//
// The set-up and clean-up run in the task's own process (`rota __isolate`, the leader of the
// task's process group), so that they count against its timeout and never block the worker's
// heartbeats; the command itself runs as that process's child.
#pragma once

#include <string>
#include <vector>

#include "core/task.h"

namespace rota {

// The argv that runs `command` under its isolation: rota's own executable with `__isolate`.
// `worktrees_dir` is where worktrees go ($ROTA_HOME/worktrees).
std::vector<std::string> isolated_argv(const Command& command, const std::string& self_exe,
                                       const std::string& worktrees_dir, int64_t task_id);

// `rota __isolate`: prepares the directory, runs `argv` in it (ROTA_WORKDIR names it), cleans
// up, and exits as the command did (the same status, or the same signal). A worktree left by
// an attempt that could not clean up (its worker was killed) is removed and pruned first.
int run_isolated(const std::string& isolation_json, const std::string& worktree_path,
                 const std::vector<std::string>& argv);

}  // namespace rota
