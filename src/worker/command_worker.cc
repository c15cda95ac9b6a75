#include "worker/command_worker.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/clock.h"
#include "core/home.h"
#include "worker/http_task.h"
#include "worker/isolate.h"
#include "worker/protocol.h"
#include "worker/spawn.h"

namespace rota {
namespace {

namespace fs = std::filesystem;

// Reads what the task wrote to ROTA_RESULT into `result` (JSON text) and removes the file.
// Returns an error for the task's record if it is too large or not JSON; "" otherwise.
std::string read_result(const std::string& path, std::string& result) {
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0) return {};
  if (static_cast<size_t>(st.st_size) > kMaxResultBytes) {
    ::unlink(path.c_str());
    return fmt::format("result: {} bytes is over the {} KiB limit; not kept", st.st_size,
                       kMaxResultBytes / 1024);
  }
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ::unlink(path.c_str());
  auto parsed = nlohmann::json::parse(text, nullptr, false);
  if (parsed.is_discarded()) return "result: the ROTA_RESULT file is not JSON; not kept";
  result = parsed.dump();
  return {};
}

constexpr int64_t kReattachRetryMs = 100;
// How long a result is kept for a daemon that does not come back.
constexpr int64_t kKeepResultMs = 10 * 60'000;

// After a shutdown's grace: SIGTERM, then SIGKILL this much later.
constexpr int64_t kShutdownKillGraceMs = 2000;

int64_t mono_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

// The task being run: its process group, its output pipe and its log.
struct Running {
  Message task;
  Spawned proc;
  int log_fd = -1;
  int64_t log_size = 0;
  bool log_cut = false;
  std::optional<FailReason> kill_reason;  // set once we decided to stop it
  int64_t kill_at_mono = 0;               // SIGKILL after the grace
};

class CommandWorker {
 public:
  explicit CommandWorker(const WorkerOptions& options) : options_(options) {}
  int run();

 private:
  void send(Message message);
  bool read_daemon();  // false when the daemon went away
  void orphan();       // the daemon went away
  void try_reattach();
  bool should_exit() const;
  void handle(const Message& message);
  void start(const Message& message);
  void pump_output(bool drain);
  void open_log();
  void write_log(const char* data, size_t size);
  void finish();
  void stop_task(FailReason reason, int64_t grace_ms);
  void kill_group(int sig);
  int poll_timeout() const;
  void on_timer();

  WorkerOptions options_;
  std::string inbuf_;
  std::optional<Running> running_;
  bool shutting_down_ = false;
  int64_t next_heartbeat_mono_ = 0;
  int64_t shutdown_at_mono_ = 0;
  int fd_ = -1;                // the daemon: the inherited socketpair, or worker.sock later
  std::vector<Message> held_;  // results kept while no daemon listens
  int64_t orphan_since_mono_ = 0;
  int64_t next_reattach_mono_ = 0;  // when shutting down: stop the running task at this time
  std::unordered_map<int64_t, EnvPtr> envs_;  // every environment the daemon sent, by id
};

void CommandWorker::send(Message message) {
  message.worker = options_.id;
  bool result = message.type == MessageType::kDone || message.type == MessageType::kFail;
  // A result is kept until the daemon acknowledges it: written is not yet read.
  if (result) held_.push_back(message);
  if (fd_ < 0) return;  // delivered after reattaching
  std::string line = encode(message);
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      orphan();
      return;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void CommandWorker::orphan() {
  if (fd_ < 0) return;
  ::close(fd_);
  fd_ = -1;
  inbuf_.clear();
  orphan_since_mono_ = mono_ms();
  next_reattach_mono_ = orphan_since_mono_;
}

// Connects to the (new) daemon's worker socket and says who it is and what it runs.
void CommandWorker::try_reattach() {
  next_reattach_mono_ = mono_ms() + kReattachRetryMs;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", options_.reattach_socket.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return;
  }
  fd_ = fd;
  Message hello{.type = MessageType::kHello};
  hello.pid = getpid();
  if (running_) {
    hello.task = running_->task.task;
    hello.token = running_->task.token;
  } else if (!held_.empty()) {
    hello.task = held_.front().task;
    hello.token = held_.front().token;
  }
  send(hello);
  if (running_) {
    Message beat{.type = MessageType::kHeartbeat,
                 .token = running_->task.token,
                 .task = running_->task.task};
    beat.pid = running_->proc.pid;
    send(beat);
  }
  auto held = std::move(held_);
  held_.clear();
  for (Message& m : held) send(std::move(m));  // each is held again until acknowledged
}

// Idle and nobody to report to, or a kept result nobody came for: the worker's work is over.
bool CommandWorker::should_exit() const {
  if (running_) return false;
  if (held_.empty()) return shutting_down_ || fd_ < 0;
  // A result not yet acknowledged: wait for a daemon to take it, but not for ever.
  return fd_ < 0 && mono_ms() - orphan_since_mono_ > kKeepResultMs;
}

bool CommandWorker::read_daemon() {
  char buf[65536];
  ssize_t n = ::read(fd_, buf, sizeof buf);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  if (n <= 0) return false;
  inbuf_.append(buf, static_cast<size_t>(n));
  size_t start = 0;
  for (size_t nl; (nl = inbuf_.find('\n', start)) != std::string::npos; start = nl + 1) {
    auto message = decode(std::string_view(inbuf_).substr(start, nl - start));
    if (message) {
      handle(*message);
    } else {
      fmt::print(stderr, "rota worker {}: {}\n", options_.id, message.error().message);
    }
  }
  inbuf_.erase(0, start);
  return true;
}

void CommandWorker::handle(const Message& m) {
  switch (m.type) {
    case MessageType::kTask:
      if (running_) {
        Message fail{.type = MessageType::kFail, .token = m.token, .task = m.task};
        fail.error = "worker busy";
        fail.reason = FailReason::kSpawn;
        send(fail);
        return;
      }
      start(m);
      return;
    case MessageType::kCancel:
      if (running_ && running_->task.task == m.task) {
        stop_task(FailReason::kCancelled, running_->task.grace_ms);
      }
      return;
    case MessageType::kAck:
      std::erase_if(held_,
                    [&m](const Message& h) { return h.task == m.task && h.token == m.token; });
      return;
    case MessageType::kShutdown:
      // The running task may finish within the grace; then it is stopped.
      shutting_down_ = true;
      shutdown_at_mono_ = mono_ms() + std::max<int64_t>(m.grace_ms, 0);
      return;
    default:
      return;
  }
}

void CommandWorker::start(const Message& m) {
  if (!m.command) return;
  Command command = *m.command;
  if (command.env_id) {
    if (command.env) {
      envs_[command.env_id] = command.env;
    } else if (auto it = envs_.find(command.env_id); it != envs_.end()) {
      command.env = it->second;
    }
  }
  if (command.http) {
    // Run by libcurl in the task's own process (worker/http_task.h).
    command.argv = {self_exe(), "__http", "--request", http_to_json(*command.http)};
    command.http.reset();
  }
  if (command.isolation.kind != Isolation::Kind::kNone) {
    // The set-up runs in the task's own process, under its timeout (worker/isolate.h).
    std::string home = fs::path(options_.reattach_socket).parent_path().string();
    command.argv = isolated_argv(command, self_exe(), home + "/worktrees", m.task);
    command.shell.clear();
  }
  std::string result_path = m.log_path.empty() ? "" : m.log_path + ".result";
  if (!result_path.empty()) ::unlink(result_path.c_str());  // no stale result of an earlier attempt
  auto spawned = spawn_command(command, m.task, m.attempt, m.token, result_path);
  if (!spawned) {
    Message fail{.type = MessageType::kFail, .token = m.token, .task = m.task};
    fail.error = spawned.error().message;
    fail.reason = FailReason::kSpawn;
    fail.exit_code = 127;
    send(fail);
    return;
  }
  running_.emplace();
  running_->task = m;
  running_->proc = *spawned;
  Message beat{.type = MessageType::kHeartbeat, .token = m.token, .task = m.task};
  beat.pid = spawned->pid;
  send(beat);
  next_heartbeat_mono_ = mono_ms() + options_.heartbeat_ms;
}

void CommandWorker::open_log() {
  Running& r = *running_;
  r.log_fd = ::open(r.task.log_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (r.log_fd < 0) return;
  r.log_size = lseek(r.log_fd, 0, SEEK_END);
  if (r.log_size > 0 && r.task.attempt > 1) {
    std::string header = fmt::format("[rota: attempt {}]\n", r.task.attempt);
    r.log_size += ::write(r.log_fd, header.data(), header.size());
  }
}

void CommandWorker::write_log(const char* data, size_t size) {
  Running& r = *running_;
  if (r.log_cut) return;
  if (r.log_fd < 0) open_log();
  if (r.log_fd < 0) return;
  int64_t room = r.task.log_cap > 0 ? std::max<int64_t>(0, r.task.log_cap - r.log_size) : INT64_MAX;
  size_t n = std::min<int64_t>(room, static_cast<int64_t>(size));
  if (n > 0 && ::write(r.log_fd, data, n) > 0) r.log_size += static_cast<int64_t>(n);
  if (n < size) {
    std::string marker =
        fmt::format("\n[rota: output cut at {} bytes; the rest was discarded]\n", r.task.log_cap);
    (void)!::write(r.log_fd, marker.data(), marker.size());
    r.log_cut = true;
  }
}

// Moves what the pipe holds into the log. The task's bytes pass through the worker, never the
// daemon. `drain` reads until the pipe is empty (the task has exited).
void CommandWorker::pump_output(bool drain) {
  Running& r = *running_;
  char buf[65536];
  for (int rounds = 0; drain || rounds < 16; ++rounds) {
    ssize_t n = ::read(r.proc.output, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;
    if (n == 0) {  // every writer closed it: stop watching the pipe
      close(r.proc.output);
      r.proc.output = -1;
      return;
    }
    write_log(buf, static_cast<size_t>(n));
  }
}

void CommandWorker::kill_group(int sig) {
  if (running_) ::kill(-running_->proc.pid, sig);
}

void CommandWorker::stop_task(FailReason reason, int64_t grace_ms) {
  Running& r = *running_;
  if (r.kill_reason) return;
  r.kill_reason = reason;
  kill_group(SIGTERM);
  r.kill_at_mono = mono_ms() + std::max<int64_t>(grace_ms, 0);
}

void CommandWorker::finish() {
  Running& r = *running_;
  // The leader is a zombie until waitpid, so its group id cannot be reused yet: whatever the
  // task left behind in its group ends with it.
  kill_group(SIGKILL);
  siginfo_t info{};
  while (waitid(P_PID, static_cast<id_t>(r.proc.pid), &info, WEXITED) != 0 && errno == EINTR) {
  }
  if (r.proc.output >= 0) {
    pump_output(true);
    if (r.proc.output >= 0) close(r.proc.output);
  }
  close(r.proc.pidfd);
  if (r.log_fd >= 0) close(r.log_fd);

  Message m{.type = MessageType::kDone, .token = r.task.token, .task = r.task.task};
  std::string result_error =
      read_result(r.task.log_path.empty() ? "" : r.task.log_path + ".result", m.result);
  bool exited = info.si_code == CLD_EXITED;
  if (exited) m.exit_code = info.si_status;
  if (!exited) m.signal = info.si_status;
  if (r.kill_reason) {
    m.type = MessageType::kFail;
    m.reason = r.kill_reason;
    m.error = *r.kill_reason == FailReason::kTimeout ? "timed out" : "cancelled";
  } else if (!exited || info.si_status != 0) {
    m.type = MessageType::kFail;
    m.reason = exited ? FailReason::kExit : FailReason::kSignal;
    m.error = exited
                  ? fmt::format("exit status {}", info.si_status)
                  : fmt::format("killed by signal {} ({})", info.si_status,
                                sigabbrev_np(info.si_status) ? sigabbrev_np(info.si_status) : "?");
    // An HTTP task answered 4xx: asking again would get the same answer.
    if (r.task.command && r.task.command->http && exited) {
      m.retryable = info.si_status != kHttpPermanentFailure;
      auto answer = nlohmann::json::parse(m.result.empty() ? "{}" : m.result, nullptr, false);
      if (answer.is_object() && answer.contains("status")) {
        m.error = fmt::format("HTTP {}{}", answer["status"].dump(),
                              m.retryable ? "" : " (a client error: not retried)");
      } else {
        m.error = "the request failed (the log says why)";
      }
    }
  }
  if (!result_error.empty())
    m.error = m.error.empty() ? result_error : m.error + "; " + result_error;
  running_.reset();
  send(m);
}

int CommandWorker::poll_timeout() const {
  int64_t now = mono_ms();
  int64_t wake = next_heartbeat_mono_;
  if (fd_ < 0) wake = std::min(wake, next_reattach_mono_);
  if (running_) {
    const Running& r = *running_;
    if (r.kill_reason) {
      wake = std::min(wake, r.kill_at_mono);
    } else {
      if (r.task.deadline_ms > 0) wake = std::min(wake, now + (r.task.deadline_ms - wall_now_ms()));
      if (shutting_down_) wake = std::min(wake, shutdown_at_mono_);
    }
  }
  return static_cast<int>(std::clamp<int64_t>(wake - now, 0, 60'000));
}

void CommandWorker::on_timer() {
  int64_t now = mono_ms();
  if (running_) {
    Running& r = *running_;
    if (r.kill_reason && now >= r.kill_at_mono) {
      kill_group(SIGKILL);
      r.kill_at_mono = now + 1000;  // again in a second if it is still there (D state)
    } else if (!r.kill_reason && r.task.deadline_ms > 0 && wall_now_ms() >= r.task.deadline_ms) {
      stop_task(FailReason::kTimeout, r.task.grace_ms);
    } else if (!r.kill_reason && shutting_down_ && now >= shutdown_at_mono_) {
      stop_task(FailReason::kCancelled, kShutdownKillGraceMs);
    }
  }
  if (fd_ < 0 && !options_.reattach_socket.empty() && now >= next_reattach_mono_) {
    try_reattach();
  }
  if (now >= next_heartbeat_mono_) {
    Message beat{.type = MessageType::kHeartbeat};
    if (running_) {
      beat.task = running_->task.task;
      beat.token = running_->task.token;
      beat.pid = running_->proc.pid;
    }
    send(beat);
    next_heartbeat_mono_ = now + options_.heartbeat_ms;
  }
}

int CommandWorker::run() {
  signal(SIGPIPE, SIG_IGN);
  // Fault injection for the failure tests: a worker that crashes before it says hello.
  if (const char* fault = std::getenv("ROTA_TEST_WORKER_FAULT");
      fault && std::string_view(fault) == "exit-at-start") {
    return 70;
  }
  fd_ = options_.fd;
  Message hello{.type = MessageType::kHello};
  hello.pid = getpid();
  send(hello);
  next_heartbeat_mono_ = mono_ms() + options_.heartbeat_ms;
  while (!should_exit()) {
    pollfd fds[3] = {{fd_, POLLIN, 0}, {-1, POLLIN, 0}, {-1, POLLIN, 0}};
    if (running_) {
      fds[1].fd = running_->proc.pidfd;
      fds[2].fd = running_->proc.output;
    }
    int n = ::poll(fds, 3, poll_timeout());
    if (n < 0 && errno != EINTR) return 1;
    if (fd_ >= 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      // The daemon went away: a running task goes on, and the worker waits for the next one.
      if (!read_daemon()) orphan();
    }
    if (running_ && running_->proc.output >= 0 && (fds[2].revents & (POLLIN | POLLHUP))) {
      pump_output(false);
    }
    if (running_ && (fds[1].revents & POLLIN)) finish();
    on_timer();
  }
  return 0;
}

}  // namespace

int run_command_worker(const WorkerOptions& options) { return CommandWorker(options).run(); }

}  // namespace rota
