#include "daemon/user_pools.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

namespace rota {
namespace {

using nlohmann::json;

#define TRY(expr) \
  if (auto r_ = (expr); !r_) return std::unexpected(r_.error())

constexpr int kMaxSize = 1024;
constexpr int kMaxConcurrency = 10'000;

}  // namespace

std::string pool_def_to_json(const PoolDef& d) {
  json j = {{"cmd", d.cmd}, {"size", d.size},     {"min", d.min},
            {"max", d.max}, {"queues", d.queues}, {"concurrency", d.concurrency},
            {"cwd", d.cwd}, {"env", d.env}};
  return j.dump();
}

Result<PoolDef> pool_def_from_json(const std::string& name, const std::string& text) {
  try {
    json j = json::parse(text);
    PoolDef d;
    d.name = name;
    d.cmd = j.at("cmd").get<std::string>();
    d.size = j.value("size", 1);
    d.min = j.value("min", 0);
    d.max = j.value("max", 0);
    d.queues = j.value("queues", std::vector<std::string>{});
    d.concurrency = j.value("concurrency", 1);
    d.cwd = j.value("cwd", "");
    d.env = j.value("env", Env{});
    return d;
  } catch (const json::exception& e) {
    return make_error(Code::kCorruption, fmt::format("pool {}: {}", name, e.what()));
  }
}

Status validate_pool_def(const PoolDef& d) {
  auto invalid = [](std::string message, std::string field) {
    return make_error(Code::kInvalidArgument, std::move(message), std::move(field));
  };
  if (auto r = validate_pool_name(d.name); !r) return r;
  if (d.name == kCommandsPool) {
    return invalid("\"commands\" is the built-in pool: size it with rota scale", "name");
  }
  if (d.cmd.find_first_not_of(" \t") == std::string::npos) {
    return invalid("--cmd: give the worker's command (e.g. --cmd 'python3 worker.py')", "cmd");
  }
  if (d.max > 0) {
    if (d.min < 0 || d.min > d.max || d.max > kMaxSize) {
      return invalid(fmt::format("--min/--max: need 0 <= min <= max <= {}", kMaxSize), "min");
    }
  } else if (d.size < 0 || d.size > kMaxSize) {
    return invalid(fmt::format("--size: must be between 0 and {}", kMaxSize), "size");
  }
  if (d.concurrency < 1 || d.concurrency > kMaxConcurrency) {
    return invalid(fmt::format("--concurrency: must be between 1 and {}", kMaxConcurrency),
                   "concurrency");
  }
  for (const std::string& q : d.queues) {
    if (auto r = validate_queue_name(q); !r) return r;
  }
  if (!d.cwd.empty()) {
    struct stat st {};
    if (d.cwd.front() != '/') {
      return invalid(fmt::format("--cwd: \"{}\" is not an absolute path", d.cwd), "cwd");
    }
    if (::stat(d.cwd.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return invalid(fmt::format("--cwd: {} is not a directory", d.cwd), "cwd");
    }
  }
  return {};
}

UserPools::UserPools(boost::asio::io_context& io, Store& store, Committer& committer,
                     Engine& engine, const Clock& clock, PoolOptions base, int64_t scale_up_wait_ms,
                     int64_t scale_down_idle_ms)
    : io_(io),
      store_(store),
      committer_(committer),
      engine_(engine),
      clock_(clock),
      base_(std::move(base)),
      scale_up_wait_ms_(scale_up_wait_ms),
      scale_down_idle_ms_(scale_down_idle_ms) {}

UserPools::~UserPools() {
  for (auto& [name, e] : pools_) engine_.remove_pool(name);
}

std::unique_ptr<Pool> UserPools::make_pool(const PoolDef& def) {
  PoolOptions o = base_;
  o.name = def.name;
  o.program = def.cmd;
  o.cwd = def.cwd;
  o.env = def.env;
  o.concurrency = def.concurrency;
  o.queues = def.queues;
  return std::make_unique<Pool>(io_, std::move(o), engine_, [this]() -> int64_t {
    if (!committer_.write()) return 0;
    return store_.next_worker_id().value_or(0);
  });
}

void UserPools::start(Entry& e) {
  e.autoscaler = std::make_unique<Autoscaler>(scale_up_wait_ms_, scale_down_idle_ms_);
  int size = e.def.size;
  if (e.def.max > 0) {
    e.autoscaler->set_range(AutoscaleRange{e.def.min, e.def.max});
    size = std::clamp(size, e.def.min, e.def.max);
  }
  engine_.add_pool(*e.pool);
  e.pool->scale(size);
  committer_.poke();
}

Status UserPools::recover() {
  auto records = store_.list_pools();
  if (!records) return std::unexpected(records.error());
  for (const PoolRecord& r : *records) {
    auto def = pool_def_from_json(r.name, r.definition);
    if (!def) return std::unexpected(def.error());
    def->created_at_ms = r.created_at_ms;
    Entry& e = pools_[r.name];
    e.def = std::move(*def);
    e.pool = make_pool(e.def);
    start(e);
  }
  return {};
}

Result<PoolDef> UserPools::add(PoolDef def) {
  if (auto r = validate_pool_def(def); !r) return std::unexpected(r.error());
  if (pools_.count(def.name)) {
    return make_error(Code::kConflict,
                      fmt::format("pool {} exists (change it with rota pool set)", def.name));
  }
  def.created_at_ms = clock_.now_ms();
  TRY(committer_.write());
  TRY(store_.put_pool({def.name, pool_def_to_json(def), def.created_at_ms}));
  engine_.record("pool", fmt::format("pool {} added: {} x {}", def.name, def.size, def.cmd));
  Entry& e = pools_[def.name];
  e.def = def;
  e.pool = make_pool(e.def);
  start(e);
  return def;
}

Result<PoolDef> UserPools::set(PoolDef def) {
  auto it = pools_.find(def.name);
  if (it == pools_.end()) {
    return make_error(Code::kNotFound,
                      fmt::format("no pool named {} (see rota pool list)", def.name));
  }
  if (auto r = validate_pool_def(def); !r) return std::unexpected(r.error());
  Entry& e = it->second;
  def.created_at_ms = e.def.created_at_ms;
  TRY(committer_.write());
  TRY(store_.put_pool({def.name, pool_def_to_json(def), def.created_at_ms}));
  bool replace = def.cmd != e.def.cmd || def.cwd != e.def.cwd || def.env != e.def.env ||
                 def.concurrency != e.def.concurrency;
  engine_.record("pool", fmt::format("pool {} changed{}", def.name,
                                     replace ? ": its workers are replaced" : ""));
  e.def = def;
  PoolOptions o = e.pool->options();
  o.program = def.cmd;
  o.cwd = def.cwd;
  o.env = def.env;
  o.concurrency = def.concurrency;
  o.queues = def.queues;
  e.pool->reconfigure(std::move(o));
  int size = def.size;
  if (def.max > 0) {
    e.autoscaler->set_range(AutoscaleRange{def.min, def.max});
    size = std::clamp(e.pool->size(), def.min, def.max);
  } else {
    e.autoscaler->set_range(std::nullopt);
  }
  if (replace) e.pool->scale(0);  // the old workers finish what they hold, then leave
  e.pool->scale(size);
  committer_.poke();
  return def;
}

Status UserPools::remove(const std::string& name) {
  auto it = pools_.find(name);
  if (it == pools_.end()) {
    return make_error(Code::kNotFound, fmt::format("no pool named {} (see rota pool list)", name));
  }
  TRY(committer_.write());
  TRY(store_.delete_pool(name));
  engine_.record("pool", fmt::format("pool {} removed", name));
  engine_.remove_pool(name);
  auto pool = std::move(it->second.pool);
  pools_.erase(it);
  retire(std::move(pool), base_.kill_grace_ms);
  return {};
}

// Shuts the pool down and destroys it once its workers have left (not from inside its own
// callback).
void UserPools::retire(std::unique_ptr<Pool> pool, int64_t grace_ms) {
  Pool* raw = pool.get();
  retiring_.push_back(std::move(pool));
  raw->shutdown(grace_ms, [this, raw] {
    boost::asio::post(io_, [this, raw] {
      std::erase_if(retiring_, [raw](const auto& p) { return p.get() == raw; });
    });
  });
}

std::vector<PoolDef> UserPools::list() const {
  std::vector<PoolDef> out;
  for (const auto& [name, e] : pools_) out.push_back(e.def);
  return out;
}

std::optional<PoolDef> UserPools::get(const std::string& name) const {
  auto it = pools_.find(name);
  if (it == pools_.end()) return std::nullopt;
  return it->second.def;
}

Pool* UserPools::find(const std::string& name) {
  auto it = pools_.find(name);
  return it == pools_.end() ? nullptr : it->second.pool.get();
}

const Pool* UserPools::find(const std::string& name) const {
  auto it = pools_.find(name);
  return it == pools_.end() ? nullptr : it->second.pool.get();
}

void UserPools::tick(int64_t now_ms) {
  for (auto& p : retiring_) p->check_health(now_ms);
  for (auto& [name, e] : pools_) {
    e.pool->check_health(now_ms);
    if (!e.autoscaler->range()) continue;
    int idle = static_cast<int>(e.pool->idle_workers().size());
    auto change = e.autoscaler->decide({.now_ms = now_ms,
                                        .size = e.pool->size(),
                                        .idle = idle,
                                        .ready = engine_.queued_for(name)});
    if (change) {
      engine_.record("autoscale", fmt::format("pool {} from {} to {} workers: {}", name,
                                              e.pool->size(), change->first, change->second));
      e.pool->scale(change->first);
      committer_.poke();
    }
  }
}

void UserPools::shutdown(int64_t grace_ms, std::function<void()> done) {
  auto left = std::make_shared<size_t>(pools_.size() + retiring_.size());
  if (*left == 0) return done();
  auto one_done = [left, done] {
    if (--*left == 0) done();
  };
  for (auto& [name, e] : pools_) e.pool->shutdown(grace_ms, one_done);
  for (auto& p : retiring_) p->shutdown(grace_ms, one_done);
}

void UserPools::detach() {
  for (auto& [name, e] : pools_) e.pool->detach();
  for (auto& p : retiring_) p->detach();
}

}  // namespace rota
