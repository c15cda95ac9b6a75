#include "store/migrations.h"

#include <array>

namespace rota {

namespace {

constexpr std::array kSqliteMigrations = {
    Migration{1, R"sql(
CREATE TABLE envs (
  id INTEGER PRIMARY KEY,
  vars TEXT NOT NULL UNIQUE
);
CREATE TABLE tasks (
  id INTEGER PRIMARY KEY,
  state TEXT NOT NULL,
  queue TEXT NOT NULL,
  priority INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL,
  backoff_base_ms INTEGER NOT NULL,
  backoff_max_ms INTEGER NOT NULL,
  timeout_ms INTEGER NOT NULL DEFAULT 0,
  run_after_ms INTEGER NOT NULL DEFAULT 0,
  argv TEXT,
  shell TEXT,
  cwd TEXT NOT NULL,
  env_id INTEGER NOT NULL,
  labels TEXT,
  exit_code INTEGER,
  signal INTEGER,
  error TEXT,
  created_at_ms INTEGER NOT NULL,
  started_at_ms INTEGER,
  finished_at_ms INTEGER,
  worker INTEGER,
  token TEXT
);
CREATE INDEX tasks_claim ON tasks (state, queue, priority DESC, id);
CREATE INDEX tasks_scheduled ON tasks (run_after_ms) WHERE state = 'scheduled';
CREATE INDEX tasks_finished ON tasks (finished_at_ms) WHERE finished_at_ms IS NOT NULL;
CREATE TABLE task_deps (
  task_id INTEGER NOT NULL,
  dep_id INTEGER NOT NULL,
  PRIMARY KEY (task_id, dep_id)
) WITHOUT ROWID;
CREATE INDEX task_deps_dep ON task_deps (dep_id);
CREATE TABLE attempts (
  task_id INTEGER NOT NULL,
  number INTEGER NOT NULL,
  worker INTEGER NOT NULL,
  started_at_ms INTEGER NOT NULL,
  finished_at_ms INTEGER,
  outcome TEXT,
  exit_code INTEGER,
  signal INTEGER,
  error TEXT,
  PRIMARY KEY (task_id, number)
) WITHOUT ROWID;
CREATE TABLE queues (
  name TEXT PRIMARY KEY,
  paused INTEGER NOT NULL DEFAULT 0,
  max_running INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE events (
  id INTEGER PRIMARY KEY,
  at_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,
  task_id INTEGER,
  worker_id INTEGER,
  from_state TEXT,
  to_state TEXT,
  detail TEXT
);
)sql"},
    Migration{2, R"sql(
ALTER TABLE tasks ADD COLUMN slow_after_ms INTEGER NOT NULL DEFAULT 0;
CREATE INDEX attempts_outcome ON attempts (task_id, outcome);
)sql"},
    Migration{3, R"sql(
CREATE INDEX attempts_finished ON attempts (finished_at_ms) WHERE finished_at_ms IS NOT NULL;
)sql"},
    Migration{4, R"sql(
ALTER TABLE tasks ADD COLUMN unique_key TEXT;
CREATE INDEX tasks_unique ON tasks (unique_key, id) WHERE unique_key IS NOT NULL;
)sql"},
    Migration{5, R"sql(
ALTER TABLE tasks ADD COLUMN result TEXT;
)sql"},
    Migration{6, R"sql(
ALTER TABLE tasks ADD COLUMN vars TEXT;
ALTER TABLE tasks ADD COLUMN batch_id INTEGER;
ALTER TABLE tasks ADD COLUMN schedule TEXT;
ALTER TABLE tasks ADD COLUMN slot_ms INTEGER;
ALTER TABLE tasks ADD COLUMN item TEXT;
ALTER TABLE tasks ADD COLUMN isolation TEXT;
ALTER TABLE tasks ADD COLUMN http TEXT;
CREATE INDEX tasks_batch ON tasks (batch_id, id) WHERE batch_id IS NOT NULL;
CREATE INDEX tasks_schedule ON tasks (schedule, id) WHERE schedule IS NOT NULL;
CREATE INDEX tasks_schedule_item ON tasks (schedule, item, id) WHERE schedule IS NOT NULL;
CREATE UNIQUE INDEX tasks_schedule_slot ON tasks (schedule, slot_ms, item)
  WHERE schedule IS NOT NULL;
CREATE TABLE schedules (
  name TEXT PRIMARY KEY,
  definition TEXT NOT NULL,
  paused INTEGER NOT NULL DEFAULT 0,
  created_at_ms INTEGER NOT NULL,
  next_slot_ms INTEGER NOT NULL,
  pending INTEGER NOT NULL DEFAULT 0,
  cycle INTEGER NOT NULL DEFAULT 0,
  cursor INTEGER NOT NULL DEFAULT 0,
  items TEXT
);
CREATE TABLE watches (
  name TEXT PRIMARY KEY,
  definition TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL
);
)sql"},
    Migration{7, R"sql(
ALTER TABLE tasks ADD COLUMN pool TEXT NOT NULL DEFAULT 'commands';
ALTER TABLE tasks ADD COLUMN payload TEXT;
DROP INDEX tasks_claim;
CREATE INDEX tasks_claim ON tasks (state, pool, queue, priority DESC, id);
CREATE TABLE pools (
  name TEXT PRIMARY KEY,
  definition TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL
);
)sql"},
    // count_attempts finds a task's few attempts by the primary key's prefix; the index cost
    // every attempt one more insert.
    Migration{8, R"sql(
DROP INDEX attempts_outcome;
)sql"},
    // The claim index holds only queued tasks: a task that starts leaves it, and one that
    // ends touches no claim index at all (the whole-table index cost every task two moves).
    // Running tasks, which a restart reads, have their own small index.
    Migration{9, R"sql(
DROP INDEX tasks_claim;
CREATE INDEX tasks_claim ON tasks (pool, queue, priority DESC, id) WHERE state = 'queued';
CREATE INDEX tasks_running ON tasks (id) WHERE state = 'running';
)sql"},
};

}  // namespace

std::span<const Migration> sqlite_migrations() { return kSqliteMigrations; }

}  // namespace rota
