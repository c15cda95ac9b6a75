// rota health, doctor, events, restart: what the pool is doing, and whether it is well.
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/output.h"
#include "core/duration.h"
#include "core/home.h"
#include "store/sqlite_db.h"
#include "store/sqlite_store.h"

namespace rota::cli {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr int64_t kLagLimitMs = 250;
constexpr int64_t kMinFreeBytes = 512LL << 20;
constexpr int64_t kLogWarnBytes = 10LL << 30;

std::string bytes(int64_t n) {
  if (n < 1024) return fmt::format("{} B", n);
  if (n < (1 << 20)) return fmt::format("{:.1f} KiB", n / 1024.0);
  if (n < (1LL << 30)) return fmt::format("{:.1f} MiB", n / 1048576.0);
  return fmt::format("{:.1f} GiB", n / 1073741824.0);
}

// ---- health ----------------------------------------------------------------------------

int health(const Globals& g) {
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  auto r = client.call("GET", "/v1/health");
  if (!r) return report(r.error());
  const json& h = *r;
  bool healthy = h["status"] == "healthy";
  if (g.json) {
    fmt::print("{}\n", h.dump(2));
    return healthy ? 0 : 1;
  }
  fmt::print("rota: {}\n\n", h["status"].get<std::string>());
  fmt::print("daemon   pid {}, up {}, event-loop lag {} ms\n", h["pid"].get<int>(),
             age(h["uptime_ms"]), h["loop_lag_ms"].get<int64_t>());
  const json& s = h["store"];
  fmt::print("store    {} ({}), last commit {} us{}\n", s["path"].get<std::string>(),
             bytes(s["bytes"]), s["last_commit_us"].get<int64_t>(),
             s["ok"].get<bool>() ? "" : "  FAILED: " + s.value("error", ""));
  std::string states;
  for (const auto& [state, n] : h["pool"]["workers_by_state"].items()) {
    states += fmt::format("{}{} {}", states.empty() ? "" : ", ", n.get<int>(), state);
  }
  fmt::print("pool     commands: {} slots ({}){}\n\n", h["pool"]["size"].get<int>(), states,
             h["pool"]["state"] == "degraded" ? "  DEGRADED" : "");
  print_workers(h["workers"]);
  fmt::print("\n");
  std::vector<std::vector<std::string>> queues;
  for (const json& q : h["queues"]) {
    queues.push_back({cell(q["name"]), q["paused"].get<bool>() ? "paused" : "active",
                      cell(q["ready"]), cell(q["running"]), cell(q["waiting"])});
  }
  print_table({"QUEUE", "STATE", "READY", "RUNNING", "WAITING"}, queues);
  const json& alerts = h["alerts_last_hour"];
  fmt::print("\nalerts in the last hour: {}\n", alerts.size());
  size_t from = alerts.size() > 10 ? alerts.size() - 10 : 0;
  for (size_t i = from; i < alerts.size(); ++i) {
    fmt::print("  {}  {}: {}\n", alerts[i]["time"].get<std::string>(),
               alerts[i]["alert"].get<std::string>(), alerts[i]["message"].get<std::string>());
  }
  return healthy ? 0 : 1;
}

// ---- doctor ----------------------------------------------------------------------------

struct Check {
  bool ok;
  std::string what;
  std::string fix;  // what to do when not ok
};

int64_t dir_bytes(const std::string& dir) {
  int64_t total = 0;
  std::error_code ec;
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    std::error_code size_ec;
    auto size = it->file_size(size_ec);
    if (!size_ec) total += static_cast<int64_t>(size);
  }
  return total;
}

// Tasks the store records as running, read without writing anything.
Result<int64_t> stored_running(const std::string& path) {
  auto db = SqliteDb::open(path, SQLITE_OPEN_READONLY);
  if (!db) return std::unexpected(db.error());
  auto stmt = (*db)->prepare("SELECT count(*) FROM tasks WHERE state = 'running'");
  if (!stmt) return std::unexpected(stmt.error());
  if (stmt->step() != SQLITE_ROW) return std::unexpected((*db)->error("count running"));
  return stmt->int64(0);
}

bool mode_is(const std::string& path, mode_t mode) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && (st.st_mode & 0777) == mode;
}

int doctor(const Globals& g) {
  Home home = home_at(resolve_home_dir(g.home));
  std::vector<Check> checks;
  Client client(home);
  std::optional<json> h;
  if (client.connect_existing()) {
    if (auto r = client.call("GET", "/v1/health")) h = *r;
  }
  checks.push_back({h.has_value(),
                    h ? fmt::format("the daemon answers (pid {})", (*h)["pid"].get<int>())
                      : "the daemon answers on " + home.socket,
                    "start it: rota daemon start (its log: " + home.daemon_log + ")"});
  if (h) {
    int64_t lag = (*h)["loop_lag_ms"];
    checks.push_back(
        {lag < kLagLimitMs, fmt::format("event-loop lag is {} ms (limit {} ms)", lag, kLagLimitMs),
         "the daemon's loop is blocked or starved: see its log, and the machine's load"});
  }
  bool store_exists = fs::exists(home.store);
  bool store_ok = false;
  if (store_exists) {
    auto ok = SqliteStore::check(home.store);
    store_ok = ok.has_value();
    checks.push_back({ok.has_value(),
                      ok ? fmt::format("store {} passes its integrity check (schema {})",
                                       home.store, kSchemaVersion)
                         : ok.error().message,
                      "move the file aside and restore a backup; rota never empties a store"});
  } else {
    checks.push_back({true, "no store yet at " + home.store + " (created at first start)", ""});
  }
  if (store_ok && !h) {
    auto running = stored_running(home.store);
    int64_t n = running.value_or(0);
    checks.push_back({running && n == 0,
                      running ? fmt::format("{} tasks recorded as running with no daemon", n)
                              : "cannot read the store: " + running.error().message,
                      "start the daemon: they are retried (daemon_lost) while attempts remain"});
  } else if (h) {
    int64_t lost = 0;
    for (const json& w : (*h)["workers"]) lost += w["state"] == "dead" ? 1 : 0;
    checks.push_back({true, "running tasks are supervised by live workers", ""});
  }
  struct statvfs vfs {};
  if (::statvfs(home.dir.c_str(), &vfs) == 0) {
    int64_t free_bytes = static_cast<int64_t>(vfs.f_bavail) * static_cast<int64_t>(vfs.f_frsize);
    checks.push_back({free_bytes >= kMinFreeBytes,
                      fmt::format("{} free in {}", bytes(free_bytes), home.dir),
                      "free some disk: rota clean --older-than 7d removes old tasks and logs"});
  }
  int64_t logs = dir_bytes(home.logs);
  checks.push_back({logs < kLogWarnBytes, fmt::format("task logs take {}", bytes(logs)),
                    "rota clean --older-than 7d"});
  bool perms = mode_is(home.dir, 0700) &&
               (!fs::exists(home.socket) || mode_is(home.socket, 0600)) &&
               (!store_exists || mode_is(home.store, 0600));
  checks.push_back({perms, "home is 0700, socket and store 0600",
                    fmt::format("chmod 700 {0}; chmod 600 {0}/rota.db {0}/rota.sock", home.dir)});
  if (h) {
    std::string sick;
    for (const json& w : (*h)["workers"]) {
      std::string s = w["state"];
      if (s != "idle" && s != "working" && s != "starting" && s != "slow") {
        sick += fmt::format("{}worker {} {}", sick.empty() ? "" : ", ", cell(w["id"]), s);
      }
    }
    checks.push_back({sick.empty(), sick.empty() ? "every worker is healthy" : sick,
                      "see rota health and rota events; rota restart WORKER restarts one"});
  }
  bool all_ok = true;
  for (const Check& c : checks) {
    all_ok = all_ok && c.ok;
    if (g.json) continue;
    if (c.ok) {
      fmt::print("✓ {}\n", c.what);
    } else {
      fmt::print("✗ {} — {}\n", c.what, c.fix);
    }
  }
  if (g.json) {
    json out = json::array();
    for (const Check& c : checks)
      out.push_back({{"ok", c.ok}, {"check", c.what}, {"fix", c.ok ? "" : c.fix}});
    fmt::print("{}\n", out.dump(2));
  }
  return all_ok ? 0 : 1;
}

// ---- events ----------------------------------------------------------------------------

void print_event(const json& e) {
  std::string subject = !e["task"].is_null()     ? "task " + cell(e["task"])
                        : !e["worker"].is_null() ? "worker " + cell(e["worker"])
                                                 : e["kind"].get<std::string>();
  std::string change =
      e["from"].is_null() ? "" : fmt::format(" {} -> {}", cell(e["from"]), cell(e["to"]));
  std::string by =
      !e["task"].is_null() && !e["worker"].is_null() ? " on worker " + cell(e["worker"]) : "";
  std::string detail = e["detail"].get<std::string>();
  fmt::print("{}  {}{}{}{}\n", e["at"].get<std::string>(), subject, change, by,
             detail.empty() ? "" : "  " + detail);
}

int events(const Globals& g, bool follow, int64_t last) {
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  int64_t after = -last;
  for (;;) {
    auto r = client.call("GET", fmt::format("/v1/events?after={}&limit=1000&wait_ms={}", after,
                                            follow ? 30'000 : 0));
    if (!r) return report(r.error());
    for (const json& e : *r) {
      if (g.json) {
        fmt::print("{}\n", e.dump());
      } else {
        print_event(e);
      }
      after = e["id"].get<int64_t>();
    }
    std::fflush(stdout);
    if (!follow && r->size() < 1000) return 0;
  }
}

int restart(const Globals& g, int64_t worker) {
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  auto r = client.call("POST", fmt::format("/v1/workers/{}/restart", worker));
  if (!r) return report(r.error());
  return 0;
}

}  // namespace

void add_health_commands(CLI::App& app, Globals& g, Action& action) {
  CLI::App* h = app.add_subcommand(
      "health", "The daemon, store, pool, queues and recent alerts; exit 1 if degraded");
  add_json_flag(h, g);
  h->callback([&g, &action] { action = [&g] { return health(g); }; });

  CLI::App* d = app.add_subcommand(
      "doctor", "Check everything, even with the daemon down; exit 1 if anything is wrong");
  add_json_flag(d, g);
  d->callback([&g, &action] { action = [&g] { return doctor(g); }; });

  auto follow = std::make_shared<bool>(false);
  auto last = std::make_shared<int64_t>(50);
  CLI::App* e = app.add_subcommand("events", "Task transitions, worker health changes and alerts");
  e->add_flag("-f,--follow", *follow, "Keep printing new events");
  e->add_option("--last", *last, "Start with the last N events (default 50)");
  add_json_flag(e, g);
  e->callback([&g, &action, follow, last] {
    action = [&g, follow, last] { return events(g, *follow, *last); };
  });

  auto worker = std::make_shared<int64_t>(0);
  CLI::App* r = app.add_subcommand("restart",
                                   "Restart a worker (its task goes back in line, uncharged), or a "
                                   "given-up slot by its last worker");
  r->add_option("worker", *worker, "Worker id (see rota workers)")->required();
  r->callback([&g, &action, worker] { action = [&g, worker] { return restart(g, *worker); }; });
}

}  // namespace rota::cli
