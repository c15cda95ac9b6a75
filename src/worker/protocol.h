// The worker protocol, version 1: newline-delimited JSON objects, each with "type".
// docs/protocol.md documents every field; keep the two in step.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.h"
#include "core/task.h"

namespace rota {

inline constexpr int kProtocolVersion = 1;
// The largest result an attempt may return (ROTA_RESULT for command tasks).
inline constexpr size_t kMaxResultBytes = 64 * 1024;

enum class MessageType {
  // worker -> daemon
  kHello,
  kHeartbeat,
  kDone,
  kFail,
  // daemon -> worker
  kTask,
  kCancel,
  kShutdown,
  kAck,    // the daemon recorded (or rejected) the result for `task`/`token`
  kError,  // the daemon could not read a line a user's program sent
};

const char* message_type_name(MessageType type);

// Why a command attempt failed, as the command worker reports it in `fail`.
enum class FailReason { kExit, kSignal, kTimeout, kSpawn, kCancelled };
const char* fail_reason_name(FailReason reason);
Result<FailReason> parse_fail_reason(std::string_view name);

struct Message {
  MessageType type = MessageType::kHeartbeat;
  int64_t worker = 0;
  std::string token;  // the attempt token; empty in hello and shutdown
  int64_t task = 0;   // 0: none

  // hello
  int protocol = kProtocolVersion;
  int concurrency = 1;  // decoded as 0 when a hello does not say
  int64_t pid = 0;      // hello: the worker's pid; heartbeat: the task's process group

  // task
  int attempt = 0;
  int64_t deadline_ms = 0;  // Unix epoch ms after which the attempt is killed; 0: none
  int64_t grace_ms = 0;     // task and shutdown: how long SIGTERM has before SIGKILL
  std::optional<Command> command;
  std::string payload;  // a message task's JSON text (user pools)
  std::string log_path;
  int64_t log_cap = 0;

  // done / fail
  std::optional<int> exit_code;
  std::optional<int> signal;
  std::string error;
  bool retryable = true;
  std::optional<FailReason> reason;
  std::string result;  // done/fail: the attempt's result, JSON text; empty: none
};

// One line of JSON, with the trailing newline.
std::string encode(const Message& message);
// The line a user's program gets (docs/protocol.md, "User pools"): only the fields it needs,
// written without building a JSON tree. Empty for messages such a program is never sent (ack).
std::string encode_for_program(const Message& message);
// Parses one line (without its newline). Unknown fields are ignored, for forward compatibility.
Result<Message> decode(std::string_view line);

}  // namespace rota
