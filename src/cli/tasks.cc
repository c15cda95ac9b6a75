// rota list, show, log, wait, cancel, retry, clean.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/output.h"
#include "core/duration.h"
#include "core/task.h"

namespace rota::cli {
namespace {

using nlohmann::json;

// ---- list ------------------------------------------------------------------------------

struct ListFlags {
  std::string state;
  std::string queue;
  std::string label;
  std::string schedule;
  int64_t batch = 0;
  int64_t limit = 0;  // 0: all
};

int list(const Globals& g, const ListFlags& f) {
  if (!f.state.empty()) {
    if (auto s = parse_state(f.state); !s) return report(s.error());
  }
  if (!f.label.empty()) {
    if (auto kv = parse_key_value(f.label, "--label"); !kv) return report(kv.error());
  }
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  int64_t after = 0;
  int64_t shown = 0;
  std::vector<std::vector<std::string>> rows;
  bool first = true;
  if (g.json) std::fputs("[", stdout);
  for (;;) {
    int64_t page = f.limit ? std::min<int64_t>(1000, f.limit - shown) : 1000;
    if (page <= 0) break;
    std::string target =
        fmt::format("/v1/tasks?after={}&limit={}&state={}&queue={}&label={}", after, page,
                    url_encode(f.state), url_encode(f.queue), url_encode(f.label));
    if (f.batch) target += fmt::format("&batch={}", f.batch);
    if (!f.schedule.empty()) target += "&schedule=" + url_encode(f.schedule);
    auto r = client.call("GET", target);
    if (!r) return report(r.error());
    for (const json& t : *r) {
      if (g.json) {
        fmt::print("{}{}", first ? "\n" : ",\n", t.dump());
        first = false;
      } else {
        rows.push_back(
            {cell(t["id"]), colored_state(t["state"]), cell(t["queue"]),
             fmt::format("{}/{}", t["attempts"].get<int>(), t["max_attempts"].get<int>()),
             cell(t["exit_code"]), command_line(t)});
      }
      after = t["id"].get<int64_t>();
      ++shown;
    }
    if (static_cast<int64_t>(r->size()) < page) break;
  }
  if (g.json) {
    std::fputs(first ? "]\n" : "\n]\n", stdout);
  } else {
    print_table({"ID", "STATE", "QUEUE", "ATTEMPTS", "EXIT", "COMMAND"}, rows);
  }
  return 0;
}

// One task as `GET /v1/tasks/ID` returns it, for the commands that name one.
Result<json> fetch_task(const Globals& g, const std::string& id_text) {
  auto ids = parse_task_ids({id_text}, "id");
  if (!ids) return std::unexpected(ids.error());
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return std::unexpected(r.error());
  return client.call("GET", fmt::format("/v1/tasks/{}", ids->front()));
}

// ---- show ------------------------------------------------------------------------------

int show(const Globals& g, const std::string& id_text) {
  auto t = fetch_task(g, id_text);
  if (!t) return report(t.error());
  if (g.json) {
    fmt::print("{}\n", t->dump(2));
    return 0;
  }
  const json& j = *t;
  std::string labels;
  for (const auto& [k, v] : j["labels"].items()) {
    labels += fmt::format("{}{}={}", labels.empty() ? "" : ", ", k, v.get<std::string>());
  }
  std::string deps;
  for (const auto& d : j["depends_on"]) deps += (deps.empty() ? "" : ", ") + d.dump();
  std::vector<std::pair<std::string, std::string>> lines = {
      {"id", cell(j["id"])},
      {"state", colored_state(j["state"])},
      {"command", command_line(j)},
      {"cwd", j["command"].is_null() ? std::string("-") : cell(j["command"]["cwd"])},
      {"queue", cell(j["queue"])},
      {"priority", cell(j["priority"])},
      {"attempts", fmt::format("{} of {}", j["attempts"].get<int>(), j["max_attempts"].get<int>())},
      {"exit code", cell(j["exit_code"])},
      {"signal", cell(j["signal"])},
      {"error", cell(j["error"])},
      {"labels", labels.empty() ? "-" : labels},
      {"after", deps.empty() ? "-" : deps},
      {"created", cell(j["created_at"])},
      {"started", cell(j["started_at"])},
      {"finished", cell(j["finished_at"])},
      {"run after", cell(j["run_after"])},
      {"worker", cell(j["worker"])},
      {"log", cell(j["log"])},
      {"result", j["result"].is_null() ? "-" : j["result"].dump()},
  };
  for (const auto& [k, v] : lines) fmt::print("{:<10} {}\n", k + ":", v);
  if (!j["attempt_history"].empty()) {
    std::vector<std::vector<std::string>> rows;
    for (const json& a : j["attempt_history"]) {
      rows.push_back({cell(a["attempt"]), cell(a["worker"]), cell(a["started_at"]),
                      cell(a["outcome"]), cell(a["exit_code"]), cell(a["error"])});
    }
    fmt::print("\n");
    print_table({"ATTEMPT", "WORKER", "STARTED", "OUTCOME", "EXIT", "ERROR"}, rows);
  }
  return 0;
}

// ---- result ---------------------------------------------------------------------------

int result(const Globals& g, const std::string& id_text) {
  auto t = fetch_task(g, id_text);
  if (!t) return report(t.error());
  if ((*t)["result"].is_null()) {
    return report({Code::kNotFound,
                   fmt::format("task {} has no result ({}; a command task returns one by writing "
                               "JSON to the file named by $ROTA_RESULT)",
                               (*t)["id"].get<int64_t>(), (*t)["state"].get<std::string>()),
                   {}});
  }
  fmt::print("{}\n", (*t)["result"].dump(2));
  return 0;
}

// ---- log -------------------------------------------------------------------------------

// Copies what `fd` holds past `offset` to stdout.
void copy_new(int fd, off_t& offset) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, offset);
    if (n <= 0) return;
    std::fwrite(buf, 1, static_cast<size_t>(n), stdout);
    offset += n;
  }
}

int log(const Globals& g, const std::string& id_text, bool follow) {
  auto ids = parse_task_ids({id_text}, "id");
  if (!ids) return report(ids.error());
  int64_t id = ids->front();
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  if (!follow) {
    auto text = client.call_text("GET", fmt::format("/v1/tasks/{}/log", id));
    if (!text) return report(text.error());
    std::fwrite(text->data(), 1, text->size(), stdout);
    return 0;
  }
  auto task = client.call("GET", fmt::format("/v1/tasks/{}", id));
  if (!task) return report(task.error());
  std::string path = (*task)["log"];
  off_t offset = 0;
  int fd = -1;
  for (bool done = false; !done;) {
    // The daemon answers when the task ends, or after a short while to let us print more.
    auto w = client.call("POST", "/v1/wait", json{{"ids", {id}}, {"timeout_ms", 200}});
    if (!w) return report(w.error());
    done = (*w)["complete"].get<bool>();
    if (fd < 0) fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) copy_new(fd, offset);
    std::fflush(stdout);
  }
  if (fd >= 0) ::close(fd);
  return 0;
}

// ---- wait ------------------------------------------------------------------------------

// The ids of the tasks of one --each batch.
Result<std::vector<int64_t>> batch_ids(Client& client, int64_t batch) {
  std::vector<int64_t> ids;
  int64_t after = 0;
  for (;;) {
    auto r =
        client.call("GET", fmt::format("/v1/tasks?batch={}&after={}&limit=10000", batch, after));
    if (!r) return std::unexpected(r.error());
    for (const json& t : *r) ids.push_back(after = t["id"].get<int64_t>());
    if (r->size() < 10000) break;
  }
  if (ids.empty()) {
    return make_error(Code::kNotFound, fmt::format("batch {} has no tasks", batch), "--batch");
  }
  return ids;
}

int wait(const Globals& g, const std::vector<std::string>& id_texts, bool all, int64_t batch,
         const std::string& timeout) {
  auto ids = parse_task_ids(id_texts, "id");
  if (!ids) return report(ids.error());
  if (ids->empty() && !all && !batch) {
    return report(
        {Code::kInvalidArgument, "name the tasks to wait for, or --batch ID, or --all", {}});
  }
  int64_t timeout_ms = -1;
  if (!timeout.empty()) {
    auto d = parse_duration_ms(timeout, "--timeout");
    if (!d) return report(d.error());
    timeout_ms = *d;
  }
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  if (batch) {
    auto more = batch_ids(client, batch);
    if (!more) return report(more.error());
    ids->insert(ids->end(), more->begin(), more->end());
  }
  bool progress = stderr_is_tty() && !g.json;
  auto start = std::chrono::steady_clock::now();
  int64_t wait_id = 0;
  json result;
  for (;;) {
    int64_t elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - start)
                          .count();
    int64_t left = timeout_ms < 0 ? 60'000 : std::max<int64_t>(0, timeout_ms - elapsed);
    int64_t slice = progress ? std::min<int64_t>(left, 200) : left;
    json body = {{"timeout_ms", slice}};
    if (wait_id) {
      body["wait_id"] = wait_id;
    } else if (all) {
      body["all"] = true;
    } else {
      body["ids"] = *ids;
    }
    auto r = client.call("POST", "/v1/wait", body);
    if (!r) return report(r.error());
    result = *r;
    wait_id = result["wait_id"];
    int64_t unsuccessful = static_cast<int64_t>(result["unsuccessful"].size());
    if (progress) draw_progress(result["finished"], result["total"], unsuccessful);
    if (result["complete"].get<bool>()) break;
    if (timeout_ms >= 0 && left <= slice) break;
  }
  if (progress) fmt::print(stderr, "\n");
  if (g.json) fmt::print("{}\n", result.dump(2));
  bool complete = result["complete"];
  const json& bad = result["unsuccessful"];
  for (size_t i = 0; i < bad.size() && i < 20 && !g.json; ++i) {
    fmt::print(stderr, "rota: task {} {}\n", bad[i]["id"].get<int64_t>(),
               bad[i]["state"].get<std::string>());
  }
  if (bad.size() > 20 && !g.json) {
    fmt::print(stderr, "rota: and {} more that did not succeed (rota list --state failed)\n",
               bad.size() - 20);
  }
  if (!complete) {
    if (!g.json) {
      fmt::print(stderr, "rota: timed out: {} of {} tasks finished\n",
                 result["finished"].get<int64_t>(), result["total"].get<int64_t>());
    }
    return 1;
  }
  return result["unsuccessful"].empty() ? 0 : 1;
}

// ---- cancel, retry, clean -------------------------------------------------------------

int cancel(const Globals& g, const std::vector<std::string>& id_texts) {
  auto ids = parse_task_ids(id_texts, "id");
  if (!ids) return report(ids.error());
  if (ids->empty()) return report({Code::kInvalidArgument, "name the tasks to cancel", {}});
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  auto r = client.call("POST", "/v1/tasks/cancel", json{{"ids", *ids}});
  if (!r) return report(r.error());
  if (g.json) fmt::print("{}\n", r->dump());
  return 0;
}

int retry(const Globals& g, const std::vector<std::string>& id_texts, bool failed,
          const std::string& queue) {
  auto ids = parse_task_ids(id_texts, "id");
  if (!ids) return report(ids.error());
  if (ids->empty() != failed) {
    return report({Code::kInvalidArgument, "name the tasks to retry, or use --failed", {}});
  }
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  json body = failed ? json{{"failed", true}, {"queue", queue}} : json{{"ids", *ids}};
  auto r = client.call("POST", "/v1/tasks/retry", body);
  if (!r) return report(r.error());
  if (g.json) {
    fmt::print("{}\n", r->dump());
  } else {
    for (const auto& id : (*r)["retried"]) fmt::print("{}\n", id.get<int64_t>());
  }
  return 0;
}

int clean(const Globals& g, const std::string& older_than) {
  json body = json::object();
  if (!older_than.empty()) {
    if (auto d = parse_duration_ms(older_than, "--older-than"); !d) return report(d.error());
    body["older_than"] = older_than;
  }
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  auto r = client.call("POST", "/v1/tasks/clean", body);
  if (!r) return report(r.error());
  if (g.json) {
    fmt::print("{}\n", r->dump());
  } else {
    fmt::print(stderr, "removed {} finished tasks and their logs\n",
               (*r)["removed"].get<int64_t>());
  }
  return 0;
}

}  // namespace

void add_task_commands(CLI::App& app, Globals& g, Action& action) {
  {
    auto f = std::make_shared<ListFlags>();
    CLI::App* c = app.add_subcommand("list", "List tasks, oldest first");
    c->add_option("--state", f->state, "Only tasks in this state");
    c->add_option("--queue", f->queue, "Only tasks of this queue");
    c->add_option("--label", f->label, "Only tasks with this KEY=VALUE label");
    c->add_option("--batch", f->batch, "Only the tasks of this --each batch");
    c->add_option("--schedule", f->schedule, "Only the tasks this schedule fired");
    c->add_option("--limit", f->limit, "At most this many tasks");
    add_json_flag(c, g);
    c->callback([&g, &action, f] { action = [&g, f] { return list(g, *f); }; });
  }
  {
    auto id = std::make_shared<std::string>();
    CLI::App* c = app.add_subcommand("show", "Show one task with its attempts");
    c->add_option("id", *id, "Task id")->required();
    add_json_flag(c, g);
    c->callback([&g, &action, id] { action = [&g, id] { return show(g, *id); }; });
  }
  {
    auto id = std::make_shared<std::string>();
    CLI::App* c = app.add_subcommand("result", "Print the JSON result a task returned");
    c->add_option("id", *id, "Task id")->required();
    c->callback([&g, &action, id] { action = [&g, id] { return result(g, *id); }; });
  }
  {
    auto id = std::make_shared<std::string>();
    auto follow = std::make_shared<bool>(false);
    CLI::App* c = app.add_subcommand("log", "Print a task's output");
    c->add_option("id", *id, "Task id")->required();
    c->add_flag("-f,--follow", *follow, "Keep printing until the task ends");
    c->callback(
        [&g, &action, id, follow] { action = [&g, id, follow] { return log(g, *id, *follow); }; });
  }
  {
    auto ids = std::make_shared<std::vector<std::string>>();
    auto all = std::make_shared<bool>(false);
    auto batch = std::make_shared<int64_t>(0);
    auto timeout = std::make_shared<std::string>();
    CLI::App* c =
        app.add_subcommand("wait", "Wait for tasks to finish; exit 1 if any did not succeed");
    c->add_option("ids", *ids, "Task ids");
    c->add_flag("--all", *all, "Every task not yet finished");
    c->add_option("--batch", *batch, "The tasks of this --each batch");
    c->add_option("--timeout", *timeout, "Give up after this long (exit 1)");
    add_json_flag(c, g);
    c->callback([&g, &action, ids, all, batch, timeout] {
      action = [&g, ids, all, batch, timeout] { return wait(g, *ids, *all, *batch, *timeout); };
    });
  }
  {
    auto ids = std::make_shared<std::vector<std::string>>();
    CLI::App* c =
        app.add_subcommand("cancel", "Cancel tasks; a running one's process group is killed");
    c->add_option("ids", *ids, "Task ids");
    add_json_flag(c, g);
    c->callback([&g, &action, ids] { action = [&g, ids] { return cancel(g, *ids); }; });
  }
  {
    auto ids = std::make_shared<std::vector<std::string>>();
    auto failed = std::make_shared<bool>(false);
    auto queue = std::make_shared<std::string>();
    CLI::App* c = app.add_subcommand("retry", "Run failed, cancelled or skipped tasks again");
    c->add_option("ids", *ids, "Task ids");
    c->add_flag("--failed", *failed, "Every failed task");
    c->add_option("--queue", *queue, "With --failed: only this queue");
    add_json_flag(c, g);
    c->callback([&g, &action, ids, failed, queue] {
      action = [&g, ids, failed, queue] { return retry(g, *ids, *failed, *queue); };
    });
  }
  {
    auto older = std::make_shared<std::string>();
    CLI::App* c = app.add_subcommand("clean", "Remove finished tasks and their logs");
    c->add_option("--older-than", *older, "Only those finished longer ago than this");
    add_json_flag(c, g);
    c->callback([&g, &action, older] { action = [&g, older] { return clean(g, *older); }; });
  }
}

}  // namespace rota::cli
