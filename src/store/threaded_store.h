// The store on a thread of its own: SQLite's work runs on the second core while the daemon's
// loop goes on with the next worker's answers.
//
// The loop hands over, without waiting, what it writes on the hot path: the start of a
// transaction, the end of an attempt, events, moves between states, claims, and the commit
// (commit_async: its `done` runs on the loop once the commit is done). It waits for reads and
// for the few writes whose answer it needs (new tasks' ids, say). Everything runs in the order
// it was asked for, so a read sees every write asked before it.
//
// A write handed over that fails fails its transaction: the commit reports the error, and the
// store then refuses every write (store failures are sticky; the daemon acknowledges no new
// work).
//
// Claims are served from the queues' heads, read ahead 1,024 tasks at a time (QueueHeads), and
// a claim's row is written with its attempt's end when both fall in one transaction (most
// message tasks: one UPDATE instead of two); otherwise before anything else reads or writes,
// and before the commit.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "store/queue_heads.h"
#include "store/sqlite_store.h"
#include "store/store_thread.h"

namespace rota {

class ThreadedStore final : public Store {
 public:
  // Runs `fn` on the daemon's loop (boost::asio::post); called from the store's thread.
  using Deliver = std::function<void(std::function<void()> fn)>;

  ThreadedStore(std::unique_ptr<SqliteStore> store, Deliver deliver);
  // Runs what was handed over (an unfinished transaction is then rolled back by SQLite).
  ~ThreadedStore() override = default;

  Status begin() override;
  Status commit() override;
  void rollback() override;
  void commit_async(std::function<void(const Status&)> done, Waiting waiting) override;
  void after_pending(std::function<void()> done) override;
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
  Result<std::optional<std::tuple<int64_t, TaskState, int64_t>>> find_unique(
      const std::string& key) override;
  Result<std::vector<AttemptRecord>> attempts_since(int64_t since_ms) override;
  Result<int64_t> count_attempts(int64_t task_id, Outcome outcome) override;
  Result<std::vector<int64_t>> suspect_tasks() override;
  Result<std::optional<std::string>> get_setting(const std::string& key) override;
  Status put_setting(const std::string& key, const std::string& value) override;
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
  std::string path() const override { return path_; }

 private:
  static constexpr size_t kReadAheadTasks = 4096;
  static constexpr size_t kReadAheadBytes = 4 << 20;
  // Tasks that became queued are looked up at the next claim; past this many the heads are
  // dropped instead (read again when next claimed from).
  static constexpr size_t kMaxRequeued = 10'000;

  struct Claim {
    int64_t id = 0;
    int64_t worker = 0;
    std::string token;
    int64_t started_at_ms = 0;
  };

  // Waits for `fn` on the store's thread, once the claims not written yet are handed over.
  template <class Fn>
  auto read(Fn&& fn);
  // The same for a write, which a failed transaction refuses.
  template <class Fn>
  auto write(Fn&& fn);
  // Hands a write over without waiting, after the ends and events asked for before it; if it
  // fails, so does its transaction.
  void post(std::function<Status()> op);
  void post_now(std::function<Status()> op);
  void post_ends();
  // On the store's thread: the commit, or the rollback of a failed transaction.
  Status commit_here();
  void write_claims();
  Status wait_outside_transaction();
  Status read_ahead(std::string_view pool, const std::string& queue, size_t need);
  void read_on(std::string_view pool, const std::string& queue);
  static bool read_to_end(const std::vector<Task>& tasks, size_t asked);
  // A task became queued other than by an insert into an empty head: it goes into its
  // queue's head at the next claim, if it sorts before the head's end.
  void requeued(int64_t id);
  Status settle_requeued();
  // Forgets what memory holds of a transaction that is gone.
  void forget();

  // The loop's.
  std::string path_;
  Deliver deliver_;
  QueueHeads heads_{kReadAheadTasks, kReadAheadBytes};
  std::unordered_map<int64_t, Claim> unwritten_;
  std::vector<AttemptEnd> ends_;  // not handed over yet
  std::vector<Event> events_;
  std::vector<int64_t> requeued_;
  std::set<std::pair<std::string, std::string>> reading_on_;  // (pool, queue) read further
  bool open_ = false;        // a transaction was begun and not yet committed
  int ends_on_the_way_ = 0;  // commits' and after_pending's ends not yet run on the loop
  // The store's thread's.
  std::unique_ptr<SqliteStore> store_;
  std::optional<Error> failed_;
  StoreThread thread_;  // last: stopped (after running what it was given) before the rest goes
};

}  // namespace rota
