// Group commit: every store write made during one event-loop turn lands in one transaction,
// committed once the turn's handlers have run and before any reply that depends on it is sent.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <vector>

#include "core/error.h"
#include "store/store.h"

namespace rota {

// How soon a callback needs its commit. kNow: someone waits (a reply, a task to send), so the
// turn's transaction commits at the end of the turn. kBatched: nobody waits; the commit may
// come up to kBatchGap after the previous one, so that a busy daemon commits the work of many
// turns at once (a pool's results, events for followers). Writes with no callback are kBatched.
enum class Wait { kNow, kBatched };

class Committer {
 public:
  using Callback = std::function<void(const Status&)>;
  // The longest a write waits for its commit when nobody waits for it. A commit's cost is
  // mostly its pages, so at 10 ms a busy pool commits ~200 results at once instead of ~20.
  static constexpr std::chrono::microseconds kBatchGap{10000};

  Committer(boost::asio::io_context& io, Store& store,
            std::chrono::microseconds batch_gap = kBatchGap)
      : io_(io), store_(store), batch_gap_(batch_gap), timer_(io) {}

  // Opens this turn's transaction if none is open and schedules its commit.
  // Fails once a commit has failed: store failures are sticky, and the daemon then
  // acknowledges no new work.
  Status write();

  // Runs `callback` once this turn's transaction is committed (or failed to commit).
  // Without an open transaction it still waits for the end of the turn, so that replies keep
  // their order.
  void after_commit(Callback callback, Wait wait = Wait::kNow);

  // Ends the turn with a flush even if nothing was written (so that dispatch runs).
  void poke() { schedule(); }

  // Called at the end of each turn that wrote or waits for a commit, and right before a
  // commit the gap's timer brings, inside the transaction (the dispatcher claims here).
  void set_before_commit(std::function<void()> hook) { before_commit_ = std::move(hook); }

  // Called with each commit's duration in seconds.
  void set_commit_observer(std::function<void(double)> observer) {
    observer_ = std::move(observer);
  }

  const Status& health() const { return sticky_; }
  int64_t last_commit_us() const { return last_commit_us_; }
  int64_t commits() const { return commits_; }

 private:
  void schedule();
  // The end of a turn: runs the before-commit hook, then commits now or arms the gap's timer.
  void end_turn();
  void flush();

  boost::asio::io_context& io_;
  Store& store_;
  std::chrono::microseconds batch_gap_;
  bool open_ = false;
  bool scheduled_ = false;
  bool urgent_ = false;  // a kNow callback waits for this commit
  bool timer_armed_ = false;
  boost::asio::steady_timer timer_;
  // No commit yet: long enough ago that the first write is not held back (steady_clock counts
  // from boot, which may be less than a gap ago).
  std::chrono::steady_clock::time_point last_commit_end_ =
      std::chrono::steady_clock::time_point::min();
  Status sticky_;
  std::vector<Callback> callbacks_;
  std::function<void()> before_commit_;
  std::function<void(double)> observer_;
  int64_t last_commit_us_ = 0;
  int64_t commits_ = 0;
};

}  // namespace rota
