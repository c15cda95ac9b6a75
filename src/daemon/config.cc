#include "daemon/config.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <toml++/toml.h>
#include <array>
#include <charconv>
#include <variant>

#include "core/duration.h"

namespace rota {
namespace {

using Field = std::variant<int64_t Config::*, int Config::*, std::string Config::*, bool Config::*>;

struct Key {
  const char* name;
  Field field;  // int64_t: a duration in ms; int: a count; string: as is; bool: true/false
};

const std::array kKeys = {
    Key{"heartbeat_interval", &Config::heartbeat_interval_ms},
    Key{"slow_after", &Config::slow_after_ms},
    Key{"unresponsive_after", &Config::unresponsive_after_ms},
    Key{"dead_after", &Config::dead_after_ms},
    Key{"max_restarts", &Config::max_restarts},
    Key{"restart_window", &Config::restart_window_ms},
    Key{"poison_after", &Config::poison_after},
    Key{"reattach_grace", &Config::reattach_grace_ms},
    Key{"stall_after", &Config::stall_after_ms},
    Key{"alert_command", &Config::alert_command},
    Key{"workers", &Config::workers},
    Key{"scale_up_wait", &Config::scale_up_wait_ms},
    Key{"scale_down_idle", &Config::scale_down_idle_ms},
    Key{"listen", &Config::listen},
    Key{"metrics_public", &Config::metrics_public},
    Key{"max_payload_kib", &Config::max_payload_kib},
};

const Key* find_key(const std::string& name) {
  for (const Key& k : kKeys) {
    if (name == k.name) return &k;
  }
  return nullptr;
}

Error bad(const std::string& origin, const std::string& key, const std::string& what) {
  return Error{Code::kInvalidArgument, fmt::format("{}: {}: {}", origin, key, what), key};
}

}  // namespace

std::vector<std::string> config_keys() {
  std::vector<std::string> keys;
  for (const Key& k : kKeys) keys.emplace_back(k.name);
  return keys;
}

Status set_config(Config& config, const std::string& key, const std::string& value,
                  const std::string& origin) {
  const Key* k = find_key(key);
  if (!k) {
    return std::unexpected(
        bad(origin, key,
            "unknown key (known: heartbeat_interval, slow_after, "
            "unresponsive_after, dead_after, max_restarts, "
            "restart_window, poison_after, reattach_grace, "
            "stall_after, alert_command, workers, scale_up_wait, scale_down_idle, listen, "
            "metrics_public, max_payload_kib)"));
  }
  if (auto* ms = std::get_if<int64_t Config::*>(&k->field)) {
    auto d = parse_duration_ms(value, key);
    if (!d)
      return std::unexpected(
          bad(origin, key, fmt::format("\"{}\" is not a duration (try 500ms, 5s, 10m)", value)));
    if (*d <= 0) return std::unexpected(bad(origin, key, "must be more than 0"));
    config.*(*ms) = *d;
  } else if (auto* count = std::get_if<int Config::*>(&k->field)) {
    int n = 0;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc() || p != value.data() + value.size() || n < 0 || n > 100'000) {
      return std::unexpected(
          bad(origin, key, fmt::format("\"{}\" is not a whole number from 0", value)));
    }
    config.*(*count) = n;
  } else if (auto* flag = std::get_if<bool Config::*>(&k->field)) {
    if (value != "true" && value != "false") {
      return std::unexpected(bad(origin, key, fmt::format("\"{}\" is not true or false", value)));
    }
    config.*(*flag) = value == "true";
  } else {
    config.*std::get<std::string Config::*>(k->field) = value;
  }
  return {};
}

Result<Config> load_config(const std::string& path) {
  Config config;
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return config;
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    return make_error(Code::kInvalidArgument,
                      fmt::format("{}:{}: {}", path, e.source().begin.line, e.description()));
  }
  for (const auto& [name, node] : table) {
    std::string key(name.str());
    std::string text;
    if (const auto* s = node.as_string()) {
      text = s->get();
    } else if (const auto* i = node.as_integer()) {
      text = std::to_string(i->get());
    } else if (const auto* b = node.as_boolean()) {
      text = b->get() ? "true" : "false";
    } else {
      return std::unexpected(bad(path, key, "expected a string, a whole number or true/false"));
    }
    if (auto r = set_config(config, key, text, path); !r) return std::unexpected(r.error());
  }
  return config;
}

Status finish_config(Config& c, const std::map<std::string, std::string>& flags) {
  for (const auto& [key, value] : flags) {
    std::string flag = "--" + key;
    for (char& ch : flag) ch = ch == '_' ? '-' : ch;
    if (auto r = set_config(c, key, value, flag); !r) return r;
  }
  if (c.unresponsive_after_ms <= c.heartbeat_interval_ms) {
    return make_error(Code::kInvalidArgument,
                      "unresponsive_after must be longer than heartbeat_interval",
                      "unresponsive_after");
  }
  if (c.dead_after_ms <= c.unresponsive_after_ms) {
    return make_error(Code::kInvalidArgument, "dead_after must be longer than unresponsive_after",
                      "dead_after");
  }
  if (c.poison_after < 1) {
    return make_error(Code::kInvalidArgument, "poison_after must be at least 1", "poison_after");
  }
  return {};
}

}  // namespace rota
