// The daemon's own log: readable text on a terminal, JSON lines otherwise (time, level,
// component, worker, task, message), for journald, files and log shippers.
#pragma once

#include <string>

#include "core/error.h"

namespace rota {

enum class LogStyle { kText, kJson };

// Sets up spdlog's default logger on stderr. `level`: trace, debug, info, warn or error.
Status setup_daemon_log(LogStyle style, const std::string& level);

// One JSON log line for a message "component: text" (a message without such a prefix is the
// daemon's); "worker N" and "task N" in the text fill those fields.
std::string json_log_line(const std::string& time, const std::string& level,
                          const std::string& message);

}  // namespace rota
