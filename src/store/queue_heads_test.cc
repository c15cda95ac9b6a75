#include "store/queue_heads.h"

#include <gtest/gtest.h>

namespace rota {
namespace {

Task queued(int64_t id, int priority, std::string queue = "q", std::string payload = {}) {
  Task t;
  t.id = id;
  t.priority = priority;
  t.pool = "p";
  t.queue = std::move(queue);
  t.payload = std::move(payload);
  return t;
}

std::vector<int64_t> ids(const std::vector<Task>& tasks) {
  std::vector<int64_t> out;
  for (const Task& t : tasks) out.push_back(t.id);
  return out;
}

const std::vector<std::string> kQ = {"q"};

// Tasks come out in claim order across the heads of several queues: the highest priority
// first, then the oldest.
TEST(QueueHeads, TakesTheBestAcrossQueues) {
  QueueHeads heads(100, 1 << 20);
  heads.replace("p", "a", {queued(1, 5, "a"), queued(4, 0, "a")}, false);
  heads.replace("p", "b", {queued(2, 5, "b"), queued(3, 1, "b")}, false);
  std::vector<std::string> both = {"a", "b"};
  EXPECT_EQ(ids(heads.take("p", both, 3)), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(ids(heads.take("p", both, 3)), (std::vector<int64_t>{4}));
  EXPECT_TRUE(heads.take("p", both, 3).empty());
  EXPECT_TRUE(heads.take("other", both, 3).empty());
}

// A task that becomes queued goes into a head only if it sorts before the head's last task;
// one that sorts after it is left for the next read of the queue.
TEST(QueueHeads, ATaskBelongsInAHeadOnlyBeforeItsEnd) {
  QueueHeads heads(100, 1 << 20);
  EXPECT_FALSE(heads.sorts_into("p", "q", 9, 1));  // no head held
  heads.replace("p", "q", {queued(10, 1), queued(20, 1)}, false);
  EXPECT_TRUE(heads.sorts_into("p", "q", 2, 30));   // higher priority
  EXPECT_TRUE(heads.sorts_into("p", "q", 1, 15));   // older, same priority
  EXPECT_FALSE(heads.sorts_into("p", "q", 1, 30));  // newer, same priority
  EXPECT_FALSE(heads.sorts_into("p", "q", 0, 5));   // lower priority
  EXPECT_FALSE(heads.sorts_into("p", "other", 9, 5));
  heads.insert(queued(15, 1));
  heads.insert(queued(30, 2));
  EXPECT_EQ(ids(heads.take("p", kQ, 10)), (std::vector<int64_t>{30, 10, 15, 20}));
}

// A head that a task joins gives up its last tasks beyond its size (they are still queued in
// the store), and beyond its bytes while it holds more than one.
TEST(QueueHeads, AHeadStaysWithinItsBounds) {
  QueueHeads heads(3, 1 << 20);
  heads.replace("p", "q", {queued(1, 0), queued(2, 0), queued(3, 0)}, false);
  heads.insert(queued(9, 1));
  EXPECT_EQ(heads.size("p", "q"), 3u);
  EXPECT_FALSE(heads.erase(3));  // cut off: no longer held
  EXPECT_EQ(ids(heads.take("p", kQ, 10)), (std::vector<int64_t>{9, 1, 2}));

  std::string big(1000, 'x');
  QueueHeads small(100, sizeof(Task) * 2 + 1500);
  small.replace("p", "q", {queued(1, 0, "q", big)}, false);
  small.insert(queued(0, 0, "q", big));
  EXPECT_EQ(ids(small.take("p", kQ, 10)), (std::vector<int64_t>{0}));
}

// A task taken out of its queue some other way (cancelled) is no longer handed out.
TEST(QueueHeads, AnErasedTaskIsNotTaken) {
  QueueHeads heads(100, 1 << 20);
  heads.replace("p", "q", {queued(1, 0), queued(2, 0), queued(3, 0)}, false);
  EXPECT_TRUE(heads.erase(2));
  EXPECT_FALSE(heads.erase(2));
  EXPECT_EQ(ids(heads.take("p", kQ, 10)), (std::vector<int64_t>{1, 3}));
  EXPECT_FALSE(heads.erase(1));  // taken: no longer held
}

// Replacing a head forgets what it held before.
TEST(QueueHeads, ReplaceForgetsTheOldHead) {
  QueueHeads heads(100, 1 << 20);
  heads.replace("p", "q", {queued(1, 0), queued(2, 0)}, false);
  heads.replace("p", "q", {queued(2, 0), queued(3, 0)}, false);
  EXPECT_FALSE(heads.erase(1));
  EXPECT_EQ(ids(heads.take("p", kQ, 10)), (std::vector<int64_t>{2, 3}));
}

// What was read after a head's end while claims went on is appended to it, unless anything but
// a claim happened to the queues meanwhile: a task joined one (even after a head's end), left
// one, or a head was read again.
TEST(QueueHeads, AReadOfWhatFollowsIsAppendedOnlyIfOnlyClaimsCameBetween) {
  QueueHeads heads(100, 1 << 20);
  heads.replace("p", "q", {queued(1, 0), queued(2, 0)}, false);
  auto at = heads.mark();
  EXPECT_EQ(heads.last("p", "q"), (std::pair<int, int64_t>{0, 2}));
  EXPECT_EQ(ids(heads.take("p", kQ, 1)), (std::vector<int64_t>{1}));
  EXPECT_TRUE(heads.append("p", "q", at, {queued(3, 0), queued(4, 0)}, true));
  EXPECT_TRUE(heads.whole("p", "q"));
  heads.grew("p", "q");
  EXPECT_FALSE(heads.whole("p", "q"));

  at = heads.mark();
  heads.grew("p", "q");  // a task joined after the head's end: the read may have missed it
  EXPECT_FALSE(heads.append("p", "q", at, {queued(5, 0)}, true));
  at = heads.mark();
  EXPECT_FALSE(heads.erase(7));  // not held, but a read under way may bring it
  EXPECT_FALSE(heads.append("p", "q", at, {queued(7, 0)}, true));
  at = heads.mark();
  heads.insert(queued(9, 7));
  EXPECT_FALSE(heads.append("p", "q", at, {queued(6, 0)}, true));
  at = heads.mark();
  heads.clear();
  heads.replace("p", "q", {queued(2, 0)}, false);  // read again from the start
  EXPECT_FALSE(heads.append("p", "q", at, {queued(3, 0)}, true));
  EXPECT_EQ(ids(heads.take("p", kQ, 10)), (std::vector<int64_t>{2}));
  EXPECT_FALSE(heads.last("p", "q"));
}

// A task that comes back twice before it is claimed is held once.
TEST(QueueHeads, ATaskIsHeldOnce) {
  QueueHeads heads(100, 1 << 20);
  heads.replace("p", "q", {queued(5, 0), queued(6, 0)}, false);
  heads.insert(queued(1, 0));
  heads.insert(queued(1, 0));
  EXPECT_EQ(ids(heads.take("p", kQ, 10)), (std::vector<int64_t>{1, 5, 6}));
}

}  // namespace
}  // namespace rota
