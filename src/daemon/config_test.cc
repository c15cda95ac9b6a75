#include "daemon/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

namespace rota {
namespace {

std::string write_file(const std::string& text) {
  std::string path = "/tmp/rota-config-test-" + std::to_string(::getpid()) + ".toml";
  std::ofstream(path) << text;
  return path;
}

// A missing file means the defaults of the documentation.
TEST(Config, MissingFileGivesDefaults) {
  auto c = load_config("/nonexistent/rota.toml");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->heartbeat_interval_ms, 1000);
  EXPECT_EQ(c->unresponsive_after_ms, 5000);
  EXPECT_EQ(c->dead_after_ms, 15'000);
  EXPECT_EQ(c->max_restarts, 5);
  EXPECT_EQ(c->poison_after, 3);
}

// Keys are read with their units; flags override the file.
TEST(Config, FileThenFlags) {
  auto path = write_file(
      "heartbeat_interval = \"200ms\"\nmax_restarts = 2\n"
      "alert_command = \"logger rota\"\n");
  auto c = load_config(path);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->heartbeat_interval_ms, 200);
  EXPECT_EQ(c->max_restarts, 2);
  EXPECT_EQ(c->alert_command, "logger rota");
  ASSERT_TRUE(finish_config(*c, {{"max_restarts", "7"}, {"dead_after", "1m"}}));
  EXPECT_EQ(c->max_restarts, 7);
  EXPECT_EQ(c->dead_after_ms, 60'000);
  ::unlink(path.c_str());
}

// An unknown key or a bad value is an error naming the key.
TEST(Config, BadKeysAndValuesAreNamed) {
  auto path = write_file("heartbeat_intervall = \"1s\"\n");
  auto c = load_config(path);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("heartbeat_intervall"), std::string::npos);
  EXPECT_NE(c.error().message.find("unknown key"), std::string::npos);

  path = write_file("dead_after = \"soon\"\n");
  c = load_config(path);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("dead_after"), std::string::npos);
  ::unlink(path.c_str());

  Config d;
  auto r = finish_config(d, {{"dead_after", "2s"}});  // below unresponsive_after (5s)
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().field, "dead_after");
}

}  // namespace
}  // namespace rota
