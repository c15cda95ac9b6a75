#include "core/cron.h"

#include <date/tz.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace rota {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;

// Every instant below is explicit: the tests never read the real clock.

const date::time_zone* zone(std::string_view name) { return find_time_zone(name).value(); }

Cron cron(std::string_view expression) { return Cron::parse(expression).value(); }

// The message of the parse error, or "parsed" if the expression was accepted.
std::string parse_error(std::string_view expression) {
  auto parsed = Cron::parse(expression);
  if (parsed) return "parsed";
  EXPECT_EQ(parsed.error().code, Code::kInvalidArgument);
  EXPECT_EQ(parsed.error().message.find('\n'), std::string::npos);
  return parsed.error().message;
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

// An instant given as UTC wall time.
SysMs utc(int year, unsigned month, unsigned day, int hour = 0, int minute = 0) {
  return SysMs{date::sys_days{date::year{year} / month / day} + hours{hour} + minutes{minute}};
}

// An instant given as wall time in `tz`; the wall time must exist and be unambiguous.
SysMs wall(const date::time_zone* tz, int year, unsigned month, unsigned day, int hour = 0,
           int minute = 0) {
  auto local = date::local_days{date::year{year} / month / day} + hours{hour} + minutes{minute};
  return tz->to_sys(local);
}

// An instant as wall time in `tz` with the zone's abbreviation: "2025-11-02 01:30 EDT".
std::string show(std::optional<SysMs> t, const date::time_zone* tz) {
  if (!t) return "never";
  if (std::chrono::floor<minutes>(*t) != *t) return "not a whole minute";
  return date::format("%F %R %Z", date::make_zoned(tz, std::chrono::floor<minutes>(*t)));
}

std::string show_utc(std::optional<SysMs> t) { return show(t, zone("UTC")); }

// The next `count` fire times after `after`, shown in `tz`.
std::vector<std::string> fires(const Cron& schedule, const date::time_zone* tz, SysMs after,
                               int count) {
  std::vector<std::string> out;
  std::optional<SysMs> t = after;
  for (int i = 0; i < count && t; ++i) {
    t = schedule.next_after(*t, tz);
    out.push_back(show(t, tz));
  }
  return out;
}

// How many times the schedule fires in [begin, end).
int count_fires(const Cron& schedule, const date::time_zone* tz, SysMs begin, SysMs end) {
  int count = 0;
  for (auto t = schedule.next_after(begin - milliseconds{1}, tz); t && *t < end;
       t = schedule.next_after(*t, tz)) {
    ++count;
  }
  return count;
}

using Fires = std::vector<std::string>;

// ---- Parsing -----------------------------------------------------------------------------

// A star in every field fires every minute, at the start of the minute.
TEST(CronParse, StarFiresEveryMinute) {
  EXPECT_EQ(fires(cron("* * * * *"), zone("UTC"), utc(2025, 1, 1, 12) + milliseconds{30'500}, 2),
            (Fires{"2025-01-01 12:01 UTC", "2025-01-01 12:02 UTC"}));
}

// Lists, ranges and stepped ranges combine within one field.
TEST(CronParse, ListsRangesAndSteps) {
  EXPECT_EQ(fires(cron("5,10-12,20-30/5 0 * * *"), zone("UTC"), utc(2025, 1, 1), 8),
            (Fires{"2025-01-01 00:05 UTC", "2025-01-01 00:10 UTC", "2025-01-01 00:11 UTC",
                   "2025-01-01 00:12 UTC", "2025-01-01 00:20 UTC", "2025-01-01 00:25 UTC",
                   "2025-01-01 00:30 UTC", "2025-01-02 00:05 UTC"}));
}

// */n counts from the field's minimum; a-b/n from a, up to and including b.
TEST(CronParse, StepsCountFromTheStartOfTheRange) {
  EXPECT_EQ(fires(cron("*/20 3 * * *"), zone("UTC"), utc(2025, 1, 1), 4),
            (Fires{"2025-01-01 03:00 UTC", "2025-01-01 03:20 UTC", "2025-01-01 03:40 UTC",
                   "2025-01-02 03:00 UTC"}));
  EXPECT_EQ(fires(cron("10-40/15 3 * * *"), zone("UTC"), utc(2025, 1, 1), 4),
            (Fires{"2025-01-01 03:10 UTC", "2025-01-01 03:25 UTC", "2025-01-01 03:40 UTC",
                   "2025-01-02 03:10 UTC"}));
  EXPECT_EQ(fires(cron("0 0 1 */3 *"), zone("UTC"), utc(2025, 1, 1), 4),
            (Fires{"2025-04-01 00:00 UTC", "2025-07-01 00:00 UTC", "2025-10-01 00:00 UTC",
                   "2026-01-01 00:00 UTC"}));
  EXPECT_EQ(fires(cron("0 0 1-31/10 1 *"), zone("UTC"), utc(2025, 1, 1), 4),
            (Fires{"2025-01-11 00:00 UTC", "2025-01-21 00:00 UTC", "2025-01-31 00:00 UTC",
                   "2026-01-01 00:00 UTC"}));
}

// Month names work alone, in lists and in ranges, in any case.
TEST(CronParse, MonthNamesAreCaseInsensitive) {
  EXPECT_EQ(fires(cron("0 0 1 JAN,Jul *"), zone("UTC"), utc(2025, 1, 1), 3),
            (Fires{"2025-07-01 00:00 UTC", "2026-01-01 00:00 UTC", "2026-07-01 00:00 UTC"}));
  EXPECT_EQ(fires(cron("0 0 1 mar-may *"), zone("UTC"), utc(2025, 1, 1), 4),
            (Fires{"2025-03-01 00:00 UTC", "2025-04-01 00:00 UTC", "2025-05-01 00:00 UTC",
                   "2026-03-01 00:00 UTC"}));
}

// Weekday names work alone and in ranges, in any case (2025-01-01 is a Wednesday).
TEST(CronParse, WeekdayNamesAreCaseInsensitive) {
  EXPECT_EQ(fires(cron("0 0 * * MON-wed"), zone("UTC"), utc(2025, 1, 1), 4),
            (Fires{"2025-01-06 00:00 UTC", "2025-01-07 00:00 UTC", "2025-01-08 00:00 UTC",
                   "2025-01-13 00:00 UTC"}));
  EXPECT_EQ(fires(cron("0 0 * * Sat"), zone("UTC"), utc(2025, 1, 1), 1),
            (Fires{"2025-01-04 00:00 UTC"}));
}

// Sunday is 0, 7 or sun, and a range may end at 7.
TEST(CronParse, SundayIsZeroOrSeven) {
  const Fires sundays = {"2025-01-05 00:00 UTC", "2025-01-12 00:00 UTC"};
  EXPECT_EQ(fires(cron("0 0 * * 0"), zone("UTC"), utc(2025, 1, 1), 2), sundays);
  EXPECT_EQ(fires(cron("0 0 * * 7"), zone("UTC"), utc(2025, 1, 1), 2), sundays);
  EXPECT_EQ(fires(cron("0 0 * * sun"), zone("UTC"), utc(2025, 1, 1), 2), sundays);
  EXPECT_EQ(fires(cron("0 0 * * 5-7"), zone("UTC"), utc(2025, 1, 1), 4),
            (Fires{"2025-01-03 00:00 UTC", "2025-01-04 00:00 UTC", "2025-01-05 00:00 UTC",
                   "2025-01-10 00:00 UTC"}));
}

// Fields may be separated by any run of spaces and tabs, with blanks around the expression.
TEST(CronParse, AcceptsAnyBlanksBetweenFields) {
  EXPECT_EQ(fires(cron("  30\t 4  *\t* *\n"), zone("UTC"), utc(2025, 1, 1), 1),
            (Fires{"2025-01-01 04:30 UTC"}));
}

// expression() gives back the text exactly as parsed, macros unexpanded.
TEST(CronParse, KeepsTheExpressionAsGiven) {
  EXPECT_EQ(cron("*/5 * * * mon").expression(), "*/5 * * * mon");
  EXPECT_EQ(cron("@daily").expression(), "@daily");
}

// Each macro fires exactly like the five fields it stands for, in any case.
TEST(CronParse, MacrosMatchTheirExpansions) {
  const std::pair<const char*, const char*> kMacros[] = {
      {"@hourly", "0 * * * *"},   {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
      {"@weekly", "0 0 * * 0"},   {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
      {"@annually", "0 0 1 1 *"}, {"@DAILY", "0 0 * * *"}};
  for (const auto& [macro, fields] : kMacros) {
    EXPECT_EQ(fires(cron(macro), zone("Europe/Berlin"), utc(2025, 3, 20), 5),
              fires(cron(fields), zone("Europe/Berlin"), utc(2025, 3, 20), 5))
        << macro;
  }
  EXPECT_EQ(fires(cron("@weekly"), zone("UTC"), utc(2025, 1, 1), 1),
            (Fires{"2025-01-05 00:00 UTC"}));
}

// ---- Parse errors --------------------------------------------------------------------------

// The example from the header, word for word.
TEST(CronParseError, StepZero) {
  EXPECT_EQ(parse_error("*/0 * * * *"),
            "bad cron expression '*/0 * * * *': minute: step must be at least 1");
  EXPECT_EQ(parse_error("0 0 1-10/0 * *"),
            "bad cron expression '0 0 1-10/0 * *': day-of-month: step must be at least 1");
}

// An empty or blank expression is refused as empty.
TEST(CronParseError, Empty) {
  EXPECT_EQ(parse_error(""), "bad cron expression '': the expression is empty");
  EXPECT_EQ(parse_error(" \t "), "bad cron expression '   ': the expression is empty");
}

// Anything but five fields is refused with the count (so no seconds or year field).
TEST(CronParseError, WrongFieldCount) {
  EXPECT_EQ(parse_error("* * * *"),
            "bad cron expression '* * * *': expected 5 fields (minute hour day-of-month month "
            "day-of-week), got 4");
  EXPECT_TRUE(contains(parse_error("0 * * * * *"), "got 6"));
  EXPECT_TRUE(contains(parse_error("0 0 1 1 * 2030"), "got 6"));
}

// A value outside its field's range is refused, naming the field and the value.
TEST(CronParseError, OutOfRange) {
  EXPECT_EQ(parse_error("60 * * * *"),
            "bad cron expression '60 * * * *': minute: 60 is out of range 0-59");
  EXPECT_EQ(parse_error("0 24 * * *"),
            "bad cron expression '0 24 * * *': hour: 24 is out of range 0-23");
  EXPECT_TRUE(contains(parse_error("0 0 0 * *"), "day-of-month: 0 is out of range 1-31"));
  EXPECT_TRUE(contains(parse_error("0 0 32 * *"), "day-of-month: 32 is out of range 1-31"));
  EXPECT_TRUE(contains(parse_error("0 0 * 13 *"), "month: 13 is out of range 1-12"));
  EXPECT_TRUE(contains(parse_error("0 0 * 0 *"), "month: 0 is out of range 1-12"));
  EXPECT_TRUE(contains(parse_error("0 0 * * 8"), "day-of-week: 8 is out of range 0-7"));
  EXPECT_TRUE(contains(parse_error("1-99 * * * *"), "minute: 99 is out of range 0-59"));
  EXPECT_TRUE(contains(parse_error("99999999999999999999 * * * *"),
                       "minute: 99999999999999999999 is out of range 0-59"));
}

// A range must not run backwards; a wrap-around like fri-sun is written 5-7.
TEST(CronParseError, ReversedRange) {
  EXPECT_EQ(parse_error("0 17-9 * * *"),
            "bad cron expression '0 17-9 * * *': hour: range '17-9' is reversed (17 > 9)");
  EXPECT_TRUE(
      contains(parse_error("0 0 * * fri-sun"), "day-of-week: range 'fri-sun' is reversed (5 > 0)"));
}

// Unknown names are refused with a hint; names only work in the month and weekday fields.
TEST(CronParseError, UnknownNames) {
  EXPECT_EQ(parse_error("0 0 * foo *"),
            "bad cron expression '0 0 * foo *': month: unknown name 'foo' (use jan-dec or 1-12)");
  EXPECT_TRUE(contains(parse_error("0 0 * mon *"), "month: unknown name 'mon'"));
  EXPECT_TRUE(
      contains(parse_error("0 0 * * jan"), "day-of-week: unknown name 'jan' (use sun-sat or 0-7)"));
  EXPECT_TRUE(contains(parse_error("0 0 * * monday"), "day-of-week: unknown name 'monday'"));
  EXPECT_TRUE(contains(parse_error("jan * * * *"), "minute: 'jan' is not a number"));
  EXPECT_TRUE(contains(parse_error("0 0 x * *"), "day-of-month: 'x' is not a number"));
}

// Quartz's L, W, # and ? are refused as unsupported, not misread as names.
TEST(CronParseError, QuartzExtensions) {
  EXPECT_EQ(parse_error("0 0 L * *"),
            "bad cron expression '0 0 L * *': day-of-month: 'L' is not supported (no L, W, # "
            "or ?)");
  for (const char* expression : {"0 0 LW * *", "0 0 15W * *", "0 0 l * *", "0 0 * * 5L",
                                 "0 0 * * fri#3", "0 0 * * 5#3", "0 0 ? * mon", "0 0 1,L * *"}) {
    EXPECT_TRUE(contains(parse_error(expression), "is not supported (no L, W, # or ?)"))
        << expression;
  }
}

// Malformed lists, ranges and steps each get a message naming the token.
TEST(CronParseError, MalformedTokens) {
  EXPECT_TRUE(contains(parse_error("1,,2 * * * *"), "minute: empty item in list '1,,2'"));
  EXPECT_TRUE(contains(parse_error("1, * * * *"), "minute: empty item in list '1,'"));
  EXPECT_TRUE(contains(parse_error("1- * * * *"), "minute: a value is missing"));
  EXPECT_TRUE(contains(parse_error("-1 * * * *"), "minute: a value is missing"));
  EXPECT_TRUE(contains(parse_error("1-2-3 * * * *"), "minute: '2-3' is not a number"));
  EXPECT_TRUE(contains(parse_error("*/ * * * *"), "minute: step '' is not a number"));
  EXPECT_TRUE(contains(parse_error("*/x * * * *"), "minute: step 'x' is not a number"));
  EXPECT_TRUE(contains(parse_error("*/-1 * * * *"), "minute: step '-1' is not a number"));
  EXPECT_TRUE(contains(parse_error("5/10 * * * *"),
                       "minute: step in '5/10' needs a range or * before it, e.g. */5 or 0-30/5"));
  EXPECT_TRUE(contains(parse_error("** * * * *"), "minute: '**' is not a number"));
}

// Unknown macros, @reboot and a macro with more fields are refused.
TEST(CronParseError, Macros) {
  EXPECT_EQ(parse_error("@fortnightly"),
            "bad cron expression '@fortnightly': unknown macro '@fortnightly' (use @hourly, "
            "@daily, @midnight, @weekly, @monthly, @yearly or @annually)");
  EXPECT_TRUE(contains(parse_error("@reboot"), "unknown macro '@reboot'"));
  EXPECT_TRUE(contains(parse_error("@daily *"), "macro '@daily' must stand alone"));
  EXPECT_TRUE(contains(parse_error("@ * * * *"), "macro '@' must stand alone"));
}

// An expression spread over lines still gives a one-line error.
TEST(CronParseError, MessageIsOneLine) {
  EXPECT_EQ(parse_error("0 0\n* * 8"),
            "bad cron expression '0 0 * * 8': day-of-week: 8 is out of range 0-7");
}

// ---- Schedules (UTC) -----------------------------------------------------------------------

// Fire times are strictly after the given instant, which may fall inside a minute.
TEST(CronNext, StrictlyAfter) {
  const Cron hourly = cron("0 * * * *");
  EXPECT_EQ(show_utc(hourly.next_after(utc(2025, 1, 1, 10), zone("UTC"))), "2025-01-01 11:00 UTC");
  EXPECT_EQ(show_utc(hourly.next_after(utc(2025, 1, 1, 10) - milliseconds{1}, zone("UTC"))),
            "2025-01-01 10:00 UTC");
  EXPECT_EQ(show_utc(hourly.next_after(utc(2025, 1, 1, 10) + milliseconds{1}, zone("UTC"))),
            "2025-01-01 11:00 UTC");
}

// Office hours roll from Friday evening over the weekend to Monday morning.
TEST(CronNext, OfficeHoursAcrossAWeekend) {
  const Cron office = cron("*/15 9-17 * * mon-fri");
  // 2025-01-10 is a Friday.
  EXPECT_EQ(fires(office, zone("UTC"), utc(2025, 1, 10, 17, 30), 3),
            (Fires{"2025-01-10 17:45 UTC", "2025-01-13 09:00 UTC", "2025-01-13 09:15 UTC"}));
  EXPECT_EQ(fires(office, zone("UTC"), utc(2025, 1, 11, 12), 1), (Fires{"2025-01-13 09:00 UTC"}));
}

// A whole week of office hours is 5 days x 9 hours x 4 quarters.
TEST(CronNext, OfficeHoursCountOverAWeek) {
  EXPECT_EQ(
      count_fires(cron("*/15 9-17 * * mon-fri"), zone("UTC"), utc(2025, 1, 6), utc(2025, 1, 13)),
      180);
}

// The 31st only exists in seven months, and the others are skipped.
TEST(CronNext, ThirtyFirstSkipsShortMonths) {
  EXPECT_EQ(fires(cron("0 0 31 * *"), zone("UTC"), utc(2025, 1, 1), 8),
            (Fires{"2025-01-31 00:00 UTC", "2025-03-31 00:00 UTC", "2025-05-31 00:00 UTC",
                   "2025-07-31 00:00 UTC", "2025-08-31 00:00 UTC", "2025-10-31 00:00 UTC",
                   "2025-12-31 00:00 UTC", "2026-01-31 00:00 UTC"}));
}

// Feb 29 waits for the next leap year, even across 2100, which is not one.
TEST(CronNext, FebruaryTwentyNinthWaitsForALeapYear) {
  const Cron leap_day = cron("0 12 29 feb *");
  EXPECT_EQ(show_utc(leap_day.next_after(utc(2025, 3, 1), zone("UTC"))), "2028-02-29 12:00 UTC");
  EXPECT_EQ(show_utc(leap_day.next_after(utc(2024, 2, 28), zone("UTC"))), "2024-02-29 12:00 UTC");
  EXPECT_EQ(show_utc(leap_day.next_after(utc(2096, 3, 1), zone("UTC"))), "2104-02-29 12:00 UTC");
}

// A date that never exists yields no fire time rather than a search without end.
TEST(CronNext, ImpossibleDatesNeverFire) {
  for (const char* never : {"0 0 30 2 *", "0 0 31 2 *", "0 0 31 4,6,9,11 *"}) {
    EXPECT_EQ(cron(never).next_after(utc(2025, 1, 1), zone("UTC")), std::nullopt) << never;
    EXPECT_EQ(cron(never).next_after(utc(2025, 1, 1), zone("America/New_York")), std::nullopt)
        << never;
  }
}

// With both day fields restricted a day matches if either does: every 13th and every Friday.
TEST(CronNext, DayOfMonthOrDayOfWeek) {
  // 2025-07-04 is a Friday; 2025-07-13 is a Sunday.
  EXPECT_EQ(fires(cron("0 0 13 * fri"), zone("UTC"), utc(2025, 7, 1), 6),
            (Fires{"2025-07-04 00:00 UTC", "2025-07-11 00:00 UTC", "2025-07-13 00:00 UTC",
                   "2025-07-18 00:00 UTC", "2025-07-25 00:00 UTC", "2025-08-01 00:00 UTC"}));
}

// With one day field a star, only the other one counts.
TEST(CronNext, StarredDayFieldDefersToTheOther) {
  EXPECT_EQ(fires(cron("0 0 13 * *"), zone("UTC"), utc(2025, 7, 1), 2),
            (Fires{"2025-07-13 00:00 UTC", "2025-08-13 00:00 UTC"}));
  EXPECT_EQ(fires(cron("0 0 * * fri"), zone("UTC"), utc(2025, 7, 1), 2),
            (Fires{"2025-07-04 00:00 UTC", "2025-07-11 00:00 UTC"}));
}

// As in Vixie cron, a day field that starts with * counts as unrestricted even with a step, so
// "13 ... */2" means 13ths that fall on Sun, Tue, Thu or Sat (AND, not OR).
TEST(CronNext, StarWithStepCountsAsUnrestricted) {
  // 2025-01-13 is a Monday, 2025-02-13 a Thursday, 2025-06-13 a Friday.
  EXPECT_EQ(fires(cron("0 0 13 * */2"), zone("UTC"), utc(2025, 1, 1), 5),
            (Fires{"2025-02-13 00:00 UTC", "2025-03-13 00:00 UTC", "2025-04-13 00:00 UTC",
                   "2025-05-13 00:00 UTC", "2025-07-13 00:00 UTC"}));
}

// Schedules roll over the end of the year.
TEST(CronNext, YearBoundary) {
  const SysMs last_moment = utc(2026, 1, 1) - milliseconds{1};
  EXPECT_EQ(show_utc(cron("0 0 1 1 *").next_after(last_moment, zone("UTC"))),
            "2026-01-01 00:00 UTC");
  EXPECT_EQ(show_utc(cron("59 23 31 12 *").next_after(utc(2025, 12, 31, 23, 59), zone("UTC"))),
            "2026-12-31 23:59 UTC");
  EXPECT_EQ(fires(cron("*/30 * * * *"), zone("UTC"), utc(2025, 12, 31, 23, 15), 3),
            (Fires{"2025-12-31 23:30 UTC", "2026-01-01 00:00 UTC", "2026-01-01 00:30 UTC"}));
  EXPECT_EQ(fires(cron("0 0 * * mon"), zone("UTC"), utc(2025, 12, 28), 2),
            (Fires{"2025-12-29 00:00 UTC", "2026-01-05 00:00 UTC"}));
}

// ---- Time zones ---------------------------------------------------------------------------

// The same wall time is a different instant in each zone, including half-hour offsets.
TEST(CronZone, SameWallTimeInDifferentZones) {
  const Cron nine = cron("0 9 * * *");
  const SysMs after = utc(2025, 1, 15);
  EXPECT_EQ(show_utc(nine.next_after(after, zone("UTC"))), "2025-01-15 09:00 UTC");
  EXPECT_EQ(show_utc(nine.next_after(after, zone("America/New_York"))), "2025-01-15 14:00 UTC");
  EXPECT_EQ(show_utc(nine.next_after(after, zone("Asia/Kolkata"))), "2025-01-15 03:30 UTC");
  EXPECT_EQ(show_utc(nine.next_after(after, zone("Australia/Lord_Howe"))), "2025-01-15 22:00 UTC");
  // In summer New York is on EDT, one hour closer to UTC.
  EXPECT_EQ(show_utc(nine.next_after(utc(2025, 7, 15), zone("America/New_York"))),
            "2025-07-15 13:00 UTC");
}

// The weekday and the new year are those of the zone's calendar, not UTC's.
TEST(CronZone, CalendarIsLocal) {
  // Friday 23:00 in New York is Saturday 04:00 UTC.
  EXPECT_EQ(show_utc(cron("0 23 * * fri").next_after(utc(2025, 1, 1), zone("America/New_York"))),
            "2025-01-04 04:00 UTC");
  // Kolkata's new year begins at 18:30 UTC on Dec 31.
  EXPECT_EQ(show_utc(cron("@yearly").next_after(utc(2025, 6, 1), zone("Asia/Kolkata"))),
            "2025-12-31 18:30 UTC");
}

// Lord Howe Island moves its clocks by 30 minutes: 02:00 -> 02:30 in October.
TEST(CronZone, LordHoweHalfHourSpringForward) {
  const auto* tz = zone("Australia/Lord_Howe");
  EXPECT_EQ(fires(cron("15 2 * * *"), tz, wall(tz, 2025, 10, 4, 12), 2),
            (Fires{"2025-10-05 02:30 +11", "2025-10-06 02:15 +11"}));
  EXPECT_EQ(fires(cron("*/15 * * * *"), tz, wall(tz, 2025, 10, 5, 1, 20), 4),
            (Fires{"2025-10-05 01:30 +1030", "2025-10-05 01:45 +1030", "2025-10-05 02:30 +11",
                   "2025-10-05 02:45 +11"}));
}

// Lord Howe Island repeats 01:30-01:59 in April: once for fixed times, twice for */15.
TEST(CronZone, LordHoweHalfHourFallBack) {
  const auto* tz = zone("Australia/Lord_Howe");
  EXPECT_EQ(fires(cron("45 1 * * *"), tz, wall(tz, 2025, 4, 5, 12), 2),
            (Fires{"2025-04-06 01:45 +11", "2025-04-07 01:45 +1030"}));
  EXPECT_EQ(fires(cron("*/15 * * * *"), tz, wall(tz, 2025, 4, 6, 1, 20), 5),
            (Fires{"2025-04-06 01:30 +11", "2025-04-06 01:45 +11", "2025-04-06 01:30 +1030",
                   "2025-04-06 01:45 +1030", "2025-04-06 02:00 +1030"}));
}

// Known names resolve; "" and "local" both mean the machine's zone.
TEST(CronZone, FindsZonesByName) {
  ASSERT_TRUE(find_time_zone("Europe/Paris").has_value());
  EXPECT_EQ(find_time_zone("Europe/Paris").value()->name(), "Europe/Paris");
  ASSERT_TRUE(find_time_zone("UTC").has_value());
  const date::time_zone* machine = find_time_zone("local").value();
  EXPECT_EQ(find_time_zone("").value(), machine);
  EXPECT_NE(machine, nullptr);
}

// Unknown names are refused in one line that names the zone.
TEST(CronZone, UnknownZoneIsAnError) {
  auto missing = find_time_zone("Mars/Olympus");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, Code::kInvalidArgument);
  EXPECT_EQ(missing.error().message,
            "unknown time zone 'Mars/Olympus' (use an IANA name such as Europe/Paris or UTC, or "
            "local)");
  for (const char* bad : {"europe/paris", "Europe/Paris ", "../../etc/passwd", "+05:30", "Local",
                          "Europe/Paris\nUTC"}) {
    auto found = find_time_zone(bad);
    ASSERT_FALSE(found.has_value()) << bad;
    EXPECT_EQ(found.error().code, Code::kInvalidArgument);
    EXPECT_EQ(found.error().message.find('\n'), std::string::npos);
    EXPECT_TRUE(contains(found.error().message, "unknown time zone")) << bad;
  }
}

// ---- Daylight saving: spring forward ------------------------------------------------------

// Berlin jumps 02:00 -> 03:00 on 2025-03-30: a 02:30 job runs once at 03:00, then normally.
TEST(CronSpringForward, FixedTimeInTheGapFiresWhenTheGapEnds) {
  const auto* tz = zone("Europe/Berlin");
  EXPECT_EQ(fires(cron("30 2 * * *"), tz, wall(tz, 2025, 3, 29, 12), 3),
            (Fires{"2025-03-30 03:00 CEST", "2025-03-31 02:30 CEST", "2025-04-01 02:30 CEST"}));
}

// New York jumps 02:00 -> 03:00 on 2025-03-09: the same rule, 03:00 EDT is 07:00 UTC.
TEST(CronSpringForward, NewYorkGap) {
  const auto* tz = zone("America/New_York");
  EXPECT_EQ(fires(cron("30 2 * * *"), tz, wall(tz, 2025, 3, 8, 12), 2),
            (Fires{"2025-03-09 03:00 EDT", "2025-03-10 02:30 EDT"}));
  EXPECT_EQ(show_utc(cron("30 2 * * *").next_after(wall(tz, 2025, 3, 8, 12), tz)),
            "2025-03-09 07:00 UTC");
}

// Several fixed times inside one gap still fire only once, and not again after it.
TEST(CronSpringForward, GapFiresOnce) {
  const auto* tz = zone("Europe/Berlin");
  EXPECT_EQ(fires(cron("0,30 2 * * *"), tz, wall(tz, 2025, 3, 29, 12), 3),
            (Fires{"2025-03-30 03:00 CEST", "2025-03-31 02:00 CEST", "2025-03-31 02:30 CEST"}));
  // Asking again from the gap-end fire itself moves on to the next day.
  EXPECT_EQ(show(cron("30 2 * * *").next_after(utc(2025, 3, 30, 1), tz), tz),
            "2025-03-31 02:30 CEST");
}

// A job at 03:00 and one in the gap share the gap-end instant; it is one fire, not two.
TEST(CronSpringForward, GapEndCoincidesWithAMatch) {
  const auto* tz = zone("Europe/Berlin");
  EXPECT_EQ(fires(cron("0 2,3 * * *"), tz, wall(tz, 2025, 3, 29, 12), 3),
            (Fires{"2025-03-30 03:00 CEST", "2025-03-31 02:00 CEST", "2025-03-31 03:00 CEST"}));
}

// Every 15 minutes skips the hour that does not exist: 8 fires in the two real hours around it.
TEST(CronSpringForward, WildcardMinutesSkipTheGap) {
  const auto* tz = zone("Europe/Berlin");
  const Cron quarterly = cron("*/15 * * * *");
  EXPECT_EQ(fires(quarterly, tz, wall(tz, 2025, 3, 30, 1, 40), 2),
            (Fires{"2025-03-30 01:45 CET", "2025-03-30 03:00 CEST"}));
  EXPECT_EQ(count_fires(quarterly, tz, utc(2025, 3, 30, 0), utc(2025, 3, 30, 2)), 8);
}

// A wildcard hour ("30 * * * *") or wildcard minute ("* 2 * * *") skips the gap too.
TEST(CronSpringForward, WildcardHourSkipsTheGap) {
  const auto* ny = zone("America/New_York");
  EXPECT_EQ(fires(cron("30 * * * *"), ny, wall(ny, 2025, 3, 9, 1), 2),
            (Fires{"2025-03-09 01:30 EST", "2025-03-09 03:30 EDT"}));
  const auto* berlin = zone("Europe/Berlin");
  EXPECT_EQ(fires(cron("* 2 * * *"), berlin, wall(berlin, 2025, 3, 30, 1), 1),
            (Fires{"2025-03-31 02:00 CEST"}));
}

// ---- Daylight saving: fall back ------------------------------------------------------------

// New York repeats 01:00-01:59 on 2025-11-02: a 01:30 job runs at the first 01:30 only.
TEST(CronFallBack, FixedTimeFiresOnceInTheRepeatedHour) {
  const auto* tz = zone("America/New_York");
  const Cron half_past_one = cron("30 1 * * *");
  EXPECT_EQ(fires(half_past_one, tz, wall(tz, 2025, 11, 1, 12), 2),
            (Fires{"2025-11-02 01:30 EDT", "2025-11-03 01:30 EST"}));
  EXPECT_EQ(count_fires(half_past_one, tz, utc(2025, 11, 2, 4), utc(2025, 11, 2, 8)), 1);
}

// Every 15 minutes runs through both passes: 8 fires in the two real hours of 01:xx.
TEST(CronFallBack, WildcardMinutesFireInBothPasses) {
  const auto* tz = zone("America/New_York");
  const Cron quarterly = cron("*/15 * * * *");
  EXPECT_EQ(count_fires(quarterly, tz, utc(2025, 11, 2, 5), utc(2025, 11, 2, 7)), 8);
  // 05:40 UTC is 01:40 EDT, in the first pass.
  EXPECT_EQ(fires(quarterly, tz, utc(2025, 11, 2, 5, 40), 4),
            (Fires{"2025-11-02 01:45 EDT", "2025-11-02 01:00 EST", "2025-11-02 01:15 EST",
                   "2025-11-02 01:30 EST"}));
}

// Hourly runs every real hour, so 01:00 comes twice.
TEST(CronFallBack, HourlyFiresInBothPasses) {
  const auto* tz = zone("America/New_York");
  EXPECT_EQ(fires(cron("@hourly"), tz, wall(tz, 2025, 11, 2, 0, 30), 4),
            (Fires{"2025-11-02 01:00 EDT", "2025-11-02 01:00 EST", "2025-11-02 02:00 EST",
                   "2025-11-02 03:00 EST"}));
}

// A fixed minute with an hour range is still fixed-time: 01:30 runs once, 02:30 and 03:30 once.
TEST(CronFallBack, FixedTimeWithHourRange) {
  const auto* tz = zone("America/New_York");
  EXPECT_EQ(fires(cron("30 0-3 * * *"), tz, wall(tz, 2025, 11, 2), 5),
            (Fires{"2025-11-02 00:30 EDT", "2025-11-02 01:30 EDT", "2025-11-02 02:30 EST",
                   "2025-11-02 03:30 EST", "2025-11-03 00:30 EST"}));
}

// Asked from inside the second pass, a fixed-time job waits for the next day.
TEST(CronFallBack, FromInsideTheSecondPass) {
  const auto* tz = zone("America/New_York");
  // 06:40 UTC is 01:40 EST, after the first pass's 01:45 EDT (05:45 UTC).
  EXPECT_EQ(show(cron("45 1 * * *").next_after(utc(2025, 11, 2, 6, 40), tz), tz),
            "2025-11-03 01:45 EST");
  EXPECT_EQ(show(cron("*/15 * * * *").next_after(utc(2025, 11, 2, 6, 40), tz), tz),
            "2025-11-02 01:45 EST");
}

// Berlin repeats 02:00-02:59 on 2025-10-26: once for 02:30, twice for every 15 minutes.
TEST(CronFallBack, BerlinRepeatedHour) {
  const auto* tz = zone("Europe/Berlin");
  EXPECT_EQ(fires(cron("30 2 * * *"), tz, wall(tz, 2025, 10, 25, 12), 2),
            (Fires{"2025-10-26 02:30 CEST", "2025-10-27 02:30 CET"}));
  const Cron quarterly = cron("*/15 * * * *");
  EXPECT_EQ(count_fires(quarterly, tz, utc(2025, 10, 26, 0), utc(2025, 10, 26, 2)), 8);
  // 00:40 UTC is 02:40 CEST, in the first pass.
  EXPECT_EQ(fires(quarterly, tz, utc(2025, 10, 26, 0, 40), 2),
            (Fires{"2025-10-26 02:45 CEST", "2025-10-26 02:00 CET"}));
}

// ---- Whole years --------------------------------------------------------------------------

// Over a year a fixed daily time fires every day, the DST days included, and hourly fires
// every real hour: both rules together leave no gap and no double.
TEST(CronYear, DailyAndHourlyCountsOverAYear) {
  for (const char* name : {"Europe/Berlin", "America/New_York", "Australia/Lord_Howe"}) {
    const auto* tz = zone(name);
    const SysMs begin = wall(tz, 2025, 1, 1);
    const SysMs end = wall(tz, 2026, 1, 1);
    EXPECT_EQ(count_fires(cron("30 2 * * *"), tz, begin, end), 365) << name;
    EXPECT_EQ(count_fires(cron("0 0 * * *"), tz, begin, end), 365) << name;
  }
  for (const char* name : {"Europe/Berlin", "America/New_York", "Asia/Kolkata"}) {
    EXPECT_EQ(count_fires(cron("0 * * * *"), zone(name), utc(2025, 1, 1), utc(2026, 1, 1)),
              365 * 24)
        << name;
  }
}

}  // namespace
}  // namespace rota
