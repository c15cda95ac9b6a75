#include "cli/cli.h"

#include <fmt/format.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>

#include "cli/command.h"
#include "core/home.h"

namespace rota {
namespace cli {

int report(const Error& error) {
  fmt::print(stderr, "rota: {}\n", error.message);
  return exit_code(error.code);
}

Client make_client(const Globals& g) { return Client(home_at(resolve_home_dir(g.home))); }

void add_json_flag(CLI::App* command, Globals& g) {
  command->add_flag("--json", g.json, "Print JSON (field names are stable; see docs/api.md)");
}

Result<std::vector<int64_t>> parse_task_ids(const std::vector<std::string>& items,
                                            const char* flag) {
  std::vector<int64_t> ids;
  for (const std::string& item : items) {
    size_t start = 0;
    while (start <= item.size()) {
      size_t end = item.find(',', start);
      if (end == std::string::npos) end = item.size();
      std::string_view part(item.data() + start, end - start);
      int64_t id = 0;
      auto [p, ec] = std::from_chars(part.data(), part.data() + part.size(), id);
      if (part.empty() || ec != std::errc() || p != part.data() + part.size() || id <= 0) {
        return make_error(Code::kInvalidArgument,
                          fmt::format("{}: \"{}\" is not a task id", flag, part), flag);
      }
      ids.push_back(id);
      start = end + 1;
    }
  }
  return ids;
}

bool stdout_is_tty() { return ::isatty(1) == 1; }
bool stderr_is_tty() { return ::isatty(2) == 1; }
bool use_color() {
  const char* no_color = std::getenv("NO_COLOR");
  return stdout_is_tty() && !(no_color && *no_color);
}

}  // namespace cli

int run_cli(int argc, char** argv) {
  CLI::App app{"rota: a durable task queue with a self-healing worker pool", "rota"};
  app.require_subcommand(1);
  app.fallthrough();  // --home may come after the command too
  app.set_version_flag("--version", ROTA_VERSION);
  cli::Globals globals;
  cli::Action action;
  app.add_option("--home", globals.home,
                 "The instance's directory (default: $ROTA_HOME, else $XDG_DATA_HOME/rota)")
      ->envname("ROTA_HOME");
  cli::add_add_command(app, globals, action);
  cli::add_task_commands(app, globals, action);
  cli::add_schedule_commands(app, globals, action);
  cli::add_results_command(app, globals, action);
  cli::add_watch_commands(app, globals, action);
  cli::add_pool_commands(app, globals, action);
  cli::add_admin_commands(app, globals, action);
  cli::add_health_commands(app, globals, action);
  cli::add_export_command(app, globals, action);
  cli::add_stats_command(app, globals, action);
  cli::add_top_command(app, globals, action);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    fmt::print(stderr, "rota: {} (see rota --help)\n", what);
    return 2;
  }
  return action ? action() : 2;
}

}  // namespace rota
