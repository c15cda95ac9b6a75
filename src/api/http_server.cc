#include "api/http_server.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fcntl.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <deque>
#include <nlohmann/json.hpp>

#include "api/web_assets.h"

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

// Compares in time independent of where the strings differ.
bool same_secret(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

// One connection: requests in turn (keep-alive), or one streamed response (server-sent events).
template <class Socket>
class Session : public std::enable_shared_from_this<Session<Socket>> {
 public:
  Session(Socket socket, const Router& router, const HttpAuth* auth)
      : socket_(std::move(socket)), router_(router), auth_(auth) {}

  void start() { read(); }

 private:
  // The header first: a request without the token is answered before its body is read.
  void read() {
    parser_.emplace();
    parser_->body_limit(HttpServer::kBodyLimit);
    http::async_read_header(
        socket_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->on_header(ec); });
  }

  void on_header(beast::error_code ec) {
    if (ec) return on_read(ec);  // a body over the limit is answered there
    auto& req = parser_->get();
    HttpRequest request;
    request.method = std::string(req.method_string());
    bool parsed = parse_target(std::string_view(req.target().data(), req.target().size()),
                               request.path, request.query);
    auto authorization = req[http::field::authorization];
    if (parsed && !is_web_request(request.method, request.path) &&
        !authorized(request, std::string_view(authorization.data(), authorization.size()))) {
      keep_alive_ = false;  // the body is left unread: this connection is done
      return write(error_response({Code::kUnauthorized,
                                   "send the home's token as Authorization: Bearer <token> "
                                   "(it is in $ROTA_HOME/token)",
                                   {}}));
    }
    http::async_read(
        socket_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  // The token, unless this listener needs none or the path is public.
  bool authorized(const HttpRequest& request, std::string_view header) const {
    if (!auth_) return true;
    if (auth_->public_metrics && request.path == "/metrics") return true;
    constexpr std::string_view kBearer = "Bearer ";
    return header.substr(0, kBearer.size()) == kBearer &&
           same_secret(header.substr(kBearer.size()), auth_->token);
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
    // The dashboard's files hold no data: served to anyone who can connect, token or not.
    if (is_web_request(request.method, request.path)) {
      auto etag = req[http::field::if_none_match];
      return write(serve_web(embedded_web_assets(), request.path, {etag.data(), etag.size()}));
    }
    auto accept = req[http::field::accept];
    request.wants_stream =
        std::string_view(accept.data(), accept.size()).find("text/event-stream") !=
        std::string_view::npos;
    request.body = std::move(req.body());
    router_.route(request, [self = this->shared_from_this()](HttpResponse response) {
      asio::post(self->socket_.get_executor(), [self, response = std::move(response)]() mutable {
        self->write(std::move(response));
      });
    });
  }

  void write(HttpResponse r) {
    if (r.stream) return start_stream(std::move(r));
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(r.status), 11);
    res->set(http::field::server, "rota");
    res->set(http::field::content_type, r.content_type);
    for (const auto& [name, value] : r.headers) res->set(name, value);
    if (r.status == 401) res->set(http::field::www_authenticate, "Bearer");
    res->keep_alive(keep_alive_);
    res->body() = std::move(r.body);
    res->prepare_payload();
    http::async_write(socket_, *res,
                      [self = this->shared_from_this(), res](beast::error_code ec, size_t) {
                        if (ec || !self->keep_alive_) {
                          beast::error_code ignored;
                          self->socket_.shutdown(Socket::shutdown_both, ignored);
                          return;
                        }
                        self->read();
                      });
  }

  // A response without a length, written as its producer sends pieces, until either end
  // closes (server-sent events).
  void start_stream(HttpResponse r) {
    send(
        fmt::format("HTTP/1.1 200 OK\r\nServer: rota\r\nContent-Type: {}\r\n"
                    "Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
                    r.content_type));
    std::weak_ptr<Session> weak = this->shared_from_this();
    r.stream([weak](std::string piece) {
      auto self = weak.lock();
      if (!self || self->closed_) return false;
      self->send(std::move(piece));
      return true;
    });
    // Reading tells us when the client goes away.
    auto sink = std::make_shared<std::array<char, 512>>();
    watch_close(sink);
  }

  void watch_close(std::shared_ptr<std::array<char, 512>> sink) {
    socket_.async_read_some(asio::buffer(*sink),
                            [self = this->shared_from_this(), sink](beast::error_code ec, size_t) {
                              if (ec) {
                                self->closed_ = true;
                                return;
                              }
                              self->watch_close(sink);
                            });
  }

  void send(std::string piece) {
    if (closed_) return;
    // A client that reads slower than events come is cut off rather than let the daemon's
    // memory grow; it reconnects with ?after=<last id> and misses nothing.
    if (queued_bytes_ + piece.size() > kStreamBacklog) {
      spdlog::warn("an event stream client fell {} MiB behind: closing it", kStreamBacklog >> 20);
      closed_ = true;
      beast::error_code ignored;
      socket_.shutdown(Socket::shutdown_both, ignored);
      return;
    }
    queued_bytes_ += piece.size();
    outq_.push_back(std::move(piece));
    if (!writing_) write_next();
  }

  // Writes everything queued so far in one gather write.
  void write_next() {
    if (outq_.empty() || closed_) {
      writing_ = false;
      return;
    }
    writing_ = true;
    auto batch = std::make_shared<std::vector<std::string>>();
    batch->reserve(outq_.size());
    for (auto& piece : outq_) batch->push_back(std::move(piece));
    outq_.clear();
    std::vector<asio::const_buffer> buffers;
    buffers.reserve(batch->size());
    for (const std::string& piece : *batch) buffers.push_back(asio::buffer(piece));
    asio::async_write(socket_, buffers,
                      [self = this->shared_from_this(), batch](beast::error_code ec, size_t n) {
                        self->queued_bytes_ -= n;
                        if (ec) {
                          self->closed_ = true;
                          return;
                        }
                        self->write_next();
                      });
  }

  Socket socket_;
  const Router& router_;
  const HttpAuth* auth_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool keep_alive_ = true;
  static constexpr size_t kStreamBacklog = 16u << 20;
  std::deque<std::string> outq_;
  size_t queued_bytes_ = 0;
  bool writing_ = false;
  bool closed_ = false;
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

Status HttpServer::listen_tcp(const std::string& address, HttpAuth auth) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) {
    return make_error(Code::kInvalidArgument,
                      fmt::format("listen: \"{}\" is not HOST:PORT (try 127.0.0.1:7878)", address),
                      "listen");
  }
  auth_ = std::move(auth);
  try {
    auto host = asio::ip::make_address(address.substr(0, colon));
    auto port = static_cast<unsigned short>(std::stoi(address.substr(colon + 1)));
    tcp_ = std::make_unique<asio::ip::tcp::acceptor>(io_, asio::ip::tcp::endpoint(host, port));
    ::fcntl(tcp_->native_handle(), F_SETFD, FD_CLOEXEC);
  } catch (const std::exception& e) {
    return make_error(Code::kUnavailable, fmt::format("cannot listen on {}: {}", address, e.what()),
                      "listen");
  }
  accept_tcp();
  return {};
}

// An accept that failed (out of descriptors, say) is tried again shortly: the API must not
// stop listening.
void HttpServer::retry_later(std::function<void()> again) {
  auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
  timer->async_wait([timer, again = std::move(again)](const beast::error_code& ec) {
    if (!ec) again();
  });
}

void HttpServer::accept_tcp() {
  tcp_->async_accept([this](beast::error_code ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !tcp_) return;
    if (ec) return retry_later([this] { accept_tcp(); });
    std::make_shared<Session<asio::ip::tcp::socket>>(std::move(socket), router_, &auth_)->start();
    if (tcp_) accept_tcp();
  });
}

void HttpServer::close() {
  beast::error_code ignored;
  if (tcp_) {
    tcp_->close(ignored);
    tcp_.reset();
  }
  if (!acceptor_) return;
  acceptor_->close(ignored);
  acceptor_.reset();
}

void HttpServer::accept() {
  acceptor_->async_accept([this](beast::error_code ec, local::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_) return;  // closed
    if (ec) return retry_later([this] { accept(); });                // e.g. out of descriptors
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
        cred.uid == ::getuid()) {
      std::make_shared<Session<local::socket>>(std::move(socket), router_, nullptr)->start();
    } else {
      spdlog::warn("api: refused a connection from uid {}", cred.uid);
    }
    if (acceptor_) accept();
  });
}

}  // namespace rota
