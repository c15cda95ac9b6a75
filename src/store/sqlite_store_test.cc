#include "store/sqlite_store.h"
#include "store/test_dir.h"
#include "store/test_loop.h"
#include "store/threaded_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>

namespace rota {
namespace {

namespace fs = std::filesystem;

// Every test runs against the store as the daemon uses it, on a thread of its own
// (ThreadedStore: claims from the queues' heads in memory, writes handed over), and against the
// plain SqliteStore it wraps: both keep the Store contract.
enum class Kind { kPlain, kThreaded };

class SqliteStoreTest : public ::testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TestDir>("rota-store-test");
    path_ = (dir_->path() / "rota.db").string();
  }
  void TearDown() override {
    loop_.drop();
    dir_.reset();
  }

  std::unique_ptr<Store> open() {
    auto store = SqliteStore::open(path_, Durability::kNormal);
    EXPECT_TRUE(store) << store.error().message;
    if (!store || GetParam() == Kind::kPlain) return store ? std::move(*store) : nullptr;
    return std::make_unique<ThreadedStore>(std::move(*store), loop_.deliver());
  }

  static NewTask task(std::string queue, int priority, std::vector<int64_t> after = {}) {
    NewTask t;
    t.spec.command.argv = {"true"};
    t.spec.command.cwd = "/";
    t.spec.queue = std::move(queue);
    t.spec.priority = priority;
    t.spec.after = std::move(after);
    t.created_at_ms = 1000;
    return t;
  }

  std::string read_all() {
    std::ifstream in(path_, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  std::unique_ptr<TestDir> dir_;
  std::string path_;
  TestLoop loop_;  // what the threaded store sends back to the loop
};

INSTANTIATE_TEST_SUITE_P(Store, SqliteStoreTest, ::testing::Values(Kind::kPlain, Kind::kThreaded),
                         [](const auto& info) {
                           return info.param == Kind::kPlain ? "Plain" : "Threaded";
                         });

// A claim takes the highest priority first and the oldest within a priority, across queues.
TEST_P(SqliteStoreTest, ClaimsByPriorityThenAge) {
  auto store = open();
  ASSERT_TRUE(store->begin());
  std::vector<NewTask> rows = {task("a", 0), task("b", 5), task("a", 5), task("b", 0)};
  auto ids = store->insert_tasks(rows);
  ASSERT_TRUE(ids);
  std::vector<std::string> queues = {"a", "b"};
  std::vector<int64_t> order;
  for (int i = 0; i < 4; ++i) {
    auto t = store->claim(kCommandsPool, queues, 1, 1, "tok", 2000);
    ASSERT_TRUE(t && t->size() == 1);
    EXPECT_EQ(t->front().state, TaskState::kRunning);
    EXPECT_EQ(t->front().attempts, 1);
    order.push_back(t->front().id);
  }
  EXPECT_EQ(order, (std::vector<int64_t>{(*ids)[1], (*ids)[2], (*ids)[0], (*ids)[3]}));
  auto none = store->claim(kCommandsPool, queues, 1, 1, "tok", 2000);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  ASSERT_TRUE(store->commit());
}

// A large batch (written many rows per INSERT) gives each task the id its row got, in order,
// whatever each row holds; a task's dependencies are kept under its own id.
TEST_P(SqliteStoreTest, EveryTaskOfABatchGetsItsOwnId) {
  auto store = open();
  ASSERT_TRUE(store->begin());
  std::vector<NewTask> rows;
  for (int i = 0; i < 70; ++i) {
    NewTask t = task("q" + std::to_string(i), i % 3);
    if (i % 2 == 0) t.spec.labels = {{"n", std::to_string(i)}};
    if (i % 5 == 0) t.spec.payload = R"({"i":)" + std::to_string(i) + "}";
    rows.push_back(t);
  }
  auto first = store->insert_tasks(std::span(rows).first(1));
  ASSERT_TRUE(first);
  rows[69].spec.after = {first->front()};
  rows[69].state = TaskState::kWaiting;
  auto ids = store->insert_tasks(rows);
  ASSERT_TRUE(ids);
  ASSERT_EQ(ids->size(), rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    auto t = store->get_task((*ids)[i]);
    ASSERT_TRUE(t && *t) << i;
    EXPECT_EQ((*t)->queue, rows[i].spec.queue) << i;
    EXPECT_EQ((*t)->priority, rows[i].spec.priority) << i;
    EXPECT_EQ((*t)->labels, rows[i].spec.labels) << i;
    EXPECT_EQ((*t)->payload, rows[i].spec.payload) << i;
  }
  EXPECT_EQ((*store->get_task(ids->back()))->depends_on, (std::vector<int64_t>{first->front()}));
  ASSERT_TRUE(store->commit());
}

// A batched claim takes the best `limit` tasks of its pool across queues, and no other pool's.
TEST_P(SqliteStoreTest, BatchedClaimKeepsOrderAndPool) {
  auto store = open();
  ASSERT_TRUE(store->begin());
  std::vector<NewTask> rows = {task("a", 0), task("b", 5), task("a", 5), task("b", 0)};
  NewTask message = task("a", 9);
  message.spec.pool = "py";
  message.spec.payload = R"({"n":1})";
  rows.push_back(message);
  auto ids = store->insert_tasks(rows);
  ASSERT_TRUE(ids);
  std::vector<std::string> queues = {"a", "b"};
  auto first = store->claim(kCommandsPool, queues, 3, 1, "tok", 2000);
  ASSERT_TRUE(first);
  std::vector<int64_t> order;
  for (const Task& t : *first) order.push_back(t.id);
  EXPECT_EQ(order, (std::vector<int64_t>{(*ids)[1], (*ids)[2], (*ids)[0]}));
  auto messages = store->claim("py", queues, 10, 2, "tok2", 2000);
  ASSERT_TRUE(messages && messages->size() == 1);
  EXPECT_EQ(messages->front().payload, R"({"n":1})");
  EXPECT_TRUE(messages->front().is_message());
  auto rest = store->claim(kCommandsPool, queues, 10, 1, "tok", 2000);
  ASSERT_TRUE(rest && rest->size() == 1);
  EXPECT_EQ(rest->front().id, (*ids)[3]);
  ASSERT_TRUE(store->commit());
}

// What was committed is there after reopening; an attempt's end is recorded with its result.
TEST_P(SqliteStoreTest, CommittedWorkSurvivesReopen) {
  int64_t id = 0;
  {
    auto store = open();
    ASSERT_TRUE(store->begin());
    std::vector<NewTask> rows = {task("default", 0)};
    id = store->insert_tasks(rows)->front();
    std::vector<std::string> queues = {"default"};
    ASSERT_TRUE(store->claim(kCommandsPool, queues, 1, 7, "tok", 2000));
    auto running = store->list_attempts(id);
    ASSERT_TRUE(running && running->size() == 1);  // the running attempt, from the task's row
    EXPECT_EQ(running->front().worker, 7);
    EXPECT_TRUE(running->front().outcome.empty());
    AttemptEnd end{.task_id = id,
                   .attempt = 1,
                   .worker = 7,
                   .started_at_ms = 2000,
                   .to = TaskState::kFailed,
                   .outcome = Outcome::kFailed,
                   .exit_code = 3,
                   .error = "exit status 3",
                   .finished_at_ms = 3000};
    ASSERT_TRUE(store->finish_attempt(end));
    ASSERT_TRUE(store->commit());
  }
  auto store = open();
  auto t = store->get_task(id);
  ASSERT_TRUE(t && *t);
  EXPECT_EQ((*t)->state, TaskState::kFailed);
  EXPECT_EQ((*t)->exit_code, 3);
  EXPECT_EQ((*t)->finished_at_ms, 3000);
  EXPECT_EQ((*t)->worker, 7);  // the worker of its last attempt
  auto attempts = store->list_attempts(id);
  ASSERT_EQ(attempts->size(), 1u);
  EXPECT_EQ((*attempts)[0].worker, 7);
  EXPECT_EQ((*attempts)[0].outcome, "failed");
}

// Claims and ends of attempts in one transaction (as in a busy loop turn) survive a reopen
// as written: the ended attempt with its worker and times, the running one with its token. A
// task claimed in a transaction is not claimed again in it until its attempt has ended.
TEST_P(SqliteStoreTest, ClaimsAndEndsInOneTransactionSurviveReopen) {
  int64_t done = 0, running = 0, retried = 0;
  {
    auto store = open();
    ASSERT_TRUE(store->begin());
    std::vector<NewTask> rows = {task("q", 2), task("q", 1), task("q", 0)};
    auto ids = store->insert_tasks(rows);
    ASSERT_TRUE(ids);
    done = (*ids)[0], running = (*ids)[1], retried = (*ids)[2];
    std::vector<std::string> queues = {"q"};
    auto first = store->claim(kCommandsPool, queues, 2, 7, "tok7", 2000);
    ASSERT_TRUE(first && first->size() == 2);
    auto second = store->claim(kCommandsPool, queues, 2, 8, "tok8", 2100);
    ASSERT_TRUE(second && second->size() == 1);
    EXPECT_EQ(second->front().id, retried);
    AttemptEnd success{.task_id = done,
                       .attempt = 1,
                       .worker = 7,
                       .started_at_ms = 2000,
                       .to = TaskState::kSucceeded,
                       .outcome = Outcome::kSucceeded,
                       .exit_code = 0,
                       .finished_at_ms = 2500};
    ASSERT_TRUE(store->finish_attempt(success));
    AttemptEnd failure{.task_id = retried,
                       .attempt = 1,
                       .worker = 8,
                       .started_at_ms = 2100,
                       .to = TaskState::kQueued,
                       .outcome = Outcome::kFailed,
                       .exit_code = 1,
                       .error = "exit status 1",
                       .finished_at_ms = 2600};
    ASSERT_TRUE(store->finish_attempt(failure));
    auto again = store->claim(kCommandsPool, queues, 5, 8, "tok8b", 2700);
    ASSERT_TRUE(again && again->size() == 1);
    EXPECT_EQ(again->front().id, retried);
    EXPECT_EQ(again->front().attempts, 2);
    ASSERT_TRUE(store->commit());
  }
  auto store = open();
  auto t = store->get_task(done);
  ASSERT_TRUE(t && *t);
  EXPECT_EQ((*t)->state, TaskState::kSucceeded);
  EXPECT_EQ((*t)->attempts, 1);
  EXPECT_EQ((*t)->worker, 7);
  EXPECT_EQ((*t)->started_at_ms, 2000);
  EXPECT_EQ((*t)->finished_at_ms, 2500);
  auto attempts = store->list_attempts(done);
  ASSERT_TRUE(attempts && attempts->size() == 1);
  EXPECT_EQ(attempts->front().worker, 7);
  EXPECT_EQ(attempts->front().started_at_ms, 2000);
  EXPECT_EQ(attempts->front().outcome, "succeeded");
  auto r = store->get_task(running);
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->state, TaskState::kRunning);
  EXPECT_EQ((*r)->attempts, 1);
  EXPECT_EQ((*r)->worker, 7);
  EXPECT_EQ((*r)->token, "tok7");
  EXPECT_EQ((*r)->started_at_ms, 2000);
  auto q = store->get_task(retried);
  ASSERT_TRUE(q && *q);
  EXPECT_EQ((*q)->state, TaskState::kRunning);
  EXPECT_EQ((*q)->attempts, 2);
  EXPECT_EQ((*q)->token, "tok8b");
  auto tried = store->list_attempts(retried);
  ASSERT_TRUE(tried && tried->size() == 2);
  EXPECT_EQ((*tried)[0].outcome, "failed");
  EXPECT_EQ((*tried)[0].worker, 8);
}

// Claims are served from the queues' heads, read ahead: what changes a queue after a head was
// read is claimed in its place. A task added with a higher priority goes first; one handed
// back, retried or due again goes before younger ones; a cancelled one is never claimed.
TEST_P(SqliteStoreTest, ClaimsSeeWhatChangedTheQueueAfterItsHeadWasRead) {
  auto store = open();
  ASSERT_TRUE(store->begin());
  NewTask later = task("q", 0);
  later.state = TaskState::kScheduled;
  later.run_after_ms = 5000;
  std::vector<NewTask> rows = {later, task("q", 0), task("q", 0), task("q", 0), task("q", 0)};
  auto ids = store->insert_tasks(rows);
  ASSERT_TRUE(ids);
  int64_t scheduled = (*ids)[0];
  std::vector<std::string> queues = {"q"};
  auto claim_one = [&] {
    auto t = store->claim(kCommandsPool, queues, 1, 7, "tok", 2000);
    EXPECT_TRUE(t && t->size() <= 1);
    return t && !t->empty() ? t->front().id : 0;
  };
  int64_t first = claim_one();
  EXPECT_EQ(first, (*ids)[1]);

  std::vector<NewTask> urgent = {task("q", 9)};
  int64_t urgent_id = store->insert_tasks(urgent)->front();
  EXPECT_EQ(claim_one(), urgent_id);

  ASSERT_TRUE(store->finish_attempt({.task_id = first,
                                     .attempt = 1,
                                     .worker = 7,
                                     .started_at_ms = 2000,
                                     .to = TaskState::kQueued,
                                     .outcome = Outcome::kFailed,
                                     .finished_at_ms = 2100}));
  EXPECT_EQ(claim_one(), first);

  ASSERT_TRUE(store->move_task((*ids)[2], TaskState::kCancelled, 2200));
  ASSERT_TRUE(store->move_task(scheduled, TaskState::kQueued, 2300));
  EXPECT_EQ(claim_one(), scheduled);
  EXPECT_EQ(claim_one(), (*ids)[3]);
  EXPECT_EQ(claim_one(), (*ids)[4]);
  EXPECT_EQ(claim_one(), 0);
  ASSERT_TRUE(store->commit());
  EXPECT_EQ((*store->get_task((*ids)[2]))->state, TaskState::kCancelled);
  EXPECT_EQ((*store->get_task(first))->attempts, 2);
}

// A task that a retry puts back in line goes before younger tasks whose head was read.
TEST_P(SqliteStoreTest, ARetriedTaskIsClaimedInItsPlace) {
  auto store = open();
  ASSERT_TRUE(store->begin());
  std::vector<NewTask> rows = {task("q", 0), task("q", 0), task("q", 0)};
  auto ids = store->insert_tasks(rows);
  std::vector<std::string> queues = {"q"};
  auto first = store->claim(kCommandsPool, queues, 1, 7, "tok", 2000);
  ASSERT_TRUE(first && first->size() == 1);
  ASSERT_TRUE(store->finish_attempt({.task_id = (*ids)[0],
                                     .attempt = 1,
                                     .worker = 7,
                                     .started_at_ms = 2000,
                                     .to = TaskState::kFailed,
                                     .outcome = Outcome::kFailed,
                                     .finished_at_ms = 2100}));
  ASSERT_TRUE(store->retry_task((*ids)[0], TaskState::kQueued, 1));
  auto again = store->claim(kCommandsPool, queues, 2, 7, "tok", 2200);
  ASSERT_TRUE(again && again->size() == 2);
  EXPECT_EQ(again->front().id, (*ids)[0]);
  EXPECT_EQ(again->front().attempts, 2);
  EXPECT_EQ((*again)[1].id, (*ids)[1]);
  ASSERT_TRUE(store->commit());
}

// A task whose insert was rolled back (to the savepoint of its batch) is not claimed, even
// though it would have gone first.
TEST_P(SqliteStoreTest, ARolledBackTaskIsNotClaimed) {
  auto store = open();
  ASSERT_TRUE(store->begin());
  std::vector<NewTask> rows = {task("q", 0), task("q", 0), task("q", 0)};
  auto ids = store->insert_tasks(rows);
  std::vector<std::string> queues = {"q"};
  ASSERT_TRUE(store->claim(kCommandsPool, queues, 1, 7, "tok", 2000));
  ASSERT_TRUE(store->savepoint());
  std::vector<NewTask> urgent = {task("q", 9)};
  ASSERT_TRUE(store->insert_tasks(urgent));
  store->rollback_to_savepoint();
  auto next = store->claim(kCommandsPool, queues, 5, 7, "tok", 2100);
  ASSERT_TRUE(next);
  std::vector<int64_t> claimed;
  for (const Task& t : *next) claimed.push_back(t.id);
  EXPECT_EQ(claimed, (std::vector<int64_t>{(*ids)[1], (*ids)[2]}));
  ASSERT_TRUE(store->commit());
}

// A queue longer than what is read ahead at once is claimed whole, in order, each task once.
TEST_P(SqliteStoreTest, ALongQueueIsClaimedInOrderOnce) {
  auto store = open();
  ASSERT_TRUE(store->begin());
  std::vector<NewTask> rows(10'000, task("q", 0));
  auto ids = store->insert_tasks(rows);
  ASSERT_TRUE(ids);
  std::vector<std::string> queues = {"q"};
  std::vector<int64_t> claimed;
  for (;;) {
    loop_.run();  // what was read further arrives between claims, as on the loop
    auto batch = store->claim(kCommandsPool, queues, 7, 1, "tok", 2000);
    ASSERT_TRUE(batch);
    if (batch->empty()) break;
    for (const Task& t : *batch) {
      claimed.push_back(t.id);
      if (t.id % 3 == 0) continue;  // left running, written at a later read or the commit
      ASSERT_TRUE(store->finish_attempt({.task_id = t.id,
                                         .attempt = 1,
                                         .worker = 1,
                                         .started_at_ms = 2000,
                                         .to = TaskState::kSucceeded,
                                         .outcome = Outcome::kSucceeded,
                                         .finished_at_ms = 2100}));
    }
  }
  EXPECT_EQ(claimed, *ids);
  ASSERT_TRUE(store->commit());
  auto counts = store->count_tasks();
  ASSERT_TRUE(counts);
  std::map<TaskState, int64_t> by_state;
  for (const auto& c : *counts) by_state[c.state] += c.count;
  EXPECT_EQ(by_state[TaskState::kRunning], 10'000 / 3);
  EXPECT_EQ(by_state[TaskState::kSucceeded], 10'000 - 10'000 / 3);
  EXPECT_EQ(by_state[TaskState::kQueued], 0);
}

// What reads the store in the transaction of a claim sees the claimed task running.
TEST_P(SqliteStoreTest, AClaimIsSeenByReadsInItsTransaction) {
  auto store = open();
  ASSERT_TRUE(store->begin());
  std::vector<NewTask> rows = {task("q", 0)};
  int64_t id = store->insert_tasks(rows)->front();
  std::vector<std::string> queues = {"q"};
  ASSERT_TRUE(store->claim(kCommandsPool, queues, 1, 3, "tok", 2000));
  auto t = store->get_task(id);
  ASSERT_TRUE(t && *t);
  EXPECT_EQ((*t)->state, TaskState::kRunning);
  EXPECT_EQ((*t)->worker, 3);
  EXPECT_EQ((*t)->attempts, 1);
  ASSERT_TRUE(store->commit());
}

// An attempt that succeeds is kept in its task's row, not in a row of its own: it is still
// listed with the task's attempts and among the attempts since a time, and a retry of the task
// keeps it in the history.
TEST_P(SqliteStoreTest, SucceededAttemptIsReadFromTheTaskRow) {
  auto store = open();
  ASSERT_TRUE(store->begin());
  std::vector<NewTask> rows = {task("default", 0)};
  int64_t id = store->insert_tasks(rows)->front();
  std::vector<std::string> queues = {"default"};
  auto end_as = [&](int attempt, Outcome outcome, TaskState to, int64_t at_ms) {
    ASSERT_TRUE(store->claim(kCommandsPool, queues, 1, 7, "tok", at_ms - 500));
    AttemptEnd end{.task_id = id,
                   .attempt = attempt,
                   .worker = 7,
                   .started_at_ms = at_ms - 500,
                   .to = to,
                   .outcome = outcome,
                   .exit_code = outcome == Outcome::kSucceeded ? 0 : 1,
                   .finished_at_ms = at_ms};
    ASSERT_TRUE(store->finish_attempt(end));
  };
  end_as(1, Outcome::kFailed, TaskState::kQueued, 3000);
  end_as(2, Outcome::kSucceeded, TaskState::kSucceeded, 5000);
  auto outcomes = [&] {
    std::vector<std::pair<int, std::string>> out;
    auto attempts = store->list_attempts(id);
    if (attempts) {
      for (const Attempt& a : *attempts) out.emplace_back(a.number, a.outcome);
    }
    return out;
  };
  using Outcomes = std::vector<std::pair<int, std::string>>;
  EXPECT_EQ(outcomes(), (Outcomes{{1, "failed"}, {2, "succeeded"}}));
  auto since = store->attempts_since(4000);
  ASSERT_TRUE(since && since->size() == 1);
  EXPECT_EQ(since->front().outcome, "succeeded");
  EXPECT_EQ(since->front().finished_at_ms, 5000);
  EXPECT_EQ(since->front().worker, 7);
  ASSERT_TRUE(store->retry_task(id, TaskState::kQueued, 1));
  EXPECT_EQ(outcomes(), (Outcomes{{1, "failed"}, {2, "succeeded"}}));
  end_as(3, Outcome::kSucceeded, TaskState::kSucceeded, 7000);
  EXPECT_EQ(outcomes(), (Outcomes{{1, "failed"}, {2, "succeeded"}, {3, "succeeded"}}));
  ASSERT_TRUE(store->commit());
}

// A task stays suspected of a crash it shared while its later attempts only lose their
// worker or are handed back, and until it finishes.
TEST_P(SqliteStoreTest, SuspectsAreReadBackFromTheirAttempts) {
  auto store = open();
  ASSERT_TRUE(store->begin());
  std::vector<NewTask> rows(5, task("default", 0));
  auto ids = *store->insert_tasks(rows);
  std::vector<std::string> queues = {"default"};
  std::map<int64_t, int> attempts;
  auto end_as = [&](int64_t id, Outcome outcome, TaskState to) {
    // Each claim takes the oldest queued task: claim until it is this one's turn.
    auto claimed = store->claim(kCommandsPool, queues, 5, 7, "tok", 1000);
    ASSERT_TRUE(claimed);
    for (const Task& t : *claimed) {
      bool mine = t.id == id;
      AttemptEnd end{.task_id = t.id,
                     .attempt = ++attempts[t.id],
                     .worker = 7,
                     .started_at_ms = 1000,
                     .to = mine ? to : TaskState::kQueued,
                     .outcome = mine ? outcome : Outcome::kHandedBack,
                     .finished_at_ms = 2000,
                     .handed_back = !mine};
      ASSERT_TRUE(store->finish_attempt(end));
    }
  };
  using O = Outcome;
  using S = TaskState;
  end_as(ids[0], O::kWorkerLostShared, S::kQueued);  // suspect
  end_as(ids[1], O::kWorkerLostShared, S::kQueued);  // still one after the losses below
  end_as(ids[1], O::kWorkerLost, S::kQueued);
  end_as(ids[2], O::kWorkerLostShared, S::kQueued);  // cleared: it failed on its own
  end_as(ids[2], O::kFailed, S::kQueued);
  end_as(ids[3], O::kWorkerLostShared, S::kQueued);  // cleared: it finished
  end_as(ids[3], O::kSucceeded, S::kSucceeded);
  end_as(ids[4], O::kWorkerLost, S::kQueued);  // never shared a crash
  auto suspects = store->suspect_tasks();
  ASSERT_TRUE(suspects) << suspects.error().message;
  EXPECT_EQ(*suspects, (std::vector<int64_t>{ids[0], ids[1]}));
  ASSERT_TRUE(store->commit());
}

// Dependencies are found from both ends.
TEST_P(SqliteStoreTest, DependenciesBothWays) {
  auto store = open();
  ASSERT_TRUE(store->begin());
  std::vector<NewTask> first = {task("q", 0)};
  int64_t a = store->insert_tasks(first)->front();
  std::vector<NewTask> second = {task("q", 0, {a})};
  second[0].state = TaskState::kWaiting;
  int64_t b = store->insert_tasks(second)->front();
  auto deps = store->dependents(a);
  ASSERT_EQ(deps->size(), 1u);
  EXPECT_EQ((*deps)[0].first, b);
  EXPECT_EQ((*deps)[0].second, TaskState::kWaiting);
  EXPECT_EQ(*store->dependency_states(b), std::vector<TaskState>{TaskState::kQueued});
  EXPECT_EQ(store->get_task(b)->value().depends_on, std::vector<int64_t>{a});
  ASSERT_TRUE(store->commit());
}

// Equal environments are stored once.
TEST_P(SqliteStoreTest, EnvironmentsAreInterned) {
  auto store = open();
  ASSERT_TRUE(store->begin());
  Env env = {{"PATH", "/bin"}, {"HOME", "/root"}};
  auto a = store->intern_env(env);
  auto b = store->intern_env(env);
  auto c = store->intern_env({{"PATH", "/usr/bin"}});
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, *c);
  EXPECT_EQ(*store->get_env(*a), env);
  ASSERT_TRUE(store->commit());
}

// A store that fails its integrity check is refused and left byte-for-byte as it was.
TEST_P(SqliteStoreTest, CorruptStoreIsRefusedAndUntouched) {
  {
    auto store = open();
    ASSERT_TRUE(store->begin());
    std::vector<NewTask> rows(200, task("default", 0));
    ASSERT_TRUE(store->insert_tasks(rows));
    ASSERT_TRUE(store->commit());
  }
  {
    // Scribble over the start of every page but the first (the b-tree page headers).
    auto size = fs::file_size(path_);
    std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
    std::string garbage(64, '\xAB');
    for (uintmax_t page = 4096; page < size; page += 4096) {
      f.seekp(static_cast<std::streamoff>(page));
      f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
    }
  }
  std::string before = read_all();
  auto store = SqliteStore::open(path_, Durability::kNormal);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, Code::kCorruption);
  EXPECT_NE(store.error().message.find(path_), std::string::npos);
  EXPECT_EQ(read_all(), before);
}

// An emptied file is not taken for a new store: that would lose the queue silently.
TEST_P(SqliteStoreTest, EmptiedFileIsRefused) {
  { open(); }
  fs::resize_file(path_, 0);
  auto store = SqliteStore::open(path_, Durability::kNormal);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().code, Code::kCorruption);
  EXPECT_EQ(fs::file_size(path_), 0u);
}

// A store written by a newer rota is refused rather than misread.
TEST_P(SqliteStoreTest, NewerSchemaIsRefused) {
  { open(); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "UPDATE meta SET value = '999' WHERE key = 'schema_version'", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  auto store = SqliteStore::open(path_, Durability::kNormal);
  ASSERT_FALSE(store);
  EXPECT_NE(store.error().message.find("newer"), std::string::npos);
}

// Keyset pagination walks every task exactly once.
TEST_P(SqliteStoreTest, ListPagesByKeyset) {
  auto store = open();
  ASSERT_TRUE(store->begin());
  std::vector<NewTask> rows(25, task("default", 0));
  ASSERT_TRUE(store->insert_tasks(rows));
  ASSERT_TRUE(store->commit());
  TaskFilter f{.limit = 10};
  int seen = 0;
  for (;;) {
    auto page = store->list_tasks(f);
    ASSERT_TRUE(page);
    seen += static_cast<int>(page->size());
    if (page->size() < 10) break;
    f.after_id = page->back().id;
  }
  EXPECT_EQ(seen, 25);
}

// Newest first pages backwards from the newest task, by `before_id`, with the same filters.
TEST_P(SqliteStoreTest, ListNewestFirst) {
  auto store = open();
  ASSERT_TRUE(store->begin());
  std::vector<NewTask> rows(5, task("default", 0));
  rows.push_back(task("other", 0));
  ASSERT_TRUE(store->insert_tasks(rows));
  ASSERT_TRUE(store->commit());
  TaskFilter f{.queue = "default", .limit = 3, .order = TaskFilter::Order::kNewestFirst};
  auto page = store->list_tasks(f);
  ASSERT_TRUE(page);
  std::vector<int64_t> ids;
  for (const Task& t : *page) ids.push_back(t.id);
  EXPECT_EQ(ids, (std::vector<int64_t>{5, 4, 3}));
  f.before_id = 3;
  page = store->list_tasks(f);
  ASSERT_TRUE(page);
  ids.clear();
  for (const Task& t : *page) ids.push_back(t.id);
  EXPECT_EQ(ids, (std::vector<int64_t>{2, 1}));
}

}  // namespace
// Events appended in a transaction are seen by a read in it, in order, and committed with it
// (40 of them: one statement of 32 rows and 8 single rows); a rollback takes them back; an
// event outside a transaction is written at once.
TEST_P(SqliteStoreTest, EventsAreWrittenWithTheirTransaction) {
  auto store = open();
  auto append = [&](int n, int64_t first_at) {
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(store->append_event({.at_ms = first_at + i, .kind = "task", .task_id = i + 1}));
    }
  };
  auto times = [&] {
    std::vector<int64_t> out;
    auto events = store->list_events(0, 1000);
    if (events) {
      for (const Event& e : *events) out.push_back(e.at_ms);
    }
    return out;
  };
  ASSERT_TRUE(store->begin());
  append(40, 1000);
  std::vector<int64_t> expected(40);
  std::iota(expected.begin(), expected.end(), 1000);
  EXPECT_EQ(times(), expected);
  append(3, 2000);  // after the read: written at the commit
  ASSERT_TRUE(store->commit());
  expected.insert(expected.end(), {2000, 2001, 2002});
  EXPECT_EQ(*store->last_event_id(), 43);
  ASSERT_TRUE(store->begin());
  append(5, 3000);
  store->rollback();
  EXPECT_EQ(times(), expected);
  append(1, 4000);
  expected.push_back(4000);
  auto reopened = open();
  auto events = reopened->list_events(0, 1000);
  ASSERT_TRUE(events);
  EXPECT_EQ(events->size(), expected.size());
  EXPECT_EQ(events->back().at_ms, 4000);
}

}  // namespace rota
