// Running under systemd: readiness and watchdog notifications (sd_notify), and the user unit
// `rota daemon install-service` writes.
#pragma once

#include <cstdint>
#include <string>

#include "core/error.h"

namespace rota {

// Tells systemd the daemon is ready (no-op when not started by systemd with Type=notify).
void notify_ready(const std::string& status);
void notify_stopping();

// Pings the watchdog if systemd asked for one (WatchdogSec=) and half its interval has passed
// since the last ping. Called from the event loop's health timer, so a stuck loop stops the
// pings and systemd restarts the daemon.
void notify_watchdog(int64_t now_ms);

// The text of a systemd user unit that runs `exe --home home daemon run`. KillMode=process:
// on a restart, workers keep their tasks and reattach to the new daemon.
std::string service_unit(const std::string& exe, const std::string& home);

// Writes `text` to `path` (temp file, fsync, rename), creating its directory.
Status write_file_atomically(const std::string& path, const std::string& text);

}  // namespace rota
