// Autoscaling by backlog (`rota scale --min N --max M`): the pool grows when ready tasks have
// waited longer than scale_up_wait with no idle worker, and shrinks after scale_down_idle of
// idle workers. Every change is an event.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace rota {

struct AutoscaleRange {
  int min = 0;
  int max = 0;
};

// What the autoscaler sees each tick.
struct PoolLoad {
  int64_t now_ms = 0;
  int size = 0;
  int idle = 0;
  int64_t ready = 0;  // queued tasks
};

class Autoscaler {
 public:
  Autoscaler(int64_t scale_up_wait_ms, int64_t scale_down_idle_ms)
      : up_wait_ms_(scale_up_wait_ms), down_idle_ms_(scale_down_idle_ms) {}

  void set_range(std::optional<AutoscaleRange> range);
  const std::optional<AutoscaleRange>& range() const { return range_; }

  // The size the pool should have now, with why; empty when it should stay as it is.
  std::optional<std::pair<int, std::string>> decide(const PoolLoad& load);

 private:
  int64_t up_wait_ms_;
  int64_t down_idle_ms_;
  std::optional<AutoscaleRange> range_;
  std::optional<int64_t> backlog_since_ms_;  // ready tasks and no idle worker since then
  std::optional<int64_t> idle_since_ms_;     // idle workers and nothing ready since then
};

}  // namespace rota
