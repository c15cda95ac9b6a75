// Counts the words of payload["text"]: a rota user-pool worker in C++.
#include <iterator>
#include <sstream>
#include <string>

#include "rota_worker.h"

int main() {
  return rota::run([](const nlohmann::json& payload, rota::Context&) -> nlohmann::json {
    std::istringstream text(payload.at("text").get<std::string>());
    return {{"words", std::distance(std::istream_iterator<std::string>(text), {})}};
  });
}
