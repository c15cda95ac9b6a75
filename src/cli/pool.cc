// rota pool: pools of the user's programs, which run message tasks (rota add --pool NAME --json).
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/output.h"
#include "core/task.h"

namespace rota::cli {
namespace {

using nlohmann::json;

struct PoolFlags {
  std::string name;
  std::string cmd;
  std::optional<int> size;
  std::optional<int> min;
  std::optional<int> max;
  std::vector<std::string> queues;
  std::optional<int> concurrency;
  std::string cwd;
  std::vector<std::string> env;
};

Result<json> pool_body(const PoolFlags& f, bool adding) {
  json j = json::object();
  if (adding) j["name"] = f.name;
  if (!f.cmd.empty()) j["cmd"] = f.cmd;
  if (f.size) j["size"] = *f.size;
  if (f.min) j["min"] = *f.min;
  if (f.max) j["max"] = *f.max;
  if (f.min && !f.max) {
    return make_error(Code::kInvalidArgument, "--min needs --max", "--max");
  }
  if (!f.queues.empty()) {
    std::vector<std::string> queues;
    for (const std::string& item : f.queues) {
      size_t start = 0;
      while (start <= item.size()) {
        size_t end = std::min(item.find(',', start), item.size());
        if (end > start) queues.push_back(item.substr(start, end - start));
        start = end + 1;
      }
    }
    j["queues"] = queues;
  }
  if (f.concurrency) j["concurrency"] = *f.concurrency;
  if (!f.cwd.empty()) {
    std::string cwd = f.cwd;
    if (cwd.front() != '/') {
      char buf[4096];
      if (::getcwd(buf, sizeof buf)) cwd = std::string(buf) + "/" + cwd;
    }
    j["cwd"] = cwd;
  } else if (adding) {
    char buf[4096];
    if (::getcwd(buf, sizeof buf)) j["cwd"] = std::string(buf);
  }
  if (!f.env.empty()) {
    json env = json::object();
    for (const std::string& e : f.env) {
      auto kv = parse_key_value(e, "--env");
      if (!kv) return std::unexpected(kv.error());
      env[kv->first] = kv->second;
    }
    j["env"] = env;
  }
  if (adding && f.cmd.empty()) {
    return make_error(Code::kInvalidArgument,
                      "--cmd: give the worker's command (e.g. --cmd 'python3 worker.py')", "--cmd");
  }
  return j;
}

std::string size_text(const json& p) {
  if (!p["autoscale"].is_null()) {
    return fmt::format("{} ({}-{})", p["size"].get<int>(), p["autoscale"]["min"].get<int>(),
                       p["autoscale"]["max"].get<int>());
  }
  return std::to_string(p["size"].get<int>());
}

void print_pool(const json& p) {
  fmt::print("pool         {}{}\n", p["name"].get<std::string>(),
             p["builtin"].get<bool>() ? " (built-in: runs command tasks)" : "");
  if (!p["builtin"].get<bool>()) {
    fmt::print("command      {}\n", p["cmd"].get<std::string>());
    if (!p["cwd"].is_null()) fmt::print("directory    {}\n", p["cwd"].get<std::string>());
    std::string queues;
    for (const auto& q : p["queues"]) queues += (queues.empty() ? "" : ",") + q.get<std::string>();
    fmt::print("queues       {}\n", queues.empty() ? "all" : queues);
    for (const auto& [k, v] : p["env"].items())
      fmt::print("env          {}={}\n", k, v.get<std::string>());
  }
  fmt::print("size         {}, concurrency {}\n", size_text(p), p["concurrency"].get<int>());
  fmt::print("state        {}\n", p["state"].get<std::string>());
  fmt::print("tasks        {} queued, {} running, {} done, {} failed (by live workers)\n",
             p["queued"].get<int64_t>(), p["running"].get<int64_t>(),
             p["tasks_done"].get<int64_t>(), p["tasks_failed"].get<int64_t>());
  if (p.contains("workers") && !p["workers"].empty()) {
    fmt::print("\n");
    std::vector<std::vector<std::string>> rows;
    for (const json& w : p["workers"]) {
      rows.push_back({std::to_string(w["id"].get<int64_t>()), cell(w["slot"]), cell(w["pid"]),
                      w["state"], std::to_string(w["in_flight"].get<int>()),
                      std::to_string(w["tasks_done"].get<int64_t>()),
                      std::to_string(w["tasks_failed"].get<int64_t>()),
                      std::to_string(w["restarts"].get<int>())});
    }
    print_table({"WORKER", "SLOT", "PID", "STATE", "TASKS", "DONE", "FAILED", "RESTARTS"}, rows);
  }
}

int pool_send(const Globals& g, const std::string& method, const std::string& path,
              const json& body) {
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  auto r = body.is_null() ? client.call(method, path) : client.call(method, path, body);
  if (!r) return report(r.error());
  if (g.json) {
    fmt::print("{}\n", r->dump(2));
  } else if (method == "GET" && r->is_array()) {
    std::vector<std::vector<std::string>> rows;
    for (const json& p : *r) {
      rows.push_back(
          {p["name"], size_text(p), std::to_string(p["concurrency"].get<int>()), p["state"],
           std::to_string(p["queued"].get<int64_t>()), std::to_string(p["running"].get<int64_t>()),
           p["builtin"].get<bool>() ? "(rota's command worker)" : p["cmd"].get<std::string>()});
    }
    print_table({"POOL", "SIZE", "CONCURRENCY", "STATE", "QUEUED", "RUNNING", "COMMAND"}, rows);
  } else if (method == "DELETE") {
    fmt::print("removed pool {}\n", (*r)["removed"].get<std::string>());
  } else {
    print_pool(*r);
  }
  return 0;
}

void add_definition_flags(CLI::App* c, PoolFlags& f) {
  c->add_option("--cmd", f.cmd, "The worker program, run with /bin/sh -c (e.g. 'python3 w.py')");
  c->add_option("--size", f.size, "How many workers (default 1)");
  c->add_option("--min", f.min, "Autoscale: at least N workers");
  c->add_option("--max", f.max, "Autoscale: at most M workers");
  c->add_option("--queues", f.queues, "Take tasks only from these queues (Q1,Q2; default: all)");
  c->add_option("--concurrency", f.concurrency, "Tasks in flight per worker (default 1)");
  c->add_option("--cwd", f.cwd, "The workers' directory (default: the current one)");
  c->add_option("--env", f.env, "KEY=VALUE for the workers (repeatable)");
}

}  // namespace

void add_pool_commands(CLI::App& app, Globals& g, Action& action) {
  CLI::App* group =
      app.add_subcommand("pool", "Pools of your own worker programs, for message tasks");
  group->require_subcommand(1);
  {
    auto f = std::make_shared<PoolFlags>();
    CLI::App* c = group->add_subcommand(
        "add", "Add a pool: rota pool add NAME --cmd 'python3 worker.py' [--size N]");
    c->add_option("name", f->name, "The pool's name")->required();
    add_definition_flags(c, *f);
    add_json_flag(c, g);
    c->callback([&g, &action, f] {
      action = [&g, f] {
        auto body = pool_body(*f, true);
        if (!body) return report(body.error());
        return pool_send(g, "POST", "/v1/pools", *body);
      };
    });
  }
  {
    auto f = std::make_shared<PoolFlags>();
    CLI::App* c = group->add_subcommand(
        "set", "Change a pool: size and queues at once; a new command replaces the workers");
    c->add_option("name", f->name, "The pool's name")->required();
    add_definition_flags(c, *f);
    add_json_flag(c, g);
    c->callback([&g, &action, f] {
      action = [&g, f] {
        auto body = pool_body(*f, false);
        if (!body) return report(body.error());
        return pool_send(g, "POST", "/v1/pools/" + f->name, *body);
      };
    });
  }
  {
    CLI::App* c = group->add_subcommand("list", "List pools, the built-in commands pool first");
    add_json_flag(c, g);
    c->callback(
        [&g, &action] { action = [&g] { return pool_send(g, "GET", "/v1/pools", nullptr); }; });
  }
  for (auto [verb, help] :
       {std::pair{"show", "A pool: its definition, counts and workers"},
        std::pair{"remove", "Stop a pool's workers and forget it (its queued tasks stay)"}}) {
    auto name = std::make_shared<std::string>();
    CLI::App* c = group->add_subcommand(verb, help);
    c->add_option("name", *name, "The pool's name")->required();
    add_json_flag(c, g);
    c->callback([&g, &action, name, verb = std::string(verb)] {
      action = [&g, name, verb] {
        return pool_send(g, verb == "show" ? "GET" : "DELETE", "/v1/pools/" + *name, nullptr);
      };
    });
  }
}

}  // namespace rota::cli
