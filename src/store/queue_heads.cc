#include "store/queue_heads.h"

#include <algorithm>

namespace rota {
namespace {

// Claim order: the highest priority first, then the oldest.
bool before(int priority, int64_t id, const Task& t) {
  return priority != t.priority ? priority > t.priority : id < t.id;
}

bool claimed_before(const Task& a, const Task& b) { return before(a.priority, a.id, b); }

}  // namespace

size_t task_footprint(const Task& task) {
  size_t bytes = sizeof(Task) + task.payload.size() + task.command.shell.size();
  for (const std::string& arg : task.command.argv) bytes += arg.size();
  return bytes;
}

const QueueHeads::Head* QueueHeads::find(std::string_view pool, std::string_view queue) const {
  auto it = heads_.find(Key(pool, queue));
  return it == heads_.end() ? nullptr : &it->second;
}

size_t QueueHeads::size(std::string_view pool, std::string_view queue) const {
  const Head* head = find(pool, queue);
  return head ? head->tasks.size() : 0;
}

void QueueHeads::push(Head& head, const Key& key, std::deque<Task>::iterator at, Task task) {
  held_[task.id] = key;
  head.bytes += task_footprint(task);
  head.tasks.insert(at, std::move(task));
}

void QueueHeads::pop_back(Head& head) {
  held_.erase(head.tasks.back().id);
  head.bytes -= task_footprint(head.tasks.back());
  head.tasks.pop_back();
}

void QueueHeads::replace(const std::string& pool, const std::string& queue, std::vector<Task> tasks,
                         bool whole) {
  Key key(pool, queue);
  Head& head = heads_[key];
  while (!head.tasks.empty()) pop_back(head);
  for (Task& t : tasks) push(head, key, head.tasks.end(), std::move(t));
  head.whole = whole;
  ++changes_;
}

bool QueueHeads::whole(std::string_view pool, std::string_view queue) const {
  const Head* head = find(pool, queue);
  return head && head->whole;
}

void QueueHeads::grew(std::string_view pool, std::string_view queue) {
  ++changes_;
  if (auto it = heads_.find(Key(pool, queue)); it != heads_.end()) it->second.whole = false;
}

std::optional<std::pair<int, int64_t>> QueueHeads::last(std::string_view pool,
                                                        std::string_view queue) const {
  const Head* head = find(pool, queue);
  if (!head || head->tasks.empty()) return std::nullopt;
  return std::pair{head->tasks.back().priority, head->tasks.back().id};
}

bool QueueHeads::append(const std::string& pool, const std::string& queue, Mark at,
                        std::vector<Task> more, bool whole) {
  auto it = heads_.find(Key(pool, queue));
  if (it == heads_.end() || changes_ != at.changes) return false;
  Head& head = it->second;
  for (Task& t : more) push(head, it->first, head.tasks.end(), std::move(t));
  head.whole = whole;
  return true;
}

bool QueueHeads::sorts_into(std::string_view pool, std::string_view queue, int priority,
                            int64_t id) const {
  const Head* head = find(pool, queue);
  return head && !head->tasks.empty() && before(priority, id, head->tasks.back());
}

void QueueHeads::insert(Task task) {
  ++changes_;
  if (held_.contains(task.id)) return;
  Key key(task.pool, task.queue);
  Head& head = heads_[key];
  auto at = std::upper_bound(head.tasks.begin(), head.tasks.end(), task, claimed_before);
  push(head, key, at, std::move(task));
  // What is cut off the end is still queued in the store: the next read ahead finds it.
  while (head.tasks.size() > 1 && (head.tasks.size() > max_tasks_ || head.bytes > max_bytes_)) {
    pop_back(head);
  }
}

bool QueueHeads::erase(int64_t id) {
  ++changes_;  // held or not: a read under way may still see it queued
  auto held = held_.find(id);
  if (held == held_.end()) return false;
  Head& head = heads_[held->second];
  held_.erase(held);
  auto it = std::find_if(head.tasks.begin(), head.tasks.end(),
                         [id](const Task& t) { return t.id == id; });
  if (it != head.tasks.end()) {
    head.bytes -= task_footprint(*it);
    head.tasks.erase(it);
  }
  return true;
}

std::vector<Task> QueueHeads::take(std::string_view pool, std::span<const std::string> queues,
                                   size_t limit) {
  std::vector<Head*> from;
  for (const std::string& queue : queues) {
    auto it = heads_.find(Key(pool, queue));
    if (it != heads_.end() && !it->second.tasks.empty()) from.push_back(&it->second);
  }
  std::vector<Task> out;
  out.reserve(limit);
  while (out.size() < limit) {
    Head* best = nullptr;
    for (Head* head : from) {
      if (!head->tasks.empty() &&
          (!best || claimed_before(head->tasks.front(), best->tasks.front()))) {
        best = head;
      }
    }
    if (!best) break;
    Task& t = best->tasks.front();
    held_.erase(t.id);
    best->bytes -= task_footprint(t);
    out.push_back(std::move(t));
    best->tasks.pop_front();
  }
  return out;
}

void QueueHeads::clear() {
  heads_.clear();
  held_.clear();
  ++changes_;
}

}  // namespace rota
