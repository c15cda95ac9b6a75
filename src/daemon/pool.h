// The supervisor of the `commands` pool: spawns `rota worker` processes, one per slot, each
// tied to the daemon by a socketpair; notices their exits through pidfd at once; replaces them.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/streambuf.hpp>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "worker/protocol.h"

namespace rota {

enum class WorkerHealth { kStarting, kIdle, kWorking, kStopped };
const char* worker_health_name(WorkerHealth health);

struct WorkerView {
  int64_t id = 0;
  pid_t pid = 0;
  WorkerHealth health = WorkerHealth::kStarting;
  int64_t task = 0;
  int64_t started_at_ms = 0;
  int64_t last_heartbeat_ms = 0;
  int64_t tasks_done = 0;
  int64_t tasks_failed = 0;
  int restarts = 0;
};

// What the pool tells the daemon. Every call happens on the event loop.
class PoolListener {
 public:
  virtual ~PoolListener() = default;
  virtual void on_worker_idle(int64_t worker) = 0;
  virtual void on_worker_message(int64_t worker, const Message& message) = 0;
  // The worker's process is gone; `task`/`token` were running on it (0/empty if none).
  virtual void on_worker_lost(int64_t worker, int64_t task, const std::string& token,
                              const std::string& why) = 0;
};

class Pool {
 public:
  struct Options {
    std::string exe;  // the rota binary
    std::string home;
    int64_t heartbeat_ms = 1000;
  };
  using IdAllocator = std::function<int64_t()>;

  Pool(boost::asio::io_context& io, Options options, PoolListener& listener,
       IdAllocator allocate_id);
  ~Pool();

  // Grows or shrinks to `size` workers. Shrinking stops idle workers first; a busy worker
  // leaves after its task.
  void scale(int size);
  int size() const { return target_; }

  // Marks an idle worker as working on `task`; the task message follows with send().
  // REQUIRES: the worker is idle.
  void reserve(int64_t worker, int64_t task, const std::string& token);
  void send(int64_t worker, const Message& message);
  // Stops every worker: running tasks get `grace_ms` after SIGTERM. `done` runs once all exited.
  void shutdown(int64_t grace_ms, std::function<void()> done);

  std::vector<int64_t> idle_workers() const;
  std::vector<WorkerView> view() const;
  // The process group of the task a worker runs, 0 if unknown.
  pid_t task_group(int64_t worker) const;

 private:
  struct Worker;
  void spawn(int restarts);
  void read(Worker& w);
  void on_line(Worker& w, std::string_view line);
  void on_exit(int64_t id);
  void write_next(Worker& w);
  Worker* find(int64_t id);
  const Worker* find(int64_t id) const;
  void maybe_done_shutdown();
  int live() const;  // workers that stay, plus those about to be started
  void respawn_later(int64_t delay_ms, int restarts);

  boost::asio::io_context& io_;
  Options options_;
  PoolListener& listener_;
  IdAllocator allocate_id_;
  int target_ = 0;
  bool stopping_ = false;
  int crash_streak_ = 0;    // consecutive workers that died young
  int pending_spawns_ = 0;  // replacements waiting out their restart delay
  std::function<void()> on_shutdown_;
  std::map<int64_t, std::unique_ptr<Worker>> workers_;
};

}  // namespace rota
