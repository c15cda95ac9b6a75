#include "daemon/daemon.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <thread>

#include "api/http_server.h"
#include "api/routes.h"
#include "core/clock.h"
#include "core/home.h"
#include "daemon/alerts.h"
#include "daemon/autoscaler.h"
#include "daemon/committer.h"
#include "daemon/config.h"
#include "daemon/engine.h"
#include "daemon/log_format.h"
#include "daemon/pool.h"
#include "daemon/scheduler.h"
#include "daemon/systemd.h"
#include "daemon/user_pools.h"
#include "daemon/watcher.h"
#include "store/sqlite_store.h"
#include "store/threaded_store.h"

namespace rota {
namespace asio = boost::asio;

namespace {

constexpr int64_t kAlertHookTimeoutMs = 10'000;

// Prints the one line a user needs and returns the exit code that goes with it.
int fail(const Error& error) {
  fmt::print(stderr, "rota: {}\n", error.message);
  return exit_code(error.code);
}

Status prepare_home(const Home& home) {
  for (const std::string& dir : {home.dir, home.logs}) {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return make_error(Code::kUnavailable,
                        fmt::format("cannot create {}: {}", dir, std::strerror(errno)));
    }
  }
  ::chmod(home.dir.c_str(), 0700);
  return {};
}

// The home's API token for the TCP listener, created (0600) at the first start.
Result<std::string> ensure_token(const std::string& path) {
  if (std::ifstream in(path); in) {
    std::string token;
    std::getline(in, token);
    if (token.size() >= 32) return token;
  }
  std::ifstream random("/dev/urandom", std::ios::binary);
  unsigned char bytes[24];
  if (!random.read(reinterpret_cast<char*>(bytes), sizeof bytes)) {
    return make_error(Code::kUnavailable, "cannot read /dev/urandom for the API token");
  }
  std::string token;
  for (unsigned char b : bytes) token += fmt::format("{:02x}", b);
  if (auto r = write_file_atomically(path, token + "\n"); !r) return std::unexpected(r.error());
  ::chmod(path.c_str(), 0600);
  return token;
}

// Holds the home's lock for the daemon's lifetime: one daemon per home.
Result<int> lock_home(const Home& home) {
  int fd = ::open(home.lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0 || ::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    return make_error(Code::kConflict, fmt::format("a daemon is already running for {}", home.dir));
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  (void)!::ftruncate(fd, 0);
  (void)!::write(fd, pid.data(), pid.size());
  return fd;
}

}  // namespace

int run_daemon(const DaemonOptions& o) {
  ::signal(SIGPIPE, SIG_IGN);
  ::umask(077);  // the store, logs and socket are the user's alone
  // A batch of 10,000 new tasks makes vectors of several MiB, and SQLite's thread frees and
  // takes back its own memory as it goes: freed memory stays with the process up to 64 MiB
  // instead of going back to the kernel after each batch and faulting in again (mapped afresh,
  // page by page: 78,000 page faults for 200,000 tasks, and half the enqueue's time).
  ::mallopt(M_MMAP_THRESHOLD, 32 << 20);
  ::mallopt(M_TRIM_THRESHOLD, 64 << 20);
  // Each worker takes two descriptors (socket, pidfd): allow as many as the system lets us.
  if (rlimit lim{}; ::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
  if (auto r = setup_daemon_log(::isatty(2) ? LogStyle::kText : LogStyle::kJson, o.log_level); !r) {
    return fail(r.error());
  }
  Home home = home_at(o.home);
  if (auto r = prepare_home(home); !r) return fail(r.error());
  auto config = load_config(home.dir + "/rota.toml");
  if (!config) return fail(config.error());
  if (auto r = finish_config(*config, o.config_flags); !r) return fail(r.error());
  auto lock = lock_home(home);
  if (!lock) return fail(lock.error());
  int workers =
      config->workers > 0 ? config->workers : static_cast<int>(std::thread::hardware_concurrency());

  auto opened = SqliteStore::open(home.store, o.durability);
  if (!opened) return fail(opened.error());

  asio::io_context io(1);
  // SQLite works on a thread of its own; what must come back to the loop is posted to it.
  auto store = std::make_unique<ThreadedStore>(
      std::move(*opened), [&io](std::function<void()> fn) { asio::post(io, std::move(fn)); });
  SystemClock clock;
  Committer committer(io, *store);
  Engine engine(io, *store, committer, clock,
                {.logs_dir = home.logs,
                 .log_cap = o.log_cap,
                 .slow_after_ms = config->slow_after_ms,
                 .poison_after = config->poison_after,
                 .stall_after_ms = config->stall_after_ms});
  Alerts alerts(io, home.dir + "/alerts.log", config->alert_command, kAlertHookTimeoutMs,
                [&engine](const std::string& kind, const std::string& detail) {
                  engine.record(kind, detail);
                });
  if (auto r = engine.recover(); !r) return fail(r.error());
  PoolOptions pool_options{.exe = o.exe,
                           .home = home.dir,
                           .heartbeat_ms = config->heartbeat_interval_ms,
                           .unresponsive_after_ms = config->unresponsive_after_ms,
                           .dead_after_ms = config->dead_after_ms,
                           .max_restarts = config->max_restarts,
                           .restart_window_ms = config->restart_window_ms};
  Pool pool(io, pool_options, engine, [&]() -> int64_t {
    if (!committer.write()) return 0;
    return store->next_worker_id().value_or(0);
  });
  Metrics metrics;
  engine.attach(pool, alerts, metrics);
  PoolOptions user_pool_options = pool_options;
  user_pool_options.logs_dir = home.logs;
  user_pool_options.kill_grace_ms = 5000;
  UserPools user_pools(io, *store, committer, engine, clock, user_pool_options,
                       config->scale_up_wait_ms, config->scale_down_idle_ms);
  alerts.set_metrics(metrics);
  committer.set_commit_observer([&metrics](double seconds) { metrics.commit(seconds); });
  Scheduler scheduler(io, *store, committer, engine, clock);
  if (auto r = scheduler.recover(); !r) return fail(r.error());
  Watcher watcher(io, *store, committer, engine, clock);
  if (auto r = watcher.recover(); !r) return fail(r.error());

  // The autoscaling range, if one was set, outlives the daemon.
  Autoscaler autoscaler(config->scale_up_wait_ms, config->scale_down_idle_ms);
  if (auto saved = store->get_setting("autoscale"); saved && *saved) {
    int min = 0, max = 0;
    if (std::sscanf((*saved)->c_str(), "%d,%d", &min, &max) == 2 && max >= min && max > 0) {
      autoscaler.set_range(AutoscaleRange{min, max});
      workers = std::clamp(workers, min, max);
    }
  }

  bool stopping = false;
  asio::steady_timer deadline(io);
  auto stop = [&](int64_t grace_ms, StopMode mode) {
    if (stopping) return;
    stopping = true;
    if (mode == StopMode::kDetach) {
      // rota daemon restart: running tasks stay with their workers, which reattach.
      spdlog::info("restarting; workers keep their tasks and reattach to the next daemon");
      engine.stop_dispatching();
      pool.detach();
      user_pools.detach();
      committer.after_commit([&](const Status&) { io.stop(); });
      return;
    }
    spdlog::info("stopping; running tasks have {} ms to finish", grace_ms);
    engine.stop_dispatching();
    auto all_stopped = std::make_shared<int>(2);
    auto one_stopped = [&, all_stopped] {
      if (--*all_stopped == 0) committer.after_commit([&](const Status&) { io.stop(); });
    };
    pool.shutdown(grace_ms, one_stopped);
    user_pools.shutdown(grace_ms, one_stopped);
    // Workers escalate to SIGKILL after the grace; this is the backstop if one cannot.
    deadline.expires_after(std::chrono::milliseconds(grace_ms + 15'000));
    deadline.async_wait([&](const boost::system::error_code& ec) {
      if (!ec) committer.after_commit([&](const Status&) { io.stop(); });
    });
  };

  // Supervision: heartbeat ages, slow tasks, stalled queues.
  // The same timer measures the loop's own lag: how late it fires (seed 004's deadlock was a
  // loop that stopped turning while its process looked alive).
  asio::steady_timer health_timer(io);
  int64_t tick_ms = std::clamp<int64_t>(config->unresponsive_after_ms / 10, 20, 1000);
  int64_t loop_lag_ms = 0;
  std::function<void()> health_tick = [&] {
    health_timer.expires_after(std::chrono::milliseconds(tick_ms));
    auto due = health_timer.expiry();
    health_timer.async_wait([&, due](const boost::system::error_code& ec) {
      if (ec) return;
      loop_lag_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        asio::steady_timer::clock_type::now() - due)
                        .count();
      int64_t now = clock.now_ms();
      pool.check_health(now);
      user_pools.tick(now);
      engine.check_stall(now);
      notify_watchdog(now);
      auto change =
          autoscaler.decide({.now_ms = now,
                             .size = pool.size(),
                             .idle = static_cast<int>(pool.idle_workers().size()),
                             .ready = engine.totals()[static_cast<int>(TaskState::kQueued)]});
      if (change) {
        engine.record("autoscale", fmt::format("pool from {} to {} workers: {}", pool.size(),
                                               change->first, change->second));
        pool.scale(change->first);
        committer.poke();
      }
      health_tick();
    });
  };
  health_tick();

  Router router;
  ApiContext api{.autoscaler = autoscaler,
                 .engine = engine,
                 .scheduler = scheduler,
                 .watcher = watcher,
                 .store = *store,
                 .committer = committer,
                 .pool = pool,
                 .user_pools = user_pools,
                 .alerts = alerts,
                 .metrics = metrics,
                 .clock = clock,
                 .home = home.dir,
                 .socket_path = home.socket,
                 .logs_dir = home.logs,
                 .started_at_ms = clock.now_ms(),
                 .config = *config,
                 .stop = stop,
                 .io = io,
                 .loop_lag_ms = [&] { return loop_lag_ms; }};
  add_routes(router, api);
  HttpServer server(io, router);
  // The unix socket last: `rota daemon start` returns once it accepts, and by then the token
  // and the TCP listener must be there.
  auto token = ensure_token(home.dir + "/token");
  if (!token) return fail(token.error());
  if (!config->listen.empty()) {
    if (auto r = server.listen_tcp(config->listen, {*token, config->metrics_public}); !r) {
      return fail(r.error());
    }
    spdlog::info("listening on http://{} (token in {}/token)", config->listen, home.dir);
  }
  if (auto r = server.listen_unix(home.socket); !r) return fail(r.error());

  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& ec, int) {
    if (!ec) stop(o.stop_grace_ms, StopMode::kDrain);
  });

  spdlog::info("rota {} daemon pid {}: home {}, store {}, socket {}, {} workers", ROTA_VERSION,
               ::getpid(), home.dir, home.store, home.socket, workers);
  if (auto r = pool.listen_reattach(home.worker_socket); !r) return fail(r.error());
  int reserved = std::min(workers, engine.awaiting_reattach());
  pool.scale(workers, reserved);
  engine.await_reattach(config->reattach_grace_ms, [&] { pool.fill_reserved(); });
  if (auto r = user_pools.recover(); !r) return fail(r.error());
  notify_ready(fmt::format("{} workers, home {}", workers, home.dir));
  io.run();
  notify_stopping();

  server.close();
  ::unlink(home.socket.c_str());
  ::unlink(home.worker_socket.c_str());
  spdlog::info("stopped");
  return 0;
}

}  // namespace rota
