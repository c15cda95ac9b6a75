// rota watch: queue a task when files under a directory change.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/output.h"
#include "cli/task_options.h"
#include "core/duration.h"

namespace rota::cli {
namespace {

using nlohmann::json;

struct WatchFlags {
  std::string name;
  std::string path;
  std::string glob;
  std::string debounce;
  std::string rescan;
  TaskFlags task;
};

int watch_add(const Globals& g, const WatchFlags& f) {
  json def = {{"name", f.name}};
  std::string path = f.path;
  if (!path.empty() && path.front() != '/') path = current_dir() + "/" + path;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  def["path"] = path;
  if (!f.glob.empty()) def["glob"] = f.glob;
  for (auto [flag, value, key] : {std::tuple{"--debounce", &f.debounce, "debounce_ms"},
                                  std::tuple{"--rescan", &f.rescan, "rescan_ms"}}) {
    if (value->empty()) continue;
    auto ms = parse_duration_ms(*value, flag);
    if (!ms) return report(ms.error());
    def[key] = *ms;
  }
  auto task = task_json(f.task);
  if (!task) return report(task.error());
  def["task"] = *task;
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  auto r = client.call("POST", "/v1/watches", def);
  if (!r) return report(r.error());
  if (g.json) {
    fmt::print("{}\n", r->dump(2));
  } else {
    fmt::print("{}: watching {}{}\n", f.name, path, f.glob.empty() ? "" : " for " + f.glob);
  }
  return 0;
}

int watch_list(const Globals& g) {
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  auto r = client.call("GET", "/v1/watches");
  if (!r) return report(r.error());
  if (g.json) {
    fmt::print("{}\n", r->dump(2));
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const json& w : *r) {
    rows.push_back({w["name"], w["path"], w.value("glob", std::string("*")),
                    format_duration_ms(w["debounce_ms"]), std::to_string(w["files"].get<int64_t>()),
                    std::to_string(w["fired"].get<int64_t>()),
                    command_line(json{{"command", w["task"]}})});
  }
  print_table({"NAME", "PATH", "GLOB", "DEBOUNCE", "FILES", "FIRED", "COMMAND"}, rows);
  return 0;
}

int watch_remove(const Globals& g, const std::string& name) {
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  auto r = client.call("DELETE", "/v1/watches/" + name);
  if (!r) return report(r.error());
  return 0;
}

}  // namespace

void add_watch_commands(CLI::App& app, Globals& g, Action& action) {
  CLI::App* group = app.add_subcommand("watch", "Queue a task when files change");
  group->require_subcommand(1);
  {
    auto f = std::make_shared<WatchFlags>();
    CLI::App* c = group->add_subcommand(
        "add", "Add a watch: rota watch add NAME --path DIR [--glob '*.py'] -- CMD ARGS...");
    c->add_option("name", f->name, "The watch's name")->required();
    c->add_option("--path", f->path, "The directory to watch, with its subdirectories")->required();
    c->add_option("--glob", f->glob, "Only files matching this pattern ('*.py', 'src/*.c')");
    c->add_option("--debounce", f->debounce,
                  "Queue once the changes have paused this long (default 500ms)");
    c->add_option("--rescan", f->rescan,
                  "Also compare the tree with its last scan this often (default 30s)");
    add_task_flags(c, f->task);
    add_json_flag(c, g);
    c->callback([&g, &action, f] { action = [&g, f] { return watch_add(g, *f); }; });
  }
  {
    CLI::App* c = group->add_subcommand("list", "List watches");
    add_json_flag(c, g);
    c->callback([&g, &action] { action = [&g] { return watch_list(g); }; });
  }
  {
    auto name = std::make_shared<std::string>();
    CLI::App* c = group->add_subcommand("remove", "Remove a watch (its tasks stay)");
    c->add_option("name", *name, "The watch's name")->required();
    c->callback([&g, &action, name] { action = [&g, name] { return watch_remove(g, *name); }; });
  }
}

}  // namespace rota::cli
