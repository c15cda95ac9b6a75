// rota schedule: recurring tasks (every N or cron), and sweeps that take the next item of a
// list at each firing.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/output.h"
#include "cli/task_options.h"
#include "core/duration.h"

namespace rota::cli {
namespace {

using nlohmann::json;

struct ScheduleFlags {
  std::string name;
  std::string every;
  std::string cron;
  std::string tz;
  std::string jitter;
  std::string overlap;
  std::string catch_up;
  std::string over;
  int batch = 1;
  TaskFlags task;
};

int schedule_add(const Globals& g, const ScheduleFlags& f) {
  if (f.every.empty() == f.cron.empty()) {
    return report({Code::kInvalidArgument, "give either --every DUR or --cron 'EXPR'", "--every"});
  }
  json def = {{"name", f.name}};
  if (!f.every.empty()) {
    auto ms = parse_duration_ms(f.every, "--every");
    if (!ms) return report(ms.error());
    def["every_ms"] = *ms;
  }
  if (!f.jitter.empty()) {
    auto ms = parse_duration_ms(f.jitter, "--jitter");
    if (!ms) return report(ms.error());
    def["jitter_ms"] = *ms;
  }
  if (!f.cron.empty()) def["cron"] = f.cron;
  if (!f.tz.empty()) def["tz"] = f.tz;
  if (!f.overlap.empty()) def["overlap"] = f.overlap;
  if (!f.catch_up.empty()) def["catch_up"] = f.catch_up;
  if (!f.over.empty()) {
    def["over"] = f.over;
    def["batch"] = f.batch;
  }
  auto task = task_json(f.task);
  if (!task) return report(task.error());
  def["task"] = *task;
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  auto r = client.call("POST", "/v1/schedules", def);
  if (!r) return report(r.error());
  if (g.json) {
    fmt::print("{}\n", r->dump(2));
  } else {
    fmt::print("{}: next firing at {}\n", f.name, cell((*r)["next_fire"]));
  }
  return 0;
}

std::string when(const json& s) {
  if (s.contains("every")) return "every " + s["every"].get<std::string>();
  std::string w = "cron '" + s["cron"].get<std::string>() + "'";
  if (s.contains("tz")) w += " " + s["tz"].get<std::string>();
  return w;
}

int schedule_list(const Globals& g) {
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  auto r = client.call("GET", "/v1/schedules");
  if (!r) return report(r.error());
  if (g.json) {
    fmt::print("{}\n", r->dump(2));
    return 0;
  }
  std::vector<std::vector<std::string>> rows;
  for (const json& s : *r) {
    std::string sweep = s.contains("over")
                            ? fmt::format("{}/{} (cycle {})", s["cursor"].get<int64_t>(),
                                          s["item_count"].get<int64_t>(), s["cycle"].get<int64_t>())
                            : "-";
    rows.push_back({s["name"], when(s), s["paused"].get<bool>() ? "paused" : "active",
                    cell(s["next_fire"]), std::to_string(s["unfinished"].get<int64_t>()), sweep});
  }
  print_table({"NAME", "WHEN", "STATE", "NEXT", "UNFINISHED", "SWEEP"}, rows);
  return 0;
}

int schedule_show(const Globals& g, const std::string& name) {
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  auto r = client.call("GET", "/v1/schedules/" + name);
  if (!r) return report(r.error());
  const json& s = *r;
  if (g.json) {
    fmt::print("{}\n", s.dump(2));
    return 0;
  }
  fmt::print("schedule    {}{}\n", name, s["paused"].get<bool>() ? " (paused)" : "");
  fmt::print("when        {}, overlap {}, catch-up {}{}\n", when(s),
             s["overlap"].get<std::string>(), s["catch_up"].get<std::string>(),
             s.contains("jitter_ms") ? ", jitter " + format_duration_ms(s["jitter_ms"]) : "");
  fmt::print("command     {}\n", command_line(json{{"command", s["task"]}}));
  fmt::print("next fire   {}\n", cell(s["next_fire"]));
  if (!s["success_rate"].is_null()) {
    fmt::print("success     {:.1f}% of the last {} finished runs\n",
               100 * s["success_rate"].get<double>(), s["finished_runs"].get<int64_t>());
  }
  if (s.contains("over")) {
    int64_t n = s["item_count"], cursor = s["cursor"];
    fmt::print("sweep       {} items from {}, {} per firing; cycle {}, item {} of {} next\n", n,
               s["over"].get<std::string>(), s["batch"].get<int64_t>(), s["cycle"].get<int64_t>(),
               cursor >= n ? 1 : cursor + 1, n);
  }
  if (!s["recent_runs"].empty()) {
    fmt::print("\nlast runs\n");
    std::vector<std::vector<std::string>> rows;
    for (const json& run : s["recent_runs"]) {
      rows.push_back({std::to_string(run["task"].get<int64_t>()), colored_state(run["state"]),
                      run["fired_at"], age(run.value("duration_ms", json(nullptr))),
                      run.value("item", std::string("-"))});
    }
    print_table({"TASK", "STATE", "FIRED", "DURATION", "ITEM"}, rows);
  }
  if (s.contains("items") && !s["items"].empty()) {
    fmt::print("\nitems (last run of each)\n");
    std::vector<std::vector<std::string>> rows;
    for (const json& it : s["items"]) {
      rows.push_back({it["item"], std::to_string(it["task"].get<int64_t>()),
                      colored_state(it["state"]), age(it.value("duration_ms", json(nullptr)))});
    }
    print_table({"ITEM", "TASK", "STATE", "DURATION"}, rows);
  }
  return 0;
}

int schedule_action(const Globals& g, const std::string& name, const std::string& verb) {
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  auto r = verb == "remove" ? client.call("DELETE", "/v1/schedules/" + name)
                            : client.call("POST", fmt::format("/v1/schedules/{}/{}", name, verb));
  if (!r) return report(r.error());
  if (g.json) {
    fmt::print("{}\n", r->dump(2));
  } else if (verb == "run") {
    for (const auto& id : (*r)["ids"]) fmt::print("{}\n", id.get<int64_t>());
  }
  return 0;
}

}  // namespace

void add_schedule_commands(CLI::App& app, Globals& g, Action& action) {
  CLI::App* group = app.add_subcommand("schedule", "Recurring tasks: every N, cron, sweeps");
  group->require_subcommand(1);
  {
    auto f = std::make_shared<ScheduleFlags>();
    CLI::App* c = group->add_subcommand(
        "add", "Add a schedule: rota schedule add NAME --every 15m [options] -- CMD ARGS...");
    c->add_option("name", f->name, "The schedule's name")->required();
    add_task_flags(c, f->task);
    c->add_option("--every", f->every, "Fire every DUR (90s, 15m, 1h)");
    c->add_option("--cron", f->cron, "Fire on a cron expression: '*/15 9-17 * * mon-fri'");
    c->add_option("--tz", f->tz, "Time zone for --cron (default: the machine's)");
    c->add_option("--jitter", f->jitter, "Delay each firing by a random 0..DUR");
    c->add_option("--overlap", f->overlap,
                  "skip (default): no firing while the last one runs; queue: after it; allow");
    c->add_option("--catch-up", f->catch_up,
                  "After downtime fire none, one (default) or all of the missed firings");
    c->add_option("--over", f->over,
                  "Sweep: each firing takes the next item of a glob ('crates/*') or @FILE");
    c->add_option("--batch", f->batch, "Sweep: items per firing (default 1)");
    add_json_flag(c, g);
    c->callback([&g, &action, f] { action = [&g, f] { return schedule_add(g, *f); }; });
  }
  {
    CLI::App* c = group->add_subcommand("list", "List schedules");
    add_json_flag(c, g);
    c->callback([&g, &action] { action = [&g] { return schedule_list(g); }; });
  }
  {
    auto name = std::make_shared<std::string>();
    CLI::App* c = group->add_subcommand(
        "show", "A schedule: next firing, last runs, success rate, sweep progress");
    c->add_option("name", *name, "The schedule's name")->required();
    add_json_flag(c, g);
    c->callback([&g, &action, name] { action = [&g, name] { return schedule_show(g, *name); }; });
  }
  for (auto [verb, help] : {std::pair{"pause", "Stop firing until resumed"},
                            std::pair{"resume", "Fire again from the next slot on"},
                            std::pair{"remove", "Remove a schedule (its tasks stay)"},
                            std::pair{"run", "Fire once now"}}) {
    auto name = std::make_shared<std::string>();
    CLI::App* c = group->add_subcommand(verb, help);
    c->add_option("name", *name, "The schedule's name")->required();
    add_json_flag(c, g);
    c->callback([&g, &action, name, verb = std::string(verb)] {
      action = [&g, name, verb] { return schedule_action(g, *name, verb); };
    });
  }
}

}  // namespace rota::cli
