// A rota user-pool worker in a few lines of C++ (C++20; header-only; nlohmann/json and POSIX).
//
//   #include "rota_worker.h"
//
//   int main() {
//     return rota::run([](const nlohmann::json& payload, rota::Context&) -> nlohmann::json {
//       std::istringstream text(payload.at("text").get<std::string>());
//       return {{"words", std::distance(std::istream_iterator<std::string>(text), {})}};
//     });
//   }
//
// The daemon starts copies of such a program (`rota pool add words --cmd ./worker`) and speaks
// the protocol of docs/protocol.md ("User pools") with each over stdin and stdout. `run` does:
//
// - hello with the concurrency K: `Options::concurrency` if given, never above
//   $ROTA_CONCURRENCY; else $ROTA_CONCURRENCY; else 1. Up to K handlers run at once. The thread
//   that reads stdin runs the tasks of what it read itself, one after another, and answers them
//   in one write: no thread hand-over per task, the fastest way for short tasks. With K > 1,
//   once such a run has lasted 1 ms (a slow task) the tasks behind it, and those that come
//   meanwhile, go to K handler threads instead, until tasks are quick again.
// - One handler call per task. What it returns is the result (null for none). An exception
//   fails the attempt, which is retried under the task's retry policy; `throw
//   rota::Permanent("why")` fails it without a retry. A handler that returns after its task was
//   cancelled fails the attempt with the error "cancelled".
// - `ctx.task`, `ctx.attempt` and `ctx.deadline_ms` (Unix ms, 0: none) describe the attempt.
//   `ctx.cancelled()` turns true when the daemon cancels the task (its timeout, or a user's
//   cancel): a long handler should check it and stop early; a cancel reaches it within about
//   50 ms. `ctx.progress(0.5, "halfway")` reports progress.
// - A heartbeat every $ROTA_HEARTBEAT_MS ms (default 1000) from a thread of its own, so a
//   handler may run for as long as its timeout allows.
// - On `shutdown` (or SIGTERM, with a grace of 5 s): no new task; the handlers in flight get up
//   to the grace (even if stdin ends meanwhile), then `run` returns 0. When stdin ends without a
//   shutdown (the daemon is gone) it stops at once. Handlers still running then cannot be
//   joined: the process ends with _Exit(0), after writing out what it has.
//
// stdout belongs to the protocol: `run` moves it to a private descriptor and points descriptor 1
// at stderr, which the daemon keeps in the worker's log, so std::cout, printf and child
// processes cannot corrupt the stream. Descriptor 0 becomes /dev/null. `run` also installs a
// SIGTERM handler and ignores SIGPIPE (a write to a closed pipe fails with EPIPE instead).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace rota {

// Throw in a handler to fail the task at once, without a retry (`retryable: false`).
class Permanent : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Options {
  int concurrency = 0;  // 0: $ROTA_CONCURRENCY, or 1; never above $ROTA_CONCURRENCY
};

namespace detail {
class Output;
class Worker;
}  // namespace detail

// The attempt a handler runs. A handler may be unit-tested with a Context of its own making:
// its progress() then goes nowhere.
class Context {
 public:
  Context(int64_t task, int64_t attempt, int64_t deadline_ms)
      : task(task), attempt(attempt), deadline_ms(deadline_ms) {}

  const int64_t task;
  const int64_t attempt;
  const int64_t deadline_ms;  // Unix time in ms; 0: none

  // True once the daemon has cancelled the task.
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

  // Reports progress (0..1, clamped) and an optional message in a heartbeat for this task.
  // Does nothing once the handler has returned.
  void progress(double fraction, std::string_view message = {}) const;

 private:
  friend class detail::Worker;
  std::atomic<bool> cancelled_{false};
  std::atomic<bool> finished_{false};
  detail::Output* output_ = nullptr;
};

using Handler = std::function<nlohmann::json(const nlohmann::json& payload, Context& ctx)>;

// Serves tasks with `handler` until shutdown or the end of stdin. Returns 0, or 2 when
// `options` are invalid or stdin and stdout cannot be taken over (with a message on stderr).
// REQUIRES: called once, from main(), before anything is written to stdout.
int run(Handler handler, Options options = {});

namespace detail {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int kProtocol = 1;
constexpr size_t kChunk = 1 << 16;
constexpr int64_t kSigtermGraceMs = 5000;
// A longer grace is cut to this (~30 years). A pool that shrinks asks for one year.
constexpr int64_t kLongestGraceMs = 1'000'000'000'000;
// A run of inline handlers that has lasted this long gets the ticker reading stdin for it, so
// that a cancel reaches it; shorter ones never pay for the hand-over. With K > 1 it is
// kHandOffAfter, and the ticker also hands the tasks waiting behind the run to the threads.
constexpr auto kWatchAfter = std::chrono::milliseconds(50);
constexpr auto kHandOffAfter = std::chrono::milliseconds(1);
// A task on a handler thread that took less than this, with no task waiting, sends the next
// tasks back to the reading thread.
constexpr auto kQuick = std::chrono::microseconds(100);
constexpr Clock::rep kNoDeadline = Clock::duration::max().count();

enum class Retry { kNo, kYes };
enum class Delivery { kNow, kWithChunk };  // kWithChunk: once the chunk read is handled

// Set by the SIGTERM handler; the reading thread and the ticker act on them.
inline volatile std::sig_atomic_t g_sigterm = 0;
inline std::atomic<int> g_wake_fd{-1};
inline std::atomic<int> g_ticker_wake_fd{-1};  // the ticker minds it while a run is inline

inline void log(std::string_view text) {
  std::string line = "rota_worker: " + std::string(text) + "\n";
  (void)!::write(2, line.data(), line.size());
}

inline std::string dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

inline std::string fail_line(int64_t task, std::string_view error, Retry retry) {
  return R"({"type":"fail","task":)" + std::to_string(task) + R"(,"error":)" + dump(json(error)) +
         R"(,"retryable":)" + (retry == Retry::kYes ? "true" : "false") + "}\n";
}

inline std::string done_line(int64_t task, const json& result) {
  std::string line = R"({"type":"done","task":)" + std::to_string(task);
  if (!result.is_null()) line += R"(,"result":)" + dump(result);
  return line + "}\n";
}

inline std::optional<int64_t> int_field(const json& message, const char* name) {
  auto it = message.find(name);
  if (it == message.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

// A positive integer from the environment; nullopt (with a message) for anything else.
inline std::optional<int> env_int(const char* name) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return std::nullopt;
  char* end = nullptr;
  long value = std::strtol(text, &end, 10);
  if (*end != '\0' || value < 1 || value > 1'000'000) {
    log(std::string("ignoring ") + name + "=" + text + ": not a positive integer");
    return std::nullopt;
  }
  return static_cast<int>(value);
}

inline int poll_timeout_ms(Clock::time_point until) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, 1'000'000));
}

// A non-blocking pipe by which one thread wakes another out of poll().
struct Pipe {
  Pipe() {
    int fds[2] = {-1, -1};
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) log("pipe2 failed");
    r = fds[0];
    w = fds[1];
  }
  ~Pipe() {
    ::close(r);
    ::close(w);
  }
  int r;
  int w;
};

inline void poke(int fd) {
  char byte = 'x';
  (void)!::write(fd, &byte, 1);  // EAGAIN: a wake-up is already pending
}

inline void drain(int fd) {
  char bytes[512];
  while (::read(fd, bytes, sizeof bytes) > 0) {
  }
}

// Protocol lines to one descriptor. Lines never interleave: a thread that finds no write in
// progress writes everything queued in one write(), so results that are ready together go out
// together. When the daemon has closed the pipe the process exits.
class Output {
 public:
  explicit Output(int fd) : fd_(fd) {}

  void send(std::string_view lines) {
    {
      std::lock_guard lock(mu_);
      queued_ += lines;
      if (writing_) return;
      writing_ = true;
    }
    write_queued();
  }

  // Keeps a line to be written with the others of its chunk, by flush_deferred().
  void defer(std::string_view line) {
    std::lock_guard lock(mu_);
    deferred_ += line;
  }

  void flush_deferred() {
    {
      std::lock_guard lock(mu_);
      if (deferred_.empty()) return;
      queued_ += deferred_;
      deferred_.clear();
      if (writing_) return;
      writing_ = true;
    }
    write_queued();
  }

  // Returns once every line sent so far is written.
  void flush() {
    flush_deferred();
    std::unique_lock lock(mu_);
    written_.wait(lock, [this] { return !writing_; });
  }

 private:
  void write_queued() {
    std::string data;
    for (;;) {
      {
        std::lock_guard lock(mu_);
        if (queued_.empty()) {
          writing_ = false;
          written_.notify_all();
          return;
        }
        data.swap(queued_);
        queued_.clear();
      }
      write_all(data);
    }
  }

  void write_all(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        log("stdout is closed: the daemon is gone");
        std::_Exit(0);
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
  }

  const int fd_;
  std::mutex mu_;
  std::condition_variable written_;
  std::string queued_;
  bool writing_ = false;
  std::string deferred_;  // the lines of inline handlers, until their chunk is done
};

// stdin, read in large chunks. Its owner is the reading thread or, while a run of inline
// handlers lasts long, the ticker.
class Input {
 public:
  explicit Input(int fd) : fd_(fd) {}

  // What to poll for more input: nothing (-1) once at the end of the file.
  int fd() const { return eof_ ? -1 : fd_; }
  const std::string& buffer() const { return buf_; }
  size_t position() const { return pos_; }

  // Appends what is there to the buffer; returns false at the end of the file.
  bool read() {
    ssize_t n = ::read(fd_, chunk_.get(), kChunk);
    while (n < 0 && errno == EINTR) n = ::read(fd_, chunk_.get(), kChunk);
    eof_ = n <= 0;
    if (eof_) return false;
    buf_.append(chunk_.get(), static_cast<size_t>(n));
    return true;
  }

  // The next complete line, consumed. The view lasts until the buffer next grows.
  std::optional<std::string_view> next_line() {
    size_t end = buf_.find('\n', pos_);
    if (end == std::string::npos) return std::nullopt;
    std::string_view line(buf_.data() + pos_, end - pos_);
    pos_ = end + 1;
    return line;
  }

  // Drops the consumed lines.
  void compact() {
    buf_.erase(0, pos_);
    pos_ = 0;
  }

 private:
  const int fd_;
  std::unique_ptr<char[]> chunk_ = std::make_unique<char[]>(kChunk);
  std::string buf_;
  size_t pos_ = 0;
  bool eof_ = false;
};

// The message on a line, or nullopt for a blank or unreadable one (with a message).
inline std::optional<json> decode(std::string_view line) {
  if (line.find_first_not_of(" \t\r") == std::string_view::npos) return std::nullopt;
  json message = json::parse(line.begin(), line.end(), nullptr, false);
  if (message.is_object()) return message;
  log("ignoring a line that is not a JSON object: " + std::string(line.substr(0, 200)));
  return std::nullopt;
}

inline std::string_view type_of(const json& message) {
  auto it = message.find("type");
  if (it == message.end() || !it->is_string()) return {};
  return it->get_ref<const json::string_t&>();
}

// Sends a heartbeat every `interval`. While a run of inline handlers on the reading thread has
// lasted `watch_after`, it also reads stdin in that thread's place: with K == 1 acting at once on
// cancel and shutdown (and on the end of the file) and leaving all it read in the buffer; with
// K > 1 handling every line, the new tasks going to the handler threads (Worker::hand_off).
// While runs come and go it wakes every `watch_after` to look; once a look finds none begun
// since the last, it sleeps until the next heartbeat, and the next run's start pokes it.
class Ticker {
 public:
  Ticker(Worker& worker, Input& input, Output& output, std::chrono::milliseconds interval,
         Clock::duration watch_after)
      : worker_(worker),
        input_(input),
        output_(output),
        interval_(interval),
        watch_after_(watch_after) {}

  void start() {
    thread_ = std::thread([this] { loop(); });
  }

  void stop() {
    stopped_ = true;
    poke(wake_.w);
    if (thread_.joinable()) thread_.join();
  }

  void poke_now() { poke(wake_.w); }
  int wake_fd() const { return wake_.w; }

  void begin_inline() {
    bool wake;
    {
      std::lock_guard lock(mu_);
      inline_ = true;
      inline_since_ = Clock::now();
      ++runs_;
      wake = unminded_;
      unminded_ = false;
    }
    if (wake) poke(wake_.w);
  }

  // Takes stdin back from the ticker, if it has it.
  void end_inline() {
    {
      std::lock_guard lock(mu_);
      inline_ = false;
      if (!watching_) return;
    }
    poke(wake_.w);
    std::unique_lock lock(mu_);
    released_.wait(lock, [this] { return !watching_; });
  }

 private:
  void loop();
  bool should_watch(bool& began);
  void sleep_until(Clock::time_point until);
  void watch_until(Clock::time_point until);
  void act_on_urgent();
  void release_stdin();

  Worker& worker_;
  Input& input_;
  Output& output_;
  const std::chrono::milliseconds interval_;
  const Clock::duration watch_after_;
  const Pipe wake_;
  std::mutex mu_;
  std::condition_variable released_;
  bool inline_ = false;  // a run of handlers is on the reading thread
  Clock::time_point inline_since_;
  bool unminded_ = false;   // the ticker sleeps without a run to mind: begin_inline pokes it
  uint64_t runs_ = 0;       // runs begun
  uint64_t runs_seen_ = 0;  // runs_ when the ticker last found no run
  bool watching_ = false;   // the ticker owns stdin
  size_t scanned_ = 0;      // how far into the input buffer the ticker has looked
  std::atomic<bool> stopped_{false};
  std::thread thread_;
};

class Worker {
 public:
  Worker(Handler handler, int k, std::chrono::milliseconds heartbeat, int in_fd, int out_fd)
      : handler_(std::move(handler)),
        k_(k),
        input_(in_fd),
        output_(out_fd),
        ticker_(*this, input_, output_, heartbeat,
                k > 1 ? Clock::duration(kHandOffAfter) : Clock::duration(kWatchAfter)) {}

  int serve();

  // Takes no new task from now on, and gives those in flight `grace_ms` to finish. A second
  // call keeps the first deadline.
  void begin_shutdown(int64_t grace_ms);
  void notice_sigterm();
  bool shutting_down() const { return shutdown_at_.load() != kNoDeadline; }
  Clock::time_point shutdown_at() const {
    return Clock::time_point(Clock::duration(shutdown_at_.load()));
  }
  bool shutdown_overdue() const { return Clock::now() >= shutdown_at(); }
  [[noreturn]] void force_exit();

  void on_cancel(const json& message);
  void on_shutdown(const json& message) {
    begin_shutdown(int_field(message, "grace_ms").value_or(0));
  }

  // K > 1: handler threads, beside the reading thread's runs.
  bool threaded() const { return k_ > 1; }
  // Handles the complete lines in the input buffer. REQUIRES: the caller owns stdin.
  void handle_lines();
  // The tasks waiting, and those that come until tasks are quick again, go to the handler
  // threads; the answers kept for the chunk are written now.
  void hand_off();

 private:
  struct Job {
    std::shared_ptr<Context> ctx;
    json payload;
  };

  void install_sigterm();
  void read_until_done();
  bool wait_for_input();
  void handle_buffered();
  void dispatch(json& message);
  bool done();
  bool idle();

  void on_task(json& message);
  void on_error(json& message);

  bool run_queued();
  void start_threads();
  void stop_threads();
  void serve_jobs();
  std::string answer(Context& ctx, const json& payload);
  void finish(Context& ctx, const std::string& line, Delivery delivery);

  Handler handler_;
  const int k_;
  Input input_;
  Output output_;
  Ticker ticker_;
  const Pipe wake_;
  std::atomic<Clock::rep> shutdown_at_{kNoDeadline};

  std::mutex mu_;
  std::unordered_map<int64_t, std::shared_ptr<Context>> running_;
  std::deque<Job> jobs_;  // for the reading thread's next run, or the handler threads (K > 1)
  std::condition_variable jobs_ready_;
  bool threads_on_ = false;  // the handler threads take the jobs, the reading thread none
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// Ticker

inline void Ticker::loop() {
  auto next_beat = Clock::now() + interval_;
  while (!stopped_) {
    worker_.notice_sigterm();
    auto until = std::min(next_beat, worker_.shutdown_at());
    bool began = false;
    if (should_watch(began)) {
      if (began && worker_.threaded()) worker_.hand_off();
      watch_until(until);
    } else {
      sleep_until(until);
    }
    auto now = Clock::now();
    if (now >= next_beat) {
      output_.send("{\"type\":\"heartbeat\"}\n");
      next_beat = std::max(next_beat + interval_, now);
    }
  }
}

// `began`: set when the watching begins now.
inline bool Ticker::should_watch(bool& began) {
  std::lock_guard lock(mu_);
  if (!inline_) {
    release_stdin();  // the run ended between two rounds of watching
    return false;
  }
  if (worker_.shutdown_overdue()) worker_.force_exit();  // the grace is over; it still runs
  if (!watching_ && Clock::now() - inline_since_ >= watch_after_) {
    watching_ = true;
    began = true;
    scanned_ = input_.position();
  }
  return watching_;
}

inline void Ticker::sleep_until(Clock::time_point until) {
  {
    std::lock_guard lock(mu_);
    if (inline_) {
      until = std::min(until, inline_since_ + watch_after_);
    } else if (runs_ != runs_seen_) {
      // Runs come and go: look again after watch_after_ rather than be poked for each one.
      runs_seen_ = runs_;
      until = std::min(until, Clock::now() + watch_after_);
    } else {
      unminded_ = true;
    }
  }
  pollfd fd{wake_.r, POLLIN, 0};
  ::poll(&fd, 1, poll_timeout_ms(until));
  drain(wake_.r);
  std::lock_guard lock(mu_);
  unminded_ = false;
}

inline void Ticker::watch_until(Clock::time_point until) {
  pollfd fds[2] = {{input_.fd(), POLLIN, 0}, {wake_.r, POLLIN, 0}};
  if (::poll(fds, 2, poll_timeout_ms(until)) > 0 && fds[0].revents != 0) {
    if (!input_.read() && !worker_.shutting_down()) worker_.force_exit();  // the daemon is gone
    if (worker_.threaded()) {
      worker_.handle_lines();
      input_.compact();  // the run may last long while the threads serve a stream of tasks
      worker_.hand_off();
    } else {
      act_on_urgent();
    }
  }
  drain(wake_.r);
  std::lock_guard lock(mu_);
  if (!inline_) release_stdin();
}

// REQUIRES: mu_ is held.
inline void Ticker::release_stdin() {
  if (!watching_) return;
  watching_ = false;
  released_.notify_all();
}

inline void Ticker::act_on_urgent() {
  const std::string& buf = input_.buffer();
  for (size_t end; (end = buf.find('\n', scanned_)) != std::string::npos; scanned_ = end + 1) {
    std::string_view line(buf.data() + scanned_, end - scanned_);
    // The reading thread sees every line again later; only these cannot wait for it.
    if (line.find("cancel") == line.npos && line.find("shutdown") == line.npos) continue;
    json message = json::parse(line.begin(), line.end(), nullptr, false);
    if (!message.is_object()) continue;
    if (type_of(message) == "cancel") worker_.on_cancel(message);
    if (type_of(message) == "shutdown") worker_.on_shutdown(message);
  }
}

// Worker

inline void sigterm_handler(int) {
  g_sigterm = 1;
  int reader = g_wake_fd.load();
  int ticker = g_ticker_wake_fd.load();
  if (reader >= 0) poke(reader);
  if (ticker >= 0) poke(ticker);  // the reading thread may be running tasks
}

inline int Worker::serve() {
  install_sigterm();
  output_.send(R"({"type":"hello","protocol":)" + std::to_string(kProtocol) + R"(,"concurrency":)" +
               std::to_string(k_) + "}\n");
  if (k_ > 1) start_threads();
  ticker_.start();
  read_until_done();
  ticker_.stop();
  output_.flush();
  if (!idle()) std::_Exit(0);  // a running handler cannot be joined
  stop_threads();
  ::signal(SIGTERM, SIG_DFL);
  g_wake_fd = -1;
  g_ticker_wake_fd = -1;
  return 0;
}

inline void Worker::install_sigterm() {
  g_wake_fd = wake_.w;
  g_ticker_wake_fd = ticker_.wake_fd();
  struct sigaction action = {};  // an empty sa_mask
  action.sa_handler = sigterm_handler;
  action.sa_flags = SA_RESTART;
  ::sigaction(SIGTERM, &action, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

inline void Worker::begin_shutdown(int64_t grace_ms) {
  auto grace = std::chrono::milliseconds(std::clamp<int64_t>(grace_ms, 0, kLongestGraceMs));
  auto deadline = Clock::now() + grace;
  Clock::rep none = kNoDeadline;
  shutdown_at_.compare_exchange_strong(none, deadline.time_since_epoch().count());
  poke(wake_.w);
  ticker_.poke_now();  // to mind the deadline while a handler runs inline
}

inline void Worker::notice_sigterm() {
  if (g_sigterm != 0 && !shutting_down()) begin_shutdown(kSigtermGraceMs);
}

inline void Worker::force_exit() {
  output_.flush();
  std::_Exit(0);
}

// The reading thread.

inline void Worker::read_until_done() {
  while (!done()) {
    if (!wait_for_input()) continue;
    // The daemon is gone; after a shutdown, its grace still holds.
    if (!input_.read() && !shutting_down()) return;
    handle_buffered();
    output_.flush_deferred();
  }
}

inline bool Worker::done() { return shutting_down() && (idle() || shutdown_overdue()); }

inline bool Worker::idle() {
  std::lock_guard lock(mu_);
  return running_.empty();
}

// Returns whether stdin is readable; false when woken to look at the state again.
inline bool Worker::wait_for_input() {
  notice_sigterm();
  int timeout = shutting_down() ? poll_timeout_ms(shutdown_at()) : -1;
  pollfd fds[2] = {{input_.fd(), POLLIN, 0}, {wake_.r, POLLIN, 0}};
  if (::poll(fds, 2, timeout) <= 0) return false;
  if (fds[1].revents != 0) drain(wake_.r);
  return fds[0].revents != 0;
}

inline void Worker::handle_buffered() {
  // The tasks of the lines are queued, then run. A run may leave more input behind (read by
  // the ticker): it is handled too.
  do {
    handle_lines();
  } while (run_queued());
  input_.compact();
}

inline void Worker::handle_lines() {
  while (auto line = input_.next_line()) {
    if (auto message = decode(*line)) dispatch(*message);
  }
}

inline void Worker::dispatch(json& message) {
  using Handle = void (*)(Worker&, json&);
  static constexpr std::pair<std::string_view, Handle> kTable[] = {
      {"task", [](Worker& w, json& m) { w.on_task(m); }},
      {"cancel", [](Worker& w, json& m) { w.on_cancel(m); }},
      {"shutdown", [](Worker& w, json& m) { w.on_shutdown(m); }},
      {"error", [](Worker& w, json& m) { w.on_error(m); }},
  };
  std::string_view type = type_of(message);
  for (const auto& [name, handle] : kTable) {
    if (name == type) return handle(*this, message);
  }
  // An unknown type: a newer daemon may send more.
}

inline void Worker::on_task(json& message) {
  std::optional<int64_t> task = int_field(message, "task");
  if (!task) return log("ignoring a task without an integer \"task\": " + dump(message));
  if (shutting_down()) {
    return output_.defer(fail_line(*task, "the worker is shutting down", Retry::kYes));
  }
  auto ctx = std::make_shared<Context>(*task, int_field(message, "attempt").value_or(1),
                                       int_field(message, "deadline_ms").value_or(0));
  ctx->output_ = &output_;
  json& payload = message["payload"];
  bool to_thread;
  {
    std::lock_guard lock(mu_);
    running_[*task] = ctx;
    jobs_.push_back({ctx, std::move(payload)});
    to_thread = threads_on_;
  }
  if (to_thread) jobs_ready_.notify_one();
}

inline void Worker::on_cancel(const json& message) {
  std::optional<int64_t> task = int_field(message, "task");
  if (!task) return;
  std::lock_guard lock(mu_);
  auto it = running_.find(*task);
  if (it != running_.end()) it->second->cancelled_.store(true, std::memory_order_release);
}

inline void Worker::on_error(json& message) {
  std::string line = message.contains("line") ? " (line: " + dump(message["line"]) + ")" : "";
  log("the daemon could not read a line of ours: " + dump(message.value("error", json())) + line);
}

// Running handlers.

// Runs the queued tasks one after another on the reading thread, until none is left or the
// ticker has handed them to the threads. Returns whether it ran any.
inline bool Worker::run_queued() {
  bool ran = false;
  for (;;) {
    Job job;
    {
      std::lock_guard lock(mu_);
      if (threads_on_ || jobs_.empty()) break;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    if (!ran) ticker_.begin_inline();
    ran = true;
    finish(*job.ctx, answer(*job.ctx, job.payload), Delivery::kWithChunk);
  }
  if (ran) ticker_.end_inline();
  return ran;
}

inline void Worker::hand_off() {
  bool was_on;
  {
    std::lock_guard lock(mu_);
    was_on = threads_on_;
    threads_on_ = true;
  }
  // After the flag: an answer deferred from now on is the reading thread's last of its run
  // (it takes no other job), and goes out when the run ends.
  output_.flush_deferred();
  // While the flag was on, each job queued woke a thread of its own (on_task).
  if (!was_on) jobs_ready_.notify_all();
}

inline void Worker::start_threads() {
  for (int i = 0; i < k_; ++i) threads_.emplace_back([this] { serve_jobs(); });
}

inline void Worker::stop_threads() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  jobs_ready_.notify_all();
  for (auto& thread : threads_) thread.join();
}

inline void Worker::serve_jobs() {
  bool quick = false;
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      if (quick && jobs_.empty()) threads_on_ = false;  // the reading thread runs them again
      jobs_ready_.wait(lock, [this] { return stopping_ || (threads_on_ && !jobs_.empty()); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    auto started = Clock::now();
    std::string line = answer(*job.ctx, job.payload);
    quick = Clock::now() - started < kQuick;
    finish(*job.ctx, line, Delivery::kNow);
  }
}

// Runs the handler; returns the line that answers the task.
inline std::string Worker::answer(Context& ctx, const json& payload) {
  json result;
  try {
    result = handler_(payload, ctx);
  } catch (const Permanent& e) {
    return fail_line(ctx.task, e.what(), Retry::kNo);
  } catch (const std::exception& e) {
    log("task " + std::to_string(ctx.task) + " failed: " + e.what());
    return fail_line(ctx.task, e.what(), Retry::kYes);
  } catch (...) {
    log("task " + std::to_string(ctx.task) + " failed: an exception that is not a std::exception");
    return fail_line(ctx.task, "unknown exception", Retry::kYes);
  }
  if (ctx.cancelled()) return fail_line(ctx.task, "cancelled", Retry::kYes);
  return done_line(ctx.task, result);
}

inline void Worker::finish(Context& ctx, const std::string& line, Delivery delivery) {
  ctx.finished_.store(true);  // no progress heartbeat after the answer
  // Sent before the task leaves running_, so that a shutdown cannot lose it.
  if (delivery == Delivery::kNow) {
    output_.send(line);
  } else {
    output_.defer(line);
  }
  bool now_idle;
  {
    std::lock_guard lock(mu_);
    auto it = running_.find(ctx.task);
    if (it != running_.end() && it->second.get() == &ctx) running_.erase(it);
    now_idle = running_.empty();
  }
  if (now_idle && shutting_down()) poke(wake_.w);
}

// Returns private copies of stdin and stdout. Descriptor 0 becomes /dev/null and 1 a copy of
// stderr, so that handlers and their children can neither read the daemon's messages nor write
// into the protocol.
inline std::optional<std::pair<int, int>> take_stdio() {
  std::fflush(nullptr);
  int in_fd = ::fcntl(0, F_DUPFD_CLOEXEC, 3);
  int out_fd = ::fcntl(1, F_DUPFD_CLOEXEC, 3);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (in_fd < 0 || out_fd < 0 || null_fd < 0 || ::dup2(null_fd, 0) < 0 || ::dup2(2, 1) < 0) {
    return std::nullopt;
  }
  ::close(null_fd);
  std::setvbuf(stdout, nullptr, _IOLBF, BUFSIZ);  // a printf shows in the log line by line
  return std::pair{in_fd, out_fd};
}

inline std::optional<int> concurrency(int requested) {
  std::optional<int> limit = env_int("ROTA_CONCURRENCY");
  if (requested < 0) return std::nullopt;
  if (requested == 0) return limit.value_or(1);
  return limit ? std::min(requested, *limit) : requested;
}

}  // namespace detail

inline void Context::progress(double fraction, std::string_view message) const {
  if (output_ == nullptr || finished_.load()) return;
  std::string line = R"({"type":"heartbeat","task":)" + std::to_string(task) + R"(,"progress":)" +
                     detail::dump(std::clamp(fraction, 0.0, 1.0));
  if (!message.empty()) line += R"(,"message":)" + detail::dump(nlohmann::json(message));
  output_->send(line + "}\n");
}

inline int run(Handler handler, Options options) {
  std::optional<int> k = detail::concurrency(options.concurrency);
  if (!k) {
    detail::log("Options::concurrency must be 0 (the default) or more");
    return 2;
  }
  auto stdio = detail::take_stdio();
  if (!stdio) {
    detail::log("cannot take over stdin and stdout");
    return 2;
  }
  auto heartbeat = std::chrono::milliseconds(detail::env_int("ROTA_HEARTBEAT_MS").value_or(1000));
  detail::Worker worker(std::move(handler), *k, heartbeat, stdio->first, stdio->second);
  return worker.serve();
}

}  // namespace rota
