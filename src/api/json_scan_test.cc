#include "api/json_scan.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

namespace rota {
namespace {

using nlohmann::json;

// compact_json agrees with nlohmann on what is JSON, and keeps what it reads.
void expect_agrees(const std::string& text) {
  auto compact = compact_json(text);
  bool accepted = json::accept(text);
  ASSERT_EQ(compact.has_value(), accepted) << "text: " << text;
  if (!accepted) return;
  EXPECT_EQ(json::parse(*compact), json::parse(text)) << "text: " << text;
  EXPECT_EQ(compact->find_first_of("\n\r"), std::string::npos) << "text: " << text;
}

TEST(JsonScan, CompactKeepsTheTextAsWrittenWithoutWhitespace) {
  auto c = compact_json(" {\"b\" : [1, 2.50, -0e+3 ],\n \"a\": \"x y\\u00e9\" , \"n\":null}\n");
  ASSERT_TRUE(c) << c.error().message;
  // Keys stay in their order, numbers and escapes as written; only whitespace goes.
  EXPECT_EQ(*c, R"({"b":[1,2.50,-0e+3],"a":"x y\u00e9","n":null})");
}

TEST(JsonScan, AgreesWithNlohmannOnValidAndInvalidTexts) {
  for (const char* text : {"0",
                           "-0",
                           "01",
                           "1.",
                           ".5",
                           "1e",
                           "1e+",
                           "-",
                           "--1",
                           "1.5e-7",
                           "1E400",
                           "-1e400",
                           "1e-400",
                           "123456789012345678901234567890",
                           "true",
                           "tru",
                           "nulll",
                           "[]",
                           "[,]",
                           "[1,]",
                           "{}",
                           "{,}",
                           "{\"a\"}",
                           "{\"a\":}",
                           "{\"a\":1,}",
                           "{\"a\":1 \"b\":2}",
                           "{1:2}",
                           "\"\\x\"",
                           "\"\\u12\"",
                           "\"\\uD800\"",
                           "\"\\uDC00\"",
                           "\"\\uD800\\uDC00\"",
                           "\"\\uD800\\u0041\"",
                           "\"\xC3\xA9\"",
                           "\"\xC3\"",
                           "\"\xC0\x80\"",
                           "\"\xED\xA0\x80\"",
                           "\"\xF4\x90\x80\x80\"",
                           "\"\xF0\x9F\x98\x80\"",
                           "\"\x7F\"",
                           "\"a\tb\"",
                           "\"a\x01\"",
                           "\xEF\xBB\xBF{}",
                           "{} {}",
                           "[[[[]]]]",
                           "[[[[]]]",
                           "  ",
                           "",
                           "[1 2]",
                           "\"\\/\""}) {
    expect_agrees(text);
  }
}

// Random edits of valid texts: wherever they land, compact_json and nlohmann agree.
TEST(JsonScan, AgreesWithNlohmannOnMutatedTexts) {
  const std::vector<std::string> seeds = {
      R"({"a":[1,2,{"b":"c\"d"}],"e":-1.5e3,"f":true,"g":null,"h":"\u00e9\ud83d\ude00"})",
      R"([0, "x", [], {}, 12345678901234567890, "\\\/"])",
      "\"\xE2\x82\xAC\"",
  };
  const std::string alphabet = "{}[]:,\"\\u0123456789.eE+-tfnrl \n\xC3\xA9\xED\xF0";
  std::mt19937 rng(12345);
  for (int i = 0; i < 20000; ++i) {
    std::string text = seeds[rng() % seeds.size()];
    int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !text.empty(); ++e) {
      size_t at = rng() % text.size();
      char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0:
          text[at] = c;
          break;
        case 1:
          text.insert(text.begin() + static_cast<std::ptrdiff_t>(at), c);
          break;
        default:
          text.erase(at, 1);
          break;
      }
    }
    expect_agrees(text);
    if (HasFatalFailure()) return;
  }
}

// Two deliberate differences from nlohmann: a cap on nesting (what is kept is parsed and
// written out again by recursive code), and a NUL byte is an error, not the end of the text.
TEST(JsonScan, RefusesDeepNestingAndNulBytes) {
  auto nested = [](size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); };
  EXPECT_TRUE(compact_json(nested(512)));
  auto deep = compact_json(nested(513));
  ASSERT_FALSE(deep);
  EXPECT_EQ(deep.error().message, "JSON nested deeper than 512 levels (at byte 512)");
  EXPECT_FALSE(compact_json(std::string("{}\0{", 4)));
  EXPECT_FALSE(compact_json(std::string("\"a\0\"", 4)));
}

// Members come as a parsed object holds them: by key, a repeated key's last value winning.
TEST(JsonScan, MembersComeByKeyWithTheirTextAndDecodedKeys) {
  auto m = json_members(
      R"( { "tasks" : [ {"payload": {"x": 1}} ], "d\u00e9f": {"a":1} , "k":2, "k" : 3})");
  ASSERT_TRUE(m) << m.error().message;
  ASSERT_EQ(m->size(), 3u);
  EXPECT_EQ((*m)[0].first,
            "d\xC3\xA9"
            "f");
  EXPECT_EQ((*m)[0].second, R"({"a":1})");
  EXPECT_EQ((*m)[1].first, "k");
  EXPECT_EQ((*m)[1].second, "3");
  EXPECT_EQ((*m)[2].first, "tasks");
  EXPECT_EQ((*m)[2].second, R"([ {"payload": {"x": 1}} ])");
  auto e = json_elements((*m)[2].second);
  ASSERT_TRUE(e);
  ASSERT_EQ(e->size(), 1u);
  EXPECT_EQ((*e)[0], R"({"payload": {"x": 1}})");
  EXPECT_TRUE(json_members("{}")->empty());
  EXPECT_TRUE(json_elements(" [ ] ")->empty());
}

TEST(JsonScan, MembersRefuseWhatIsNotOneObject) {
  auto not_object = json_members("[1]");
  ASSERT_FALSE(not_object);
  EXPECT_EQ(not_object.error().message, "expected a JSON object");
  auto malformed = json_members(R"({"a": 1,})");
  ASSERT_FALSE(malformed);
  EXPECT_EQ(malformed.error().message, "malformed JSON: byte 8: expected a string");
  EXPECT_FALSE(json_members(R"({"a": 1} x)"));
  EXPECT_FALSE(json_members(R"({"a": [1,}})"));
  EXPECT_FALSE(json_elements("[1] [2]"));
}

}  // namespace
}  // namespace rota
