#include "daemon/autoscaler.h"

#include <gtest/gtest.h>

namespace rota {
namespace {

// Without a range the pool keeps its size, whatever the load.
TEST(Autoscaler, OffByDefault) {
  Autoscaler a(2000, 60'000);
  EXPECT_FALSE(a.decide({.now_ms = 0, .size = 2, .idle = 0, .ready = 100}));
}

// A backlog grows the pool only once it has lasted scale_up_wait, and not past the maximum.
TEST(Autoscaler, GrowsAfterTheBacklogLasts) {
  Autoscaler a(2000, 60'000);
  a.set_range(AutoscaleRange{1, 8});
  EXPECT_FALSE(a.decide({.now_ms = 1000, .size = 2, .idle = 0, .ready = 20}));
  EXPECT_FALSE(a.decide({.now_ms = 2999, .size = 2, .idle = 0, .ready = 20}));
  auto d = a.decide({.now_ms = 3000, .size = 2, .idle = 0, .ready = 20});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->first, 8);
  EXPECT_NE(d->second.find("20 tasks ready"), std::string::npos);
}

// A backlog that clears before scale_up_wait starts the clock again.
TEST(Autoscaler, ABriefBacklogDoesNothing) {
  Autoscaler a(2000, 60'000);
  a.set_range(AutoscaleRange{1, 8});
  EXPECT_FALSE(a.decide({.now_ms = 0, .size = 2, .idle = 0, .ready = 5}));
  EXPECT_FALSE(a.decide({.now_ms = 1500, .size = 2, .idle = 1, .ready = 0}));
  EXPECT_FALSE(a.decide({.now_ms = 2500, .size = 2, .idle = 0, .ready = 5}));
}

// Idle workers are let go after scale_down_idle, never below the minimum.
TEST(Autoscaler, ShrinksAfterIdleness) {
  Autoscaler a(2000, 60'000);
  a.set_range(AutoscaleRange{2, 8});
  EXPECT_FALSE(a.decide({.now_ms = 0, .size = 6, .idle = 5, .ready = 0}));
  auto d = a.decide({.now_ms = 60'000, .size = 6, .idle = 5, .ready = 0});
  ASSERT_TRUE(d);
  EXPECT_EQ(d->first, 2);
}

// A size outside a new range is brought inside at once.
TEST(Autoscaler, ClampsToTheRange) {
  Autoscaler a(2000, 60'000);
  a.set_range(AutoscaleRange{3, 5});
  EXPECT_EQ(a.decide({.now_ms = 0, .size = 1, .idle = 1, .ready = 0})->first, 3);
  EXPECT_EQ(a.decide({.now_ms = 0, .size = 9, .idle = 0, .ready = 0})->first, 5);
}

}  // namespace
}  // namespace rota
