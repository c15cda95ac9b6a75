// Durations as users write them: 500ms, 90s, 10m, 2h, 1d.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"

namespace rota {

// Parses "<digits><unit>" with unit ms, s, m, h or d into milliseconds.
// On failure the message names `flag` and shows examples.
Result<int64_t> parse_duration_ms(std::string_view text, std::string_view flag);

// Formats milliseconds compactly: 1.5s, 2m03s, 3h10m, 450ms.
std::string format_duration_ms(int64_t ms);

}  // namespace rota
