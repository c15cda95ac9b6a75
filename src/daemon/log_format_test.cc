#include "daemon/log_format.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace rota {
namespace {

// A log line names its component and the worker and task it is about.
TEST(LogFormat, JsonLineHasComponentWorkerAndTask) {
  auto j = nlohmann::json::parse(json_log_line("2026-11-23T09:00:00.000Z", "warn",
                                               "pool: worker 12 killed by signal 9 (task 7)"));
  EXPECT_EQ(j["level"], "warn");
  EXPECT_EQ(j["component"], "pool");
  EXPECT_EQ(j["worker"], 12);
  EXPECT_EQ(j["task"], 7);
  EXPECT_EQ(j["message"], "worker 12 killed by signal 9 (task 7)");
}

// A message without a component prefix is the daemon's; absent ids are null.
TEST(LogFormat, PlainMessagesAreTheDaemons) {
  auto j = nlohmann::json::parse(json_log_line("t", "info", "stopped: all workers exited"));
  EXPECT_EQ(j["component"], "stopped");  // one word before ": " is a component
  auto k = nlohmann::json::parse(json_log_line("t", "info", "rota 0.1.0 daemon pid 5: home /x"));
  EXPECT_EQ(k["component"], "daemon");
  EXPECT_TRUE(k["worker"].is_null());
  EXPECT_TRUE(k["task"].is_null());
}

}  // namespace
}  // namespace rota
