// The daemon's own numbers, in the Prometheus text format (GET /metrics): counters since the
// daemon started, histograms of task durations, waits and commit latency. Gauges (tasks by
// state, workers by health, loop lag) are read at scrape time by the caller.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace rota {

// A histogram with fixed upper bounds (seconds).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds)
      : bounds_(std::move(bounds)), counts_(bounds_.size()) {}
  void observe(double value);
  // Appends `name_bucket`, `name_sum` and `name_count` lines with `labels` ("" or `k="v"`).
  void render(std::string& out, const std::string& name, const std::string& labels) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative
  uint64_t count_ = 0;
  double sum_ = 0;
};

class Metrics {
 public:
  void task_finished(const std::string& queue, const std::string& state);
  void task_retried(const std::string& queue);
  void task_started(const std::string& queue, double wait_seconds);
  void attempt_ended(const std::string& queue, double seconds);
  void worker_restarted();
  void alert(const std::string& kind);
  void commit(double seconds);

  // The counters and histograms, with # HELP and # TYPE lines.
  std::string render() const;

 private:
  std::map<std::pair<std::string, std::string>, uint64_t> finished_;  // (queue, state)
  std::map<std::string, uint64_t> retries_;
  std::map<std::string, uint64_t> alerts_;
  uint64_t worker_restarts_ = 0;
  std::map<std::string, Histogram> durations_;
  std::map<std::string, Histogram> waits_;
  Histogram commits_{
      {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1}};
};

// Escapes a label value for the text format.
std::string prometheus_label(const std::string& value);

}  // namespace rota
