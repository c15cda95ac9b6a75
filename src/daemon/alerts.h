// Alerts: the events a person must hear about (a worker died or was restarted, a slot was
// given up, the pool is degraded, a poison task, a stalled queue). Each is appended as one
// JSON line to $ROTA_HOME/alerts.log and handed to `alert_command` on its stdin, under a
// timeout. A failing or slow hook is logged and never blocks the event loop.
#pragma once

#include <boost/asio/io_context.hpp>
#include <deque>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "daemon/metrics.h"

namespace rota {

class Alerts {
 public:
  using EventSink = std::function<void(const std::string& kind, const std::string& detail)>;

  Alerts(boost::asio::io_context& io, std::string log_path, std::string command,
         int64_t hook_timeout_ms, EventSink sink);

  // `kind`: worker_dead, worker_restarted, slot_given_up, pool_degraded, poison_task,
  // queue_stalled. `details` is merged into the alert's JSON object.
  void raise(const std::string& kind, const std::string& message, nlohmann::json details = {});

  // Alerts raised at or after `since_ms` (the last 1000 are kept in memory).
  std::vector<nlohmann::json> since(int64_t since_ms) const;
  int64_t raised() const { return raised_; }
  void set_metrics(Metrics& metrics) { metrics_ = &metrics; }

 private:
  void run_hook(const std::string& line);

  boost::asio::io_context& io_;
  std::string log_path_;
  std::string command_;
  int64_t hook_timeout_ms_;
  EventSink sink_;
  std::deque<std::pair<int64_t, nlohmann::json>> recent_;
  int running_hooks_ = 0;
  int64_t raised_ = 0;
  Metrics* metrics_ = nullptr;
};

}  // namespace rota
