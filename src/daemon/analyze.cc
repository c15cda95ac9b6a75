#include "daemon/analyze.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/duration.h"

namespace rota {
namespace {

constexpr int64_t kMinuteMs = 60'000;
constexpr double kSlowStartMs = 10'000;  // a p95 wait above this is worth a finding

}  // namespace

void MinuteCounter::add(int64_t now_ms, int64_t n) {
  int64_t minute = now_ms / kMinuteMs;
  size_t i = static_cast<size_t>(minute % 60);
  if (minute_of_[i] != minute) {
    minute_of_[i] = minute;
    counts_[i] = 0;
  }
  counts_[i] += n;
}

double MinuteCounter::rate(int64_t now_ms, int minutes) const {
  int64_t minute = now_ms / kMinuteMs;
  int64_t total = 0;
  for (int k = 0; k < minutes && k < 60; ++k) {
    size_t i = static_cast<size_t>((minute - k) % 60);
    if (minute_of_[i] == minute - k) total += counts_[i];
  }
  return static_cast<double>(total) / minutes;
}

std::vector<Finding> analyze(const AnalyzeInput& in) {
  std::vector<Finding> out;
  if (in.degraded) {
    std::string which;
    for (const auto& g : in.given_up) which += (which.empty() ? "" : ", ") + g;
    out.push_back({"degraded", fmt::format("the pool is degraded: {} given up", which),
                   "look at rota events for why it kept dying, then rota restart WORKER"});
  }
  // Below a task a minute there is no trend to speak of.
  if (in.backlog > 0 && in.arrivals_per_min >= 1 &&
      in.arrivals_per_min > in.completions_per_min * 1.1) {
    double per_worker = in.busy_workers > 0 ? in.completions_per_min / in.busy_workers : 0;
    std::string drain = "no task finished lately: look at rota health";
    if (per_worker > 0) {
      // Workers that would finish the backlog within the hour while arrivals go on.
      int needed =
          static_cast<int>(std::ceil((in.arrivals_per_min + in.backlog / 60.0) / per_worker));
      drain = fmt::format(
          "at {:.1f} tasks/min per worker, {} workers would drain it within the "
          "hour: rota scale {}",
          per_worker, needed, needed);
    }
    out.push_back({"backlog_growing",
                   fmt::format("the backlog grows: {:.1f} tasks/min arrive, {:.1f}/min finish, "
                               "{} waiting",
                               in.arrivals_per_min, in.completions_per_min, in.backlog),
                   drain});
  }
  for (const auto& g : in.command_stats) {
    int64_t attempts = g["attempts"];
    std::string command = g["key"];
    auto it = std::find_if(in.timeouts_by_command.begin(), in.timeouts_by_command.end(),
                           [&](const auto& t) { return t.first == command; });
    int64_t timeouts = it == in.timeouts_by_command.end() ? 0 : it->second;
    if (attempts >= 3 && timeouts * 2 > attempts) {
      out.push_back({"timeouts",
                     fmt::format("\"{}\" timed out in {} of its {} attempts in the last hour",
                                 command, timeouts, attempts),
                     "give it a longer --timeout, or split it into smaller tasks (one item per "
                     "task: rota add --each)"});
    }
  }
  for (const auto& w : in.workers) {
    int restarts = w.value("restarts", 0);
    if (restarts >= 3 && !w["slot"].is_null()) {
      out.push_back({"restarts",
                     fmt::format("slot {} was restarted {} times", w["slot"].get<int>(), restarts),
                     "rota events shows why its workers died; rota restart resets its count"});
    }
  }
  for (const auto& g : in.queue_stats) {
    double p95 = g["wait_ms"]["p95"];
    if (p95 > kSlowStartMs) {
      out.push_back(
          {"slow_start",
           fmt::format("tasks of queue {} waited {} to start (p95, last hour)",
                       g["key"].get<std::string>(), format_duration_ms(static_cast<int64_t>(p95))),
           fmt::format("add workers (rota scale {}) or raise the queue's limit",
                       in.pool_size + 2)});
    }
  }
  for (const auto& q : in.queues) {
    if (q["paused"].get<bool>() && q["ready"].get<int64_t>() > 0) {
      out.push_back({"paused_queue",
                     fmt::format("queue {} is paused with {} tasks ready",
                                 q["name"].get<std::string>(), q["ready"].get<int64_t>()),
                     fmt::format("rota queue resume {}", q["name"].get<std::string>())});
    }
  }
  return out;
}

}  // namespace rota
