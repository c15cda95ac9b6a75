// The embedded store: one SQLite file in WAL mode.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>

#include "store/queue_heads.h"  // task_footprint
#include "store/sqlite_db.h"
#include "store/store.h"

namespace rota {

inline constexpr int kSchemaVersion = 9;

class SqliteStore final : public Store {
 public:
  // Opens (creating if absent) the store at `path` and brings its schema up to date.
  // A file that fails PRAGMA quick_check, or whose schema is newer than this binary, is refused
  // with kCorruption and left byte-for-byte as it was: it is checked through a read-only
  // connection before anything opens it for writing.
  static Result<std::unique_ptr<SqliteStore>> open(const std::string& path, Durability durability);

  // Checks an existing file without changing it: integrity and schema version.
  static Status check(const std::string& path);

  Status begin() override;
  Status commit() override;
  void rollback() override;
  Status savepoint() override;
  Status release_savepoint() override;
  void rollback_to_savepoint() override;

  Result<int64_t> intern_env(const Env& env) override;
  Result<Env> get_env(int64_t env_id) override;
  Result<std::vector<int64_t>> insert_tasks(std::span<const NewTask> tasks) override;
  Result<std::optional<Task>> get_task(int64_t id) override;
  Result<std::vector<Task>> list_tasks(const TaskFilter& filter) override;
  Result<std::vector<Attempt>> list_attempts(int64_t task_id) override;
  Result<std::vector<std::pair<int64_t, TaskState>>> task_states(
      std::span<const int64_t> ids) override;
  Result<std::vector<Task>> claim(std::string_view pool, std::span<const std::string> queues,
                                  int limit, int64_t worker, const std::string& token,
                                  int64_t now_ms) override;
  Status finish_attempt(const AttemptEnd& end) override;
  Status move_task(int64_t id, TaskState to, int64_t now_ms) override;
  Status retry_task(int64_t id, TaskState to, int extra_attempts) override;
  Result<std::vector<int64_t>> due_tasks(int64_t now_ms, int limit) override;
  Result<std::optional<int64_t>> next_run_after() override;
  Result<std::vector<std::pair<int64_t, TaskState>>> dependents(int64_t id) override;
  Result<std::vector<TaskState>> dependency_states(int64_t id) override;
  Result<std::vector<Task>> tasks_in_state(TaskState state) override;
  Result<std::vector<QueueStateCount>> count_tasks() override;
  Result<std::vector<int64_t>> clean(int64_t cutoff_ms) override;
  Result<std::vector<QueueInfo>> list_queues() override;
  Status put_queue(const QueueInfo& queue) override;
  Status append_event(const Event& event) override;
  Result<std::vector<Event>> list_events(int64_t after_id, int limit) override;
  Result<int64_t> last_event_id() override;
  Result<int64_t> next_worker_id() override;
  Result<int64_t> next_batch_id() override;
  Result<std::vector<ScheduleRecord>> list_schedules() override;
  Status put_schedule(const ScheduleRecord& schedule) override;
  Status delete_schedule(const std::string& name) override;
  Result<std::vector<std::pair<std::string, int64_t>>> unfinished_schedule_tasks() override;
  Result<std::vector<ItemRun>> item_runs(const std::string& schedule) override;
  Result<std::vector<Task>> recent_schedule_tasks(const std::string& schedule, int limit) override;
  Result<std::vector<PoolRecord>> list_pools() override;
  Status put_pool(const PoolRecord& pool) override;
  Status delete_pool(const std::string& name) override;
  Result<std::vector<WatchRecord>> list_watches() override;
  Status put_watch(const WatchRecord& watch) override;
  Status delete_watch(const std::string& name) override;
  Result<int64_t> count_attempts(int64_t task_id, Outcome outcome) override;
  Result<std::vector<int64_t>> suspect_tasks() override;
  Result<std::vector<AttemptRecord>> attempts_since(int64_t since_ms) override;
  Result<std::optional<std::tuple<int64_t, TaskState, int64_t>>> find_unique(
      const std::string& key) override;
  Result<std::optional<std::string>> get_setting(const std::string& key) override;
  Status put_setting(const std::string& key, const std::string& value) override;
  std::string path() const override { return path_; }

  // The parts of a claim, for a store that serves claims from memory (ThreadedStore):
  // The first queued tasks of (pool, queue) in claim order: up to `max_tasks`, but no more
  // than `need` once they hold `max_bytes` (task_footprint).
  Result<std::vector<Task>> queued_head(std::string_view pool, const std::string& queue,
                                        size_t need, size_t max_tasks, size_t max_bytes);
  // The same, from after the task (priority, id) on: what follows a head in memory.
  Result<std::vector<Task>> queued_after(std::string_view pool, const std::string& queue,
                                         int priority, int64_t id, size_t max_tasks,
                                         size_t max_bytes);
  // Writes a claim: the task is running on `worker` with `token`, one attempt more.
  Status write_claim(int64_t id, int64_t worker, const std::string& token, int64_t started_at_ms);

  // For failure tests: the file may grow by `pages` more pages and no further, so that a write
  // past that fails as on a full disk (SQLITE_FULL).
  Status cap_growth(int64_t pages);

 private:
  SqliteStore(std::string path, std::unique_ptr<SqliteDb> db)
      : path_(std::move(path)), db_(std::move(db)) {}
  static Status create(const std::string& path);
  Status migrate();
  Result<Task> read_task(Stmt& stmt);
  // Reads the rows of a head (at most `limit`), `need` of them and then until `max_bytes`.
  Result<std::vector<Task>> read_head(Stmt& stmt, size_t limit, size_t need, size_t max_bytes);
  // Reads every row of `stmt` with the task's dependencies.
  Result<std::vector<Task>> read_tasks(Stmt& stmt);
  // Writes the events appended in this transaction, many rows per statement.
  Status flush_events();

  std::string path_;
  std::unique_ptr<SqliteDb> db_;
  std::unordered_map<std::string, int64_t> env_ids_;  // env JSON -> id
  // Events appended inside a transaction, written before anything reads events and before the
  // commit (a message task makes two: one row each cost more than the task's own update).
  std::vector<Event> pending_events_;
};

}  // namespace rota
