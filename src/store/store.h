// The Store: everything rota keeps. One interface, so that the daemon does not know whether
// SQLite or PostgreSQL is behind it.
//
// Writes happen inside a transaction the daemon opens with begin() and closes with commit()
// once per event-loop turn (group commit). Reads may happen inside or outside one and see the
// transaction's own writes.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"
#include "core/task.h"

namespace rota {

enum class Durability { kNormal, kFull };

struct TaskFilter {
  std::optional<TaskState> state;
  std::string queue;  // empty: any
  std::optional<std::pair<std::string, std::string>> label;
  int64_t batch_id = 0;  // 0: any
  std::string schedule;  // empty: any
  std::string pool;      // empty: any
  int64_t after_id = 0;  // keyset pagination: ids greater than this, ascending
  int limit = 1000;
  // kNewestFirst: descending ids, below `before_id` (0: from the newest); after_id is ignored.
  enum class Order { kOldestFirst, kNewestFirst } order = Order::kOldestFirst;
  int64_t before_id = 0;
};

// A schedule as kept: its definition is JSON the scheduler owns; the rest is its progress.
struct ScheduleRecord {
  std::string name;
  std::string definition;
  bool paused = false;
  int64_t created_at_ms = 0;
  int64_t next_slot_ms = 0;  // the next fire time not yet fired
  int64_t pending = 0;       // firings queued behind a running one (--overlap queue)
  int64_t cycle = 0;         // sweeps: how many times the item list was started
  int64_t cursor = 0;        // sweeps: the index of the next item in `items`
  std::string items;         // sweeps: this cycle's items, a JSON array
};

// The newest task of a schedule for one item (or for the schedule, when it has no items).
struct ItemRun {
  std::string item;
  int64_t task_id = 0;
  TaskState state = TaskState::kQueued;
  int64_t started_at_ms = 0;
  int64_t finished_at_ms = 0;
};

// A user's pool as kept: its definition is JSON the pool manager owns.
struct PoolRecord {
  std::string name;
  std::string definition;
  int64_t created_at_ms = 0;
};

struct WatchRecord {
  std::string name;
  std::string definition;
  int64_t created_at_ms = 0;
};

struct NewTask {
  TaskSpec spec;
  int64_t env_id = 0;
  TaskState state = TaskState::kQueued;  // waiting, scheduled, queued or skipped
  int64_t run_after_ms = 0;
  int64_t created_at_ms = 0;
};

struct AttemptEnd {
  int64_t task_id = 0;
  int attempt = 0;
  int64_t worker = 0;
  int64_t started_at_ms = 0;
  TaskState to = TaskState::kFailed;
  Outcome outcome = Outcome::kFailed;
  std::optional<int> exit_code;
  std::optional<int> signal;
  std::string error;
  int64_t finished_at_ms = 0;
  int64_t run_after_ms = 0;  // when `to` is scheduled
  // A handed-back attempt (the daemon stopped under it) does not count against the task.
  bool handed_back = false;
  std::string result;  // JSON text the attempt returned; empty: none (an earlier one stays)
  // The claim of this attempt was never written (it was claimed in this transaction): this
  // write is the claim's too (one more attempt, `worker`, `started_at_ms`).
  bool claim_unwritten = false;
};

// A finished attempt with what stats group it by (rota stats).
struct AttemptRecord {
  int64_t task_id = 0;
  int number = 0;
  int64_t worker = 0;
  int64_t started_at_ms = 0;
  int64_t finished_at_ms = 0;
  std::string outcome;
  std::string queue;
  std::string command;  // the shell line, or the argv as JSON
  Labels labels;
  int task_attempts = 0;  // attempts the task has had in all
  TaskState task_state = TaskState::kQueued;
  int64_t created_at_ms = 0;
};

struct QueueInfo {
  std::string name;
  bool paused = false;
  int limit = 0;  // 0: no limit
};

struct QueueStateCount {
  std::string pool;
  std::string queue;
  TaskState state;
  int64_t count;
};

struct Event {
  int64_t at_ms = 0;
  std::string kind;  // "task", "worker", "daemon", ...
  int64_t task_id = 0;
  int64_t worker_id = 0;
  std::string from;
  std::string to;
  std::string detail;
  int64_t id = 0;  // set when read back
};

class Store {
 public:
  virtual ~Store() = default;

  virtual Status begin() = 0;
  virtual Status commit() = 0;
  virtual void rollback() = 0;
  // Commits, rolling back if that fails, and runs `done` with the outcome: at once, or later
  // on the daemon's loop for a store that works on a thread of its own (ThreadedStore), which
  // may commit at once when someone waits and its thread has nothing to do.
  enum class Waiting { kSomeone, kNobody };
  virtual void commit_async(std::function<void(const Status&)> done, Waiting) {
    Status committed = commit();
    if (!committed) rollback();
    done(committed);
  }
  // Runs `done` once everything asked of the store so far is done (at once here), in order
  // with the commits' `done`s.
  virtual void after_pending(std::function<void()> done) { done(); }
  // A nested point inside the open transaction: an operation that fails half-way rolls back to
  // it, so that the turn's other writes still commit and nothing half-done does.
  virtual Status savepoint() = 0;
  virtual Status release_savepoint() = 0;
  virtual void rollback_to_savepoint() = 0;

  // Stores an environment once and returns its id; equal environments share one id.
  virtual Result<int64_t> intern_env(const Env& env) = 0;
  virtual Result<Env> get_env(int64_t env_id) = 0;

  // Inserts tasks with their dependencies; returns their ids in order.
  virtual Result<std::vector<int64_t>> insert_tasks(std::span<const NewTask> tasks) = 0;
  virtual Result<std::optional<Task>> get_task(int64_t id) = 0;
  virtual Result<std::vector<Task>> list_tasks(const TaskFilter& filter) = 0;
  virtual Result<std::vector<Attempt>> list_attempts(int64_t task_id) = 0;
  // The state of each id that exists.
  virtual Result<std::vector<std::pair<int64_t, TaskState>>> task_states(
      std::span<const int64_t> ids) = 0;

  // Takes up to `limit` queued tasks of `pool` from `queues`, best first (priority, then age,
  // across the queues), and marks them running on `worker` with `token`, counting one more
  // attempt each. Empty if none is queued.
  virtual Result<std::vector<Task>> claim(std::string_view pool,
                                          std::span<const std::string> queues, int limit,
                                          int64_t worker, const std::string& token,
                                          int64_t now_ms) = 0;
  // Ends the running attempt: the task moves to end.to with the attempt's result.
  virtual Status finish_attempt(const AttemptEnd& end) = 0;
  // Moves a task that is not running: waiting/scheduled -> queued, -> skipped, -> cancelled.
  virtual Status move_task(int64_t id, TaskState to, int64_t now_ms) = 0;
  // Puts a terminal task back in line with `extra` more attempts: `to` is queued or waiting.
  virtual Status retry_task(int64_t id, TaskState to, int extra_attempts) = 0;

  // Scheduled tasks whose run_after has come, and the earliest run_after still ahead.
  virtual Result<std::vector<int64_t>> due_tasks(int64_t now_ms, int limit) = 0;
  virtual Result<std::optional<int64_t>> next_run_after() = 0;

  // Tasks that depend on `id`, with their states; and the states of what `id` depends on.
  virtual Result<std::vector<std::pair<int64_t, TaskState>>> dependents(int64_t id) = 0;
  virtual Result<std::vector<TaskState>> dependency_states(int64_t id) = 0;

  virtual Result<std::vector<Task>> tasks_in_state(TaskState state) = 0;
  virtual Result<std::vector<QueueStateCount>> count_tasks() = 0;
  // Deletes terminal tasks finished before `cutoff_ms`; returns their ids.
  virtual Result<std::vector<int64_t>> clean(int64_t cutoff_ms) = 0;

  virtual Result<std::vector<QueueInfo>> list_queues() = 0;
  virtual Status put_queue(const QueueInfo& queue) = 0;

  virtual Status append_event(const Event& event) = 0;
  virtual Result<std::vector<Event>> list_events(int64_t after_id, int limit) = 0;
  virtual Result<int64_t> last_event_id() = 0;

  // The newest task added with this --unique key, if any: (id, state, finished_at_ms).
  virtual Result<std::optional<std::tuple<int64_t, TaskState, int64_t>>> find_unique(
      const std::string& key) = 0;

  // Attempts that finished at or after `since_ms` (an index range: no table scan).
  virtual Result<std::vector<AttemptRecord>> attempts_since(int64_t since_ms) = 0;

  // How many of a task's finished attempts ended with `outcome`.
  virtual Result<int64_t> count_attempts(int64_t task_id, Outcome outcome) = 0;

  // Unfinished tasks still suspected of a crash they shared: an attempt of each ended
  // worker_lost_shared, and every later one only lost its worker or was handed back.
  virtual Result<std::vector<int64_t>> suspect_tasks() = 0;

  // Small settings that outlive the daemon (the autoscaling range, say).
  virtual Result<std::optional<std::string>> get_setting(const std::string& key) = 0;
  virtual Status put_setting(const std::string& key, const std::string& value) = 0;

  // A worker id never handed out before in this store.
  virtual Result<int64_t> next_worker_id() = 0;
  // A batch id (rota add --each) never handed out before in this store.
  virtual Result<int64_t> next_batch_id() = 0;

  virtual Result<std::vector<ScheduleRecord>> list_schedules() = 0;
  virtual Status put_schedule(const ScheduleRecord& schedule) = 0;  // insert or replace
  virtual Status delete_schedule(const std::string& name) = 0;
  // Unfinished tasks fired by any schedule: (schedule, task id).
  virtual Result<std::vector<std::pair<std::string, int64_t>>> unfinished_schedule_tasks() = 0;
  // The newest task per item of a schedule.
  virtual Result<std::vector<ItemRun>> item_runs(const std::string& schedule) = 0;
  // A schedule's newest tasks, newest first.
  virtual Result<std::vector<Task>> recent_schedule_tasks(const std::string& schedule,
                                                          int limit) = 0;

  virtual Result<std::vector<PoolRecord>> list_pools() = 0;
  virtual Status put_pool(const PoolRecord& pool) = 0;  // insert or replace
  virtual Status delete_pool(const std::string& name) = 0;

  virtual Result<std::vector<WatchRecord>> list_watches() = 0;
  virtual Status put_watch(const WatchRecord& watch) = 0;
  virtual Status delete_watch(const std::string& name) = 0;

  virtual std::string path() const = 0;
};

}  // namespace rota
