#include "daemon/log_format.h"

#include <fmt/format.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cctype>
#include <chrono>
#include <nlohmann/json.hpp>

#include "core/clock.h"

namespace rota {
namespace {

// The number after `word ` in `text`, if any ("worker 12" -> 12).
nlohmann::ordered_json id_after(const std::string& text, const std::string& word) {
  size_t at = text.find(word + " ");
  if (at == std::string::npos ||
      (at > 0 && std::isalnum(static_cast<unsigned char>(text[at - 1])))) {
    return nullptr;
  }
  size_t i = at + word.size() + 1;
  size_t end = i;
  while (end < text.size() && std::isdigit(static_cast<unsigned char>(text[end]))) ++end;
  if (end == i) return nullptr;
  return std::stoll(text.substr(i, end - i));
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count();
    std::string line = json_log_line(format_timestamp(ms),
                                     std::string(spdlog::level::to_string_view(msg.level).data(),
                                                 spdlog::level::to_string_view(msg.level).size()),
                                     std::string(msg.payload.data(), msg.payload.size()));
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

}  // namespace

std::string json_log_line(const std::string& time, const std::string& level,
                          const std::string& message) {
  std::string component = "daemon";
  std::string text = message;
  size_t colon = message.find(": ");
  if (colon != std::string::npos && colon > 0 && colon < 24 &&
      message.find(' ') > colon) {  // one word, then ": "
    component = message.substr(0, colon);
    text = message.substr(colon + 2);
  }
  nlohmann::ordered_json j = {{"time", time},
                              {"level", level},
                              {"component", component},
                              {"worker", id_after(text, "worker")},
                              {"task", id_after(text, "task")},
                              {"message", text}};
  return j.dump() + "\n";
}

Status setup_daemon_log(LogStyle style, const std::string& level) {
  auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") {
    return make_error(
        Code::kInvalidArgument,
        fmt::format("--log-level: \"{}\" is not trace, debug, info, warn or error", level),
        "--log-level");
  }
  auto logger =
      std::make_shared<spdlog::logger>("rota", std::make_shared<spdlog::sinks::stderr_sink_st>());
  if (style == LogStyle::kJson) {
    logger->set_formatter(std::make_unique<JsonFormatter>());
  } else {
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");
  }
  logger->set_level(parsed);
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  return {};
}

}  // namespace rota
