#include "daemon/committer.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <chrono>

namespace rota {

Status Committer::write() {
  if (!sticky_) return sticky_;
  if (!open_) {
    if (auto r = store_.begin(); !r) {
      sticky_ = std::unexpected(
          Error{Code::kUnavailable, "the store failed (" + r.error().message + ")", {}});
      spdlog::error("store: {}", r.error().message);
      return sticky_;
    }
    open_ = true;
  }
  schedule();
  return {};
}

void Committer::after_commit(Callback callback) {
  callbacks_.push_back(std::move(callback));
  schedule();
}

void Committer::schedule() {
  if (scheduled_) return;
  scheduled_ = true;
  boost::asio::post(io_, [this] { flush(); });
}

void Committer::flush() {
  scheduled_ = false;
  if (before_commit_ && sticky_) before_commit_();
  if (open_) {
    open_ = false;
    auto start = std::chrono::steady_clock::now();
    if (auto r = store_.commit(); !r) {
      store_.rollback();
      sticky_ = std::unexpected(
          Error{Code::kUnavailable, "the store failed to commit (" + r.error().message + ")", {}});
      spdlog::error("store: commit failed: {}; no new work is acknowledged", r.error().message);
    }
    last_commit_us_ = std::chrono::duration_cast<std::chrono::microseconds>(
                          std::chrono::steady_clock::now() - start)
                          .count();
    ++commits_;
    if (observer_) observer_(static_cast<double>(last_commit_us_) / 1e6);
  }
  auto callbacks = std::move(callbacks_);
  callbacks_.clear();
  for (auto& callback : callbacks) callback(sticky_);
}

}  // namespace rota
