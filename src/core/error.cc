#include "core/error.h"

#include <array>

namespace rota {
namespace {

struct CodeInfo {
  Code code;
  const char* name;
  int http;
  int exit;
};

constexpr std::array kCodes = {
    CodeInfo{Code::kInvalidArgument, "invalid_argument", 400, 2},
    CodeInfo{Code::kNotFound, "not_found", 404, 1},
    CodeInfo{Code::kConflict, "conflict", 409, 1},
    CodeInfo{Code::kTooLarge, "too_large", 413, 2},
    CodeInfo{Code::kUnauthorized, "unauthorized", 401, 3},
    CodeInfo{Code::kUnavailable, "unavailable", 503, 3},
    CodeInfo{Code::kCorruption, "corruption", 500, 3},
    CodeInfo{Code::kInternal, "internal", 500, 1},
};

const CodeInfo& info(Code code) {
  for (const auto& c : kCodes) {
    if (c.code == code) return c;
  }
  return kCodes.back();
}

}  // namespace

int http_status(Code code) { return info(code).http; }
int exit_code(Code code) { return info(code).exit; }
const char* code_name(Code code) { return info(code).name; }

Result<Code> code_from_name(const std::string& name) {
  for (const auto& c : kCodes) {
    if (name == c.name) return c.code;
  }
  return make_error(Code::kInternal, "unknown error code " + name);
}

}  // namespace rota
