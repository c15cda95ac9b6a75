// Reading a JSON text without building a tree of it: a batch of 10,000 tasks is one object
// whose payloads are kept as text, so the daemon checks and copies them once instead of
// parsing each into a tree and writing it out again.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"

namespace rota {

// Checks that `text` holds exactly one JSON value (RFC 8259, as strict as nlohmann's parser:
// UTF-8 checked, surrogate escapes paired, numbers finite) and returns it compact: the
// whitespace between tokens dropped, everything else as written. Errors name the byte. Two
// differences from nlohmann: nesting deeper than 512 levels is refused, and so is a NUL byte
// (where nlohmann stops reading).
Result<std::string> compact_json(std::string_view text);

// The members of the JSON object in `text`, each key decoded and each value as the text it
// was written with (checked, not compacted); as a parsed object has them: by key, and a key
// given twice has its last value. Fails if `text` is not exactly one valid JSON value, or is
// not an object.
Result<std::vector<std::pair<std::string, std::string_view>>> json_members(std::string_view text);

// Whether the first token of `text` opens an object (the text is not checked).
bool starts_object(std::string_view text);

// The elements of the JSON array in `text`, each as written; fails as json_members does.
Result<std::vector<std::string_view>> json_elements(std::string_view text);

}  // namespace rota
