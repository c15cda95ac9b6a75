// Pools of the user's programs (`rota pool add NAME --cmd ...`): their definitions, kept in the
// store so that they come back after a restart, and one supervised Pool for each. Message tasks
// for a pool (`rota add --pool NAME --json ...`) go to its workers.
#pragma once

#include <boost/asio/io_context.hpp>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/clock.h"
#include "core/error.h"
#include "core/task.h"
#include "daemon/autoscaler.h"
#include "daemon/committer.h"
#include "daemon/engine.h"
#include "daemon/pool.h"
#include "store/store.h"

namespace rota {

struct PoolDef {
  std::string name;
  std::string cmd;  // run with /bin/sh -c
  int size = 1;     // fixed size; with max > 0, the size autoscaling starts from
  int min = 0;      // autoscaling range when max > 0
  int max = 0;
  std::vector<std::string> queues;  // empty: every queue
  int concurrency = 1;
  std::string cwd;  // absolute; empty: the daemon's
  Env env;
  int64_t created_at_ms = 0;
};

std::string pool_def_to_json(const PoolDef& def);
Result<PoolDef> pool_def_from_json(const std::string& name, const std::string& text);
// Names, numbers in range, an absolute cwd that exists.
Status validate_pool_def(const PoolDef& def);

class UserPools {
 public:
  // `base` holds what every pool shares: the daemon's binary, home, logs and health settings.
  UserPools(boost::asio::io_context& io, Store& store, Committer& committer, Engine& engine,
            const Clock& clock, PoolOptions base, int64_t scale_up_wait_ms,
            int64_t scale_down_idle_ms);
  ~UserPools();

  // Starts every pool kept in the store.
  Status recover();

  // The operations below write through the committer: the caller replies after commit.
  Result<PoolDef> add(PoolDef def);
  // Replaces a pool's definition. Size, range and queues apply at once; a new command,
  // directory, environment or concurrency replaces the workers: the old ones finish the tasks
  // they hold and leave.
  Result<PoolDef> set(PoolDef def);
  // Stops the pool's workers (their tasks are handed back, unfinished) and forgets it. Its
  // queued tasks wait for a pool of that name.
  Status remove(const std::string& name);

  std::vector<PoolDef> list() const;
  std::optional<PoolDef> get(const std::string& name) const;
  Pool* find(const std::string& name);
  const Pool* find(const std::string& name) const;

  // Health checks and autoscaling of every pool; the daemon's health timer calls it.
  void tick(int64_t now_ms);
  // Stops every worker: `done` runs once all have exited.
  void shutdown(int64_t grace_ms, std::function<void()> done);
  // rota daemon restart: programs cannot reattach, so they are stopped.
  void detach();

 private:
  struct Entry {
    PoolDef def;
    std::unique_ptr<Pool> pool;
    std::unique_ptr<Autoscaler> autoscaler;
  };
  std::unique_ptr<Pool> make_pool(const PoolDef& def);
  void start(Entry& entry);
  void retire(std::unique_ptr<Pool> pool, int64_t grace_ms);

  boost::asio::io_context& io_;
  Store& store_;
  Committer& committer_;
  Engine& engine_;
  const Clock& clock_;
  PoolOptions base_;
  int64_t scale_up_wait_ms_;
  int64_t scale_down_idle_ms_;
  std::map<std::string, Entry> pools_;
  // Pools removed (or replaced) whose workers are still finishing: kept until they have left.
  std::vector<std::unique_ptr<Pool>> retiring_;
};

}  // namespace rota
