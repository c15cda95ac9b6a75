// rota daemon run|start|stop|status, info, workers, scale, queue, and the hidden `worker`.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/command.h"
#include "cli/output.h"
#include "core/duration.h"
#include "core/home.h"
#include "core/task.h"
#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/systemd.h"
#include "worker/command_worker.h"
#include "worker/http_task.h"
#include "worker/isolate.h"

namespace rota::cli {
namespace {

using nlohmann::json;

Result<int64_t> parse_size(const std::string& text) {
  int64_t value = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  std::string_view unit(p, text.data() + text.size() - p);
  int64_t scale = unit.empty() || unit == "B"    ? 1
                  : unit == "KiB" || unit == "K" ? 1024
                  : unit == "MiB" || unit == "M" ? 1024 * 1024
                  : unit == "GiB" || unit == "G" ? 1024LL * 1024 * 1024
                                                 : 0;
  if (ec != std::errc() || scale == 0 || value <= 0) {
    return make_error(Code::kInvalidArgument,
                      fmt::format("--log-cap: \"{}\" is not a size (try 64MiB, 512KiB)", text),
                      "--log-cap");
  }
  return value * scale;
}

struct DaemonFlags {
  // rota.toml's keys as flags (--dead-after for dead_after); empty: not given.
  std::map<std::string, std::string> config;
  std::string durability = "normal";
  std::string log_cap = "64MiB";
  std::string grace = "10s";
  std::string log_level = "info";
};

Result<Durability> parse_durability(const std::string& text) {
  if (text == "normal") return Durability::kNormal;
  if (text == "full") return Durability::kFull;
  return make_error(Code::kInvalidArgument,
                    fmt::format("--durability: \"{}\" is not normal or full", text),
                    "--durability");
}

int daemon_run(const Globals& g, const DaemonFlags& f) {
  auto durability = parse_durability(f.durability);
  if (!durability) return report(durability.error());
  auto cap = parse_size(f.log_cap);
  if (!cap) return report(cap.error());
  auto grace = parse_duration_ms(f.grace, "--grace");
  if (!grace) return report(grace.error());
  DaemonOptions o;
  o.home = resolve_home_dir(g.home);
  o.exe = self_exe();
  for (const auto& [key, value] : f.config) {
    if (!value.empty()) o.config_flags[key] = value;
  }
  o.durability = *durability;
  o.log_cap = *cap;
  o.stop_grace_ms = *grace;
  o.log_level = f.log_level;
  return run_daemon(o);
}

int daemon_start(const Globals& g, const DaemonFlags& f) {
  if (auto d = parse_durability(f.durability); !d) return report(d.error());
  Client client = make_client(g);
  if (client.connect_existing()) {
    fmt::print(stderr, "rota: a daemon is already running for {}\n", client.home().dir);
    return 0;
  }
  if (auto c = parse_size(f.log_cap); !c) return report(c.error());
  StartOptions args = {"--durability", f.durability,  "--log-cap",
                       f.log_cap,      "--log-level", f.log_level};
  for (const auto& [key, value] : f.config) {
    if (value.empty()) continue;
    std::string flag = "--" + key;
    std::replace(flag.begin(), flag.end(), '_', '-');
    args.insert(args.end(), {flag, value});
  }
  if (auto r = start_daemon(client.home(), args); !r) return report(r.error());
  return 0;
}

// Waits until the daemon has exited: it holds the home's lock until its very end.
void await_exit(const Home& home) {
  int fd = ::open(home.lock.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return;
  ::flock(fd, LOCK_EX);  // blocks until the daemon releases it by exiting
  ::close(fd);
}

int daemon_stop(const Globals& g, const DaemonFlags& f) {
  if (auto d = parse_duration_ms(f.grace, "--grace"); !d) return report(d.error());
  Client client = make_client(g);
  if (!client.connect_existing()) {
    fmt::print(stderr, "rota: no daemon is running for {}\n", client.home().dir);
    return 0;
  }
  auto r = client.call("POST", "/v1/daemon/stop", json{{"grace", f.grace}});
  if (!r) return report(r.error());
  await_exit(client.home());
  return 0;
}

// Writes a systemd user unit for this home and says how to enable it.
int install_service(const Globals& g, const std::string& name) {
  std::string home = resolve_home_dir(g.home);
  const char* config = std::getenv("XDG_CONFIG_HOME");
  const char* user_home = std::getenv("HOME");
  std::string dir = config && *config
                        ? std::string(config) + "/systemd/user"
                        : std::string(user_home ? user_home : "/root") + "/.config/systemd/user";
  std::string path = fmt::format("{}/{}.service", dir, name);
  if (auto r = write_file_atomically(path, service_unit(self_exe(), home)); !r) {
    return report(r.error());
  }
  fmt::print(
      "wrote {}\nenable it with: systemctl --user daemon-reload && systemctl --user enable --now "
      "{}\n",
      path, name);
  return 0;
}

// Restarts the daemon without stopping a task: workers keep their tasks and reattach.
int daemon_restart(const Globals& g, const DaemonFlags& f) {
  Client client = make_client(g);
  if (client.connect_existing()) {
    auto r = client.call("POST", "/v1/daemon/stop", json{{"restart", true}});
    if (!r) return report(r.error());
    await_exit(client.home());
  }
  return daemon_start(g, f);
}

int daemon_status(const Globals& g) {
  Client client = make_client(g);
  if (auto r = client.connect_existing(); !r) {
    if (g.json) fmt::print("{}\n", json{{"running", false}, {"home", client.home().dir}}.dump(2));
    return report(r.error());
  }
  auto r = client.call("GET", "/v1/status");
  if (!r) return report(r.error());
  json& s = *r;
  s["running"] = true;
  if (g.json) {
    fmt::print("{}\n", s.dump(2));
    return 0;
  }
  fmt::print("running:  pid {}, up {}\n", s["pid"].get<int>(),
             format_duration_ms(s["uptime_ms"].get<int64_t>()));
  fmt::print("home:     {}\nstore:    {}\nsocket:   {}\nworkers:  {}\n",
             s["home"].get<std::string>(), s["store"].get<std::string>(),
             s["socket"].get<std::string>(), s["workers"].get<int>());
  std::string counts;
  for (const auto& [state, n] : s["tasks"].items()) {
    if (n.get<int64_t>())
      counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", n.get<int64_t>(), state);
  }
  fmt::print("tasks:    {}\n", counts.empty() ? "none" : counts);
  if (s.contains("store_error"))
    fmt::print("store:    FAILED: {}\n", s["store_error"].get<std::string>());
  return 0;
}

int info(const Globals& g) {
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  auto r = client.call("GET", "/v1/info");
  if (!r) return report(r.error());
  if (g.json) {
    fmt::print("{}\n", r->dump(2));
    return 0;
  }
  for (const char* key : {"version", "home", "store", "socket", "logs", "workers", "pid"}) {
    const json& v = (*r)[key];
    fmt::print("{:<8} {}\n", std::string(key) + ":",
               v.is_string() ? v.get<std::string>() : v.dump());
  }
  return 0;
}

int workers(const Globals& g) {
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  auto r = client.call("GET", "/v1/workers");
  if (!r) return report(r.error());
  if (g.json) {
    fmt::print("{}\n", r->dump(2));
    return 0;
  }
  print_workers(*r);
  return 0;
}

int scale(const Globals& g, const std::vector<int>& n, std::optional<int> min,
          std::optional<int> max) {
  json body;
  if (min || max) {
    if (!n.empty() || !min || !max) {
      return report({Code::kInvalidArgument, "give N, or --min N --max M to autoscale", {}});
    }
    body = {{"min", *min}, {"max", *max}};
  } else if (n.size() == 1) {
    body = {{"workers", n[0]}};
  } else {
    return report({Code::kInvalidArgument, "give N, or --min N --max M to autoscale", {}});
  }
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  auto r = client.call("POST", "/v1/scale", body);
  if (!r) return report(r.error());
  return 0;
}

int queue(const Globals& g, const std::string& verb, const std::string& name,
          const std::vector<int>& limit) {
  Client client = make_client(g);
  if (verb == "list") {
    if (auto r = client.connect(); !r) return report(r.error());
    auto r = client.call("GET", "/v1/queues");
    if (!r) return report(r.error());
    if (g.json) {
      fmt::print("{}\n", r->dump(2));
      return 0;
    }
    std::vector<std::vector<std::string>> rows;
    for (const json& q : *r) {
      const json& c = q["counts"];
      rows.push_back({q["name"], q["paused"].get<bool>() ? "paused" : "active",
                      q["limit"].is_null() ? "-" : q["limit"].dump(), c["queued"].dump(),
                      c["running"].dump(), c["succeeded"].dump(), c["failed"].dump()});
    }
    print_table({"QUEUE", "STATE", "LIMIT", "QUEUED", "RUNNING", "SUCCEEDED", "FAILED"}, rows);
    return 0;
  }
  if (name.empty()) return report({Code::kInvalidArgument, "name the queue", {}});
  if (auto v = validate_queue_name(name); !v) return report(v.error());
  json body = json::object();
  if (verb == "limit") {
    if (limit.size() != 1 || limit[0] < 0) {
      return report(
          {Code::kInvalidArgument, "give the limit: rota queue limit NAME N (0 for no limit)", {}});
    }
    body["limit"] = limit[0];
  }
  if (auto r = client.connect(); !r) return report(r.error());
  auto r = client.call("POST", fmt::format("/v1/queues/{}/{}", name, verb), body);
  if (!r) return report(r.error());
  return 0;
}

void add_daemon_flags(CLI::App* c, DaemonFlags& f) {
  for (const std::string& key : config_keys()) {
    std::string flag = "--" + key;
    std::replace(flag.begin(), flag.end(), '_', '-');
    c->add_option(flag, f.config[key], "Overrides " + key + " of rota.toml");
  }
  c->add_option("--durability", f.durability,
                "normal (survives a crash of any process) or full (also power loss)");
  c->add_option("--log-cap", f.log_cap, "Largest log kept per task (default 64MiB)");
  c->add_option("--log-level", f.log_level,
                "The daemon's own log: trace, debug, info, warn, error");
}

}  // namespace

void add_admin_commands(CLI::App& app, Globals& g, Action& action) {
  auto f = std::make_shared<DaemonFlags>();
  CLI::App* daemon = app.add_subcommand("daemon", "Run, start, stop or inspect the daemon");
  daemon->require_subcommand(1);
  CLI::App* run = daemon->add_subcommand("run", "Run the daemon in the foreground");
  add_daemon_flags(run, *f);
  run->add_option("--grace", f->grace, "On SIGTERM, how long running tasks may finish");
  run->callback([&g, &action, f] { action = [&g, f] { return daemon_run(g, *f); }; });
  CLI::App* start = daemon->add_subcommand("start", "Start the daemon in the background");
  add_daemon_flags(start, *f);
  start->callback([&g, &action, f] { action = [&g, f] { return daemon_start(g, *f); }; });
  CLI::App* stop = daemon->add_subcommand("stop", "Stop: running tasks may finish within --grace");
  stop->add_option("--grace", f->grace, "How long running tasks may finish (default 10s)");
  stop->callback([&g, &action, f] { action = [&g, f] { return daemon_stop(g, *f); }; });
  CLI::App* restart = daemon->add_subcommand(
      "restart", "Restart the daemon; running tasks go on and their workers reattach");
  add_daemon_flags(restart, *f);
  restart->callback([&g, &action, f] { action = [&g, f] { return daemon_restart(g, *f); }; });
  auto unit = std::make_shared<std::string>("rota");
  CLI::App* install =
      daemon->add_subcommand("install-service", "Write a systemd user unit for this home");
  install->add_option("--name", *unit, "Unit name (default rota)");
  install->callback(
      [&g, &action, unit] { action = [&g, unit] { return install_service(g, *unit); }; });
  CLI::App* status = daemon->add_subcommand("status", "Is a daemon running, and how is it");
  add_json_flag(status, g);
  status->callback([&g, &action] { action = [&g] { return daemon_status(g); }; });

  CLI::App* i = app.add_subcommand("info", "Version and every path in use");
  add_json_flag(i, g);
  i->callback([&g, &action] { action = [&g] { return info(g); }; });

  CLI::App* w = app.add_subcommand("workers", "The workers of the pool");
  add_json_flag(w, g);
  w->callback([&g, &action] { action = [&g] { return workers(g); }; });

  auto n = std::make_shared<std::vector<int>>();
  auto min = std::make_shared<std::optional<int>>();
  auto max = std::make_shared<std::optional<int>>();
  CLI::App* s =
      app.add_subcommand("scale", "Set the pool to N workers, or autoscale with --min/--max");
  s->add_option("n", *n, "Number of workers")->check(CLI::Range(0, 1024));
  s->add_option("--min", *min, "Autoscale: never fewer workers than this");
  s->add_option("--max", *max, "Autoscale: never more workers than this");
  s->callback([&g, &action, n, min, max] {
    action = [&g, n, min, max] { return scale(g, *n, *min, *max); };
  });

  auto verb = std::make_shared<std::string>();
  auto name = std::make_shared<std::string>();
  auto limit = std::make_shared<std::vector<int>>();
  CLI::App* q = app.add_subcommand("queue", "rota queue pause|resume NAME, limit NAME N, list");
  q->add_option("verb", *verb, "pause, resume, limit or list")
      ->required()
      ->check(CLI::IsMember({"pause", "resume", "limit", "list"}));
  q->add_option("name", *name, "Queue name");
  q->add_option("limit", *limit, "With limit: at most this many running (0: no limit)");
  add_json_flag(q, g);
  q->callback([&g, &action, verb, name, limit] {
    action = [&g, verb, name, limit] { return queue(g, *verb, *name, *limit); };
  });

  auto wo = std::make_shared<WorkerOptions>();
  CLI::App* worker = app.add_subcommand("worker", "");  // internal: started by the daemon
  worker->add_option("--id", wo->id)->required();
  worker->add_option("--fd", wo->fd);
  worker->add_option("--heartbeat", wo->heartbeat_ms);
  worker->group("");
  auto isolation = std::make_shared<std::string>();
  auto path = std::make_shared<std::string>();
  auto argv = std::make_shared<std::vector<std::string>>();
  CLI::App* isolate = app.add_subcommand("__isolate", "");  // internal: a task's set-up
  isolate->add_option("--isolation", *isolation)->required();
  isolate->add_option("--path", *path);
  isolate->add_option("command", *argv)->required();
  isolate->group("");
  isolate->callback([&action, isolation, path, argv] {
    action = [isolation, path, argv] { return run_isolated(*isolation, *path, *argv); };
  });
  auto http_request = std::make_shared<std::string>();
  CLI::App* http = app.add_subcommand("__http", "");  // internal: an HTTP task
  http->add_option("--request", *http_request)->required();
  http->group("");
  http->callback([&action, http_request] {
    action = [http_request] { return run_http_task(*http_request); };
  });
  worker->callback([&g, &action, wo] {
    action = [&g, wo] {
      wo->reattach_socket = home_at(resolve_home_dir(g.home)).dir + "/worker.sock";
      return run_command_worker(*wo);
    };
  });
}

}  // namespace rota::cli
