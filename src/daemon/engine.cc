#include "daemon/engine.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>

#include "core/backoff.h"
#include "core/duration.h"

namespace rota {
namespace asio = boost::asio;

#define TRY(expr) \
  if (auto r_ = (expr); !r_) return std::unexpected(r_.error())

namespace {

constexpr int64_t kWaiterIdleMs = 60'000;

}  // namespace

struct Engine::Waiter {
  explicit Waiter(asio::io_context& io) : timer(io) {}
  int64_t id = 0;
  std::set<int64_t> pending;
  WaitResult result;
  std::function<void(Result<std::pair<int64_t, WaitResult>>)> reply;  // a parked request
  asio::steady_timer timer;
};

Engine::Engine(asio::io_context& io, Store& store, Committer& committer, const Clock& clock,
               EngineOptions options)
    : io_(io),
      store_(store),
      committer_(committer),
      clock_(clock),
      options_(std::move(options)),
      reattach_timer_(io),
      wake_timer_(io),
      rng_(std::random_device{}()) {
  committer_.set_before_commit([this] { dispatch(); });
}

Engine::~Engine() = default;

Status Engine::recover() {
  auto queues = store_.list_queues();
  if (!queues) return std::unexpected(queues.error());
  for (auto& q : *queues) queues_[q.name] = q;
  auto counts = store_.count_tasks();
  if (!counts) return std::unexpected(counts.error());
  load_counts(*counts);

  // What was running when the previous daemon went away waits for its worker to reattach.
  // A user's program cannot reattach (it was stopped with the daemon): its tasks run again.
  auto running = store_.tasks_in_state(TaskState::kRunning);
  if (!running) return std::unexpected(running.error());
  std::vector<int64_t> lost;
  for (const Task& t : *running) {
    running_[t.id] = {t.worker.value_or(0), t.token, nullptr, t};
    ++running_by_queue_[t.queue];
    if (t.is_message()) {
      lost.push_back(t.id);
    } else {
      awaiting_reattach_.insert(t.id);
    }
  }
  if (!lost.empty()) {
    TRY(committer_.write());
    for (int64_t id : lost) {
      TRY(end_attempt(id, Outcome::kDaemonLost, std::nullopt, std::nullopt,
                      "daemon_lost: its pool's worker stopped with the previous daemon", true));
    }
  }
  if (!running->empty()) {
    spdlog::info(
        "recovery: {} task(s) were running when the previous daemon stopped; waiting "
        "for their workers to reattach",
        running->size());
  }
  auto suspects = store_.suspect_tasks();
  if (!suspects) return std::unexpected(suspects.error());
  suspects_.insert(suspects->begin(), suspects->end());
  auto next = store_.next_run_after();
  if (!next) return std::unexpected(next.error());
  if (*next) schedule_wake(**next);
  return {};
}

// ---- adding ----------------------------------------------------------------------------

TaskState Engine::ready_state(int64_t run_after_ms) const {
  return run_after_ms > clock_.now_ms() ? TaskState::kScheduled : TaskState::kQueued;
}

// The task that a --unique key already names: unfinished, or finished within unique_for.
Result<std::optional<int64_t>> Engine::unique_holder(const TaskSpec& spec, int64_t now) {
  if (spec.unique_key.empty()) return std::optional<int64_t>();
  auto found = store_.find_unique(spec.unique_key);
  if (!found) return std::unexpected(found.error());
  if (!*found) return std::optional<int64_t>();
  auto [id, state, finished_at] = **found;
  bool holds =
      !is_terminal(state) || (spec.unique_for_ms > 0 && finished_at >= now - spec.unique_for_ms);
  return holds ? std::optional<int64_t>(id) : std::nullopt;
}

Result<std::vector<int64_t>> Engine::add(std::vector<TaskSpec> specs,
                                         std::vector<size_t>* duplicates) {
  if (!accepting_) return make_error(Code::kUnavailable, "the daemon is stopping");
  TRY(committer_.write());
  // All of the batch or none of it: the counters change only once every row is in.
  TRY(store_.savepoint());
  auto added = insert(std::move(specs), duplicates);
  if (!added) {
    store_.rollback_to_savepoint();
    return std::unexpected(added.error());
  }
  TRY(store_.release_savepoint());
  int64_t now = clock_.now_ms();
  arrivals_.add(now, static_cast<int64_t>(added->second.size()));
  for (const NewTask& row : added->second) {
    ++counts_[row.spec.queue][static_cast<int>(row.state)];
    if (row.state == TaskState::kQueued) ++queued_[row.spec.pool][row.spec.queue];
    if (row.state == TaskState::kScheduled) schedule_wake(row.run_after_ms);
  }
  return std::move(added->first);
}

Result<std::pair<std::vector<int64_t>, std::vector<NewTask>>> Engine::insert(
    std::vector<TaskSpec> specs, std::vector<size_t>* duplicates) {
  int64_t now = clock_.now_ms();
  std::vector<NewTask> rows;
  rows.reserve(specs.size());
  std::vector<int64_t> ids(specs.size(), 0);
  std::vector<size_t> row_of;  // spec index of each row
  EnvPtr last_env;
  int64_t last_env_id = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    TaskSpec& spec = specs[i];
    auto holder = unique_holder(spec, now);
    if (!holder) return std::unexpected(holder.error());
    if (*holder) {
      ids[i] = **holder;
      if (duplicates) duplicates->push_back(i);
      continue;
    }
    // Two tasks of one batch with one key: the first one holds it.
    if (!spec.unique_key.empty()) {
      auto same = std::find_if(row_of.begin(), row_of.end(),
                               [&](size_t k) { return specs[k].unique_key == spec.unique_key; });
      if (same != row_of.end()) {
        ids[i] = -static_cast<int64_t>(*same) - 1;  // resolved to the first one's id below
        if (duplicates) duplicates->push_back(i);
        continue;
      }
    }
    NewTask row;
    row.created_at_ms = now;
    row.run_after_ms = spec.delay_ms > 0 ? now + spec.delay_ms : 0;
    row.state = ready_state(row.run_after_ms);
    if (!spec.after.empty()) {
      auto states = store_.task_states(spec.after);
      if (!states) return std::unexpected(states.error());
      for (int64_t dep : spec.after) {
        auto it = std::find_if(states->begin(), states->end(),
                               [dep](const auto& s) { return s.first == dep; });
        if (it == states->end()) {
          return make_error(Code::kInvalidArgument,
                            fmt::format("--after: task {} does not exist", dep), "after");
        }
      }
      bool all_ok = std::all_of(states->begin(), states->end(),
                                [](const auto& s) { return s.second == TaskState::kSucceeded; });
      bool doomed = std::any_of(states->begin(), states->end(),
                                [](const auto& s) { return ended_badly(s.second); });
      if (doomed) {
        row.state = TaskState::kSkipped;
      } else if (!all_ok) {
        row.state = TaskState::kWaiting;
      }
    }
    // The tasks of a batch share one environment: intern it once.
    if (spec.command.env != last_env || last_env_id == 0) {
      auto env_id = store_.intern_env(spec.command.env ? *spec.command.env : Env{});
      if (!env_id) return std::unexpected(env_id.error());
      last_env = spec.command.env;
      last_env_id = *env_id;
    }
    row.env_id = last_env_id;
    row.spec = std::move(spec);
    rows.push_back(std::move(row));
    row_of.push_back(i);
  }
  auto inserted = store_.insert_tasks(rows);
  if (!inserted) return std::unexpected(inserted.error());
  for (size_t r = 0; r < rows.size(); ++r) ids[row_of[r]] = (*inserted)[r];
  for (int64_t& id : ids) {
    if (id < 0) id = ids[static_cast<size_t>(-id - 1)];
  }
  return std::pair{std::move(ids), std::move(rows)};
}

// ---- dispatch --------------------------------------------------------------------------

std::vector<std::string> Engine::eligible_queues(const Pool& pool) const {
  std::vector<std::string> out;
  auto by_queue = queued_.find(pool.name());
  if (by_queue == queued_.end()) return out;
  const auto& serves = pool.options().queues;
  for (const auto& [name, queued] : by_queue->second) {
    if (queued <= 0) continue;
    if (!serves.empty() && std::find(serves.begin(), serves.end(), name) == serves.end()) continue;
    auto q = queues_.find(name);
    if (q != queues_.end()) {
      if (q->second.paused) continue;
      if (q->second.limit > 0 && running_in(name) >= q->second.limit) continue;
    }
    out.push_back(name);
  }
  return out;
}

int64_t Engine::running_in(const std::string& queue) const {
  auto it = running_by_queue_.find(queue);
  return it == running_by_queue_.end() ? 0 : it->second;
}

int64_t Engine::queued_for(const std::string& pool) const {
  int64_t n = 0;
  if (auto it = queued_.find(pool); it != queued_.end()) {
    for (const auto& [queue, queued] : it->second) n += queued;
  }
  return n;
}

// Runs once per loop turn, inside the turn's transaction: workers with room claim ready tasks,
// as many at once as each has room for. The task messages go out after the commit, so a worker
// never runs a claim that is not durable.
void Engine::dispatch() {
  if (!accepting_ || !committer_.health()) return;
  for (auto& [name, pool] : pools_) {
    auto free = pool->free_workers();
    if (free.empty()) continue;
    auto queues = eligible_queues(*pool);
    for (auto [worker, room] : free) {
      if (queues.empty()) break;
      if (auto r = start_on(*pool, worker, room, queues); !r) {
        spdlog::error("dispatch: {}", r.error().message);
        return;
      }
    }
  }
}

Status Engine::start_on(Pool& pool, int64_t worker, int room, std::vector<std::string>& queues) {
  TRY(committer_.write());
  // A queue limit caps the claim: with one queue, what is left under it.
  if (queues.size() == 1) {
    auto q = queues_.find(queues.front());
    if (q != queues_.end() && q->second.limit > 0) {
      room = static_cast<int>(std::min<int64_t>(room, q->second.limit - running_in(q->first)));
    }
  } else if (room > 1) {
    // Several queues, one with a limit: one task at a time keeps every limit exact.
    bool limited = std::any_of(queues.begin(), queues.end(), [this](const std::string& name) {
      auto q = queues_.find(name);
      return q != queues_.end() && q->second.limit > 0;
    });
    if (limited) room = 1;
  }
  if (room <= 0) {
    queues = eligible_queues(pool);
    return {};
  }
  std::string token = new_token();
  int64_t now = clock_.now_ms();
  auto claimed = store_.claim(pool.name(), queues, room, worker, token, now);
  if (!claimed) return std::unexpected(claimed.error());
  if (claimed->empty()) {
    queues.clear();
    return {};
  }
  std::vector<Message> messages;
  messages.reserve(claimed->size());
  for (Task& t : *claimed) {
    count(t.pool, t.queue, TaskState::kQueued, TaskState::kRunning);
    if (metrics_) {
      int64_t ready_since = std::max(t.created_at_ms, t.run_after_ms);
      metrics_->task_started(t.queue, std::max<int64_t>(0, t.started_at_ms - ready_since) / 1000.0);
    }
    record_event(t.id, worker, TaskState::kQueued, TaskState::kRunning, "");
    ++running_by_queue_[t.queue];
    Message m{.type = MessageType::kTask, .token = token, .task = t.id};
    m.attempt = t.attempts;
    m.deadline_ms = t.timeout_ms > 0 ? now + t.timeout_ms : 0;
    m.grace_ms = options_.kill_grace_ms;
    if (t.is_message()) {
      m.payload = t.payload;
    } else {
      auto task_env = env(t.env_id);
      if (!task_env) return std::unexpected(task_env.error());
      m.command = t.command;
      m.command->env = std::move(*task_env);
      m.command->env_id = t.env_id;
      m.log_path = log_path(t.id);
      m.log_cap = options_.log_cap;
    }
    // Reserve the worker's place now; the message leaves after the commit.
    pool.reserve(worker, t.id, token,
                 t.slow_after_ms > 0 ? t.slow_after_ms : options_.slow_after_ms, m.deadline_ms,
                 suspects_.contains(t.id));
    running_[t.id] = {worker, token, &pool, std::move(t)};
    messages.push_back(std::move(m));
  }
  last_progress_ms_ = now;
  queues = eligible_queues(pool);
  if (pool.runs_program()) {
    // A user's program cannot outlive this daemon, so a message it got before the claim was
    // durable changes nothing: if the commit is lost, so is the program's answer, and the task
    // is still queued in the store. Sending now spares each task a commit's wait.
    for (const Message& m : messages) pool.send(worker, m);
    return {};
  }
  // A command worker outlives the daemon and reattaches with its attempt: that attempt must be
  // in the store before the worker starts it.
  committer_.after_commit([&pool, worker, messages = std::move(messages)](const Status& ok) {
    if (!ok) return;
    for (const Message& m : messages) pool.send(worker, m);
  });
  return {};
}

// A worker's answers are in and it has room: it gets its next tasks now, in one write. Were
// they claimed at the end of the turn, with the other workers' answers, every worker would
// then run at once while the daemon waits for the first of them.
void Engine::on_worker_answered(Pool& pool, int64_t worker) {
  if (!accepting_ || !committer_.health()) return;
  auto queues = eligible_queues(pool);
  if (queues.empty()) return;
  if (auto r = start_on(pool, worker, pool.room(worker), queues); !r) {
    spdlog::error("dispatch: {}", r.error().message);
    return;
  }
  pool.flush(worker);
}

void Engine::on_worker_idle(Pool&, int64_t) {
  if (accepting_) committer_.poke();
}

// ---- attempts --------------------------------------------------------------------------

void Engine::on_worker_message(Pool& pool, int64_t worker, const Message& m) {
  if (!pool.runs_program()) {
    // The worker keeps a result until it is acknowledged, once it is durable (or rejected).
    committer_.after_commit(
        [&pool, worker, task = m.task, token = m.token](const Status& ok) {
          if (ok)
            pool.send(worker, Message{.type = MessageType::kAck, .token = token, .task = task});
        },
        Wait::kBatched);
  }
  auto it = running_.find(m.task);
  if (it == running_.end() || it->second.token != m.token || it->second.worker != worker) {
    // Fencing: a result for an attempt that was already given up is never recorded.
    spdlog::warn("worker {}: rejected a {} for task {} (stale attempt token)", worker,
                 message_type_name(m.type), m.task);
    if (committer_.write()) {
      append_event({clock_.now_ms(), "rejected", m.task, worker, "", "",
                    fmt::format("stale {} from worker {}", message_type_name(m.type), worker)});
    }
    return;
  }
  Status r;
  std::string result = m.result;
  std::string note = m.error;
  if (result.size() > kMaxResultBytes) {
    note = fmt::format("result: {} bytes is over the {} KiB limit; not kept", result.size(),
                       kMaxResultBytes / 1024);
    result.clear();
  }
  if (m.type == MessageType::kDone) {
    r = end_attempt(m.task, Outcome::kSucceeded, m.exit_code, m.signal, note, true, result);
  } else {
    Outcome outcome = Outcome::kFailed;
    std::string error = m.error;
    if (m.reason == FailReason::kTimeout) {
      outcome = Outcome::kTimedOut;
    } else if (m.reason == FailReason::kCancelled) {
      outcome = Outcome::kCancelled;
    }
    if (error.empty()) error = "failed (the worker gave no error)";
    if (result.size() < m.result.size()) error += "; " + note;
    r = end_attempt(m.task, outcome, m.exit_code, m.signal, error, m.retryable, result);
  }
  if (!r) spdlog::error("task {}: {}", m.task, r.error().message);
}

void Engine::on_worker_lost(Pool&, int64_t worker, int64_t task, const std::string& token,
                            const std::string& why, LossCause cause) {
  if (task == 0) return;
  auto it = running_.find(task);
  if (it == running_.end() || it->second.token != token) return;
  // A task whose attempts keep killing their worker is poison: it fails instead of taking
  // down worker after worker.
  if (cause == LossCause::kRestartedByHand || cause == LossCause::kNeverSent) {
    // A person restarted the worker, or the worker never got the task (it waited to run
    // alone): the task goes back in line, its attempt not charged.
    auto r = end_attempt(task, Outcome::kHandedBack, std::nullopt, std::nullopt, why, true);
    if (!r) spdlog::error("task {}: {}", task, r.error().message);
    return;
  }
  if (cause == LossCause::kDiedWithOthers) {
    suspects_.insert(task);
    auto r = end_attempt(task, Outcome::kWorkerLostShared, std::nullopt, std::nullopt,
                         "worker_lost: " + why + " (other tasks were in flight on it)", true);
    if (!r) spdlog::error("task {}: {}", task, r.error().message);
    return;
  }
  auto lost_before = store_.count_attempts(task, Outcome::kWorkerLost);
  int64_t lost = (lost_before ? *lost_before : 0) + 1;
  Status r;
  if (lost >= options_.poison_after) {
    std::string error =
        fmt::format("poison: its attempts killed their worker {} times (last: {})", lost, why);
    r = end_attempt(task, Outcome::kPoison, std::nullopt, std::nullopt, error, false);
    if (alerts_) {
      alerts_->raise("poison_task", fmt::format("task {} killed its worker {} times", task, lost),
                     {{"task", task}, {"worker", worker}});
    }
  } else {
    r = end_attempt(task, Outcome::kWorkerLost, std::nullopt, std::nullopt, "worker_lost: " + why,
                    true);
  }
  if (!r) spdlog::error("task {}: {}", task, r.error().message);
}

void Engine::await_reattach(int64_t grace_ms, std::function<void()> done) {
  reattach_done_ = std::move(done);
  if (awaiting_reattach_.empty()) return finish_reattach();
  reattach_timer_.expires_after(std::chrono::milliseconds(grace_ms));
  reattach_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) finish_reattach();
  });
}

// The grace is over (or everyone came back): what no worker claimed was lost with the daemon.
void Engine::finish_reattach() {
  reattach_timer_.cancel();
  auto lost = std::move(awaiting_reattach_);
  awaiting_reattach_.clear();
  // Their workers are gone or hung: whatever the attempts still run must not go on beside
  // the retries.
  std::vector<std::string> tokens;
  for (int64_t id : lost) {
    if (auto it = running_.find(id); it != running_.end()) tokens.push_back(it->second.token);
  }
  sweep_attempt_processes(io_, std::move(tokens));
  for (int64_t id : lost) {
    auto r =
        end_attempt(id, Outcome::kDaemonLost, std::nullopt, std::nullopt,
                    "daemon_lost: its worker did not come back after the daemon restarted", true);
    if (!r) spdlog::error("task {}: {}", id, r.error().message);
  }
  if (!lost.empty())
    spdlog::warn("recovery: {} task(s) lost with the previous daemon", lost.size());
  if (reattach_done_) {
    auto done = std::move(reattach_done_);
    reattach_done_ = nullptr;
    done();
  }
}

bool Engine::on_worker_reattach(int64_t worker, int64_t task, const std::string& token) {
  auto it = running_.find(task);
  bool ours = task != 0 && awaiting_reattach_.count(task) && it != running_.end() &&
              it->second.worker == worker && it->second.token == token;
  if (committer_.write()) {
    (void)append_event({clock_.now_ms(), "worker", task, worker, "", "",
                        ours ? "reattached after a daemon restart"
                             : "reattach refused: not the task's current attempt"});
  }
  if (!ours) return false;
  it->second.pool = pool_;
  awaiting_reattach_.erase(task);
  if (awaiting_reattach_.empty()) {
    // Not from inside the pool's adoption: the last one back must get its slot first.
    asio::post(io_, [this] {
      if (reattach_done_) finish_reattach();
    });
  }
  return true;
}

void Engine::on_protocol_error(Pool& pool, int64_t worker, const std::string& detail) {
  if (committer_.write()) {
    (void)append_event({clock_.now_ms(), "protocol", 0, worker, "", "",
                        fmt::format("pool {}: {}", pool.name(), detail)});
  }
}

void Engine::on_health_change(Pool& pool, const HealthChange& c) {
  std::string where = pool.runs_program() ? fmt::format("pool {} slot {}", pool.name(), c.slot)
                                          : fmt::format("slot {}", c.slot);
  std::string detail = fmt::format("{}{}{}", where, c.detail.empty() ? "" : ": ", c.detail);
  if (committer_.write()) {
    (void)append_event({clock_.now_ms(), "worker", 0, c.worker, worker_health_name(c.from),
                        worker_health_name(c.to), detail});
  }
  if (!alerts_) return;
  nlohmann::json who = {{"worker", c.worker}, {"slot", c.slot}, {"pool", pool.name()}};
  switch (c.to) {
    case WorkerHealth::kDead:
      alerts_->raise("worker_dead", fmt::format("worker {} is dead: {}", c.worker, c.detail), who);
      break;
    case WorkerHealth::kRecovering:
      if (metrics_) metrics_->worker_restarted();
      alerts_->raise("worker_restarted", fmt::format("{}: {}", where, c.detail), who);
      break;
    case WorkerHealth::kGivenUp:
      alerts_->raise("slot_given_up", fmt::format("{} given up: {}", where, c.detail), who);
      if (!pool.runs_program() && !degraded_) {
        degraded_ = true;
        alerts_->raise("pool_degraded", "the commands pool is degraded: a slot was given up",
                       {{"pool", "commands"}});
      } else if (pool.runs_program()) {
        alerts_->raise("pool_degraded",
                       fmt::format("pool {} is degraded: a slot was given up", pool.name()),
                       {{"pool", pool.name()}});
      }
      break;
    default:
      break;
  }
}

void Engine::check_stall(int64_t now_ms) {
  if (pool_ && !pool_->degraded()) degraded_ = false;
  int64_t ready = totals()[static_cast<int>(TaskState::kQueued)];
  if (ready == 0 || !accepting_) {
    stalled_ = false;
    last_progress_ms_ = now_ms;
    return;
  }
  if (last_progress_ms_ == 0) last_progress_ms_ = now_ms;
  if (stalled_ || now_ms - last_progress_ms_ < options_.stall_after_ms) return;
  stalled_ = true;
  if (alerts_) {
    alerts_->raise("queue_stalled",
                   fmt::format("{} tasks are ready but none started or finished for {}", ready,
                               format_duration_ms(now_ms - last_progress_ms_)),
                   {{"ready", ready}});
  }
}

void Engine::record(const std::string& kind, const std::string& detail) {
  if (!committer_.write()) return;
  (void)append_event({clock_.now_ms(), kind, 0, 0, "", "", detail});
}

// Every event goes through here, so that followers (`rota events --follow`) hear of it once
// it is committed.
Status Engine::append_event(const Event& event) {
  TRY(store_.append_event(event));
  if (!event_followers_.empty() && !followers_due_) {
    followers_due_ = true;
    committer_.after_commit(
        [this](const Status&) {
          followers_due_ = false;
          auto followers = std::move(event_followers_);
          event_followers_.clear();
          for (auto& f : followers) f();
        },
        Wait::kBatched);
  }
  return {};
}

void Engine::follow_events(std::function<void()> wake) {
  event_followers_.push_back(std::move(wake));
}

Status Engine::end_attempt(int64_t task_id, Outcome outcome, std::optional<int> exit_code,
                           std::optional<int> signal, std::string error, bool retryable,
                           std::string result) {
  TRY(committer_.write());
  auto node = running_.extract(task_id);
  if (node.empty()) return {};
  RunningAttempt& attempt = node.mapped();
  Task& t = attempt.task;
  --running_by_queue_[t.queue];

  bool user_cancel = cancelling_.erase(task_id) > 0;
  // A cancelled task stays cancelled, however its attempt ended (its worker may have died).
  if (user_cancel && outcome != Outcome::kSucceeded) outcome = Outcome::kCancelled;
  if ((outcome == Outcome::kCancelled && !user_cancel) ||
      (!accepting_ && outcome == Outcome::kDaemonLost)) {
    // Not asked for by a user: the daemon is stopping and hands the attempt back.
    outcome = Outcome::kHandedBack;
  }
  if (!retryable) t.max_attempts = t.attempts;
  if (outcome == Outcome::kTimedOut) {
    error = fmt::format("timeout: killed after {}", format_duration_ms(t.timeout_ms));
  }
  AttemptEnd end{.task_id = task_id,
                 .attempt = t.attempts,
                 .worker = attempt.worker,
                 .started_at_ms = t.started_at_ms,
                 .outcome = outcome,
                 .exit_code = exit_code,
                 .signal = signal,
                 .error = std::move(error),
                 .finished_at_ms = clock_.now_ms(),
                 .result = std::move(result)};
  end.to = state_after_attempt(t, outcome);
  if (outcome == Outcome::kHandedBack) {
    end.handed_back = true;
    end.error.clear();  // nothing went wrong with the task
  } else if (end.to == TaskState::kScheduled) {
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    int64_t delay = backoff_delay_ms(t.backoff, t.attempts, unit(rng_));
    end.run_after_ms = end.finished_at_ms + delay;
    if (delay <= 0) end.to = TaskState::kQueued;
  }
  TRY(store_.finish_attempt(end));
  if (metrics_) {
    metrics_->attempt_ended(t.queue,
                            std::max<int64_t>(0, end.finished_at_ms - t.started_at_ms) / 1000.0);
    if (is_terminal(end.to)) metrics_->task_finished(t.queue, state_name(end.to));
    if (!is_terminal(end.to) && !end.handed_back) metrics_->task_retried(t.queue);
  }
  last_progress_ms_ = end.finished_at_ms;
  stalled_ = false;
  count(t.pool, t.queue, TaskState::kRunning, end.to);
  record_event(task_id, attempt.worker, TaskState::kRunning, end.to,
               outcome == Outcome::kSucceeded ? "" : end.error);
  if (end.to == TaskState::kScheduled) schedule_wake(end.run_after_ms);
  // A suspect stays one while it only loses its workers (or is handed back).
  if (is_terminal(end.to) || (outcome != Outcome::kWorkerLostShared &&
                              outcome != Outcome::kWorkerLost && !end.handed_back)) {
    suspects_.erase(task_id);
  }
  if (is_terminal(end.to)) TRY(on_finished(task_id, end.to));
  return {};
}

// ---- transitions -----------------------------------------------------------------------

Status Engine::move(const Task& task, TaskState to) {
  TRY(committer_.write());
  TRY(store_.move_task(task.id, to, clock_.now_ms()));
  count(task.pool, task.queue, task.state, to);
  if (metrics_ && is_terminal(to)) metrics_->task_finished(task.queue, state_name(to));
  record_event(task.id, 0, task.state, to, "");
  if (to == TaskState::kScheduled) schedule_wake(task.run_after_ms);
  if (is_terminal(to)) TRY(on_finished(task.id, to));
  return {};
}

void Engine::count(const std::string& pool, const std::string& queue, TaskState from,
                   TaskState to) {
  auto& c = counts_[queue];
  --c[static_cast<int>(from)];
  ++c[static_cast<int>(to)];
  if (from == TaskState::kQueued) --queued_[pool][queue];
  if (to == TaskState::kQueued) ++queued_[pool][queue];
}

void Engine::load_counts(const std::vector<QueueStateCount>& counts) {
  counts_.clear();
  queued_.clear();
  for (const auto& c : counts) {
    counts_[c.queue][static_cast<int>(c.state)] += c.count;
    if (c.state == TaskState::kQueued) queued_[c.pool][c.queue] += c.count;
  }
}

void Engine::record_event(int64_t task, int64_t worker, TaskState from, TaskState to,
                          std::string detail) {
  auto r = append_event(
      {clock_.now_ms(), "task", task, worker, state_name(from), state_name(to), std::move(detail)});
  if (!r) spdlog::error("event: {}", r.error().message);
}

Status Engine::on_finished(int64_t task_id, TaskState state) {
  completions_.add(clock_.now_ms());
  settle_waiters(task_id, state);
  for (auto& observer : finish_observers_) observer(task_id, state);
  // Only a waiting task can depend on an unfinished one.
  if (totals()[static_cast<int>(TaskState::kWaiting)] == 0) return {};
  return settle_dependents(task_id);
}

// A finished task releases or dooms the tasks waiting on it.
Status Engine::settle_dependents(int64_t task_id) {
  auto dependents = store_.dependents(task_id);
  if (!dependents) return std::unexpected(dependents.error());
  for (auto [id, state] : *dependents) {
    if (state != TaskState::kWaiting) continue;
    auto deps = store_.dependency_states(id);
    if (!deps) return std::unexpected(deps.error());
    bool doomed = std::any_of(deps->begin(), deps->end(), ended_badly);
    bool ready = std::all_of(deps->begin(), deps->end(),
                             [](TaskState s) { return s == TaskState::kSucceeded; });
    if (!doomed && !ready) continue;
    auto task = store_.get_task(id);
    if (!task) return std::unexpected(task.error());
    if (!*task) continue;
    TRY(move(**task, doomed ? TaskState::kSkipped : ready_state((*task)->run_after_ms)));
  }
  return {};
}

// A retried task gives the tasks it doomed another chance: they wait on it again.
Status Engine::revive_dependents(int64_t task_id) {
  auto dependents = store_.dependents(task_id);
  if (!dependents) return std::unexpected(dependents.error());
  for (auto [id, state] : *dependents) {
    if (state != TaskState::kSkipped) continue;
    auto deps = store_.dependency_states(id);
    if (!deps) return std::unexpected(deps.error());
    bool doomed = std::any_of(deps->begin(), deps->end(), ended_badly);
    if (doomed) continue;
    auto task = store_.get_task(id);
    if (!task) return std::unexpected(task.error());
    TRY(store_.retry_task(id, TaskState::kWaiting, 1));
    count((*task)->pool, (*task)->queue, TaskState::kSkipped, TaskState::kWaiting);
    record_event(id, 0, TaskState::kSkipped, TaskState::kWaiting, "a dependency was retried");
    TRY(revive_dependents(id));
  }
  return {};
}

// ---- timers ----------------------------------------------------------------------------

void Engine::schedule_wake(int64_t run_after_ms) {
  if (wake_at_ms_ != 0 && wake_at_ms_ <= run_after_ms) return;
  wake_at_ms_ = run_after_ms;
  wake_timer_.expires_after(
      std::chrono::milliseconds(std::max<int64_t>(0, run_after_ms - clock_.now_ms())));
  wake_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) on_wake();
  });
}

void Engine::on_wake() {
  wake_at_ms_ = 0;
  if (!committer_.write()) return;
  auto due = store_.due_tasks(clock_.now_ms(), 10'000);
  if (!due) {
    spdlog::error("timers: {}", due.error().message);
    return;
  }
  for (int64_t id : *due) {
    auto task = store_.get_task(id);
    if (!task || !*task) continue;
    if (auto r = move(**task, TaskState::kQueued); !r) {
      spdlog::error("timers: {}", r.error().message);
      return;
    }
  }
  auto next = store_.next_run_after();
  if (next && *next) schedule_wake(**next);
}

// ---- cancel, retry, clean, queues --------------------------------------------------------

void Engine::cancel(const std::vector<int64_t>& ids,
                    std::function<void(Result<std::vector<int64_t>>)> done) {
  std::vector<int64_t> cancelled;
  std::vector<int64_t> stopping;
  for (int64_t id : ids) {
    auto task = store_.get_task(id);
    if (!task) return done(std::unexpected(task.error()));
    if (!*task) {
      return done(make_error(Code::kNotFound, fmt::format("task {} does not exist", id)));
    }
    const Task& t = **task;
    if (is_terminal(t.state)) continue;
    cancelled.push_back(id);
    if (t.state == TaskState::kRunning) {
      auto it = running_.find(id);
      if (it == running_.end()) continue;
      cancelling_.insert(id);
      stopping.push_back(id);
      if (Pool* pool = it->second.pool) {
        pool->send(it->second.worker, Message{.type = MessageType::kCancel, .task = id});
      }
      continue;
    }
    if (auto r = move(t, TaskState::kCancelled); !r) return done(std::unexpected(r.error()));
  }
  if (stopping.empty()) {
    committer_.after_commit([done, cancelled](const Status& ok) {
      if (!ok) return done(std::unexpected(ok.error()));
      done(cancelled);
    });
    return;
  }
  // Reply once the running ones have stopped (their workers escalate to SIGKILL after the
  // grace, so this cannot hang on a task that ignores SIGTERM).
  wait(stopping, false, 0, options_.kill_grace_ms + 10'000,
       [done, cancelled](Result<std::pair<int64_t, WaitResult>> r) {
         if (!r) return done(std::unexpected(r.error()));
         done(cancelled);
       });
}

Result<std::vector<int64_t>> Engine::retry(const std::vector<int64_t>& ids) {
  TRY(committer_.write());
  std::vector<int64_t> retried;
  for (int64_t id : ids) {
    auto task = store_.get_task(id);
    if (!task) return std::unexpected(task.error());
    if (!*task) return make_error(Code::kNotFound, fmt::format("task {} does not exist", id));
    const Task& t = **task;
    if (!is_terminal(t.state) || t.state == TaskState::kSucceeded) {
      return make_error(Code::kConflict,
                        fmt::format("task {} is {}: only failed, cancelled or skipped tasks "
                                    "can be retried",
                                    id, state_name(t.state)));
    }
    auto deps = store_.dependency_states(id);
    if (!deps) return std::unexpected(deps.error());
    bool doomed = std::any_of(deps->begin(), deps->end(), ended_badly);
    if (doomed) {
      return make_error(Code::kConflict,
                        fmt::format("task {} depends on a task that did not succeed: retry that "
                                    "one first",
                                    id));
    }
    bool ready = std::all_of(deps->begin(), deps->end(),
                             [](TaskState s) { return s == TaskState::kSucceeded; });
    TaskState to = ready ? TaskState::kQueued : TaskState::kWaiting;
    TRY(store_.retry_task(id, to, 1));
    count(t.pool, t.queue, t.state, to);
    record_event(id, 0, t.state, to, "retried");
    TRY(revive_dependents(id));
    retried.push_back(id);
  }
  return retried;
}

Result<std::vector<int64_t>> Engine::retry_failed(const std::string& queue) {
  std::vector<int64_t> ids;
  TaskFilter filter{.state = TaskState::kFailed, .queue = queue};
  for (;;) {
    auto page = store_.list_tasks(filter);
    if (!page) return std::unexpected(page.error());
    for (const Task& t : *page) ids.push_back(t.id);
    if (static_cast<int>(page->size()) < filter.limit) break;
    filter.after_id = page->back().id;
  }
  return retry(ids);
}

Result<int64_t> Engine::clean(int64_t older_than_ms) {
  TRY(committer_.write());
  auto ids = store_.clean(clock_.now_ms() - older_than_ms);
  if (!ids) return std::unexpected(ids.error());
  for (int64_t id : *ids) ::unlink(log_path(id).c_str());
  auto counts = store_.count_tasks();
  if (!counts) return std::unexpected(counts.error());
  load_counts(*counts);
  return static_cast<int64_t>(ids->size());
}

Status Engine::set_queue(const std::string& name, std::optional<bool> paused,
                         std::optional<int> limit) {
  TRY(committer_.write());
  QueueInfo& q = queues_[name];
  q.name = name;
  if (paused) q.paused = *paused;
  if (limit) q.limit = *limit;
  TRY(store_.put_queue(q));
  TRY(append_event({clock_.now_ms(), "queue", 0, 0, "", "",
                    fmt::format("{}: paused={} limit={}", name, q.paused, q.limit)}));
  return {};
}

std::vector<QueueInfo> Engine::queues() const {
  std::map<std::string, QueueInfo> all = queues_;
  for (const auto& [name, c] : counts_) all.try_emplace(name, QueueInfo{name, false, 0});
  std::vector<QueueInfo> out;
  for (auto& [name, q] : all) out.push_back(q);
  return out;
}

StateCounts Engine::totals() const {
  StateCounts total{};
  for (const auto& [queue, c] : counts_) {
    for (int i = 0; i < kTaskStateCount; ++i) total[i] += c[i];
  }
  return total;
}

// ---- waiting ---------------------------------------------------------------------------

void Engine::wait(std::vector<int64_t> ids, bool all, int64_t wait_id, int64_t timeout_ms,
                  std::function<void(Result<std::pair<int64_t, WaitResult>>)> done) {
  Waiter* waiter = nullptr;
  if (wait_id) {
    auto it = waiters_.find(wait_id);
    if (it == waiters_.end()) {
      return done(make_error(Code::kNotFound, fmt::format("wait {} has expired", wait_id)));
    }
    waiter = it->second.get();
  } else {
    auto w = std::make_unique<Waiter>(io_);
    w->id = next_waiter_++;
    if (all) {
      for (TaskState s :
           {TaskState::kWaiting, TaskState::kScheduled, TaskState::kQueued, TaskState::kRunning}) {
        TaskFilter filter{.state = s, .limit = 100'000};
        for (;;) {
          auto page = store_.list_tasks(filter);
          if (!page) return done(std::unexpected(page.error()));
          for (const Task& t : *page) ids.push_back(t.id);
          if (static_cast<int>(page->size()) < filter.limit) break;
          filter.after_id = page->back().id;
        }
      }
    }
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    auto states = store_.task_states(ids);
    if (!states) return done(std::unexpected(states.error()));
    if (states->size() != ids.size()) {
      for (int64_t id : ids) {
        if (std::none_of(states->begin(), states->end(),
                         [id](const auto& s) { return s.first == id; })) {
          return done(make_error(Code::kNotFound, fmt::format("task {} does not exist", id)));
        }
      }
    }
    w->result.total = static_cast<int64_t>(ids.size());
    for (auto [id, state] : *states) {
      if (is_terminal(state)) {
        ++w->result.finished;
        if (state == TaskState::kSucceeded) {
          ++w->result.succeeded;
        } else {
          w->result.unsuccessful.emplace_back(id, state);
        }
      } else {
        w->pending.insert(id);
        waiters_by_task_.emplace(id, w->id);
      }
    }
    waiter = w.get();
    waiters_.emplace(w->id, std::move(w));
  }
  if (waiter->reply) {
    // A parked request is superseded: answer it, then find the waiter again (answering a
    // complete one forgets it).
    int64_t id = waiter->id;
    answer(*waiter);
    auto again = waiters_.find(id);
    if (again == waiters_.end()) {
      return done(make_error(Code::kNotFound, fmt::format("wait {} has completed", id)));
    }
    waiter = again->second.get();
  }
  waiter->reply = std::move(done);
  if (waiter->pending.empty()) return answer(*waiter);
  int64_t id = waiter->id;
  waiter->timer.expires_after(std::chrono::milliseconds(std::max<int64_t>(timeout_ms, 0)));
  waiter->timer.async_wait([this, id](const boost::system::error_code& ec) {
    if (ec) return;
    auto it = waiters_.find(id);
    if (it == waiters_.end()) return;
    if (it->second->reply) {
      answer(*it->second);
    } else {
      forget(id);  // nobody came back for it
    }
  });
}

void Engine::forget(int64_t waiter_id) {
  auto it = waiters_.find(waiter_id);
  if (it == waiters_.end()) return;
  for (int64_t task : it->second->pending) {
    auto range = waiters_by_task_.equal_range(task);
    for (auto r = range.first; r != range.second; ++r) {
      if (r->second == waiter_id) {
        waiters_by_task_.erase(r);
        break;
      }
    }
  }
  waiters_.erase(it);
}

void Engine::settle_waiters(int64_t task_id, TaskState state) {
  auto range = waiters_by_task_.equal_range(task_id);
  std::vector<int64_t> ids;
  for (auto it = range.first; it != range.second; ++it) ids.push_back(it->second);
  waiters_by_task_.erase(range.first, range.second);
  for (int64_t id : ids) {
    auto it = waiters_.find(id);
    if (it == waiters_.end()) continue;
    Waiter& w = *it->second;
    w.pending.erase(task_id);
    ++w.result.finished;
    if (state == TaskState::kSucceeded) {
      ++w.result.succeeded;
    } else {
      w.result.unsuccessful.emplace_back(task_id, state);
    }
    if (w.pending.empty() && w.reply) {
      // Answer after this turn's commit: the caller may read what it waited for at once.
      committer_.after_commit([this, id](const Status&) {
        auto it = waiters_.find(id);
        if (it != waiters_.end() && it->second->reply) answer(*it->second);
      });
    }
  }
}

void Engine::answer(Waiter& w) {
  w.timer.cancel();
  w.result.complete = w.pending.empty();
  auto reply = std::move(w.reply);
  w.reply = nullptr;
  auto result = std::make_pair(w.id, w.result);
  int64_t id = w.id;
  if (w.result.complete) {
    waiters_.erase(id);
  } else {
    // Keep it for a continuation; forget it if none comes.
    w.timer.expires_after(std::chrono::milliseconds(kWaiterIdleMs));
    w.timer.async_wait([this, id](const boost::system::error_code& ec) {
      if (ec) return;
      auto it = waiters_.find(id);
      if (it == waiters_.end() || it->second->reply) return;
      forget(id);
    });
  }
  reply(result);
}

// ---- helpers ---------------------------------------------------------------------------

Result<EnvPtr> Engine::env(int64_t env_id) {
  if (auto it = envs_.find(env_id); it != envs_.end()) return it->second;
  auto e = store_.get_env(env_id);
  if (!e) return std::unexpected(e.error());
  auto shared = std::make_shared<const Env>(std::move(*e));
  envs_.emplace(env_id, shared);
  return shared;
}

std::string Engine::log_path(int64_t task_id) const {
  return fmt::format("{}/{}.log", options_.logs_dir, task_id);
}

std::string Engine::new_token() { return fmt::format("{:016x}", rng_()); }

}  // namespace rota
