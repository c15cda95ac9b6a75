// rota stats: how the work went over a window, per queue, label, worker or command.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/output.h"

namespace rota::cli {
namespace {

using nlohmann::json;

struct StatsFlags {
  std::string since = "1h";
  std::string by = "queue";
  bool reset = false;
};

std::string ms(const json& v) { return fmt::format("{:.0f}ms", v.get<double>()); }

int stats(const Globals& g, const StatsFlags& f) {
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  if (f.reset) {
    auto r = client.call("POST", "/v1/stats/reset");
    if (!r) return report(r.error());
    fmt::print(stderr, "stats reset at {}\n", (*r)["reset_at"].get<std::string>());
    return 0;
  }
  auto r = client.call("GET", fmt::format("/v1/stats?since={}&by={}", f.since, f.by));
  if (!r) return report(r.error());
  if (g.json) {
    fmt::print("{}\n", r->dump(2));
    return 0;
  }
  fmt::print("from {} to {}\n\n", (*r)["from"].get<std::string>(), (*r)["to"].get<std::string>());
  std::vector<std::vector<std::string>> rows;
  for (const json& grp : (*r)["groups"]) {
    const json& rate = grp["success_rate"];
    rows.push_back({grp["key"], cell(grp["completed"]), cell(grp["failed"]),
                    rate.is_null() ? "-" : fmt::format("{:.1f}%", rate.get<double>() * 100),
                    cell(grp["retries"]), ms(grp["duration_ms"]["p50"]),
                    ms(grp["duration_ms"]["p95"]),
                    fmt::format("{}ms", grp["duration_ms"]["max"].get<int64_t>()),
                    ms(grp["wait_ms"]["mean"]), ms(grp["wait_ms"]["p95"]),
                    fmt::format("{:.1f}/min", grp["throughput_per_min"].get<double>())});
  }
  std::string by = f.by;
  for (char& c : by) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  print_table({by, "DONE", "FAILED", "SUCCESS", "RETRIES", "P50", "P95", "MAX", "WAIT", "WAIT P95",
               "THROUGHPUT"},
              rows);
  fmt::print("\n");
  std::vector<std::vector<std::string>> workers;
  for (const json& w : (*r)["workers"]) {
    workers.push_back({cell(w["worker"]), cell(w["tasks_done"]), cell(w["tasks_failed"]),
                       fmt::format("{:.0f}%", w["busy_share"].get<double>() * 100),
                       w.contains("restarts") ? cell(w["restarts"]) : "-"});
  }
  print_table({"WORKER", "DONE", "FAILED", "BUSY", "RESTARTS"}, workers);
  return 0;
}

int analyze(const Globals& g) {
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  auto r = client.call("GET", "/v1/analyze");
  if (!r) return report(r.error());
  if (g.json) {
    fmt::print("{}\n", r->dump(2));
    return 0;
  }
  fmt::print("{:.1f} tasks/min arrive, {:.1f}/min finish (last 15 min); {} waiting\n\n",
             (*r)["arrivals_per_min"].get<double>(), (*r)["completions_per_min"].get<double>(),
             (*r)["backlog"].get<int64_t>());
  if ((*r)["findings"].empty()) fmt::print("nothing to report\n");
  for (const json& f : (*r)["findings"]) {
    fmt::print("• {}\n  → {}\n", f["message"].get<std::string>(), f["action"].get<std::string>());
  }
  return 0;
}

}  // namespace

void add_stats_command(CLI::App& app, Globals& g, Action& action) {
  auto f = std::make_shared<StatsFlags>();
  CLI::App* c =
      app.add_subcommand("stats", "Completed, failed, retries, durations, waits, throughput");
  c->add_option("--since", f->since, "The window (default 1h)");
  c->add_option("--by", f->by, "queue (default), label, worker or command");
  c->add_flag("--reset", f->reset, "Count from now on (the task history stays)");
  add_json_flag(c, g);
  c->callback([&g, &action, f] { action = [&g, f] { return stats(g, *f); }; });

  CLI::App* a = app.add_subcommand("analyze", "Findings from the numbers, each with what to do");
  add_json_flag(a, g);
  a->callback([&g, &action] { action = [&g] { return analyze(g); }; });
}

}  // namespace rota::cli
