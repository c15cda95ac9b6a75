#include "daemon/scheduler.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>

#include "api/task_json.h"
#include "core/duration.h"

namespace rota {
namespace asio = boost::asio;
using nlohmann::json;

#define TRY(expr) \
  if (auto r_ = (expr); !r_) return std::unexpected(r_.error())

namespace {

// A wall-clock jump (or a suspended machine) is noticed within this long.
constexpr int64_t kMaxSleepMs = 60'000;
// --catch-up all fires at most this many missed slots.
constexpr size_t kMaxCatchUp = 1000;
constexpr int kRecentRuns = 10;
constexpr int kRateWindow = 100;

Error not_found(const std::string& name) {
  return Error{Code::kNotFound, fmt::format("no schedule named \"{}\"", name), "name"};
}

}  // namespace

Scheduler::Scheduler(asio::io_context& io, Store& store, Committer& committer, Engine& engine,
                     const Clock& clock)
    : io_(io),
      store_(store),
      committer_(committer),
      engine_(engine),
      clock_(clock),
      timer_(io),
      rng_(std::random_device{}()) {
  engine_.on_task_finished(
      [this](int64_t task, TaskState state) { on_task_finished(task, state); });
}

Status Scheduler::recover() {
  auto records = store_.list_schedules();
  if (!records) return std::unexpected(records.error());
  for (ScheduleRecord& r : *records) {
    // One schedule that no longer makes sense (its time zone gone, its cwd removed) must not
    // keep the daemon from starting: it is set aside, said, and can still be removed.
    auto def = schedule_def_from_json(json::parse(r.definition, nullptr, false));
    auto timing = def ? Timing::make(*def, r.created_at_ms) : std::unexpected(def.error());
    if (!timing) {
      spdlog::error("schedule {} not started: {}", r.name, timing.error().message);
      record(r.name, "not started: " + timing.error().message);
      broken_.insert(r.name);
      continue;
    }
    Live s{.record = std::move(r), .def = std::move(*def), .timing = std::move(*timing)};
    s.due_ms = s.record.next_slot_ms;
    schedules_.emplace(s.record.name, std::move(s));
  }
  auto unfinished = store_.unfinished_schedule_tasks();
  if (!unfinished) return std::unexpected(unfinished.error());
  for (auto& [name, task] : *unfinished) {
    if (Live* s = find(name)) {
      s->active.insert(task);
      task_schedule_[task] = name;
    }
  }
  // Slots missed while the daemon was down, by each schedule's --catch-up.
  int64_t now = clock_.now_ms();
  for (auto& [name, s] : schedules_) {
    if (s.record.paused || s.record.next_slot_ms == 0 || s.record.next_slot_ms > now) continue;
    auto missed = missed_slots(s.timing, s.record.next_slot_ms, now, kMaxCatchUp);
    if (missed.empty()) continue;
    record(name, fmt::format("the daemon was down across {} firing(s); --catch-up {}",
                             missed.size(), catch_up_name(s.def.catch_up)));
    if (s.def.catch_up == CatchUp::kOne) missed.erase(missed.begin(), missed.end() - 1);
    if (s.def.catch_up == CatchUp::kNone) missed.clear();
    for (size_t i = 0; i < missed.size(); ++i) {
      if (i > 0 && s.def.overlap == Overlap::kSkip) {
        // --catch-up all fires every missed slot, one after another: skip would drop them.
        s.record.pending += static_cast<int64_t>(missed.size() - i);
        break;
      }
      if (auto r = fire(s, missed[i], false); !r) {
        spdlog::error("schedule {}: catching up: {}", name, r.error().message);
        record(name, "catching up failed: " + r.error().message);
        break;
      }
    }
    TRY(advance(s, now));
  }
  arm();
  return {};
}

// ---- operations ------------------------------------------------------------------------

Result<json> Scheduler::add(const std::string& name, const json& definition) {
  TRY(validate_schedule_name(name));
  if (find(name)) {
    return make_error(
        Code::kConflict,
        fmt::format("a schedule named \"{}\" exists (rota schedule remove {})", name, name),
        "name");
  }
  auto def = schedule_def_from_json(definition);
  if (!def) return std::unexpected(def.error());
  if (!def->over.empty()) {
    // A sweep over nothing is a mistake to report now, not at the first firing.
    auto spec = spec_from_json(def->task, TaskSpec{});
    if (!spec) return std::unexpected(spec.error());
    auto items = read_items(def->over, spec->command.cwd);
    if (!items) {
      return make_error(Code::kInvalidArgument, "--over: " + items.error().message, "over");
    }
  }
  int64_t now = clock_.now_ms();
  auto timing = Timing::make(*def, now);
  if (!timing) return std::unexpected(timing.error());
  auto next = timing->next_after(now);
  if (!next) {
    return make_error(Code::kInvalidArgument, fmt::format("--cron '{}' never fires", def->cron),
                      "cron");
  }
  TRY(committer_.write());
  Live s{.record = {.name = name,
                    .definition = schedule_def_to_json(*def).dump(),
                    .created_at_ms = now,
                    .next_slot_ms = *next,
                    .items = "[]"},
         .def = std::move(*def),
         .timing = std::move(*timing)};
  TRY(save(s));
  auto [it, inserted] = schedules_.emplace(name, std::move(s));
  it->second.due_ms = *next;
  if (it->second.def.jitter_ms > 0) {
    it->second.due_ms += static_cast<int64_t>(rng_() % (it->second.def.jitter_ms + 1));
  }
  record(name, "added");
  arm();
  return view(it->second);
}

Result<json> Scheduler::list() const {
  json out = json::array();
  for (const auto& [name, s] : schedules_) out.push_back(view(s));
  return out;
}

Result<json> Scheduler::show(const std::string& name) {
  Live* s = find(name);
  if (!s) return std::unexpected(not_found(name));
  json j = view(*s);
  auto recent = store_.recent_schedule_tasks(name, kRateWindow);
  if (!recent) return std::unexpected(recent.error());
  json runs = json::array();
  int finished = 0, succeeded = 0;
  for (const Task& t : *recent) {
    if (is_terminal(t.state) && t.state != TaskState::kSkipped) {
      ++finished;
      succeeded += t.state == TaskState::kSucceeded;
    }
    if (runs.size() >= kRecentRuns) continue;
    json run = {{"task", t.id},
                {"state", state_name(t.state)},
                {"fired_at", format_timestamp(t.created_at_ms)}};
    if (t.started_at_ms && t.finished_at_ms) {
      run["duration_ms"] = t.finished_at_ms - t.started_at_ms;
    }
    if (!t.item.empty()) run["item"] = t.item;
    runs.push_back(run);
  }
  j["recent_runs"] = runs;
  j["success_rate"] = finished ? json(static_cast<double>(succeeded) / finished) : json(nullptr);
  j["finished_runs"] = finished;
  if (!s->def.over.empty()) {
    auto items = store_.item_runs(name);
    if (!items) return std::unexpected(items.error());
    json per_item = json::array();
    for (const ItemRun& r : *items) {
      json row = {{"item", r.item}, {"task", r.task_id}, {"state", state_name(r.state)}};
      if (r.started_at_ms && r.finished_at_ms) {
        row["duration_ms"] = r.finished_at_ms - r.started_at_ms;
      }
      per_item.push_back(row);
    }
    j["items"] = per_item;
  }
  return j;
}

Status Scheduler::set_paused(const std::string& name, bool paused) {
  Live* s = find(name);
  if (!s) return std::unexpected(not_found(name));
  if (s->record.paused == paused) return {};
  TRY(committer_.write());
  s->record.paused = paused;
  // Resuming does not make up for the paused time: the next slot is the next one from now.
  if (!paused) TRY(advance(*s, clock_.now_ms()));
  // A firing held behind a run that finished while paused goes now.
  if (!paused && s->active.empty() && s->record.pending > 0) {
    --s->record.pending;
    if (auto r = fire(*s, forced_slot(), true); !r) {
      ++s->record.pending;
      return r;
    }
  }
  TRY(save(*s));
  record(name, paused ? "paused" : "resumed");
  arm();
  return {};
}

Status Scheduler::remove(const std::string& name) {
  if (broken_.contains(name)) {
    TRY(committer_.write());
    TRY(store_.delete_schedule(name));
    broken_.erase(name);
    record(name, "removed");
    return {};
  }
  Live* s = find(name);
  if (!s) return std::unexpected(not_found(name));
  TRY(committer_.write());
  TRY(store_.delete_schedule(name));
  for (int64_t task : s->active) task_schedule_.erase(task);
  schedules_.erase(name);
  record(name, "removed");
  arm();
  return {};
}

Result<std::vector<int64_t>> Scheduler::run_now(const std::string& name) {
  Live* s = find(name);
  if (!s) return std::unexpected(not_found(name));
  TRY(committer_.write());
  std::vector<int64_t> ids;
  TRY(fire(*s, forced_slot(), true, &ids));
  TRY(save(*s));
  return ids;
}

// ---- firing ----------------------------------------------------------------------------

void Scheduler::arm() {
  int64_t earliest = 0;
  for (const auto& [name, s] : schedules_) {
    if (s.record.paused || s.due_ms == 0) continue;
    if (earliest == 0 || s.due_ms < earliest) earliest = s.due_ms;
  }
  timer_.cancel();
  if (earliest == 0) return;
  int64_t wait = std::clamp<int64_t>(earliest - clock_.now_ms(), 0, kMaxSleepMs);
  timer_.expires_after(std::chrono::milliseconds(wait));
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) on_timer();
  });
}

void Scheduler::on_timer() {
  if (!engine_.accepting()) return;
  int64_t now = clock_.now_ms();
  for (auto& [name, s] : schedules_) {
    if (s.record.paused || s.due_ms == 0 || s.due_ms > now) continue;
    if (auto r = tick(s, now); !r) {
      spdlog::error("schedule {}: {}", name, r.error().message);
      record(name, "firing failed: " + r.error().message);
      // Try again at its next slot rather than in a tight loop.
      if (auto next = s.timing.next_after(now)) s.due_ms = *next;
    }
  }
  arm();
}

Status Scheduler::tick(Live& s, int64_t now_ms) {
  TRY(committer_.write());
  // A late loop (a long commit, a suspended machine) fires the latest slot once.
  auto missed = missed_slots(s.timing, s.record.next_slot_ms, now_ms, 1);
  if (!missed.empty()) TRY(fire(s, missed.back(), false));
  return advance(s, now_ms);
}

Status Scheduler::advance(Live& s, int64_t after_ms) {
  auto next = s.timing.next_after(after_ms);
  s.record.next_slot_ms = next.value_or(0);
  s.due_ms = s.record.next_slot_ms;
  if (s.due_ms && s.def.jitter_ms > 0) {
    s.due_ms += static_cast<int64_t>(rng_() % (s.def.jitter_ms + 1));
  }
  return save(s);
}

Status Scheduler::fire(Live& s, int64_t slot_ms, bool forced, std::vector<int64_t>* ids) {
  const std::string& name = s.record.name;
  if (!forced && !s.active.empty()) {
    int64_t previous = *s.active.rbegin();
    switch (s.def.overlap) {
      case Overlap::kSkip:
        record(name, fmt::format("skipped the firing for {}: task {} is still unfinished",
                                 format_timestamp(slot_ms), previous));
        return {};
      case Overlap::kQueue:
        ++s.record.pending;
        record(name, fmt::format("held the firing for {} until task {} finishes",
                                 format_timestamp(slot_ms), previous));
        return save(s);
      case Overlap::kAllow:
        break;
    }
  }
  auto base = spec_from_json(s.def.task, TaskSpec{});
  if (!base) return std::unexpected(base.error());
  base->labels["schedule"] = name;
  base->schedule = name;
  base->slot_ms = slot_ms;

  // The sweep's progress moves only if the firing's tasks are in: a failed firing skips
  // no item.
  ScheduleRecord next = s.record;
  std::vector<TaskSpec> specs;
  if (s.def.over.empty()) {
    specs.push_back(std::move(*base));
  } else {
    // The next items of the sweep; at the end of the list a new cycle re-reads it.
    auto items = json::parse(next.items.empty() ? "[]" : next.items, nullptr, false);
    if (!items.is_array()) items = json::array();
    for (int k = 0; k < s.def.batch; ++k) {
      if (next.cursor >= static_cast<int64_t>(items.size())) {
        if (k > 0) break;  // a firing does not straddle two cycles
        auto fresh = read_items(s.def.over, base->command.cwd);
        if (!fresh) return std::unexpected(fresh.error());
        items = *fresh;
        next.items = items.dump();
        next.cursor = 0;
        ++next.cycle;
      }
      TaskSpec spec = *base;
      apply_item(spec, items[next.cursor].get<std::string>());
      specs.push_back(std::move(spec));
      ++next.cursor;
    }
  }
  std::vector<size_t> duplicates;
  auto added = engine_.add(std::move(specs), &duplicates);
  if (!added) return std::unexpected(added.error());
  if (next.cycle != s.record.cycle) {
    record(name, fmt::format("cycle {} over {} items", next.cycle, json::parse(next.items).size()));
  }
  s.record = std::move(next);
  for (size_t i = 0; i < added->size(); ++i) {
    // A --unique key held elsewhere queues nothing: that task is not this firing's.
    if (std::find(duplicates.begin(), duplicates.end(), i) != duplicates.end()) continue;
    s.active.insert((*added)[i]);
    task_schedule_[(*added)[i]] = name;
  }
  if (ids) *ids = *added;
  return save(s);
}

void Scheduler::on_task_finished(int64_t task, TaskState) {
  auto it = task_schedule_.find(task);
  if (it == task_schedule_.end()) return;
  Live* s = find(it->second);
  task_schedule_.erase(it);
  if (!s) return;
  s->active.erase(task);
  // --overlap queue: a held firing starts once the previous one has finished (in a turn of
  // its own, not inside the engine's transition).
  if (s->active.empty() && s->record.pending > 0 && !s->record.paused) {
    asio::post(io_, [this, name = s->record.name] {
      Live* s = find(name);
      if (!s || !s->active.empty() || s->record.pending == 0) return;
      if (s->record.paused) return;
      Status r = committer_.write();
      if (r) {
        --s->record.pending;
        r = fire(*s, forced_slot(), true);
        if (!r) ++s->record.pending;  // held still: not lost
      }
      if (!r) spdlog::error("schedule {}: {}", name, r.error().message);
    });
  }
}

// Firings outside the slots (run now, held firings) are keyed by negative, increasing times,
// so that they never collide with a slot nor with each other.
int64_t Scheduler::forced_slot() {
  last_forced_ = std::max(clock_.now_ms(), last_forced_ + 1);
  return -last_forced_;
}

Status Scheduler::save(const Live& s) { return store_.put_schedule(s.record); }

void Scheduler::record(const std::string& name, const std::string& detail) {
  engine_.record("schedule", fmt::format("{}: {}", name, detail));
}

json Scheduler::view(const Live& s) const {
  json j = schedule_def_to_json(s.def);
  j["name"] = s.record.name;
  j["paused"] = s.record.paused;
  j["created_at"] = format_timestamp(s.record.created_at_ms);
  j["next_fire"] =
      s.record.paused || s.due_ms == 0 ? json(nullptr) : json(format_timestamp(s.due_ms));
  j["unfinished"] = s.active.size();
  j["held"] = s.record.pending;
  if (s.def.every_ms) j["every"] = format_duration_ms(s.def.every_ms);
  if (!s.def.over.empty()) {
    auto items = json::parse(s.record.items.empty() ? "[]" : s.record.items, nullptr, false);
    j["cycle"] = s.record.cycle;
    j["cursor"] = s.record.cursor;
    j["item_count"] = items.is_array() ? items.size() : 0;
  }
  return j;
}

Scheduler::Live* Scheduler::find(const std::string& name) {
  auto it = schedules_.find(name);
  return it == schedules_.end() ? nullptr : &it->second;
}

}  // namespace rota
