#include "core/task.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>

namespace rota {
namespace {

constexpr std::array<const char*, kTaskStateCount> kStateNames = {
    "waiting", "scheduled", "queued", "running", "succeeded", "failed", "cancelled", "skipped"};

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

const char* state_name(TaskState state) { return kStateNames[static_cast<int>(state)]; }

Result<TaskState> parse_state(std::string_view name) {
  for (int i = 0; i < kTaskStateCount; ++i) {
    if (name == kStateNames[i]) return static_cast<TaskState>(i);
  }
  return make_error(Code::kInvalidArgument,
                    fmt::format("--state: \"{}\" is not a state (waiting, scheduled, queued, "
                                "running, succeeded, failed, cancelled, skipped)",
                                name),
                    "state");
}

bool is_terminal(TaskState state) { return state >= TaskState::kSucceeded; }
bool ended_badly(TaskState state) { return is_terminal(state) && state != TaskState::kSucceeded; }

bool can_transition(TaskState from, TaskState to) {
  using S = TaskState;
  switch (from) {
    case S::kWaiting:
      return to == S::kQueued || to == S::kScheduled || to == S::kSkipped || to == S::kCancelled;
    case S::kScheduled:
      return to == S::kQueued || to == S::kCancelled;
    case S::kQueued:
      return to == S::kRunning || to == S::kCancelled;
    case S::kRunning:
      // Back to queued when a stopping daemon hands an attempt back.
      return to == S::kSucceeded || to == S::kFailed || to == S::kScheduled || to == S::kQueued ||
             to == S::kCancelled;
    case S::kSucceeded:
      return false;
    case S::kFailed:
    case S::kCancelled:
    case S::kSkipped:
      // `rota retry`
      return to == S::kQueued || to == S::kWaiting;
  }
  return false;
}

const char* outcome_name(Outcome outcome) {
  switch (outcome) {
    case Outcome::kSucceeded:
      return "succeeded";
    case Outcome::kFailed:
      return "failed";
    case Outcome::kTimedOut:
      return "timeout";
    case Outcome::kWorkerLost:
      return "worker_lost";
    case Outcome::kWorkerLostShared:
      return "worker_lost_shared";
    case Outcome::kDaemonLost:
      return "daemon_lost";
    case Outcome::kCancelled:
      return "cancelled";
    case Outcome::kPoison:
      return "poison";
    case Outcome::kHandedBack:
      return "interrupted";
  }
  return "failed";
}

void mark_running(Task& task, int64_t worker, const std::string& token, int64_t now_ms) {
  task.state = TaskState::kRunning;
  ++task.attempts;
  task.worker = worker;
  task.token = token;
  task.started_at_ms = now_ms;
  task.finished_at_ms = 0;
  task.exit_code.reset();
  task.signal.reset();
  task.error.clear();
}

TaskState state_after_attempt(const Task& task, Outcome outcome) {
  if (outcome == Outcome::kSucceeded) return TaskState::kSucceeded;
  if (outcome == Outcome::kCancelled) return TaskState::kCancelled;
  if (outcome == Outcome::kPoison) return TaskState::kFailed;
  if (outcome == Outcome::kHandedBack) return TaskState::kQueued;
  if (task.attempts < task.max_attempts) return TaskState::kScheduled;
  return TaskState::kFailed;
}

Status validate_spec(const TaskSpec& spec) {
  auto invalid = [](std::string message, std::string field) {
    return make_error(Code::kInvalidArgument, std::move(message), std::move(field));
  };
  const Command& c = spec.command;
  if (spec.pool != kCommandsPool) {
    // A message task: its payload is the whole of it.
    if (auto r = validate_pool_name(spec.pool); !r) return r;
    if (!c.argv.empty() || !c.shell.empty() || c.http ||
        c.isolation.kind != Isolation::Kind::kNone) {
      return invalid(
          fmt::format("--pool {}: a message task has a payload (--json), not a command", spec.pool),
          "command");
    }
    if (spec.payload.empty()) {
      return invalid(fmt::format("--pool {}: give the message as --json '{{...}}'", spec.pool),
                     "payload");
    }
  } else if (!spec.payload.empty()) {
    return invalid("--json: a payload is for a pool's workers: add --pool NAME", "payload");
  } else if (c.http) {
    if (!c.argv.empty() || !c.shell.empty()) {
      return invalid("--http is the command: give no other", "command");
    }
    static const std::array<std::string_view, 7> kMethods = {"GET",    "POST", "PUT",    "PATCH",
                                                             "DELETE", "HEAD", "OPTIONS"};
    if (std::find(kMethods.begin(), kMethods.end(), c.http->method) == kMethods.end()) {
      return invalid(fmt::format("--http: \"{}\" is not a method (GET, POST, PUT, PATCH, DELETE, "
                                 "HEAD, OPTIONS)",
                                 c.http->method),
                     "http");
    }
    if (!c.http->url.starts_with("http://") && !c.http->url.starts_with("https://")) {
      return invalid(fmt::format("--http: \"{}\" is not an http:// or https:// URL", c.http->url),
                     "http");
    }
    for (const std::string& h : c.http->headers) {
      if (h.find(':') == std::string::npos || h.front() == ':') {
        return invalid(fmt::format("--header: \"{}\" is not NAME: VALUE", h), "headers");
      }
    }
  } else if (c.argv.empty() == c.shell.empty()) {
    return invalid(c.argv.empty() ? "the command is empty (try: rota add -- echo hello)"
                                  : "give either a command after -- or --shell, not both",
                   "command");
  }
  if (!c.argv.empty() && c.argv.front().empty()) {
    return invalid("the command is empty (try: rota add -- echo hello)", "command");
  }
  if (spec.pool == kCommandsPool && (c.cwd.empty() || c.cwd.front() != '/')) {
    return invalid(fmt::format("--cwd: \"{}\" is not an absolute path", c.cwd), "cwd");
  }
  if (auto r = validate_queue_name(spec.queue); !r) return r;
  if (c.isolation.kind == Isolation::Kind::kWorktree) {
    if (c.isolation.repo.empty() || c.isolation.repo.front() != '/') {
      return invalid(fmt::format("--worktree: \"{}\" is not an absolute path", c.isolation.repo),
                     "worktree");
    }
    if (c.isolation.ref.empty() || c.isolation.ref.front() == '-') {
      return invalid("--ref: give a branch, tag or commit", "ref");
    }
  }
  if (spec.retries < 0 || spec.retries > 1000) {
    return invalid("--retries: must be between 0 and 1000", "retries");
  }
  if (spec.timeout_ms < 0 || spec.delay_ms < 0 || spec.slow_after_ms < 0) {
    return invalid("durations must not be negative", "timeout");
  }
  for (const auto& [key, value] : spec.labels) {
    if (!valid_name(key)) {
      return invalid(
          fmt::format("--label: \"{}\" is not a label key (letters, digits, - _ .)", key),
          "labels");
    }
  }
  return {};
}

Status validate_pool_name(std::string_view name) {
  if (valid_name(name)) return {};
  return make_error(Code::kInvalidArgument,
                    fmt::format("--pool: \"{}\" is not a pool name (letters, digits, - _ .)", name),
                    "pool");
}

Status validate_queue_name(std::string_view name) {
  if (valid_name(name)) return {};
  return make_error(
      Code::kInvalidArgument,
      fmt::format("--queue: \"{}\" is not a queue name (letters, digits, - _ .)", name), "queue");
}

std::string isolation_to_json(const Isolation& i) {
  switch (i.kind) {
    case Isolation::Kind::kNone:
      return {};
    case Isolation::Kind::kTemp:
      return R"({"workdir":"temp"})";
    case Isolation::Kind::kWorktree:
      return nlohmann::json{{"worktree", i.repo}, {"ref", i.ref}, {"keep_failed", i.keep_failed}}
          .dump();
  }
  return {};
}

Result<Isolation> isolation_from_json(std::string_view text) {
  Isolation i;
  if (text.empty()) return i;
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return make_error(Code::kInvalidArgument, "isolation: not a JSON object");
  if (j.value("workdir", "") == "temp") {
    i.kind = Isolation::Kind::kTemp;
  } else if (j.contains("worktree") && j["worktree"].is_string()) {
    i.kind = Isolation::Kind::kWorktree;
    i.repo = j["worktree"].get<std::string>();
    if (j.contains("ref") && j["ref"].is_string()) i.ref = j["ref"].get<std::string>();
    if (j.contains("keep_failed") && j["keep_failed"].is_boolean())
      i.keep_failed = j["keep_failed"];
  } else {
    return make_error(Code::kInvalidArgument,
                      "isolation: expected {\"workdir\": \"temp\"} or {\"worktree\": REPO}");
  }
  return i;
}

std::string http_to_json(const HttpCall& r) {
  return nlohmann::json{
      {"method", r.method}, {"url", r.url}, {"headers", r.headers}, {"body", r.body}}
      .dump();
}

Result<HttpCall> http_from_json(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  try {
    if (!j.is_object()) throw nlohmann::json::type_error::create(302, "not an object", nullptr);
    return HttpCall{j.at("method").get<std::string>(), j.at("url").get<std::string>(),
                    j.value("headers", std::vector<std::string>{}), j.value("body", std::string())};
  } catch (const nlohmann::json::exception&) {
    return make_error(Code::kInvalidArgument,
                      "http: expected {\"method\", \"url\", \"headers\"?, \"body\"?}", "http");
  }
}

Status validate_cwd(const std::string& cwd) {
  struct stat st {};
  if (stat(cwd.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return make_error(Code::kInvalidArgument,
                      fmt::format("--cwd: directory \"{}\" does not exist", cwd), "cwd");
  }
  return {};
}

Result<std::pair<std::string, std::string>> parse_key_value(std::string_view text,
                                                            std::string_view flag) {
  auto eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return make_error(Code::kInvalidArgument,
                      fmt::format("{}: \"{}\" is not KEY=VALUE", flag, text), std::string(flag));
  }
  return std::pair{std::string(text.substr(0, eq)), std::string(text.substr(eq + 1))};
}

}  // namespace rota
