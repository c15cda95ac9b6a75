#include "api/http_server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <nlohmann/json.hpp>

namespace rota {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using local = asio::local::stream_protocol;

namespace {

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  size_t start = 1;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    if (end > start) out.emplace_back(path.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// Decodes %XX and '+'; false on a malformed escape.
bool url_decode(std::string_view s, std::string& out) {
  out.clear();
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() &&
               std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      auto hex = [](char c) {
        return std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : (c | 0x20) - 'a' + 10;
      };
      out.push_back(static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2])));
      i += 2;
    } else if (s[i] == '%') {
      return false;
    } else {
      out.push_back(s[i]);
    }
  }
  return true;
}

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(local::socket socket, const Router& router)
      : socket_(std::move(socket)), router_(router) {}

  void start() { read(); }

 private:
  void read() {
    parser_.emplace();
    parser_->body_limit(HttpServer::kBodyLimit);
    http::async_read(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec == http::error::body_limit) {
      keep_alive_ = false;
      return write(error_response(
          {Code::kTooLarge,
           fmt::format("the request body is over {} MiB", HttpServer::kBodyLimit >> 20),
           {}}));
    }
    if (ec) return;  // closed or malformed: nothing to answer
    auto& req = parser_->get();
    keep_alive_ = req.keep_alive();
    HttpRequest request;
    request.method = std::string(req.method_string());
    if (!parse_target(std::string_view(req.target().data(), req.target().size()), request.path,
                      request.query)) {
      return write(error_response(
          {Code::kInvalidArgument, "malformed URL: a %-escape is not two hex digits", {}}));
    }
    request.body = std::move(req.body());
    router_.route(request, [self = shared_from_this()](HttpResponse response) {
      asio::post(self->socket_.get_executor(), [self, response = std::move(response)]() mutable {
        self->write(std::move(response));
      });
    });
  }

  void write(HttpResponse r) {
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(r.status), 11);
    res->set(http::field::server, "rota");
    res->set(http::field::content_type, r.content_type);
    res->keep_alive(keep_alive_);
    res->body() = std::move(r.body);
    res->prepare_payload();
    http::async_write(socket_, *res,
                      [self = shared_from_this(), res](beast::error_code ec, size_t) {
                        if (ec || !self->keep_alive_) {
                          beast::error_code ignored;
                          self->socket_.shutdown(local::socket::shutdown_both, ignored);
                          return;
                        }
                        self->read();
                      });
  }

  local::socket socket_;
  const Router& router_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool keep_alive_ = true;
};

}  // namespace

HttpResponse error_response(const Error& error) {
  nlohmann::json e = {{"code", code_name(error.code)}, {"message", error.message}};
  if (!error.field.empty()) e["field"] = error.field;
  return HttpResponse{http_status(error.code), nlohmann::json{{"error", e}}.dump() + "\n"};
}

bool parse_target(std::string_view target, std::string& path,
                  std::map<std::string, std::string>& query) {
  size_t q = target.find('?');
  if (!url_decode(target.substr(0, q), path)) return false;
  if (q == std::string_view::npos) return true;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    size_t eq = pair.find('=');
    std::string key, value;
    if (!url_decode(pair.substr(0, eq), key)) return false;
    if (eq != std::string_view::npos && !url_decode(pair.substr(eq + 1), value)) return false;
    query[key] = value;
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return true;
}

void Router::add(std::string method, std::string pattern, Handler handler) {
  routes_.push_back({std::move(method), split_path(pattern), std::move(handler)});
}

void Router::route(const HttpRequest& request, Responder respond) const {
  auto segments = split_path(request.path);
  bool path_matched = false;
  for (const Route& r : routes_) {
    if (r.segments.size() != segments.size()) continue;
    std::vector<std::string> params;
    bool match = true;
    for (size_t i = 0; i < segments.size() && match; ++i) {
      if (r.segments[i] == "{}") {
        params.push_back(segments[i]);
      } else {
        match = r.segments[i] == segments[i];
      }
    }
    if (!match) continue;
    path_matched = true;
    if (r.method != request.method) continue;
    HttpRequest with_params = request;
    with_params.params = std::move(params);
    // A handler that throws (a JSON value of the wrong type, say) answers 400, never crashes.
    try {
      r.handler(with_params, respond);
    } catch (const nlohmann::json::exception& e) {
      respond(
          error_response({Code::kInvalidArgument, fmt::format("bad request: {}", e.what()), {}}));
    } catch (const std::exception& e) {
      respond(error_response({Code::kInternal, e.what(), {}}));
    }
    return;
  }
  if (path_matched) {
    return respond(HttpResponse{405, R"({"error":{"code":"method_not_allowed","message":")" +
                                         request.method + " is not allowed on " + request.path +
                                         "\"}}\n"});
  }
  respond(error_response({Code::kNotFound, "no such endpoint: " + request.path, {}}));
}

HttpServer::HttpServer(asio::io_context& io, const Router& router) : io_(io), router_(router) {}

HttpServer::~HttpServer() { close(); }

Status HttpServer::listen_unix(const std::string& path) {
  ::unlink(path.c_str());
  path_ = path;
  try {
    // Create the socket 0600 from the start: no window in which others could connect.
    mode_t old = ::umask(0177);
    acceptor_ = std::make_unique<local::acceptor>(io_, local::endpoint(path));
    ::umask(old);
    ::chmod(path.c_str(), 0600);
  } catch (const std::exception& e) {
    return make_error(Code::kUnavailable, fmt::format("cannot listen on {}: {}", path, e.what()));
  }
  accept();
  return {};
}

void HttpServer::close() {
  if (!acceptor_) return;
  beast::error_code ignored;
  acceptor_->close(ignored);
  acceptor_.reset();
}

void HttpServer::accept() {
  acceptor_->async_accept([this](beast::error_code ec, local::socket socket) {
    if (ec) return;  // closed
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
        cred.uid == ::getuid()) {
      std::make_shared<Session>(std::move(socket), router_)->start();
    } else {
      spdlog::warn("api: refused a connection from uid {}", cred.uid);
    }
    if (acceptor_) accept();
  });
}

}  // namespace rota
