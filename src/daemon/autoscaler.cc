#include "daemon/autoscaler.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/duration.h"

namespace rota {

void Autoscaler::set_range(std::optional<AutoscaleRange> range) {
  range_ = range;
  backlog_since_ms_.reset();
  idle_since_ms_.reset();
}

std::optional<std::pair<int, std::string>> Autoscaler::decide(const PoolLoad& l) {
  if (!range_) return std::nullopt;
  const AutoscaleRange& r = *range_;
  if (l.size < r.min) return std::pair{r.min, fmt::format("below the minimum of {}", r.min)};
  if (l.size > r.max) return std::pair{r.max, fmt::format("above the maximum of {}", r.max)};

  bool backlog = l.ready > 0 && l.idle == 0;
  if (!backlog) backlog_since_ms_.reset();
  if (backlog && !backlog_since_ms_) backlog_since_ms_ = l.now_ms;
  bool idle = l.idle > 0 && l.ready == 0;
  if (!idle) idle_since_ms_.reset();
  if (idle && !idle_since_ms_) idle_since_ms_ = l.now_ms;

  if (backlog && l.size < r.max && l.now_ms - *backlog_since_ms_ >= up_wait_ms_) {
    int64_t waited = l.now_ms - *backlog_since_ms_;
    backlog_since_ms_ = l.now_ms;  // give the new workers a scale_up_wait to catch up
    int to = static_cast<int>(std::min<int64_t>(r.max, l.size + l.ready));
    return std::pair{to, fmt::format("{} tasks ready for {} with no idle worker", l.ready,
                                     format_duration_ms(waited))};
  }
  if (idle && l.size > r.min && l.now_ms - *idle_since_ms_ >= down_idle_ms_) {
    int64_t waited = l.now_ms - *idle_since_ms_;
    idle_since_ms_ = l.now_ms;
    int to = std::max(r.min, l.size - l.idle);
    return std::pair{to, fmt::format("{} workers idle for {}", l.idle, format_duration_ms(waited))};
  }
  return std::nullopt;
}

}  // namespace rota
