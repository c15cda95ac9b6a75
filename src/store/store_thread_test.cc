#include "store/store_thread.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace rota {
namespace {

// What is posted runs in order, on the thread, and a call waits for everything posted before
// it: its result sees their effects.
TEST(StoreThread, ACallRunsAfterEverythingPostedBeforeIt) {
  StoreThread thread;
  std::vector<int> seen;  // touched only on the thread until the call returns
  for (int i = 0; i < 1000; ++i) {
    thread.post([&seen, i] { seen.push_back(i); });
  }
  auto size = thread.call([&] { return seen.size(); });
  EXPECT_EQ(size, 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(seen[i], i);
  // Posted after a call: still in order.
  thread.post([&seen] { seen.push_back(-1); });
  EXPECT_EQ(thread.call([&] { return seen.back(); }), -1);
}

// Work posted but never handed over still runs before the thread stops.
TEST(StoreThread, StoppingRunsWhatWasPosted) {
  int runs = 0;
  {
    StoreThread thread;
    for (int i = 0; i < 3; ++i) thread.post([&runs] { ++runs; });
  }
  EXPECT_EQ(runs, 3);
}

}  // namespace
}  // namespace rota
