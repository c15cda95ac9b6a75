// The daemon: one event loop that owns the store, the worker pool and the API.
#pragma once

#include <cstdint>
#include <string>

#include "store/store.h"

namespace rota {

struct DaemonOptions {
  std::string home;
  std::string exe;  // the rota binary, for spawning workers
  int workers = 0;  // 0: the number of CPUs
  Durability durability = Durability::kNormal;
  int64_t log_cap = 64LL << 20;
  int64_t heartbeat_ms = 1000;
  int64_t stop_grace_ms = 10'000;  // on SIGTERM/SIGINT
};

// Runs the daemon in the foreground until it is stopped. Returns the process exit code:
// 0 after a clean stop, 3 when the store or the socket cannot be used.
int run_daemon(const DaemonOptions& options);

}  // namespace rota
