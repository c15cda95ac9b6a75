#include "store/threaded_store.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "store/test_dir.h"
#include "store/test_loop.h"

namespace rota {
namespace {

class ThreadedStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TestDir>("rota-threaded-store-test");
    path_ = (dir_->path() / "rota.db").string();
  }
  void TearDown() override {
    loop_.drop();
    dir_.reset();
  }

  std::unique_ptr<SqliteStore> open_plain() {
    auto store = SqliteStore::open(path_, Durability::kNormal);
    EXPECT_TRUE(store) << store.error().message;
    return std::move(*store);
  }
  std::unique_ptr<ThreadedStore> open(std::unique_ptr<SqliteStore> plain = nullptr) {
    return std::make_unique<ThreadedStore>(plain ? std::move(plain) : open_plain(),
                                           loop_.deliver());
  }

  static NewTask message(std::string queue, int priority = 0) {
    NewTask t;
    t.spec.pool = "p";
    t.spec.queue = std::move(queue);
    t.spec.priority = priority;
    t.spec.payload = R"({"n":1})";
    t.created_at_ms = 1000;
    return t;
  }

  static AttemptEnd succeeded(const Task& t, std::string result = {}) {
    return {.task_id = t.id,
            .attempt = t.attempts,
            .worker = *t.worker,
            .started_at_ms = t.started_at_ms,
            .to = TaskState::kSucceeded,
            .outcome = Outcome::kSucceeded,
            .finished_at_ms = t.started_at_ms + 10,
            .result = std::move(result)};
  }

  // Claims up to `n` tasks of queue q, in the order claimed.
  static void claim(Store& store, int n, std::vector<int64_t>& claimed) {
    static const std::vector<std::string> queues = {"q"};
    auto batch = store.claim("p", queues, n, 1, "tok", 2000);
    ASSERT_TRUE(batch);
    for (const Task& t : *batch) claimed.push_back(t.id);
  }
  // Claims the rest of queue q, `n` at a time, letting what the store's thread sends back to
  // the loop arrive between claims, as on the daemon's loop.
  void claim_rest(Store& store, int n, std::vector<int64_t>& claimed) {
    for (size_t before = SIZE_MAX; claimed.size() != before;) {
      before = claimed.size();
      claim(store, n, claimed);
      loop_.run();
    }
  }

  std::unique_ptr<TestDir> dir_;
  std::string path_;
  TestLoop loop_;
};

const std::vector<std::string> kQ = {"q"};

// What was handed over without waiting (a claim, the end of its attempt, an event) is what a
// later read sees, before and after the commit, and after a reopen.
TEST_F(ThreadedStoreTest, AReadSeesEveryWriteHandedOverBeforeIt) {
  int64_t id = 0;
  {
    auto store = open();
    ASSERT_TRUE(store->begin());
    std::vector<NewTask> rows = {message("q"), message("q")};
    auto ids = store->insert_tasks(rows);
    ASSERT_TRUE(ids);
    id = ids->front();
    auto claimed = store->claim("p", kQ, 2, 7, "tok", 2000);
    ASSERT_TRUE(claimed && claimed->size() == 2);
    ASSERT_TRUE(store->finish_attempt(succeeded(claimed->front(), R"({"words":3})")));
    ASSERT_TRUE(store->append_event({.at_ms = 2010, .kind = "task", .task_id = id}));
    auto t = store->get_task(id);
    ASSERT_TRUE(t && *t);
    EXPECT_EQ((*t)->state, TaskState::kSucceeded);
    EXPECT_EQ((*t)->attempts, 1);
    EXPECT_EQ((*t)->worker, 7);
    EXPECT_EQ((*t)->result, R"({"words":3})");
    auto other = store->get_task((*ids)[1]);
    EXPECT_EQ((*other)->state, TaskState::kRunning);  // its claim was written for the read
    EXPECT_EQ(store->list_events(0, 10)->size(), 1u);
    ASSERT_TRUE(store->commit());
  }
  auto reopened = open_plain();
  auto t = reopened->get_task(id);
  EXPECT_EQ((*t)->state, TaskState::kSucceeded);
  EXPECT_EQ((*t)->started_at_ms, 2000);
  EXPECT_EQ(reopened->list_events(0, 10)->size(), 1u);
}

// Commits end on the loop (or at once, when the store's thread has nothing to do), in the
// order they were asked for; what waits for no commit comes after the commits asked for before
// it.
TEST_F(ThreadedStoreTest, CommitsEndOnTheLoopInOrder) {
  auto store = open();
  std::vector<std::string> ended;
  ASSERT_TRUE(store->begin());
  ASSERT_TRUE(store->put_setting("k", "1"));
  store->commit_async([&](const Status& s) { ended.push_back(s ? "first" : "first failed"); },
                      Store::Waiting::kSomeone);
  store->after_pending([&] { ended.push_back("nothing to commit"); });
  ASSERT_TRUE(store->begin());
  ASSERT_TRUE(store->put_setting("k", "2"));
  store->commit_async([&](const Status& s) { ended.push_back(s ? "second" : "second failed"); },
                      Store::Waiting::kNobody);
  while (ended.size() < 3) loop_.run_when(1);
  EXPECT_EQ(ended, (std::vector<std::string>{"first", "nothing to commit", "second"}));
  EXPECT_EQ(open_plain()->get_setting("k").value(), std::optional<std::string>("2"));
}

// A write handed over that fails (the disk is full) fails its transaction: the commit says so
// and nothing of it is kept, and from then on the store refuses writes; reads still work.
TEST_F(ThreadedStoreTest, AFailedWriteFailsItsTransactionForGood) {
  auto plain = open_plain();
  ASSERT_TRUE(plain->begin());
  std::vector<NewTask> rows = {message("q")};
  int64_t id = plain->insert_tasks(rows)->front();
  ASSERT_TRUE(plain->commit());
  ASSERT_TRUE(plain->cap_growth(4));
  auto store = open(std::move(plain));
  ASSERT_TRUE(store->begin());
  auto claimed = store->claim("p", kQ, 1, 7, "tok", 2000);
  ASSERT_TRUE(claimed && claimed->size() == 1);
  std::string big = "\"" + std::string(200'000, 'x') + "\"";             // 50 pages
  ASSERT_TRUE(store->finish_attempt(succeeded(claimed->front(), big)));  // handed over
  auto committed = store->commit();
  ASSERT_FALSE(committed);
  EXPECT_NE(committed.error().message.find("full"), std::string::npos) << committed.error().message;
  auto t = store->get_task(id);
  ASSERT_TRUE(t && *t);
  EXPECT_EQ((*t)->state, TaskState::kQueued);
  ASSERT_TRUE(store->begin());
  EXPECT_FALSE(store->put_setting("k", "v"));
  EXPECT_FALSE(store->commit());
  EXPECT_FALSE(open_plain()->get_setting("k").value());
}

// A queue longer than a head is read further while claims go on; a read that comes back
// after something else changed the head (a task of a higher priority joined it) is dropped,
// and the queue is still claimed in order, every task once.
TEST_F(ThreadedStoreTest, AReadFurtherAfterAChangeIsDropped) {
  auto store = open();
  ASSERT_TRUE(store->begin());
  std::vector<NewTask> rows(9000, message("q"));
  auto ids = store->insert_tasks(rows);
  ASSERT_TRUE(ids);
  std::vector<int64_t> claimed;
  claim(*store, 3000, claimed);  // the head runs low: a read further is asked for
  std::vector<NewTask> urgent = {message("q", 5)};
  int64_t urgent_id = store->insert_tasks(urgent)->front();
  claim(*store, 1, claimed);  // the urgent task joins the head first
  ASSERT_EQ(claimed.back(), urgent_id);
  loop_.run_when(1);  // the read comes back: out of date
  claim_rest(*store, 500, claimed);
  claimed.erase(std::find(claimed.begin(), claimed.end(), urgent_id));
  EXPECT_EQ(claimed, *ids);
  ASSERT_TRUE(store->commit());
}

// What happens to the queue while a read of what follows a head is under way is not undone by
// that read when it comes back: a task cancelled meanwhile is never claimed, a task that joined
// the queue meanwhile is claimed in its place, and a head read again from the start meanwhile
// is not given the same tasks twice.
TEST_F(ThreadedStoreTest, AReadUnderWayDoesNotUndoWhatCameAfterIt) {
  auto store = open();
  ASSERT_TRUE(store->begin());
  std::vector<NewTask> rows(3000, message("q", 1));
  rows.resize(9000, message("q", 0));
  auto ids = store->insert_tasks(rows);
  ASSERT_TRUE(ids);
  std::vector<int64_t> claimed;
  claim(*store, 2100, claimed);      // the head (4,096) runs low: what follows it is being read
  int64_t cancelled = (*ids)[5000];  // past the head's end
  ASSERT_TRUE(store->move_task(cancelled, TaskState::kCancelled, 2100));
  std::vector<NewTask> late = {message("q", 1)};  // after the priority-1 tasks, before the rest
  int64_t late_id = store->insert_tasks(late)->front();
  loop_.run_when(1);  // the read comes back, out of date
  claim_rest(*store, 700, claimed);
  EXPECT_EQ(std::count(claimed.begin(), claimed.end(), cancelled), 0);
  auto late_at = std::find(claimed.begin(), claimed.end(), late_id);
  ASSERT_NE(late_at, claimed.end());
  EXPECT_EQ(late_at - claimed.begin(), 3000);  // right after the other priority-1 tasks
  std::vector<int64_t> expected = *ids;
  expected.erase(std::find(expected.begin(), expected.end(), cancelled));
  expected.insert(expected.begin() + 3000, late_id);
  EXPECT_EQ(claimed, expected);
  ASSERT_TRUE(store->commit());
}

// A head read again from the start while a read of what followed it was under way (a batch
// was rolled back) does not get that read's tasks a second time.
TEST_F(ThreadedStoreTest, AReadUnderWayIsDroppedWhenTheHeadIsReadAgain) {
  auto store = open();
  ASSERT_TRUE(store->begin());
  std::vector<NewTask> rows(6000, message("q"));
  auto ids = store->insert_tasks(rows);
  ASSERT_TRUE(ids);
  std::vector<int64_t> claimed;
  claim(*store, 2100, claimed);
  ASSERT_TRUE(store->savepoint());
  store->rollback_to_savepoint();
  claim(*store, 1, claimed);  // reads the head again from the queue's start
  loop_.run_when(1);
  claim_rest(*store, 700, claimed);
  EXPECT_EQ(claimed, *ids);
  ASSERT_TRUE(store->commit());
}

// A task that comes back to its queue twice before a claim (added with a higher priority,
// cancelled, retried) is claimed once.
TEST_F(ThreadedStoreTest, ATaskThatCameBackTwiceIsClaimedOnce) {
  auto store = open();
  ASSERT_TRUE(store->begin());
  std::vector<NewTask> rows = {message("q"), message("q"), message("q")};
  ASSERT_TRUE(store->insert_tasks(rows));
  auto first = store->claim("p", kQ, 1, 1, "tok", 2000);
  ASSERT_TRUE(first && first->size() == 1);
  std::vector<NewTask> urgent = {message("q", 9)};
  int64_t n = store->insert_tasks(urgent)->front();
  ASSERT_TRUE(store->move_task(n, TaskState::kCancelled, 2100));
  ASSERT_TRUE(store->retry_task(n, TaskState::kQueued, 1));
  std::vector<int64_t> rest;
  for (;;) {
    auto one = store->claim("p", kQ, 1, 1, "tok", 2200);  // from the head as it is
    ASSERT_TRUE(one);
    if (one->empty()) break;
    rest.push_back(one->front().id);
  }
  ASSERT_EQ(rest.size(), 3u);
  EXPECT_EQ(rest.front(), n);
  EXPECT_EQ(std::count(rest.begin(), rest.end(), n), 1);
  ASSERT_TRUE(store->commit());
}

}  // namespace
}  // namespace rota
