// Retry backoff: exponential with full jitter (AWS architecture blog, "Exponential Backoff
// And Jitter"): the delay before retry n is uniform in [0, min(max, base * 2^(n-1))].
#pragma once

#include <cstdint>
#include <string_view>

#include "core/error.h"

namespace rota {

struct Backoff {
  int64_t base_ms = 1000;
  int64_t max_ms = 300'000;
};

// Parses "BASE[,MAX]" as given to --backoff, e.g. "1s,5m" or "200ms".
Result<Backoff> parse_backoff(std::string_view text);

// The upper bound of the delay before retry number `retry` (1 for the first retry).
int64_t backoff_ceiling_ms(const Backoff& backoff, int retry);

// The jittered delay: `unit` is a uniform random number in [0, 1).
int64_t backoff_delay_ms(const Backoff& backoff, int retry, double unit);

}  // namespace rota
