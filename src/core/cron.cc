#include "core/cron.h"

#include <date/tz.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <charconv>
#include <exception>
#include <expected>
#include <span>
#include <vector>

namespace rota {
namespace {

using std::chrono::days;
using std::chrono::hours;
using std::chrono::local_days;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

// Far enough to find Feb 29 after a skipped leap year (2096 -> 2104), the longest gap between
// two fire times of any schedule that can fire at all.
constexpr days kSearchHorizon{9 * 366};

constexpr std::array<std::string_view, 12> kMonthNames = {"jan", "feb", "mar", "apr", "may", "jun",
                                                          "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<std::string_view, 7> kWeekdayNames = {"sun", "mon", "tue", "wed",
                                                           "thu", "fri", "sat"};

struct FieldSpec {
  const char* name;
  int min;
  int max;
  std::span<const std::string_view> names;  // names[i] stands for min + i
  const char* names_hint;
};

constexpr std::array<FieldSpec, 5> kFields = {{
    {"minute", 0, 59, {}, ""},
    {"hour", 0, 23, {}, ""},
    {"day-of-month", 1, 31, {}, ""},
    {"month", 1, 12, kMonthNames, " (use jan-dec or 1-12)"},
    {"day-of-week", 0, 7, kWeekdayNames, " (use sun-sat or 0-7)"},
}};

struct Macro {
  std::string_view name;
  std::string_view fields;
};

constexpr std::array<Macro, 7> kMacros = {{
    {"@hourly", "0 * * * *"},
    {"@daily", "0 0 * * *"},
    {"@midnight", "0 0 * * *"},
    {"@weekly", "0 0 * * 0"},
    {"@monthly", "0 0 1 * *"},
    {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
}};

// A failure inside one field; parse() adds the expression and the field's name.
template <class T>
using FieldResult = std::expected<T, std::string>;

std::string lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The text with control characters blanked, so that an error message stays one line.
std::string one_line(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (std::iscntrl(static_cast<unsigned char>(c))) c = ' ';
  }
  return out;
}

std::vector<std::string_view> split_fields(std::string_view text) {
  constexpr std::string_view kBlanks = " \t\r\n\v\f";
  std::vector<std::string_view> fields;
  size_t start = text.find_first_not_of(kBlanks);
  while (start != std::string_view::npos) {
    size_t end = std::min(text.find_first_of(kBlanks, start), text.size());
    fields.push_back(text.substr(start, end - start));
    start = text.find_first_not_of(kBlanks, end);
  }
  return fields;
}

bool all_digits(std::string_view text) {
  return std::ranges::all_of(text, [](char c) { return c >= '0' && c <= '9'; });
}

// Quartz-style "L", "LW", "15W" or "5L", which look like values but are not.
bool is_quartz_value(std::string_view value) {
  std::string lower = lowercase(value);
  if (lower == "l" || lower == "lw") return true;
  if (lower.size() < 2 || (lower.back() != 'l' && lower.back() != 'w')) return false;
  return all_digits(std::string_view(lower).substr(0, lower.size() - 1));
}

FieldResult<int> parse_value(std::string_view text, const FieldSpec& spec) {
  if (text.empty()) return std::unexpected("a value is missing");
  if (is_quartz_value(text)) {
    return std::unexpected("'" + std::string(text) + "' is not supported (no L, W, # or ?)");
  }
  if (!all_digits(text)) {
    const std::string lower = lowercase(text);
    for (size_t i = 0; i < spec.names.size(); ++i) {
      if (spec.names[i] == lower) return spec.min + static_cast<int>(i);
    }
    if (spec.names.empty()) return std::unexpected("'" + std::string(text) + "' is not a number");
    return std::unexpected("unknown name '" + std::string(text) + "'" + spec.names_hint);
  }
  int value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || value < spec.min || value > spec.max) {
    return std::unexpected(std::string(text) + " is out of range " + std::to_string(spec.min) +
                           "-" + std::to_string(spec.max));
  }
  return value;
}

FieldResult<int> parse_step(std::string_view text) {
  if (text.empty() || !all_digits(text)) {
    return std::unexpected("step '" + std::string(text) + "' is not a number");
  }
  int step = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), step);
  if (error != std::errc() || step < 1) return std::unexpected("step must be at least 1");
  return step;
}

// One list item: "*", "n", "a-b", "*/n" or "a-b/n", as a bit set of the values it covers.
FieldResult<uint64_t> parse_item(std::string_view item, const FieldSpec& spec) {
  if (item.find_first_of("#?") != std::string_view::npos) {
    return std::unexpected("'" + std::string(item) + "' is not supported (no L, W, # or ?)");
  }
  const size_t slash = item.find('/');
  const std::string_view range = item.substr(0, slash);
  int step = 1;
  if (slash != std::string_view::npos) {
    auto parsed = parse_step(item.substr(slash + 1));
    if (!parsed) return std::unexpected(parsed.error());
    step = *parsed;
  }
  int first = spec.min;
  int last = spec.max;
  if (range != "*") {
    const size_t dash = range.find('-');
    auto low = parse_value(range.substr(0, dash), spec);
    if (!low) return std::unexpected(low.error());
    first = last = *low;
    if (dash != std::string_view::npos) {
      auto high = parse_value(range.substr(dash + 1), spec);
      if (!high) return std::unexpected(high.error());
      last = *high;
    } else if (slash != std::string_view::npos) {
      return std::unexpected("step in '" + std::string(item) +
                             "' needs a range or * before it, e.g. */5 or 0-30/5");
    }
  }
  if (first > last) {
    return std::unexpected("range '" + std::string(range) + "' is reversed (" +
                           std::to_string(first) + " > " + std::to_string(last) + ")");
  }
  uint64_t bits = 0;
  for (int value = first; value <= last; value += step) bits |= uint64_t{1} << value;
  return bits;
}

FieldResult<uint64_t> parse_field(std::string_view text, const FieldSpec& spec) {
  uint64_t bits = 0;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string_view item = text.substr(start, comma - start);
    if (item.empty()) return std::unexpected("empty item in list '" + std::string(text) + "'");
    auto item_bits = parse_item(item, spec);
    if (!item_bits) return std::unexpected(item_bits.error());
    bits |= *item_bits;
    if (comma == std::string_view::npos) return bits;
    start = comma + 1;
  }
}

// The five fields of `text`, with a macro expanded; an error is the detail after the colon.
FieldResult<std::vector<std::string_view>> split_expression(std::string_view text) {
  std::vector<std::string_view> fields = split_fields(text);
  if (fields.empty()) return std::unexpected("the expression is empty");
  if (fields.front().starts_with('@')) {
    if (fields.size() != 1) {
      return std::unexpected("macro '" + std::string(fields.front()) + "' must stand alone");
    }
    const std::string name = lowercase(fields.front());
    for (const Macro& macro : kMacros) {
      if (macro.name == name) return split_fields(macro.fields);
    }
    return std::unexpected("unknown macro '" + std::string(fields.front()) +
                           "' (use @hourly, @daily, @midnight, @weekly, @monthly, @yearly or "
                           "@annually)");
  }
  if (fields.size() != kFields.size()) {
    return std::unexpected("expected 5 fields (minute hour day-of-month month day-of-week), got " +
                           std::to_string(fields.size()));
  }
  return fields;
}

bool has(uint64_t bits, unsigned value) { return value < 64 && (bits >> value) & 1; }

// The smallest value >= `from` whose bit is set, or -1.
int next_value(uint64_t bits, int from) {
  if (from >= 64) return -1;
  const uint64_t rest = bits >> from;
  return rest == 0 ? -1 : from + std::countr_zero(rest);
}

// The first whole local minute at or after instant `t` in a period with UTC offset `offset`.
minutes local_ceil(SysMs t, seconds offset) {
  return std::chrono::ceil<minutes>(t.time_since_epoch() + offset);
}

SysMs to_sys(minutes local, seconds offset) { return SysMs{local - offset}; }

minutes start_of(local_days day) { return day.time_since_epoch(); }

// The UTC offset in force just before `period` began.
seconds offset_before(const date::time_zone* zone, const date::sys_info& period) {
  return zone->get_info(period.begin - seconds{1}).offset;
}

}  // namespace

Result<const date::time_zone*> find_time_zone(std::string_view name) {
  const bool local = name.empty() || name == "local";
  try {
    const date::time_zone* zone =
        local ? date::current_zone() : date::locate_zone(std::string(name));
    // Load the zone's rules now: a broken zoneinfo file should fail here, not in next_after.
    zone->get_info(std::chrono::sys_seconds{});
    return zone;
  } catch (const std::exception& e) {
    if (local) {
      return make_error(Code::kInvalidArgument,
                        "cannot determine the machine's time zone: " + one_line(e.what()));
    }
    return make_error(Code::kInvalidArgument,
                      "unknown time zone '" + one_line(name) +
                          "' (use an IANA name such as Europe/Paris or UTC, or local)");
  }
}

Result<Cron> Cron::parse(std::string_view expression) {
  auto fail = [&](const std::string& detail) {
    return make_error(Code::kInvalidArgument,
                      "bad cron expression '" + one_line(expression) + "': " + detail);
  };
  auto fields = split_expression(expression);
  if (!fields) return fail(fields.error());
  std::array<uint64_t, kFields.size()> bits{};
  for (size_t i = 0; i < kFields.size(); ++i) {
    auto parsed = parse_field((*fields)[i], kFields[i]);
    if (!parsed) return fail(std::string(kFields[i].name) + ": " + parsed.error());
    bits[i] = *parsed;
  }
  auto starred = [&](size_t i) { return (*fields)[i].starts_with('*'); };
  Cron cron;
  cron.expression_ = std::string(expression);
  cron.minutes_ = bits[0];
  cron.hours_ = bits[1];
  cron.days_of_month_ = bits[2];
  cron.months_ = bits[3];
  // Sunday may be written 7; fold it onto 0.
  cron.days_of_week_ = (bits[4] | (bits[4] >> 7)) & 0x7f;
  cron.day_of_month_restricted_ = !starred(2);
  cron.day_of_week_restricted_ = !starred(4);
  cron.fixed_time_ = !starred(0) && !starred(1);
  return cron;
}

bool Cron::day_matches(local_days day) const {
  const std::chrono::year_month_day date{day};
  const bool by_month_day = has(days_of_month_, static_cast<unsigned>(date.day()));
  const bool by_weekday = has(days_of_week_, std::chrono::weekday{day}.c_encoding());
  if (day_of_month_restricted_ && day_of_week_restricted_) return by_month_day || by_weekday;
  return by_month_day && by_weekday;
}

// Skips forward field by field (month, day, hour, minute), so a year costs at most a few
// hundred steps rather than half a million minutes.
std::optional<Cron::LocalMinutes> Cron::first_match(LocalMinutes from, LocalMinutes end) const {
  LocalMinutes t = from;
  while (t < end) {
    const local_days day = std::chrono::floor<days>(std::chrono::local_time<minutes>{t});
    const std::chrono::year_month_day date{day};
    const int month = static_cast<int>(static_cast<unsigned>(date.month()));
    if (!has(months_, month)) {
      const int next = next_value(months_, month);
      const auto year = next > 0 ? date.year() : date.year() + std::chrono::years{1};
      const int first = next > 0 ? next : next_value(months_, 1);
      t = start_of(local_days{year / first / 1});
      continue;
    }
    if (!day_matches(day)) {
      t = start_of(day + days{1});
      continue;
    }
    const int hour = static_cast<int>(std::chrono::floor<hours>(t - start_of(day)).count());
    const int next_hour = next_value(hours_, hour);
    if (next_hour != hour) {
      t = next_hour < 0 ? start_of(day + days{1}) : start_of(day) + hours{next_hour};
      continue;
    }
    const int minute = static_cast<int>((t - start_of(day) - hours{hour}).count());
    const int next_minute = next_value(minutes_, minute);
    if (next_minute < 0) {
      t = start_of(day) + hours{hour + 1};
      continue;
    }
    t = start_of(day) + hours{hour} + minutes{next_minute};
    if (t < end) return t;
  }
  return std::nullopt;
}

// Walks the zone's periods of constant UTC offset. Within one period local time maps one to one
// onto real time, so the first local match is the answer; the daylight-saving rules of the
// header apply at the two kinds of boundary between periods.
std::optional<SysMs> Cron::next_after(SysMs after, const date::time_zone* zone) const {
  const SysMs horizon = after + kSearchHorizon;
  SysMs from = after + milliseconds{1};  // fire times are strictly after `after`
  while (from < horizon) {
    const date::sys_info period = zone->get_info(from);
    const SysMs end = std::min<SysMs>(period.end, horizon);
    LocalMinutes first = local_ceil(from, period.offset);
    if (fixed_time_) {
      // After falling back, a fixed-time schedule already fired in the first pass over the
      // repeated wall times [begin + offset, begin + earlier offset).
      first = std::max(first, local_ceil(period.begin, offset_before(zone, period)));
    }
    if (auto match = first_match(first, local_ceil(end, period.offset))) {
      return to_sys(*match, period.offset);
    }
    if (end == horizon) break;
    // Springing forward skips the wall times [end + offset, end + next offset); a fixed-time
    // schedule that matches one of them fires once, when the gap ends.
    const seconds next_offset = zone->get_info(period.end).offset;
    if (fixed_time_ && next_offset > period.offset &&
        first_match(local_ceil(end, period.offset), local_ceil(end, next_offset))) {
      return end;
    }
    from = end;
  }
  return std::nullopt;
}

}  // namespace rota
