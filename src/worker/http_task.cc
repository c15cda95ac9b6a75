#include "worker/http_task.h"

#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/task.h"

namespace rota {
namespace {

// The result file holds at most 64 KiB: what is kept of the body leaves room for the rest.
constexpr size_t kBodyCap = 48 << 10;

size_t collect(char* data, size_t size, size_t count, void* out) {
  auto* body = static_cast<std::string*>(out);
  size_t n = size * count;
  if (body->size() < kBodyCap) body->append(data, std::min(n, kBodyCap - body->size()));
  return n;
}

}  // namespace

int run_http_task(const std::string& request_json) {
  auto request = http_from_json(request_json);
  if (!request) {
    fmt::print(stderr, "rota: __http: {}\n", request.error().message);
    return kHttpPermanentFailure;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURL* curl = curl_easy_init();
  if (!curl) return 1;
  std::string body;
  curl_slist* headers = nullptr;
  for (const std::string& h : request->headers) headers = curl_slist_append(headers, h.c_str());
  char error[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl, CURLOPT_URL, request->url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request->method.c_str());
  if (request->method == "HEAD") curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  if (!request->body.empty()) {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request->body.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(request->body.size()));
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "rota/" ROTA_VERSION);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);

  if (rc != CURLE_OK) {
    fmt::print(stderr, "rota: {} {}: {}\n", request->method, request->url,
               error[0] ? error : curl_easy_strerror(rc));
    return 1;  // a connection error: retried
  }
  fmt::print("{} {} -> {}\n", request->method, request->url, status);
  auto parsed = nlohmann::json::parse(body, nullptr, false);
  // Escaping can grow a body: keep the result under the 64 KiB a result may take.
  if (parsed.is_discarded() && body.size() > kBodyCap / 2) {
    size_t escapes = std::count_if(body.begin(), body.end(), [](unsigned char c) {
      return c < 0x20 || c == '"' || c == '\\';
    });
    if (body.size() + 5 * escapes > kBodyCap) body.resize(kBodyCap / 6);
  }
  nlohmann::json result = {{"status", status},
                           {"body", parsed.is_discarded() ? nlohmann::json(body) : parsed}};
  if (const char* path = std::getenv("ROTA_RESULT"); path && *path) {
    // A body that is not UTF-8 (binary, or cut inside a character) is kept with U+FFFD.
    std::ofstream(path) << result.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  if (status >= 500) return 1;
  if (status >= 400) return kHttpPermanentFailure;
  return 0;
}

}  // namespace rota
