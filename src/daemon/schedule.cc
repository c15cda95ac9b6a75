#include "daemon/schedule.h"

#include <fmt/format.h>
#include <glob.h>

#include <algorithm>
#include <deque>
#include <fstream>
#include <set>

#include "api/task_json.h"
#include "core/duration.h"

namespace rota {
namespace {

using nlohmann::json;

constexpr std::array kOverlapNames = {"skip", "queue", "allow"};
constexpr std::array kCatchUpNames = {"none", "one", "all"};

Error invalid(std::string message, std::string field) {
  return Error{Code::kInvalidArgument, std::move(message), std::move(field)};
}

template <class Enum, size_t N>
Result<Enum> parse_name(const std::array<const char*, N>& names, const std::string& value,
                        const char* flag) {
  for (size_t i = 0; i < N; ++i) {
    if (value == names[i]) return static_cast<Enum>(i);
  }
  std::string choices;
  for (const char* n : names) choices += choices.empty() ? n : fmt::format("|{}", n);
  return std::unexpected(invalid(fmt::format("{}: \"{}\" is not one of {}", flag, value, choices),
                                 std::string(flag).substr(2)));
}

std::string replace_all(std::string text, const std::string& with) {
  for (size_t at = text.find("{}"); at != std::string::npos; at = text.find("{}", at)) {
    text.replace(at, 2, with);
    at += with.size();
  }
  return text;
}

}  // namespace

const char* overlap_name(Overlap o) { return kOverlapNames[static_cast<int>(o)]; }
const char* catch_up_name(CatchUp c) { return kCatchUpNames[static_cast<int>(c)]; }

json schedule_def_to_json(const ScheduleDef& d) {
  json j = {{"overlap", overlap_name(d.overlap)},
            {"catch_up", catch_up_name(d.catch_up)},
            {"task", d.task}};
  if (d.every_ms) j["every_ms"] = d.every_ms;
  if (!d.cron.empty()) j["cron"] = d.cron;
  if (!d.tz.empty()) j["tz"] = d.tz;
  if (d.jitter_ms) j["jitter_ms"] = d.jitter_ms;
  if (!d.over.empty()) {
    j["over"] = d.over;
    j["batch"] = d.batch;
  }
  return j;
}

Status validate_schedule_name(std::string_view name) {
  bool ok = !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
  if (ok) return {};
  return make_error(
      Code::kInvalidArgument,
      fmt::format("\"{}\" is not a schedule name (1-64 letters, digits, - _ .)", name), "name");
}

Result<ScheduleDef> schedule_def_from_json(const json& j) {
  if (!j.is_object()) return std::unexpected(invalid("a schedule must be a JSON object", ""));
  ScheduleDef d;
  try {
    for (const auto& [key, v] : j.items()) {
      if (key == "every" || key == "every_ms" || key == "jitter" || key == "jitter_ms") {
        bool every = key.starts_with("every");
        int64_t ms = 0;
        if (v.is_number_integer()) {
          ms = v.get<int64_t>();
        } else {
          auto parsed = parse_duration_ms(v.get<std::string>(), every ? "--every" : "--jitter");
          if (!parsed) return std::unexpected(parsed.error());
          ms = *parsed;
        }
        (every ? d.every_ms : d.jitter_ms) = ms;
      } else if (key == "cron") {
        d.cron = v.get<std::string>();
      } else if (key == "tz") {
        d.tz = v.get<std::string>();
      } else if (key == "overlap") {
        auto o = parse_name<Overlap>(kOverlapNames, v.get<std::string>(), "--overlap");
        if (!o) return std::unexpected(o.error());
        d.overlap = *o;
      } else if (key == "catch_up") {
        auto c = parse_name<CatchUp>(kCatchUpNames, v.get<std::string>(), "--catch-up");
        if (!c) return std::unexpected(c.error());
        d.catch_up = *c;
      } else if (key == "over") {
        d.over = v.get<std::string>();
      } else if (key == "batch") {
        d.batch = v.get<int>();
      } else if (key == "task") {
        d.task = v;
      } else {
        return std::unexpected(invalid(fmt::format("{}: unknown field", key), key));
      }
    }
  } catch (const json::exception&) {
    return std::unexpected(invalid("a schedule field has the wrong type", ""));
  }
  if ((d.every_ms > 0) == !d.cron.empty()) {
    return std::unexpected(invalid("give either --every DUR or --cron 'EXPR'", "every"));
  }
  if (d.every_ms < 0 || (d.every_ms > 0 && d.every_ms < 100)) {
    return std::unexpected(invalid("--every: at least 100ms", "every"));
  }
  if (d.jitter_ms < 0) return std::unexpected(invalid("--jitter: must not be negative", "jitter"));
  if (!d.cron.empty()) {
    if (auto c = Cron::parse(d.cron); !c) return std::unexpected(c.error());
  }
  if (!d.cron.empty() || !d.tz.empty()) {
    if (auto z = find_time_zone(d.tz); !z) return std::unexpected(z.error());
  }
  if (d.batch < 1 || d.batch > 10'000) {
    return std::unexpected(invalid("--batch: between 1 and 10000 items per firing", "batch"));
  }
  auto spec = spec_from_json(d.task, TaskSpec{});
  if (!spec) return std::unexpected(spec.error());
  if (auto r = validate_spec(*spec); !r) return std::unexpected(r.error());
  return d;
}

Result<Timing> Timing::make(const ScheduleDef& def, int64_t anchor_ms) {
  Timing t;
  t.every_ms_ = def.every_ms;
  t.anchor_ms_ = anchor_ms;
  if (!def.cron.empty()) {
    auto cron = Cron::parse(def.cron);
    if (!cron) return std::unexpected(cron.error());
    t.cron_ = std::move(*cron);
    auto zone = find_time_zone(def.tz);
    if (!zone) return std::unexpected(zone.error());
    t.zone_ = *zone;
  }
  return t;
}

std::optional<int64_t> Timing::next_after(int64_t t_ms) const {
  if (cron_) {
    auto next = cron_->next_after(SysMs(std::chrono::milliseconds(t_ms)), zone_);
    if (!next) return std::nullopt;
    return next->time_since_epoch().count();
  }
  if (t_ms < anchor_ms_) return anchor_ms_ + every_ms_;
  return anchor_ms_ + ((t_ms - anchor_ms_) / every_ms_ + 1) * every_ms_;
}

std::vector<int64_t> missed_slots(const Timing& timing, int64_t next_slot_ms, int64_t now_ms,
                                  size_t cap) {
  if (cap == 0 || next_slot_ms > now_ms) return {};
  if (timing.every_ms() > 0) {
    // Arithmetic, so that a week's outage of an every-100ms schedule costs nothing.
    int64_t every = timing.every_ms();
    int64_t last = next_slot_ms + (now_ms - next_slot_ms) / every * every;
    int64_t count = std::min<int64_t>((last - next_slot_ms) / every + 1, static_cast<int64_t>(cap));
    std::vector<int64_t> slots;
    for (int64_t k = count - 1; k >= 0; --k) slots.push_back(last - k * every);
    return slots;
  }
  std::deque<int64_t> slots;
  std::optional<int64_t> slot = next_slot_ms;
  while (slot && *slot <= now_ms) {
    slots.push_back(*slot);
    if (slots.size() > cap) slots.pop_front();
    slot = timing.next_after(*slot);
  }
  return {slots.begin(), slots.end()};
}

Result<std::vector<std::string>> read_items(const std::string& source, const std::string& cwd) {
  std::vector<std::string> items;
  if (source.starts_with('@')) {
    std::string path = source.substr(1);
    if (!path.empty() && path.front() != '/') path = cwd + "/" + path;
    std::ifstream in(path);
    if (!in) {
      return make_error(Code::kInvalidArgument, fmt::format("cannot read the item list {}", path),
                        "over");
    }
    std::set<std::string> seen;
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      // An item listed twice is one item: once per cycle, like every other.
      if (seen.insert(line).second) items.push_back(line);
    }
    if (items.empty()) {
      return make_error(Code::kInvalidArgument, fmt::format("the item list {} is empty", path),
                        "over");
    }
    return items;
  }
  bool relative = source.empty() || source.front() != '/';
  std::string pattern = relative ? cwd + "/" + source : source;
  glob_t g{};
  int rc = ::glob(pattern.c_str(), GLOB_NOSORT, nullptr, &g);
  if (rc == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) {
      std::string path = g.gl_pathv[i];
      // Items as the user wrote them: relative to the working directory if the glob was.
      if (relative) path = path.substr(cwd.size() + 1);
      items.push_back(std::move(path));
    }
  }
  ::globfree(&g);
  if (items.empty()) {
    return make_error(Code::kInvalidArgument,
                      fmt::format("'{}' matches nothing in {}", source, cwd), "over");
  }
  std::sort(items.begin(), items.end());
  return items;
}

std::string shell_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

void apply_item(TaskSpec& spec, const std::string& item) {
  for (std::string& arg : spec.command.argv) arg = replace_all(std::move(arg), item);
  if (!spec.command.shell.empty()) {
    spec.command.shell = replace_all(std::move(spec.command.shell), shell_quote(item));
  }
  spec.command.vars["ROTA_ITEM"] = item;
  spec.item = item;
}

}  // namespace rota
