// The task options that `rota add` and `rota schedule add` share, and how they become the API's
// task JSON.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"

namespace rota::cli {

struct TaskFlags {
  std::vector<std::string> command;
  std::string shell;
  std::string queue = "default";
  int priority = 0;
  int retries = 0;
  std::string backoff;
  std::string timeout;
  std::string slow_after;
  std::string delay;
  std::vector<std::string> after;
  std::vector<std::string> labels;
  std::vector<std::string> env;
  std::string cwd;
  std::string unique;
  std::string unique_for;
  std::string workdir;   // "temp"
  std::string worktree;  // a git repository
  std::string ref;
  bool keep_failed = false;
  std::vector<std::string> http;  // METHOD URL
  std::vector<std::string> headers;
  std::string data;
};

// Adds the flags every task takes (the command after --, --shell, --queue, ...).
void add_task_flags(CLI::App* command, TaskFlags& flags);

// The API's task JSON for the flags, without the command; every value checked.
Result<nlohmann::json> task_options_json(const TaskFlags& flags);
// The same with the command (argv or shell), checked as far as can be done without a daemon.
Result<nlohmann::json> task_json(const TaskFlags& flags);

// Checks locally what needs no daemon, so that bad input never starts one. With
// `stdin_commands`, the commands come later, one per line.
Status check_task_locally(const TaskFlags& flags, const nlohmann::json& options,
                          bool stdin_commands = false);

std::string current_dir();

}  // namespace rota::cli
