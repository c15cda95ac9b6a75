#include "daemon/committer.h"

#include <gtest/gtest.h>

#include "store/sqlite_store.h"
#include "store/test_dir.h"

namespace rota {
namespace {

using std::chrono::hours;

class CommitterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<TestDir>("rota-committer-test");
    auto store = SqliteStore::open((dir_->path() / "rota.db").string(), Durability::kNormal);
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(*store);
  }
  void TearDown() override {
    store_.reset();
    dir_.reset();
  }

  // One write through `committer`, as a loop turn makes it.
  void write(Committer& committer) {
    ASSERT_TRUE(committer.write());
    ASSERT_TRUE(store_->put_setting("k", std::to_string(++writes_)));
  }

  // Runs what is ready, as the daemon's loop would (poll() stops the context when it runs dry).
  void poll() {
    io_.restart();
    io_.poll();
  }

  boost::asio::io_context io_;
  std::unique_ptr<TestDir> dir_;
  std::unique_ptr<SqliteStore> store_;
  int writes_ = 0;
};

// A turn's writes commit at the end of the turn when the last commit was longer ago than the gap.
TEST_F(CommitterTest, AWriteAfterAQuietSpellCommitsAtTheEndOfItsTurn) {
  Committer committer(io_, *store_, hours(1));
  write(committer);
  EXPECT_EQ(committer.commits(), 0);
  poll();
  EXPECT_EQ(committer.commits(), 1);
}

// Writes nobody waits for, within the gap of the last commit, wait and then commit together;
// a reply (kNow) that comes meanwhile takes them along at the end of its own turn.
TEST_F(CommitterTest, WritesNobodyWaitsForShareOneCommitUntilSomeoneWaits) {
  Committer committer(io_, *store_, hours(1));
  write(committer);
  poll();
  ASSERT_EQ(committer.commits(), 1);
  bool batched_ran = false;
  write(committer);
  committer.after_commit([&](const Status&) { batched_ran = true; }, Wait::kBatched);
  poll();
  write(committer);
  poll();
  EXPECT_EQ(committer.commits(), 1);
  EXPECT_FALSE(batched_ran);
  bool replied = false;
  committer.after_commit([&](const Status& s) { replied = s.has_value(); });
  poll();
  EXPECT_EQ(committer.commits(), 2);
  EXPECT_TRUE(batched_ran);
  EXPECT_TRUE(replied);
  EXPECT_EQ(store_->get_setting("k").value(), std::optional<std::string>("3"));
}

// The gap's timer commits what waits, and runs the before-commit hook first.
TEST_F(CommitterTest, TheGapsTimerCommitsWhatWaits) {
  Committer committer(io_, *store_, std::chrono::milliseconds(20));
  int hooks = 0;
  committer.set_before_commit([&] { ++hooks; });
  write(committer);
  poll();
  write(committer);
  io_.restart();
  io_.run_for(std::chrono::seconds(10));  // returns once the timer's commit has run
  EXPECT_EQ(committer.commits(), 2);
  EXPECT_GE(hooks, 2);
}

}  // namespace
}  // namespace rota
