#include "daemon/systemd.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace rota {
namespace {

int64_t last_ping_ms = 0;

}  // namespace

void notify_ready(const std::string& status) {
  sd_notifyf(0, "READY=1\nSTATUS=%s\nMAINPID=%d", status.c_str(), static_cast<int>(::getpid()));
}

void notify_stopping() { sd_notify(0, "STOPPING=1"); }

void notify_watchdog(int64_t now_ms) {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0) return;
  if (now_ms - last_ping_ms < static_cast<int64_t>(usec / 2000)) return;
  last_ping_ms = now_ms;
  sd_notify(0, "WATCHDOG=1");
}

std::string service_unit(const std::string& exe, const std::string& home) {
  return fmt::format(R"([Unit]
Description=rota task queue daemon ({1})
After=default.target

[Service]
Type=notify
ExecStart={0} --home {1} daemon run
Restart=on-failure
RestartSec=1
WatchdogSec=30
# Only the daemon: its workers keep their tasks across a restart and reattach.
KillMode=process
TimeoutStopSec=60

[Install]
WantedBy=default.target
)",
                     exe, home);
}

Status write_file_atomically(const std::string& path, const std::string& text) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
  std::string temp = path + ".tmp";
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool ok = fd >= 0 && ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            ::fsync(fd) == 0;
  if (fd >= 0) ::close(fd);
  if (!ok || std::rename(temp.c_str(), path.c_str()) != 0) {
    std::remove(temp.c_str());
    return make_error(Code::kUnavailable,
                      fmt::format("cannot write {}: {}", path, std::strerror(errno)));
  }
  return {};
}

}  // namespace rota
