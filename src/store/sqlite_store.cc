#include "store/sqlite_store.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include <nlohmann/json.hpp>

#include "store/migrations.h"

namespace rota {
namespace {

using nlohmann::json;

#define TRY(expr) \
  if (auto r_ = (expr); !r_) return std::unexpected(r_.error())

constexpr const char* kTaskColumns =
    "id, state, queue, priority, attempts, max_attempts, backoff_base_ms, backoff_max_ms, "
    "timeout_ms, run_after_ms, argv, shell, cwd, env_id, labels, exit_code, signal, error, "
    "created_at_ms, started_at_ms, finished_at_ms, worker, token, slow_after_ms, result, vars, "
    "batch_id, schedule, slot_ms, item, isolation, http, pool, payload";

bool file_exists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

std::string labels_json(const Labels& labels) {
  if (labels.empty()) return {};
  return json(labels).dump();
}

}  // namespace

Status SqliteStore::check(const std::string& path) {
  auto db = SqliteDb::open(path, SQLITE_OPEN_READONLY);
  if (!db) return std::unexpected(db.error());
  auto refuse = [&](std::string why) {
    return make_error(Code::kCorruption,
                      fmt::format("store {} {}; it was left untouched: move it aside "
                                  "and restore a backup, or start afresh without it",
                                  path, why));
  };
  auto stmt = (*db)->prepare("PRAGMA quick_check");
  if (!stmt) return refuse(fmt::format("cannot be read ({})", stmt.error().message));
  int rc = stmt->step();
  if (rc != SQLITE_ROW)
    return refuse(fmt::format("cannot be read ({})", (*db)->error("quick_check").message));
  if (std::string verdict = stmt->text(0); verdict != "ok") {
    // quick_check lists one problem per line; the first one, on one line, says enough.
    std::string first = verdict.substr(0, verdict.find('\n'));
    if (first.rfind("*** ", 0) == 0) {
      size_t next = verdict.find('\n');
      first = next == std::string::npos
                  ? first
                  : verdict.substr(next + 1, verdict.find('\n', next + 1) - next - 1);
    }
    return refuse(fmt::format("failed its integrity check ({})", first));
  }
  // rota creates its store whole (temp file, then rename), so a file without a schema version
  // is not a store it made: an emptied or foreign file is refused, never taken as a new store.
  auto version = (*db)->prepare("SELECT value FROM meta WHERE key = 'schema_version'");
  if (!version || version->step() != SQLITE_ROW) return refuse("has no rota schema version");
  {
    int found = std::stoi(version->text(0));
    if (found > kSchemaVersion) {
      return make_error(Code::kCorruption,
                        fmt::format("store {} has schema version {}, newer than this rota "
                                    "(version {}, schema {}); it was left untouched: upgrade rota",
                                    path, found, ROTA_VERSION, kSchemaVersion));
    }
  }
  return {};
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::string& path,
                                                       Durability durability) {
  if (file_exists(path)) {
    TRY(check(path));
  } else {
    TRY(create(path));
  }
  auto db = SqliteDb::open(path, SQLITE_OPEN_READWRITE);
  if (!db) return std::unexpected(db.error());
  std::unique_ptr<SqliteStore> store(new SqliteStore(path, std::move(*db)));
  TRY(store->db_->exec("PRAGMA journal_mode=WAL"));
  TRY(store->db_->exec(durability == Durability::kFull ? "PRAGMA synchronous=FULL"
                                                       : "PRAGMA synchronous=NORMAL"));
  TRY(
      store->db_->exec("PRAGMA busy_timeout=5000; PRAGMA temp_store=MEMORY;"
                       "PRAGMA cache_size=-65536; PRAGMA wal_autocheckpoint=4000"));
  TRY(store->migrate());
  return store;
}

Status SqliteStore::create(const std::string& path) {
  std::string temp = path + ".new";
  std::remove(temp.c_str());
  {
    auto db = SqliteDb::open(temp, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (!db) return std::unexpected(db.error());
    SqliteStore store(temp, std::move(*db));
    TRY(store.migrate());
    TRY(store.db_->exec("PRAGMA journal_mode=WAL"));
  }
  int fd = ::open(temp.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    return make_error(Code::kUnavailable,
                      fmt::format("cannot create store {}: {}", path, std::strerror(errno)));
  }
  return {};
}

Status SqliteStore::migrate() {
  TRY(db_->exec("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"));
  int version = 0;
  {
    auto stmt = db_->prepare("SELECT value FROM meta WHERE key = 'schema_version'");
    if (!stmt) return std::unexpected(stmt.error());
    if (stmt->step() == SQLITE_ROW) version = std::stoi(stmt->text(0));
  }
  for (const Migration& m : sqlite_migrations()) {
    if (m.version <= version) continue;
    TRY(db_->exec("BEGIN IMMEDIATE"));
    if (auto r = db_->exec(m.sql); !r) {
      db_->exec("ROLLBACK");
      return std::unexpected(r.error());
    }
    auto stmt = db_->prepare(
        "INSERT INTO meta (key, value) VALUES ('schema_version', ?1) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value");
    if (!stmt) return std::unexpected(stmt.error());
    stmt->bind(1, std::to_string(m.version));
    if (stmt->step() != SQLITE_DONE) return std::unexpected(db_->error("migrate"));
    TRY(db_->exec("COMMIT"));
  }
  return {};
}

Status SqliteStore::begin() { return db_->run("BEGIN IMMEDIATE"); }
Status SqliteStore::commit() {
  TRY(flush_events());
  return db_->run("COMMIT");
}
void SqliteStore::rollback() {
  pending_events_.clear();
  (void)db_->exec("ROLLBACK");
}
Status SqliteStore::savepoint() {
  TRY(flush_events());  // so that a rollback to the savepoint takes back only later ones
  return db_->exec("SAVEPOINT op");
}
Status SqliteStore::release_savepoint() { return db_->exec("RELEASE op"); }
void SqliteStore::rollback_to_savepoint() {
  pending_events_.clear();
  (void)db_->exec("ROLLBACK TO op");
  (void)db_->exec("RELEASE op");
  // An environment interned since the savepoint is gone again, and its id will be reused.
  env_ids_.clear();
}

Result<int64_t> SqliteStore::intern_env(const Env& env) {
  std::string vars = json(env).dump();
  if (auto it = env_ids_.find(vars); it != env_ids_.end()) return it->second;
  {
    auto find = db_->prepare("SELECT id FROM envs WHERE vars = ?1");
    if (!find) return std::unexpected(find.error());
    find->bind(1, vars);
    if (find->step() == SQLITE_ROW) {
      int64_t id = find->int64(0);
      env_ids_.emplace(std::move(vars), id);
      return id;
    }
  }
  auto insert = db_->prepare("INSERT INTO envs (vars) VALUES (?1)");
  if (!insert) return std::unexpected(insert.error());
  insert->bind(1, vars);
  if (insert->step() != SQLITE_DONE) return std::unexpected(db_->error("intern env"));
  int64_t id = db_->last_insert_rowid();
  // The cache may only hold ids that stay: a failed commit is fatal (sticky), and a rollback
  // to a savepoint clears the cache.
  env_ids_.emplace(std::move(vars), id);
  return id;
}

Result<Env> SqliteStore::get_env(int64_t env_id) {
  auto stmt = db_->prepare("SELECT vars FROM envs WHERE id = ?1");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, env_id);
  if (stmt->step() != SQLITE_ROW) {
    return make_error(Code::kCorruption, fmt::format("env {} is missing from the store", env_id));
  }
  try {
    return json::parse(stmt->text(0)).get<Env>();
  } catch (const json::exception& e) {
    return make_error(Code::kCorruption, fmt::format("env {}: {}", env_id, e.what()));
  }
}

namespace {

// An INSERT of many rows per statement (32 where there are as many): a third less per row
// than one statement each. `head` is "INSERT INTO t (columns) VALUES "; a row has `params`.
class RowsInsert {
 public:
  static constexpr size_t kRows = 32;

  RowsInsert(std::string_view head, int params)
      : params_(params), many_(sql(head, params, kRows)), one_(sql(head, params, 1)) {}

  // Inserts `count` rows: bind(stmt, p, i) binds row i's parameters from ?(p + 1), and
  // inserted(rows) runs after each statement with the number of rows it wrote.
  template <class Bind, class Inserted>
  Status run(SqliteDb& db, std::string_view what, size_t count, Bind bind,
             Inserted inserted) const {
    for (size_t done = 0; done < count;) {
      size_t rows = count - done >= kRows ? kRows : 1;
      auto stmt = db.prepare(rows == kRows ? many_.c_str() : one_.c_str());
      if (!stmt) return std::unexpected(stmt.error());
      for (size_t r = 0; r < rows; ++r) bind(*stmt, static_cast<int>(r) * params_, done + r);
      if (stmt->step() != SQLITE_DONE) return std::unexpected(db.error(what));
      inserted(rows);
      done += rows;
    }
    return {};
  }

 private:
  static std::string sql(std::string_view head, int params, size_t rows) {
    std::string out(head);
    for (size_t r = 0; r < rows; ++r) {
      int p = static_cast<int>(r) * params;
      out += r ? ", (" : "(";
      for (int i = 1; i <= params; ++i) out += fmt::format("{}?{}", i == 1 ? "" : ", ", p + i);
      out += ")";
    }
    return out;
  }

  const int params_;
  const std::string many_;  // kept: the statement cache is keyed by these strings
  const std::string one_;
};

constexpr int kTaskParams = 26;  // bound per row by bind_new_task

// Binds one row of the INSERT into tasks, its parameters from ?(p + 1) to ?(p + kTaskParams).
void bind_new_task(Stmt& stmt, int p, const NewTask& t) {
  const TaskSpec& s = t.spec;  // outlives the step: its fields are bound without a copy
  auto text_or_null = [&](int index, const std::string& value) {
    if (value.empty()) {
      stmt.bind_null(p + index);
    } else {
      stmt.bind(p + index, value);
    }
  };
  auto field_or_null = [&](int index, const std::string& value) {
    if (value.empty()) {
      stmt.bind_null(p + index);
    } else {
      stmt.bind_static(p + index, value);
    }
  };
  stmt.bind_static(p + 1, state_name(t.state)).bind_static(p + 2, s.queue);
  stmt.bind(p + 3, int64_t{s.priority});
  stmt.bind(p + 4, int64_t{s.retries + 1}).bind(p + 5, s.backoff.base_ms);
  stmt.bind(p + 6, s.backoff.max_ms).bind(p + 7, s.timeout_ms).bind(p + 8, t.run_after_ms);
  if (s.command.argv.empty()) {
    stmt.bind_null(p + 9).bind_static(p + 10, s.command.shell);
  } else {
    stmt.bind(p + 9, json(s.command.argv).dump()).bind_null(p + 10);
  }
  stmt.bind_static(p + 11, s.command.cwd).bind(p + 12, t.env_id);
  text_or_null(13, s.labels.empty() ? std::string() : labels_json(s.labels));
  stmt.bind(p + 14, t.created_at_ms);
  if (is_terminal(t.state)) {
    stmt.bind(p + 15, t.created_at_ms);
  } else {
    stmt.bind_null(p + 15);
  }
  stmt.bind(p + 16, s.slow_after_ms);
  field_or_null(17, s.unique_key);
  text_or_null(18, s.command.vars.empty() ? std::string() : json(s.command.vars).dump());
  if (s.batch_id) {
    stmt.bind(p + 19, s.batch_id);
  } else {
    stmt.bind_null(p + 19);
  }
  if (s.schedule.empty()) {
    stmt.bind_null(p + 20).bind_null(p + 21);
  } else {
    stmt.bind_static(p + 20, s.schedule).bind(p + 21, s.slot_ms);
  }
  if (s.schedule.empty() && s.item.empty()) {
    stmt.bind_null(p + 22);
  } else {
    stmt.bind_static(p + 22, s.item);
  }
  text_or_null(23, s.command.isolation.kind == Isolation::Kind::kNone
                       ? std::string()
                       : isolation_to_json(s.command.isolation));
  text_or_null(24, s.command.http ? http_to_json(*s.command.http) : std::string());
  stmt.bind_static(p + 25, s.pool);
  field_or_null(26, s.payload);
}

}  // namespace

Result<std::vector<int64_t>> SqliteStore::insert_tasks(std::span<const NewTask> tasks) {
  static const RowsInsert insert(
      "INSERT INTO tasks (state, queue, priority, max_attempts, backoff_base_ms, "
      "backoff_max_ms, timeout_ms, run_after_ms, argv, shell, cwd, env_id, labels, "
      "created_at_ms, finished_at_ms, slow_after_ms, unique_key, vars, batch_id, schedule, "
      "slot_ms, item, isolation, http, pool, payload) VALUES ",
      kTaskParams);
  std::vector<int64_t> ids;
  ids.reserve(tasks.size());
  TRY(insert.run(
      *db_, "insert task", tasks.size(),
      [&](Stmt& stmt, int p, size_t i) { bind_new_task(stmt, p, tasks[i]); },
      [&](size_t rows) {
        // The rows of one INSERT are inserted in order, each with the next rowid (an INTEGER
        // PRIMARY KEY without AUTOINCREMENT takes the largest so far plus one).
        int64_t last = db_->last_insert_rowid();
        for (size_t r = 0; r < rows; ++r) ids.push_back(last - static_cast<int64_t>(rows - 1 - r));
      }));
  for (size_t i = 0; i < tasks.size(); ++i) {
    for (int64_t dep : tasks[i].spec.after) {
      auto stmt = db_->prepare("INSERT OR IGNORE INTO task_deps (task_id, dep_id) VALUES (?1, ?2)");
      if (!stmt) return std::unexpected(stmt.error());
      stmt->bind(1, ids[i]).bind(2, dep);
      if (stmt->step() != SQLITE_DONE) return std::unexpected(db_->error("insert dependency"));
    }
  }
  return ids;
}

Result<Task> SqliteStore::read_task(Stmt& s) {
  Task t;
  t.id = s.int64(0);
  auto state = parse_state(s.text(1));
  if (!state) return make_error(Code::kCorruption, fmt::format("task {}: bad state", t.id));
  t.state = *state;
  t.queue = s.text(2);
  t.priority = static_cast<int>(s.int64(3));
  t.attempts = static_cast<int>(s.int64(4));
  t.max_attempts = static_cast<int>(s.int64(5));
  t.backoff = {s.int64(6), s.int64(7)};
  t.timeout_ms = s.int64(8);
  t.run_after_ms = s.int64(9);
  try {
    if (!s.is_null(10)) t.command.argv = json::parse(s.text(10)).get<std::vector<std::string>>();
    if (!s.is_null(14)) t.labels = json::parse(s.text(14)).get<Labels>();
    if (!s.is_null(25)) t.command.vars = json::parse(s.text(25)).get<Env>();
  } catch (const json::exception& e) {
    return make_error(Code::kCorruption, fmt::format("task {}: {}", t.id, e.what()));
  }
  t.command.shell = s.text(11);
  t.command.cwd = s.text(12);
  t.env_id = s.int64(13);
  t.exit_code = s.opt_int(15);
  t.signal = s.opt_int(16);
  t.error = s.text(17);
  t.created_at_ms = s.int64(18);
  t.started_at_ms = s.int64(19);
  t.finished_at_ms = s.int64(20);
  if (!s.is_null(21)) t.worker = s.int64(21);
  t.token = s.text(22);
  t.slow_after_ms = s.int64(23);
  t.result = s.text(24);
  t.batch_id = s.int64(26);
  t.schedule = s.text(27);
  t.slot_ms = s.int64(28);
  t.item = s.text(29);
  auto isolation = isolation_from_json(s.text(30));
  if (!isolation) return make_error(Code::kCorruption, fmt::format("task {}: bad isolation", t.id));
  t.command.isolation = *isolation;
  if (!s.is_null(31)) {
    auto http = http_from_json(s.text(31));
    if (!http) return make_error(Code::kCorruption, fmt::format("task {}: bad http", t.id));
    t.command.http = std::move(*http);
  }
  t.pool = s.text(32);
  t.payload = s.text(33);
  return t;
}

Result<std::vector<Task>> SqliteStore::read_tasks(Stmt& stmt) {
  std::vector<Task> tasks;
  int rc;
  while ((rc = stmt.step()) == SQLITE_ROW) {
    auto task = read_task(stmt);
    if (!task) return std::unexpected(task.error());
    tasks.push_back(std::move(*task));
  }
  if (rc != SQLITE_DONE) return std::unexpected(db_->error("read tasks"));
  for (Task& t : tasks) {
    auto deps = db_->prepare("SELECT dep_id FROM task_deps WHERE task_id = ?1 ORDER BY dep_id");
    if (!deps) return std::unexpected(deps.error());
    deps->bind(1, t.id);
    while (deps->step() == SQLITE_ROW) t.depends_on.push_back(deps->int64(0));
  }
  return tasks;
}

Result<std::optional<Task>> SqliteStore::get_task(int64_t id) {
  static const std::string sql = fmt::format("SELECT {} FROM tasks WHERE id = ?1", kTaskColumns);
  auto stmt = db_->prepare(sql.c_str());
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, id);
  auto tasks = read_tasks(*stmt);
  if (!tasks) return std::unexpected(tasks.error());
  if (tasks->empty()) return std::optional<Task>();
  return std::optional<Task>(std::move(tasks->front()));
}

Result<std::vector<Task>> SqliteStore::list_tasks(const TaskFilter& f) {
  // One statement per index (the whole table, a batch, or a schedule's tasks) and order.
  static constexpr const char* kWhere =
      "(?2 IS NULL OR state = ?2) AND (?3 IS NULL OR queue = ?3) "
      "AND (?4 IS NULL OR json_extract(labels, '$.\"' || ?4 || '\"') = ?5) "
      "AND (?8 IS NULL OR pool = ?8)";
  auto sql = [](const char* scope, bool newest) {
    return fmt::format("SELECT {} FROM tasks WHERE {}{} AND {} ORDER BY id{} LIMIT ?6",
                       kTaskColumns, scope, newest ? "(?1 = 0 OR id < ?1)" : "id > ?1", kWhere,
                       newest ? " DESC" : "");
  };
  static const std::array<std::string, 6> statements = {sql("", false),
                                                        sql("", true),
                                                        sql("batch_id = ?7 AND ", false),
                                                        sql("batch_id = ?7 AND ", true),
                                                        sql("schedule = ?7 AND ", false),
                                                        sql("schedule = ?7 AND ", true)};
  bool newest = f.order == TaskFilter::Order::kNewestFirst;
  int scope = f.batch_id ? 1 : !f.schedule.empty() ? 2 : 0;
  auto stmt = db_->prepare(statements[scope * 2 + (newest ? 1 : 0)].c_str());
  if (!stmt) return std::unexpected(stmt.error());
  if (f.batch_id) stmt->bind(7, f.batch_id);
  if (!f.batch_id && !f.schedule.empty()) stmt->bind(7, f.schedule);
  stmt->bind(1, newest ? f.before_id : f.after_id);
  if (f.state) stmt->bind(2, state_name(*f.state));
  if (!f.queue.empty()) stmt->bind(3, f.queue);
  if (f.label) stmt->bind(4, f.label->first).bind(5, f.label->second);
  if (!f.pool.empty()) stmt->bind(8, f.pool);
  stmt->bind(6, int64_t{f.limit});
  return read_tasks(*stmt);
}

Result<std::vector<Attempt>> SqliteStore::list_attempts(int64_t task_id) {
  auto stmt = db_->prepare(
      "SELECT number, worker, started_at_ms, finished_at_ms, outcome, exit_code, signal, error "
      "FROM attempts WHERE task_id = ?1 "
      // The running attempt lives in the task's row until it ends, and one that succeeded
      // stays there (finish_attempt).
      "UNION ALL SELECT attempts, coalesce(worker, 0), started_at_ms, "
      "CASE WHEN state = 'succeeded' THEN finished_at_ms END, "
      "CASE WHEN state = 'succeeded' THEN 'succeeded' END, "
      "CASE WHEN state = 'succeeded' THEN exit_code END, "
      "CASE WHEN state = 'succeeded' THEN signal END, "
      "CASE WHEN state = 'succeeded' THEN error END "
      "FROM tasks WHERE id = ?1 AND state IN ('running', 'succeeded') AND attempts > 0 "
      "AND NOT EXISTS (SELECT 1 FROM attempts WHERE task_id = ?1 AND number = tasks.attempts) "
      "ORDER BY 1");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, task_id);
  std::vector<Attempt> attempts;
  while (stmt->step() == SQLITE_ROW) {
    Attempt a;
    a.task_id = task_id;
    a.number = static_cast<int>(stmt->int64(0));
    a.worker = stmt->int64(1);
    a.started_at_ms = stmt->int64(2);
    a.finished_at_ms = stmt->int64(3);
    a.outcome = stmt->text(4);
    a.exit_code = stmt->opt_int(5);
    a.signal = stmt->opt_int(6);
    a.error = stmt->text(7);
    attempts.push_back(std::move(a));
  }
  return attempts;
}

Result<std::vector<std::pair<int64_t, TaskState>>> SqliteStore::task_states(
    std::span<const int64_t> ids) {
  std::vector<std::pair<int64_t, TaskState>> states;
  for (int64_t id : ids) {
    auto stmt = db_->prepare("SELECT state FROM tasks WHERE id = ?1");
    if (!stmt) return std::unexpected(stmt.error());
    stmt->bind(1, id);
    if (stmt->step() == SQLITE_ROW) {
      auto state = parse_state(stmt->text(0));
      if (state) states.emplace_back(id, *state);
    }
  }
  return states;
}

Result<std::vector<Task>> SqliteStore::claim(std::string_view pool,
                                             std::span<const std::string> queues, int limit,
                                             int64_t worker, const std::string& token,
                                             int64_t now_ms) {
  // Up to `limit` heads of each queue, then the best win. The attempt itself gets its row in
  // `attempts` when it ends, and only if it does not succeed (finish_attempt).
  auto n = static_cast<size_t>(std::max(limit, 0));
  std::vector<Task> tasks;
  for (const std::string& queue : queues) {
    auto head = queued_head(pool, queue, n, n, SIZE_MAX);
    if (!head) return std::unexpected(head.error());
    std::move(head->begin(), head->end(), std::back_inserter(tasks));
  }
  if (queues.size() > 1) {
    std::sort(tasks.begin(), tasks.end(), [](const Task& a, const Task& b) {
      return a.priority != b.priority ? a.priority > b.priority : a.id < b.id;
    });
  }
  if (tasks.size() > n) tasks.resize(n);
  for (Task& t : tasks) {
    TRY(write_claim(t.id, worker, token, now_ms));
    mark_running(t, worker, token, now_ms);
  }
  return tasks;
}

Result<std::vector<Task>> SqliteStore::queued_head(std::string_view pool, const std::string& queue,
                                                   size_t need, size_t max_tasks,
                                                   size_t max_bytes) {
  // One index range (tasks_claim); without dependencies: a queued task's are met.
  static const std::string sql = fmt::format(
      "SELECT {} FROM tasks WHERE state = 'queued' AND pool = ?1 AND queue = ?2 "
      "ORDER BY priority DESC, id LIMIT ?3",
      kTaskColumns);
  auto stmt = db_->prepare(sql.c_str());
  if (!stmt) return std::unexpected(stmt.error());
  size_t limit = std::max(need, max_tasks);
  stmt->bind(1, pool).bind(2, queue).bind(3, static_cast<int64_t>(limit));
  return read_head(*stmt, limit, need, max_bytes);
}

Result<std::vector<Task>> SqliteStore::read_head(Stmt& stmt, size_t limit, size_t need,
                                                 size_t max_bytes) {
  std::vector<Task> tasks;
  tasks.reserve(std::min<size_t>(limit, 4096));  // a Task is large: no moves as it grows
  size_t bytes = 0;
  int rc;
  while ((rc = stmt.step()) == SQLITE_ROW) {
    auto task = read_task(stmt);
    if (!task) return std::unexpected(task.error());
    bytes += task_footprint(*task);
    tasks.push_back(std::move(*task));
    if (tasks.size() >= need && bytes >= max_bytes) break;
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return std::unexpected(db_->error("claim"));
  return tasks;
}

Result<std::vector<Task>> SqliteStore::queued_after(std::string_view pool, const std::string& queue,
                                                    int priority, int64_t id, size_t max_tasks,
                                                    size_t max_bytes) {
  // From the start of the queue's index range, but what lies before the position is skipped in
  // the index: only the rows after it are read.
  static const std::string sql = fmt::format(
      "SELECT {} FROM tasks WHERE state = 'queued' AND pool = ?1 AND queue = ?2 "
      "AND (priority < ?3 OR (priority = ?3 AND id > ?4)) "
      "ORDER BY priority DESC, id LIMIT ?5",
      kTaskColumns);
  auto stmt = db_->prepare(sql.c_str());
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, pool).bind(2, queue).bind(3, int64_t{priority}).bind(4, id);
  stmt->bind(5, static_cast<int64_t>(max_tasks));
  return read_head(*stmt, max_tasks, 0, max_bytes);
}

Status SqliteStore::write_claim(int64_t id, int64_t worker, const std::string& token,
                                int64_t started_at_ms) {
  auto stmt = db_->prepare(
      "UPDATE tasks SET state = 'running', attempts = attempts + 1, worker = ?2, token = ?3, "
      "started_at_ms = ?4, finished_at_ms = NULL, exit_code = NULL, signal = NULL, "
      "error = NULL WHERE id = ?1");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, id).bind(2, worker).bind_static(3, token).bind(4, started_at_ms);
  if (stmt->step() != SQLITE_DONE) return std::unexpected(db_->error("claim"));
  return {};
}

Status SqliteStore::cap_growth(int64_t pages) {
  auto count = db_->prepare("PRAGMA page_count");
  if (!count) return std::unexpected(count.error());
  if (count->step() != SQLITE_ROW) return std::unexpected(db_->error("page count"));
  std::string cap = fmt::format("PRAGMA max_page_count = {}", count->int64(0) + pages);
  count->step();
  return db_->exec(cap.c_str());
}

Status SqliteStore::finish_attempt(const AttemptEnd& e) {
  {
    // Handing an attempt back (running -> queued) does not count it against the task. A claim
    // not written yet is written here too (?11: 1, ?12, ?13).
    auto stmt = db_->prepare(
        "UPDATE tasks SET state = ?2, exit_code = ?3, signal = ?4, error = ?5, "
        "token = NULL, run_after_ms = ?6, "
        "started_at_ms = CASE WHEN ?7 THEN (CASE WHEN ?11 THEN ?13 ELSE started_at_ms END) "
        "ELSE NULL END, "
        "finished_at_ms = CASE WHEN ?7 THEN ?8 ELSE NULL END, "
        "max_attempts = max_attempts + ?9, "
        "result = CASE WHEN ?10 IS NULL THEN result ELSE ?10 END, "
        "attempts = attempts + ?11, worker = CASE WHEN ?11 THEN ?12 ELSE worker END "
        "WHERE id = ?1");
    if (!stmt) return std::unexpected(stmt.error());
    stmt->bind(11, int64_t{e.claim_unwritten}).bind(12, e.worker).bind(13, e.started_at_ms);
    bool terminal = is_terminal(e.to);
    stmt->bind(1, e.task_id).bind(2, state_name(e.to)).bind(3, e.exit_code).bind(4, e.signal);
    if (e.error.empty()) {
      stmt->bind_null(5);
    } else {
      stmt->bind(5, e.error);
    }
    stmt->bind(6, e.run_after_ms).bind(7, int64_t{terminal}).bind(8, e.finished_at_ms);
    stmt->bind(9, int64_t{e.handed_back});
    if (e.result.empty()) {
      stmt->bind_null(10);
    } else {
      stmt->bind(10, e.result);
    }
    if (stmt->step() != SQLITE_DONE) return std::unexpected(db_->error("finish attempt"));
  }
  // The attempt that succeeds stays in the task's row (as the running attempt did), read from
  // there by list_attempts and attempts_since: most tasks never get an attempts row.
  if (e.outcome == Outcome::kSucceeded && !e.handed_back) return {};
  // REPLACE: a store written by an older rota has a row for an attempt from its start.
  auto stmt = db_->prepare(
      "INSERT OR REPLACE INTO attempts (task_id, number, worker, started_at_ms, finished_at_ms, "
      "outcome, exit_code, signal, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, e.task_id).bind(2, int64_t{e.attempt}).bind(3, e.worker);
  stmt->bind(4, e.started_at_ms).bind(5, e.finished_at_ms);
  stmt->bind(6, e.handed_back ? "interrupted" : outcome_name(e.outcome));
  stmt->bind(7, e.exit_code).bind(8, e.signal).bind(9, e.error);
  if (stmt->step() != SQLITE_DONE) return std::unexpected(db_->error("finish attempt"));
  return {};
}

Status SqliteStore::move_task(int64_t id, TaskState to, int64_t now_ms) {
  auto stmt = db_->prepare(
      "UPDATE tasks SET state = ?2, finished_at_ms = CASE WHEN ?3 THEN ?4 ELSE NULL END "
      "WHERE id = ?1");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, id).bind(2, state_name(to)).bind(3, int64_t{is_terminal(to)}).bind(4, now_ms);
  if (stmt->step() != SQLITE_DONE) return std::unexpected(db_->error("move task"));
  return {};
}

Status SqliteStore::retry_task(int64_t id, TaskState to, int extra_attempts) {
  {
    // The attempt that succeeded leaves the task's row for a row of its own.
    auto keep = db_->prepare(
        "INSERT OR IGNORE INTO attempts (task_id, number, worker, started_at_ms, finished_at_ms, "
        "outcome, exit_code, signal, error) SELECT id, attempts, coalesce(worker, 0), "
        "started_at_ms, finished_at_ms, 'succeeded', exit_code, signal, error FROM tasks "
        "WHERE id = ?1 AND state = 'succeeded' AND attempts > 0");
    if (!keep) return std::unexpected(keep.error());
    keep->bind(1, id);
    if (keep->step() != SQLITE_DONE) return std::unexpected(db_->error("retry task"));
  }
  auto stmt = db_->prepare(
      "UPDATE tasks SET state = ?2, max_attempts = attempts + ?3, exit_code = NULL, "
      "signal = NULL, error = NULL, started_at_ms = NULL, finished_at_ms = NULL, "
      "run_after_ms = 0 WHERE id = ?1");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, id).bind(2, state_name(to)).bind(3, int64_t{extra_attempts});
  if (stmt->step() != SQLITE_DONE) return std::unexpected(db_->error("retry task"));
  return {};
}

Result<std::vector<int64_t>> SqliteStore::due_tasks(int64_t now_ms, int limit) {
  auto stmt = db_->prepare(
      "SELECT id FROM tasks WHERE state = 'scheduled' AND run_after_ms <= ?1 "
      "ORDER BY run_after_ms LIMIT ?2");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, now_ms).bind(2, int64_t{limit});
  std::vector<int64_t> ids;
  while (stmt->step() == SQLITE_ROW) ids.push_back(stmt->int64(0));
  return ids;
}

Result<std::optional<int64_t>> SqliteStore::next_run_after() {
  auto stmt = db_->prepare("SELECT min(run_after_ms) FROM tasks WHERE state = 'scheduled'");
  if (!stmt) return std::unexpected(stmt.error());
  if (stmt->step() != SQLITE_ROW || stmt->is_null(0)) return std::optional<int64_t>();
  return std::optional<int64_t>(stmt->int64(0));
}

Result<std::vector<std::pair<int64_t, TaskState>>> SqliteStore::dependents(int64_t id) {
  auto stmt = db_->prepare(
      "SELECT t.id, t.state FROM task_deps d JOIN tasks t ON t.id = d.task_id "
      "WHERE d.dep_id = ?1 ORDER BY t.id");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, id);
  std::vector<std::pair<int64_t, TaskState>> out;
  while (stmt->step() == SQLITE_ROW) {
    if (auto state = parse_state(stmt->text(1))) out.emplace_back(stmt->int64(0), *state);
  }
  return out;
}

Result<std::vector<TaskState>> SqliteStore::dependency_states(int64_t id) {
  auto stmt = db_->prepare(
      "SELECT t.state FROM task_deps d JOIN tasks t ON t.id = d.dep_id WHERE d.task_id = ?1");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, id);
  std::vector<TaskState> out;
  while (stmt->step() == SQLITE_ROW) {
    if (auto state = parse_state(stmt->text(0))) out.push_back(*state);
  }
  return out;
}

Result<std::vector<Task>> SqliteStore::tasks_in_state(TaskState state) {
  // Running tasks (what a restart reads) have an index of their own; it is a partial
  // index, which the planner uses only for the literal.
  static const std::string running_sql =
      fmt::format("SELECT {} FROM tasks WHERE state = 'running' ORDER BY id", kTaskColumns);
  static const std::string sql =
      fmt::format("SELECT {} FROM tasks WHERE state = ?1 ORDER BY id", kTaskColumns);
  bool running = state == TaskState::kRunning;
  auto stmt = db_->prepare(running ? running_sql.c_str() : sql.c_str());
  if (!stmt) return std::unexpected(stmt.error());
  if (!running) stmt->bind(1, state_name(state));
  return read_tasks(*stmt);
}

Result<std::vector<QueueStateCount>> SqliteStore::count_tasks() {
  auto stmt =
      db_->prepare("SELECT pool, queue, state, count(*) FROM tasks GROUP BY pool, queue, state");
  if (!stmt) return std::unexpected(stmt.error());
  std::vector<QueueStateCount> out;
  while (stmt->step() == SQLITE_ROW) {
    if (auto state = parse_state(stmt->text(2))) {
      out.push_back({stmt->text(0), stmt->text(1), *state, stmt->int64(3)});
    }
  }
  return out;
}

Result<std::vector<int64_t>> SqliteStore::clean(int64_t cutoff_ms) {
  std::vector<int64_t> ids;
  {
    auto stmt = db_->prepare(
        "DELETE FROM tasks WHERE finished_at_ms IS NOT NULL AND finished_at_ms <= ?1 "
        "AND state IN ('succeeded', 'failed', 'cancelled', 'skipped') RETURNING id");
    if (!stmt) return std::unexpected(stmt.error());
    stmt->bind(1, cutoff_ms);
    while (stmt->step() == SQLITE_ROW) ids.push_back(stmt->int64(0));
  }
  for (int64_t id : ids) {
    for (const char* sql : {"DELETE FROM attempts WHERE task_id = ?1",
                            "DELETE FROM task_deps WHERE task_id = ?1 OR dep_id = ?1"}) {
      auto stmt = db_->prepare(sql);
      if (!stmt) return std::unexpected(stmt.error());
      stmt->bind(1, id);
      if (stmt->step() != SQLITE_DONE) return std::unexpected(db_->error("clean"));
    }
  }
  return ids;
}

Result<std::vector<QueueInfo>> SqliteStore::list_queues() {
  auto stmt = db_->prepare("SELECT name, paused, max_running FROM queues ORDER BY name");
  if (!stmt) return std::unexpected(stmt.error());
  std::vector<QueueInfo> out;
  while (stmt->step() == SQLITE_ROW) {
    out.push_back({stmt->text(0), stmt->int64(1) != 0, static_cast<int>(stmt->int64(2))});
  }
  return out;
}

Status SqliteStore::put_queue(const QueueInfo& q) {
  auto stmt = db_->prepare(
      "INSERT INTO queues (name, paused, max_running) VALUES (?1, ?2, ?3) "
      "ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, "
      "max_running = excluded.max_running");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, q.name).bind(2, int64_t{q.paused}).bind(3, int64_t{q.limit});
  if (stmt->step() != SQLITE_DONE) return std::unexpected(db_->error("put queue"));
  return {};
}

Status SqliteStore::append_event(const Event& e) {
  pending_events_.push_back(e);
  if (!db_->in_transaction() || pending_events_.size() >= 1024) return flush_events();
  return {};
}

Status SqliteStore::flush_events() {
  static const RowsInsert insert(
      "INSERT INTO events (at_ms, kind, task_id, worker_id, from_state, to_state, detail) VALUES ",
      7);
  auto bind = [this](Stmt& stmt, int p, size_t i) {
    const Event& e = pending_events_[i];
    stmt.bind(p + 1, e.at_ms).bind(p + 2, e.kind);
    if (e.task_id) {
      stmt.bind(p + 3, e.task_id);
    } else {
      stmt.bind_null(p + 3);
    }
    if (e.worker_id) {
      stmt.bind(p + 4, e.worker_id);
    } else {
      stmt.bind_null(p + 4);
    }
    stmt.bind(p + 5, e.from).bind(p + 6, e.to).bind(p + 7, e.detail);
  };
  Status written = insert.run(*db_, "append event", pending_events_.size(), bind, [](size_t) {});
  pending_events_.clear();
  return written;
}

Result<std::vector<Event>> SqliteStore::list_events(int64_t after_id, int limit) {
  TRY(flush_events());
  auto stmt = db_->prepare(
      "SELECT at_ms, kind, coalesce(task_id, 0), coalesce(worker_id, 0), from_state, to_state, "
      "detail, id FROM events WHERE id > ?1 ORDER BY id LIMIT ?2");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, after_id).bind(2, int64_t{limit});
  std::vector<Event> out;
  while (stmt->step() == SQLITE_ROW) {
    out.push_back({stmt->int64(0), stmt->text(1), stmt->int64(2), stmt->int64(3), stmt->text(4),
                   stmt->text(5), stmt->text(6), stmt->int64(7)});
  }
  return out;
}

Result<int64_t> SqliteStore::last_event_id() {
  TRY(flush_events());
  auto stmt = db_->prepare("SELECT coalesce(max(id), 0) FROM events");
  if (!stmt) return std::unexpected(stmt.error());
  if (stmt->step() != SQLITE_ROW) return std::unexpected(db_->error("last event"));
  return stmt->int64(0);
}

Result<std::optional<std::tuple<int64_t, TaskState, int64_t>>> SqliteStore::find_unique(
    const std::string& key) {
  auto stmt = db_->prepare(
      "SELECT id, state, coalesce(finished_at_ms, 0) FROM tasks WHERE unique_key = ?1 "
      "ORDER BY id DESC LIMIT 1");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, key);
  using Found = std::optional<std::tuple<int64_t, TaskState, int64_t>>;
  if (stmt->step() != SQLITE_ROW) return Found();
  auto state = parse_state(stmt->text(1));
  if (!state) return Found();
  return Found(std::tuple{stmt->int64(0), *state, stmt->int64(2)});
}

Result<std::vector<AttemptRecord>> SqliteStore::attempts_since(int64_t since_ms) {
  auto stmt = db_->prepare(
      "SELECT a.task_id, a.number, a.worker, a.started_at_ms, a.finished_at_ms, a.outcome, "
      "t.queue, coalesce(t.shell, t.argv), t.labels, t.attempts, t.state, t.created_at_ms "
      "FROM attempts a JOIN tasks t ON t.id = a.task_id "
      "WHERE a.finished_at_ms IS NOT NULL AND a.finished_at_ms >= ?1 "
      // The attempts that succeeded, kept in their tasks' rows (finish_attempt).
      "UNION ALL SELECT t.id, t.attempts, coalesce(t.worker, 0), t.started_at_ms, "
      "t.finished_at_ms, 'succeeded', t.queue, coalesce(t.shell, t.argv), t.labels, t.attempts, "
      "t.state, t.created_at_ms FROM tasks t "
      "WHERE t.finished_at_ms IS NOT NULL AND t.finished_at_ms >= ?1 AND t.state = 'succeeded' "
      "AND t.attempts > 0 AND NOT EXISTS "
      "(SELECT 1 FROM attempts WHERE task_id = t.id AND number = t.attempts) "
      "ORDER BY 5");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, since_ms);
  std::vector<AttemptRecord> out;
  while (stmt->step() == SQLITE_ROW) {
    AttemptRecord r;
    r.task_id = stmt->int64(0);
    r.number = static_cast<int>(stmt->int64(1));
    r.worker = stmt->int64(2);
    r.started_at_ms = stmt->int64(3);
    r.finished_at_ms = stmt->int64(4);
    r.outcome = stmt->text(5);
    r.queue = stmt->text(6);
    r.command = stmt->text(7);
    if (!r.command.empty() && r.command.front() == '[') {  // argv: shown as one line
      try {
        std::string line;
        for (const auto& a : json::parse(r.command))
          line += (line.empty() ? "" : " ") + a.get<std::string>();
        r.command = line;
      } catch (const json::exception&) {
      }
    }
    if (!stmt->is_null(8)) {
      try {
        r.labels = json::parse(stmt->text(8)).get<Labels>();
      } catch (const json::exception&) {
      }
    }
    r.task_attempts = static_cast<int>(stmt->int64(9));
    r.task_state = parse_state(stmt->text(10)).value_or(TaskState::kQueued);
    r.created_at_ms = stmt->int64(11);
    out.push_back(std::move(r));
  }
  return out;
}

Result<int64_t> SqliteStore::count_attempts(int64_t task_id, Outcome outcome) {
  auto stmt = db_->prepare("SELECT count(*) FROM attempts WHERE task_id = ?1 AND outcome = ?2");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, task_id).bind(2, outcome_name(outcome));
  if (stmt->step() != SQLITE_ROW) return std::unexpected(db_->error("count attempts"));
  return stmt->int64(0);
}

Result<std::vector<int64_t>> SqliteStore::suspect_tasks() {
  // Attempts that are not succeeded have rows of their own; a table scan of them, at start.
  auto stmt = db_->prepare(
      "SELECT DISTINCT a.task_id FROM attempts a JOIN tasks t ON t.id = a.task_id "
      "WHERE a.outcome = 'worker_lost_shared' "
      "AND t.state IN ('waiting', 'scheduled', 'queued', 'running') "
      "AND NOT EXISTS (SELECT 1 FROM attempts b WHERE b.task_id = a.task_id "
      "AND b.number > a.number "
      "AND b.outcome NOT IN ('worker_lost_shared', 'worker_lost', 'interrupted')) "
      "ORDER BY a.task_id");
  if (!stmt) return std::unexpected(stmt.error());
  std::vector<int64_t> ids;
  int rc;
  while ((rc = stmt->step()) == SQLITE_ROW) ids.push_back(stmt->int64(0));
  if (rc != SQLITE_DONE) return std::unexpected(db_->error("suspect tasks"));
  return ids;
}

Result<std::optional<std::string>> SqliteStore::get_setting(const std::string& key) {
  auto stmt = db_->prepare("SELECT value FROM meta WHERE key = ?1");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, "setting." + key);
  if (stmt->step() != SQLITE_ROW) return std::optional<std::string>();
  return std::optional<std::string>(stmt->text(0));
}

Status SqliteStore::put_setting(const std::string& key, const std::string& value) {
  auto stmt = db_->prepare(
      "INSERT INTO meta (key, value) VALUES (?1, ?2) "
      "ON CONFLICT (key) DO UPDATE SET value = excluded.value");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, "setting." + key).bind(2, value);
  if (stmt->step() != SQLITE_DONE) return std::unexpected(db_->error("put setting"));
  return {};
}

Result<int64_t> SqliteStore::next_worker_id() {
  auto stmt = db_->prepare(
      "INSERT INTO meta (key, value) VALUES ('last_worker_id', '1') "
      "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1 RETURNING value");
  if (!stmt) return std::unexpected(stmt.error());
  if (stmt->step() != SQLITE_ROW) return std::unexpected(db_->error("next worker id"));
  int64_t id = std::stoll(stmt->text(0));
  stmt->step();
  return id;
}

Result<int64_t> SqliteStore::next_batch_id() {
  auto stmt = db_->prepare(
      "INSERT INTO meta (key, value) VALUES ('last_batch_id', '1') "
      "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1 RETURNING value");
  if (!stmt) return std::unexpected(stmt.error());
  if (stmt->step() != SQLITE_ROW) return std::unexpected(db_->error("next batch id"));
  int64_t id = std::stoll(stmt->text(0));
  stmt->step();
  return id;
}

Result<std::vector<ScheduleRecord>> SqliteStore::list_schedules() {
  auto stmt = db_->prepare(
      "SELECT name, definition, paused, created_at_ms, next_slot_ms, pending, cycle, cursor, "
      "items FROM schedules ORDER BY name");
  if (!stmt) return std::unexpected(stmt.error());
  std::vector<ScheduleRecord> out;
  int rc;
  while ((rc = stmt->step()) == SQLITE_ROW) {
    out.push_back({.name = stmt->text(0),
                   .definition = stmt->text(1),
                   .paused = stmt->int64(2) != 0,
                   .created_at_ms = stmt->int64(3),
                   .next_slot_ms = stmt->int64(4),
                   .pending = stmt->int64(5),
                   .cycle = stmt->int64(6),
                   .cursor = stmt->int64(7),
                   .items = stmt->text(8)});
  }
  if (rc != SQLITE_DONE) return std::unexpected(db_->error("list schedules"));
  return out;
}

Status SqliteStore::put_schedule(const ScheduleRecord& s) {
  auto stmt = db_->prepare(
      "INSERT OR REPLACE INTO schedules (name, definition, paused, created_at_ms, next_slot_ms, "
      "pending, cycle, cursor, items) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, s.name).bind(2, s.definition).bind(3, int64_t{s.paused});
  stmt->bind(4, s.created_at_ms).bind(5, s.next_slot_ms).bind(6, s.pending);
  stmt->bind(7, s.cycle).bind(8, s.cursor).bind(9, s.items);
  if (stmt->step() != SQLITE_DONE) return std::unexpected(db_->error("put schedule"));
  return {};
}

Status SqliteStore::delete_schedule(const std::string& name) {
  auto stmt = db_->prepare("DELETE FROM schedules WHERE name = ?1");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, name);
  if (stmt->step() != SQLITE_DONE) return std::unexpected(db_->error("delete schedule"));
  return {};
}

Result<std::vector<std::pair<std::string, int64_t>>> SqliteStore::unfinished_schedule_tasks() {
  auto stmt = db_->prepare(
      "SELECT schedule, id FROM tasks WHERE schedule IS NOT NULL "
      "AND state NOT IN ('succeeded', 'failed', 'cancelled', 'skipped')");
  if (!stmt) return std::unexpected(stmt.error());
  std::vector<std::pair<std::string, int64_t>> out;
  int rc;
  while ((rc = stmt->step()) == SQLITE_ROW) out.emplace_back(stmt->text(0), stmt->int64(1));
  if (rc != SQLITE_DONE) return std::unexpected(db_->error("unfinished schedule tasks"));
  return out;
}

Result<std::vector<ItemRun>> SqliteStore::item_runs(const std::string& schedule) {
  auto stmt = db_->prepare(
      "SELECT item, id, state, started_at_ms, finished_at_ms FROM tasks WHERE id IN "
      "(SELECT max(id) FROM tasks WHERE schedule = ?1 GROUP BY item) ORDER BY item");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, schedule);
  std::vector<ItemRun> out;
  int rc;
  while ((rc = stmt->step()) == SQLITE_ROW) {
    auto state = parse_state(stmt->text(2));
    if (!state) return make_error(Code::kCorruption, "item runs: bad task state");
    out.push_back({.item = stmt->text(0),
                   .task_id = stmt->int64(1),
                   .state = *state,
                   .started_at_ms = stmt->int64(3),
                   .finished_at_ms = stmt->int64(4)});
  }
  if (rc != SQLITE_DONE) return std::unexpected(db_->error("item runs"));
  return out;
}

Result<std::vector<Task>> SqliteStore::recent_schedule_tasks(const std::string& schedule,
                                                             int limit) {
  static const std::string sql = fmt::format(
      "SELECT {} FROM tasks WHERE schedule = ?1 ORDER BY id DESC LIMIT ?2", kTaskColumns);
  auto stmt = db_->prepare(sql.c_str());
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, schedule).bind(2, int64_t{limit});
  return read_tasks(*stmt);
}

Result<std::vector<PoolRecord>> SqliteStore::list_pools() {
  auto stmt = db_->prepare("SELECT name, definition, created_at_ms FROM pools ORDER BY name");
  if (!stmt) return std::unexpected(stmt.error());
  std::vector<PoolRecord> out;
  int rc;
  while ((rc = stmt->step()) == SQLITE_ROW) {
    out.push_back({stmt->text(0), stmt->text(1), stmt->int64(2)});
  }
  if (rc != SQLITE_DONE) return std::unexpected(db_->error("list pools"));
  return out;
}

Status SqliteStore::put_pool(const PoolRecord& p) {
  auto stmt = db_->prepare(
      "INSERT OR REPLACE INTO pools (name, definition, created_at_ms) VALUES (?1, ?2, ?3)");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, p.name).bind(2, p.definition).bind(3, p.created_at_ms);
  if (stmt->step() != SQLITE_DONE) return std::unexpected(db_->error("put pool"));
  return {};
}

Status SqliteStore::delete_pool(const std::string& name) {
  auto stmt = db_->prepare("DELETE FROM pools WHERE name = ?1");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, name);
  if (stmt->step() != SQLITE_DONE) return std::unexpected(db_->error("delete pool"));
  return {};
}

Result<std::vector<WatchRecord>> SqliteStore::list_watches() {
  auto stmt = db_->prepare("SELECT name, definition, created_at_ms FROM watches ORDER BY name");
  if (!stmt) return std::unexpected(stmt.error());
  std::vector<WatchRecord> out;
  int rc;
  while ((rc = stmt->step()) == SQLITE_ROW) {
    out.push_back({stmt->text(0), stmt->text(1), stmt->int64(2)});
  }
  if (rc != SQLITE_DONE) return std::unexpected(db_->error("list watches"));
  return out;
}

Status SqliteStore::put_watch(const WatchRecord& w) {
  auto stmt = db_->prepare(
      "INSERT OR REPLACE INTO watches (name, definition, created_at_ms) VALUES (?1, ?2, ?3)");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, w.name).bind(2, w.definition).bind(3, w.created_at_ms);
  if (stmt->step() != SQLITE_DONE) return std::unexpected(db_->error("put watch"));
  return {};
}

Status SqliteStore::delete_watch(const std::string& name) {
  auto stmt = db_->prepare("DELETE FROM watches WHERE name = ?1");
  if (!stmt) return std::unexpected(stmt.error());
  stmt->bind(1, name);
  if (stmt->step() != SQLITE_DONE) return std::unexpected(db_->error("delete watch"));
  return {};
}

}  // namespace rota
