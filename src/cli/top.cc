// rota top: a live view of the pool for a terminal (ncurses): workers with their health,
// queues with depths and rates, a throughput sparkline, recent failures and alerts.
// Refreshes every second; q quits; fits 80x24; no colour under NO_COLOR.
#include <fmt/format.h>
#include <langinfo.h>

#include <algorithm>
#include <clocale>
#include <cstdlib>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "cli/output.h"

// Last: its macros (timeout, erase, ...) would clash with the headers above.
#include <ncursesw/ncurses.h>

namespace rota::cli {
namespace {

using nlohmann::json;

constexpr int kRefreshMs = 1000;
constexpr size_t kSparkWidth = 40;

enum Pair { kGood = 1, kBusy, kWarn, kBad, kTitle };

int color_of(const std::string& state) {
  if (state == "idle" || state == "succeeded" || state == "healthy") return kGood;
  if (state == "working" || state == "running") return kBusy;
  if (state == "slow" || state == "unresponsive" || state == "recovering" || state == "paused") {
    return kWarn;
  }
  if (state == "dead" || state == "given-up" || state == "failed" || state == "degraded")
    return kBad;
  return 0;
}

class Top {
 public:
  Top(Client& client, bool color, bool utf8) : client_(client), color_(color), utf8_(utf8) {}
  int run();

 private:
  Status refresh();
  void draw();
  void put(int y, int x, const std::string& text, int pair = 0, bool bold = false);
  std::string sparkline() const;

  Client& client_;
  bool color_;
  bool utf8_;
  json health_;
  std::deque<double> rates_;                      // finished tasks per second, newest last
  std::map<std::string, int64_t> last_finished_;  // queue -> finished count at last refresh
  std::map<std::string, double> queue_rates_;
  std::vector<json> failures_;
  int64_t last_event_ = -50;
  std::string error_;
};

Status Top::refresh() {
  auto h = client_.call("GET", "/v1/health");
  if (!h) return std::unexpected(h.error());
  health_ = *h;
  auto q = client_.call("GET", "/v1/queues");
  if (!q) return std::unexpected(q.error());
  double total = 0;
  for (const json& queue : *q) {
    const json& c = queue["counts"];
    int64_t finished = c["succeeded"].get<int64_t>() + c["failed"].get<int64_t>() +
                       c["cancelled"].get<int64_t>() + c["skipped"].get<int64_t>();
    std::string name = queue["name"];
    double rate =
        last_finished_.count(name) ? static_cast<double>(finished - last_finished_[name]) : 0;
    queue_rates_[name] = std::max(0.0, rate);
    total += std::max(0.0, rate);
    last_finished_[name] = finished;
  }
  rates_.push_back(total);
  if (rates_.size() > kSparkWidth) rates_.pop_front();
  auto events = client_.call("GET", fmt::format("/v1/events?after={}&limit=500", last_event_));
  if (!events) return std::unexpected(events.error());
  for (const json& e : *events) {
    last_event_ = e["id"];
    if (e["to"] == "failed" || e["kind"] == "alert") failures_.push_back(e);
  }
  if (failures_.size() > 50) failures_.erase(failures_.begin(), failures_.end() - 50);
  return {};
}

void Top::put(int y, int x, const std::string& text, int pair, bool bold) {
  int rows, cols;
  getmaxyx(stdscr, rows, cols);
  if (y >= rows || x >= cols) return;
  std::string clipped = text.substr(0, static_cast<size_t>(cols - x));
  int attrs = (color_ && pair ? COLOR_PAIR(pair) : 0) | (bold ? A_BOLD : 0);
  attron(attrs);
  mvaddstr(y, x, clipped.c_str());
  attroff(attrs);
}

std::string Top::sparkline() const {
  static const char* kBlocks[] = {" ", "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
  static const char kAscii[] = " .:-=+*#%@";
  double peak = 1;
  for (double r : rates_) peak = std::max(peak, r);
  std::string out;
  for (double r : rates_) {
    int level = static_cast<int>(r / peak * 8 + 0.5);
    out += utf8_ ? kBlocks[level] : std::string(1, kAscii[level]);
  }
  return out;
}

void Top::draw() {
  erase();
  int rows, cols;
  getmaxyx(stdscr, rows, cols);
  int y = 0;
  if (!error_.empty()) {
    put(y++, 0, "rota top: " + error_, kBad, true);
    refresh();
    return;
  }
  std::string status = health_["status"];
  put(y, 0,
      fmt::format("rota top  pid {}  up {}  loop lag {} ms  ", health_["pid"].get<int>(),
                  age(health_["uptime_ms"]), health_["loop_lag_ms"].get<int64_t>()),
      kTitle, true);
  put(y++, std::min(cols - 12, 58), status, color_of(status), true);
  put(y++, 0,
      fmt::format("throughput {:>6.1f}/s  {}", rates_.empty() ? 0.0 : rates_.back(), sparkline()));
  ++y;
  put(y++, 0,
      fmt::format("{:<5} {:<4} {:<8} {:<12} {:<8} {:>9} {:>8}", "WORKER", "SLOT", "PID", "STATE",
                  "TASK", "HEARTBEAT", "RESTARTS"),
      0, true);
  const json& workers = health_["workers"];
  int room = std::max(2, (rows - 14) / 2);
  int shown = 0;
  for (const json& w : workers) {
    if (shown++ >= room) {
      put(y++, 0, fmt::format("... and {} more (rota workers)", workers.size() - room));
      break;
    }
    std::string state = w["state"];
    put(y, 0, fmt::format("{:<5} {:<4} {:<8} ", cell(w["id"]), cell(w["slot"]), cell(w["pid"])));
    put(y, 21, fmt::format("{:<12}", state), color_of(state));
    put(y++, 34,
        fmt::format("{:<8} {:>9} {:>8}", cell(w["task"]), age(w["heartbeat_age_ms"]),
                    cell(w["restarts"])));
  }
  ++y;
  put(y++, 0,
      fmt::format("{:<16} {:<7} {:>7} {:>8} {:>8} {:>8}", "QUEUE", "STATE", "READY", "RUNNING",
                  "WAITING", "DONE/S"),
      0, true);
  for (const json& q : health_["queues"]) {
    if (y >= rows - 6) break;
    std::string state = q["paused"].get<bool>() ? "paused" : "active";
    put(y, 0, fmt::format("{:<16} ", q["name"].get<std::string>().substr(0, 16)));
    put(y, 17, fmt::format("{:<7}", state), color_of(state));
    put(y++, 25,
        fmt::format("{:>7} {:>8} {:>8} {:>8.1f}", q["ready"].get<int64_t>(),
                    q["running"].get<int64_t>(), q["waiting"].get<int64_t>(),
                    queue_rates_[q["name"].get<std::string>()]));
  }
  ++y;
  put(y++, 0, "RECENT FAILURES AND ALERTS", 0, true);
  int left = rows - y - 1;
  for (auto it = failures_.rbegin(); it != failures_.rend() && left-- > 0; ++it) {
    const json& e = *it;
    std::string at = e["at"].get<std::string>().substr(11, 8);
    std::string what = e["kind"] == "alert" ? e["detail"].get<std::string>()
                                            : fmt::format("task {} failed: {}", cell(e["task"]),
                                                          e["detail"].get<std::string>());
    put(y++, 0, fmt::format("{} {}", at, what), e["kind"] == "alert" ? kWarn : kBad);
  }
  put(rows - 1, 0, "q quits  (refreshes every second)");
  refresh();
}

int Top::run() {
  for (;;) {
    auto r = refresh();
    error_ = r ? "" : r.error().message;
    draw();
    timeout(kRefreshMs);
    int key = getch();
    if (key == 'q' || key == 'Q') return 0;
  }
}

// Restores the terminal however the view ends.
struct Screen {
  Screen() {
    initscr();
    cbreak();
    noecho();
    curs_set(0);
    keypad(stdscr, TRUE);
  }
  ~Screen() { endwin(); }
};

int top(const Globals& g) {
  Client client = make_client(g);
  if (auto r = client.connect(); !r) return report(r.error());
  std::setlocale(LC_ALL, "");
  bool utf8 = std::string(nl_langinfo(CODESET)) == "UTF-8";
  const char* no_color = std::getenv("NO_COLOR");
  Screen screen;
  bool color = has_colors() && !(no_color && *no_color);
  if (color) {
    start_color();
    use_default_colors();
    init_pair(kGood, COLOR_GREEN, -1);
    init_pair(kBusy, COLOR_CYAN, -1);
    init_pair(kWarn, COLOR_YELLOW, -1);
    init_pair(kBad, COLOR_RED, -1);
    init_pair(kTitle, COLOR_WHITE, -1);
  }
  return Top(client, color, utf8).run();
}

}  // namespace

void add_top_command(CLI::App& app, Globals& g, Action& action) {
  CLI::App* c =
      app.add_subcommand("top", "A live view of workers, queues, throughput and failures");
  c->callback([&g, &action] { action = [&g] { return top(g); }; });
}

}  // namespace rota::cli
