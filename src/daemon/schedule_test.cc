#include "daemon/schedule.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "daemon/watcher.h"

namespace rota {
namespace {

using nlohmann::json;

constexpr int64_t kMinute = 60'000;
// 2026-11-23T12:00:00Z
constexpr int64_t kNoon = 1'795'435'200'000;

json task_template() { return json{{"argv", {"echo", "{}"}}, {"cwd", "/tmp"}}; }

ScheduleDef every(int64_t ms) {
  auto d = schedule_def_from_json(json{{"every_ms", ms}, {"task", task_template()}});
  EXPECT_TRUE(d) << d.error().message;
  return *d;
}

TEST(Schedule, EverySlotsAreAnchoredAtCreation) {
  auto t = Timing::make(every(15 * kMinute), kNoon + 7);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->next_after(kNoon + 7), kNoon + 7 + 15 * kMinute);
  EXPECT_EQ(t->next_after(kNoon + 7 + 15 * kMinute), kNoon + 7 + 30 * kMinute);
  EXPECT_EQ(t->next_after(kNoon + 7 + 29 * kMinute), kNoon + 7 + 30 * kMinute);
}

TEST(Schedule, CronSlotsFollowTheZone) {
  auto d = schedule_def_from_json(
      json{{"cron", "30 9 * * *"}, {"tz", "Asia/Kolkata"}, {"task", task_template()}});
  ASSERT_TRUE(d) << d.error().message;
  auto t = Timing::make(*d, kNoon);
  ASSERT_TRUE(t);
  // 09:30 in Kolkata (+05:30) is 04:00 UTC: the next one after noon UTC is tomorrow's.
  EXPECT_EQ(t->next_after(kNoon), kNoon + 16 * 60 * kMinute);
}

TEST(Schedule, MissedSlotsKeepTheLatest) {
  auto t = Timing::make(every(kMinute), kNoon);
  ASSERT_TRUE(t);
  auto all = missed_slots(*t, kNoon + kMinute, kNoon + 10 * kMinute + 5, 1000);
  ASSERT_EQ(all.size(), 10u);
  EXPECT_EQ(all.front(), kNoon + kMinute);
  EXPECT_EQ(all.back(), kNoon + 10 * kMinute);
  auto capped = missed_slots(*t, kNoon + kMinute, kNoon + 10 * kMinute + 5, 3);
  EXPECT_EQ(capped,
            (std::vector<int64_t>{kNoon + 8 * kMinute, kNoon + 9 * kMinute, kNoon + 10 * kMinute}));
  EXPECT_TRUE(missed_slots(*t, kNoon + kMinute, kNoon + kMinute - 1, 1000).empty());
}

TEST(Schedule, DefinitionErrorsNameTheFlag) {
  auto neither = schedule_def_from_json(json{{"task", task_template()}});
  ASSERT_FALSE(neither);
  EXPECT_NE(neither.error().message.find("--every"), std::string::npos);
  auto both = schedule_def_from_json(
      json{{"every_ms", 1000}, {"cron", "* * * * *"}, {"task", task_template()}});
  EXPECT_FALSE(both);
  auto bad_cron = schedule_def_from_json(json{{"cron", "*/0 * * * *"}, {"task", task_template()}});
  ASSERT_FALSE(bad_cron);
  EXPECT_NE(bad_cron.error().message.find("step must be at least 1"), std::string::npos);
  auto bad_zone = schedule_def_from_json(
      json{{"cron", "* * * * *"}, {"tz", "Mars/Olympus"}, {"task", task_template()}});
  ASSERT_FALSE(bad_zone);
  EXPECT_NE(bad_zone.error().message.find("Mars/Olympus"), std::string::npos);
  auto bad_overlap = schedule_def_from_json(
      json{{"every_ms", 1000}, {"overlap", "sometimes"}, {"task", task_template()}});
  ASSERT_FALSE(bad_overlap);
  EXPECT_EQ(bad_overlap.error().message, "--overlap: \"sometimes\" is not one of skip|queue|allow");
  auto no_command = schedule_def_from_json(json{{"every_ms", 1000}, {"task", {{"cwd", "/"}}}});
  EXPECT_FALSE(no_command);
}

TEST(Schedule, DefinitionRoundTrips) {
  auto d = schedule_def_from_json(json{{"cron", "0 3 * * mon"},
                                       {"tz", "Europe/Berlin"},
                                       {"jitter_ms", 5000},
                                       {"overlap", "queue"},
                                       {"catch_up", "all"},
                                       {"over", "@items.txt"},
                                       {"batch", 2},
                                       {"task", task_template()}});
  ASSERT_TRUE(d) << d.error().message;
  auto again = schedule_def_from_json(schedule_def_to_json(*d));
  ASSERT_TRUE(again);
  EXPECT_EQ(schedule_def_to_json(*again), schedule_def_to_json(*d));
  EXPECT_EQ(again->overlap, Overlap::kQueue);
  EXPECT_EQ(again->catch_up, CatchUp::kAll);
}

TEST(Schedule, ApplyItemSubstitutesAndQuotes) {
  TaskSpec argv;
  argv.command.argv = {"wc", "-l", "{}", "--label={}"};
  apply_item(argv, "it's a file");
  EXPECT_EQ(argv.command.argv,
            (std::vector<std::string>{"wc", "-l", "it's a file", "--label=it's a file"}));
  EXPECT_EQ(argv.command.vars.at("ROTA_ITEM"), "it's a file");
  EXPECT_EQ(argv.item, "it's a file");
  TaskSpec shell;
  shell.command.shell = "wc -l {} > /dev/null";
  apply_item(shell, "it's a file");
  EXPECT_EQ(shell.command.shell, "wc -l 'it'\\''s a file' > /dev/null");
}

class ItemsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("rota-items-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_ / "crates" / "b");
    std::filesystem::create_directories(dir_ / "crates" / "a");
    std::ofstream(dir_ / "list.txt") << "one\n\n  \ntwo\r\n";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};

TEST_F(ItemsTest, GlobMatchesSortedAndRelative) {
  auto items = read_items("crates/*", dir_.string());
  ASSERT_TRUE(items) << items.error().message;
  EXPECT_EQ(*items, (std::vector<std::string>{"crates/a", "crates/b"}));
  auto absolute = read_items((dir_ / "crates" / "*").string(), "/");
  ASSERT_TRUE(absolute);
  EXPECT_EQ(absolute->front(), (dir_ / "crates" / "a").string());
}

TEST_F(ItemsTest, FileGivesItsNonEmptyLines) {
  auto items = read_items("@list.txt", dir_.string());
  ASSERT_TRUE(items) << items.error().message;
  EXPECT_EQ(*items, (std::vector<std::string>{"one", "two"}));
}

TEST_F(ItemsTest, NothingMatchedIsAnError) {
  auto none = read_items("nothing/*", dir_.string());
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("'nothing/*' matches nothing"), std::string::npos);
  EXPECT_FALSE(read_items("@missing.txt", dir_.string()));
}

TEST(Watch, GlobWithoutSlashMatchesNamesAtAnyDepth) {
  EXPECT_TRUE(watch_matches("*.py", "a.py"));
  EXPECT_TRUE(watch_matches("*.py", "pkg/sub/a.py"));
  EXPECT_FALSE(watch_matches("*.py", "a.pyc"));
  EXPECT_TRUE(watch_matches("src/*.c", "src/main.c"));
  EXPECT_FALSE(watch_matches("src/*.c", "src/sub/main.c"));
  EXPECT_TRUE(watch_matches("", "anything/at/all"));
}

}  // namespace
}  // namespace rota
