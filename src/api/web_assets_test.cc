#include "api/web_assets.h"

#include <gtest/gtest.h>

#include <string>

namespace rota {
namespace {

const WebAsset kFiles[] = {
    {"/index.html", "text/html; charset=utf-8", "\"i1\"", "<html>the page</html>"},
    {"/assets/app.js", "text/javascript; charset=utf-8", "\"j1\"", "run();"},
};

std::string header(const HttpResponse& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return "";
}

// The dashboard answers every GET outside the API; the API and /metrics stay behind the token.
TEST(WebAssets, WhatTheDashboardAnswers) {
  EXPECT_TRUE(is_web_request("GET", "/"));
  EXPECT_TRUE(is_web_request("GET", "/assets/app.js"));
  EXPECT_TRUE(is_web_request("GET", "/tasks/42"));
  EXPECT_FALSE(is_web_request("GET", "/v1/tasks"));
  EXPECT_FALSE(is_web_request("GET", "/v1"));
  EXPECT_FALSE(is_web_request("GET", "/metrics"));
  EXPECT_FALSE(is_web_request("POST", "/"));
}

// "/" is index.html, a file is itself with its type and ETag, and the page's own paths get
// index.html so that a reload or a shared link opens the right page.
TEST(WebAssets, ServesFilesAndThePageForItsRoutes) {
  auto index = serve_web(kFiles, "/", "");
  EXPECT_EQ(index.status, 200);
  EXPECT_EQ(index.body, "<html>the page</html>");
  EXPECT_EQ(index.content_type, "text/html; charset=utf-8");
  EXPECT_EQ(header(index, "ETag"), "\"i1\"");
  EXPECT_NE(header(index, "Content-Security-Policy").find("script-src 'self'"), std::string::npos);

  auto js = serve_web(kFiles, "/assets/app.js", "");
  EXPECT_EQ(js.body, "run();");
  EXPECT_EQ(js.content_type, "text/javascript; charset=utf-8");

  EXPECT_EQ(serve_web(kFiles, "/tasks/42", "").body, "<html>the page</html>");
  EXPECT_EQ(serve_web(kFiles, "/assets/gone.js", "").status, 404);
}

// A browser that has the file already gets 304 and no body.
TEST(WebAssets, NotModifiedWhenTheETagMatches) {
  auto r = serve_web(kFiles, "/assets/app.js", "\"j1\"");
  EXPECT_EQ(r.status, 304);
  EXPECT_TRUE(r.body.empty());
  EXPECT_EQ(serve_web(kFiles, "/assets/app.js", "\"old\"").status, 200);
}

// A binary built without Node.js says so on every page, and how to build the dashboard.
TEST(WebAssets, SaysHowToBuildItWhenItWasNotBuilt) {
  for (const char* path : {"/", "/tasks"}) {
    auto r = serve_web({}, path, "");
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.content_type, "text/html; charset=utf-8");
    EXPECT_NE(r.body.find("dashboard was not built"), std::string::npos);
    EXPECT_NE(r.body.find("nodejs npm"), std::string::npos);
  }
}

}  // namespace
}  // namespace rota
