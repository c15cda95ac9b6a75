#include "worker/protocol.h"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <nlohmann/json.hpp>

namespace rota {
namespace {

using nlohmann::json;

constexpr std::array<const char*, 9> kTypeNames = {"hello",  "heartbeat", "done", "fail", "task",
                                                   "cancel", "shutdown",  "ack",  "error"};
constexpr std::array<const char*, 5> kReasonNames = {"exit", "signal", "timeout", "spawn",
                                                     "cancelled"};

json command_json(const Command& c) {
  json j = {{"cwd", c.cwd}};
  if (c.env) j["env"] = *c.env;
  if (c.env_id) j["env_id"] = c.env_id;
  if (!c.vars.empty()) j["vars"] = c.vars;
  if (c.isolation.kind != Isolation::Kind::kNone) j["isolation"] = isolation_to_json(c.isolation);
  if (c.http) j["http"] = http_to_json(*c.http);
  if (c.argv.empty()) {
    j["shell"] = c.shell;
  } else {
    j["argv"] = c.argv;
  }
  return j;
}

Command command_from(const json& j) {
  Command c;
  if (j.contains("argv")) c.argv = j.at("argv").get<std::vector<std::string>>();
  if (j.contains("shell")) c.shell = j.at("shell").get<std::string>();
  c.cwd = j.value("cwd", "/");
  if (j.contains("env")) c.env = std::make_shared<const Env>(j.at("env").get<Env>());
  c.env_id = j.value("env_id", int64_t{0});
  if (j.contains("vars")) c.vars = j.at("vars").get<Env>();
  if (j.contains("http")) {
    if (auto http = http_from_json(j.at("http").get<std::string>())) c.http = std::move(*http);
  }
  if (j.contains("isolation")) {
    c.isolation = isolation_from_json(j.at("isolation").get<std::string>()).value_or(Isolation{});
  }
  return c;
}

template <class T>
void set_if(json& j, const char* key, const std::optional<T>& value) {
  if (value) j[key] = *value;
}

}  // namespace

const char* message_type_name(MessageType type) { return kTypeNames[static_cast<int>(type)]; }
const char* fail_reason_name(FailReason reason) { return kReasonNames[static_cast<int>(reason)]; }

Result<FailReason> parse_fail_reason(std::string_view name) {
  for (size_t i = 0; i < kReasonNames.size(); ++i) {
    if (name == kReasonNames[i]) return static_cast<FailReason>(i);
  }
  return make_error(Code::kInvalidArgument, fmt::format("unknown fail reason \"{}\"", name));
}

std::string encode(const Message& m) {
  json j = {{"type", message_type_name(m.type)}, {"worker", m.worker}};
  if (!m.token.empty()) j["token"] = m.token;
  if (m.task) j["task"] = m.task;
  switch (m.type) {
    case MessageType::kHello:
      j["protocol"] = m.protocol;
      j["concurrency"] = m.concurrency;
      j["pid"] = m.pid;
      break;
    case MessageType::kHeartbeat:
      if (m.pid) j["pid"] = m.pid;
      break;
    case MessageType::kTask:
      j["attempt"] = m.attempt;
      j["deadline_ms"] = m.deadline_ms;
      j["grace_ms"] = m.grace_ms;
      if (m.command) j["command"] = command_json(*m.command);
      j["log"] = m.log_path;
      j["log_cap"] = m.log_cap;
      break;
    case MessageType::kDone:
      set_if(j, "exit_code", m.exit_code);
      if (!m.result.empty()) j["result"] = json::parse(m.result, nullptr, false);
      if (!m.error.empty()) j["error"] = m.error;  // e.g. a result that could not be kept
      break;
    case MessageType::kFail:
      j["error"] = m.error;
      j["retryable"] = m.retryable;
      set_if(j, "exit_code", m.exit_code);
      set_if(j, "signal", m.signal);
      if (m.reason) j["reason"] = fail_reason_name(*m.reason);
      if (!m.result.empty()) j["result"] = json::parse(m.result, nullptr, false);
      break;
    case MessageType::kCancel:
    case MessageType::kAck:
      break;
    case MessageType::kError:
      j["error"] = m.error;
      break;
    case MessageType::kShutdown:
      j["grace_ms"] = m.grace_ms;
      break;
  }
  std::string line = j.dump();
  line.push_back('\n');
  return line;
}

std::string encode_for_program(const Message& m) {
  switch (m.type) {
    case MessageType::kTask:
      return fmt::format(R"({{"type":"task","task":{},"attempt":{},"deadline_ms":{},"payload":{}}})"
                         "\n",
                         m.task, m.attempt, m.deadline_ms, m.payload.empty() ? "null" : m.payload);
    case MessageType::kCancel:
      return fmt::format(R"({{"type":"cancel","task":{}}})"
                         "\n",
                         m.task);
    case MessageType::kShutdown:
      return fmt::format(R"({{"type":"shutdown","grace_ms":{}}})"
                         "\n",
                         m.grace_ms);
    case MessageType::kError: {
      json j = {{"type", "error"}, {"error", m.error}};
      if (!m.payload.empty()) j["line"] = m.payload;  // the line it is about
      return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    }
    default:
      return {};
  }
}

namespace {

// The line a helper answers most tasks with, `{"type":"done","task":N}` exactly: read without
// building a JSON tree. Anything else (spaces, a result, more fields) takes the general path.
std::optional<Message> decode_plain_done(std::string_view line) {
  constexpr std::string_view kHead = R"({"type":"done","task":)";
  if (!line.starts_with(kHead) || !line.ends_with('}')) return std::nullopt;
  std::string_view digits = line.substr(kHead.size(), line.size() - kHead.size() - 1);
  int64_t task = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), task);
  if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty() ||
      digits.front() == '-' || (digits.front() == '0' && digits.size() > 1)) {
    return std::nullopt;
  }
  Message m;
  m.type = MessageType::kDone;
  m.task = task;
  m.concurrency = 0;  // as the general path: not said
  return m;
}

}  // namespace

Result<Message> decode(std::string_view line) {
  if (auto done = decode_plain_done(line)) return *std::move(done);
  try {
    json j = json::parse(line);
    if (!j.is_object()) return make_error(Code::kInvalidArgument, "a message must be an object");
    Message m;
    std::string type = j.at("type").get<std::string>();
    size_t i = 0;
    while (i < kTypeNames.size() && type != kTypeNames[i]) ++i;
    if (i == kTypeNames.size()) {
      return make_error(Code::kInvalidArgument, fmt::format("unknown message type \"{}\"", type));
    }
    m.type = static_cast<MessageType>(i);
    m.worker = j.value("worker", int64_t{0});
    m.token = j.value("token", "");
    m.task = j.value("task", int64_t{0});
    m.protocol = j.value("protocol", kProtocolVersion);
    m.concurrency = j.value("concurrency", 0);  // 0: not said
    m.pid = j.value("pid", int64_t{0});
    m.attempt = j.value("attempt", 0);
    m.deadline_ms = j.value("deadline_ms", int64_t{0});
    m.grace_ms = j.value("grace_ms", int64_t{0});
    if (j.contains("command")) m.command = command_from(j.at("command"));
    m.log_path = j.value("log", "");
    m.log_cap = j.value("log_cap", int64_t{0});
    if (j.contains("exit_code") && !j["exit_code"].is_null())
      m.exit_code = j["exit_code"].get<int>();
    if (j.contains("signal") && !j["signal"].is_null()) m.signal = j["signal"].get<int>();
    m.error = j.value("error", "");
    if (j.contains("result") && !j["result"].is_null()) m.result = j["result"].dump();
    m.retryable = j.value("retryable", true);
    if (j.contains("reason")) {
      auto reason = parse_fail_reason(j["reason"].get<std::string>());
      if (!reason) return std::unexpected(reason.error());
      m.reason = *reason;
    }
    return m;
  } catch (const json::exception& e) {
    return make_error(Code::kInvalidArgument, fmt::format("malformed message: {}", e.what()));
  }
}

}  // namespace rota
