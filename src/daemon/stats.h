// rota stats: per group (queue, label, worker or command) over a window of finished attempts:
// completed, failed, success rate, retries, duration p50/p95/max, wait mean/p95, throughput.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "store/store.h"

namespace rota {

enum class StatsBy { kQueue, kLabel, kWorker, kCommand };
Result<StatsBy> parse_stats_by(const std::string& text);

// Aggregates `attempts` (all finished within [from_ms, to_ms]) by `by`.
// Returns {"from", "to", "groups": [{key, completed, failed, success_rate, retries, attempts,
// duration_ms: {p50, p95, max}, wait_ms: {mean, p95}, throughput_per_min}]}.
nlohmann::json compute_stats(const std::vector<AttemptRecord>& attempts, StatsBy by,
                             int64_t from_ms, int64_t to_ms);

// Per worker: tasks done and failed, busy time and its share of `window_ms`.
nlohmann::json worker_stats(const std::vector<AttemptRecord>& attempts, int64_t window_ms);

}  // namespace rota
