#include "api/routes.h"

#include <fmt/format.h>
#include <unistd.h>

#include <sys/stat.h>

#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <charconv>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "api/json_scan.h"
#include "api/task_json.h"
#include "core/duration.h"
#include "daemon/analyze.h"
#include "daemon/schedule.h"
#include "daemon/stats.h"

namespace rota {
namespace {

using nlohmann::json;

HttpResponse ok(const json& body, int status = 200) { return {status, body.dump() + "\n"}; }

// The JSON type a body field must have.
enum class Type { kBool, kInt, kString, kIds };

struct FieldSpec {
  const char* name;
  Type type;
};

bool has_type(const json& v, Type type) {
  switch (type) {
    case Type::kBool:
      return v.is_boolean();
    case Type::kInt:
      return v.is_number_integer();
    case Type::kString:
      return v.is_string();
    case Type::kIds:
      return v.is_array() &&
             std::all_of(v.begin(), v.end(), [](const json& e) { return e.is_number_integer(); });
  }
  return false;
}

const char* type_name(Type type) {
  switch (type) {
    case Type::kBool:
      return "true or false";
    case Type::kInt:
      return "a whole number";
    case Type::kString:
      return "a string";
    case Type::kIds:
      return "an array of task ids";
  }
  return "?";
}

// Parses a request body, refusing malformed JSON, unknown fields and fields of the wrong type,
// each with the field's name.
Result<json> parse_body(const HttpRequest& req, std::initializer_list<FieldSpec> fields) {
  json j;
  try {
    j = req.body.empty() ? json::object() : json::parse(req.body);
  } catch (const json::exception& e) {
    return make_error(Code::kInvalidArgument, fmt::format("malformed JSON: {}", e.what()));
  }
  if (!j.is_object()) return make_error(Code::kInvalidArgument, "the body must be a JSON object");
  for (const auto& [key, value] : j.items()) {
    auto spec = std::find_if(fields.begin(), fields.end(),
                             [&key](const FieldSpec& f) { return key == f.name; });
    if (spec == fields.end()) {
      return make_error(Code::kInvalidArgument, fmt::format("{}: unknown field", key), key);
    }
    if (!has_type(value, spec->type)) {
      return make_error(Code::kInvalidArgument,
                        fmt::format("{}: expected {}", key, type_name(spec->type)), key);
    }
  }
  return j;
}

Result<int64_t> parse_id(const std::string& text) {
  int64_t id = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc() || p != text.data() + text.size() || id <= 0) {
    return make_error(Code::kInvalidArgument, fmt::format("\"{}\" is not a task id", text), "id");
  }
  return id;
}

// REQUIRES: `j` passed parse_body with ids as Type::kIds.
std::vector<int64_t> ids_field(const json& j) { return j.value("ids", std::vector<int64_t>{}); }

// Replies once this turn's writes are committed; a failed commit replies with its error.
void reply_committed(Committer& committer, Responder respond, json body, int status = 200) {
  committer.after_commit(
      [respond = std::move(respond), body = std::move(body), status](const Status& s) {
        respond(s ? ok(body, status) : error_response(s.error()));
      });
}

json info_json(ApiContext& c) {
  return json{{"version", ROTA_VERSION},
              {"pid", ::getpid()},
              {"home", c.home},
              {"store", c.store.path()},
              {"socket", c.socket_path},
              {"logs", c.logs_dir},
              {"workers", c.pool.size()},
              {"autoscale", c.autoscaler.range() ? json{{"min", c.autoscaler.range()->min},
                                                        {"max", c.autoscaler.range()->max}}
                                                 : json(nullptr)},
              {"started_at", format_timestamp(c.started_at_ms)},
              {"uptime_ms", c.clock.now_ms() - c.started_at_ms},
              {"healthy", c.committer.health().has_value()},
              {"accepting", c.engine.accepting()}};
}

json counts_json(const StateCounts& counts) {
  json j = json::object();
  for (int i = 0; i < kTaskStateCount; ++i) j[state_name(static_cast<TaskState>(i))] = counts[i];
  return j;
}

// ---- tasks -----------------------------------------------------------------------------

void add(ApiContext& c, const HttpRequest& req, Responder respond) {
  // The body is read as text, not as a tree: a batch's payloads are checked and kept as
  // written, and each other field is parsed alone.
  auto fail = [&](const Error& e) { respond(error_response(e)); };
  if (!starts_object(req.body)) {
    auto spec = spec_from_text(req.body, {});  // not a task: says why
    return fail(spec ? Error{Code::kInvalidArgument, "a task must be a JSON object", {}}
                     : spec.error());
  }
  auto members = json_members(req.body);
  if (!members) return fail(members.error());
  auto member = [&](std::string_view key) -> const std::string_view* {
    for (const auto& [k, v] : *members) {
      if (k == key) return &v;
    }
    return nullptr;
  };
  bool batch = member("tasks") || member("each");
  bool fan_out = batch && member("each");
  TaskSpec defaults;
  std::vector<TaskSpec> specs;
  if (batch) {
    for (const auto& [key, v] : *members) {
      if (key != "tasks" && key != "defaults" && key != "each") {
        return fail({Code::kInvalidArgument, key + ": unknown field", key});
      }
    }
    if (const std::string_view* d = member("defaults")) {
      auto spec = spec_from_text(*d, defaults);
      if (!spec) return fail(spec.error());
      defaults = std::move(*spec);
    }
    if (fan_out) {
      // rota add --each: one task per item, tied by a batch id.
      json each = json::parse(*member("each"), nullptr, false);
      if (member("tasks") || !each.is_array() || each.empty()) {
        return fail({Code::kInvalidArgument,
                     "each: expected a non-empty array of items, "
                     "and no tasks",
                     "each"});
      }
      specs.reserve(each.size());
      for (const json& item : each) {
        if (!item.is_string()) {
          return fail({Code::kInvalidArgument, "each: items must be strings", "each"});
        }
        specs.push_back(defaults);
        apply_item(specs.back(), item.get<std::string>());
      }
    } else {
      auto tasks = json_elements(*member("tasks"));
      if (!tasks) return fail({Code::kInvalidArgument, "tasks: expected an array", "tasks"});
      specs.reserve(tasks->size());
      for (std::string_view t : *tasks) {
        auto spec = spec_from_text(t, defaults);
        if (!spec) return fail(spec.error());
        specs.push_back(std::move(*spec));
      }
    }
  } else {
    auto spec = spec_from_text(req.body, defaults);
    if (!spec) return fail(spec.error());
    specs.push_back(std::move(*spec));
  }
  std::string checked_cwd;
  size_t max_payload = static_cast<size_t>(c.config.max_payload_kib) * 1024;
  std::set<std::string> missing_pools;
  for (size_t i = 0; i < specs.size(); ++i) {
    TaskSpec& spec = specs[i];
    if (spec.pool != kCommandsPool) {
      // A message task goes to its pool's first queue unless it names one.
      auto def = c.user_pools.get(spec.pool);
      if (!def) missing_pools.insert(spec.pool);
      if (def && !def->queues.empty() && spec.queue == "default" &&
          std::find(def->queues.begin(), def->queues.end(), "default") == def->queues.end()) {
        spec.queue = def->queues.front();
      }
      if (spec.payload.size() > max_payload) {
        Error e{Code::kTooLarge,
                fmt::format("the payload is {} bytes, over the {} KiB limit (max_payload_kib in "
                            "rota.toml)",
                            spec.payload.size(), c.config.max_payload_kib),
                "payload"};
        if (batch) e.message = fmt::format("task {}: {}", i + 1, e.message);
        return fail(e);
      }
    }
    auto v = validate_spec(specs[i]);
    if (v && spec.pool == kCommandsPool && specs[i].command.cwd != checked_cwd) {
      v = validate_cwd(specs[i].command.cwd);
      checked_cwd = specs[i].command.cwd;
    }
    if (!v) {
      Error e = v.error();
      if (batch) e.message = fmt::format("task {}: {}", i + 1, e.message);
      return fail(e);
    }
  }
  int64_t batch_id = 0;
  if (fan_out) {
    if (auto w = c.committer.write(); !w) return fail(w.error());
    auto id = c.store.next_batch_id();
    if (!id) return fail(id.error());
    batch_id = *id;
    for (TaskSpec& s : specs) s.batch_id = batch_id;
  }
  std::vector<size_t> duplicates;
  auto ids = c.engine.add(std::move(specs), &duplicates);
  if (!ids) return fail(ids.error());
  std::string warning;
  if (!missing_pools.empty()) {
    warning = fmt::format("no pool named {} yet: its tasks wait for one (rota pool add)",
                          *missing_pools.begin());
  }
  if (batch) {
    json reply = {{"ids", *ids}, {"duplicates", duplicates}};
    if (batch_id) reply["batch"] = batch_id;
    if (!warning.empty()) reply["warning"] = warning;
    return reply_committed(c.committer, std::move(respond), reply, 201);
  }
  auto task = c.store.get_task(ids->front());
  if (!task || !*task) return fail({Code::kInternal, "the new task vanished", {}});
  json reply = task_to_json(**task);
  if (!warning.empty()) reply["warning"] = warning;
  reply["duplicate"] = !duplicates.empty();  // --unique: the task that already held the key
  reply_committed(c.committer, std::move(respond), reply, duplicates.empty() ? 201 : 200);
}

void list(ApiContext& c, const HttpRequest& req, Responder respond) {
  TaskFilter f;
  const auto& q = req.query;
  auto fail = [&](const Error& e) { respond(error_response(e)); };
  if (auto it = q.find("state"); it != q.end() && !it->second.empty()) {
    auto s = parse_state(it->second);
    if (!s) return fail(s.error());
    f.state = *s;
  }
  if (auto it = q.find("queue"); it != q.end()) f.queue = it->second;
  if (auto it = q.find("schedule"); it != q.end()) f.schedule = it->second;
  if (auto it = q.find("pool"); it != q.end()) f.pool = it->second;
  if (auto it = q.find("label"); it != q.end() && !it->second.empty()) {
    auto kv = parse_key_value(it->second, "label");
    if (!kv) return fail(kv.error());
    f.label = *kv;
  }
  try {
    if (auto it = q.find("after"); it != q.end()) f.after_id = std::stoll(it->second);
    if (auto it = q.find("batch"); it != q.end()) f.batch_id = std::stoll(it->second);
    if (auto it = q.find("before"); it != q.end()) f.before_id = std::stoll(it->second);
    if (auto it = q.find("limit"); it != q.end()) f.limit = std::stoi(it->second);
  } catch (const std::exception&) {
    return fail({Code::kInvalidArgument, "after, before and limit must be numbers", "limit"});
  }
  if (auto it = q.find("order"); it != q.end() && it->second != "asc") {
    if (it->second != "desc") {
      return fail({Code::kInvalidArgument, "order: expected asc or desc", "order"});
    }
    f.order = TaskFilter::Order::kNewestFirst;
  }
  f.limit = std::clamp(f.limit, 1, 10'000);
  auto tasks = c.store.list_tasks(f);
  if (!tasks) return fail(tasks.error());
  json out = json::array();
  for (const Task& t : *tasks) out.push_back(task_to_json(t));
  respond(ok(out));
}

void show(ApiContext& c, const HttpRequest& req, Responder respond) {
  auto id = parse_id(req.params[0]);
  if (!id) return respond(error_response(id.error()));
  auto task = c.store.get_task(*id);
  if (!task) return respond(error_response(task.error()));
  if (!*task) {
    return respond(
        error_response({Code::kNotFound, fmt::format("task {} does not exist", *id), {}}));
  }
  json j = task_to_json(**task);
  auto attempts = c.store.list_attempts(*id);
  if (!attempts) return respond(error_response(attempts.error()));
  j["attempt_history"] = json::array();
  for (const Attempt& a : *attempts) j["attempt_history"].push_back(attempt_to_json(a));
  j["log"] = fmt::format("{}/{}.log", c.logs_dir, *id);
  respond(ok(j));
}

void log(ApiContext& c, const HttpRequest& req, Responder respond) {
  auto id = parse_id(req.params[0]);
  if (!id) return respond(error_response(id.error()));
  auto task = c.store.get_task(*id);
  if (!task || !*task) {
    return respond(
        error_response({Code::kNotFound, fmt::format("task {} does not exist", *id), {}}));
  }
  // ?offset=N: from byte N on; a negative N: the last -N bytes. X-Log-End says where the
  // next read should start.
  int64_t offset = 0;
  if (auto it = req.query.find("offset"); it != req.query.end()) {
    auto [p, ec] =
        std::from_chars(it->second.data(), it->second.data() + it->second.size(), offset);
    if (ec != std::errc() || p != it->second.data() + it->second.size()) {
      return respond(
          error_response({Code::kInvalidArgument, "offset: expected a number", "offset"}));
    }
  }
  std::ifstream in(fmt::format("{}/{}.log", c.logs_dir, *id), std::ios::binary | std::ios::ate);
  int64_t size = in ? static_cast<int64_t>(in.tellg()) : 0;
  int64_t start = offset < 0 ? std::max<int64_t>(0, size + offset) : std::min(offset, size);
  std::ostringstream body;
  if (in && in.seekg(start)) body << in.rdbuf();
  HttpResponse r{200, body.str(), "text/plain; charset=utf-8"};
  r.headers.emplace_back("X-Log-End", std::to_string(start + static_cast<int64_t>(r.body.size())));
  respond(std::move(r));
}

void cancel(ApiContext& c, const HttpRequest& req, Responder respond) {
  auto j = parse_body(req, {{"ids", Type::kIds}});
  if (!j) return respond(error_response(j.error()));
  auto ids = ids_field(*j);
  c.engine.cancel(ids, [respond](Result<std::vector<int64_t>> r) {
    respond(r ? ok(json{{"cancelled", *r}}) : error_response(r.error()));
  });
}

void retry(ApiContext& c, const HttpRequest& req, Responder respond) {
  auto j =
      parse_body(req, {{"ids", Type::kIds}, {"failed", Type::kBool}, {"queue", Type::kString}});
  if (!j) return respond(error_response(j.error()));
  auto ids = ids_field(*j);
  auto r = j->value("failed", false) ? c.engine.retry_failed(j->value("queue", ""))
                                     : c.engine.retry(ids);
  if (!r) return respond(error_response(r.error()));
  reply_committed(c.committer, std::move(respond), json{{"retried", *r}});
}

void clean(ApiContext& c, const HttpRequest& req, Responder respond) {
  auto j = parse_body(req, {{"older_than", Type::kString}});
  if (!j) return respond(error_response(j.error()));
  int64_t older_than = 0;
  if (j->contains("older_than")) {
    auto d = parse_duration_ms(j->value("older_than", ""), "--older-than");
    if (!d) return respond(error_response(d.error()));
    older_than = *d;
  }
  auto removed = c.engine.clean(older_than);
  if (!removed) return respond(error_response(removed.error()));
  reply_committed(c.committer, std::move(respond), json{{"removed", *removed}});
}

void wait(ApiContext& c, const HttpRequest& req, Responder respond) {
  auto j = parse_body(req, {{"ids", Type::kIds},
                            {"all", Type::kBool},
                            {"wait_id", Type::kInt},
                            {"timeout_ms", Type::kInt}});
  if (!j) return respond(error_response(j.error()));
  auto ids = ids_field(*j);
  c.engine.wait(ids, j->value("all", false), j->value("wait_id", int64_t{0}),
                j->value("timeout_ms", int64_t{30'000}),
                [respond](Result<std::pair<int64_t, WaitResult>> r) {
                  if (!r) return respond(error_response(r.error()));
                  const WaitResult& w = r->second;
                  json bad = json::array();
                  for (auto [id, state] : w.unsuccessful) {
                    bad.push_back({{"id", id}, {"state", state_name(state)}});
                  }
                  respond(ok(json{{"wait_id", r->first},
                                  {"complete", w.complete},
                                  {"total", w.total},
                                  {"finished", w.finished},
                                  {"succeeded", w.succeeded},
                                  {"unsuccessful", bad}}));
                });
}

// ---- workers, queues, daemon -----------------------------------------------------------

// Every pool: commands first, then the user's, by name.
std::vector<const Pool*> all_pools(ApiContext& c) {
  std::vector<const Pool*> out = {&c.pool};
  for (const PoolDef& d : c.user_pools.list()) {
    if (const Pool* p = c.user_pools.find(d.name)) out.push_back(p);
  }
  return out;
}

json workers_json(ApiContext& c, const std::string& only_pool = {}) {
  int64_t now = c.clock.now_ms();
  json out = json::array();
  for (const Pool* pool : all_pools(c)) {
    if (!only_pool.empty() && pool->name() != only_pool) continue;
    for (const WorkerView& w : pool->view()) {
      bool live = w.pid != 0;
      out.push_back({{"id", w.id},
                     {"pool", pool->name()},
                     {"in_flight", w.in_flight},
                     {"slot", w.slot >= 0 ? json(w.slot) : json(nullptr)},
                     {"pid", live ? json(w.pid) : json(nullptr)},
                     {"state", worker_health_name(w.health)},
                     {"task", w.task ? json(w.task) : json(nullptr)},
                     {"uptime_ms", live ? json(now - w.started_at_ms) : json(nullptr)},
                     {"restarts", w.restarts},
                     {"tasks_done", w.tasks_done},
                     {"tasks_failed", w.tasks_failed},
                     {"heartbeat_age_ms", live ? json(now - w.last_heartbeat_ms) : json(nullptr)}});
    }
  }
  return out;
}

void workers(ApiContext& c, const HttpRequest&, Responder respond) { respond(ok(workers_json(c))); }

void restart(ApiContext& c, const HttpRequest& req, Responder respond) {
  auto id = parse_id(req.params[0]);
  if (!id) return respond(error_response(id.error()));
  bool found = c.pool.restart(*id);
  for (const PoolDef& d : c.user_pools.list()) {
    if (!found) found = c.user_pools.find(d.name)->restart(*id);
  }
  if (!found) {
    return respond(
        error_response({Code::kNotFound,
                        fmt::format("worker {} is not in the pool (see rota workers)", *id),
                        {}}));
  }
  respond(ok(json{{"restarted", *id}}));
}

// {"workers": N} fixes the size (and ends autoscaling); {"min": N, "max": M} autoscales.
void scale(ApiContext& c, const HttpRequest& req, Responder respond) {
  auto j = parse_body(req, {{"workers", Type::kInt}, {"min", Type::kInt}, {"max", Type::kInt}});
  if (!j) return respond(error_response(j.error()));
  auto bad = [&](const char* message, const char* field) {
    respond(error_response({Code::kInvalidArgument, message, field}));
  };
  if (!c.committer.write()) return respond(error_response(c.committer.health().error()));
  if (j->contains("min") || j->contains("max")) {
    int min = j->value("min", 0);
    int max = j->value("max", 0);
    if (j->contains("workers")) return bad("give either workers or min and max", "workers");
    if (min < 0 || max < 1 || max > 1024 || min > max) {
      return bad("min and max: 0 <= min <= max, 1 <= max <= 1024", "max");
    }
    c.autoscaler.set_range(AutoscaleRange{min, max});
    if (auto r = c.store.put_setting("autoscale", fmt::format("{},{}", min, max)); !r) {
      return respond(error_response(r.error()));
    }
    c.engine.record("autoscale", fmt::format("autoscaling between {} and {} workers", min, max));
    c.pool.scale(std::clamp(c.pool.size(), min, max));
    return reply_committed(c.committer, std::move(respond), json{{"min", min}, {"max", max}});
  }
  int n = j->value("workers", -1);
  if (n < 0 || n > 1024) return bad("workers: expected a number from 0 to 1024", "workers");
  if (c.autoscaler.range()) {
    c.autoscaler.set_range(std::nullopt);
    if (auto r = c.store.put_setting("autoscale", ""); !r)
      return respond(error_response(r.error()));
  }
  c.engine.record("autoscale", fmt::format("pool set to {} workers", n));
  c.pool.scale(n);
  c.committer.poke();
  reply_committed(c.committer, std::move(respond), json{{"workers", n}});
}

void queues(ApiContext& c, const HttpRequest&, Responder respond) {
  json out = json::array();
  for (const QueueInfo& q : c.engine.queues()) {
    StateCounts counts{};
    if (auto it = c.engine.counts().find(q.name); it != c.engine.counts().end()) {
      counts = it->second;
    }
    out.push_back({{"name", q.name},
                   {"paused", q.paused},
                   {"limit", q.limit ? json(q.limit) : json(nullptr)},
                   {"counts", counts_json(counts)}});
  }
  respond(ok(out));
}

void queue_change(ApiContext& c, const HttpRequest& req, Responder respond,
                  std::optional<bool> paused) {
  std::optional<int> limit;
  if (!paused) {
    auto j = parse_body(req, {{"limit", Type::kInt}});
    if (!j) return respond(error_response(j.error()));
    limit = j->value("limit", 0);
    if (!limit || *limit < 0) {
      return respond(error_response(
          {Code::kInvalidArgument, "limit: expected a number (0 for no limit)", "limit"}));
    }
  }
  if (auto v = validate_queue_name(req.params[0]); !v) return respond(error_response(v.error()));
  if (auto r = c.engine.set_queue(req.params[0], paused, limit); !r) {
    return respond(error_response(r.error()));
  }
  c.committer.poke();
  reply_committed(c.committer, std::move(respond), json{{"queue", req.params[0]}});
}

void status(ApiContext& c, const HttpRequest&, Responder respond) {
  json j = info_json(c);
  j["tasks"] = counts_json(c.engine.totals());
  j["last_commit_us"] = c.committer.last_commit_us();
  if (!c.committer.health()) j["store_error"] = c.committer.health().error().message;
  respond(ok(j));
}

void stop(ApiContext& c, const HttpRequest& req, Responder respond) {
  auto j = parse_body(req, {{"grace", Type::kString}, {"restart", Type::kBool}});
  if (!j) return respond(error_response(j.error()));
  int64_t grace = 10'000;
  if (j->contains("grace")) {
    auto d = parse_duration_ms(j->value("grace", ""), "--grace");
    if (!d) return respond(error_response(d.error()));
    grace = *d;
  }
  bool restart = j->value("restart", false);
  respond(ok(json{{"stopping", true}, {"grace_ms", grace}, {"restart", restart}}));
  c.stop(grace, restart ? StopMode::kDetach : StopMode::kDrain);
}

json event_json(const Event& e) {
  return json{{"id", e.id},
              {"at", format_timestamp(e.at_ms)},
              {"kind", e.kind},
              {"task", e.task_id ? json(e.task_id) : json(nullptr)},
              {"worker", e.worker_id ? json(e.worker_id) : json(nullptr)},
              {"from", e.from.empty() ? json(nullptr) : json(e.from)},
              {"to", e.to.empty() ? json(nullptr) : json(e.to)},
              {"detail", e.detail}};
}

constexpr std::chrono::milliseconds kStreamBatch{100};

// Server-sent events: every event after `after` as it is committed (within kStreamBatch),
// until the client goes.
void stream_events(ApiContext& c, int64_t after, Responder respond) {
  HttpResponse r{200, "", "text/event-stream"};
  r.stream = [&c, after](StreamSend send) {
    auto next = std::make_shared<int64_t>(after);
    auto pump = std::make_shared<std::function<void()>>();
    *pump = [&c, next, send, weak = std::weak_ptr<std::function<void()>>(pump)]() {
      auto events = c.store.list_events(*next, 1000);
      if (!events) return;
      for (const Event& e : *events) {
        if (!send(fmt::format("id: {}\nevent: {}\ndata: {}\n\n", e.id, e.kind,
                              event_json(e).dump()))) {
          return;  // the client went away: stop following
        }
        *next = e.id;
      }
      auto self = weak.lock();
      if (!self) return;
      if (events->empty()) {
        c.engine.follow_events([self] { (*self)(); });  // quiet: wake on the next commit
        return;
      }
      // Busy: look again in a moment rather than on every commit, so that a stream costs
      // the daemon ten wake-ups a second at most, however fast tasks finish.
      auto timer = std::make_shared<boost::asio::steady_timer>(c.io, kStreamBatch);
      timer->async_wait([self, timer](const boost::system::error_code& ec) {
        if (!ec) (*self)();
      });
    };
    // From here on, the engine's follower callback is what keeps the pump alive.
    (*pump)();
  };
  respond(std::move(r));
}

// Events after `after`; with `wait_ms`, waits that long for the first new one (long-poll).
void events(ApiContext& c, const HttpRequest& req, Responder respond) {
  int64_t after = 0;
  int limit = 1000;
  int64_t wait_ms = 0;
  try {
    if (auto it = req.query.find("after"); it != req.query.end()) after = std::stoll(it->second);
    if (auto it = req.query.find("limit"); it != req.query.end()) limit = std::stoi(it->second);
    if (auto it = req.query.find("wait_ms"); it != req.query.end())
      wait_ms = std::stoll(it->second);
  } catch (const std::exception&) {
    return respond(
        error_response({Code::kInvalidArgument, "after, limit and wait_ms must be numbers", {}}));
  }
  if (after < 0) {  // -N: the last N events
    auto last = c.store.last_event_id();
    if (!last) return respond(error_response(last.error()));
    after = std::max<int64_t>(0, *last + after);
  }
  auto answer = [&c, after, limit, respond]() {
    auto events = c.store.list_events(after, std::clamp(limit, 1, 10'000));
    if (!events) return respond(error_response(events.error()));
    json out = json::array();
    for (const Event& e : *events) out.push_back(event_json(e));
    respond(ok(out));
  };
  if (req.wants_stream) return stream_events(c, after, std::move(respond));
  auto first = c.store.list_events(after, 1);
  if (!first) return respond(error_response(first.error()));
  if (!first->empty() || wait_ms <= 0) return answer();
  auto timer =
      std::make_shared<boost::asio::steady_timer>(c.io, std::chrono::milliseconds(wait_ms));
  auto done = std::make_shared<bool>(false);
  auto once = [answer, done, timer]() {
    if (*done) return;
    *done = true;
    timer->cancel();
    answer();
  };
  c.engine.follow_events(once);
  timer->async_wait([once](const boost::system::error_code& ec) {
    if (!ec) once();
  });
}

// Stats over `since` (default 1h), never reaching back past the last `rota stats --reset`.
void stats(ApiContext& c, const HttpRequest& req, Responder respond) {
  int64_t since = 3'600'000;
  if (auto it = req.query.find("since"); it != req.query.end() && !it->second.empty()) {
    auto d = parse_duration_ms(it->second, "--since");
    if (!d) return respond(error_response(d.error()));
    since = *d;
  }
  auto by = parse_stats_by(req.query.count("by") ? req.query.at("by") : "");
  if (!by) return respond(error_response(by.error()));
  int64_t now = c.clock.now_ms();
  int64_t from = now - since;
  auto reset = c.store.get_setting("stats_reset_at");
  if (reset && *reset && !(*reset)->empty()) from = std::max<int64_t>(from, std::stoll(**reset));
  auto rows = c.store.attempts_since(from);
  if (!rows) return respond(error_response(rows.error()));
  json j = compute_stats(*rows, *by, from, now);
  json workers = worker_stats(*rows, now - from);
  for (json& w : workers) {
    for (const WorkerView& v : c.pool.view()) {
      if (v.id == w["worker"].get<int64_t>()) w["restarts"] = v.restarts;
    }
  }
  j["workers"] = workers;
  respond(ok(j));
}

void analyze(ApiContext& c, const HttpRequest&, Responder respond) {
  int64_t now = c.clock.now_ms();
  auto rows = c.store.attempts_since(now - 3'600'000);
  if (!rows) return respond(error_response(rows.error()));
  AnalyzeInput in;
  in.arrivals_per_min = c.engine.arrival_rate(15);
  in.completions_per_min = c.engine.completion_rate(15);
  StateCounts totals = c.engine.totals();
  in.backlog = totals[static_cast<int>(TaskState::kWaiting)] +
               totals[static_cast<int>(TaskState::kScheduled)];
  for (const QueueInfo& q : c.engine.queues()) {
    auto it = c.engine.counts().find(q.name);
    if (!q.paused && it != c.engine.counts().end()) {
      in.backlog += it->second[static_cast<int>(TaskState::kQueued)];
    }
  }
  in.pool_size = c.pool.size();
  in.degraded = c.pool.degraded();
  std::map<std::string, int64_t> timeouts;
  for (const AttemptRecord& a : *rows) {
    if (a.outcome == "timeout") ++timeouts[a.command];
  }
  in.timeouts_by_command.assign(timeouts.begin(), timeouts.end());
  in.command_stats = compute_stats(*rows, StatsBy::kCommand, now - 3'600'000, now)["groups"];
  in.queue_stats = compute_stats(*rows, StatsBy::kQueue, now - 3'600'000, now)["groups"];
  in.workers = json::array();
  for (const WorkerView& w : c.pool.view()) {
    if (w.health == WorkerHealth::kWorking || w.health == WorkerHealth::kSlow) ++in.busy_workers;
    if (w.health == WorkerHealth::kGivenUp) {
      in.given_up.push_back(fmt::format("slot {} (worker {})", w.slot, w.id));
    }
    in.workers.push_back({{"id", w.id},
                          {"slot", w.slot >= 0 ? json(w.slot) : json(nullptr)},
                          {"restarts", w.restarts}});
  }
  in.queues = json::array();
  for (const QueueInfo& q : c.engine.queues()) {
    int64_t ready = 0;
    if (auto it = c.engine.counts().find(q.name); it != c.engine.counts().end()) {
      ready = it->second[static_cast<int>(TaskState::kQueued)];
    }
    in.queues.push_back({{"name", q.name}, {"paused", q.paused}, {"ready", ready}});
  }
  json out = json::array();
  for (const Finding& f : rota::analyze(in)) {
    out.push_back({{"kind", f.kind}, {"message", f.message}, {"action", f.action}});
  }
  respond(ok(json{{"findings", out},
                  {"arrivals_per_min", in.arrivals_per_min},
                  {"completions_per_min", in.completions_per_min},
                  {"backlog", in.backlog}}));
}

void reset_stats(ApiContext& c, const HttpRequest&, Responder respond) {
  if (!c.committer.write()) return respond(error_response(c.committer.health().error()));
  int64_t now = c.clock.now_ms();
  if (auto r = c.store.put_setting("stats_reset_at", std::to_string(now)); !r) {
    return respond(error_response(r.error()));
  }
  c.engine.record("stats", "stats reset");
  reply_committed(c.committer, std::move(respond), json{{"reset_at", format_timestamp(now)}});
}

// Prometheus text format: the counters and histograms, and gauges read now.
void metrics(ApiContext& c, const HttpRequest&, Responder respond) {
  std::string out = c.metrics.render();
  out += "# HELP rota_tasks Tasks by queue and state.\n# TYPE rota_tasks gauge\n";
  for (const auto& [queue, counts] : c.engine.counts()) {
    for (int i = 0; i < kTaskStateCount; ++i) {
      out += fmt::format("rota_tasks{{queue=\"{}\",state=\"{}\"}} {}\n", prometheus_label(queue),
                         state_name(static_cast<TaskState>(i)), counts[i]);
    }
  }
  std::map<std::string, int> by_state;
  for (const char* s : {"starting", "idle", "working", "slow", "unresponsive", "dead", "recovering",
                        "stopped", "given-up"}) {
    by_state[s] = 0;
  }
  for (const WorkerView& w : c.pool.view()) ++by_state[worker_health_name(w.health)];
  out +=
      "# HELP rota_workers Workers of the commands pool by health state.\n# TYPE rota_workers "
      "gauge\n";
  for (const auto& [state, n] : by_state) {
    out += fmt::format("rota_workers{{pool=\"commands\",state=\"{}\"}} {}\n", state, n);
  }
  out += fmt::format(
      "# HELP rota_pool_size Slots of the commands pool.\n# TYPE rota_pool_size gauge\n"
      "rota_pool_size{{pool=\"commands\"}} {}\n"
      "# HELP rota_pool_degraded 1 when a slot was given up.\n# TYPE rota_pool_degraded gauge\n"
      "rota_pool_degraded{{pool=\"commands\"}} {}\n"
      "# HELP rota_event_loop_lag_seconds How late the daemon's loop ran its last timer.\n"
      "# TYPE rota_event_loop_lag_seconds gauge\nrota_event_loop_lag_seconds {}\n"
      "# HELP rota_daemon_start_time_seconds When the daemon started (Unix time).\n"
      "# TYPE rota_daemon_start_time_seconds gauge\nrota_daemon_start_time_seconds {}\n",
      c.pool.size(), c.pool.degraded() ? 1 : 0, (c.loop_lag_ms ? c.loop_lag_ms() : 0) / 1000.0,
      c.started_at_ms / 1000.0);
  respond(HttpResponse{200, std::move(out), "text/plain; version=0.0.4; charset=utf-8"});
}

void health(ApiContext& c, const HttpRequest&, Responder respond) {
  json workers = workers_json(c);
  json by_state = json::object();
  for (const json& w : workers)
    by_state[w["state"].get<std::string>()] = by_state.value(w["state"].get<std::string>(), 0) + 1;
  json queues = json::array();
  for (const QueueInfo& q : c.engine.queues()) {
    StateCounts counts{};
    if (auto it = c.engine.counts().find(q.name); it != c.engine.counts().end())
      counts = it->second;
    queues.push_back({{"name", q.name},
                      {"paused", q.paused},
                      {"ready", counts[static_cast<int>(TaskState::kQueued)]},
                      {"running", counts[static_cast<int>(TaskState::kRunning)]},
                      {"waiting", counts[static_cast<int>(TaskState::kWaiting)] +
                                      counts[static_cast<int>(TaskState::kScheduled)]}});
  }
  int64_t now = c.clock.now_ms();
  json alerts = c.alerts.since(now - 3'600'000);
  struct stat st {};
  int64_t store_bytes = ::stat(c.store.path().c_str(), &st) == 0 ? st.st_size : 0;
  std::string wal = c.store.path() + "-wal";
  if (::stat(wal.c_str(), &st) == 0) store_bytes += st.st_size;
  bool store_ok = c.committer.health().has_value();
  bool degraded = c.pool.degraded() || !store_ok;
  json j = {{"status", degraded ? "degraded" : "healthy"},
            {"pid", ::getpid()},
            {"uptime_ms", now - c.started_at_ms},
            {"loop_lag_ms", c.loop_lag_ms ? c.loop_lag_ms() : 0},
            {"store",
             {{"path", c.store.path()},
              {"bytes", store_bytes},
              {"last_commit_us", c.committer.last_commit_us()},
              {"ok", store_ok}}},
            {"pool",
             {{"name", "commands"},
              {"size", c.pool.size()},
              {"state", c.pool.degraded() ? "degraded" : "ok"},
              {"workers_by_state", by_state}}},
            {"workers", workers},
            {"queues", queues},
            {"alerts_last_hour", alerts}};
  if (!store_ok) j["store"]["error"] = c.committer.health().error().message;
  respond(ok(j));
}

// ---- schedules -------------------------------------------------------------------------

// The body of POST /v1/schedules and /v1/watches: a name, and the definition beside it.
Result<std::pair<std::string, json>> named_definition(const HttpRequest& req) {
  json j = json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) {
    return make_error(Code::kInvalidArgument,
                      "expected a JSON object with a \"name\" and a definition", "name");
  }
  std::string name = j["name"];
  j.erase("name");
  return std::pair{std::move(name), std::move(j)};
}

void schedule_add(ApiContext& c, const HttpRequest& req, Responder respond) {
  auto body = named_definition(req);
  if (!body) return respond(error_response(body.error()));
  auto added = c.scheduler.add(body->first, body->second);
  if (!added) return respond(error_response(added.error()));
  reply_committed(c.committer, std::move(respond), *added, 201);
}

void schedule_list(ApiContext& c, const HttpRequest&, Responder respond) {
  auto list = c.scheduler.list();
  respond(list ? ok(*list) : error_response(list.error()));
}

void schedule_show(ApiContext& c, const HttpRequest& req, Responder respond) {
  auto shown = c.scheduler.show(req.params[0]);
  respond(shown ? ok(*shown) : error_response(shown.error()));
}

void schedule_change(ApiContext& c, const HttpRequest& req, Responder respond) {
  const std::string& name = req.params[0];
  const std::string& verb = req.params[1];
  Status r;
  json reply = {{"schedule", name}};
  if (verb == "pause" || verb == "resume") {
    r = c.scheduler.set_paused(name, verb == "pause");
  } else if (verb == "run") {
    auto ids = c.scheduler.run_now(name);
    if (ids) reply["ids"] = *ids;
    r = ids ? Status{} : std::unexpected(ids.error());
  } else {
    r = make_error(Code::kNotFound, fmt::format("no such schedule action \"{}\"", verb));
  }
  if (!r) return respond(error_response(r.error()));
  reply_committed(c.committer, std::move(respond), reply);
}

void schedule_remove(ApiContext& c, const HttpRequest& req, Responder respond) {
  if (auto r = c.scheduler.remove(req.params[0]); !r) return respond(error_response(r.error()));
  reply_committed(c.committer, std::move(respond), json{{"removed", req.params[0]}});
}

// ---- pools -----------------------------------------------------------------------------

json pool_json(ApiContext& c, const Pool& pool, const PoolDef* def) {
  int64_t busy = 0, done = 0, failed = 0;
  for (const WorkerView& w : pool.view()) {
    busy += w.in_flight;
    done += w.tasks_done;
    failed += w.tasks_failed;
  }
  json j = {{"name", pool.name()},
            {"size", pool.size()},
            {"state", pool.degraded() ? "degraded" : "ok"},
            {"queued", c.engine.queued_for(pool.name())},
            {"running", busy},
            {"tasks_done", done},
            {"tasks_failed", failed},
            {"builtin", def == nullptr}};
  if (def) {
    j["cmd"] = def->cmd;
    j["concurrency"] = def->concurrency;
    j["queues"] = def->queues;
    j["cwd"] = def->cwd.empty() ? json(nullptr) : json(def->cwd);
    j["env"] = def->env;
    j["autoscale"] = def->max > 0 ? json{{"min", def->min}, {"max", def->max}} : json(nullptr);
    j["created_at"] = format_timestamp(def->created_at_ms);
  } else {
    j["concurrency"] = 1;
    j["autoscale"] = c.autoscaler.range() ? json{{"min", c.autoscaler.range()->min},
                                                 {"max", c.autoscaler.range()->max}}
                                          : json(nullptr);
  }
  return j;
}

// Reads the fields of a pool definition over `def` (POST /v1/pools and /v1/pools/NAME).
Status pool_fields(const json& j, PoolDef& def) {
  for (const auto& [key, v] : j.items()) {
    try {
      if (key == "cmd") {
        def.cmd = v.get<std::string>();
      } else if (key == "size") {
        def.size = v.get<int>();
        def.min = def.max = 0;
      } else if (key == "min") {
        def.min = v.get<int>();
      } else if (key == "max") {
        def.max = v.get<int>();
      } else if (key == "queues") {
        def.queues = v.get<std::vector<std::string>>();
      } else if (key == "concurrency") {
        def.concurrency = v.get<int>();
      } else if (key == "cwd") {
        def.cwd = v.get<std::string>();
      } else if (key == "env") {
        def.env = v.get<Env>();
      } else if (key != "name") {
        return make_error(Code::kInvalidArgument, key + ": unknown field", key);
      }
    } catch (const json::exception&) {
      return make_error(Code::kInvalidArgument,
                        fmt::format("{}: wrong type ({})", key, v.type_name()), key);
    }
  }
  if (j.contains("size") && (j.contains("min") || j.contains("max"))) {
    return make_error(Code::kInvalidArgument, "give either size or min and max", "size");
  }
  if ((j.contains("min") || j.contains("max")) && def.max == 0) {
    return make_error(Code::kInvalidArgument, "max: give a maximum of at least 1", "max");
  }
  return {};
}

void pool_list(ApiContext& c, const HttpRequest&, Responder respond) {
  json out = json::array({pool_json(c, c.pool, nullptr)});
  for (const PoolDef& d : c.user_pools.list()) {
    out.push_back(pool_json(c, *c.user_pools.find(d.name), &d));
  }
  respond(ok(out));
}

void pool_show(ApiContext& c, const HttpRequest& req, Responder respond) {
  const std::string& name = req.params[0];
  json j;
  if (name == kCommandsPool) {
    j = pool_json(c, c.pool, nullptr);
  } else if (auto def = c.user_pools.get(name)) {
    j = pool_json(c, *c.user_pools.find(name), &*def);
  } else {
    return respond(error_response(
        {Code::kNotFound, fmt::format("no pool named {} (see rota pool list)", name), {}}));
  }
  j["workers"] = workers_json(c, name);
  respond(ok(j));
}

void pool_add(ApiContext& c, const HttpRequest& req, Responder respond) {
  json j = json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) {
    return respond(error_response(
        {Code::kInvalidArgument, "expected a JSON object with a \"name\" and a \"cmd\"", "name"}));
  }
  PoolDef def;
  def.name = j["name"];
  if (auto r = pool_fields(j, def); !r) return respond(error_response(r.error()));
  if (def.max > 0 && !j.contains("size")) def.size = def.min;
  auto added = c.user_pools.add(std::move(def));
  if (!added) return respond(error_response(added.error()));
  reply_committed(c.committer, std::move(respond),
                  pool_json(c, *c.user_pools.find(added->name), &*added), 201);
}

void pool_set(ApiContext& c, const HttpRequest& req, Responder respond) {
  const std::string& name = req.params[0];
  json j = json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
  if (!j.is_object()) {
    return respond(error_response({Code::kInvalidArgument, "expected a JSON object", {}}));
  }
  auto def = c.user_pools.get(name);
  if (!def) {
    return respond(error_response({Code::kNotFound,
                                   name == kCommandsPool
                                       ? std::string("the commands pool is sized with rota scale")
                                       : fmt::format("no pool named {} (see rota pool list)", name),
                                   {}}));
  }
  if (auto r = pool_fields(j, *def); !r) return respond(error_response(r.error()));
  auto changed = c.user_pools.set(std::move(*def));
  if (!changed) return respond(error_response(changed.error()));
  reply_committed(c.committer, std::move(respond),
                  pool_json(c, *c.user_pools.find(name), &*changed));
}

void pool_remove(ApiContext& c, const HttpRequest& req, Responder respond) {
  if (auto r = c.user_pools.remove(req.params[0]); !r) return respond(error_response(r.error()));
  reply_committed(c.committer, std::move(respond), json{{"removed", req.params[0]}});
}

// ---- watches ---------------------------------------------------------------------------

void watch_add(ApiContext& c, const HttpRequest& req, Responder respond) {
  auto body = named_definition(req);
  if (!body) return respond(error_response(body.error()));
  auto added = c.watcher.add(body->first, body->second);
  if (!added) return respond(error_response(added.error()));
  reply_committed(c.committer, std::move(respond), *added, 201);
}

void watch_list(ApiContext& c, const HttpRequest&, Responder respond) {
  respond(ok(c.watcher.list()));
}

void watch_remove(ApiContext& c, const HttpRequest& req, Responder respond) {
  if (auto r = c.watcher.remove(req.params[0]); !r) return respond(error_response(r.error()));
  reply_committed(c.committer, std::move(respond), json{{"removed", req.params[0]}});
}

}  // namespace

// Every reply leaves after the commit of what the loop has written so far: a read may have
// seen writes that are not yet durable (a pool's results commit in groups), and no client
// may be told of a task, a result or an event id that a crash could still take back.
Responder after_commit(Committer& committer, Responder respond) {
  return [&committer, respond = std::move(respond)](HttpResponse response) {
    committer.after_commit(
        [respond, response = std::move(response)](const Status&) { respond(response); },
        Wait::kNow);
  };
}

void add_routes(Router& r, ApiContext& c) {
  auto bind = [&c](void (*fn)(ApiContext&, const HttpRequest&, Responder)) {
    return [&c, fn](const HttpRequest& req, Responder respond) {
      fn(c, req, after_commit(c.committer, std::move(respond)));
    };
  };
  r.add("GET", "/v1/info",
        [&c](const HttpRequest&, Responder respond) { respond(ok(info_json(c))); });
  r.add("GET", "/v1/status", bind(status));
  r.add("POST", "/v1/tasks", bind(add));
  r.add("GET", "/v1/tasks", bind(list));
  r.add("POST", "/v1/tasks/cancel", bind(cancel));
  r.add("POST", "/v1/tasks/retry", bind(retry));
  r.add("POST", "/v1/tasks/clean", bind(clean));
  r.add("GET", "/v1/tasks/{}", bind(show));
  r.add("GET", "/v1/tasks/{}/log", bind(log));
  r.add("POST", "/v1/wait", bind(wait));
  r.add("GET", "/v1/workers", bind(workers));
  r.add("POST", "/v1/scale", bind(scale));
  r.add("GET", "/v1/queues", bind(queues));
  r.add("POST", "/v1/queues/{}/pause",
        [&c](const HttpRequest& req, Responder respond) { queue_change(c, req, respond, true); });
  r.add("POST", "/v1/queues/{}/resume",
        [&c](const HttpRequest& req, Responder respond) { queue_change(c, req, respond, false); });
  r.add("POST", "/v1/queues/{}/limit", [&c](const HttpRequest& req, Responder respond) {
    queue_change(c, req, respond, std::nullopt);
  });
  // Not through after_commit: the reply must be on its way before the stop's own commit
  // callback stops the loop.
  r.add("POST", "/v1/daemon/stop",
        [&c](const HttpRequest& req, Responder respond) { stop(c, req, std::move(respond)); });
  r.add("GET", "/v1/events", bind(events));
  r.add("GET", "/v1/health", bind(health));
  r.add("GET", "/metrics", bind(metrics));
  r.add("GET", "/v1/stats", bind(stats));
  r.add("POST", "/v1/stats/reset", bind(reset_stats));
  r.add("GET", "/v1/analyze", bind(analyze));
  r.add("POST", "/v1/workers/{}/restart", bind(restart));
  r.add("GET", "/v1/schedules", bind(schedule_list));
  r.add("POST", "/v1/schedules", bind(schedule_add));
  r.add("GET", "/v1/schedules/{}", bind(schedule_show));
  r.add("DELETE", "/v1/schedules/{}", bind(schedule_remove));
  r.add("POST", "/v1/schedules/{}/{}", bind(schedule_change));
  r.add("GET", "/v1/pools", bind(pool_list));
  r.add("POST", "/v1/pools", bind(pool_add));
  r.add("GET", "/v1/pools/{}", bind(pool_show));
  r.add("POST", "/v1/pools/{}", bind(pool_set));
  r.add("DELETE", "/v1/pools/{}", bind(pool_remove));
  r.add("GET", "/v1/watches", bind(watch_list));
  r.add("POST", "/v1/watches", bind(watch_add));
  r.add("DELETE", "/v1/watches/{}", bind(watch_remove));
}

}  // namespace rota
