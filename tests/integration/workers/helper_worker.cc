// A pool worker built on the C++ helper (clients/cpp/rota_worker.h), for test_helpers.py,
// which compiles it: g++ -std=c++20 -O1 -I clients/cpp helper_worker.cc -pthread.
// The same ops as helper_worker.py (which describes them); keep the three workers in step.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#include "rota_worker.h"

namespace {

using nlohmann::json;

constexpr auto kGuard = std::chrono::seconds(30);  // a handler that waits this long has failed

void note(const json& payload, const rota::Context& ctx) {
  const char* log = std::getenv("RUN_LOG");
  if (log == nullptr || *log == '\0') return;
  std::string line = std::to_string(ctx.task) + " " + std::to_string(ctx.attempt) + " " +
                     std::to_string(::getpid()) + " " + payload.at("op").get<std::string>() + "\n";
  int fd = ::open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot open RUN_LOG");
  (void)!::write(fd, line.data(), line.size());
  ::close(fd);
}

json echo(const json& payload, const rota::Context& ctx) {
  return {{"value", payload.value("value", json())},
          {"task", ctx.task},
          {"attempt", ctx.attempt},
          {"pid", ::getpid()}};
}

json handle(const json& payload, rota::Context& ctx) {
  note(payload, ctx);
  std::string op = payload.at("op").get<std::string>();
  if (op == "echo") return echo(payload, ctx);
  if (op == "none") return nullptr;
  if (op == "fail_until") {
    if (ctx.attempt <= payload.at("n").get<int64_t>()) {
      throw std::runtime_error("attempt " + std::to_string(ctx.attempt) + " fails");
    }
    return echo(payload, ctx);
  }
  if (op == "permanent") throw rota::Permanent(payload.at("message").get<std::string>());
  if (op == "stop") {
    if (ctx.attempt == 1) ::kill(::getpid(), SIGSTOP);
    return echo(payload, ctx);
  }
  if (op == "crash") std::_Exit(3);
  if (op == "gate") {
    std::string gate = payload.at("gate").get<std::string>();
    auto give_up = std::chrono::steady_clock::now() + kGuard;
    struct stat st;
    while (::stat(gate.c_str(), &st) != 0) {
      if (std::chrono::steady_clock::now() > give_up) {
        throw std::runtime_error("the gate never opened");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return echo(payload, ctx);
  }
  throw rota::Permanent("unknown op " + op);
}

}  // namespace

int main() { return rota::run(handle); }
