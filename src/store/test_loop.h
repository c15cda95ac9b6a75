// For unit tests: stands in for the daemon's loop. What a ThreadedStore's thread sends back to
// the loop (commits' ends, reads ahead) waits here until the test runs it.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <vector>

namespace rota {

class TestLoop {
 public:
  // What ThreadedStore takes as its Deliver. REQUIRES: the TestLoop outlives the store.
  std::function<void(std::function<void()>)> deliver() {
    return [this](std::function<void()> fn) {
      {
        std::lock_guard lock(mu_);
        queue_.push_back(std::move(fn));
      }
      arrived_.notify_all();
    };
  }

  // Runs what has arrived so far; returns how many.
  size_t run() {
    std::vector<std::function<void()>> fns;
    {
      std::lock_guard lock(mu_);
      fns.swap(queue_);
    }
    for (auto& fn : fns) fn();
    return fns.size();
  }

  // Waits until `n` have arrived (not run yet), then runs them.
  void run_when(size_t n) {
    std::unique_lock lock(mu_);
    arrived_.wait(lock, [&] { return queue_.size() >= n; });
    lock.unlock();
    run();
  }

  // Forgets what has not run (before the store goes).
  void drop() {
    std::lock_guard lock(mu_);
    queue_.clear();
  }

 private:
  std::mutex mu_;
  std::condition_variable arrived_;
  std::vector<std::function<void()>> queue_;
};

}  // namespace rota
