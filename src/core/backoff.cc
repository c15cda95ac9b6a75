#include "core/backoff.h"

#include <algorithm>
#include <string>

#include "core/duration.h"

namespace rota {

Result<Backoff> parse_backoff(std::string_view text) {
  Backoff backoff;
  auto comma = text.find(',');
  auto base = parse_duration_ms(text.substr(0, comma), "--backoff");
  if (!base) return std::unexpected(base.error());
  backoff.base_ms = *base;
  backoff.max_ms = std::max(backoff.max_ms, *base);
  if (comma != std::string_view::npos) {
    auto max = parse_duration_ms(text.substr(comma + 1), "--backoff");
    if (!max) return std::unexpected(max.error());
    if (*max < *base) {
      return make_error(Code::kInvalidArgument,
                        "--backoff: the maximum must not be below the base (try 1s,5m)",
                        "--backoff");
    }
    backoff.max_ms = *max;
  }
  return backoff;
}

int64_t backoff_ceiling_ms(const Backoff& backoff, int retry) {
  int64_t ceiling = backoff.base_ms;
  for (int i = 1; i < retry && ceiling < backoff.max_ms; ++i) ceiling *= 2;
  return std::min(ceiling, backoff.max_ms);
}

int64_t backoff_delay_ms(const Backoff& backoff, int retry, double unit) {
  return static_cast<int64_t>(static_cast<double>(backoff_ceiling_ms(backoff, retry)) * unit);
}

}  // namespace rota
