#include "core/duration.h"

#include <gtest/gtest.h>

namespace rota {
namespace {

// Every unit a user may write is understood.
TEST(Duration, ParsesEveryUnit) {
  EXPECT_EQ(parse_duration_ms("500ms", "--t").value(), 500);
  EXPECT_EQ(parse_duration_ms("90s", "--t").value(), 90'000);
  EXPECT_EQ(parse_duration_ms("10m", "--t").value(), 600'000);
  EXPECT_EQ(parse_duration_ms("2h", "--t").value(), 7'200'000);
  EXPECT_EQ(parse_duration_ms("1d", "--t").value(), 86'400'000);
  EXPECT_EQ(parse_duration_ms("0s", "--t").value(), 0);
}

// A bad duration is refused with a message that names the flag and shows examples.
TEST(Duration, RefusesNonsenseWithAHelpfulMessage) {
  for (const char* bad : {"10x", "", "s", "10", "-5s", "1.5s", "10 s", "99999999999999999999d"}) {
    auto r = parse_duration_ms(bad, "--timeout");
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_EQ(r.error().code, Code::kInvalidArgument);
    EXPECT_NE(r.error().message.find("--timeout"), std::string::npos);
    EXPECT_NE(r.error().message.find("try 500ms"), std::string::npos);
  }
}

TEST(Duration, FormatsCompactly) {
  EXPECT_EQ(format_duration_ms(450), "450ms");
  EXPECT_EQ(format_duration_ms(1500), "1.5s");
  EXPECT_EQ(format_duration_ms(123'000), "2m03s");
  EXPECT_EQ(format_duration_ms(3 * 3'600'000 + 600'000), "3h10m");
}

}  // namespace
}  // namespace rota
