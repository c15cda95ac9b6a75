// The scheduler fires schedules: one timer on the event loop for the earliest due schedule,
// no polling. A firing queues ordinary tasks (labelled schedule=NAME) through the engine, in
// the same transaction that advances the schedule's next slot and sweep cursor, so a slot is
// fired once even across kill -9 (and the store's unique index on (schedule, slot, item)
// refuses a second firing of one slot outright).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <unordered_map>

#include "core/clock.h"
#include "daemon/committer.h"
#include "daemon/engine.h"
#include "daemon/schedule.h"
#include "store/store.h"

namespace rota {

class Scheduler {
 public:
  Scheduler(boost::asio::io_context& io, Store& store, Committer& committer, Engine& engine,
            const Clock& clock);

  // Loads the schedules and fires what the daemon missed while it was down, as each
  // schedule's --catch-up says. Call after Engine::recover().
  Status recover();

  // The operations write through the committer: the caller replies after commit.
  Result<nlohmann::json> add(const std::string& name, const nlohmann::json& definition);
  Result<nlohmann::json> list() const;
  Result<nlohmann::json> show(const std::string& name);
  Status set_paused(const std::string& name, bool paused);
  Status remove(const std::string& name);
  // Fires once now, whatever the time and the overlap policy; returns the task ids.
  Result<std::vector<int64_t>> run_now(const std::string& name);

 private:
  struct Live {
    ScheduleRecord record;
    ScheduleDef def;
    Timing timing;
    int64_t due_ms = 0;        // next_slot plus this slot's jitter
    std::set<int64_t> active;  // its unfinished tasks
  };

  void on_task_finished(int64_t task, TaskState state);
  void arm();
  void on_timer();
  // Handles every slot of `s` that is due at `now_ms`.
  Status tick(Live& s, int64_t now_ms);
  // Queues the firing for `slot_ms`, or skips or holds it by the overlap policy.
  Status fire(Live& s, int64_t slot_ms, bool forced, std::vector<int64_t>* ids = nullptr);
  Status advance(Live& s, int64_t after_ms);
  Status save(const Live& s);
  int64_t forced_slot();
  void record(const std::string& name, const std::string& detail);
  nlohmann::json view(const Live& s) const;
  Live* find(const std::string& name);

  boost::asio::io_context& io_;
  Store& store_;
  Committer& committer_;
  Engine& engine_;
  const Clock& clock_;
  std::map<std::string, Live> schedules_;
  std::unordered_map<int64_t, std::string> task_schedule_;  // unfinished task -> schedule
  std::set<std::string> broken_;  // kept in the store but not started (see recover)
  boost::asio::steady_timer timer_;
  std::mt19937_64 rng_;
  int64_t last_forced_ = 0;
};

}  // namespace rota
