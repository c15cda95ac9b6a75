// rota add: queue one command, or one per line of stdin.
#include <fmt/format.h>
#include <unistd.h>

#include <charconv>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "core/backoff.h"
#include "core/duration.h"
#include "core/task.h"

extern char** environ;

namespace rota::cli {
namespace {

using nlohmann::json;

constexpr size_t kBatchSize = 10'000;

struct AddFlags {
  std::vector<std::string> command;
  std::string shell;
  bool stdin_lines = false;
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
};

Env current_env() {
  Env env;
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string_view::npos) env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return env;
}

std::string current_dir() {
  char buf[4096];
  return ::getcwd(buf, sizeof buf) ? std::string(buf) : std::string("/");
}

// Turns the flags into the API's task JSON (without the command), checking every value.
Result<json> options_json(const AddFlags& f) {
  json j = {{"queue", f.queue}, {"priority", f.priority}, {"retries", f.retries}};
  if (!f.backoff.empty()) {
    if (auto b = parse_backoff(f.backoff); !b) return std::unexpected(b.error());
    j["backoff"] = f.backoff;
  }
  for (auto [flag, value, key] :
       {std::tuple{"--timeout", &f.timeout, "timeout"}, std::tuple{"--delay", &f.delay, "delay"},
        std::tuple{"--slow-after", &f.slow_after, "slow_after"}}) {
    if (value->empty()) continue;
    auto ms = parse_duration_ms(*value, flag);
    if (!ms) return std::unexpected(ms.error());
    j[key] = *ms;
  }
  if (!f.unique.empty()) j["unique"] = f.unique;
  if (!f.unique_for.empty()) {
    if (f.unique.empty()) {
      return make_error(Code::kInvalidArgument, "--unique-for goes with --unique KEY",
                        "--unique-for");
    }
    auto d = parse_duration_ms(f.unique_for, "--unique-for");
    if (!d) return std::unexpected(d.error());
    j["unique_for"] = *d;
  }
  auto after = parse_task_ids(f.after, "--after");
  if (!after) return std::unexpected(after.error());
  if (!after->empty()) j["after"] = *after;
  json labels = json::object();
  for (const std::string& l : f.labels) {
    auto kv = parse_key_value(l, "--label");
    if (!kv) return std::unexpected(kv.error());
    labels[kv->first] = kv->second;
  }
  if (!labels.empty()) j["labels"] = labels;
  Env env = current_env();
  for (const std::string& e : f.env) {
    auto kv = parse_key_value(e, "--env");
    if (!kv) return std::unexpected(kv.error());
    env[kv->first] = kv->second;
  }
  j["env"] = env;
  std::string cwd = f.cwd.empty() ? current_dir() : f.cwd;
  if (!cwd.empty() && cwd.front() != '/') cwd = current_dir() + "/" + cwd;
  j["cwd"] = cwd;
  return j;
}

// Checks locally what needs no daemon, so that bad input never starts one.
Status check_locally(const AddFlags& f, const json& options) {
  TaskSpec spec;
  spec.command.argv = f.command;
  spec.command.shell = f.shell;
  if (f.stdin_lines) spec.command.shell = "true";
  spec.command.cwd = options["cwd"];
  spec.queue = f.queue;
  spec.retries = f.retries;
  if (options.contains("labels")) spec.labels = options["labels"].get<Labels>();
  if (auto r = validate_spec(spec); !r) return r;
  return validate_cwd(spec.command.cwd);
}

int add_stdin(Client& client, const json& options) {
  std::string line;
  std::vector<std::string> batch;
  std::string out;
  auto flush = [&]() -> Status {
    if (batch.empty()) return {};
    json tasks = json::array();
    for (std::string& l : batch) tasks.push_back({{"shell", std::move(l)}});
    batch.clear();
    auto r = client.call("POST", "/v1/tasks", json{{"defaults", options}, {"tasks", tasks}});
    if (!r) return std::unexpected(r.error());
    out.clear();
    for (const auto& id : (*r)["ids"])
      fmt::format_to(std::back_inserter(out), "{}\n", id.get<int64_t>());
    std::fwrite(out.data(), 1, out.size(), stdout);
    return {};
  };
  std::ios::sync_with_stdio(false);
  while (std::getline(std::cin, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    batch.push_back(std::move(line));
    if (batch.size() == kBatchSize) {
      if (auto r = flush(); !r) return report(r.error());
    }
  }
  if (auto r = flush(); !r) return report(r.error());
  return 0;
}

int add(const Globals& g, const AddFlags& f) {
  if (f.stdin_lines && (!f.command.empty() || !f.shell.empty())) {
    return report(
        {Code::kInvalidArgument, "--stdin reads commands from stdin: give no command", "--stdin"});
  }
  auto options = options_json(f);
  if (!options) return report(options.error());
  if (auto r = check_locally(f, *options); !r) return report(r.error());
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  if (f.stdin_lines) return add_stdin(client, *options);
  json task = *options;
  if (f.command.empty()) {
    task["shell"] = f.shell;
  } else {
    task["argv"] = f.command;
  }
  auto r = client.call("POST", "/v1/tasks", task);
  if (!r) return report(r.error());
  if (r->value("duplicate", false)) {
    fmt::print(stderr, "rota: task {} ({}) already holds --unique {}: nothing queued\n",
               (*r)["id"].get<int64_t>(), (*r)["state"].get<std::string>(), f.unique);
  }
  if (g.json) {
    fmt::print("{}\n", r->dump(2));
  } else {
    fmt::print("{}\n", (*r)["id"].get<int64_t>());
  }
  return 0;
}

}  // namespace

void add_add_command(CLI::App& app, Globals& g, Action& action) {
  auto f = std::make_shared<AddFlags>();
  CLI::App* c = app.add_subcommand("add", "Queue a command: rota add [options] -- CMD ARGS...");
  c->add_option("command", f->command, "The command and its arguments (after --)");
  c->add_option("--shell", f->shell, "Run this command line through /bin/sh -c");
  c->add_flag("--stdin", f->stdin_lines, "Queue one shell command per line of stdin");
  c->add_option("--queue", f->queue, "Queue name (default: default)");
  c->add_option("--priority", f->priority, "Higher runs first; FIFO within a priority");
  c->add_option("--retries", f->retries, "Attempts after the first (default 0)");
  c->add_option("--backoff", f->backoff, "Retry delay BASE[,MAX], exponential with jitter (1s,5m)");
  c->add_option("--timeout", f->timeout, "Kill the task's process group after this long");
  c->add_option("--delay", f->delay, "Start no sooner than this from now");
  c->add_option("--slow-after", f->slow_after, "Call the worker slow when the task runs this long");
  c->add_option("--after", f->after, "Run only after these tasks succeeded (ID[,ID...])");
  c->add_option("--label", f->labels, "KEY=VALUE (repeatable)");
  c->add_option("--env", f->env, "KEY=VALUE added to the caller's environment (repeatable)");
  c->add_option("--cwd", f->cwd, "Working directory (default: the current one)");
  c->add_option("--unique", f->unique, "Queue nothing if a task with this key is not finished");
  c->add_option("--unique-for", f->unique_for, "With --unique: nor finished within this long");
  add_json_flag(c, g);
  c->callback([&g, &action, f] { action = [&g, f] { return add(g, *f); }; });
}

}  // namespace rota::cli
