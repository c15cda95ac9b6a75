// A small HTTP/1.1 server on the event loop (Boost.Beast), with a routing table.
// Handlers reply through a Responder, which they may call later (after a commit, or when a
// long-poll ends).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"

namespace rota {

struct HttpRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> query;
  std::string body;
  std::vector<std::string> params;  // the {…} parts of the matched route, in order
};

struct HttpResponse {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
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
  void close();

 private:
  void accept();

  boost::asio::io_context& io_;
  const Router& router_;
  std::unique_ptr<boost::asio::local::stream_protocol::acceptor> acceptor_;
  std::string path_;
};

// Splits a target "/a/b?x=1&y=2" into path and decoded query; false if an escape is malformed.
bool parse_target(std::string_view target, std::string& path,
                  std::map<std::string, std::string>& query);

}  // namespace rota
