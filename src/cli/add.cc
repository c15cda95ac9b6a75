// rota add: queue one command, or one per line of stdin.
#include <fmt/format.h>

#include <charconv>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/task_options.h"
#include "core/backoff.h"
#include "core/duration.h"
#include "core/task.h"
#include "daemon/schedule.h"

namespace rota::cli {
namespace {

using nlohmann::json;

constexpr size_t kBatchSize = 10'000;

struct AddFlags {
  TaskFlags task;
  bool stdin_lines = false;
  std::string each;
};

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

// rota add --each ITEMS: one task per item, tied by a batch id (printed on stderr).
int add_each(Client& client, const Globals& g, const AddFlags& f, json task) {
  auto items = read_items(f.each, task["cwd"].get<std::string>());
  if (!items) {
    Error e = items.error();
    e.message = "--each: " + e.message;
    return report(e);
  }
  auto r = client.call("POST", "/v1/tasks", json{{"defaults", task}, {"each", *items}});
  if (!r) return report(r.error());
  fmt::print(stderr, "rota: batch {}: {} tasks (rota wait --batch {})\n",
             (*r)["batch"].get<int64_t>(), (*r)["ids"].size(), (*r)["batch"].get<int64_t>());
  if (g.json) {
    fmt::print("{}\n", r->dump(2));
    return 0;
  }
  std::string out;
  for (const auto& id : (*r)["ids"])
    fmt::format_to(std::back_inserter(out), "{}\n", id.get<int64_t>());
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

int add(const Globals& g, const AddFlags& f) {
  if (f.stdin_lines && (!f.task.command.empty() || !f.task.shell.empty())) {
    return report(
        {Code::kInvalidArgument, "--stdin reads commands from stdin: give no command", "--stdin"});
  }
  if (f.stdin_lines && !f.each.empty()) {
    return report({Code::kInvalidArgument, "--each and --stdin do not go together", "--each"});
  }
  if (!f.each.empty() && !f.task.unique.empty()) {
    return report({Code::kInvalidArgument, "--each and --unique do not go together", "--each"});
  }
  auto options = task_options_json(f.task);
  if (!options) return report(options.error());
  if (auto r = check_task_locally(f.task, *options, f.stdin_lines); !r) return report(r.error());
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  if (f.stdin_lines) return add_stdin(client, *options);
  json task = *options;
  if (!task.contains("http")) {
    // The command: argv, or a shell line (an HTTP request is in the options already).
    if (f.task.command.empty()) {
      task["shell"] = f.task.shell;
    } else {
      task["argv"] = f.task.command;
    }
  }
  if (!f.each.empty()) return add_each(client, g, f, std::move(task));
  auto r = client.call("POST", "/v1/tasks", task);
  if (!r) return report(r.error());
  if (r->value("duplicate", false)) {
    fmt::print(stderr, "rota: task {} ({}) already holds --unique {}: nothing queued\n",
               (*r)["id"].get<int64_t>(), (*r)["state"].get<std::string>(), f.task.unique);
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
  add_task_flags(c, f->task);
  c->add_flag("--stdin", f->stdin_lines, "Queue one shell command per line of stdin");
  c->add_option("--each", f->each,
                "One task per item: a glob ('src/*') or @FILE (one per line); {} in the "
                "command and $ROTA_ITEM are the item");
  add_json_flag(c, g);
  c->callback([&g, &action, f] { action = [&g, f] { return add(g, *f); }; });
}

}  // namespace rota::cli
