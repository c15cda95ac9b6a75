// rota export: tasks, workers or events as CSV (RFC 4180) or JSON lines, for spreadsheets and
// scripts.
#include <fmt/format.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/output.h"
#include "core/clock.h"
#include "core/duration.h"

namespace rota::cli {
namespace {

using nlohmann::json;

struct ExportFlags {
  std::string format = "csv";
  std::string since;
  std::string what = "tasks";
  std::string output;
};

// One CSV field: quoted when it holds a comma, a quote or a line break; quotes doubled.
std::string csv_field(const json& v) {
  std::string s = v.is_null() ? "" : v.is_string() ? v.get<std::string>() : v.dump();
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

// The columns of each kind of row, in order.
std::vector<std::string> columns(const std::string& what) {
  if (what == "workers") {
    return {"id",        "slot",     "pid",        "state",        "task",
            "uptime_ms", "restarts", "tasks_done", "tasks_failed", "heartbeat_age_ms"};
  }
  if (what == "events") return {"id", "at", "kind", "task", "worker", "from", "to", "detail"};
  return {"id",         "state",      "queue",      "priority",    "attempts", "max_attempts",
          "exit_code",  "signal",     "error",      "command",     "cwd",      "labels",
          "depends_on", "created_at", "started_at", "finished_at", "worker"};
}

// Flattens a task for CSV: the command as one line, its cwd beside it.
json flat_task(const json& t) {
  json f = t;
  f["command"] = command_line(t);
  f["cwd"] = t["command"].is_null() ? json(nullptr) : t["command"]["cwd"];
  return f;
}

// --since DUR as an RFC 3339 time, which compares as text with the rows' timestamps; empty
// for none.
Result<std::string> since_timestamp(const std::string& since) {
  if (since.empty()) return std::string();
  auto d = parse_duration_ms(since, "--since");
  if (!d) return std::unexpected(d.error());
  return format_timestamp(wall_now_ms() - *d);
}

// What export and results share: a checked --format and --since, a connected client and the
// output (-o FILE, or stdout for none or "-").
struct Sink {
  explicit Sink(const Globals& g) : client(make_client(g)) {}
  ~Sink() {
    if (out != stdout) std::fclose(out);
  }
  Client client;
  std::FILE* out = stdout;
  std::string since;  // RFC 3339; empty: none
  bool csv = false;
};

Result<std::unique_ptr<Sink>> open_sink(const Globals& g, const std::string& format,
                                        const std::string& since, const std::string& output) {
  if (format != "csv" && format != "jsonl") {
    return make_error(Code::kInvalidArgument, "--format: csv or jsonl", "--format");
  }
  auto since_text = since_timestamp(since);
  if (!since_text) return std::unexpected(since_text.error());
  auto sink = std::make_unique<Sink>(g);
  if (auto r = sink->client.connect(); !r) return std::unexpected(r.error());
  if (!output.empty() && output != "-") {
    sink->out = std::fopen(output.c_str(), "w");
    if (!sink->out) {
      sink->out = stdout;
      return make_error(Code::kInvalidArgument,
                        fmt::format("-o: cannot write {}: {}", output, std::strerror(errno)), "-o");
    }
  }
  sink->since = *since_text;
  sink->csv = format == "csv";
  return sink;
}

class Writer {
 public:
  Writer(std::FILE* out, bool csv, std::vector<std::string> cols)
      : out_(out), csv_(csv), cols_(std::move(cols)) {
    if (!csv_) return;
    std::string header;
    for (size_t i = 0; i < cols_.size(); ++i) header += (i ? "," : "") + cols_[i];
    line(header);
  }
  void row(const json& j) {
    if (!csv_) return line(j.dump());
    std::string s;
    for (size_t i = 0; i < cols_.size(); ++i) {
      s += (i ? "," : "") + csv_field(j.contains(cols_[i]) ? j[cols_[i]] : json(nullptr));
    }
    line(s);
  }

 private:
  // RFC 4180 ends records with CRLF; JSON lines end with LF.
  void line(const std::string& s) { fmt::print(out_, "{}{}", s, csv_ ? "\r\n" : "\n"); }
  std::FILE* out_;
  bool csv_;
  std::vector<std::string> cols_;
};

int export_rows(const Globals& g, const ExportFlags& f) {
  if (f.what != "tasks" && f.what != "workers" && f.what != "events") {
    return report({Code::kInvalidArgument, "--what: tasks, workers or events", "--what"});
  }
  auto sink = open_sink(g, f.format, f.since, f.output);
  if (!sink) return report(sink.error());
  Client& client = (*sink)->client;
  const std::string& since_text = (*sink)->since;
  Writer w((*sink)->out, (*sink)->csv, columns(f.what));
  int code = 0;
  if (f.what == "workers") {
    auto r = client.call("GET", "/v1/workers");
    if (!r) return report(r.error());
    for (const json& row : *r) w.row(row);
  } else {
    bool tasks = f.what == "tasks";
    int64_t after = 0;
    for (;;) {
      auto r = client.call("GET", tasks ? fmt::format("/v1/tasks?after={}&limit=1000", after)
                                        : fmt::format("/v1/events?after={}&limit=1000", after));
      if (!r) {
        code = report(r.error());
        break;
      }
      for (const json& row : *r) {
        after = row["id"].get<int64_t>();
        const char* stamp = tasks ? "created_at" : "at";
        if (!since_text.empty() && row[stamp].get<std::string>() < since_text) continue;
        w.row(tasks ? flat_task(row) : row);
      }
      if (r->size() < 1000) break;
    }
  }
  return code;
}

// ---- results ---------------------------------------------------------------------------

struct ResultsFlags {
  std::string format = "jsonl";
  std::string schedule;
  std::string queue;
  std::string pool;
  int64_t batch = 0;
  std::string since;
  std::string output;
};

// rota results: what finished tasks returned (ROTA_RESULT), one row per task.
int results(const Globals& g, const ResultsFlags& f) {
  auto sink = open_sink(g, f.format, f.since, f.output);
  if (!sink) return report(sink.error());
  Client& client = (*sink)->client;
  const std::string& since_text = (*sink)->since;
  Writer w((*sink)->out, (*sink)->csv,
           {"task", "item", "schedule", "state", "finished_at", "duration_ms", "result"});
  std::string filter =
      fmt::format("&queue={}&schedule={}", url_encode(f.queue), url_encode(f.schedule));
  if (!f.pool.empty()) filter += "&pool=" + url_encode(f.pool);
  if (f.batch) filter += fmt::format("&batch={}", f.batch);
  int code = 0;
  int64_t after = 0;
  int64_t seen = 0;
  for (;;) {
    auto r = client.call("GET", fmt::format("/v1/tasks?after={}&limit=1000{}", after, filter));
    if (r) seen += static_cast<int64_t>(r->size());
    if (!r) {
      code = report(r.error());
      break;
    }
    for (const json& t : *r) {
      after = t["id"].get<int64_t>();
      if (t["finished_at"].is_null()) continue;
      if (!since_text.empty() && t["finished_at"].get<std::string>() < since_text) continue;
      json row = {{"task", t["id"]},
                  {"item", t.value("item", json(nullptr))},
                  {"schedule", t.value("schedule", json(nullptr))},
                  {"state", t["state"]},
                  {"finished_at", t["finished_at"]},
                  {"duration_ms", t.value("duration_ms", json(nullptr))},
                  {"result", t["result"]}};
      w.row(row);
    }
    if (r->size() < 1000) break;
  }
  if (code == 0 && seen == 0 && !f.schedule.empty()) {
    // No task at all: a schedule that never existed is a mistake (a removed one's tasks stay).
    if (auto r = client.call("GET", "/v1/schedules/" + url_encode(f.schedule)); !r) {
      return report(r.error());
    }
  }
  return code;
}

}  // namespace

void add_results_command(CLI::App& app, Globals& g, Action& action) {
  auto f = std::make_shared<ResultsFlags>();
  CLI::App* c = app.add_subcommand(
      "results",
      "What finished tasks returned (ROTA_RESULT, or a worker's done), as JSON lines or CSV");
  c->add_option("--schedule", f->schedule, "Only the tasks this schedule fired");
  c->add_option("--queue", f->queue, "Only tasks of this queue");
  c->add_option("--pool", f->pool, "Only the message tasks of this pool");
  c->add_option("--batch", f->batch, "Only the tasks of this --each batch");
  c->add_option("--since", f->since, "Only tasks finished this long ago or since");
  c->add_option("--format", f->format, "jsonl (default) or csv (RFC 4180, with a header row)");
  c->add_option("-o,--output", f->output, "Write to this file (default: stdout)");
  c->callback([&g, &action, f] { action = [&g, f] { return results(g, *f); }; });
}

void add_export_command(CLI::App& app, Globals& g, Action& action) {
  auto f = std::make_shared<ExportFlags>();
  CLI::App* c = app.add_subcommand("export", "Tasks, workers or events as CSV or JSON lines");
  c->add_option("--format", f->format, "csv (RFC 4180, with a header row) or jsonl");
  c->add_option("--what", f->what, "tasks (default), workers or events");
  c->add_option("--since", f->since, "Only rows from this long ago on (tasks by creation)");
  c->add_option("-o,--output", f->output, "Write to this file (default: stdout)");
  c->callback([&g, &action, f] { action = [&g, f] { return export_rows(g, *f); }; });
}

}  // namespace rota::cli
