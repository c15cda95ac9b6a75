// Errors are values at module boundaries: Result<T> is either a T or an Error.
#pragma once

#include <expected>
#include <string>
#include <utility>

namespace rota {

enum class Code {
  kInvalidArgument,  // the caller asked for something malformed (exit 2, HTTP 400)
  kNotFound,         // a named thing does not exist (exit 1, HTTP 404)
  kConflict,         // the thing exists but is in the wrong state (exit 1, HTTP 409)
  kTooLarge,         // a body or payload over its limit (exit 2, HTTP 413)
  kUnauthorized,     // no valid token on a TCP listener (exit 3, HTTP 401)
  kUnavailable,      // the daemon or store cannot be reached (exit 3, HTTP 503)
  kCorruption,       // the store failed its integrity check (exit 3, HTTP 500)
  kInternal,         // a bug or an unexpected system error (exit 1, HTTP 500)
};

struct Error {
  Code code = Code::kInternal;
  std::string message;
  std::string field;  // the request field or flag at fault, if any
};

template <class T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> make_error(Code code, std::string message, std::string field = {}) {
  return std::unexpected(Error{code, std::move(message), std::move(field)});
}

// The one mapping from error codes to the outside world.
int http_status(Code code);
int exit_code(Code code);
const char* code_name(Code code);
Result<Code> code_from_name(const std::string& name);

}  // namespace rota
