// Numbered schema migrations. A migration, once released, never changes: add a new one.
#pragma once

#include <span>

namespace rota {

struct Migration {
  int version;
  const char* sql;
};

std::span<const Migration> sqlite_migrations();

}  // namespace rota
