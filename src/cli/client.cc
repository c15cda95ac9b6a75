#include "cli/client.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <fstream>
#include <thread>

extern char** environ;

namespace rota {
namespace beast = boost::beast;
namespace http = beast::http;
using local = boost::asio::local::stream_protocol;

namespace {

std::string last_line_of(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return last;
}

}  // namespace

Client::Client(Home home) : home_(std::move(home)) {}
Client::~Client() = default;

bool Client::try_connect() {
  auto socket = std::make_unique<local::socket>(io_);
  beast::error_code ec;
  socket->connect(local::endpoint(home_.socket), ec);
  if (ec) return false;
  socket_ = std::move(socket);
  return true;
}

Status Client::connect_existing() {
  if (try_connect()) return {};
  return make_error(Code::kUnavailable, fmt::format("no daemon is running for {}", home_.dir));
}

Status Client::connect(const StartOptions& start) {
  if (try_connect()) return {};
  if (auto r = start_daemon(home_, start); !r) return r;
  if (try_connect()) return {};
  return make_error(Code::kUnavailable, fmt::format("the daemon for {} does not answer on {}",
                                                    home_.dir, home_.socket));
}

Result<std::pair<int, std::string>> Client::request(const std::string& method,
                                                    const std::string& target,
                                                    const std::string& body) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!socket_ && !try_connect()) break;
    http::request<http::string_body> req(http::string_to_verb(method), target, 11);
    req.set(http::field::host, "rota");
    req.keep_alive(true);
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
    }
    req.prepare_payload();
    beast::error_code ec;
    http::write(*socket_, req, ec);
    if (!ec) {
      beast::flat_buffer buffer;
      http::response_parser<http::string_body> parser;
      parser.body_limit(1ULL << 32);
      http::read(*socket_, buffer, parser, ec);
      if (!ec) {
        auto& res = parser.get();
        if (!res.keep_alive()) socket_.reset();
        return std::pair{static_cast<int>(res.result_int()), std::move(res.body())};
      }
    }
    socket_.reset();  // a kept-alive connection the daemon closed: try once more afresh
  }
  return make_error(Code::kUnavailable,
                    fmt::format("the daemon for {} stopped answering", home_.dir));
}

Result<nlohmann::json> Client::call(const std::string& method, const std::string& target,
                                    const nlohmann::json& body) {
  return call_raw(method, target, body.is_null() ? std::string() : body.dump());
}

Result<nlohmann::json> Client::call_raw(const std::string& method, const std::string& target,
                                        const std::string& body) {
  auto r = request(method, target, body);
  if (!r) return std::unexpected(r.error());
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(r->second);
  } catch (const nlohmann::json::exception&) {
    return make_error(Code::kInternal, fmt::format("the daemon sent a reply that is not JSON "
                                                   "(HTTP {})",
                                                   r->first));
  }
  if (r->first >= 400) {
    const auto& e = j.value("error", nlohmann::json::object());
    auto code = code_from_name(e.value("code", "internal"));
    return make_error(code.value_or(Code::kInternal), e.value("message", "unknown error"),
                      e.value("field", ""));
  }
  return j;
}

Result<std::string> Client::call_text(const std::string& method, const std::string& target) {
  auto r = request(method, target, "");
  if (!r) return std::unexpected(r.error());
  if (r->first >= 400) {
    auto j = nlohmann::json::parse(r->second, nullptr, false);
    std::string message = j.is_object() ? j["error"].value("message", "error") : r->second;
    return make_error(r->first == 404 ? Code::kNotFound : Code::kInternal, message);
  }
  return std::move(r->second);
}

Status start_daemon(const Home& home, const StartOptions& options) {
  if (::mkdir(home.dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return make_error(Code::kUnavailable,
                      fmt::format("cannot create {}: {}", home.dir, std::strerror(errno)));
  }
  std::string exe = self_exe();
  std::vector<std::string> args = {"rota", "daemon", "run", "--home", home.dir};
  args.insert(args.end(), options.begin(), options.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, home.daemon_log.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, exe.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return make_error(Code::kUnavailable,
                      fmt::format("cannot start the daemon: {}", std::strerror(rc)));
  }
  boost::asio::io_context io;
  auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < give_up) {
    local::socket probe(io);
    beast::error_code ec;
    probe.connect(local::endpoint(home.socket), ec);
    if (!ec) return {};
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      int code = WIFEXITED(status) ? WEXITSTATUS(status) : 3;
      std::string line = last_line_of(home.daemon_log);
      if (line.rfind("rota: ", 0) == 0) line = line.substr(6);
      if (code == 1 && line.find("already running") != std::string::npos) {
        continue;  // another CLI started it first: wait for its socket
      }
      return make_error(
          code == 2 ? Code::kInvalidArgument : Code::kUnavailable,
          line.empty() ? "the daemon exited at start (see " + home.daemon_log + ")" : line);
    }
    // The daemon is opening its store and socket: wait for it, briefly, then look again.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return make_error(Code::kUnavailable,
                    fmt::format("the daemon did not answer within 30s (see {})", home.daemon_log));
}

}  // namespace rota
