#include "store/store_thread.h"

namespace rota {

StoreThread::StoreThread() : thread_([this] { run(); }) {}

StoreThread::~StoreThread() {
  hand_over();
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_.notify_one();
  thread_.join();
}

void StoreThread::post(std::function<void()> op) {
  posted_.push_back(std::move(op));
  if (posted_.size() >= kBatch) hand_over();
}

void StoreThread::hand_over() {
  if (posted_.empty()) return;
  bool wake;
  {
    std::lock_guard lock(mu_);
    if (queue_.empty()) {
      queue_.swap(posted_);
    } else {
      for (auto& op : posted_) queue_.push_back(std::move(op));
      posted_.clear();
    }
    wake = idle_;
  }
  if (wake) work_.notify_one();
}

bool StoreThread::waiting() {
  std::lock_guard lock(mu_);
  return idle_ && queue_.empty();
}

void StoreThread::run_posted_here() {
  std::vector<std::function<void()>> ops;
  ops.swap(posted_);
  for (auto& op : ops) op();
}

void StoreThread::wait_for(uint64_t ticket) {
  hand_over();
  std::unique_lock lock(mu_);
  done_.wait(lock, [&] { return finished_ >= ticket; });
}

void StoreThread::run() {
  std::vector<std::function<void()>> batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      idle_ = true;
      work_.wait(lock, [this] { return !queue_.empty() || stopping_; });
      idle_ = false;
      if (queue_.empty()) return;  // stopping, and everything has run
      batch.swap(queue_);
    }
    for (auto& op : batch) op();
    batch.clear();
    done_.notify_all();
  }
}

}  // namespace rota
