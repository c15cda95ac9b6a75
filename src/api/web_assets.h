// The web dashboard's files (web/dist, built by scripts/build-web), embedded in the binary at
// build time, and how the daemon serves them.
#pragma once

#include <span>
#include <string_view>

#include "api/http_server.h"

namespace rota {

struct WebAsset {
  std::string_view path;  // "/index.html", "/assets/app.js"
  std::string_view content_type;
  std::string_view etag;  // quoted, as sent in the ETag header
  std::string_view body;
};

// The files the build embedded (a generated source in the build directory); empty when the
// dashboard was not built (no Node.js on the build machine, or its build failed).
std::span<const WebAsset> embedded_web_assets();

// True for a request the dashboard's files answer: a GET of any path outside the API (/v1/...)
// and /metrics. Those files hold no data, so they are served without the token.
bool is_web_request(std::string_view method, std::string_view path);

// The file at `path` ("/" is /index.html); for any other path outside /assets/, index.html,
// whose script shows the page the path names. 304 when `if_none_match` is the file's ETag.
// With no files at all, a page that says the dashboard was not built and how to build it.
HttpResponse serve_web(std::span<const WebAsset> assets, std::string_view path,
                       std::string_view if_none_match);

}  // namespace rota
