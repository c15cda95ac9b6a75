#include "cli/output.h"

#include <fmt/format.h>

#include <algorithm>

#include "cli/command.h"
#include "core/duration.h"

namespace rota::cli {

void print_table(const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  auto visible = [](const std::string& s) {
    // Colour escapes take no room on screen.
    size_t n = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\x1b') {
        while (i < s.size() && s[i] != 'm') ++i;
        continue;
      }
      n += (static_cast<unsigned char>(s[i]) & 0xC0) != 0x80;
    }
    return n;
  };
  for (size_t i = 0; i < header.size(); ++i) width[i] = header[i].size();
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], visible(row[i]));
    }
  }
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t i = 0; i < cells.size(); ++i) {
      out += cells[i];
      if (i + 1 < cells.size()) out.append(width[i] - visible(cells[i]) + 2, ' ');
    }
    out += '\n';
  };
  line(header);
  for (const auto& row : rows) line(row);
  std::fwrite(out.data(), 1, out.size(), stdout);
}

std::string colored_state(const std::string& state) {
  if (!use_color()) return state;
  const char* color = "";
  if (state == "succeeded" || state == "idle") color = "\x1b[32m";
  if (state == "failed" || state == "dead" || state == "given-up") color = "\x1b[31m";
  if (state == "running" || state == "working") color = "\x1b[36m";
  if (state == "cancelled" || state == "skipped" || state == "slow" || state == "unresponsive" ||
      state == "recovering") {
    color = "\x1b[33m";
  }
  if (!*color) return state;
  return fmt::format("{}{}\x1b[0m", color, state);
}

std::string command_line(const nlohmann::json& task) {
  const auto& c = task["command"];
  if (c.is_null()) {
    // A message task: its pool and (the start of) its payload.
    std::string payload = task.contains("payload") ? task["payload"].dump() : "";
    if (payload.size() > 60) payload = payload.substr(0, 57) + "...";
    return fmt::format("{} <- {}", task.value("pool", "?"), payload);
  }
  if (c.contains("http")) {
    return c["http"]["method"].get<std::string>() + " " + c["http"]["url"].get<std::string>();
  }
  if (c.contains("shell")) return c["shell"].get<std::string>();
  std::string out;
  for (const auto& a : c["argv"]) {
    if (!out.empty()) out += ' ';
    std::string s = a.get<std::string>();
    bool plain = !s.empty() && s.find_first_of(" \t'\"$\\") == std::string::npos;
    out += plain ? s : "'" + s + "'";
  }
  return out;
}

std::string url_encode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

std::string cell(const nlohmann::json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

std::string age(const nlohmann::json& ms) {
  return ms.is_null() ? "-" : format_duration_ms(ms.get<int64_t>());
}

void print_workers(const nlohmann::json& workers) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& w : workers) {
    rows.push_back({cell(w["id"]), cell(w["slot"]), cell(w["pid"]), colored_state(w["state"]),
                    cell(w["task"]), age(w["uptime_ms"]), cell(w["tasks_done"]),
                    cell(w["tasks_failed"]), cell(w["restarts"]), age(w["heartbeat_age_ms"])});
  }
  print_table(
      {"ID", "SLOT", "PID", "STATE", "TASK", "UPTIME", "DONE", "FAILED", "RESTARTS", "HEARTBEAT"},
      rows);
}

void draw_progress(int64_t finished, int64_t total, int64_t failed) {
  constexpr int kWidth = 30;
  int filled = total ? static_cast<int>(kWidth * finished / total) : kWidth;
  std::string bar(static_cast<size_t>(filled), '#');
  bar.append(static_cast<size_t>(kWidth - filled), '.');
  fmt::print(stderr, "\r[{}] {}/{}{}", bar, finished, total,
             failed ? fmt::format(" ({} not succeeded)", failed) : "");
  std::fflush(stderr);
}

}  // namespace rota::cli
