#include "core/duration.h"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <limits>

namespace rota {
namespace {

struct Unit {
  std::string_view suffix;
  int64_t ms;
};

constexpr std::array kUnits = {Unit{"ms", 1}, Unit{"s", 1000}, Unit{"m", 60'000},
                               Unit{"h", 3'600'000}, Unit{"d", 86'400'000}};

}  // namespace

Result<int64_t> parse_duration_ms(std::string_view text, std::string_view flag) {
  auto bad = [&] {
    return make_error(
        Code::kInvalidArgument,
        fmt::format("{}: \"{}\" is not a duration (try 500ms, 90s, 10m, 2h, 1d)", flag, text),
        std::string(flag));
  };
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0 || digits == text.size()) return bad();
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + digits, value);
  if (ec != std::errc() || ptr != text.data() + digits) return bad();
  std::string_view suffix = text.substr(digits);
  for (const auto& unit : kUnits) {
    if (suffix != unit.suffix) continue;
    if (value > std::numeric_limits<int64_t>::max() / unit.ms) return bad();
    return value * unit.ms;
  }
  return bad();
}

std::string format_duration_ms(int64_t ms) {
  if (ms < 1000) return fmt::format("{}ms", ms);
  if (ms < 60'000) return fmt::format("{:.1f}s", ms / 1000.0);
  int64_t s = ms / 1000;
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  if (s < 86400) return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
  return fmt::format("{}d{:02}h", s / 86400, s % 86400 / 3600);
}

}  // namespace rota
