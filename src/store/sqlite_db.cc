#include "store/sqlite_db.h"

#include <fmt/format.h>

#include <memory>

namespace rota {

Stmt::~Stmt() {
  if (!stmt_) return;
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

Stmt& Stmt::bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

Stmt& Stmt::bind(int index, std::string_view value) {
  sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_TRANSIENT);
  return *this;
}

Stmt& Stmt::bind_static(int index, std::string_view value) {
  sqlite3_bind_text(stmt_, index, value.data(), static_cast<int>(value.size()), SQLITE_STATIC);
  return *this;
}

Stmt& Stmt::bind(int index, std::optional<int> value) {
  if (value) return bind(index, static_cast<int64_t>(*value));
  return bind_null(index);
}

Stmt& Stmt::bind_null(int index) {
  sqlite3_bind_null(stmt_, index);
  return *this;
}

int Stmt::step() { return sqlite3_step(stmt_); }

std::optional<int> Stmt::opt_int(int col) const {
  if (is_null(col)) return std::nullopt;
  return sqlite3_column_int(stmt_, col);
}

std::string Stmt::text(int col) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
  return p ? std::string(p, sqlite3_column_bytes(stmt_, col)) : std::string();
}

SqliteDb::~SqliteDb() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);
}

Result<std::unique_ptr<SqliteDb>> SqliteDb::open(const std::string& path, int flags) {
  // Before SQLite initializes (with the first open): no memory statistics, which rota never
  // reads and which cost a global mutex on every allocation.
  static const bool configured = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) == SQLITE_OK;
  (void)configured;
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    Code code =
        (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) ? Code::kCorruption : Code::kUnavailable;
    return make_error(code, fmt::format("{}: {}", path, message));
  }
  sqlite3_extended_result_codes(db, 0);
  // More of the small allocations of a statement's run come from the connection's own slots.
  sqlite3_db_config(db, SQLITE_DBCONFIG_LOOKASIDE, nullptr, 1200, 512);
  return std::unique_ptr<SqliteDb>(new SqliteDb(db));
}

Error SqliteDb::error(std::string_view what) const {
  int rc = sqlite3_errcode(db_);
  Code code = (rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB) ? Code::kCorruption : Code::kInternal;
  return Error{code, fmt::format("{}: {}", what, sqlite3_errmsg(db_)), {}};
}

Status SqliteDb::exec(const char* sql) {
  char* message = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &message) != SQLITE_OK) {
    Error e = error("sqlite");
    if (message) {
      e.message = message;
      sqlite3_free(message);
    }
    return std::unexpected(e);
  }
  return {};
}

Status SqliteDb::run(const char* sql) {
  auto stmt = prepare(sql);
  if (!stmt) return std::unexpected(stmt.error());
  if (stmt->step() != SQLITE_DONE) return std::unexpected(error("sqlite"));
  return {};
}

Result<Stmt> SqliteDb::prepare(const char* sql) {
  auto it = cache_.find(sql);
  if (it != cache_.end()) return Stmt(it->second);
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
    return std::unexpected(error(fmt::format("prepare \"{}\"", sql)));
  }
  cache_.emplace(sql, stmt);
  return Stmt(stmt);
}

}  // namespace rota
