#include "store/threaded_store.h"

#include <algorithm>

namespace rota {

#define TRY(expr) \
  if (auto r_ = (expr); !r_) return std::unexpected(r_.error())

ThreadedStore::ThreadedStore(std::unique_ptr<SqliteStore> store, Deliver deliver)
    : path_(store->path()), deliver_(std::move(deliver)), store_(std::move(store)) {}

template <class Fn>
auto ThreadedStore::read(Fn&& fn) {
  write_claims();
  post_ends();
  return thread_.call(std::forward<Fn>(fn));
}

template <class Fn>
auto ThreadedStore::write(Fn&& fn) {
  write_claims();
  post_ends();
  return thread_.call([this, &fn]() -> decltype(fn()) {
    if (failed_) return std::unexpected(*failed_);
    return fn();
  });
}

void ThreadedStore::post(std::function<Status()> op) {
  post_ends();  // they were asked for first
  post_now(std::move(op));
}

void ThreadedStore::post_now(std::function<Status()> op) {
  thread_.post([this, op = std::move(op)] {
    if (failed_) return;
    if (auto r = op(); !r) failed_ = r.error();
  });
}

// The ends of attempts and the events go over together, one op for many: an op of its own each
// would cost an allocation and a free on two threads for every one.
void ThreadedStore::post_ends() {
  if (ends_.empty() && events_.empty()) return;
  post_now([this, ends = std::move(ends_), events = std::move(events_)]() -> Status {
    for (const AttemptEnd& e : ends) TRY(store_->finish_attempt(e));
    for (const Event& e : events) TRY(store_->append_event(e));
    return {};
  });
  ends_.clear();
  events_.clear();
}

// ---- transactions ------------------------------------------------------------------------

Status ThreadedStore::begin() {
  open_ = true;
  post([this] { return store_->begin(); });
  return {};
}

Status ThreadedStore::commit_here() {
  if (failed_) {
    store_->rollback();
    return std::unexpected(*failed_);
  }
  Status committed = store_->commit();
  if (!committed) {
    store_->rollback();
    failed_ = committed.error();
  }
  return committed;
}

Status ThreadedStore::commit() {
  write_claims();
  post_ends();
  open_ = false;
  Status committed = thread_.call([this] { return commit_here(); });
  if (!committed) forget();
  return committed;
}

// The commit runs on the store's thread while the loop goes on. When someone waits for it (a
// reply), that thread has nothing to do and no commit's end is on its way back, it runs here
// at once instead, as it would without the thread: two thread switches less to wait for.
void ThreadedStore::commit_async(std::function<void(const Status&)> done, Waiting waiting) {
  write_claims();
  post_ends();
  open_ = false;
  auto end = [this, done = std::move(done)](const Status& committed) {
    if (!committed) forget();
    done(committed);
  };
  if (waiting == Waiting::kSomeone && ends_on_the_way_ == 0) {
    Status committed;
    if (thread_.try_here([&] { committed = commit_here(); })) return end(committed);
  }
  ++ends_on_the_way_;
  thread_.post([this, end = std::move(end)]() mutable {
    Status committed = commit_here();
    deliver_([this, end = std::move(end), committed]() mutable {
      --ends_on_the_way_;
      end(committed);
    });
  });
  thread_.hand_over();
}

void ThreadedStore::after_pending(std::function<void()> done) {
  if (ends_on_the_way_ == 0) return done();  // nothing it must come after
  ++ends_on_the_way_;
  thread_.post([this, done = std::move(done)]() mutable {
    deliver_([this, done = std::move(done)]() mutable {
      --ends_on_the_way_;
      done();
    });
  });
  thread_.hand_over();
}

void ThreadedStore::rollback() {
  forget();
  ends_.clear();
  events_.clear();
  open_ = false;
  thread_.call([this] { store_->rollback(); });
}

void ThreadedStore::forget() {
  heads_.clear();
  unwritten_.clear();
  requeued_.clear();
}

Status ThreadedStore::savepoint() {
  return write([this] { return store_->savepoint(); });
}

Status ThreadedStore::release_savepoint() {
  return write([this] { return store_->release_savepoint(); });
}

void ThreadedStore::rollback_to_savepoint() {
  heads_.clear();  // they may hold tasks that are gone with it
  read([this] { store_->rollback_to_savepoint(); });
}

// ---- claims ------------------------------------------------------------------------------

Result<std::vector<Task>> ThreadedStore::claim(std::string_view pool,
                                               std::span<const std::string> queues, int limit,
                                               int64_t worker, const std::string& token,
                                               int64_t now_ms) {
  auto need = static_cast<size_t>(std::max(limit, 0));
  TRY(settle_requeued());
  for (const std::string& queue : queues) {
    if (heads_.size(pool, queue) < need) TRY(read_ahead(pool, queue, need));
  }
  std::vector<Task> tasks = heads_.take(pool, queues, need);
  for (Task& t : tasks) {
    mark_running(t, worker, token, now_ms);
    unwritten_.insert_or_assign(t.id, Claim{t.id, worker, token, now_ms});
  }
  for (const std::string& queue : queues) {
    if (heads_.size(pool, queue) < kReadAheadTasks / 2 && !heads_.whole(pool, queue)) {
      read_on(pool, queue);
    }
  }
  if (!open_) TRY(wait_outside_transaction());
  return tasks;
}

// The head runs low: what follows it in its queue is read while claims go on, so that no
// claim waits for a read (and no worker for a claim).
void ThreadedStore::read_on(std::string_view pool, const std::string& queue) {
  std::pair<std::string, std::string> key(pool, queue);
  if (!reading_on_.insert(key).second) return;  // a read is under way
  write_claims();  // a read from the queue's start must see them running
  QueueHeads::Mark at = heads_.mark();
  auto last = heads_.last(pool, queue);
  size_t room = kReadAheadTasks - heads_.size(pool, queue);
  post_ends();
  thread_.post([this, key, at, last, room] {
    auto more = last ? store_->queued_after(key.first, key.second, last->first, last->second, room,
                                            kReadAheadBytes)
                     : store_->queued_head(key.first, key.second, 0, room, kReadAheadBytes);
    deliver_([this, key, at, room, more = std::move(more)]() mutable {
      reading_on_.erase(key);
      if (!more) return;
      bool whole = read_to_end(*more, room);
      heads_.append(key.first, key.second, at, std::move(*more), whole);
    });
  });
  thread_.hand_over();
}

// Whether a read of up to `asked` tasks read to the end of its queue: it stopped short of
// both the number and the bytes it could take.
bool ThreadedStore::read_to_end(const std::vector<Task>& tasks, size_t asked) {
  if (tasks.size() >= asked) return false;
  size_t bytes = 0;
  for (const Task& t : tasks) bytes += task_footprint(t);
  return bytes < kReadAheadBytes;
}

// The queue's first tasks, read once claims not yet written are (they still read as queued).
Status ThreadedStore::read_ahead(std::string_view pool, const std::string& queue, size_t need) {
  auto head = read(
      [&] { return store_->queued_head(pool, queue, need, kReadAheadTasks, kReadAheadBytes); });
  if (!head) return std::unexpected(head.error());
  bool whole = read_to_end(*head, std::max(need, kReadAheadTasks));
  heads_.replace(std::string(pool), queue, std::move(*head), whole);
  return {};
}

void ThreadedStore::write_claims() {
  if (unwritten_.empty()) return;
  std::vector<Claim> claims;
  claims.reserve(unwritten_.size());
  for (auto& [id, claim] : unwritten_) claims.push_back(std::move(claim));
  unwritten_.clear();
  post([this, claims = std::move(claims)]() -> Status {
    for (const Claim& c : claims)
      TRY(store_->write_claim(c.id, c.worker, c.token, c.started_at_ms));
    return {};
  });
}

void ThreadedStore::requeued(int64_t id) {
  if (heads_.empty()) return;
  if (requeued_.size() >= kMaxRequeued) {
    heads_.clear();
    requeued_.clear();
    return;
  }
  requeued_.push_back(id);
}

Status ThreadedStore::settle_requeued() {
  if (requeued_.empty()) return {};
  std::vector<int64_t> ids = std::move(requeued_);
  requeued_.clear();
  if (heads_.empty()) return {};
  std::sort(ids.begin(), ids.end());  // one task may have come back more than once
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  auto tasks = read([&]() -> Result<std::vector<Task>> {
    std::vector<Task> out;
    for (int64_t id : ids) {
      auto task = store_->get_task(id);
      if (!task) return std::unexpected(task.error());
      if (*task && (*task)->state == TaskState::kQueued) out.push_back(std::move(**task));
    }
    return out;
  });
  if (!tasks) return std::unexpected(tasks.error());
  for (Task& t : *tasks) {
    if (!heads_.sorts_into(t.pool, t.queue, t.priority, t.id)) {
      heads_.grew(t.pool, t.queue);
      continue;
    }
    t.depends_on.clear();  // as the heads are read: a queued task's are met
    heads_.insert(std::move(t));
  }
  return {};
}

// ---- writes handed over --------------------------------------------------------------------

Status ThreadedStore::finish_attempt(const AttemptEnd& end) {
  ends_.push_back(end);
  ends_.back().claim_unwritten = unwritten_.erase(end.task_id) > 0;
  if (end.to == TaskState::kQueued) requeued(end.task_id);
  if (!open_) return wait_outside_transaction();
  return {};
}

Status ThreadedStore::move_task(int64_t id, TaskState to, int64_t now_ms) {
  post([this, id, to, now_ms] { return store_->move_task(id, to, now_ms); });
  heads_.erase(id);  // a queued task that was cancelled, say
  if (to == TaskState::kQueued) requeued(id);
  if (!open_) return wait_outside_transaction();
  return {};
}

Status ThreadedStore::append_event(const Event& event) {
  events_.push_back(event);
  if (!open_) return wait_outside_transaction();
  return {};
}

// A write outside a transaction is done (committed by itself) when its call returns, as in
// the plain store: there is no later commit to wait for.
Status ThreadedStore::wait_outside_transaction() {
  return write([] { return Status{}; });
}

// ---- writes waited for -----------------------------------------------------------------------

Result<std::vector<int64_t>> ThreadedStore::insert_tasks(std::span<const NewTask> tasks) {
  auto ids = write([&] { return store_->insert_tasks(tasks); });
  if (!ids) return ids;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const NewTask& t = tasks[i];
    if (t.state != TaskState::kQueued) continue;
    if (heads_.sorts_into(t.spec.pool, t.spec.queue, t.spec.priority, (*ids)[i])) {
      requeued((*ids)[i]);
    } else {
      heads_.grew(t.spec.pool, t.spec.queue);
    }
  }
  return ids;
}

Status ThreadedStore::retry_task(int64_t id, TaskState to, int extra_attempts) {
  TRY(write([&] { return store_->retry_task(id, to, extra_attempts); }));
  if (to == TaskState::kQueued) requeued(id);
  return {};
}

Result<int64_t> ThreadedStore::intern_env(const Env& env) {
  return write([&] { return store_->intern_env(env); });
}

Result<std::vector<int64_t>> ThreadedStore::clean(int64_t cutoff_ms) {
  return write([&] { return store_->clean(cutoff_ms); });
}

Status ThreadedStore::put_queue(const QueueInfo& queue) {
  return write([&] { return store_->put_queue(queue); });
}

Status ThreadedStore::put_setting(const std::string& key, const std::string& value) {
  return write([&] { return store_->put_setting(key, value); });
}

Result<int64_t> ThreadedStore::next_worker_id() {
  return write([&] { return store_->next_worker_id(); });
}

Result<int64_t> ThreadedStore::next_batch_id() {
  return write([&] { return store_->next_batch_id(); });
}

Status ThreadedStore::put_schedule(const ScheduleRecord& schedule) {
  return write([&] { return store_->put_schedule(schedule); });
}

Status ThreadedStore::delete_schedule(const std::string& name) {
  return write([&] { return store_->delete_schedule(name); });
}

Status ThreadedStore::put_pool(const PoolRecord& pool) {
  return write([&] { return store_->put_pool(pool); });
}

Status ThreadedStore::delete_pool(const std::string& name) {
  return write([&] { return store_->delete_pool(name); });
}

Status ThreadedStore::put_watch(const WatchRecord& watch) {
  return write([&] { return store_->put_watch(watch); });
}

Status ThreadedStore::delete_watch(const std::string& name) {
  return write([&] { return store_->delete_watch(name); });
}

// ---- reads -----------------------------------------------------------------------------------

Result<Env> ThreadedStore::get_env(int64_t env_id) {
  return read([&] { return store_->get_env(env_id); });
}

Result<std::optional<Task>> ThreadedStore::get_task(int64_t id) {
  return read([&] { return store_->get_task(id); });
}

Result<std::vector<Task>> ThreadedStore::list_tasks(const TaskFilter& filter) {
  return read([&] { return store_->list_tasks(filter); });
}

Result<std::vector<Attempt>> ThreadedStore::list_attempts(int64_t task_id) {
  return read([&] { return store_->list_attempts(task_id); });
}

Result<std::vector<std::pair<int64_t, TaskState>>> ThreadedStore::task_states(
    std::span<const int64_t> ids) {
  return read([&] { return store_->task_states(ids); });
}

Result<std::vector<int64_t>> ThreadedStore::due_tasks(int64_t now_ms, int limit) {
  return read([&] { return store_->due_tasks(now_ms, limit); });
}

Result<std::optional<int64_t>> ThreadedStore::next_run_after() {
  return read([&] { return store_->next_run_after(); });
}

Result<std::vector<std::pair<int64_t, TaskState>>> ThreadedStore::dependents(int64_t id) {
  return read([&] { return store_->dependents(id); });
}

Result<std::vector<TaskState>> ThreadedStore::dependency_states(int64_t id) {
  return read([&] { return store_->dependency_states(id); });
}

Result<std::vector<Task>> ThreadedStore::tasks_in_state(TaskState state) {
  return read([&] { return store_->tasks_in_state(state); });
}

Result<std::vector<QueueStateCount>> ThreadedStore::count_tasks() {
  return read([&] { return store_->count_tasks(); });
}

Result<std::vector<QueueInfo>> ThreadedStore::list_queues() {
  return read([&] { return store_->list_queues(); });
}

Result<std::vector<Event>> ThreadedStore::list_events(int64_t after_id, int limit) {
  return read([&] { return store_->list_events(after_id, limit); });
}

Result<int64_t> ThreadedStore::last_event_id() {
  return read([&] { return store_->last_event_id(); });
}

Result<std::optional<std::tuple<int64_t, TaskState, int64_t>>> ThreadedStore::find_unique(
    const std::string& key) {
  return read([&] { return store_->find_unique(key); });
}

Result<std::vector<AttemptRecord>> ThreadedStore::attempts_since(int64_t since_ms) {
  return read([&] { return store_->attempts_since(since_ms); });
}

Result<int64_t> ThreadedStore::count_attempts(int64_t task_id, Outcome outcome) {
  return read([&] { return store_->count_attempts(task_id, outcome); });
}

Result<std::vector<int64_t>> ThreadedStore::suspect_tasks() {
  return read([&] { return store_->suspect_tasks(); });
}

Result<std::optional<std::string>> ThreadedStore::get_setting(const std::string& key) {
  return read([&] { return store_->get_setting(key); });
}

Result<std::vector<ScheduleRecord>> ThreadedStore::list_schedules() {
  return read([&] { return store_->list_schedules(); });
}

Result<std::vector<std::pair<std::string, int64_t>>> ThreadedStore::unfinished_schedule_tasks() {
  return read([&] { return store_->unfinished_schedule_tasks(); });
}

Result<std::vector<ItemRun>> ThreadedStore::item_runs(const std::string& schedule) {
  return read([&] { return store_->item_runs(schedule); });
}

Result<std::vector<Task>> ThreadedStore::recent_schedule_tasks(const std::string& schedule,
                                                               int limit) {
  return read([&] { return store_->recent_schedule_tasks(schedule, limit); });
}

Result<std::vector<PoolRecord>> ThreadedStore::list_pools() {
  return read([&] { return store_->list_pools(); });
}

Result<std::vector<WatchRecord>> ThreadedStore::list_watches() {
  return read([&] { return store_->list_watches(); });
}

}  // namespace rota
