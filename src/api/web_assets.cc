#include "api/web_assets.h"

#include <algorithm>

namespace rota {
namespace {

// The page of a binary built without the dashboard. Self-contained: it must not need any
// other file.
constexpr std::string_view kNotBuilt = R"(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rota: dashboard not built</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#1b222d}
code,pre{font:13px ui-monospace,monospace;background:#f1f3f5;padding:.1em .3em;border-radius:4px}
pre{padding:.8em 1em}</style></head><body>
<h1>rota's web dashboard was not built</h1>
<p>This rota binary was built without its web dashboard: Node.js and npm were missing on the
build machine, or the dashboard's build failed. The API under <code>/v1</code> works as usual.</p>
<p>To build it, install Node.js (18 or later) and npm, then build rota again from its source:</p>
<pre>sudo apt-get install nodejs npm   # or any Node.js 18+
make                              # runs scripts/build-web, then embeds web/dist</pre>
</body></html>
)";

// Sent with the dashboard's page: its scripts and styles come from this server alone.
constexpr std::string_view kPolicy =
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'";

const WebAsset* find(std::span<const WebAsset> assets, std::string_view path) {
  auto it = std::find_if(assets.begin(), assets.end(),
                         [path](const WebAsset& a) { return a.path == path; });
  return it == assets.end() ? nullptr : &*it;
}

HttpResponse page(int status, std::string_view body, std::string_view content_type) {
  HttpResponse r{status, std::string(body), std::string(content_type)};
  r.headers = {{"Cache-Control", "no-cache"}, {"X-Content-Type-Options", "nosniff"}};
  return r;
}

}  // namespace

bool is_web_request(std::string_view method, std::string_view path) {
  if (method != "GET") return false;
  return path != "/v1" && !path.starts_with("/v1/") && path != "/metrics";
}

HttpResponse serve_web(std::span<const WebAsset> assets, std::string_view path,
                       std::string_view if_none_match) {
  if (path == "/") path = "/index.html";
  const WebAsset* asset = find(assets, path);
  if (!asset && path.starts_with("/assets/")) {
    return page(404, "no such file\n", "text/plain; charset=utf-8");
  }
  if (!asset) asset = find(assets, "/index.html");
  if (!asset) return page(200, kNotBuilt, "text/html; charset=utf-8");
  bool fresh = !if_none_match.empty() && if_none_match == asset->etag;
  HttpResponse r = page(fresh ? 304 : 200, fresh ? "" : asset->body, asset->content_type);
  r.headers.emplace_back("ETag", std::string(asset->etag));
  if (asset->content_type.starts_with("text/html")) {
    r.headers.emplace_back("Content-Security-Policy", std::string(kPolicy));
    r.headers.emplace_back("Referrer-Policy", "no-referrer");
  }
  return r;
}

}  // namespace rota
