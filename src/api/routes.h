// The HTTP API under /v1 (docs/api.md). Each handler has the name of its CLI command.
#pragma once

#include <functional>
#include <string>

#include "api/http_server.h"
#include "daemon/alerts.h"
#include "daemon/autoscaler.h"
#include "daemon/committer.h"
#include "daemon/config.h"
#include "daemon/engine.h"
#include "daemon/metrics.h"
#include "daemon/pool.h"
#include "daemon/scheduler.h"
#include "daemon/user_pools.h"
#include "daemon/watcher.h"
#include "store/store.h"

namespace rota {

// kDrain: running tasks get a grace, then are handed back. kDetach (restart): workers keep
// their tasks and reattach to the next daemon.
enum class StopMode { kDrain, kDetach };

struct ApiContext {
  Autoscaler& autoscaler;
  Engine& engine;
  Scheduler& scheduler;
  Watcher& watcher;
  Store& store;
  Committer& committer;
  Pool& pool;  // commands
  UserPools& user_pools;
  Alerts& alerts;
  Metrics& metrics;
  const Clock& clock;
  std::string home;
  std::string socket_path;
  std::string logs_dir;
  int64_t started_at_ms = 0;
  const Config& config;
  std::function<void(int64_t grace_ms, StopMode mode)> stop;
  boost::asio::io_context& io;
  std::function<int64_t()> loop_lag_ms;
};

void add_routes(Router& router, ApiContext& context);

}  // namespace rota
