// The first queued tasks of each (pool, queue), read ahead of the claims that take them.
//
// A claim that reads its tasks from the store reads a few rows each time, and then writes each
// of them as running; the heads let the store read a queue's next tasks once for many claims
// and hand them out from memory (SqliteStore::claim). They hold copies of queued rows, so the
// store keeps them in step with every write that puts a task in a queue or takes one out.
//
// Invariant: a held head is the first tasks of its queue in claim order (priority, highest
// first, then id), none of them claimed; it may end before the queue does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/task.h"

namespace rota {

// About how much memory a task takes: what bounds a head besides its number of tasks.
size_t task_footprint(const Task& task);

class QueueHeads {
 public:
  // A head holds at most `max_tasks` tasks, and no more than one once it holds `max_bytes`.
  QueueHeads(size_t max_tasks, size_t max_bytes) : max_tasks_(max_tasks), max_bytes_(max_bytes) {}

  size_t max_tasks() const { return max_tasks_; }
  size_t max_bytes() const { return max_bytes_; }
  // How many tasks the head of (pool, queue) holds; 0 when none is held.
  size_t size(std::string_view pool, std::string_view queue) const;
  // Holds `tasks` as the head of (pool, queue), replacing what it held; `whole`: they are
  // all the queue holds.
  // REQUIRES: `tasks` are the queue's first queued tasks, in claim order.
  void replace(const std::string& pool, const std::string& queue, std::vector<Task> tasks,
               bool whole);
  // Whether the head holds its whole queue: then nothing follows it to be read.
  bool whole(std::string_view pool, std::string_view queue) const;
  // A task joined the queue after the head's end (one that sorts into it goes in instead).
  void grew(std::string_view pool, std::string_view queue);
  // Whether a task that has just become queued belongs in a held head: it sorts before the
  // head's last task. One that sorts after it is read with the rest of the queue later.
  bool sorts_into(std::string_view pool, std::string_view queue, int priority, int64_t id) const;
  // Puts a task that has just become queued in its place (unless the head holds it already);
  // the head's last tasks make room. REQUIRES: sorts_into() said so.
  void insert(Task task);
  // Forgets a task that left its queue other than by a claim (cancelled, say). False if no
  // head held it.
  bool erase(int64_t id);
  // Takes up to `limit` of the best tasks across the heads of `queues`.
  std::vector<Task> take(std::string_view pool, std::span<const std::string> queues, size_t limit);

  // A read of the tasks that follow a head, made while claims go on: note the mark and the
  // head's last task when the read is asked for, and append what it read once it comes. False,
  // and the head unchanged, if anything but a claim happened to any queue since the mark (a
  // task joined, left or was read again: the read may be out of date).
  struct Mark {
    uint64_t changes = 0;
  };
  Mark mark() const { return Mark{changes_}; }
  // The last task of the head as (priority, id): where a read of what follows starts. None
  // if no head is held, or it is empty.
  std::optional<std::pair<int, int64_t>> last(std::string_view pool, std::string_view queue) const;
  bool append(const std::string& pool, const std::string& queue, Mark at, std::vector<Task> more,
              bool whole);
  void clear();
  bool empty() const { return heads_.empty(); }

 private:
  using Key = std::pair<std::string, std::string>;
  struct Head {
    std::deque<Task> tasks;
    size_t bytes = 0;
    bool whole = false;
  };
  const Head* find(std::string_view pool, std::string_view queue) const;
  void push(Head& head, const Key& key, std::deque<Task>::iterator at, Task task);
  void pop_back(Head& head);

  size_t max_tasks_;
  size_t max_bytes_;
  std::map<Key, Head> heads_;
  std::unordered_map<int64_t, Key> held_;  // task id -> the head that holds it
  // Everything but claims that happened to the queues so far; never reset (clear() too counts),
  // so that a mark can only match the heads it was taken of.
  uint64_t changes_ = 0;
};

}  // namespace rota
