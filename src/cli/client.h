// The CLI's side of the API: HTTP/1.1 over the home's unix socket, starting the daemon when
// none answers.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/home.h"

namespace rota {

// Flags for `rota daemon run` when a command starts the daemon, e.g. {"--workers", "4"}.
using StartOptions = std::vector<std::string>;

class Client {
 public:
  explicit Client(Home home);
  ~Client();

  // Connects, starting a daemon in the background first if none answers.
  Status connect(const StartOptions& start = {});
  // Connects only if a daemon answers; kUnavailable otherwise.
  Status connect_existing();

  // Sends a request and returns the JSON reply; an API error becomes an Error.
  Result<nlohmann::json> call(const std::string& method, const std::string& target,
                              const nlohmann::json& body = nullptr);
  // The same with a body already serialised as JSON.
  Result<nlohmann::json> call_raw(const std::string& method, const std::string& target,
                                  const std::string& body);
  // The same for a reply that is not JSON (a log).
  Result<std::string> call_text(const std::string& method, const std::string& target);

  const Home& home() const { return home_; }

 private:
  Result<std::pair<int, std::string>> request(const std::string& method, const std::string& target,
                                              const std::string& body);
  bool try_connect();

  Home home_;
  boost::asio::io_context io_;
  std::unique_ptr<boost::asio::local::stream_protocol::socket> socket_;
};

// Starts `rota daemon run` for `home` in the background (its own session, output appended to
// daemon.log) and returns once its socket answers. If the daemon exits first, its last line
// of output becomes the error, with the daemon's exit code mapped back.
Status start_daemon(const Home& home, const StartOptions& options);

}  // namespace rota
