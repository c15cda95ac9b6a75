// A thin RAII layer over the SQLite C API: a connection with a cache of prepared statements.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/error.h"

namespace rota {

// A prepared statement, reset and cleared of bindings when the Stmt goes out of scope.
class Stmt {
 public:
  explicit Stmt(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~Stmt();
  Stmt(Stmt&& other) noexcept : stmt_(other.stmt_) { other.stmt_ = nullptr; }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int index, int64_t value);
  Stmt& bind(int index, std::string_view value);
  // Binds without a copy. REQUIRES: `value` outlives the statement's next step().
  Stmt& bind_static(int index, std::string_view value);
  Stmt& bind(int index, std::optional<int> value);
  Stmt& bind_null(int index);

  // SQLITE_ROW, SQLITE_DONE, or an error code.
  int step();
  int64_t int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::optional<int> opt_int(int col) const;
  std::string text(int col) const;
  bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }

 private:
  sqlite3_stmt* stmt_;
};

class SqliteDb {
 public:
  ~SqliteDb();
  // Opens `path` with SQLITE_OPEN_* `flags`.
  static Result<std::unique_ptr<SqliteDb>> open(const std::string& path, int flags);

  Status exec(const char* sql);
  // Runs one statement without parameters from the statement cache (`sql` as for prepare):
  // what the hot path uses for BEGIN and COMMIT.
  Status run(const char* sql);
  // Returns a cached prepared statement for `sql`, which must be a string literal.
  Result<Stmt> prepare(const char* sql);
  Error error(std::string_view what) const;
  int64_t last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }
  int changes() const { return sqlite3_changes(db_); }
  bool in_transaction() const { return sqlite3_get_autocommit(db_) == 0; }

 private:
  explicit SqliteDb(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::unordered_map<const char*, sqlite3_stmt*> cache_;
};

}  // namespace rota
