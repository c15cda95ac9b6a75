#include "core/backoff.h"

#include <gtest/gtest.h>

namespace rota {
namespace {

// The ceiling doubles per retry from the base and stops at the maximum.
TEST(Backoff, CeilingDoublesUpToTheMaximum) {
  Backoff b{1000, 5000};
  EXPECT_EQ(backoff_ceiling_ms(b, 1), 1000);
  EXPECT_EQ(backoff_ceiling_ms(b, 2), 2000);
  EXPECT_EQ(backoff_ceiling_ms(b, 3), 4000);
  EXPECT_EQ(backoff_ceiling_ms(b, 4), 5000);
  EXPECT_EQ(backoff_ceiling_ms(b, 60), 5000);
}

// Full jitter: the delay is spread uniformly over [0, ceiling).
TEST(Backoff, FullJitterSpansZeroToTheCeiling) {
  Backoff b{1000, 300'000};
  EXPECT_EQ(backoff_delay_ms(b, 3, 0.0), 0);
  EXPECT_EQ(backoff_delay_ms(b, 3, 0.5), 2000);
  EXPECT_LT(backoff_delay_ms(b, 3, 0.999), 4000);
}

TEST(Backoff, ParsesBaseAndOptionalMaximum) {
  auto b = parse_backoff("200ms,10s");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->base_ms, 200);
  EXPECT_EQ(b->max_ms, 10'000);
  auto only_base = parse_backoff("2s");
  ASSERT_TRUE(only_base);
  EXPECT_EQ(only_base->base_ms, 2000);
  EXPECT_EQ(only_base->max_ms, 300'000);
  EXPECT_FALSE(parse_backoff("10s,1s"));
  EXPECT_FALSE(parse_backoff("soon"));
}

}  // namespace
}  // namespace rota
