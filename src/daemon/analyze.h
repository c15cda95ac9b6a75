// rota analyze: findings from what the daemon knows, each with its numbers and what to do.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace rota {

// Counts per minute over the last hour, in a ring (rolling aggregates for rates).
class MinuteCounter {
 public:
  void add(int64_t now_ms, int64_t n = 1);
  // Events per minute over the last `minutes` minutes (the current one included).
  double rate(int64_t now_ms, int minutes) const;

 private:
  std::array<int64_t, 60> counts_{};
  std::array<int64_t, 60> minute_of_{};
};

struct AnalyzeInput {
  double arrivals_per_min = 0;     // tasks added, last 15 minutes
  double completions_per_min = 0;  // tasks finished, last 15 minutes
  int64_t backlog = 0;             // waiting + scheduled + queued outside paused queues
  int busy_workers = 0;
  int pool_size = 0;
  bool degraded = false;
  std::vector<std::string> given_up;  // "slot N (worker M)"
  nlohmann::json command_stats;       // compute_stats(..., kCommand) groups, last hour
  nlohmann::json queue_stats;         // compute_stats(..., kQueue) groups, last hour
  nlohmann::json queues;              // [{name, paused, ready}]
  nlohmann::json workers;             // [{id, slot, restarts}]
  std::vector<std::pair<std::string, int64_t>> timeouts_by_command;  // (command, timeouts)
};

struct Finding {
  std::string kind;     // backlog_growing, timeouts, restarts, slow_start, paused_queue, degraded
  std::string message;  // the finding, with its numbers
  std::string action;   // what to do
};

std::vector<Finding> analyze(const AnalyzeInput& in);

}  // namespace rota
