// The supervisor of one pool. The pool has N slots; each slot holds one worker process, tied
// to the daemon by a socketpair: rota's own `rota worker` for the `commands` pool, or the
// user's program for any other (its stdin and stdout; docs/protocol.md, "User pools"). The
// supervisor notices a worker's exit at once (pidfd), watches its heartbeats, kills one that
// stops answering, and refills the slot with growing delays; a slot that restarts too often is
// given up (the pool is then degraded). A worker holds up to `concurrency` tasks at once.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "worker/protocol.h"

namespace rota {

enum class WorkerHealth {
  kStarting,      // spawned, no hello yet
  kIdle,          // waiting for a task
  kWorking,       // running a task
  kSlow,          // running a task for longer than its slow threshold
  kUnresponsive,  // no heartbeat for unresponsive_after
  kDead,          // no heartbeat for dead_after, or the process exited
  kRecovering,    // (slot) waiting out the restart delay
  kStopped,       // (slot) stopped on purpose: scaled down or the daemon stops
  kGivenUp,       // (slot) restarted max_restarts times within restart_window
};
const char* worker_health_name(WorkerHealth health);

// Kills what these attempts still run, found by their tokens (kill_attempt_processes), and
// looks again 50 ms and 500 ms later: a process in the middle of an exec shows no
// environment, so a single look can miss the task a dead worker had just started.
void sweep_attempt_processes(boost::asio::io_context& io, std::vector<std::string> tokens);

struct WorkerView {
  int64_t id = 0;  // 0 for a slot without a worker
  int slot = -1;
  pid_t pid = 0;
  WorkerHealth health = WorkerHealth::kStarting;
  int64_t task = 0;   // the oldest task it holds; 0: none
  int in_flight = 0;  // tasks it holds
  int64_t started_at_ms = 0;
  int64_t last_heartbeat_ms = 0;
  int64_t tasks_done = 0;
  int64_t tasks_failed = 0;
  int restarts = 0;
};

// Why a worker went away: on its own (crashed, killed, hung), or restarted by a person.
// kDiedWithOthers: the worker held other tasks too, so this one may not be what killed it.
// kNeverSent: the task waited on the worker to run alone and was never sent to it.
enum class LossCause { kDied, kDiedWithOthers, kRestartedByHand, kNeverSent };

// A health transition, for the event log and alerts.
struct HealthChange {
  int64_t worker = 0;
  int slot = -1;
  WorkerHealth from;
  WorkerHealth to;
  std::string detail;
};

class Pool;

// What the pool tells the daemon. Every call happens on the event loop.
class PoolListener {
 public:
  virtual ~PoolListener() = default;
  // The worker has room for another task.
  virtual void on_worker_idle(Pool& pool, int64_t worker) = 0;
  // Every line of one read from the worker is handled, and it has room: the moment to give it
  // more work, before the loop turns to the other workers' answers.
  virtual void on_worker_answered(Pool& pool, int64_t worker) = 0;
  // A result (done or fail, its token filled in) for one of the worker's tasks.
  virtual void on_worker_message(Pool& pool, int64_t worker, const Message& message) = 0;
  // The worker's process is gone, or the worker let go of the task; `task`/`token` were
  // running on it (0/empty if none).
  virtual void on_worker_lost(Pool& pool, int64_t worker, int64_t task, const std::string& token,
                              const std::string& why, LossCause cause) = 0;
  virtual void on_health_change(Pool& pool, const HealthChange& change) = 0;
  // A user's program sent a line that is not a valid message; it was told so.
  virtual void on_protocol_error(Pool& pool, int64_t worker, const std::string& detail) = 0;
  // A worker of a previous daemon reconnected, running `task` with `token` (0/empty: idle).
  // True if that attempt is still the task's running attempt: the worker is adopted.
  virtual bool on_worker_reattach(int64_t worker, int64_t task, const std::string& token) = 0;
};

struct PoolOptions {
  std::string name = "commands";
  std::string exe;  // the rota binary
  std::string home;
  // A user's pool: its program, run with /bin/sh -c in `cwd` with `env` added to the daemon's
  // environment, its stderr appended to logs_dir/pool-NAME-WORKER.log. Empty: rota's own
  // command worker.
  std::string program;
  std::string cwd;
  std::map<std::string, std::string> env;
  std::string logs_dir;
  int concurrency = 1;
  std::vector<std::string> queues;  // the queues its workers take tasks from; empty: all
  int64_t kill_grace_ms = 5000;     // a program's task past its deadline or cancelled: then killed
  int64_t heartbeat_ms = 1000;
  int64_t unresponsive_after_ms = 5000;
  int64_t dead_after_ms = 15'000;
  int max_restarts = 5;
  int64_t restart_window_ms = 10 * 60'000;
};

class Pool {
 public:
  using IdAllocator = std::function<int64_t()>;

  Pool(boost::asio::io_context& io, PoolOptions options, PoolListener& listener,
       IdAllocator allocate_id);
  ~Pool();

  // Grows or shrinks to `size` slots. Shrinking stops idle workers first; a busy worker
  // leaves after its task. `reserved` new slots stay empty for workers of the previous daemon
  // to reattach to, until fill_reserved().
  void scale(int size, int reserved = 0);
  // Accepts reattaching workers on `path` ($ROTA_HOME/worker.sock).
  Status listen_reattach(const std::string& path);
  // Starts workers in the slots no previous worker came back for.
  void fill_reserved();
  // Lets go of every worker without stopping it (rota daemon restart): workers with a task
  // keep running it and reattach to the next daemon.
  void detach();
  int size() const { return static_cast<int>(slots_.size()); }
  const std::string& name() const { return options_.name; }
  const PoolOptions& options() const { return options_; }
  // A user's program (message tasks), not rota's command worker.
  bool runs_program() const { return !options_.program.empty(); }
  // New settings for the workers started from now on (scale(0) then scale(n) replaces them).
  void reconfigure(PoolOptions options) { options_ = std::move(options); }

  // Marks `task` as held by the worker (which has room for it); the task message follows with
  // send(). `deadline_ms` (Unix ms, 0: none) is enforced here for a user's program.
  // `alone`: a user's program gets the task only once it holds no other, and no other until
  // it is done, so that a crash while it runs is pinned on it (a task lost in a crash beside
  // others runs alone next).
  void reserve(int64_t worker, int64_t task, const std::string& token, int64_t slow_after_ms,
               int64_t deadline_ms, bool alone = false);
  // Queues `message` for the worker. What is sent in one turn leaves in one write, at the end
  // of the turn, or at flush() if that comes first.
  void send(int64_t worker, const Message& message);
  void flush(int64_t worker);
  // Restarts a worker by hand (kills it; its tasks are retried), or the slot it last held if
  // that slot was given up. Clears the slot's restart history. False if no such worker or slot.
  bool restart(int64_t worker);
  // Stops every worker: running tasks get `grace_ms`. `done` runs once all have exited.
  void shutdown(int64_t grace_ms, std::function<void()> done);

  // Moves health states along by heartbeat age and task run time; kills dead workers; for a
  // user's program, cancels tasks past their deadline and kills a worker that will not let go
  // of one. The daemon calls it on a timer.
  void check_health(int64_t now_ms);

  // Workers with room for more tasks, and how many more each can take.
  std::vector<std::pair<int64_t, int>> free_workers() const;
  // How many more tasks this worker can take (0 if none, or no such worker).
  int room(int64_t worker) const;
  std::vector<int64_t> idle_workers() const;
  // Every worker, and every slot that has none (recovering, given up).
  std::vector<WorkerView> view() const;
  // True when a slot was given up.
  bool degraded() const;

 private:
  struct Worker;
  struct Slot;
  void spawn(int slot);
  void read(Worker& w);
  void on_line(Worker& w, std::string_view line);
  void on_exit(int64_t id);
  void refill(int slot, int64_t died_at_ms, bool crash_loop, const std::string& why);
  void set_health(Worker& w, WorkerHealth to, std::string detail = {});
  void set_slot_state(Slot& s, WorkerHealth to, std::string detail);
  void kill_worker(Worker& w);
  int room_of(const Worker& w) const;
  void write_soon(Worker& w);
  void write_next(Worker& w);
  bool may_send(const Worker& w, int64_t task) const;
  void send_held(Worker& w);
  void on_result(Worker& w, Message& message);
  void program_line(Worker& w, std::string_view line);
  void protocol_error(Worker& w, std::string detail, std::string_view line);
  int spawn_program(int64_t id, int stdin_fd, int stdout_fd, pid_t& pid);
  Worker* find(int64_t id);
  const Worker* find(int64_t id) const;
  void maybe_done_shutdown();
  void accept_reattach();
  void adopt(boost::asio::local::stream_protocol::socket socket, std::string buffered,
             const Message& hello);

  boost::asio::io_context& io_;
  PoolOptions options_;
  PoolListener& listener_;
  IdAllocator allocate_id_;
  bool stopping_ = false;
  int64_t stop_deadline_mono_ = 0;  // shutdown: a program still running then is killed
  std::function<void()> on_shutdown_;
  std::map<int64_t, std::unique_ptr<Worker>> workers_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::unique_ptr<boost::asio::local::stream_protocol::acceptor> reattach_;
};

}  // namespace rota
