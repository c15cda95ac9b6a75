// The rota side of bench/peers/run.py, in C++: a user-pool worker whose handler does nothing (the
// task is done without a result), written with the C++ helper clients/cpp/rota_worker.h.
// run.py compiles it at run time into its temporary directory:
//   g++ -std=c++20 -O2 -I clients/cpp bench/peers/rota_noop.cc -o NOOP -pthread
// Concurrency: the helper's default, $ROTA_CONCURRENCY (the pool's --concurrency).
#include "rota_worker.h"

int main() {
  return rota::run([](const nlohmann::json&, rota::Context&) -> nlohmann::json { return nullptr; });
}
