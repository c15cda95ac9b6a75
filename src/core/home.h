// The files of one rota instance, all under its home directory.
#pragma once

#include <string>

namespace rota {

struct Home {
  std::string dir;
  std::string socket;         // rota.sock: the API
  std::string store;          // rota.db: the SQLite store
  std::string logs;           // logs/<task id>.log
  std::string lock;           // rota.lock: held by the running daemon
  std::string daemon_log;     // daemon.log: the daemon's own log when started in the background
  std::string worker_socket;  // worker.sock: where workers reattach after a daemon restart
};

// `flag` if given, else $ROTA_HOME, else $XDG_DATA_HOME/rota, else ~/.local/share/rota.
std::string resolve_home_dir(const std::string& flag);

// The path of the running rota binary (for the daemon, workers and a task's helpers).
std::string self_exe();
Home home_at(const std::string& dir);

}  // namespace rota
