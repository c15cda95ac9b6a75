#include "api/json_scan.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>

#define TRY(expr) \
  if (auto r_ = (expr); !r_) return std::unexpected(r_.error())

namespace rota {
namespace {

// Deeper values are refused: what is kept is later parsed and written out by recursive code.
constexpr size_t kMaxDepth = 512;

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// One pass over a JSON text. `out`, when given, receives the compact text of what is scanned.
class Scanner {
 public:
  explicit Scanner(std::string_view text) : s_(text) {
    if (s_.starts_with("\xEF\xBB\xBF")) pos_ = 3;  // a UTF-8 byte order mark, as nlohmann
  }

  size_t pos() const { return pos_; }
  std::string_view text() const { return s_; }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  bool at_end() const { return pos_ >= s_.size(); }
  void advance() { ++pos_; }

  void skip_ws() {
    while (pos_ < s_.size() && is_ws(s_[pos_])) ++pos_;
  }

  Error error(std::string_view expected) const {
    if (at_end())
      return {Code::kInvalidArgument,
              fmt::format("malformed JSON: the text ends where {} was expected", expected),
              {}};
    return {Code::kInvalidArgument,
            fmt::format("malformed JSON: byte {}: expected {}", pos_, expected),
            {}};
  }

  // One value (objects and arrays without recursion, so nesting has no limit but memory).
  Status value(std::string* out) {
    std::vector<char> open;  // the containers around the next value: '{' or '['
    for (;;) {
      skip_ws();
      char c = peek();
      bool done = false;  // a value is complete: look for what follows it
      if (c == '{' || c == '[') {
        if (open.size() == kMaxDepth) {
          return std::unexpected(
              Error{Code::kInvalidArgument,
                    fmt::format("JSON nested deeper than {} levels (at byte {})", kMaxDepth, pos_),
                    {}});
        }
        emit(c, out);
        ++pos_;
        skip_ws();
        char close = c == '{' ? '}' : ']';
        if (peek() == close) {
          emit(close, out);
          ++pos_;
          done = true;
        } else {
          open.push_back(c);
          if (c == '{') TRY(member_key(out));
        }
      } else {
        TRY(scalar(out));
        done = true;
      }
      while (done) {
        if (open.empty()) return {};
        skip_ws();
        char next = peek();
        if (next == ',') {
          emit(',', out);
          ++pos_;
          if (open.back() == '{') TRY(member_key(out));
          done = false;
        } else if (next == (open.back() == '{' ? '}' : ']')) {
          emit(next, out);
          ++pos_;
          open.pop_back();
        } else {
          return std::unexpected(error(open.back() == '{' ? "',' or '}'" : "',' or ']'"));
        }
      }
    }
  }

  // A string at pos_, as written.
  Status string(std::string* out) {
    size_t start = pos_;
    if (peek() != '"') return std::unexpected(error("a string"));
    ++pos_;
    for (;;) {
      if (at_end()) return std::unexpected(error("'\"'"));
      auto c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        break;
      }
      if (c < 0x20) return std::unexpected(error("no control character in a string"));
      if (c == '\\') {
        TRY(escape());
      } else if (c < 0x80) {
        ++pos_;
      } else {
        TRY(utf8());
      }
    }
    if (out) out->append(s_.substr(start, pos_ - start));
    return {};
  }

 private:
  static void emit(char c, std::string* out) {
    if (out) out->push_back(c);
  }

  Status member_key(std::string* out) {
    skip_ws();
    TRY(string(out));
    skip_ws();
    if (peek() != ':') return std::unexpected(error("':'"));
    emit(':', out);
    ++pos_;
    return {};
  }

  Status scalar(std::string* out) {
    char c = peek();
    if (c == '"') return string(out);
    if (c == '-' || is_digit(c)) return number(out);
    if (c == 't') return literal("true", out);
    if (c == 'f') return literal("false", out);
    if (c == 'n') return literal("null", out);
    return std::unexpected(error("a value"));
  }

  Status literal(std::string_view word, std::string* out) {
    if (s_.substr(pos_, word.size()) != word) return std::unexpected(error(word));
    pos_ += word.size();
    if (out) out->append(word);
    return {};
  }

  Status number(std::string* out) {
    size_t start = pos_;
    bool integer = true;
    if (peek() == '-') ++pos_;
    if (peek() == '0') {
      ++pos_;
    } else if (is_digit(peek())) {
      while (is_digit(peek())) ++pos_;
    } else {
      return std::unexpected(error("a digit"));
    }
    if (peek() == '.') {
      integer = false;
      ++pos_;
      if (!is_digit(peek())) return std::unexpected(error("a digit"));
      while (is_digit(peek())) ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      integer = false;
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!is_digit(peek())) return std::unexpected(error("a digit"));
      while (is_digit(peek())) ++pos_;
    }
    std::string_view text = s_.substr(start, pos_ - start);
    // What does not fit a 64-bit integer is a double, and must be a finite one.
    if (!integer || text.size() > 18) {
      std::string copy(text);
      if (!std::isfinite(std::strtod(copy.c_str(), nullptr))) {
        pos_ = start;
        return std::unexpected(error("a number a double can hold"));
      }
    }
    if (out) out->append(text);
    return {};
  }

  // A backslash escape at pos_; a \u escape of a surrogate must be one of a pair.
  Status escape() {
    ++pos_;
    char c = peek();
    if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' ||
        c == 't') {
      ++pos_;
      return {};
    }
    if (c != 'u') return std::unexpected(error("an escape"));
    auto unit = code_unit();
    if (!unit) return std::unexpected(unit.error());
    if (*unit >= 0xDC00 && *unit <= 0xDFFF) {
      return std::unexpected(error("a high surrogate before a low one"));
    }
    if (*unit >= 0xD800 && *unit <= 0xDBFF) {
      if (s_.substr(pos_, 2) != "\\u") return std::unexpected(error("a low surrogate"));
      ++pos_;
      auto low = code_unit();
      if (!low) return std::unexpected(low.error());
      if (*low < 0xDC00 || *low > 0xDFFF) return std::unexpected(error("a low surrogate"));
    }
    return {};
  }

  // "uXXXX" at pos_: its code unit.
  Result<int> code_unit() {
    ++pos_;  // the 'u'
    int unit = 0;
    for (int i = 0; i < 4; ++i) {
      int d = hex_digit(peek());
      if (d < 0) return std::unexpected(error("four hex digits"));
      unit = unit * 16 + d;
      ++pos_;
    }
    return unit;
  }

  // A multi-byte UTF-8 character at pos_ (RFC 3629: no overlong forms, no surrogates).
  Status utf8() {
    auto byte = [&](size_t i) {
      return pos_ + i < s_.size() ? static_cast<unsigned char>(s_[pos_ + i]) : 0;
    };
    auto in = [](unsigned char b, unsigned lo, unsigned hi) { return b >= lo && b <= hi; };
    unsigned char b0 = byte(0), b1 = byte(1);
    int length = 0;
    if (in(b0, 0xC2, 0xDF)) {
      length = 2;
    } else if (b0 == 0xE0) {
      length = in(b1, 0xA0, 0xBF) ? 3 : 0;
    } else if (in(b0, 0xE1, 0xEC) || b0 == 0xEE || b0 == 0xEF) {
      length = in(b1, 0x80, 0xBF) ? 3 : 0;
    } else if (b0 == 0xED) {
      length = in(b1, 0x80, 0x9F) ? 3 : 0;
    } else if (b0 == 0xF0) {
      length = in(b1, 0x90, 0xBF) ? 4 : 0;
    } else if (in(b0, 0xF1, 0xF3)) {
      length = in(b1, 0x80, 0xBF) ? 4 : 0;
    } else if (b0 == 0xF4) {
      length = in(b1, 0x80, 0x8F) ? 4 : 0;
    }
    if (length == 0) return std::unexpected(error("UTF-8"));
    for (int i = 1; i < length; ++i) {
      if (!in(byte(static_cast<size_t>(i)), 0x80, 0xBF)) {
        return std::unexpected(error("UTF-8"));
      }
    }
    pos_ += static_cast<size_t>(length);
    return {};
  }

  std::string_view s_;
  size_t pos_ = 0;
};

// The rest of the text is whitespace.
Status expect_end(Scanner& sc) {
  sc.skip_ws();
  if (!sc.at_end()) return std::unexpected(sc.error("the end of the text"));
  return {};
}

// Opens the container `open` at the start of the text. Any other valid value is refused as
// not being one (`what`); an invalid one as malformed.
Status open_container(Scanner& sc, char open, std::string_view what) {
  sc.skip_ws();
  if (sc.peek() == open) return {};
  TRY(sc.value(nullptr));
  TRY(expect_end(sc));
  return make_error(Code::kInvalidArgument, fmt::format("expected {}", what));
}

}  // namespace

bool starts_object(std::string_view text) {
  Scanner sc(text);
  sc.skip_ws();
  return sc.peek() == '{';
}

Result<std::string> compact_json(std::string_view text) {
  Scanner sc(text);
  std::string out;
  out.reserve(text.size());
  TRY(sc.value(&out));
  TRY(expect_end(sc));
  return out;
}

namespace {

// Walks the object or array (`open`, `close`) that is all of the scanner's text; `item` scans
// each member or element where it starts.
Status walk_container(Scanner& sc, char open, char close, std::string_view what,
                      const std::function<Status()>& item) {
  TRY(open_container(sc, open, what));
  sc.advance();
  sc.skip_ws();
  if (sc.peek() == close) {
    sc.advance();
    return expect_end(sc);
  }
  for (;;) {
    sc.skip_ws();
    TRY(item());
    sc.skip_ws();
    if (sc.peek() == ',') {
      sc.advance();
      continue;
    }
    if (sc.peek() != close) {
      return std::unexpected(sc.error(close == '}' ? "',' or '}'" : "',' or ']'"));
    }
    sc.advance();
    return expect_end(sc);
  }
}

}  // namespace

Result<std::vector<std::pair<std::string, std::string_view>>> json_members(std::string_view text) {
  Scanner sc(text);
  std::vector<std::pair<std::string, std::string_view>> members;
  TRY(walk_container(sc, '{', '}', "a JSON object", [&]() -> Status {
    size_t key_start = sc.pos();
    TRY(sc.string(nullptr));
    std::string_view key = text.substr(key_start + 1, sc.pos() - key_start - 2);
    sc.skip_ws();
    if (sc.peek() != ':') return std::unexpected(sc.error("':'"));
    sc.advance();
    sc.skip_ws();
    size_t value_start = sc.pos();
    TRY(sc.value(nullptr));
    std::string decoded =
        key.find('\\') == std::string_view::npos
            ? std::string(key)
            : nlohmann::json::parse(text.substr(key_start, key.size() + 2)).get<std::string>();
    members.emplace_back(std::move(decoded), text.substr(value_start, sc.pos() - value_start));
    return {};
  }));
  // As nlohmann's objects hold them: by key, a repeated key's last value winning.
  std::stable_sort(members.begin(), members.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 0; i + 1 < members.size();) {
    if (members[i].first == members[i + 1].first) {
      members.erase(members.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
  }
  return members;
}

Result<std::vector<std::string_view>> json_elements(std::string_view text) {
  Scanner sc(text);
  std::vector<std::string_view> elements;
  TRY(walk_container(sc, '[', ']', "a JSON array", [&]() -> Status {
    size_t start = sc.pos();
    TRY(sc.value(nullptr));
    elements.push_back(text.substr(start, sc.pos() - start));
    return {};
  }));
  return elements;
}

}  // namespace rota
