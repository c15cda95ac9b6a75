#include "api/task_json.h"

#include <fmt/format.h>

#include <map>
#include <set>

#include "api/json_scan.h"
#include "core/backoff.h"
#include "core/clock.h"
#include "core/duration.h"

namespace rota {
namespace {

using nlohmann::json;

json optional_time(int64_t ms) { return ms ? json(format_timestamp(ms)) : json(nullptr); }

template <class T>
json optional_value(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

Error field_error(const std::string& field, const std::string& what) {
  return Error{Code::kInvalidArgument, fmt::format("{}: {}", field, what), field};
}

// A duration given as a string ("90s") or a number of milliseconds.
Result<int64_t> duration_field(const json& v, const std::string& field) {
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_string()) return parse_duration_ms(v.get<std::string>(), field);
  return std::unexpected(field_error(field, "expected a duration such as \"90s\""));
}

}  // namespace

json task_to_json(const Task& t) {
  json command = {{"cwd", t.command.cwd}};
  if (t.command.http) {
    command["http"] = json::parse(http_to_json(*t.command.http));
  } else if (t.command.argv.empty()) {
    command["shell"] = t.command.shell;
  } else {
    command["argv"] = t.command.argv;
  }
  if (t.command.isolation.kind != Isolation::Kind::kNone) {
    command["isolation"] = json::parse(isolation_to_json(t.command.isolation));
  }
  if (t.is_message()) command = nullptr;
  json j{
      {"id", t.id},
      {"pool", t.pool},
      {"state", state_name(t.state)},
      {"queue", t.queue},
      {"priority", t.priority},
      {"attempts", t.attempts},
      {"max_attempts", t.max_attempts},
      {"exit_code", optional_value(t.exit_code)},
      {"signal", optional_value(t.signal)},
      {"error", t.error.empty() ? json(nullptr) : json(t.error)},
      {"labels", t.labels.empty() ? json::object() : json(t.labels)},
      {"depends_on", t.depends_on},
      {"command", command},
      {"timeout_ms", t.timeout_ms},
      {"slow_after_ms", t.slow_after_ms},
      {"run_after", t.state == TaskState::kScheduled ? optional_time(t.run_after_ms) : nullptr},
      {"created_at", optional_time(t.created_at_ms)},
      {"started_at", optional_time(t.started_at_ms)},
      {"finished_at", optional_time(t.finished_at_ms)},
      // The store keeps the worker of the last attempt; a task has one while it runs.
      {"worker", t.state == TaskState::kRunning ? optional_value(t.worker) : json(nullptr)},
      {"result", t.result.empty() ? json(nullptr) : json::parse(t.result, nullptr, false)},
  };
  if (t.is_message()) j["payload"] = json::parse(t.payload, nullptr, false);
  if (t.started_at_ms && t.finished_at_ms) j["duration_ms"] = t.finished_at_ms - t.started_at_ms;
  if (t.batch_id) j["batch"] = t.batch_id;
  if (!t.schedule.empty()) j["schedule"] = t.schedule;
  if (!t.item.empty()) j["item"] = t.item;
  return j;
}

json attempt_to_json(const Attempt& a) {
  return json{{"attempt", a.number},
              {"worker", a.worker},
              {"started_at", optional_time(a.started_at_ms)},
              {"finished_at", optional_time(a.finished_at_ms)},
              {"outcome", a.outcome.empty() ? json(nullptr) : json(a.outcome)},
              {"exit_code", optional_value(a.exit_code)},
              {"signal", optional_value(a.signal)},
              {"error", a.error.empty() ? json(nullptr) : json(a.error)}};
}

namespace {

// One field of a task spec.
Status apply_field(TaskSpec& spec, const std::string& key, const json& v) {
  // The fields that are durations ("90s" or milliseconds).
  static const std::map<std::string, int64_t TaskSpec::*, std::less<>> kDurations = {
      {"timeout", &TaskSpec::timeout_ms},
      {"slow_after", &TaskSpec::slow_after_ms},
      {"delay", &TaskSpec::delay_ms},
      {"unique_for", &TaskSpec::unique_for_ms}};
  if (auto it = kDurations.find(key); it != kDurations.end()) {
    auto d = duration_field(v, key);
    if (!d) return std::unexpected(d.error());
    spec.*(it->second) = *d;
    return {};
  }
  try {
    if (key == "argv") {
      spec.command.argv = v.get<std::vector<std::string>>();
    } else if (key == "shell") {
      spec.command.shell = v.get<std::string>();
    } else if (key == "cwd") {
      spec.command.cwd = v.get<std::string>();
    } else if (key == "env") {
      spec.command.env = std::make_shared<const Env>(v.get<Env>());
    } else if (key == "queue") {
      spec.queue = v.get<std::string>();
    } else if (key == "priority") {
      spec.priority = v.get<int>();
    } else if (key == "retries") {
      spec.retries = v.get<int>();
    } else if (key == "backoff") {
      auto b = parse_backoff(v.get<std::string>());
      if (!b) return std::unexpected(b.error());
      spec.backoff = *b;
    } else if (key == "labels") {
      spec.labels = v.get<Labels>();
    } else if (key == "unique") {
      spec.unique_key = v.get<std::string>();
    } else if (key == "http") {
      auto http = http_from_json(v.dump());
      if (!http) return std::unexpected(http.error());
      spec.command.http = std::move(*http);
    } else if (key == "workdir") {
      if (v.get<std::string>() != "temp") {
        return std::unexpected(field_error(key, "the only workdir is \"temp\""));
      }
      spec.command.isolation = {.kind = Isolation::Kind::kTemp};
    } else if (key == "worktree") {
      spec.command.isolation.kind = Isolation::Kind::kWorktree;
      spec.command.isolation.repo = v.get<std::string>();
    } else if (key == "ref") {
      spec.command.isolation.ref = v.get<std::string>();
    } else if (key == "keep_failed") {
      spec.command.isolation.keep_failed = v.get<bool>();
    } else if (key == "pool") {
      spec.pool = v.get<std::string>();
    } else if (key == "payload") {
      spec.payload = v.dump();
    } else if (key == "after") {
      spec.after = v.get<std::vector<int64_t>>();
    } else {
      return std::unexpected(field_error(key, "unknown field"));
    }
  } catch (const json::exception&) {
    return std::unexpected(field_error(key, fmt::format("wrong type ({})", v.type_name())));
  }
  return {};
}

}  // namespace

Result<TaskSpec> spec_from_json(const json& j, const TaskSpec& defaults) {
  if (!j.is_object()) return make_error(Code::kInvalidArgument, "a task must be a JSON object");
  TaskSpec spec = defaults;
  for (const auto& [key, v] : j.items()) {
    if (auto r = apply_field(spec, key, v); !r) return std::unexpected(r.error());
  }
  return spec;
}

Result<TaskSpec> spec_from_text(std::string_view text, const TaskSpec& defaults) {
  if (!starts_object(text)) {
    if (auto valid = compact_json(text); !valid) return std::unexpected(valid.error());
    return make_error(Code::kInvalidArgument, "a task must be a JSON object");
  }
  auto members = json_members(text);
  if (!members) return std::unexpected(members.error());
  TaskSpec spec = defaults;
  for (const auto& [key, value] : *members) {
    if (key == "payload") {
      auto payload = compact_json(value);
      if (!payload) return std::unexpected(payload.error());
      spec.payload = std::move(*payload);
      continue;
    }
    json v = json::parse(value, nullptr, false);  // checked by json_members: it parses
    if (auto r = apply_field(spec, key, v); !r) return std::unexpected(r.error());
  }
  return spec;
}

}  // namespace rota
