#include "daemon/stats.h"

#include <gtest/gtest.h>

namespace rota {
namespace {

AttemptRecord attempt(int64_t task, int number, int of, const char* outcome, int64_t start,
                      int64_t end, const char* queue = "q") {
  AttemptRecord a;
  a.task_id = task;
  a.number = number;
  a.task_attempts = of;
  a.outcome = outcome;
  a.started_at_ms = start;
  a.finished_at_ms = end;
  a.created_at_ms = 0;
  a.queue = queue;
  a.worker = 1;
  a.task_state = std::string(outcome) == "succeeded" ? TaskState::kSucceeded : TaskState::kFailed;
  return a;
}

// A retried-then-succeeded task counts one retry and one completion; a task that failed its
// last attempt counts one failure; the success rate is over finished tasks.
TEST(Stats, CountsCompletionsFailuresAndRetries) {
  std::vector<AttemptRecord> rows = {
      attempt(1, 1, 2, "failed", 100, 200), attempt(1, 2, 2, "succeeded", 300, 500),
      attempt(2, 1, 1, "timeout", 100, 1100), attempt(3, 1, 1, "succeeded", 50, 60)};
  rows[0].task_state = TaskState::kSucceeded;
  auto j = compute_stats(rows, StatsBy::kQueue, 0, 60'000);
  ASSERT_EQ(j["groups"].size(), 1u);
  const auto& g = j["groups"][0];
  EXPECT_EQ(g["completed"], 2);
  EXPECT_EQ(g["failed"], 1);
  EXPECT_EQ(g["retries"], 1);
  EXPECT_EQ(g["attempts"], 4);
  EXPECT_NEAR(g["success_rate"].get<double>(), 2.0 / 3.0, 1e-9);
  EXPECT_EQ(g["duration_ms"]["max"], 1000);
  EXPECT_EQ(g["throughput_per_min"], 3.0);
  // Waits count first attempts only: 100, 100 and 50 ms from creation.
  EXPECT_NEAR(g["wait_ms"]["mean"].get<double>(), 250.0 / 3.0, 1e-9);
}

// By label, a task counts once under each of its labels.
TEST(Stats, GroupsByEveryLabel) {
  auto a = attempt(1, 1, 1, "succeeded", 0, 10);
  a.labels = {{"team", "red"}, {"kind", "scan"}};
  auto b = attempt(2, 1, 1, "succeeded", 0, 10);
  auto j = compute_stats({a, b}, StatsBy::kLabel, 0, 60'000);
  std::vector<std::string> keys;
  for (const auto& g : j["groups"]) keys.push_back(g["key"]);
  EXPECT_EQ(keys, (std::vector<std::string>{"(no label)", "kind=scan", "team=red"}));
}

// A worker's busy share is the part of the window it spent running attempts.
TEST(Stats, WorkerBusyShare) {
  auto w = worker_stats(
      {attempt(1, 1, 1, "succeeded", 0, 15'000), attempt(2, 1, 1, "failed", 20'000, 35'000)},
      60'000);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0]["tasks_done"], 1);
  EXPECT_EQ(w[0]["tasks_failed"], 1);
  EXPECT_DOUBLE_EQ(w[0]["busy_share"].get<double>(), 0.5);
}

}  // namespace
}  // namespace rota
