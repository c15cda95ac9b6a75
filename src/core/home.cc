#include "core/home.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace rota {

std::string resolve_home_dir(const std::string& flag) {
  std::string dir = flag;
  if (dir.empty()) {
    if (const char* e = std::getenv("ROTA_HOME"); e && *e) dir = e;
  }
  if (dir.empty()) {
    if (const char* e = std::getenv("XDG_DATA_HOME"); e && *e) {
      dir = std::string(e) + "/rota";
    } else if (const char* h = std::getenv("HOME"); h && *h) {
      dir = std::string(h) + "/.local/share/rota";
    } else {
      dir = "/tmp/rota-" + std::to_string(::getuid());
    }
  }
  std::error_code ec;
  auto absolute = std::filesystem::absolute(dir, ec);
  return ec ? dir : absolute.lexically_normal().string();
}

Home home_at(const std::string& dir) {
  return Home{.dir = dir,
              .socket = dir + "/rota.sock",
              .store = dir + "/rota.db",
              .logs = dir + "/logs",
              .lock = dir + "/rota.lock",
              .daemon_log = dir + "/daemon.log",
              .worker_socket = dir + "/worker.sock"};
}

std::string self_exe() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "rota";
}

}  // namespace rota
