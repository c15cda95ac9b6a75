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

void Committer::after_commit(Callback callback, Wait wait) {
  callbacks_.push_back(std::move(callback));
  if (wait == Wait::kNow) urgent_ = true;
  schedule();
}

void Committer::schedule() {
  if (scheduled_) return;
  scheduled_ = true;
  boost::asio::post(io_, [this] { end_turn(); });
}

void Committer::end_turn() {
  scheduled_ = false;
  if (before_commit_ && sticky_) before_commit_();
  if (!open_ && callbacks_.empty()) return;
  auto due = last_commit_end_ + batch_gap_;
  if (urgent_ || !sticky_ || std::chrono::steady_clock::now() >= due) {
    flush();
    return;
  }
  if (timer_armed_) return;
  timer_armed_ = true;
  timer_.expires_at(due);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;  // cancelled: a commit came first
    timer_armed_ = false;
    end_turn();  // due now: the hook runs, then the commit
  });
}

void Committer::flush() {
  if (timer_armed_) {
    timer_armed_ = false;
    timer_.cancel();
  }
  auto waiting = urgent_ ? Store::Waiting::kSomeone : Store::Waiting::kNobody;
  urgent_ = false;
  auto callbacks = std::move(callbacks_);
  callbacks_.clear();
  auto run = [this](std::vector<Callback>& callbacks) {
    for (auto& callback : callbacks) callback(sticky_);
  };
  if (!open_) {
    // Nothing to commit: the callbacks still come after those of the commits before them.
    store_.after_pending([run, callbacks = std::move(callbacks)]() mutable { run(callbacks); });
    return;
  }
  open_ = false;
  auto start = std::chrono::steady_clock::now();
  store_.commit_async(
      [this, start, run, callbacks = std::move(callbacks)](const Status& committed) mutable {
        if (!committed && sticky_) {
          sticky_ = std::unexpected(
              Error{Code::kUnavailable,
                    "the store failed to commit (" + committed.error().message + ")",
                    {}});
          spdlog::error("store: commit failed: {}; no new work is acknowledged",
                        committed.error().message);
        }
        last_commit_us_ = std::chrono::duration_cast<std::chrono::microseconds>(
                              std::chrono::steady_clock::now() - start)
                              .count();
        ++commits_;
        if (observer_) observer_(static_cast<double>(last_commit_us_) / 1e6);
        run(callbacks);
      },
      waiting);
  // The end of the commit, or of handing it over to the store's thread.
  last_commit_end_ = std::chrono::steady_clock::now();
}

}  // namespace rota
