// The engine owns every task transition: adding, dispatching to workers, recording attempts,
// retries with backoff, dependencies, cancellation and waiting. Each transition updates the
// store (inside the turn's group commit), the in-memory counters and the event log together.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/clock.h"
#include "core/task.h"
#include "daemon/alerts.h"
#include "daemon/analyze.h"
#include "daemon/committer.h"
#include "daemon/metrics.h"
#include "daemon/pool.h"
#include "store/store.h"

namespace rota {

struct EngineOptions {
  std::string logs_dir;
  int64_t log_cap = 64LL << 20;
  int64_t kill_grace_ms = 5000;  // SIGTERM -> SIGKILL on timeout and cancel
  int64_t slow_after_ms = 15 * 60'000;
  int poison_after = 3;
  int64_t stall_after_ms = 60'000;
};

// Counts of tasks by state, for one queue or all.
using StateCounts = std::array<int64_t, kTaskStateCount>;

struct WaitResult {
  int64_t total = 0;
  int64_t finished = 0;
  int64_t succeeded = 0;
  std::vector<std::pair<int64_t, TaskState>> unsuccessful;  // finished, but not succeeded
  bool complete = false;
};

class Engine final : public PoolListener {
 public:
  Engine(boost::asio::io_context& io, Store& store, Committer& committer, const Clock& clock,
         EngineOptions options);
  ~Engine() override;

  // Loads counters and queues, and settles what a previous daemon left running: each such
  // attempt ends as `daemon_lost` and the task retries while attempts remain.
  Status recover();
  // `commands` runs command tasks; user pools come and go with add_pool/remove_pool.
  void attach(Pool& commands, Alerts& alerts, Metrics& metrics) {
    pool_ = &commands;
    pools_[commands.name()] = &commands;
    alerts_ = &alerts;
    metrics_ = &metrics;
  }
  void add_pool(Pool& pool) { pools_[pool.name()] = &pool; }
  // Before the pool is destroyed: its running tasks must have ended (Pool::shutdown).
  void remove_pool(const std::string& name) { pools_.erase(name); }
  // Queued tasks of a pool, in all its queues.
  int64_t queued_for(const std::string& pool) const;

  // How many attempts recover() found running, still waiting for their workers.
  int awaiting_reattach() const { return static_cast<int>(awaiting_reattach_.size()); }
  // Gives those workers `grace_ms` to reattach; then ends the rest as daemon_lost and runs
  // `done` (the pool fills the slots it kept for them).
  void await_reattach(int64_t grace_ms, std::function<void()> done);

  // Raises `queue_stalled` when tasks are ready but none has started or finished for
  // stall_after. The daemon calls it on its health timer.
  void check_stall(int64_t now_ms);
  // Records a daemon-level event (kind, detail) in the store's event log.
  void record(const std::string& kind, const std::string& detail);
  // Calls `observer` whenever a task reaches a terminal state (inside the turn's transaction).
  void on_task_finished(std::function<void(int64_t task, TaskState state)> observer) {
    finish_observers_.push_back(std::move(observer));
  }
  // Calls `wake` once, after the next commit that adds events.
  void follow_events(std::function<void()> wake);

  // The operations below write through the committer: the caller replies after commit.
  // Adds tasks; a spec whose --unique key is taken yields the existing task's id instead, and
  // its index goes into `duplicates` (if given).
  Result<std::vector<int64_t>> add(std::vector<TaskSpec> specs,
                                   std::vector<size_t>* duplicates = nullptr);
  // Cancels each task; `done` runs once every running one has stopped.
  void cancel(const std::vector<int64_t>& ids,
              std::function<void(Result<std::vector<int64_t>>)> done);
  Result<std::vector<int64_t>> retry(const std::vector<int64_t>& ids);
  Result<std::vector<int64_t>> retry_failed(const std::string& queue);
  Result<int64_t> clean(int64_t older_than_ms);
  Status set_queue(const std::string& name, std::optional<bool> paused, std::optional<int> limit);
  // Waits until every listed task (or, with `all`, every unfinished one) has finished, or
  // `timeout_ms` passed. Continue an earlier wait with its `wait_id`.
  void wait(std::vector<int64_t> ids, bool all, int64_t wait_id, int64_t timeout_ms,
            std::function<void(Result<std::pair<int64_t, WaitResult>>)> done);

  // Stops dispatching; running attempts end as they may and are handed back.
  void stop_dispatching() { accepting_ = false; }
  bool accepting() const { return accepting_; }

  StateCounts totals() const;
  // Tasks added and finished per minute over the last `minutes` minutes.
  double arrival_rate(int minutes) const { return arrivals_.rate(clock_.now_ms(), minutes); }
  double completion_rate(int minutes) const { return completions_.rate(clock_.now_ms(), minutes); }
  const std::map<std::string, StateCounts>& counts() const { return counts_; }
  std::vector<QueueInfo> queues() const;
  int64_t running_in(const std::string& queue) const;

  // PoolListener
  void on_worker_idle(Pool& pool, int64_t worker) override;
  void on_worker_answered(Pool& pool, int64_t worker) override;
  void on_worker_message(Pool& pool, int64_t worker, const Message& message) override;
  void on_worker_lost(Pool& pool, int64_t worker, int64_t task, const std::string& token,
                      const std::string& why, LossCause cause) override;
  void on_health_change(Pool& pool, const HealthChange& change) override;
  void on_protocol_error(Pool& pool, int64_t worker, const std::string& detail) override;
  bool on_worker_reattach(int64_t worker, int64_t task, const std::string& token) override;

 private:
  struct RunningAttempt {
    int64_t worker = 0;
    std::string token;
    Pool* pool = nullptr;  // null until its worker reattaches (after a daemon restart)
    Task task;             // as claimed: what ending the attempt needs, without reading it back
  };
  struct Waiter;

  Result<std::optional<int64_t>> unique_holder(const TaskSpec& spec, int64_t now);
  // Inserts the rows of add(); the ids, and the rows inserted (duplicates left out).
  Result<std::pair<std::vector<int64_t>, std::vector<NewTask>>> insert(
      std::vector<TaskSpec> specs, std::vector<size_t>* duplicates);
  void dispatch();
  // Claims up to `room` tasks for the worker and sends them after the commit. Clears `queues`
  // when they ran dry.
  Status start_on(Pool& pool, int64_t worker, int room, std::vector<std::string>& queues);
  std::vector<std::string> eligible_queues(const Pool& pool) const;
  Status end_attempt(int64_t task_id, Outcome outcome, std::optional<int> exit_code,
                     std::optional<int> signal, std::string error, bool retryable,
                     std::string result = {});
  Status move(const Task& task, TaskState to);
  void count(const std::string& pool, const std::string& queue, TaskState from, TaskState to);
  void load_counts(const std::vector<QueueStateCount>& counts);
  void record_event(int64_t task, int64_t worker, TaskState from, TaskState to, std::string detail);
  Status append_event(const Event& event);
  Status on_finished(int64_t task_id, TaskState state);
  Status settle_dependents(int64_t task_id);
  Status revive_dependents(int64_t task_id);
  TaskState ready_state(int64_t run_after_ms) const;
  void schedule_wake(int64_t run_after_ms);
  void on_wake();
  void settle_waiters(int64_t task_id, TaskState state);
  void answer(Waiter& waiter);
  void forget(int64_t waiter_id);
  void finish_reattach();
  Result<EnvPtr> env(int64_t env_id);
  std::string log_path(int64_t task_id) const;
  std::string new_token();

  boost::asio::io_context& io_;
  Store& store_;
  Committer& committer_;
  const Clock& clock_;
  EngineOptions options_;
  Pool* pool_ = nullptr;  // commands
  std::map<std::string, Pool*> pools_;
  Alerts* alerts_ = nullptr;
  Metrics* metrics_ = nullptr;
  MinuteCounter arrivals_;
  MinuteCounter completions_;
  int64_t last_progress_ms_ = 0;
  bool stalled_ = false;
  bool degraded_ = false;
  std::vector<std::function<void()>> event_followers_;
  std::vector<std::function<void(int64_t, TaskState)>> finish_observers_;
  bool followers_due_ = false;
  std::set<int64_t> awaiting_reattach_;
  boost::asio::steady_timer reattach_timer_;
  std::function<void()> reattach_done_;
  bool accepting_ = true;
  std::map<std::string, StateCounts> counts_;
  // Queued tasks by pool, then queue: what dispatch looks at.
  std::map<std::string, std::map<std::string, int64_t>> queued_;
  std::map<std::string, QueueInfo> queues_;
  std::unordered_map<int64_t, RunningAttempt> running_;
  std::map<std::string, int64_t> running_by_queue_;
  std::set<int64_t> cancelling_;
  // Tasks lost in a crash beside other tasks: each runs alone on a user's program until it
  // ends some other way, so that a crash it causes is pinned on it (and counts towards
  // poison). Read back from the attempts at a restart (Store::suspect_tasks).
  std::set<int64_t> suspects_;
  std::unordered_map<int64_t, EnvPtr> envs_;
  boost::asio::steady_timer wake_timer_;
  int64_t wake_at_ms_ = 0;  // 0: not armed
  std::map<int64_t, std::unique_ptr<Waiter>> waiters_;
  std::unordered_multimap<int64_t, int64_t> waiters_by_task_;  // task -> waiter id
  int64_t next_waiter_ = 1;
  std::mt19937_64 rng_;
};

}  // namespace rota
