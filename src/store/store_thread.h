// One thread that runs what it is given, in the order given: the store's thread
// (ThreadedStore). The loop posts work without waiting and hands it over in batches (one lock
// and at most one wake-up per batch); call() runs a function after everything posted before it
// and waits for its result. The thread never waits for the loop, so the two cannot deadlock.
//
// Only the loop gives the thread work. So when the thread has nothing left to do, call() runs
// what was posted and its function right there on the loop, sparing two thread switches: the
// thread cannot start anything meanwhile, and the lock they both take orders their memory.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace rota {

class StoreThread {
 public:
  StoreThread();
  // Runs everything posted, handed over or not, then stops the thread.
  ~StoreThread();
  StoreThread(const StoreThread&) = delete;
  StoreThread& operator=(const StoreThread&) = delete;

  // Queues `op`: it runs after everything queued before it, once handed over. A long run of
  // posts is handed over every kBatch.
  void post(std::function<void()> op);
  // Lets the thread start on what was posted.
  void hand_over();
  // Runs `fn` after everything posted before it (on the thread, or here if the thread has
  // nothing left to do), and returns what it returned.
  template <class Fn>
  std::invoke_result_t<Fn> call(Fn&& fn);
  // If the thread waits with nothing queued, runs what was posted and then `fn` here, and
  // returns true; otherwise does nothing and returns false.
  template <class Fn>
  bool try_here(Fn&& fn) {
    if (!waiting()) return false;
    run_posted_here();
    fn();
    return true;
  }

 private:
  static constexpr size_t kBatch = 256;
  void run();
  // Waits until the thread has run `ticket`.
  void wait_for(uint64_t ticket);
  // True if the thread has nothing queued and waits for work.
  bool waiting();
  // Runs what was posted here, in order. REQUIRES: waiting().
  void run_posted_here();

  std::vector<std::function<void()>> posted_;  // the loop's, not handed over yet
  std::mutex mu_;
  std::condition_variable work_;
  std::condition_variable done_;
  std::vector<std::function<void()>> queue_;
  bool stopping_ = false;
  bool idle_ = false;      // the thread waits for work
  uint64_t finished_ = 0;  // calls run so far
  uint64_t tickets_ = 0;   // calls made so far
  std::thread thread_;
};

template <class Fn>
std::invoke_result_t<Fn> StoreThread::call(Fn&& fn) {
  using R = std::invoke_result_t<Fn>;
  if (waiting()) {
    run_posted_here();
    return fn();
  }
  uint64_t ticket = ++tickets_;
  if constexpr (std::is_void_v<R>) {
    post([&fn, this] {
      fn();
      std::lock_guard lock(mu_);
      ++finished_;
    });
    wait_for(ticket);
  } else {
    std::optional<R> result;
    post([&fn, &result, this] {
      result.emplace(fn());
      std::lock_guard lock(mu_);
      ++finished_;
    });
    wait_for(ticket);
    return std::move(*result);
  }
}

}  // namespace rota
