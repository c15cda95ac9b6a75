#include "daemon/metrics.h"

#include <fmt/format.h>

namespace rota {
namespace {

const std::vector<double> kTaskSeconds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,  1,   2.5,
                                          5,     10,   30,    60,   300, 900,  1800, 3600};

Histogram& at(std::map<std::string, Histogram>& m, const std::string& key) {
  auto it = m.find(key);
  if (it == m.end()) it = m.emplace(key, Histogram(kTaskSeconds)).first;
  return it->second;
}

std::string number(double v) { return fmt::format("{}", v); }

}  // namespace

std::string prometheus_label(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

void Histogram::observe(double value) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (value <= bounds_[i]) {
      ++counts_[i];
      break;
    }
  }
  ++count_;
  sum_ += value;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& labels) const {
  std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, number(bounds_[i]),
                       cumulative);
  }
  out += fmt::format("{}_bucket{{{}{}le=\"+Inf\"}} {}\n", name, labels, sep, count_);
  std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out +=
      fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, braces, number(sum_), name, braces, count_);
}

void Metrics::task_finished(const std::string& queue, const std::string& state) {
  ++finished_[{queue, state}];
}
void Metrics::task_retried(const std::string& queue) { ++retries_[queue]; }
void Metrics::task_started(const std::string& queue, double wait_seconds) {
  at(waits_, queue).observe(wait_seconds);
}
void Metrics::attempt_ended(const std::string& queue, double seconds) {
  at(durations_, queue).observe(seconds);
}
void Metrics::worker_restarted() { ++worker_restarts_; }
void Metrics::alert(const std::string& kind) { ++alerts_[kind]; }
void Metrics::commit(double seconds) { commits_.observe(seconds); }

std::string Metrics::render() const {
  std::string out;
  out +=
      "# HELP rota_tasks_finished_total Tasks that reached a final state, since the daemon "
      "started.\n"
      "# TYPE rota_tasks_finished_total counter\n";
  for (const auto& [key, n] : finished_) {
    out += fmt::format("rota_tasks_finished_total{{queue=\"{}\",state=\"{}\"}} {}\n",
                       prometheus_label(key.first), key.second, n);
  }
  out +=
      "# HELP rota_task_retries_total Failed attempts that were retried.\n"
      "# TYPE rota_task_retries_total counter\n";
  for (const auto& [queue, n] : retries_) {
    out += fmt::format("rota_task_retries_total{{queue=\"{}\"}} {}\n", prometheus_label(queue), n);
  }
  out +=
      "# HELP rota_worker_restarts_total Workers restarted after they died.\n"
      "# TYPE rota_worker_restarts_total counter\n";
  out += fmt::format("rota_worker_restarts_total {}\n", worker_restarts_);
  out += "# HELP rota_alerts_total Alerts raised, by kind.\n# TYPE rota_alerts_total counter\n";
  for (const auto& [kind, n] : alerts_) {
    out += fmt::format("rota_alerts_total{{alert=\"{}\"}} {}\n", prometheus_label(kind), n);
  }
  out +=
      "# HELP rota_task_duration_seconds How long attempts ran.\n"
      "# TYPE rota_task_duration_seconds histogram\n";
  for (const auto& [queue, h] : durations_) {
    h.render(out, "rota_task_duration_seconds",
             fmt::format("queue=\"{}\"", prometheus_label(queue)));
  }
  out +=
      "# HELP rota_task_wait_seconds How long tasks waited from ready to started.\n"
      "# TYPE rota_task_wait_seconds histogram\n";
  for (const auto& [queue, h] : waits_) {
    h.render(out, "rota_task_wait_seconds", fmt::format("queue=\"{}\"", prometheus_label(queue)));
  }
  out +=
      "# HELP rota_store_commit_seconds How long each group commit took, from the end of its loop "
      "turn until it was durable.\n"
      "# TYPE rota_store_commit_seconds histogram\n";
  commits_.render(out, "rota_store_commit_seconds", "");
  return out;
}

}  // namespace rota
