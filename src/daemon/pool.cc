#include "daemon/pool.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstring>

#include "core/clock.h"
#include "core/duration.h"
#include "worker/spawn.h"

extern char** environ;

namespace rota {
namespace asio = boost::asio;

namespace {

// A worker that dies before it is ready, or idle this soon after starting, is crash-looping:
// its replacements are delayed. One that dies running a task is not (poison detection is for
// tasks that kill their workers).
constexpr int64_t kYoungMs = 1000;
constexpr int64_t kFirstRestartDelayMs = 100;
constexpr int64_t kMaxRestartDelayMs = 30'000;
constexpr int64_t kLeaveAfterTaskMs = 365LL * 86'400'000;  // "after its task", in practice

int64_t steady_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

bool busy(WorkerHealth h) {
  return h == WorkerHealth::kWorking || h == WorkerHealth::kSlow ||
         h == WorkerHealth::kUnresponsive;
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
    case WorkerHealth::kSlow:
      return "slow";
    case WorkerHealth::kUnresponsive:
      return "unresponsive";
    case WorkerHealth::kDead:
      return "dead";
    case WorkerHealth::kRecovering:
      return "recovering";
    case WorkerHealth::kStopped:
      return "stopped";
    case WorkerHealth::kGivenUp:
      return "given-up";
  }
  return "starting";
}

// A task a worker holds.
struct Flight {
  std::string token;
  pid_t group = 0;  // the task's process group (command worker), once reported
  int64_t started_ms = 0;
  int64_t slow_after_ms = 0;
  int64_t deadline_ms = 0;        // a program's task: cancelled when it passes (0: none)
  int64_t kill_at_mono = 0;       // a program's task, cancelled: the worker is killed after this
  bool timed_out = false;         // its attempt already ended: the program's answer is dropped
  bool alone = false;             // runs with no other task beside it (a program's task)
  bool sent = false;              // its message went to the worker
  bool cancel_when_sent = false;  // cancelled before its message went (a command worker's)
  // The task's message, kept back while it may not run beside what the worker holds (see
  // may_send); its deadline and run time start when it is sent.
  std::optional<Message> held;
};

struct Pool::Worker {
  Worker(asio::io_context& io, int sock_fd, int pid_fd)
      : socket(io, asio::local::stream_protocol(), sock_fd), pidfd(io, pid_fd) {}
  Worker(asio::local::stream_protocol::socket s, int pid_fd)
      : socket(std::move(s)), pidfd(socket.get_executor(), pid_fd) {}
  WorkerView v;
  asio::local::stream_protocol::socket socket;  // what it sends; also its input, unless:
  // A program's stdin, apart from its stdout: a program that closes its stdout is then seen
  // to, even while it keeps its stdin.
  std::unique_ptr<asio::local::stream_protocol::socket> input;
  asio::posix::stream_descriptor pidfd;
  // Shared with the pending read, which may complete (aborted) after the worker is gone.
  std::shared_ptr<std::string> inbuf = std::make_shared<std::string>();
  std::shared_ptr<std::vector<char>> chunk = std::make_shared<std::vector<char>>(65536);
  std::string outbuf;    // messages queued this turn or while a write is out: one write for all
  bool writing = false;  // a write is out
  bool write_posted = false;          // a write is due at the end of this turn
  bool leaving = false;               // asked to shut down: not replaced when it exits
  int capacity = 1;                   // how many tasks it may hold
  std::map<int64_t, Flight> flights;  // by task id: the oldest first
  int64_t last_heartbeat_mono = 0;    // steady clock: a suspend or a clock step is no silence
  std::string killed_because;         // why the supervisor killed it, if it did
  bool restarted_by_hand = false;
  std::set<int64_t> envs_sent;

  void refresh_view() {
    v.in_flight = static_cast<int>(flights.size());
    v.task = flights.empty() ? 0 : flights.begin()->first;
  }
};

struct Pool::Slot {
  explicit Slot(asio::io_context& io) : timer(io) {}
  int64_t worker = 0;                              // the live worker, 0 if none
  WorkerHealth state = WorkerHealth::kRecovering;  // when it has no worker
  std::deque<int64_t> restart_times;               // within restart_window
  int restarts = 0;
  int young_deaths = 0;  // in a row
  int64_t last_worker = 0;
  bool awaiting_reattach = false;  // kept empty for a worker of the previous daemon
  asio::steady_timer timer;
};

Pool::Pool(asio::io_context& io, PoolOptions options, PoolListener& listener,
           IdAllocator allocate_id)
    : io_(io),
      options_(std::move(options)),
      listener_(listener),
      allocate_id_(std::move(allocate_id)) {}

Pool::~Pool() {
  if (reattach_) {
    boost::system::error_code ignored;
    reattach_->close(ignored);
  }
  for (auto& [id, w] : workers_) {
    for (auto& [task, f] : w->flights) {
      if (f.group > 0) kill(-f.group, SIGKILL);
    }
    if (runs_program()) kill(-w->v.pid, SIGKILL);
    kill(w->v.pid, SIGKILL);
  }
}

void sweep_attempt_processes(asio::io_context& io, std::vector<std::string> tokens) {
  if (tokens.empty()) return;
  kill_attempt_processes(tokens);
  auto shared = std::make_shared<const std::vector<std::string>>(std::move(tokens));
  for (int delay_ms : {50, 500}) {
    auto timer = std::make_shared<asio::steady_timer>(io, std::chrono::milliseconds(delay_ms));
    timer->async_wait([timer, shared](const boost::system::error_code& ec) {
      if (!ec) kill_attempt_processes(*shared);
    });
  }
}

// ---- size ------------------------------------------------------------------------------

void Pool::scale(int size, int reserved) {
  while (static_cast<int>(slots_.size()) < size) {
    slots_.push_back(std::make_unique<Slot>(io_));
    if (reserved > 0) {
      --reserved;
      slots_.back()->awaiting_reattach = true;
      continue;
    }
    spawn(static_cast<int>(slots_.size()) - 1);
  }
  if (static_cast<int>(slots_.size()) <= size) return;
  // Shrink: keep the busiest slots; empty and idle ones go first, busy ones after their task.
  std::stable_sort(slots_.begin(), slots_.end(), [this](const auto& a, const auto& b) {
    auto rank = [this](const Slot& s) {
      const Worker* w = find(s.worker);
      return w && busy(w->v.health) ? 0 : 1;
    };
    return rank(*a) < rank(*b);
  });
  for (size_t i = static_cast<size_t>(size); i < slots_.size(); ++i) {
    Slot& s = *slots_[i];
    s.timer.cancel();
    if (Worker* w = find(s.worker)) {
      w->leaving = true;
      w->v.slot = -1;
      send(w->v.id, Message{.type = MessageType::kShutdown, .grace_ms = kLeaveAfterTaskMs});
    }
  }
  slots_.resize(static_cast<size_t>(size));
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (Worker* w = find(slots_[i]->worker)) w->v.slot = static_cast<int>(i);
  }
}

// ---- spawning --------------------------------------------------------------------------

void Pool::spawn(int slot) {
  Slot& s = *slots_[static_cast<size_t>(slot)];
  s.awaiting_reattach = false;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    spdlog::error("pool: {}: socketpair: {}", name(), std::strerror(errno));
    return;
  }
  int64_t id = allocate_id_();
  pid_t pid = -1;
  int rc = 0;
  int in[2] = {-1, -1};  // a program's stdin: the daemon writes in[0], the program reads in[1]
  if (runs_program()) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0) {
      spdlog::error("pool: {}: socketpair: {}", name(), std::strerror(errno));
      close(sv[0]);
      close(sv[1]);
      return;
    }
    rc = spawn_program(id, in[1], sv[1], pid);
    close(in[1]);
    ::shutdown(in[0], SHUT_RD);
    ::shutdown(sv[0], SHUT_WR);
  } else {
    std::vector<std::string> args = {"rota",        "--home",
                                     options_.home, "worker",
                                     "--id",        std::to_string(id),
                                     "--fd",        "3",
                                     "--heartbeat", std::to_string(options_.heartbeat_ms)};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, sv[1], 3);
    // Nothing else of the daemon's (its listening sockets above all) may live on in a worker.
    posix_spawn_file_actions_addclosefrom_np(&actions, 4);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setpgroup(&attr, 0);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
    rc = posix_spawn(&pid, options_.exe.c_str(), &actions, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  close(sv[1]);
  if (rc != 0) {
    close(sv[0]);
    if (in[0] >= 0) close(in[0]);
    spdlog::error("pool: {}: cannot start a worker ({}): {}", name(),
                  runs_program() ? options_.program : options_.exe, std::strerror(rc));
    refill(slot, wall_now_ms(), true, fmt::format("cannot start: {}", std::strerror(rc)));
    return;
  }
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {  // out of descriptors: do not run a worker we cannot watch
    spdlog::error("pool: pidfd_open: {}", std::strerror(errno));
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    close(sv[0]);
    if (in[0] >= 0) close(in[0]);
    refill(slot, wall_now_ms(), true, fmt::format("pidfd_open: {}", std::strerror(errno)));
    return;
  }
  auto w = std::make_unique<Worker>(io_, sv[0], pidfd);
  if (in[0] >= 0) {
    w->input = std::make_unique<asio::local::stream_protocol::socket>(
        io_, asio::local::stream_protocol(), in[0]);
  }
  w->v.id = id;
  w->v.slot = slot;
  w->v.pid = pid;
  w->v.started_at_ms = wall_now_ms();
  w->v.last_heartbeat_ms = w->v.started_at_ms;
  w->last_heartbeat_mono = steady_ms();
  w->v.restarts = s.restarts;
  w->capacity = std::max(1, options_.concurrency);
  s.worker = id;
  s.last_worker = id;
  Worker& ref = *w;
  workers_.emplace(id, std::move(w));
  ref.pidfd.async_wait(asio::posix::descriptor_base::wait_read,
                       [this, id](const boost::system::error_code& ec) {
                         if (!ec) on_exit(id);
                       });
  read(ref);
  spdlog::debug("pool: worker {} started in slot {} (pid {})", id, slot, pid);
}

// The user's program, with its stdin and stdout on the socketpair and its stderr in its log.
int Pool::spawn_program(int64_t id, int stdin_fd, int stdout_fd, pid_t& pid) {
  std::string log = fmt::format("{}/pool-{}-{}.log", options_.logs_dir, name(), id);
  int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) return errno;
  std::map<std::string, std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    size_t eq = kv.find('=');
    if (eq != std::string_view::npos) env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  for (const auto& [k, v] : options_.env) env[k] = v;
  env["ROTA_POOL"] = name();
  env["ROTA_WORKER_ID"] = std::to_string(id);
  env["ROTA_CONCURRENCY"] = std::to_string(std::max(1, options_.concurrency));
  env["ROTA_HEARTBEAT_MS"] = std::to_string(options_.heartbeat_ms);
  env["ROTA_HOME"] = options_.home;
  std::vector<std::string> vars;
  for (const auto& [k, v] : env) vars.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& v : vars) envp.push_back(v.data());
  envp.push_back(nullptr);
  // A plain command line runs without a shell in between (which would keep its stdout open
  // after the program closed it, and its signals from it); anything else runs with sh -c.
  std::vector<std::string> args;
  if (options_.program.find_first_of("|&;<>()$`\\\"'\n*?[#~=%{}") == std::string::npos) {
    size_t start = 0;
    while ((start = options_.program.find_first_not_of(" \t", start)) != std::string::npos) {
      size_t end = std::min(options_.program.find_first_of(" \t", start), options_.program.size());
      args.push_back(options_.program.substr(start, end - start));
      start = end;
    }
  } else {
    args = {"/bin/sh", "-c", options_.program};
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, stdin_fd, 0);
  posix_spawn_file_actions_adddup2(&actions, stdout_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, log_fd, 2);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  if (!options_.cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, options_.cwd.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
  // PATH is searched in the program's environment, as a shell would.
  std::string path = env.count("PATH") ? env["PATH"] : "/usr/local/bin:/usr/bin:/bin";
  std::string exe = args.front();
  if (exe.find('/') == std::string::npos) {
    for (size_t start = 0; start <= path.size();) {
      size_t end = std::min(path.find(':', start), path.size());
      std::string candidate = path.substr(start, end - start) + "/" + args.front();
      if (::access(candidate.c_str(), X_OK) == 0) {
        exe = candidate;
        break;
      }
      start = end + 1;
    }
  }
  int rc = posix_spawn(&pid, exe.c_str(), &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(log_fd);
  return rc;
}

// ---- messages --------------------------------------------------------------------------

namespace {
// A line longer than this is not a message: the worker is killed rather than buffered for ever.
constexpr size_t kMaxLineBytes = 8 << 20;
}  // namespace

// Reads whatever has arrived and handles every complete line in it: a worker that sends many
// results at once costs one read, not one per line.
void Pool::read(Worker& w) {
  int64_t id = w.v.id;
  auto buffer = w.inbuf;
  auto chunk = w.chunk;
  w.socket.async_read_some(
      asio::buffer(*chunk),
      [this, id, buffer, chunk](const boost::system::error_code& ec, size_t n) {
        Worker* w = find(id);
        if (!w) return;
        if (ec) {
          // A program that closed its stdout is dead even if its process lingers; rota's own
          // worker's exit is reported by its pidfd.
          if (runs_program() && w->v.health != WorkerHealth::kDead && !w->leaving) {
            w->killed_because = fmt::format("worker {} closed its stdout", id);
            set_health(*w, WorkerHealth::kDead, w->killed_because);
            kill_worker(*w);
          }
          return;
        }
        buffer->append(chunk->data(), n);
        size_t start = 0;
        for (size_t nl; (nl = buffer->find('\n', start)) != std::string::npos; start = nl + 1) {
          on_line(*w, std::string_view(*buffer).substr(start, nl - start));
          if (!(w = find(id))) return;
        }
        buffer->erase(0, start);
        if (buffer->size() > kMaxLineBytes) {
          w->killed_because =
              fmt::format("worker {} sent a line over {} MiB", id, kMaxLineBytes >> 20);
          set_health(*w, WorkerHealth::kDead, w->killed_because);
          kill_worker(*w);
          return;
        }
        read(*w);
        if (start > 0 && room_of(*w) > 0) listener_.on_worker_answered(*this, id);
      });
}

void Pool::protocol_error(Worker& w, std::string detail, std::string_view line) {
  std::string shown(line.substr(0, 200));
  if (line.size() > 200) shown += "...";
  spdlog::warn("pool: worker {} of pool {}: {}: {}", w.v.id, name(), detail, shown);
  Message reply{.type = MessageType::kError};
  reply.error = detail;
  reply.payload = shown;
  send(w.v.id, reply);
  listener_.on_protocol_error(*this, w.v.id, fmt::format("{}: {}", detail, shown));
}

void Pool::on_line(Worker& w, std::string_view line) {
  // Declared dead and killed: what it still had in flight must not revive it.
  if (w.v.health == WorkerHealth::kDead) return;
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  // Any line is a sign of life.
  w.v.last_heartbeat_ms = wall_now_ms();
  w.last_heartbeat_mono = steady_ms();
  if (runs_program()) {
    size_t first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos) return;
    if (line[first] != '{') {
      // A stray print: worth a warning, not a death.
      std::string shown(line.substr(0, 300));
      spdlog::warn("pool: worker {} of pool {} wrote a line that is not a message: {}", w.v.id,
                   name(), shown);
      return;
    }
  }
  auto message = decode(line);
  if (!message) {
    if (runs_program()) {
      protocol_error(w, message.error().message, line);
    } else {
      spdlog::warn("pool: worker {}: {}", w.v.id, message.error().message);
    }
    return;
  }
  if (w.v.health == WorkerHealth::kUnresponsive) {
    set_health(w, w.flights.empty() ? WorkerHealth::kIdle : WorkerHealth::kWorking,
               "heartbeats resumed");
  }
  switch (message->type) {
    case MessageType::kHello:
      if (w.v.health != WorkerHealth::kStarting) return;
      if (runs_program() && message->concurrency >= 1) {
        w.capacity = std::min(w.capacity, message->concurrency);
      }
      set_health(w, WorkerHealth::kIdle);
      if (!w.leaving) listener_.on_worker_idle(*this, w.v.id);
      return;
    case MessageType::kHeartbeat:
      if (message->pid) {
        auto it = w.flights.find(message->task);
        if (it != w.flights.end() && it->second.token == message->token) {
          it->second.group = static_cast<pid_t>(message->pid);
        }
      }
      return;
    case MessageType::kDone:
    case MessageType::kFail:
      if (message->task <= 0) {
        if (runs_program()) protocol_error(w, "done and fail need the task's id", line);
        return;
      }
      on_result(w, *message);
      return;
    default:
      if (runs_program()) {
        protocol_error(
            w, fmt::format("a worker does not send \"{}\"", message_type_name(message->type)),
            line);
      }
      return;
  }
}

// A done or fail: the worker lets go of the task, and the listener records the result (fenced
// by the attempt's token: a program does not send one, the flight has it).
void Pool::on_result(Worker& w, Message& m) {
  auto it = w.flights.find(m.task);
  bool current = it != w.flights.end() && (runs_program() || it->second.token == m.token);
  if (current) {
    bool timed_out = it->second.timed_out;
    if (runs_program()) m.token = it->second.token;
    w.flights.erase(it);
    send_held(w);
    w.refresh_view();
    if (w.flights.empty()) set_health(w, WorkerHealth::kIdle);
    if (timed_out) return;  // its attempt already ended as a timeout
    m.type == MessageType::kDone ? ++w.v.tasks_done : ++w.v.tasks_failed;
  }
  int64_t id = w.v.id;
  bool leaving = w.leaving;
  listener_.on_worker_message(*this, id, m);
  if (current && !leaving && find(id)) listener_.on_worker_idle(*this, id);
}

void Pool::reserve(int64_t worker, int64_t task, const std::string& token, int64_t slow_after_ms,
                   int64_t deadline_ms, bool alone) {
  Worker* w = find(worker);
  if (!w) return;
  w->flights[task] = Flight{.token = token,
                            .started_ms = wall_now_ms(),
                            .slow_after_ms = slow_after_ms,
                            .deadline_ms = runs_program() ? deadline_ms : 0,
                            .alone = runs_program() && alone};
  w->refresh_view();
  if (w->v.health == WorkerHealth::kIdle) set_health(*w, WorkerHealth::kWorking);
}

void Pool::send(int64_t worker, const Message& message) {
  Worker* w = find(worker);
  if (!w) return;
  if (runs_program()) {
    auto flight = w->flights.find(message.task);
    if (message.type == MessageType::kTask && flight != w->flights.end() &&
        !may_send(*w, message.task)) {
      flight->second.held = message;
      flight->second.deadline_ms = 0;
      return;
    }
    if (message.type == MessageType::kTask && flight != w->flights.end()) {
      flight->second.sent = true;
    }
    if (message.type == MessageType::kCancel && flight != w->flights.end() && flight->second.held) {
      // The worker never had it: the attempt ends here, as the worker would have ended it.
      Message cancelled{
          .type = MessageType::kFail, .token = flight->second.token, .task = message.task};
      cancelled.reason = FailReason::kCancelled;
      cancelled.error = "cancelled before it was sent to the worker";
      w->flights.erase(flight);
      w->refresh_view();
      int64_t id = w->v.id;
      listener_.on_worker_message(*this, id, cancelled);
      if (find(id)) listener_.on_worker_idle(*this, id);
      return;
    }
    if (message.type == MessageType::kCancel) {
      // It has the kill grace to let go of the task; then the worker goes.
      auto it = flight;
      if (it == w->flights.end()) return;
      if (it->second.kill_at_mono == 0) {
        it->second.kill_at_mono = steady_ms() + options_.kill_grace_ms;
      }
    }
    std::string line = encode_for_program(message);
    if (line.empty()) return;
    w->outbuf += line;
  } else {
    auto flight = w->flights.find(message.task);
    if (message.type == MessageType::kCancel && flight != w->flights.end() &&
        !flight->second.sent) {
      // Its task message waits for the claim's commit; the worker would ignore a cancel for a
      // task it does not have yet: the cancel follows the task.
      flight->second.cancel_when_sent = true;
      return;
    }
    Message m = message;
    m.worker = worker;
    if (m.command && m.command->env_id) {
      // The worker keeps every environment it was sent: send each only once.
      if (!w->envs_sent.insert(m.command->env_id).second) m.command->env = nullptr;
    }
    w->outbuf += encode(m);
    if (message.type == MessageType::kTask && flight != w->flights.end()) {
      flight->second.sent = true;
      if (flight->second.cancel_when_sent) {
        w->outbuf +=
            encode(Message{.type = MessageType::kCancel, .worker = worker, .task = message.task});
      }
    }
  }
  write_soon(*w);
}

// The messages of one turn leave together: a claim's tasks reach the worker in one read.
void Pool::write_soon(Worker& w) {
  if (w.writing || w.write_posted) return;
  w.write_posted = true;
  asio::post(io_, [this, id = w.v.id] {
    Worker* w = find(id);
    if (!w) return;
    w->write_posted = false;
    if (!w->writing) write_next(*w);
  });
}

// Now rather than at the end of the turn: what a worker was sent leaves in one write.
void Pool::flush(int64_t worker) {
  Worker* w = find(worker);
  if (w && !w->writing) write_next(*w);
}

// Whether the worker may have `task` now: a task to run alone goes to a worker that runs
// nothing else, and nothing goes beside it.
bool Pool::may_send(const Worker& w, int64_t task) const {
  bool alone = w.flights.at(task).alone;
  return std::none_of(w.flights.begin(), w.flights.end(), [&](const auto& flight) {
    const auto& [id, f] = flight;
    return id != task && f.sent && (alone || f.alone);
  });
}

// Sends what was held back once it may go. Its deadline and run time start now.
void Pool::send_held(Worker& w) {
  if (w.leaving) return;  // it would refuse it; it goes back in line when the worker exits
  for (auto& [task, f] : w.flights) {
    if (!f.held || !may_send(w, task)) continue;
    Message m = std::move(*f.held);
    f.held.reset();
    f.sent = true;
    int64_t now = wall_now_ms();
    if (m.deadline_ms > 0) m.deadline_ms = now + (m.deadline_ms - f.started_ms);
    f.deadline_ms = m.deadline_ms;
    f.started_ms = now;
    w.outbuf += encode_for_program(m);
  }
  write_soon(w);
}

void Pool::write_next(Worker& w) {
  if (w.outbuf.empty()) {
    w.writing = false;
    return;
  }
  w.writing = true;
  int64_t id = w.v.id;
  auto out = std::make_shared<std::string>(std::move(w.outbuf));
  w.outbuf.clear();
  auto& to = w.input ? *w.input : w.socket;
  asio::async_write(to, asio::buffer(*out),
                    [this, id, out](const boost::system::error_code& ec, size_t) {
                      Worker* w = find(id);
                      if (!w) return;
                      if (ec) {
                        w->outbuf.clear();
                        w->writing = false;
                        return;
                      }
                      write_next(*w);
                    });
}

// ---- health ----------------------------------------------------------------------------

void Pool::set_health(Worker& w, WorkerHealth to, std::string detail) {
  WorkerHealth from = w.v.health;
  if (from == to) return;
  w.v.health = to;
  // idle <-> working is every task's start and end: the task events already say it.
  bool routine = (from == WorkerHealth::kIdle || from == WorkerHealth::kWorking ||
                  from == WorkerHealth::kStarting) &&
                 (to == WorkerHealth::kIdle || to == WorkerHealth::kWorking);
  if (!routine) listener_.on_health_change(*this, {w.v.id, w.v.slot, from, to, std::move(detail)});
}

void Pool::set_slot_state(Slot& s, WorkerHealth to, std::string detail) {
  WorkerHealth from = s.state;
  s.state = to;
  int index = 0;
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i].get() == &s) index = static_cast<int>(i);
  }
  if (from != to) {
    listener_.on_health_change(*this, {s.last_worker, index, from, to, std::move(detail)});
  }
}

void Pool::check_health(int64_t now) {
  std::vector<Worker*> dead;
  std::vector<std::pair<int64_t, Message>> timeouts;  // (worker, the fail to record)
  int64_t mono = steady_ms();
  bool past_stop = stopping_ && stop_deadline_mono_ > 0 && mono >= stop_deadline_mono_;
  for (auto& [id, wp] : workers_) {
    Worker& w = *wp;
    if (w.v.health == WorkerHealth::kDead) continue;
    int64_t silent = mono - w.last_heartbeat_mono;
    if (runs_program()) {
      for (auto& [task, f] : w.flights) {
        if (f.kill_at_mono > 0 && mono >= f.kill_at_mono && w.killed_because.empty()) {
          w.killed_because = fmt::format("task {} was not let go within {} of its cancel", task,
                                         format_duration_ms(options_.kill_grace_ms));
        } else if (f.deadline_ms > 0 && now >= f.deadline_ms && !f.timed_out) {
          // Past its deadline: the attempt ends now; the program is asked to let go of it.
          f.timed_out = true;
          f.kill_at_mono = mono + options_.kill_grace_ms;
          Message fail{.type = MessageType::kFail, .token = f.token, .task = task};
          fail.reason = FailReason::kTimeout;
          fail.error = "timeout";
          timeouts.emplace_back(id, std::move(fail));
        }
      }
      if (past_stop && w.killed_because.empty()) {
        w.killed_because = fmt::format("worker {} did not stop within its grace", id);
      }
      if (!w.killed_because.empty()) {
        dead.push_back(&w);
        continue;
      }
    }
    if (silent >= options_.dead_after_ms) {
      w.killed_because = fmt::format("no heartbeat for {}", format_duration_ms(silent));
      dead.push_back(&w);
    } else if (silent >= options_.unresponsive_after_ms) {
      set_health(w, WorkerHealth::kUnresponsive,
                 fmt::format("no heartbeat for {}", format_duration_ms(silent)));
    } else if (w.v.health == WorkerHealth::kWorking) {
      for (const auto& [task, f] : w.flights) {
        if (!f.held && f.slow_after_ms > 0 && now - f.started_ms >= f.slow_after_ms) {
          set_health(
              w, WorkerHealth::kSlow,
              fmt::format("task {} running for {}", task, format_duration_ms(now - f.started_ms)));
          break;
        }
      }
    }
  }
  for (auto& [worker, fail] : timeouts) {
    auto send_cancel = Message{.type = MessageType::kCancel, .task = fail.task};
    send(worker, send_cancel);
    listener_.on_worker_message(*this, worker, fail);
  }
  for (Worker* w : dead) {
    set_health(*w, WorkerHealth::kDead, w->killed_because);
    kill_worker(*w);  // the pidfd then reports the exit
  }
}

void Pool::kill_worker(Worker& w) {
  for (auto& [task, f] : w.flights) {
    if (f.group > 0) kill(-f.group, SIGKILL);
  }
  kill(-w.v.pid, SIGKILL);
  kill(w.v.pid, SIGKILL);
}

bool Pool::degraded() const {
  return std::any_of(slots_.begin(), slots_.end(), [](const auto& s) {
    return s->worker == 0 && s->state == WorkerHealth::kGivenUp;
  });
}

// ---- exits and restarts ----------------------------------------------------------------

void Pool::on_exit(int64_t id) {
  Worker* w = find(id);
  if (!w) return;
  siginfo_t info{};
  waitid(P_PID, static_cast<id_t>(w->v.pid), &info, WEXITED | WNOHANG);
  // A task ran in its own process group: it must not outlive its worker. A worker can die
  // before it reports that group; then the task is found by its environment.
  std::vector<std::string> unreported;
  for (auto& [task, f] : w->flights) {
    if (f.group > 0) {
      kill(-f.group, SIGKILL);
    } else if (!runs_program()) {
      unreported.push_back(f.token);
    }
  }
  sweep_attempt_processes(io_, std::move(unreported));
  // Whatever a program left in its group goes with it.
  if (runs_program()) kill(-w->v.pid, SIGKILL);
  auto flights = std::move(w->flights);
  // A timed-out task that would not let go counts too: it may be why the worker was killed.
  // A task it was never sent (held to run alone) had no part in it.
  auto sent = std::count_if(flights.begin(), flights.end(),
                            [](const auto& flight) { return !flight.second.held; });
  LossCause cause = w->restarted_by_hand ? LossCause::kRestartedByHand
                    : sent > 1           ? LossCause::kDiedWithOthers
                                         : LossCause::kDied;
  int slot = w->v.slot;
  bool expected = w->leaving || stopping_;
  int64_t now = wall_now_ms();
  int64_t lived = now - w->v.started_at_ms;
  bool crash_loop =
      w->v.health == WorkerHealth::kStarting ||
      (lived < kYoungMs && flights.empty() && w->v.tasks_done + w->v.tasks_failed == 0);
  std::string why = !w->killed_because.empty() ? w->killed_because
                    : info.si_code == CLD_EXITED
                        ? fmt::format("worker {} exited with status {}", id, info.si_status)
                        : fmt::format("worker {} killed by signal {}", id, info.si_status);
  // A program that exits closes its stdout first: keep its status with the reason.
  if (!w->killed_because.empty() && info.si_code == CLD_EXITED) {
    why += fmt::format(" (it exited with status {})", info.si_status);
  }
  if (expected && w->killed_because.empty()) {
    set_health(*w, WorkerHealth::kStopped);
  } else {
    if (runs_program()) {
      spdlog::warn("pool: {} (pool {})", why, name());
    } else {
      spdlog::warn("pool: {}", why);
    }
    set_health(*w, WorkerHealth::kDead, why);
  }
  workers_.erase(id);
  if (slot >= 0 && static_cast<size_t>(slot) < slots_.size() &&
      slots_[static_cast<size_t>(slot)]->worker == id) {
    slots_[static_cast<size_t>(slot)]->worker = 0;
  }
  for (auto& [task, f] : flights) {
    if (f.timed_out) continue;
    listener_.on_worker_lost(*this, id, task, f.token, why, f.held ? LossCause::kNeverSent : cause);
  }
  if (flights.empty()) listener_.on_worker_lost(*this, id, 0, {}, why, cause);
  if (!expected && slot >= 0 && static_cast<size_t>(slot) < slots_.size()) {
    refill(slot, now, crash_loop, why);
  }
  maybe_done_shutdown();
}

// Starts a new worker in `slot`: at once after a first death, then with delays doubling from
// 100 ms to 30 s while workers keep dying young; past max_restarts within restart_window the
// slot is given up.
void Pool::refill(int slot, int64_t died_at_ms, bool crash_loop, const std::string& why) {
  Slot& s = *slots_[static_cast<size_t>(slot)];
  s.restart_times.push_back(died_at_ms);
  while (!s.restart_times.empty() &&
         s.restart_times.front() < died_at_ms - options_.restart_window_ms) {
    s.restart_times.pop_front();
  }
  s.young_deaths = crash_loop ? s.young_deaths + 1 : 0;
  if (static_cast<int>(s.restart_times.size()) > options_.max_restarts) {
    s.state = WorkerHealth::kDead;
    set_slot_state(s, WorkerHealth::kGivenUp,
                   fmt::format("{} restarts within {} (last: {})", s.restart_times.size() - 1,
                               format_duration_ms(options_.restart_window_ms), why));
    return;
  }
  ++s.restarts;
  int64_t delay =
      s.young_deaths <= 1
          ? 0
          : std::min(kMaxRestartDelayMs, kFirstRestartDelayMs << std::min(s.young_deaths - 2, 20));
  s.state = WorkerHealth::kDead;
  set_slot_state(s, WorkerHealth::kRecovering,
                 fmt::format("restart {} in {} ({})", s.restarts, format_duration_ms(delay), why));
  s.timer.expires_after(std::chrono::milliseconds(delay));
  s.timer.async_wait([this, &s](const boost::system::error_code& ec) {
    if (ec || stopping_) return;
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].get() == &s && s.worker == 0) spawn(static_cast<int>(i));
    }
  });
}

bool Pool::restart(int64_t worker) {
  for (auto& sp : slots_) {
    Slot& s = *sp;
    if (s.last_worker != worker) continue;
    s.restart_times.clear();
    s.young_deaths = 0;
    if (Worker* w = find(s.worker)) {
      w->killed_because = fmt::format("worker {} restarted by hand", worker);
      w->restarted_by_hand = true;
      kill_worker(*w);
      return true;
    }
    s.timer.cancel();
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].get() == &s) spawn(static_cast<int>(i));
    }
    return true;
  }
  return false;
}

void Pool::shutdown(int64_t grace_ms, std::function<void()> done) {
  stopping_ = true;
  // rota's own worker escalates by itself; a user's program is killed if it outstays.
  stop_deadline_mono_ = steady_ms() + grace_ms + options_.kill_grace_ms;
  on_shutdown_ = std::move(done);
  for (auto& s : slots_) s->timer.cancel();
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

// ---- reattach --------------------------------------------------------------------------

Status Pool::listen_reattach(const std::string& path) {
  ::unlink(path.c_str());
  try {
    reattach_ = std::make_unique<asio::local::stream_protocol::acceptor>(
        io_, asio::local::stream_protocol::endpoint(path));
  } catch (const std::exception& e) {
    return make_error(Code::kUnavailable, fmt::format("cannot listen on {}: {}", path, e.what()));
  }
  accept_reattach();
  return {};
}

void Pool::accept_reattach() {
  reattach_->async_accept([this](const boost::system::error_code& ec,
                                 asio::local::stream_protocol::socket socket) {
    if (ec == asio::error::operation_aborted || !reattach_) return;
    if (ec) {  // e.g. out of descriptors: try again shortly, never stop listening
      auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
      timer->async_wait([this, timer](const boost::system::error_code& e) {
        if (!e && reattach_) accept_reattach();
      });
      return;
    }
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
        cred.uid == ::getuid()) {
      auto conn = std::make_shared<std::pair<asio::local::stream_protocol::socket, std::string>>(
          std::move(socket), std::string());
      asio::async_read_until(conn->first, asio::dynamic_buffer(conn->second), '\n',
                             [this, conn](const boost::system::error_code& ec, size_t n) {
                               if (ec) return;
                               auto hello = decode(std::string_view(conn->second).substr(0, n - 1));
                               conn->second.erase(0, n);
                               if (!hello || hello->type != MessageType::kHello) return;
                               adopt(std::move(conn->first), std::move(conn->second), *hello);
                             });
    }
    accept_reattach();
  });
}

// A worker of the previous daemon presents itself. It is adopted if the engine recognises its
// attempt; otherwise it is told to stop (its late result would be rejected anyway).
void Pool::adopt(asio::local::stream_protocol::socket socket, std::string buffered,
                 const Message& hello) {
  if (find(hello.worker) || hello.pid <= 0) return;
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(hello.pid), 0));
  if (pidfd < 0) return;
  auto w = std::make_unique<Worker>(std::move(socket), pidfd);
  int64_t id = hello.worker;
  *w->inbuf = std::move(buffered);
  w->v.id = id;
  w->v.pid = static_cast<pid_t>(hello.pid);
  w->v.started_at_ms = wall_now_ms();
  w->v.last_heartbeat_ms = w->v.started_at_ms;
  w->last_heartbeat_mono = steady_ms();
  bool accepted = listener_.on_worker_reattach(id, hello.task, hello.token);
  if (accepted && hello.task) {
    w->flights[hello.task] =
        Flight{.token = hello.token, .started_ms = wall_now_ms(), .sent = true};
    w->refresh_view();
    w->v.health = WorkerHealth::kWorking;
  } else {
    w->v.health = WorkerHealth::kIdle;
  }
  w->v.slot = -1;
  for (size_t i = 0; accepted && i < slots_.size(); ++i) {
    Slot& s = *slots_[i];
    if (s.worker == 0 && s.awaiting_reattach) {
      s.awaiting_reattach = false;
      s.worker = id;
      s.last_worker = id;
      w->v.slot = static_cast<int>(i);
      break;
    }
  }
  Worker& ref = *w;
  workers_.emplace(id, std::move(w));
  ref.pidfd.async_wait(asio::posix::descriptor_base::wait_read,
                       [this, id](const boost::system::error_code& ec) {
                         if (!ec) on_exit(id);
                       });
  if (!accepted || ref.v.slot < 0) {
    // Not ours, or no room: it finishes (or, if not ours, stops) its task and leaves.
    ref.leaving = true;
    send(id, Message{.type = MessageType::kShutdown, .grace_ms = accepted ? kLeaveAfterTaskMs : 0});
  }
  spdlog::info(
      "pool: worker {} (pid {}) reattached{}", id, hello.pid,
      accepted ? fmt::format(" with task {}", hello.task) : ", not recognised: stopping it");
  read(ref);
}

void Pool::fill_reserved() {
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (slots_[i]->worker == 0 && slots_[i]->awaiting_reattach && !stopping_) {
      spawn(static_cast<int>(i));
    }
  }
}

void Pool::detach() {
  stopping_ = true;
  if (reattach_) reattach_->close();
  for (auto& s : slots_) s->timer.cancel();
  // Closing the sockets is all: each worker with a task keeps it and reattaches to the next
  // daemon; an idle one exits. A user's program cannot reattach: it is stopped, and the next
  // daemon runs its tasks again.
  if (runs_program()) {
    for (auto& [id, w] : workers_) kill(-w->v.pid, SIGTERM);
  } else {
    // What this turn sent is not left behind: a claimed task's message must reach its worker
    // for the worker to come back with it. Without waiting: a worker that reads nothing must
    // not hold up the restart (its task then comes back as daemon_lost).
    for (auto& [id, w] : workers_) {
      if (w->writing || w->outbuf.empty()) continue;
      boost::system::error_code ignored;
      w->socket.non_blocking(true, ignored);
      asio::write(w->socket, asio::buffer(w->outbuf), ignored);
    }
  }
  workers_.clear();
}

// ---- views -----------------------------------------------------------------------------

std::vector<int64_t> Pool::idle_workers() const {
  std::vector<int64_t> ids;
  for (const auto& [id, w] : workers_) {
    if (w->v.health == WorkerHealth::kIdle && !w->leaving) ids.push_back(id);
  }
  return ids;
}

std::vector<std::pair<int64_t, int>> Pool::free_workers() const {
  std::vector<std::pair<int64_t, int>> out;
  for (const auto& [id, w] : workers_) {
    if (int room = room_of(*w); room > 0) out.emplace_back(id, room);
  }
  return out;
}

int Pool::room(int64_t worker) const {
  const Worker* w = find(worker);
  return w ? room_of(*w) : 0;
}

int Pool::room_of(const Worker& w) const {
  if (w.leaving) return 0;
  WorkerHealth h = w.v.health;
  if (h != WorkerHealth::kIdle && h != WorkerHealth::kWorking && h != WorkerHealth::kSlow) {
    return 0;
  }
  bool alone = std::any_of(w.flights.begin(), w.flights.end(),
                           [](const auto& flight) { return flight.second.alone; });
  return alone ? 0 : w.capacity - static_cast<int>(w.flights.size());
}

std::vector<WorkerView> Pool::view() const {
  std::vector<WorkerView> out;
  for (const auto& [id, w] : workers_) out.push_back(w->v);
  for (size_t i = 0; i < slots_.size(); ++i) {
    const Slot& s = *slots_[i];
    if (s.worker != 0) continue;
    WorkerView v;
    v.id = s.last_worker;
    v.slot = static_cast<int>(i);
    v.health = s.awaiting_reattach ? WorkerHealth::kRecovering : s.state;
    v.restarts = s.restarts;
    out.push_back(v);
  }
  return out;
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
