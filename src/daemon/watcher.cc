#include "daemon/watcher.h"

#include <fmt/format.h>
#include <fnmatch.h>
#include <spdlog/spdlog.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <filesystem>

#include "api/task_json.h"
#include "core/duration.h"
#include "daemon/schedule.h"

namespace rota {
namespace asio = boost::asio;
namespace fs = std::filesystem;
using nlohmann::json;

#define TRY(expr) \
  if (auto r_ = (expr); !r_) return std::unexpected(r_.error())

namespace {

constexpr uint32_t kMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |
                           IN_ATTRIB | IN_DONT_FOLLOW | IN_ONLYDIR;
// A burst that never pauses still fires after this many debounce periods.
constexpr int64_t kMaxBurstPeriods = 20;

Error invalid(std::string message, std::string field) {
  return Error{Code::kInvalidArgument, std::move(message), std::move(field)};
}

Error not_found(const std::string& name) {
  return Error{Code::kNotFound, fmt::format("no watch named \"{}\"", name), "name"};
}

}  // namespace

json watch_def_to_json(const WatchDef& d) {
  json j = {{"path", d.path},
            {"debounce_ms", d.debounce_ms},
            {"rescan_ms", d.rescan_ms},
            {"task", d.task}};
  if (!d.glob.empty()) j["glob"] = d.glob;
  return j;
}

Result<WatchDef> watch_def_from_json(const json& j) {
  if (!j.is_object()) return std::unexpected(invalid("a watch must be a JSON object", ""));
  WatchDef d;
  try {
    for (const auto& [key, v] : j.items()) {
      if (key == "path") {
        d.path = v.get<std::string>();
      } else if (key == "glob") {
        d.glob = v.get<std::string>();
      } else if (key == "debounce_ms" || key == "rescan_ms") {
        (key == "debounce_ms" ? d.debounce_ms : d.rescan_ms) = v.get<int64_t>();
      } else if (key == "task") {
        d.task = v;
      } else {
        return std::unexpected(invalid(fmt::format("{}: unknown field", key), key));
      }
    }
  } catch (const json::exception&) {
    return std::unexpected(invalid("a watch field has the wrong type", ""));
  }
  if (d.path.empty() || d.path.front() != '/') {
    return std::unexpected(invalid("--path: give the directory to watch", "path"));
  }
  std::error_code ec;
  if (!fs::is_directory(d.path, ec)) {
    return std::unexpected(invalid(fmt::format("--path: {} is not a directory", d.path), "path"));
  }
  if (d.debounce_ms < 0 || d.debounce_ms > 3'600'000) {
    return std::unexpected(invalid("--debounce: between 0 and 1h", "debounce"));
  }
  if (d.rescan_ms < 1000) return std::unexpected(invalid("--rescan: at least 1s", "rescan"));
  auto spec = spec_from_json(d.task, TaskSpec{});
  if (!spec) return std::unexpected(spec.error());
  if (auto r = validate_spec(*spec); !r) return std::unexpected(r.error());
  return d;
}

bool watch_matches(const std::string& glob, const std::string& relative) {
  if (glob.empty()) return true;
  if (glob.find('/') != std::string::npos) {
    return ::fnmatch(glob.c_str(), relative.c_str(), FNM_PATHNAME) == 0;
  }
  auto slash = relative.rfind('/');
  std::string name = slash == std::string::npos ? relative : relative.substr(slash + 1);
  return ::fnmatch(glob.c_str(), name.c_str(), 0) == 0;
}

Watcher::Watcher(asio::io_context& io, Store& store, Committer& committer, Engine& engine,
                 const Clock& clock)
    : io_(io), store_(store), committer_(committer), engine_(engine), clock_(clock) {}

Watcher::~Watcher() {
  for (auto& [name, w] : watches_) stop(w);
  if (stream_) {
    boost::system::error_code ignored;
    stream_->close(ignored);
  }
}

Status Watcher::recover() {
  auto records = store_.list_watches();
  if (!records) return std::unexpected(records.error());
  for (const WatchRecord& r : *records) {
    auto def = watch_def_from_json(json::parse(r.definition, nullptr, false));
    if (!def) {
      // A directory that is gone is reported, not fatal: the daemon serves everything else.
      spdlog::warn("watch {}: {}", r.name, def.error().message);
      engine_.record("watch", fmt::format("{}: not started: {}", r.name, def.error().message));
      continue;
    }
    Live& w = watches_[r.name];
    w.name = r.name;
    w.def = std::move(*def);
    w.created_at_ms = r.created_at_ms;
    if (auto s = start(w); !s) return s;
  }
  return {};
}

Result<json> Watcher::add(const std::string& name, const json& definition) {
  TRY(validate_schedule_name(name));
  if (watches_.contains(name)) {
    return make_error(Code::kConflict,
                      fmt::format("a watch named \"{}\" exists (rota watch remove {})", name, name),
                      "name");
  }
  auto def = watch_def_from_json(definition);
  if (!def) return std::unexpected(def.error());
  TRY(committer_.write());
  int64_t now = clock_.now_ms();
  TRY(store_.put_watch({name, watch_def_to_json(*def).dump(), now}));
  Live& w = watches_[name];
  w.name = name;
  w.def = std::move(*def);
  w.created_at_ms = now;
  if (auto s = start(w); !s) {
    watches_.erase(name);
    return std::unexpected(s.error());
  }
  engine_.record("watch", fmt::format("{}: watching {}", name, w.def.path));
  json j = watch_def_to_json(w.def);
  j["name"] = name;
  return j;
}

json Watcher::list() const {
  json out = json::array();
  for (const auto& [name, w] : watches_) {
    json j = watch_def_to_json(w.def);
    j["name"] = name;
    j["created_at"] = format_timestamp(w.created_at_ms);
    j["files"] = w.files.size();
    j["fired"] = w.fired;
    j["pending"] = w.changed.size();
    out.push_back(j);
  }
  return out;
}

Status Watcher::remove(const std::string& name) {
  auto it = watches_.find(name);
  if (it == watches_.end()) return std::unexpected(not_found(name));
  TRY(committer_.write());
  TRY(store_.delete_watch(name));
  stop(it->second);
  watches_.erase(it);
  engine_.record("watch", fmt::format("{}: removed", name));
  return {};
}

// ---- inotify ---------------------------------------------------------------------------

Status Watcher::start(Live& w) {
  if (fd_ < 0) {
    fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd_ >= 0) {
      stream_ = std::make_unique<asio::posix::stream_descriptor>(io_, fd_);
      read_events();
    } else {
      // Out of inotify instances, say: the rescans still see every change, only later.
      spdlog::warn("inotify: {}; watches rely on their rescans", std::strerror(errno));
    }
  }
  w.debounce = std::make_unique<asio::steady_timer>(io_);
  w.rescan = std::make_unique<asio::steady_timer>(io_);
  add_tree(w, w.def.path, false);
  w.files = scan(w);
  schedule_rescan(w);
  return {};
}

void Watcher::stop(Live& w) {
  for (auto it = dirs_.begin(); it != dirs_.end();) {
    if (it->second.first == w.name) {
      ::inotify_rm_watch(fd_, it->first);
      it = dirs_.erase(it);
    } else {
      ++it;
    }
  }
  if (w.debounce) w.debounce->cancel();
  if (w.rescan) w.rescan->cancel();
}

void Watcher::add_tree(Live& w, const std::string& dir, bool report_files) {
  if (fd_ < 0) return;
  int wd = ::inotify_add_watch(fd_, dir.c_str(), kMask);
  if (wd < 0) {
    spdlog::warn("watch {}: cannot watch {}: {} (the rescan still covers it)", w.name, dir,
                 std::strerror(errno));
    return;
  }
  dirs_[wd] = {w.name, dir};
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_directory(ec) && !it->is_symlink(ec)) {
      add_tree(w, it->path().string(), report_files);
    } else if (report_files && it->is_regular_file(ec)) {
      // Written into a new directory before its watch existed.
      on_change(w, it->path().string());
    }
  }
}

void Watcher::read_events() {
  stream_->async_wait(asio::posix::stream_descriptor::wait_read,
                      [this](const boost::system::error_code& ec) {
                        if (ec) return;
                        alignas(inotify_event) std::array<char, 64 * 1024> buf;
                        for (;;) {
                          ssize_t n = ::read(fd_, buf.data(), buf.size());
                          if (n <= 0) break;
                          for (char* p = buf.data(); p < buf.data() + n;) {
                            auto* e = reinterpret_cast<inotify_event*>(p);
                            p += sizeof(inotify_event) + e->len;
                            if (e->mask & IN_Q_OVERFLOW) {
                              // Events were lost: compare every watched tree with its snapshot.
                              for (auto& [name, w] : watches_) rescan(w);
                              continue;
                            }
                            auto dir = dirs_.find(e->wd);
                            if (dir == dirs_.end()) continue;
                            if (e->mask & IN_IGNORED) {
                              dirs_.erase(dir);
                              continue;
                            }
                            auto w = watches_.find(dir->second.first);
                            if (w == watches_.end() || e->len == 0) continue;
                            std::string path = dir->second.second + "/" + e->name;
                            if ((e->mask & IN_ISDIR) && (e->mask & (IN_CREATE | IN_MOVED_TO))) {
                              add_tree(w->second, path, true);
                              continue;
                            }
                            if (e->mask & IN_ISDIR) continue;
                            on_change(w->second, path);
                          }
                        }
                        read_events();
                      });
}

void Watcher::on_change(Live& w, const std::string& path) {
  std::string relative = path.substr(std::min(path.size(), w.def.path.size() + 1));
  if (!watch_matches(w.def.glob, relative)) return;
  int64_t now = clock_.now_ms();
  if (w.changed.empty()) w.burst_started_ms = now;
  w.changed.insert(path);
  // Debounced: the task is queued once the burst has been quiet for `debounce`, or after
  // kMaxBurstPeriods debounce periods of writing without a pause.
  int64_t deadline =
      std::min(now + w.def.debounce_ms, w.burst_started_ms + w.def.debounce_ms * kMaxBurstPeriods);
  w.debounce->expires_after(std::chrono::milliseconds(std::max<int64_t>(0, deadline - now)));
  w.debounce->async_wait([this, name = w.name](const boost::system::error_code& ec) {
    if (!ec) on_debounce(name);
  });
}

void Watcher::on_debounce(const std::string& name) {
  auto it = watches_.find(name);
  if (it == watches_.end() || it->second.changed.empty()) return;
  Live& w = it->second;
  if (!engine_.accepting()) return;
  auto spec = spec_from_json(w.def.task, TaskSpec{});
  if (!spec) {
    spdlog::error("watch {}: {}", name, spec.error().message);
    return;
  }
  std::string changed;
  for (const std::string& p : w.changed) changed += (changed.empty() ? "" : "\n") + p;
  spec->command.vars["ROTA_CHANGED"] = changed;
  spec->labels["watch"] = name;
  std::vector<TaskSpec> specs;
  specs.push_back(std::move(*spec));
  auto ids = engine_.add(std::move(specs));
  if (!ids) {
    spdlog::error("watch {}: {}", name, ids.error().message);
    return;
  }
  ++w.fired;
  // What fired is now the snapshot the next rescan compares with (a stat per changed path,
  // not a walk of the tree).
  for (const std::string& path : w.changed) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      w.files[path] = {st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec,
                       static_cast<int64_t>(st.st_size)};
    } else {
      w.files.erase(path);
    }
  }
  w.changed.clear();
}

// ---- rescan ----------------------------------------------------------------------------

void Watcher::schedule_rescan(Live& w) {
  w.rescan->expires_after(std::chrono::milliseconds(w.def.rescan_ms));
  w.rescan->async_wait([this, name = w.name](const boost::system::error_code& ec) {
    if (ec) return;
    auto it = watches_.find(name);
    if (it == watches_.end()) return;
    rescan(it->second);
    schedule_rescan(it->second);
  });
}

void Watcher::rescan(Live& w) {
  auto now = scan(w);
  for (const auto& [path, snap] : now) {
    auto old = w.files.find(path);
    if (old == w.files.end() || old->second.mtime_ns != snap.mtime_ns ||
        old->second.size != snap.size) {
      on_change(w, path);
    }
  }
  for (const auto& [path, snap] : w.files) {
    if (!now.contains(path)) on_change(w, path);
  }
  w.files = std::move(now);
}

std::map<std::string, Watcher::Snapshot> Watcher::scan(const Live& w) const {
  std::map<std::string, Snapshot> out;
  std::error_code ec;
  for (fs::recursive_directory_iterator
           it(w.def.path, fs::directory_options::skip_permission_denied, ec),
       end;
       !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    std::string path = it->path().string();
    if (!watch_matches(w.def.glob, path.substr(w.def.path.size() + 1))) continue;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) continue;
    out[path] = {st.st_mtim.tv_sec * 1'000'000'000LL + st.st_mtim.tv_nsec,
                 static_cast<int64_t>(st.st_size)};
  }
  return out;
}

}  // namespace rota
