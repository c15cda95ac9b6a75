// The daemon: one event loop that owns the store, the worker pool and the API.
#pragma once

#include <cstdint>
#include <string>

#include "daemon/config.h"
#include "store/store.h"

namespace rota {

struct DaemonOptions {
  std::string home;
  std::string exe;  // the rota binary, for spawning workers
  Durability durability = Durability::kNormal;
  int64_t log_cap = 64LL << 20;
  int64_t stop_grace_ms = 10'000;  // on SIGTERM/SIGINT
  std::string log_level = "info";
  // Values of rota.toml's keys given as flags; they override the file.
  std::map<std::string, std::string> config_flags;
};

// Runs the daemon in the foreground until it is stopped. Returns the process exit code:
// 0 after a clean stop, 3 when the store or the socket cannot be used.
int run_daemon(const DaemonOptions& options);

}  // namespace rota
