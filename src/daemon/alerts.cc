#include "daemon/alerts.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstring>

#include "core/clock.h"

extern char** environ;

namespace rota {
namespace asio = boost::asio;

namespace {

constexpr size_t kKeepRecent = 1000;
constexpr int kMaxRunningHooks = 4;

}  // namespace

Alerts::Alerts(asio::io_context& io, std::string log_path, std::string command,
               int64_t hook_timeout_ms, EventSink sink)
    : io_(io),
      log_path_(std::move(log_path)),
      command_(std::move(command)),
      hook_timeout_ms_(hook_timeout_ms),
      sink_(std::move(sink)) {}

void Alerts::raise(const std::string& kind, const std::string& message, nlohmann::json details) {
  int64_t now = wall_now_ms();
  nlohmann::json alert = {{"time", format_timestamp(now)}, {"alert", kind}, {"message", message}};
  if (details.is_object()) alert.update(details);
  std::string line = alert.dump() + "\n";
  int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd >= 0) {
    (void)!::write(fd, line.data(), line.size());
    ::close(fd);
  }
  spdlog::warn("alert: {}: {}", kind, message);
  ++raised_;
  if (metrics_) metrics_->alert(kind);
  recent_.emplace_back(now, std::move(alert));
  if (recent_.size() > kKeepRecent) recent_.pop_front();
  if (sink_) sink_("alert", fmt::format("{}: {}", kind, message));
  if (!command_.empty()) run_hook(line);
}

std::vector<nlohmann::json> Alerts::since(int64_t since_ms) const {
  std::vector<nlohmann::json> out;
  for (const auto& [at, alert] : recent_) {
    if (at >= since_ms) out.push_back(alert);
  }
  return out;
}

// Runs the hook with the alert on its stdin; its exit (or its timeout) comes back to the loop
// through its pidfd, so nothing here waits.
void Alerts::run_hook(const std::string& line) {
  if (running_hooks_ >= kMaxRunningHooks) {
    if (sink_) sink_("alert_hook", "skipped: too many alert hooks still running");
    return;
  }
  int in[2];
  if (pipe2(in, O_CLOEXEC) != 0) return;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  std::string cmd = command_;
  char sh[] = "sh", dash_c[] = "-c";
  char* argv[] = {sh, dash_c, cmd.data(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, "/bin/sh", &actions, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(in[0]);
  if (rc != 0) {
    ::close(in[1]);
    if (sink_) sink_("alert_hook", fmt::format("cannot run alert_command: {}", std::strerror(rc)));
    return;
  }
  // One alert line fits in a pipe's buffer: this write does not block.
  fcntl(in[1], F_SETFL, O_NONBLOCK);
  (void)!::write(in[1], line.data(), line.size());
  ::close(in[1]);
  ++running_hooks_;
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  auto fd = std::make_shared<asio::posix::stream_descriptor>(io_, pidfd);
  auto timer =
      std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(hook_timeout_ms_));
  timer->async_wait([pid, this](const boost::system::error_code& ec) {
    if (ec) return;
    ::kill(-pid, SIGKILL);
    if (sink_)
      sink_("alert_hook",
            fmt::format("alert_command timed out after {} ms: killed", hook_timeout_ms_));
  });
  fd->async_wait(asio::posix::descriptor_base::wait_read, [this, fd, timer,
                                                           pid](const boost::system::error_code&) {
    timer->cancel();
    int status = 0;
    ::waitpid(pid, &status, 0);
    --running_hooks_;
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok && sink_) {
      sink_("alert_hook",
            WIFEXITED(status)
                ? fmt::format("alert_command exited with status {}", WEXITSTATUS(status))
                : fmt::format("alert_command killed by signal {}", WTERMSIG(status)));
    }
  });
}

}  // namespace rota
