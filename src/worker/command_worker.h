// `rota worker`: the built-in worker of the `commands` pool. It speaks the worker protocol on
// a socketpair to the daemon and runs one command task at a time.
#pragma once

#include <cstdint>
#include <string>

namespace rota {

struct WorkerOptions {
  int fd = 3;  // the socketpair end inherited from the daemon
  int64_t id = 0;
  int64_t heartbeat_ms = 1000;
  std::string reattach_socket;  // $ROTA_HOME/worker.sock
};

// Runs until the daemon sends shutdown, or goes away while the worker is idle. When the daemon
// goes away during a task, the task runs on (under its timeout) and the worker reconnects to
// `reattach_socket` every 100 ms, presenting its id and attempt token, and then delivers the
// result it kept. Returns the exit code.
int run_command_worker(const WorkerOptions& options);

}  // namespace rota
