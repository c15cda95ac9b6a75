// The task model and its state machine (docs/states.md draws the diagram).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/backoff.h"
#include "core/error.h"

namespace rota {

enum class TaskState {
  kWaiting,    // dependencies unmet
  kScheduled,  // run_after in the future (delay or retry backoff)
  kQueued,     // ready, waiting for a worker
  kRunning,    // an attempt is on a worker
  kSucceeded,
  kFailed,
  kCancelled,
  kSkipped,  // a dependency failed or was cancelled
};
inline constexpr int kTaskStateCount = 8;

const char* state_name(TaskState state);
Result<TaskState> parse_state(std::string_view name);
bool is_terminal(TaskState state);
// Finished without success (failed, cancelled, skipped): what dooms the tasks waiting on it.
bool ended_badly(TaskState state);
// Whether the state machine allows from -> to.
bool can_transition(TaskState from, TaskState to);

using Labels = std::map<std::string, std::string>;
using Env = std::map<std::string, std::string>;
// Environments are large and shared by every task of a batch: held immutable, by pointer.
using EnvPtr = std::shared_ptr<const Env>;

// Where a command runs instead of (or under) its cwd, made fresh for each attempt.
struct Isolation {
  enum class Kind { kNone, kTemp, kWorktree };
  Kind kind = Kind::kNone;
  std::string repo;          // worktree: the git repository (absolute)
  std::string ref = "HEAD";  // worktree: what to check out, detached
  bool keep_failed = false;  // worktree: leave it in place when the attempt fails
};

// An HTTP request as a task (rota add --http): run with libcurl in the task's own process.
struct HttpCall {
  std::string method;
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  std::string body;
};

struct Command {
  std::vector<std::string> argv;  // run without a shell when non-empty
  std::string shell;              // else run through /bin/sh -c
  std::string cwd;
  EnvPtr env;  // the whole environment of the task process; null: empty
  // The store's id for `env`. Workers cache environments by id, so the daemon sends each one
  // to a worker only once; 0: not shared, always sent.
  int64_t env_id = 0;
  // Variables set on top of `env` for this task alone (ROTA_ITEM, ROTA_CHANGED).
  Env vars;
  Isolation isolation;
  std::optional<HttpCall> http;  // set: argv and shell are empty
};

// The JSON form of an isolation ({"workdir": "temp"} or {"worktree", "ref", "keep_failed"}),
// as the store and the worker protocol keep it; empty for none.
std::string isolation_to_json(const Isolation& isolation);
Result<Isolation> isolation_from_json(std::string_view text);
std::string http_to_json(const HttpCall& request);
Result<HttpCall> http_from_json(std::string_view text);

// The pool that runs command tasks; every other pool runs message tasks.
inline constexpr std::string_view kCommandsPool = "commands";

// What a user asks for; validated before anything is stored.
struct TaskSpec {
  Command command;
  std::string pool = std::string(kCommandsPool);
  std::string payload;  // a message task's JSON (compact text); empty for a command
  std::string queue = "default";
  int priority = 0;
  int retries = 0;
  Backoff backoff;
  int64_t timeout_ms = 0;     // 0: none
  int64_t slow_after_ms = 0;  // 0: the daemon's slow_after
  int64_t delay_ms = 0;
  Labels labels;
  std::vector<int64_t> after;
  std::string unique_key;     // at most one unfinished task per key (rota add --unique)
  int64_t unique_for_ms = 0;  // ... nor one finished this recently
  int64_t batch_id = 0;       // the --each fan-out it belongs to; 0: none
  std::string schedule;       // the schedule that fired it; empty: none
  int64_t slot_ms = 0;        // the schedule's fire time it is for
  std::string item;           // the sweep or --each item it works on
};

// How an attempt ended, as the worker reports it.
enum class Outcome {
  kSucceeded,
  kFailed,
  kTimedOut,
  kWorkerLost,
  // Lost with other tasks in flight on its worker: which of them killed it is not known, so the
  // loss does not count towards poison.
  kWorkerLostShared,
  kDaemonLost,
  kCancelled,
  kPoison,      // its attempts killed their worker poison_after times: no more attempts
  kHandedBack,  // not the task's doing (the daemon stopped, a worker restarted by hand): uncharged
};
const char* outcome_name(Outcome outcome);

struct Task {
  int64_t id = 0;
  TaskState state = TaskState::kQueued;
  std::string queue;
  int priority = 0;
  int attempts = 0;
  int max_attempts = 1;
  Backoff backoff;
  int64_t timeout_ms = 0;
  int64_t slow_after_ms = 0;
  int64_t run_after_ms = 0;  // scheduled only
  std::optional<int> exit_code;
  std::optional<int> signal;
  std::string error;
  Labels labels;
  std::vector<int64_t> depends_on;
  Command command;
  int64_t env_id = 0;
  int64_t created_at_ms = 0;
  int64_t started_at_ms = 0;      // running and terminal-after-running only
  int64_t finished_at_ms = 0;     // terminal only
  std::optional<int64_t> worker;  // running only
  std::string token;              // the running attempt's token
  std::string result;             // JSON text of the last result returned; empty: none
  int64_t batch_id = 0;
  std::string schedule;
  int64_t slot_ms = 0;
  std::string item;
  std::string pool = std::string(kCommandsPool);
  std::string payload;  // a message task's JSON text; empty for a command

  bool is_message() const { return pool != kCommandsPool; }
};

struct Attempt {
  int64_t task_id = 0;
  int number = 0;
  int64_t worker = 0;
  int64_t started_at_ms = 0;
  int64_t finished_at_ms = 0;
  std::string outcome;  // empty while running
  std::optional<int> exit_code;
  std::optional<int> signal;
  std::string error;
};

// What a claim makes of a queued task: running on `worker` with `token` since `now_ms`, with one
// attempt more, and nothing left of its last attempt's end.
void mark_running(Task& task, int64_t worker, const std::string& token, int64_t now_ms);

// The state a task enters when an attempt ends with `outcome`, given its attempts so far.
TaskState state_after_attempt(const Task& task, Outcome outcome);

// Checks a spec for what can be checked without I/O: a command, an absolute cwd, names and
// numbers in range. The message names the flag to fix.
Status validate_spec(const TaskSpec& spec);
// A pool name: the same rules as a queue name.
Status validate_pool_name(std::string_view name);
// A queue name: 1 to 64 letters, digits, '-', '_' or '.'.
Status validate_queue_name(std::string_view name);
// Checks that the directory exists (one stat; batches check each distinct cwd once).
Status validate_cwd(const std::string& cwd);

// Splits "KEY=VALUE" for --label and --env.
Result<std::pair<std::string, std::string>> parse_key_value(std::string_view text,
                                                            std::string_view flag);

}  // namespace rota
