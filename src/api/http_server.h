// A small HTTP/1.1 server on the event loop (Boost.Beast), with a routing table.
// Handlers reply through a Responder, which they may call later (after a commit, or when a
// long-poll ends).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"

namespace rota {

struct HttpRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> query;
  std::string body;
  std::vector<std::string> params;  // the {…} parts of the matched route, in order
  bool wants_stream = false;        // Accept: text/event-stream
};

// Hands a piece of a streamed response to the connection; false once the client has gone.
using StreamSend = std::function<bool(std::string)>;

struct HttpResponse {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // more headers, as is
  // If set, the response is streamed: headers now, then whatever `stream` sends, until the
  // client closes (server-sent events).
  std::function<void(StreamSend)> stream;
};

// Who may use a TCP listener: holders of the home's token; /metrics too if public.
struct HttpAuth {
  std::string token;
  bool public_metrics = false;
};

using Responder = std::function<void(HttpResponse)>;
using Handler = std::function<void(const HttpRequest&, Responder)>;

// {"error": {"code", "message", "field"?}} with the status that fits the code.
HttpResponse error_response(const Error& error);

class Router {
 public:
  // `pattern` is a path whose segments may be `{}` placeholders: "/v1/tasks/{}/log".
  void add(std::string method, std::string pattern, Handler handler);
  void route(const HttpRequest& request, Responder respond) const;

 private:
  struct Route {
    std::string method;
    std::vector<std::string> segments;
    Handler handler;
  };
  std::vector<Route> routes_;
};

class HttpServer {
 public:
  static constexpr size_t kBodyLimit = 64u << 20;

  HttpServer(boost::asio::io_context& io, const Router& router);
  ~HttpServer();
  // Listens on a unix socket at `path` (mode 0600), accepting only this user's processes.
  Status listen_unix(const std::string& path);
  // Listens on HOST:PORT; every request needs `auth.token` as a bearer token.
  Status listen_tcp(const std::string& address, HttpAuth auth);
  void close();

 private:
  void accept();
  void accept_tcp();
  void retry_later(std::function<void()> again);

  boost::asio::io_context& io_;
  const Router& router_;
  std::unique_ptr<boost::asio::local::stream_protocol::acceptor> acceptor_;
  std::string path_;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> tcp_;
  HttpAuth auth_;
};

// Splits a target "/a/b?x=1&y=2" into path and decoded query; false if an escape is malformed.
bool parse_target(std::string_view target, std::string& path,
                  std::map<std::string, std::string>& query);

}  // namespace rota
