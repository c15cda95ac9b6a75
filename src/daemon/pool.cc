#include "daemon/pool.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstring>
#include <set>

#include <fmt/format.h>

namespace rota {
namespace asio = boost::asio;

namespace {

constexpr int64_t kYoungMs = 10'000;
constexpr int64_t kMaxRestartDelayMs = 30'000;

int64_t wall_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace

const char* worker_health_name(WorkerHealth health) {
  switch (health) {
    case WorkerHealth::kStarting:
      return "starting";
    case WorkerHealth::kIdle:
      return "idle";
    case WorkerHealth::kWorking:
      return "working";
    case WorkerHealth::kStopped:
      return "stopped";
  }
  return "starting";
}

struct Pool::Worker {
  Worker(asio::io_context& io, int sock_fd, int pid_fd)
      : socket(io, asio::local::stream_protocol(), sock_fd), pidfd(io, pid_fd) {}
  WorkerView v;
  asio::local::stream_protocol::socket socket;
  asio::posix::stream_descriptor pidfd;
  asio::streambuf inbuf;
  std::deque<std::string> outq;
  bool writing = false;
  bool leaving = false;  // asked to shut down
  std::string token;
  pid_t task_group = 0;
  std::set<int64_t> envs_sent;
};

Pool::Pool(asio::io_context& io, Options options, PoolListener& listener, IdAllocator allocate_id)
    : io_(io),
      options_(std::move(options)),
      listener_(listener),
      allocate_id_(std::move(allocate_id)) {}

Pool::~Pool() {
  for (auto& [id, w] : workers_) {
    if (w->task_group > 0) kill(-w->task_group, SIGKILL);
    kill(w->v.pid, SIGKILL);
  }
}

void Pool::scale(int size) {
  target_ = size;
  int live = this->live();
  for (; live < target_; ++live) spawn(0);
  // Shrink: idle workers first, then the newest busy ones after their task.
  for (int pass = 0; pass < 2 && live > target_; ++pass) {
    for (auto it = workers_.rbegin(); it != workers_.rend() && live > target_; ++it) {
      Worker& w = *it->second;
      bool busy = w.v.health == WorkerHealth::kWorking;
      if (w.leaving || (pass == 0 && busy)) continue;
      w.leaving = true;
      --live;
      send(w.v.id, Message{.type = MessageType::kShutdown});
    }
  }
}

void Pool::spawn(int restarts) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    spdlog::error("pool: socketpair: {}", std::strerror(errno));
    return;
  }
  int64_t id = allocate_id_();
  std::string id_arg = std::to_string(id);
  std::string hb_arg = std::to_string(options_.heartbeat_ms);
  std::vector<std::string> args = {"rota", "--home", options_.home, "worker",      "--id",
                                   id_arg, "--fd",   "3",           "--heartbeat", hb_arg};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, sv[1], 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, options_.exe.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(sv[1]);
  if (rc != 0) {
    close(sv[0]);
    spdlog::error("pool: cannot start a worker ({}): {}", options_.exe, std::strerror(rc));
    return;
  }
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  auto w = std::make_unique<Worker>(io_, sv[0], pidfd);
  w->v.id = id;
  w->v.pid = pid;
  w->v.started_at_ms = wall_ms();
  w->v.last_heartbeat_ms = w->v.started_at_ms;
  w->v.restarts = restarts;
  Worker& ref = *w;
  workers_.emplace(id, std::move(w));
  ref.pidfd.async_wait(asio::posix::descriptor_base::wait_read,
                       [this, id](const boost::system::error_code& ec) {
                         if (!ec) on_exit(id);
                       });
  read(ref);
  spdlog::debug("pool: worker {} started (pid {})", id, pid);
}

void Pool::read(Worker& w) {
  int64_t id = w.v.id;
  asio::async_read_until(w.socket, w.inbuf, '\n',
                         [this, id](const boost::system::error_code& ec, size_t n) {
                           Worker* w = find(id);
                           if (!w || ec) return;  // the pidfd reports the exit
                           std::string line(asio::buffers_begin(w->inbuf.data()),
                                            asio::buffers_begin(w->inbuf.data()) + n - 1);
                           w->inbuf.consume(n);
                           on_line(*w, line);
                           if ((w = find(id))) read(*w);
                         });
}

void Pool::on_line(Worker& w, std::string_view line) {
  auto message = decode(line);
  if (!message) {
    spdlog::warn("pool: worker {}: {}", w.v.id, message.error().message);
    return;
  }
  w.v.last_heartbeat_ms = wall_ms();
  switch (message->type) {
    case MessageType::kHello:
      w.v.health = WorkerHealth::kIdle;
      if (w.leaving) return;
      listener_.on_worker_idle(w.v.id);
      return;
    case MessageType::kHeartbeat:
      if (message->pid && !w.token.empty() && message->token == w.token) {
        w.task_group = static_cast<pid_t>(message->pid);
      }
      return;
    case MessageType::kDone:
    case MessageType::kFail: {
      bool current = !w.token.empty() && message->token == w.token;
      if (current) {
        message->type == MessageType::kDone ? ++w.v.tasks_done : ++w.v.tasks_failed;
        w.v.health = WorkerHealth::kIdle;
        w.v.task = 0;
        w.token.clear();
        w.task_group = 0;
      }
      int64_t id = w.v.id;
      bool leaving = w.leaving;
      listener_.on_worker_message(id, *message);
      if (current && !leaving && find(id)) listener_.on_worker_idle(id);
      return;
    }
    default:
      return;
  }
}

void Pool::on_exit(int64_t id) {
  Worker* w = find(id);
  if (!w) return;
  siginfo_t info{};
  waitid(P_PID, static_cast<id_t>(w->v.pid), &info, WEXITED | WNOHANG);
  // The task ran in its own process group: it must not outlive its worker.
  if (w->task_group > 0) kill(-w->task_group, SIGKILL);
  int64_t task = w->v.task;
  std::string token = w->token;
  bool replace = !w->leaving && !stopping_;
  int restarts = w->v.restarts + 1;
  std::string why = info.si_code == CLD_EXITED
                        ? fmt::format("worker {} exited with status {}", id, info.si_status)
                        : fmt::format("worker {} killed by signal {}", id, info.si_status);
  if (!w->leaving && !stopping_) spdlog::warn("pool: {}", why);
  // A worker that dies young again and again is restarted with growing delays (the first
  // replacement is immediate): 100 ms doubling to 30 s.
  bool young = wall_ms() - w->v.started_at_ms < kYoungMs;
  crash_streak_ = young ? crash_streak_ + 1 : 0;
  workers_.erase(id);
  listener_.on_worker_lost(id, task, token, why);
  if (replace) {
    int64_t delay =
        crash_streak_ <= 1
            ? 0
            : std::min<int64_t>(kMaxRestartDelayMs, 100LL << std::min(crash_streak_ - 2, 20));
    respawn_later(delay, restarts);
  }
  maybe_done_shutdown();
}

int Pool::live() const {
  int n = pending_spawns_;
  for (const auto& [id, w] : workers_) n += w->leaving ? 0 : 1;
  return n;
}

void Pool::respawn_later(int64_t delay_ms, int restarts) {
  if (delay_ms == 0) {
    if (live() < target_) spawn(restarts);
    return;
  }
  ++pending_spawns_;
  auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(delay_ms));
  timer->async_wait([this, timer, restarts](const boost::system::error_code& ec) {
    --pending_spawns_;
    if (ec || stopping_) return;
    if (live() < target_) spawn(restarts);
  });
}

void Pool::reserve(int64_t worker, int64_t task, const std::string& token) {
  Worker* w = find(worker);
  if (!w) return;
  w->v.health = WorkerHealth::kWorking;
  w->v.task = task;
  w->token = token;
  w->task_group = 0;
}

void Pool::send(int64_t worker, const Message& message) {
  Worker* w = find(worker);
  if (!w) return;
  Message m = message;
  m.worker = worker;
  if (m.command && m.command->env_id) {
    // The worker keeps every environment it was sent: send each only once.
    if (!w->envs_sent.insert(m.command->env_id).second) m.command->env = nullptr;
  }
  w->outq.push_back(encode(m));
  if (!w->writing) write_next(*w);
}

void Pool::write_next(Worker& w) {
  if (w.outq.empty()) {
    w.writing = false;
    return;
  }
  w.writing = true;
  int64_t id = w.v.id;
  asio::async_write(w.socket, asio::buffer(w.outq.front()),
                    [this, id](const boost::system::error_code& ec, size_t) {
                      Worker* w = find(id);
                      if (!w) return;
                      w->outq.pop_front();
                      if (ec) {
                        w->outq.clear();
                        w->writing = false;
                        return;
                      }
                      write_next(*w);
                    });
}

void Pool::shutdown(int64_t grace_ms, std::function<void()> done) {
  stopping_ = true;
  on_shutdown_ = std::move(done);
  for (auto& [id, w] : workers_) {
    w->leaving = true;
    send(id, Message{.type = MessageType::kShutdown, .grace_ms = grace_ms});
  }
  maybe_done_shutdown();
}

void Pool::maybe_done_shutdown() {
  if (stopping_ && workers_.empty() && on_shutdown_) {
    auto done = std::move(on_shutdown_);
    on_shutdown_ = nullptr;
    done();
  }
}

std::vector<int64_t> Pool::idle_workers() const {
  std::vector<int64_t> ids;
  for (const auto& [id, w] : workers_) {
    if (w->v.health == WorkerHealth::kIdle && !w->leaving) ids.push_back(id);
  }
  return ids;
}

std::vector<WorkerView> Pool::view() const {
  std::vector<WorkerView> out;
  for (const auto& [id, w] : workers_) out.push_back(w->v);
  return out;
}

pid_t Pool::task_group(int64_t worker) const {
  const Worker* w = find(worker);
  return w ? w->task_group : 0;
}

Pool::Worker* Pool::find(int64_t id) {
  auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : it->second.get();
}

const Pool::Worker* Pool::find(int64_t id) const {
  auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : it->second.get();
}

}  // namespace rota
