// The daemon's settings: $ROTA_HOME/rota.toml, overridden by flags of the same names
// (heartbeat_interval is --heartbeat-interval).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"

namespace rota {

struct Config {
  int64_t heartbeat_interval_ms = 1000;
  int64_t slow_after_ms = 15 * 60'000;
  int64_t unresponsive_after_ms = 5000;
  int64_t dead_after_ms = 15'000;
  int max_restarts = 5;
  int64_t restart_window_ms = 10 * 60'000;
  int poison_after = 3;
  int64_t reattach_grace_ms = 10'000;
  int64_t stall_after_ms = 60'000;
  std::string alert_command;
  int workers = 0;                      // 0: the number of CPUs
  int64_t scale_up_wait_ms = 2000;      // autoscaling: grow after a backlog this long
  int64_t scale_down_idle_ms = 60'000;  // autoscaling: shrink after idleness this long
  std::string listen;                   // HOST:PORT of the TCP listener; empty: none
  bool metrics_public = false;          // /metrics on the TCP listener without the token
  int max_payload_kib = 1024;           // the largest message task payload, in KiB
};

// Every key, as the file and the flags name it.
std::vector<std::string> config_keys();

// Sets one key from its text form (a duration such as "5s", a count, or a string).
// `origin` names where the value came from in the error ("rota.toml", "--dead-after").
Status set_config(Config& config, const std::string& key, const std::string& value,
                  const std::string& origin);

// Reads `path` over the defaults; a missing file is no error. An unknown key or a bad value
// is an error that names the file and the key.
Result<Config> load_config(const std::string& path);

// Applies flag values (key -> text) and checks that the thresholds make sense together.
Status finish_config(Config& config, const std::map<std::string, std::string>& flags);

}  // namespace rota
