// What every CLI command file shares: the global flags and how errors leave the program.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "cli/client.h"
#include "core/error.h"

namespace rota::cli {

struct Globals {
  std::string home;
  bool json = false;
};

// Each command group adds its subcommands to `app`; the chosen one sets `action`.
using Action = std::function<int()>;
void add_task_commands(CLI::App& app, Globals& globals, Action& action);
void add_add_command(CLI::App& app, Globals& globals, Action& action);
void add_admin_commands(CLI::App& app, Globals& globals, Action& action);
void add_health_commands(CLI::App& app, Globals& globals, Action& action);
void add_export_command(CLI::App& app, Globals& globals, Action& action);
void add_stats_command(CLI::App& app, Globals& globals, Action& action);
void add_top_command(CLI::App& app, Globals& globals, Action& action);
void add_schedule_commands(CLI::App& app, Globals& globals, Action& action);
void add_results_command(CLI::App& app, Globals& globals, Action& action);
void add_watch_commands(CLI::App& app, Globals& globals, Action& action);
void add_pool_commands(CLI::App& app, Globals& globals, Action& action);

// Prints "rota: <message>" on stderr and returns the exit code for the error's code.
int report(const Error& error);
Client make_client(const Globals& globals);
// Adds `--json` to a read command.
void add_json_flag(CLI::App* command, Globals& globals);

// Task ids as given on the command line: each item one id or a comma-separated list.
Result<std::vector<int64_t>> parse_task_ids(const std::vector<std::string>& items,
                                            const char* flag);

bool stdout_is_tty();
bool stderr_is_tty();
bool use_color();

}  // namespace rota::cli
