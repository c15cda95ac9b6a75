// HTTP tasks (rota add --http METHOD URL): `rota __http` runs the request with libcurl in the
// task's own process, so the task's timeout, cancel, log and retries apply as to any command.
#pragma once

#include <string>

namespace rota {

// The exit status of an HTTP task whose failure must not be retried (a 4xx answer).
inline constexpr int kHttpPermanentFailure = 2;

// Runs the request (HttpCall as JSON), writes {"status", "body"} to $ROTA_RESULT (the body
// capped, and parsed when it is JSON), and returns 0 for 1xx-3xx, kHttpPermanentFailure for
// 4xx, and 1 for 5xx or a connection error (which are retried).
int run_http_task(const std::string& request_json);

}  // namespace rota
