#include "daemon/stats.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "core/clock.h"

namespace rota {
namespace {

using nlohmann::json;

struct Group {
  int64_t attempts = 0;
  int64_t completed = 0;  // tasks whose final attempt succeeded
  int64_t failed = 0;     // tasks whose final attempt failed
  int64_t retries = 0;    // failed attempts that were followed by another
  std::vector<int64_t> durations;
  std::vector<int64_t> waits;  // first attempts: created -> started
};

double percentile(std::vector<int64_t>& v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t k = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return static_cast<double>(v[std::min(v.size() - 1, k == 0 ? 0 : k - 1)]);
}

std::vector<std::string> keys_of(const AttemptRecord& a, StatsBy by) {
  switch (by) {
    case StatsBy::kQueue:
      return {a.queue};
    case StatsBy::kWorker:
      return {std::to_string(a.worker)};
    case StatsBy::kCommand:
      return {a.command};
    case StatsBy::kLabel: {
      if (a.labels.empty()) return {"(no label)"};
      std::vector<std::string> keys;
      for (const auto& [k, v] : a.labels) keys.push_back(k + "=" + v);
      return keys;
    }
  }
  return {a.queue};
}

}  // namespace

Result<StatsBy> parse_stats_by(const std::string& text) {
  if (text == "queue" || text.empty()) return StatsBy::kQueue;
  if (text == "label") return StatsBy::kLabel;
  if (text == "worker") return StatsBy::kWorker;
  if (text == "command") return StatsBy::kCommand;
  return make_error(Code::kInvalidArgument,
                    fmt::format("--by: \"{}\" is not queue, label, worker or command", text), "by");
}

json compute_stats(const std::vector<AttemptRecord>& attempts, StatsBy by, int64_t from_ms,
                   int64_t to_ms) {
  std::map<std::string, Group> groups;
  for (const AttemptRecord& a : attempts) {
    bool last = a.number >= a.task_attempts;
    bool ok = a.outcome == "succeeded";
    for (const std::string& key : keys_of(a, by)) {
      Group& g = groups[key];
      ++g.attempts;
      if (a.outcome == "interrupted") continue;  // handed back: neither success nor failure
      g.durations.push_back(a.finished_at_ms - a.started_at_ms);
      if (a.number == 1) g.waits.push_back(std::max<int64_t>(0, a.started_at_ms - a.created_at_ms));
      if (ok) {
        ++g.completed;
      } else if (!last) {
        ++g.retries;
      } else if (a.task_state == TaskState::kFailed) {
        ++g.failed;
      }
    }
  }
  double minutes = std::max<double>(1.0, static_cast<double>(to_ms - from_ms)) / 60'000.0;
  json out = json::array();
  for (auto& [key, g] : groups) {
    double mean_wait = 0;
    for (int64_t w : g.waits) mean_wait += static_cast<double>(w);
    if (!g.waits.empty()) mean_wait /= static_cast<double>(g.waits.size());
    int64_t finished = g.completed + g.failed;
    out.push_back({{"key", key},
                   {"completed", g.completed},
                   {"failed", g.failed},
                   {"success_rate", finished ? json(static_cast<double>(g.completed) /
                                                    static_cast<double>(finished))
                                             : json(nullptr)},
                   {"retries", g.retries},
                   {"attempts", g.attempts},
                   {"duration_ms",
                    {{"p50", percentile(g.durations, 50)},
                     {"p95", percentile(g.durations, 95)},
                     {"max", g.durations.empty()
                                 ? int64_t{0}
                                 : *std::max_element(g.durations.begin(), g.durations.end())}}},
                   {"wait_ms", {{"mean", mean_wait}, {"p95", percentile(g.waits, 95)}}},
                   {"throughput_per_min", static_cast<double>(finished) / minutes}});
  }
  return json{
      {"from", format_timestamp(from_ms)}, {"to", format_timestamp(to_ms)}, {"groups", out}};
}

json worker_stats(const std::vector<AttemptRecord>& attempts, int64_t window_ms) {
  struct W {
    int64_t done = 0;
    int64_t failed = 0;
    int64_t busy_ms = 0;
  };
  std::map<int64_t, W> workers;
  for (const AttemptRecord& a : attempts) {
    W& w = workers[a.worker];
    (a.outcome == "succeeded" ? w.done : w.failed) += 1;
    w.busy_ms += a.finished_at_ms - a.started_at_ms;
  }
  json out = json::array();
  for (const auto& [id, w] : workers) {
    out.push_back(
        {{"worker", id},
         {"tasks_done", w.done},
         {"tasks_failed", w.failed},
         {"busy_ms", w.busy_ms},
         {"busy_share",
          window_ms > 0 ? std::min(1.0, static_cast<double>(w.busy_ms) / window_ms) : 0.0}});
  }
  return out;
}

}  // namespace rota
