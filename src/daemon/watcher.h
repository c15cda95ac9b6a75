// File triggers (rota watch): a task is queued when files under a directory change, once per
// debounced burst, with the changed paths in ROTA_CHANGED. One inotify descriptor on the event
// loop for every watch (no threads), and a periodic rescan for what inotify misses (a queue
// overflow, network filesystems).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <unordered_map>

#include "core/clock.h"
#include "daemon/committer.h"
#include "daemon/engine.h"
#include "store/store.h"

namespace rota {

struct WatchDef {
  std::string path;  // an absolute directory, watched with its subdirectories
  std::string glob;  // matched against the path relative to `path` ("*.py", "src/*.c"); empty: all
  int64_t debounce_ms = 500;
  int64_t rescan_ms = 30'000;
  nlohmann::json task = nlohmann::json::object();  // the task template, as POST /v1/tasks takes it
};

nlohmann::json watch_def_to_json(const WatchDef& def);
Result<WatchDef> watch_def_from_json(const nlohmann::json& j);
// Whether `relative` (a path under the watched directory) matches `glob`: a pattern without a
// slash matches the file name at any depth, one with a slash the whole relative path.
bool watch_matches(const std::string& glob, const std::string& relative);

class Watcher {
 public:
  Watcher(boost::asio::io_context& io, Store& store, Committer& committer, Engine& engine,
          const Clock& clock);
  ~Watcher();

  Status recover();
  Result<nlohmann::json> add(const std::string& name, const nlohmann::json& definition);
  nlohmann::json list() const;
  Status remove(const std::string& name);

 private:
  struct Snapshot {
    int64_t mtime_ns = 0;
    int64_t size = 0;
  };
  struct Live {
    std::string name;
    WatchDef def;
    int64_t created_at_ms = 0;
    std::set<std::string> changed;  // absolute paths since the last firing
    int64_t burst_started_ms = 0;
    std::unique_ptr<boost::asio::steady_timer> debounce;
    std::unique_ptr<boost::asio::steady_timer> rescan;
    std::map<std::string, Snapshot> files;  // as of the last scan: what a rescan compares
    int64_t fired = 0;
  };

  Status start(Live& w);
  void stop(Live& w);
  // Watches `dir` and its subdirectories; with `report_files`, their files count as changed.
  void add_tree(Live& w, const std::string& dir, bool report_files);
  void read_events();
  void on_change(Live& w, const std::string& path);
  void on_debounce(const std::string& name);
  void schedule_rescan(Live& w);
  void rescan(Live& w);
  std::map<std::string, Snapshot> scan(const Live& w) const;

  boost::asio::io_context& io_;
  Store& store_;
  Committer& committer_;
  Engine& engine_;
  const Clock& clock_;
  int fd_ = -1;
  std::unique_ptr<boost::asio::posix::stream_descriptor> stream_;
  std::map<std::string, Live> watches_;
  std::unordered_map<int, std::pair<std::string, std::string>> dirs_;  // wd -> (watch, dir)
};

}  // namespace rota
