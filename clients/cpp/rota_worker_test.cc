// rota_worker.h, black-box: each test starts testdata/echo_worker and plays the daemon over its
// stdin and stdout, which are socketpairs (as the daemon makes them) or pipes. Waits are on lines
// and exits, with a timeout only as a guard against a hang.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#ifndef ROTA_ECHO_WORKER
#error "define ROTA_ECHO_WORKER as the path of the echo_worker binary"
#endif

extern char** environ;

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr auto kGuard = std::chrono::seconds(20);  // a wait this long has failed
constexpr int64_t kAYearMs = 365LL * 86'400'000;   // the grace of a pool's shrinking shutdown

enum class Transport { kSocketpair, kPipe };

// A pair of connected descriptors, close-on-exec: [0] reads what [1] writes.
void connect(Transport transport, int (&fds)[2]) {
  int rc = transport == Transport::kPipe
               ? ::pipe2(fds, O_CLOEXEC)
               : ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds);
  if (rc != 0) std::abort();
}

std::vector<std::string> worker_environment(const std::map<std::string, std::string>& env) {
  std::map<std::string, std::string> all = {{"ROTA_HEARTBEAT_MS", "100"}};
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    size_t eq = text.find('=');
    if (eq == text.npos || text.starts_with("ROTA_")) continue;
    all.emplace(std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)));
  }
  for (const auto& [name, value] : env) all[name] = value;
  std::vector<std::string> result;
  for (const auto& [name, value] : all) result.push_back(name + "=" + value);
  return result;
}

// A running echo_worker, once it has said hello, and the daemon's end of its pipes.
class Worker {
 public:
  explicit Worker(int concurrency = 0, const std::map<std::string, std::string>& env = {},
                  Transport transport = Transport::kSocketpair) {
    ::signal(SIGPIPE, SIG_IGN);  // the worker may be gone when a test writes to it
    dir_ = std::filesystem::temp_directory_path() /
           ("rota-worker-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    std::filesystem::create_directories(dir_);
    int in[2], out[2];
    connect(transport, in);
    connect(transport, out);
    spawn(concurrency, env, in[0], out[1]);
    ::close(in[0]);
    ::close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
    hello_ = expect("hello", json::object(), {});
  }
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  ~Worker() {
    if (!exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (stdin_ >= 0) ::close(stdin_);
    ::close(stdout_);
    std::filesystem::remove_all(dir_);
  }

  void send_raw(std::string_view text) {
    while (!text.empty()) {
      ssize_t n = ::write(stdin_, text.data(), text.size());
      if (n <= 0) {
        ADD_FAILURE() << "cannot write to the worker";
        return;
      }
      text.remove_prefix(static_cast<size_t>(n));
    }
  }

  void send(const json& message) { send_raw(message.dump() + "\n"); }

  void task(int64_t task, const json& payload, const json& fields = json::object()) {
    json message = {{"type", "task"}, {"task", task}, {"attempt", 1}, {"deadline_ms", 0}};
    message["payload"] = payload;
    message.update(fields);
    send(message);
  }

  // The next message not of a type in `skip`, after checking its type and `fields`; an empty
  // object (and a failure) if none comes.
  json expect(std::string_view type, const json& fields = json::object(),
              const std::set<std::string>& skip = {"heartbeat"}) {
    auto deadline = Clock::now() + kGuard;
    for (;;) {
      std::optional<json> message = next(deadline);
      if (!message) {
        ADD_FAILURE() << "no " << type << " from the worker";
        return json::object();
      }
      std::string got = message->value("type", "");
      if (skip.contains(got)) continue;
      EXPECT_EQ(got, type) << message->dump();
      for (const auto& [name, value] : fields.items()) {
        EXPECT_EQ(message->value(name, json()), value) << message->dump();
      }
      return *message;
    }
  }

  void expect_started(int64_t task) {
    expect("heartbeat", {{"task", task}, {"message", "started"}}, {});
  }

  // Every message until the worker closes stdout, heartbeats left out.
  std::vector<json> rest() {
    std::vector<json> messages;
    auto deadline = Clock::now() + kGuard;
    while (std::optional<json> message = next(deadline)) {
      if ((*message)["type"] != "heartbeat") messages.push_back(*message);
    }
    EXPECT_TRUE(closed_) << "the worker did not close its stdout";
    return messages;
  }

  void close_stdin() {
    ::close(stdin_);
    stdin_ = -1;
  }

  // The exit code, once the worker has closed stdout and exited; -1 if it did not.
  int exit_code() {
    rest();
    if (!closed_) return -1;
    int status = 0;
    ::waitpid(pid_, &status, 0);
    exited_ = true;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  void signal(int number) { ::kill(pid_, number); }

  std::string stderr_text() const {
    std::ifstream file(dir_ / "stderr.log");
    std::stringstream text;
    text << file.rdbuf();
    return text.str();
  }

  const json& hello() const { return hello_; }
  const std::vector<std::string>& raw_lines() const { return raw_lines_; }
  const std::filesystem::path& dir() const { return dir_; }

 private:
  void spawn(int concurrency, const std::map<std::string, std::string>& env, int in, int out) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in, 0);
    posix_spawn_file_actions_adddup2(&actions, out, 1);
    std::string stderr_path = dir_ / "stderr.log";
    posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    std::vector<std::string> args = {ROTA_ECHO_WORKER};
    if (concurrency != 0) args.push_back(std::to_string(concurrency));
    std::vector<std::string> envs = worker_environment(env);
    std::vector<char*> argv, envp;
    for (auto& arg : args) argv.push_back(arg.data());
    for (auto& e : envs) envp.push_back(e.data());
    argv.push_back(nullptr);
    envp.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data()) != 0) {
      std::abort();
    }
    posix_spawn_file_actions_destroy(&actions);
  }

  // The next message, or nullopt once stdout is closed or at `deadline`.
  std::optional<json> next(Clock::time_point deadline) {
    for (;;) {
      size_t end = buffer_.find('\n');
      if (end != std::string::npos) {
        std::string line = buffer_.substr(0, end);
        buffer_.erase(0, end + 1);
        raw_lines_.push_back(line);
        return json::parse(line);
      }
      if (closed_ || !read_some(deadline)) return std::nullopt;
    }
  }

  bool read_some(Clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd fd{stdout_, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&fd, 1, static_cast<int>(left.count())) <= 0) return false;
    char chunk[65536];
    ssize_t n = ::read(stdout_, chunk, sizeof chunk);
    if (n <= 0) {
      closed_ = true;
      return false;
    }
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }

  static inline int counter_ = 0;
  std::filesystem::path dir_;
  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
  bool closed_ = false;
  bool exited_ = false;
  std::string buffer_;
  std::vector<std::string> raw_lines_;
  json hello_;
};

// A FIFO a `block` handler waits on until the test releases it.
class Fifo {
 public:
  explicit Fifo(const std::filesystem::path& dir) : path_(dir / "release") {
    if (::mkfifo(path_.c_str(), 0600) != 0) ADD_FAILURE() << "mkfifo";
  }
  json payload() const { return {{"op", "block"}, {"fifo", path_.string()}}; }

  // REQUIRES: the handler has said "started" (it holds the FIFO open).
  void release() const {
    int fd = ::open(path_.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    ASSERT_GE(fd, 0) << "the handler does not hold the FIFO open";
    EXPECT_EQ(::write(fd, "go", 2), 2);
    ::close(fd);
  }

 private:
  std::filesystem::path path_;
};

// hello

struct HelloCase {
  std::map<std::string, std::string> env;
  int option;
  int expected;
};

class HelloTest : public testing::TestWithParam<HelloCase> {};

// hello says protocol 1, and a concurrency never above $ROTA_CONCURRENCY.
TEST_P(HelloTest, SaysProtocolOneAndTheConcurrency) {
  Worker worker(GetParam().option, GetParam().env);
  EXPECT_EQ(worker.hello(),
            (json{{"type", "hello"}, {"protocol", 1}, {"concurrency", GetParam().expected}}));
}

INSTANTIATE_TEST_SUITE_P(Cases, HelloTest,
                         testing::Values(HelloCase{{}, 0, 1},
                                         HelloCase{{{"ROTA_CONCURRENCY", "3"}}, 0, 3},
                                         HelloCase{{}, 4, 4},
                                         HelloCase{{{"ROTA_CONCURRENCY", "5"}}, 2, 2},
                                         HelloCase{{{"ROTA_CONCURRENCY", "1"}}, 4, 1}));

// Each test of RotaWorkerK runs with K = 1 (the handler inline on the reading thread) and with
// K = 2 (handler threads), over socketpairs and over pipes.
class RotaWorkerK : public testing::TestWithParam<std::tuple<int, Transport>> {
 protected:
  int k() const { return std::get<0>(GetParam()); }
  Transport transport() const { return std::get<1>(GetParam()); }
};

INSTANTIATE_TEST_SUITE_P(K, RotaWorkerK,
                         testing::Combine(testing::Values(1, 2),
                                          testing::Values(Transport::kSocketpair,
                                                          Transport::kPipe)));

// A returned value is the result of done; null is done without a result.
TEST_P(RotaWorkerK, ReturnedValueIsTheResultOfDone) {
  Worker worker(k(), {}, transport());
  worker.task(7, {{"op", "echo"}, {"value", {{"words", 3}}}});
  worker.expect("done", {{"task", 7}, {"result", {{"words", 3}}}});
  worker.task(8, {{"op", "echo"}});
  EXPECT_FALSE(worker.expect("done", {{"task", 8}}).contains("result"));
}

// An exception is a retryable fail with its message; a Permanent one is not retryable.
TEST_P(RotaWorkerK, ExceptionsAreFails) {
  Worker worker(k(), {}, transport());
  worker.task(1, {{"op", "raise"}, {"message", "boom"}});
  worker.expect("fail", {{"task", 1}, {"error", "boom"}, {"retryable", true}});
  worker.task(2, {{"op", "permanent"}, {"message", "bad input"}});
  worker.expect("fail", {{"task", 2}, {"error", "bad input"}, {"retryable", false}});
  worker.task(3, {{"op", "throw_int"}});
  worker.expect("fail", {{"task", 3}, {"error", "unknown exception"}, {"retryable", true}});
}

// The context has the attempt, and progress() sends a heartbeat for the task.
TEST(RotaWorker, ContextHasTheAttemptAndReportsProgress) {
  Worker worker;
  worker.task(11, {{"op", "context"}}, {{"attempt", 3}, {"deadline_ms", 1234}});
  worker.expect("heartbeat", {{"task", 11}, {"progress", 0.5}, {"message", "halfway"}}, {});
  worker.expect("done",
                {{"task", 11}, {"result", {{"task", 11}, {"attempt", 3}, {"deadline_ms", 1234}}}});
}

// Every task of a large burst (many lines per read) is answered once.
TEST_P(RotaWorkerK, EveryTaskOfALargeBurstIsAnswered) {
  Worker worker(k(), {}, transport());
  constexpr int kTasks = 1000;  // the answers fit in a pipe: this test reads only after writing
  std::string burst;
  for (int i = 0; i < kTasks; ++i) {
    burst +=
        json{{"type", "task"}, {"task", i}, {"payload", {{"op", "echo"}, {"value", i}}}}.dump();
    burst += "\n";
  }
  worker.send_raw(burst);
  std::vector<int> answered;
  for (int i = 0; i < kTasks; ++i) {
    json done = worker.expect("done");
    EXPECT_EQ(done["result"], done["task"]);
    answered.push_back(done.value("task", -1));
  }
  if (k() == 1) {
    EXPECT_TRUE(std::is_sorted(answered.begin(), answered.end()));
  }
  std::sort(answered.begin(), answered.end());
  for (int i = 0; i < kTasks; ++i) ASSERT_EQ(answered[i], i);
}

// K handlers run at once: each waits at a barrier of three, which they can only pass together.
TEST(RotaWorker, KHandlersRunAtOnce) {
  Worker worker(3);
  for (int task : {1, 2, 3}) worker.task(task, {{"op", "barrier"}, {"parties", 3}});
  std::set<int64_t> done;
  for (int i = 0; i < 3; ++i)
    done.insert(worker.expect("done", {{"result", "met"}}).value("task", 0));
  EXPECT_EQ(done, (std::set<int64_t>{1, 2, 3}));
}

// Heartbeats go on while a handler runs.
TEST_P(RotaWorkerK, HeartbeatsGoOnWhileAHandlerRuns) {
  Worker worker(k(), {{"ROTA_HEARTBEAT_MS", "50"}}, transport());
  Fifo fifo(worker.dir());
  worker.task(1, fifo.payload());
  worker.expect_started(1);
  worker.expect("heartbeat", json::object(), {});
  worker.expect("heartbeat", json::object(), {});
  fifo.release();
  worker.expect("done", {{"task", 1}, {"result", {{"released", "go"}}}});
}

// cancel sets the flag of its task.
TEST_P(RotaWorkerK, CancelSetsTheFlag) {
  Worker worker(k(), {}, transport());
  worker.task(1, {{"op", "wait_cancel"}});
  worker.expect_started(1);
  worker.send({{"type", "cancel"}, {"task", 1}});
  worker.expect("fail", {{"task", 1}, {"error", "saw the cancel"}, {"retryable", true}});
}

// A handler that returns after a cancel fails as cancelled.
TEST(RotaWorker, ReturningAfterACancelFailsAsCancelled) {
  Worker worker;
  worker.task(1, {{"op", "wait_cancel"}, {"then", "return"}});
  worker.expect_started(1);
  worker.send({{"type", "cancel"}, {"task", 1}});
  worker.expect("fail", {{"task", 1}, {"error", "cancelled"}, {"retryable", true}});
}

// A cancel for another task changes nothing.
TEST(RotaWorker, ACancelForAnotherTaskIsIgnored) {
  Worker worker;
  Fifo fifo(worker.dir());
  worker.task(1, fifo.payload());
  worker.expect_started(1);
  worker.send({{"type", "cancel"}, {"task", 99}});
  fifo.release();
  worker.expect("done", {{"task", 1}});
}

// shutdown waits for the tasks in flight, refuses new ones, then exits 0.
TEST_P(RotaWorkerK, ShutdownWaitsForTheTasksInFlight) {
  Worker worker(k(), {}, transport());
  Fifo fifo(worker.dir());
  worker.task(1, fifo.payload());
  worker.expect_started(1);
  worker.send({{"type", "shutdown"}, {"grace_ms", kAYearMs}});
  worker.task(2, {{"op", "echo"}, {"value", 2}});
  fifo.release();
  std::map<int64_t, json> answers;
  for (const json& message : worker.rest()) answers[message.value("task", 0)] = message;
  EXPECT_EQ(answers[1]["type"], "done");
  EXPECT_EQ(answers[2]["type"], "fail");
  EXPECT_EQ(worker.exit_code(), 0);
}

// The end of stdin after a shutdown does not cut its grace short.
TEST_P(RotaWorkerK, TheEndOfStdinAfterAShutdownKeepsItsGrace) {
  Worker worker(k(), {}, transport());
  Fifo fifo(worker.dir());
  worker.task(1, fifo.payload());
  worker.expect_started(1);
  worker.send({{"type", "shutdown"}, {"grace_ms", 60000}});
  worker.close_stdin();
  fifo.release();
  worker.expect("done", {{"task", 1}});
  EXPECT_EQ(worker.exit_code(), 0);
}

// shutdown exits 0 when the grace ends, handler or not.
TEST_P(RotaWorkerK, ShutdownExitsWhenTheGraceEnds) {
  Worker worker(k(), {}, transport());
  Fifo fifo(worker.dir());
  worker.task(1, fifo.payload());
  worker.expect_started(1);
  worker.send({{"type", "shutdown"}, {"grace_ms", 50}});
  EXPECT_EQ(worker.exit_code(), 0);
  for (const std::string& line : worker.raw_lines()) EXPECT_EQ(line.find("done"), line.npos);
}

// shutdown, SIGTERM and the end of stdin make an idle worker exit 0 at once.
TEST(RotaWorker, IdleWorkerExitsOnShutdownSigtermOrEndOfFile) {
  Worker by_shutdown, by_sigterm, by_eof;
  by_shutdown.send({{"type", "shutdown"}, {"grace_ms", 60000}});
  by_sigterm.signal(SIGTERM);
  by_eof.close_stdin();
  EXPECT_EQ(by_shutdown.exit_code(), 0);
  EXPECT_EQ(by_sigterm.exit_code(), 0);
  EXPECT_EQ(by_eof.exit_code(), 0);
}

// The end of stdin exits 0 even with a handler running.
TEST_P(RotaWorkerK, EndOfStdinExitsWithAHandlerRunning) {
  Worker worker(k(), {}, transport());
  Fifo fifo(worker.dir());
  worker.task(1, fifo.payload());
  worker.expect_started(1);
  worker.close_stdin();
  EXPECT_EQ(worker.exit_code(), 0);
}

// SIGTERM is a shutdown: the task in flight finishes, then the worker exits 0.
TEST_P(RotaWorkerK, SigtermIsAShutdown) {
  Worker worker(k(), {}, transport());
  Fifo fifo(worker.dir());
  worker.task(1, fifo.payload());
  worker.expect_started(1);
  worker.signal(SIGTERM);
  fifo.release();
  worker.expect("done", {{"task", 1}});
  EXPECT_EQ(worker.exit_code(), 0);
}

// An error from the daemon goes to stderr, and the worker goes on.
TEST(RotaWorker, AnErrorFromTheDaemonGoesToStderr) {
  Worker worker;
  worker.send({{"type", "error"}, {"error", "malformed JSON"}, {"line", "{oops"}});
  worker.task(1, {{"op", "echo"}, {"value", 1}});
  worker.expect("done", {{"task", 1}});
  worker.close_stdin();
  EXPECT_EQ(worker.exit_code(), 0);
  EXPECT_NE(worker.stderr_text().find("malformed JSON"), std::string::npos);
}

// Unknown types, unknown fields and lines that are not JSON objects are ignored.
TEST(RotaWorker, UnknownTypesFieldsAndLinesAreIgnored) {
  Worker worker;
  worker.send_raw("not json\n[1,2]\n\n");
  worker.send({{"type", "from_the_future"}, {"x", 1}});
  worker.task(1, {{"op", "echo"}, {"value", 1}}, {{"token", "t"}, {"extra", {{"a", 1}}}});
  worker.expect("done", {{"task", 1}, {"result", 1}});
}

// std::cout, printf and child processes in a handler write to stderr, not into the protocol.
TEST(RotaWorker, PrintingGoesToStderr) {
  Worker worker;
  worker.task(1, {{"op", "print"}});
  worker.expect("done", {{"task", 1}, {"result", "printed"}});
  worker.close_stdin();
  EXPECT_EQ(worker.exit_code(), 0);
  for (const std::string& line : worker.raw_lines()) EXPECT_TRUE(line.starts_with("{")) << line;
  std::string stderr_text = worker.stderr_text();
  EXPECT_NE(stderr_text.find("written to std::cout"), std::string::npos);
  EXPECT_NE(stderr_text.find("written by printf"), std::string::npos);
  EXPECT_NE(stderr_text.find("echoed by a child"), std::string::npos);
}

}  // namespace
