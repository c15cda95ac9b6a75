#include "daemon/analyze.h"

#include <gtest/gtest.h>

namespace rota {
namespace {

using nlohmann::json;

bool has(const std::vector<Finding>& f, const std::string& kind) {
  return std::any_of(f.begin(), f.end(), [&](const Finding& x) { return x.kind == kind; });
}

// Rates come from per-minute buckets over the last minutes; old minutes fall out.
TEST(MinuteCounter, RatesOverTheLastMinutes) {
  MinuteCounter c;
  c.add(0, 30);
  c.add(60'000, 30);
  EXPECT_DOUBLE_EQ(c.rate(60'000, 2), 30.0);
  EXPECT_DOUBLE_EQ(c.rate(60'000 * 90, 15), 0.0);
}

// A backlog that arrives faster than it finishes is a finding with a worker count to drain it.
TEST(Analyze, GrowingBacklogSuggestsAPoolSize) {
  AnalyzeInput in;
  in.arrivals_per_min = 120;
  in.completions_per_min = 60;
  in.backlog = 600;
  in.busy_workers = 4;
  in.pool_size = 4;
  auto f = analyze(in);
  ASSERT_TRUE(has(f, "backlog_growing"));
  // 15 tasks/min per worker; (120 + 600/60) / 15 = 8.67 -> 9 workers.
  EXPECT_NE(f[0].action.find("rota scale 9"), std::string::npos) << f[0].action;
}

// A command that mostly times out (seed 000's workers) is named, with a way out.
TEST(Analyze, CommandThatMostlyTimesOut) {
  AnalyzeInput in;
  in.command_stats = json::array({{{"key", "./analyse.sh"}, {"attempts", 10}}});
  in.timeouts_by_command = {{"./analyse.sh", 9}};
  auto f = analyze(in);
  ASSERT_TRUE(has(f, "timeouts"));
  EXPECT_NE(f[0].message.find("9 of its 10"), std::string::npos);
}

// A paused queue holding ready work, a degraded pool, and a quiet system.
TEST(Analyze, PausedQueueDegradedAndQuiet) {
  AnalyzeInput in;
  in.queues = json::array({{{"name", "reports"}, {"paused", true}, {"ready", 3}}});
  in.degraded = true;
  in.given_up = {"slot 1 (worker 9)"};
  auto f = analyze(in);
  EXPECT_TRUE(has(f, "paused_queue"));
  EXPECT_TRUE(has(f, "degraded"));
  EXPECT_TRUE(analyze(AnalyzeInput{}).empty());
}

}  // namespace
}  // namespace rota
