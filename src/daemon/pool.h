// The supervisor of the `commands` pool. The pool has N slots; each slot holds one
// `rota worker` process, tied to the daemon by a socketpair. The supervisor notices a worker's
// exit at once (pidfd), watches its heartbeats, kills one that stops answering, and refills
// the slot with growing delays; a slot that restarts too often is given up (the pool is then
// degraded).
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

struct WorkerView {
  int64_t id = 0;  // 0 for a slot without a worker
  int slot = -1;
  pid_t pid = 0;
  WorkerHealth health = WorkerHealth::kStarting;
  int64_t task = 0;
  int64_t started_at_ms = 0;
  int64_t last_heartbeat_ms = 0;
  int64_t tasks_done = 0;
  int64_t tasks_failed = 0;
  int restarts = 0;
};

// Why a worker went away: on its own (crashed, killed, hung), or restarted by a person.
enum class LossCause { kDied, kRestartedByHand };

// A health transition, for the event log and alerts.
struct HealthChange {
  int64_t worker = 0;
  int slot = -1;
  WorkerHealth from;
  WorkerHealth to;
  std::string detail;
};

// What the pool tells the daemon. Every call happens on the event loop.
class PoolListener {
 public:
  virtual ~PoolListener() = default;
  virtual void on_worker_idle(int64_t worker) = 0;
  virtual void on_worker_message(int64_t worker, const Message& message) = 0;
  // The worker's process is gone; `task`/`token` were running on it (0/empty if none).
  virtual void on_worker_lost(int64_t worker, int64_t task, const std::string& token,
                              const std::string& why, LossCause cause) = 0;
  virtual void on_health_change(const HealthChange& change) = 0;
  // A worker of a previous daemon reconnected, running `task` with `token` (0/empty: idle).
  // True if that attempt is still the task's running attempt: the worker is adopted.
  virtual bool on_worker_reattach(int64_t worker, int64_t task, const std::string& token) = 0;
};

struct PoolOptions {
  std::string exe;  // the rota binary
  std::string home;
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

  // Marks an idle worker as working on `task`; the task message follows with send().
  // REQUIRES: the worker is idle.
  void reserve(int64_t worker, int64_t task, const std::string& token, int64_t slow_after_ms);
  void send(int64_t worker, const Message& message);
  // Restarts a worker by hand (kills it; its task is retried), or the slot it last held if that
  // slot was given up. Clears the slot's restart history. False if no such worker or slot.
  bool restart(int64_t worker);
  // Stops every worker: running tasks get `grace_ms`. `done` runs once all have exited.
  void shutdown(int64_t grace_ms, std::function<void()> done);

  // Moves health states along by heartbeat age and task run time; kills dead workers.
  // The daemon calls it on a timer.
  void check_health(int64_t now_ms);

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
  void write_next(Worker& w);
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
  std::function<void()> on_shutdown_;
  std::map<int64_t, std::unique_ptr<Worker>> workers_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::unique_ptr<boost::asio::local::stream_protocol::acceptor> reattach_;
};

}  // namespace rota
