// rota add: queue one command, or one per line of stdin.
#include <fmt/format.h>

#include <strings.h>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "api/json_scan.h"
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
  std::string pool;
  std::vector<std::string> json_values;  // --json VALUE: a message's payload
  size_t json_count = 0;                 // how many times --json was given
  bool jsonl = false;
};

// Keeps the reply's warning (a pool that does not exist yet) in front of the user, once:
// `last` is the warning printed for the batch before, if any.
void warn(const json& reply, std::string* last = nullptr) {
  if (!reply.contains("warning")) return;
  auto warning = reply["warning"].get<std::string>();
  if (last) {
    if (*last == warning) return;
    *last = warning;
  }
  fmt::print(stderr, "rota: warning: {}\n", warning);
}

// --json VALUE or @FILE: its text as written, checked to be JSON (`what` names it otherwise).
Result<std::string> read_json_text(const std::string& value, std::string_view what) {
  std::string text = value;
  if (value.starts_with('@')) {
    std::ifstream in(value.substr(1), std::ios::binary);
    if (!in) {
      return make_error(Code::kInvalidArgument,
                        fmt::format("--json: cannot read {}", value.substr(1)), "--json");
    }
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  if (!json::accept(text)) {
    return make_error(
        Code::kInvalidArgument,
        fmt::format("--json: {} is not JSON", value.starts_with('@') ? value.substr(1) : what),
        "--json");
  }
  return text;
}

// --json VALUE or @FILE: the payload.
Result<json> read_payload(const std::string& value) {
  auto text = read_json_text(value, "the payload");
  if (!text) return std::unexpected(text.error());
  return json::parse(*text);
}

// Sends one task per line of stdin, in batches of ready-made JSON: `append(line, number,
// body)` writes the line's task onto the batch's body, or fails, which stops the input there:
// the lines before it are queued (their ids printed), it and the rest are not. The lines are
// read on a thread of their own, one batch ahead: the next batch is read while the daemon
// queues one.
int send_stdin_batches(Client& client, const json& options,
                       const std::function<Status(const std::string& line, int64_t number,
                                                  std::string& body)>& append) {
  constexpr size_t kBatchBytes = 16u << 20;
  const std::string head = R"({"defaults":)" + options.dump() + R"(,"tasks":[)";
  std::ios::sync_with_stdio(false);
  std::mutex mu;
  std::condition_variable cv;
  std::optional<std::string> ready;  // a batch's body, read and not yet sent
  bool read_all = false;             // the reader has handed over its last batch
  bool give_up = false;              // a batch failed: the reader stops
  std::optional<Error> bad_line;
  std::thread reader([&] {
    auto hand_over = [&](std::string& body) {
      body += "]}";
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return !ready || give_up; });
      if (give_up) return false;
      ready = std::move(body);
      cv.notify_all();
      return true;
    };
    std::string body = head;
    size_t in_batch = 0;
    std::string line;
    int64_t number = 0;
    bool more = true;
    while (more && std::getline(std::cin, line)) {
      ++number;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      size_t mark = body.size();
      if (in_batch) body += ',';
      if (auto r = append(line, number, body); !r) {
        body.resize(mark);
        bad_line = r.error();
        break;
      }
      if (++in_batch == kBatchSize || body.size() > kBatchBytes) {
        more = hand_over(body);
        body = head;
        in_batch = 0;
      }
    }
    if (more && in_batch > 0) hand_over(body);
    std::lock_guard lock(mu);
    read_all = true;
    cv.notify_all();
  });
  std::string out;
  std::string warned;
  Status sent;
  for (;;) {
    std::string body;
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return ready || read_all; });
      if (!ready) break;
      body = std::move(*ready);
      ready.reset();
      cv.notify_all();
    }
    auto r = client.call_raw("POST", "/v1/tasks", body);
    if (!r) {
      sent = std::unexpected(r.error());
      break;
    }
    warn(*r, &warned);
    out.clear();
    for (const auto& id : (*r)["ids"])
      fmt::format_to(std::back_inserter(out), "{}\n", id.get<int64_t>());
    std::fwrite(out.data(), 1, out.size(), stdout);
  }
  bool reader_done = false;
  {
    std::lock_guard lock(mu);
    give_up = true;
    reader_done = read_all;
    cv.notify_all();
  }
  if (!sent && !reader_done) {
    // A batch failed while the reader waits on stdin, which may not end for a long time: the
    // error is reported now, and the process ends without it.
    int code = report(sent.error());
    std::fflush(stdout);
    std::fflush(stderr);
    reader.detach();
    std::_Exit(code);
  }
  reader.join();
  if (!sent) return report(sent.error());
  if (bad_line) return report(*bad_line);
  return 0;
}

// rota add --pool P --stdin --jsonl: one message per line of JSON, checked and sent compact,
// as the daemon will check it (so that one line cannot make the daemon refuse its batch).
int add_stdin_messages(Client& client, const json& options) {
  return send_stdin_batches(
      client, options, [](const std::string& line, int64_t number, std::string& body) -> Status {
        auto payload = compact_json(line);
        if (!payload) {
          std::string_view why = payload.error().message;
          if (why.starts_with("malformed JSON: ")) why.remove_prefix(16);
          return make_error(Code::kInvalidArgument,
                            fmt::format("stdin line {} is not JSON ({}): it and the lines after "
                                        "it were not queued",
                                        number, why),
                            "--stdin");
        }
        body += R"({"payload":)";
        body += *payload;
        body += '}';
        return {};
      });
}

// rota add --pool P --json '{...}' | --stdin: message tasks for a pool's workers.
int add_messages(const Globals& g, const AddFlags& f, bool print_json) {
  const TaskFlags& t = f.task;
  if (!t.command.empty() || !t.shell.empty() || !t.http.empty() || !t.workdir.empty() ||
      !t.worktree.empty() || !f.each.empty()) {
    return report(
        {Code::kInvalidArgument,
         fmt::format("--pool {}: a message task has a payload (--json), not a command", f.pool),
         "--pool"});
  }
  if (f.stdin_lines == !f.json_values.empty()) {
    return report({Code::kInvalidArgument,
                   "--pool: give the message as --json '{...}' (or @FILE), or one per line with "
                   "--stdin --jsonl",
                   "--json"});
  }
  if (auto r = validate_pool_name(f.pool); !r) return report(r.error());
  auto options = task_options_json(t);
  if (!options) return report(options.error());
  options->erase("env");  // a message carries its payload, not the caller's environment
  options->erase("cwd");
  (*options)["pool"] = f.pool;
  std::optional<json> payload;
  if (!f.stdin_lines) {
    auto p = read_payload(f.json_values.front());
    if (!p) return report(p.error());
    payload = std::move(*p);
  }
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  if (f.stdin_lines) return add_stdin_messages(client, *options);
  json task = *options;
  task["payload"] = std::move(*payload);
  auto r = client.call("POST", "/v1/tasks", task);
  if (!r) return report(r.error());
  warn(*r);
  if (r->value("duplicate", false)) {
    fmt::print(stderr, "rota: task {} ({}) already holds --unique {}: nothing queued\n",
               (*r)["id"].get<int64_t>(), (*r)["state"].get<std::string>(), t.unique);
  }
  if (print_json) {
    fmt::print("{}\n", r->dump(2));
  } else {
    fmt::print("{}\n", (*r)["id"].get<int64_t>());
  }
  return 0;
}

// rota add --stdin: one shell command per line.
int add_stdin(Client& client, const json& options) {
  return send_stdin_batches(
      client, options, [](const std::string& line, int64_t number, std::string& body) -> Status {
        std::string shell;
        try {
          shell = json(line).dump();
        } catch (const json::exception&) {
          return make_error(Code::kInvalidArgument,
                            fmt::format("stdin line {} is not UTF-8: it and the lines "
                                        "after it were not queued",
                                        number),
                            "--stdin");
        }
        body += R"({"shell":)";
        body += shell;
        body += '}';
        return {};
      });
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
  if (g.json || f.json_count > f.json_values.size()) {
    fmt::print("{}\n", r->dump(2));
    return 0;
  }
  std::string out;
  for (const auto& id : (*r)["ids"])
    fmt::format_to(std::back_inserter(out), "{}\n", id.get<int64_t>());
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

// rota add --http METHOD URL --json BODY: the body is JSON, sent as application/json.
Result<AddFlags> with_json_body(AddFlags f) {
  if (f.json_values.size() > 1 || !f.task.data.empty()) {
    return make_error(Code::kInvalidArgument, "--http: give one body, --json or --data", "--json");
  }
  // Sent as written (a signed body must stay byte for byte).
  auto body = read_json_text(f.json_values.front(), "the body");
  if (!body) return std::unexpected(body.error());
  f.task.data = std::move(*body);
  bool typed = std::any_of(f.task.headers.begin(), f.task.headers.end(), [](const auto& h) {
    return h.size() >= 13 && strncasecmp(h.c_str(), "content-type:", 13) == 0;
  });
  if (!typed) f.task.headers.push_back("Content-Type: application/json");
  f.json_values.clear();
  --f.json_count;
  return f;
}

int add(const Globals& g, const AddFlags& given) {
  AddFlags f = given;
  if (!f.task.http.empty() && !f.json_values.empty() &&
      (f.pool.empty() || f.pool == kCommandsPool)) {
    auto r = with_json_body(std::move(f));
    if (!r) return report(r.error());
    f = std::move(*r);
  }
  // --json VALUE is a payload; a bare --json asks for the new task as JSON.
  bool print_json = g.json || f.json_count > f.json_values.size();
  if (!f.pool.empty() && f.pool != kCommandsPool) return add_messages(g, f, print_json);
  if (!f.json_values.empty()) {
    return report({Code::kInvalidArgument,
                   "--json VALUE is a message's payload and goes with --pool NAME (to print the "
                   "new task as JSON, put --json after the options or use -- before the command)",
                   "--json"});
  }
  if (f.jsonl) {
    return report({Code::kInvalidArgument, "--jsonl goes with --pool NAME --stdin", "--jsonl"});
  }
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
  if (print_json) {
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
  c->add_option("--pool", f->pool,
                "A message task for this pool's workers (with --json, or --stdin --jsonl)");
  c->add_option("--json", f->json_values,
                "With --pool: the message, as JSON or @FILE. Alone: print the new task as JSON")
      ->expected(0, 1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  c->add_flag("--jsonl", f->jsonl, "With --pool --stdin: one message per line of JSON");
  c->callback([&g, &action, f, c] {
    f->json_count = c->count("--json");
    std::erase(f->json_values, std::string());
    action = [&g, f] { return add(g, *f); };
  });
}

}  // namespace rota::cli
