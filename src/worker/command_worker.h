// `rota worker`: the built-in worker of the `commands` pool. It speaks the worker protocol on
// a socketpair to the daemon and runs one command task at a time.
#pragma once

#include <cstdint>

namespace rota {

struct WorkerOptions {
  int fd = 3;  // the socketpair end inherited from the daemon
  int64_t id = 0;
  int64_t heartbeat_ms = 1000;
};

// Runs until the daemon sends shutdown or goes away. When the daemon goes away the running
// task's process group is killed, so that no task runs unsupervised. Returns the exit code.
int run_command_worker(const WorkerOptions& options);

}  // namespace rota
