// What a schedule is: when it fires (every N or a cron expression in a time zone), what each
// firing queues (a task template, and for a sweep the next items of a list), and what it does
// when a firing would overlap the previous one or when the daemon was down across firings.
// The scheduler (scheduler.h) runs them; this file is the pure part, tested on a fake clock.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/cron.h"
#include "core/error.h"
#include "core/task.h"

namespace rota {

enum class Overlap { kSkip, kQueue, kAllow };
enum class CatchUp { kNone, kOne, kAll };

struct ScheduleDef {
  int64_t every_ms = 0;  // either this
  std::string cron;      // or this, evaluated in `tz`
  std::string tz;        // IANA name; empty: the machine's zone
  int64_t jitter_ms = 0;
  Overlap overlap = Overlap::kSkip;
  CatchUp catch_up = CatchUp::kOne;
  std::string over;  // sweeps: a glob, or @FILE with one item per line
  int batch = 1;     // sweeps: items per firing
  nlohmann::json task = nlohmann::json::object();  // the task template, as POST /v1/tasks takes it
};

nlohmann::json schedule_def_to_json(const ScheduleDef& def);
// Reads and checks a definition: one of every/cron, a cron expression that parses, a known
// time zone, a task template that is a valid task. Errors name the flag to fix.
Result<ScheduleDef> schedule_def_from_json(const nlohmann::json& j);
Status validate_schedule_name(std::string_view name);

// When a schedule fires: its slots are the instants it is due at, jitter aside.
class Timing {
 public:
  static Result<Timing> make(const ScheduleDef& def, int64_t anchor_ms);
  // The first slot strictly after `t_ms`; nullopt if there is none (a cron date that never
  // comes, such as 30 February).
  std::optional<int64_t> next_after(int64_t t_ms) const;
  int64_t every_ms() const { return every_ms_; }  // 0 for cron

 private:
  int64_t every_ms_ = 0;
  int64_t anchor_ms_ = 0;
  std::optional<Cron> cron_;
  const date::time_zone* zone_ = nullptr;
};

// The slots a daemon that was down missed: those at or before `now_ms`, from `next_slot_ms`
// on, at most `cap` of them (the latest ones).
std::vector<int64_t> missed_slots(const Timing& timing, int64_t next_slot_ms, int64_t now_ms,
                                  size_t cap);

// The items of a sweep or of `rota add --each`: a glob's matches (sorted), or the non-empty
// lines of @FILE. Relative patterns and paths are taken from `cwd`. Nothing matched is an
// error that names the pattern.
Result<std::vector<std::string>> read_items(const std::string& source, const std::string& cwd);

// The task template with `{}` replaced by the item (shell-quoted in a shell line) and
// ROTA_ITEM set.
void apply_item(TaskSpec& spec, const std::string& item);
std::string shell_quote(const std::string& text);

const char* overlap_name(Overlap overlap);
const char* catch_up_name(CatchUp catch_up);

}  // namespace rota
