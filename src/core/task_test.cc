#include "core/task.h"

#include <gtest/gtest.h>

namespace rota {
namespace {

// The state machine allows exactly the transitions of docs/states.md.
TEST(TaskState, TransitionsFollowTheDiagram) {
  using S = TaskState;
  EXPECT_TRUE(can_transition(S::kQueued, S::kRunning));
  EXPECT_TRUE(can_transition(S::kRunning, S::kScheduled));  // retry with backoff
  EXPECT_TRUE(can_transition(S::kWaiting, S::kSkipped));
  EXPECT_TRUE(can_transition(S::kFailed, S::kQueued));  // rota retry
  EXPECT_FALSE(can_transition(S::kSucceeded, S::kQueued));
  EXPECT_FALSE(can_transition(S::kQueued, S::kSucceeded));
  EXPECT_FALSE(can_transition(S::kWaiting, S::kRunning));
  EXPECT_FALSE(can_transition(S::kScheduled, S::kRunning));
}

TEST(TaskState, NamesRoundTrip) {
  for (int i = 0; i < kTaskStateCount; ++i) {
    auto s = static_cast<TaskState>(i);
    EXPECT_EQ(parse_state(state_name(s)).value(), s);
  }
  EXPECT_FALSE(parse_state("done"));
}

// A failed attempt retries while attempts remain, then fails for good.
TEST(TaskState, FailedAttemptRetriesWhileAttemptsRemain) {
  Task t;
  t.max_attempts = 3;
  t.attempts = 1;
  EXPECT_EQ(state_after_attempt(t, Outcome::kFailed), TaskState::kScheduled);
  EXPECT_EQ(state_after_attempt(t, Outcome::kWorkerLost), TaskState::kScheduled);
  t.attempts = 3;
  EXPECT_EQ(state_after_attempt(t, Outcome::kTimedOut), TaskState::kFailed);
  EXPECT_EQ(state_after_attempt(t, Outcome::kSucceeded), TaskState::kSucceeded);
  EXPECT_EQ(state_after_attempt(t, Outcome::kCancelled), TaskState::kCancelled);
}

TaskSpec valid_spec() {
  TaskSpec s;
  s.command.argv = {"true"};
  s.command.cwd = "/";
  return s;
}

// Bad input is refused before anything is stored, naming what to fix.
TEST(Validation, RefusesBadSpecs) {
  EXPECT_TRUE(validate_spec(valid_spec()));

  TaskSpec empty = valid_spec();
  empty.command.argv.clear();
  EXPECT_EQ(validate_spec(empty).error().field, "command");

  TaskSpec both = valid_spec();
  both.command.shell = "echo";
  EXPECT_FALSE(validate_spec(both));

  TaskSpec nowhere = valid_spec();
  nowhere.command.cwd = "/does/not/exist";
  EXPECT_TRUE(validate_spec(nowhere));
  auto r = validate_cwd(nowhere.command.cwd);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("/does/not/exist"), std::string::npos);

  TaskSpec bad_queue = valid_spec();
  bad_queue.queue = "a queue";
  EXPECT_EQ(validate_spec(bad_queue).error().field, "queue");

  TaskSpec negative = valid_spec();
  negative.retries = -1;
  EXPECT_FALSE(validate_spec(negative));
}

TEST(Validation, KeyValue) {
  auto kv = parse_key_value("a=b=c", "--label");
  ASSERT_TRUE(kv);
  EXPECT_EQ(kv->first, "a");
  EXPECT_EQ(kv->second, "b=c");
  EXPECT_FALSE(parse_key_value("novalue", "--label"));
  EXPECT_FALSE(parse_key_value("=x", "--env"));
}

}  // namespace
}  // namespace rota
