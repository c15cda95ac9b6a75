// The worker rota_worker_test drives: `payload["op"]` says what the handler does.
// Usage: echo_worker [CONCURRENCY]   (absent: Options::concurrency stays 0)
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "rota_worker.h"

namespace {

using nlohmann::json;

constexpr auto kGuard = std::chrono::seconds(20);  // a handler that waits this long has failed

// Says "started", then waits until the test writes to the FIFO payload["fifo"]. The FIFO is
// opened read-write first, so that the test's writer never waits for a reader.
json block(const json& payload, rota::Context& ctx) {
  int fd = ::open(payload.at("fifo").get<std::string>().c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open the FIFO");
  ctx.progress(0, "started");
  char text[64];
  ssize_t n = ::read(fd, text, sizeof text);
  ::close(fd);
  return {{"released", std::string(text, static_cast<size_t>(std::max<ssize_t>(n, 0)))}};
}

json wait_cancel(const json& payload, rota::Context& ctx) {
  ctx.progress(0, "started");
  auto give_up = std::chrono::steady_clock::now() + kGuard;
  while (!ctx.cancelled()) {
    if (std::chrono::steady_clock::now() > give_up) return "never cancelled";
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (payload.value("then", "") == "return") return "finished anyway";
  throw std::runtime_error("saw the cancel");
}

// Passes once `parties` handlers are in it at the same time.
json barrier(const json& payload, rota::Context&) {
  static std::mutex mu;
  static std::condition_variable all_in;
  static std::map<int, int> arrived;
  int parties = payload.at("parties").get<int>();
  std::unique_lock lock(mu);
  ++arrived[parties];
  all_in.notify_all();
  if (!all_in.wait_for(lock, kGuard, [&] { return arrived[parties] >= parties; })) {
    throw std::runtime_error("the barrier was never full");
  }
  return "met";
}

json print(const json&, rota::Context&) {
  std::cout << "written to std::cout" << std::endl;
  std::printf("written by printf\n");
  if (std::system("echo echoed by a child") != 0) throw std::runtime_error("system failed");
  return "printed";
}

json context(const json&, rota::Context& ctx) {
  ctx.progress(0.5, "halfway");
  return {{"task", ctx.task}, {"attempt", ctx.attempt}, {"deadline_ms", ctx.deadline_ms}};
}

json handle(const json& payload, rota::Context& ctx) {
  std::string op = payload.at("op").get<std::string>();
  if (op == "echo") return payload.value("value", json());
  if (op == "raise") throw std::runtime_error(payload.at("message").get<std::string>());
  if (op == "permanent") throw rota::Permanent(payload.at("message").get<std::string>());
  if (op == "throw_int") throw 42;
  if (op == "block") return block(payload, ctx);
  if (op == "wait_cancel") return wait_cancel(payload, ctx);
  if (op == "barrier") return barrier(payload, ctx);
  if (op == "print") return print(payload, ctx);
  if (op == "context") return context(payload, ctx);
  throw rota::Permanent("unknown op " + op);
}

}  // namespace

int main(int argc, char** argv) {
  int concurrency = argc > 1 ? std::atoi(argv[1]) : 0;
  return rota::run(handle, {.concurrency = concurrency});
}
