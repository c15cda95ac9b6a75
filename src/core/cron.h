// Cron schedules evaluated in a time zone: "*/15 9-17 * * mon-fri" in Europe/Berlin.
//
// The syntax is Vixie cron's five fields; the daylight-saving rules are cronie's (see
// next_after). Time zones come from the system's IANA database via Howard Hinnant's date/tz.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.h"

namespace date {
class time_zone;
}

namespace rota {

using SysMs = std::chrono::sys_time<std::chrono::milliseconds>;

// A time zone by IANA name ("Europe/Paris", "UTC"); "" or "local" means the machine's zone.
// On success the pointer is never null and lives for the whole program.
// Errors: kInvalidArgument, one line naming the zone, if the name is unknown or the machine's
// zone cannot be determined.
Result<const date::time_zone*> find_time_zone(std::string_view name);

class Cron {
 public:
  // Five fields separated by blanks (spaces, tabs, newlines): minute (0-59) hour (0-23)
  // day-of-month (1-31) month (1-12 or jan-dec) day-of-week (0-7 or sun-sat; 0 and 7 are both
  // Sunday). Each field is a comma-separated list of `*`, `n`, `a-b`, `*/n` or `a-b/n`; names are
  // case-insensitive and may be used in ranges ("mon-fri"). Instead of five fields, one macro:
  // @hourly "0 * * * *", @daily and @midnight "0 0 * * *", @weekly "0 0 * * 0",
  // @monthly "0 0 1 * *", @yearly and @annually "0 0 1 1 *".
  // Not supported, each refused with a clear error: Quartz extensions (L, W, #, ?), a step
  // without a range ("5/10"), @reboot, a seconds or year field.
  //
  // Errors: kInvalidArgument with one line that names the field and the bad token, e.g.
  //   "bad cron expression '*/0 * * * *': minute: step must be at least 1"
  static Result<Cron> parse(std::string_view expression);

  // The first fire time strictly after `after`, evaluated in the wall-clock time of `zone`.
  // Fire times are whole local minutes. Returns nullopt if the schedule never fires (e.g.
  // "0 0 30 2 *"): the search looks 9 years ahead, which covers the longest gap any satisfiable
  // schedule has (Feb 29 across a skipped leap year such as 2100).
  //
  // Days (Vixie cron): a field is unrestricted when its text starts with `*` (so `*/2` counts as
  // unrestricted here). If both day-of-month and day-of-week are restricted, a day matches when
  // EITHER does ("0 0 13 * fri" fires on every 13th and on every Friday); otherwise a day
  // matches when both do, which means only the restricted one counts.
  //
  // Daylight saving (cronie): a schedule is *fixed-time* if neither its minute nor its hour
  // field starts with `*` ("30 2 * * *", "0,30 1 * * *", @daily); any other schedule is
  // *wildcard* ("*/15 * * * *", "0 * * * *", "* 2 * * *", @hourly).
  // - Spring forward, when a wall time does not exist (02:30 on the day Europe/Berlin jumps
  //   02:00 -> 03:00): a fixed-time schedule with one or more matches inside the gap fires
  //   exactly once, at the instant the gap ends (03:00 local); a wildcard schedule skips the
  //   minutes that do not exist.
  // - Fall back, when a wall time occurs twice (01:30 on the day America/New_York repeats
  //   01:00-01:59): a fixed-time schedule fires only at the first occurrence; a wildcard
  //   schedule fires in both passes, so "*/15 * * * *" stays every 15 minutes of real time.
  //
  // FIXME: with Debian's "slim" zoneinfo files date/tz knows no transitions after 2037, so
  // later dates use each zone's last offset before 2038 (no DST).
  //
  // REQUIRES: zone != nullptr (use find_time_zone).
  std::optional<SysMs> next_after(SysMs after, const date::time_zone* zone) const;

  // The expression exactly as given to parse().
  const std::string& expression() const { return expression_; }

 private:
  // Local wall-clock time as minutes since 1970-01-01 00:00 in the zone (a local_time count).
  using LocalMinutes = std::chrono::minutes;

  Cron() = default;

  // The first local minute in [from, end) that matches the fields, ignoring time zones.
  std::optional<LocalMinutes> first_match(LocalMinutes from, LocalMinutes end) const;
  // Whether a local calendar day matches the day-of-month and day-of-week fields.
  bool day_matches(std::chrono::local_days day) const;

  std::string expression_;
  // Bit n is set when value n matches; day-of-week uses bits 0-6 (Sunday is 0).
  uint64_t minutes_ = 0;
  uint64_t hours_ = 0;
  uint64_t days_of_month_ = 0;
  uint64_t months_ = 0;
  uint64_t days_of_week_ = 0;
  bool day_of_month_restricted_ = false;
  bool day_of_week_restricted_ = false;
  bool fixed_time_ = false;  // neither minute nor hour starts with `*` (for daylight saving)
};

}  // namespace rota
