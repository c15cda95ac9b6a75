#include "worker/protocol.h"

#include <gtest/gtest.h>

namespace rota {
namespace {

// A task message survives the trip through a line of JSON.
TEST(Protocol, TaskRoundTrip) {
  Message m{.type = MessageType::kTask, .worker = 3, .token = "abc", .task = 42};
  m.attempt = 2;
  m.deadline_ms = 123456;
  m.command =
      Command{{"echo", "hi there"}, "", "/tmp", std::make_shared<const Env>(Env{{"A", "1"}})};
  m.log_path = "/x/42.log";
  m.log_cap = 1024;
  std::string line = encode(m);
  ASSERT_EQ(line.back(), '\n');
  line.pop_back();
  auto d = decode(line);
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->type, MessageType::kTask);
  EXPECT_EQ(d->worker, 3);
  EXPECT_EQ(d->token, "abc");
  EXPECT_EQ(d->task, 42);
  EXPECT_EQ(d->attempt, 2);
  EXPECT_EQ(d->deadline_ms, 123456);
  ASSERT_TRUE(d->command);
  EXPECT_EQ(d->command->argv, (std::vector<std::string>{"echo", "hi there"}));
  EXPECT_EQ(d->command->env->at("A"), "1");
  EXPECT_EQ(d->log_cap, 1024);
}

// A failure carries its reason, exit status and whether it may be retried.
TEST(Protocol, FailRoundTrip) {
  Message m{.type = MessageType::kFail, .worker = 1, .token = "t", .task = 9};
  m.error = "timed out";
  m.reason = FailReason::kTimeout;
  m.signal = 15;
  m.retryable = false;
  std::string line = encode(m);
  line.pop_back();
  auto d = decode(line);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->reason, FailReason::kTimeout);
  EXPECT_EQ(d->signal, 15);
  EXPECT_FALSE(d->exit_code);
  EXPECT_FALSE(d->retryable);
}

// Workers in other languages may send lines rota does not expect: each is a clear error.
TEST(Protocol, MalformedLinesAreErrors) {
  EXPECT_FALSE(decode("not json"));
  EXPECT_FALSE(decode("[1,2]"));
  EXPECT_FALSE(decode(R"({"type":"teleport"})"));
  EXPECT_FALSE(decode(R"({"worker":1})"));
  EXPECT_FALSE(decode(R"({"type":"fail","reason":"gremlins"})"));
  // Unknown fields are ignored, so that newer workers can talk to older daemons.
  auto d = decode(R"({"type":"heartbeat","worker":2,"progress":0.5})");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->type, MessageType::kHeartbeat);
}

// A result travels with done as JSON, and an ack names the attempt it acknowledges.
TEST(Protocol, ResultAndAck) {
  Message done{.type = MessageType::kDone, .worker = 2, .token = "t", .task = 5};
  done.result = R"({"findings":3})";
  std::string line = encode(done);
  line.pop_back();
  auto d = decode(line);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->result, R"({"findings":3})");
  Message ack{.type = MessageType::kAck, .token = "t", .task = 5};
  line = encode(ack);
  line.pop_back();
  auto a = decode(line);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->type, MessageType::kAck);
  EXPECT_EQ(a->task, 5);
  EXPECT_EQ(a->token, "t");
}

// A helper's plain done line (read without a JSON tree) decodes as the same line spelled
// otherwise does; near misses take the general path and keep its meaning.
TEST(Protocol, PlainDoneLineDecodesLikeAnyOther) {
  for (std::string_view line : {R"({"type":"done","task":123})", R"({"type": "done", "task": 123})",
                                R"({"task":123,"type":"done"})"}) {
    auto d = decode(line);
    ASSERT_TRUE(d) << line;
    EXPECT_EQ(d->type, MessageType::kDone) << line;
    EXPECT_EQ(d->task, 123) << line;
    EXPECT_EQ(d->worker, 0) << line;
    EXPECT_TRUE(d->token.empty()) << line;
    EXPECT_TRUE(d->result.empty()) << line;
    EXPECT_TRUE(d->error.empty()) << line;
    EXPECT_TRUE(d->retryable) << line;
    EXPECT_EQ(d->concurrency, 0) << line;
    EXPECT_FALSE(d->exit_code) << line;
  }
  auto with_result = decode(R"({"type":"done","task":7,"result":{"n":1}})");
  ASSERT_TRUE(with_result);
  EXPECT_EQ(with_result->task, 7);
  EXPECT_EQ(with_result->result, R"({"n":1})");
  auto zero = decode(R"({"type":"done","task":0})");
  ASSERT_TRUE(zero);
  EXPECT_EQ(zero->task, 0);
  EXPECT_FALSE(decode(R"({"type":"done","task":12x})"));
  EXPECT_FALSE(decode(R"({"type":"done","task":})"));
}

}  // namespace
}  // namespace rota
