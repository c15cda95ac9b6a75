// The JSON form of tasks, as the API and `--json` show them (docs/api.md lists the fields).
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/task.h"

namespace rota {

nlohmann::json task_to_json(const Task& task);
nlohmann::json attempt_to_json(const Attempt& attempt);

// Reads a task spec from the API's JSON, starting from `defaults`. Unknown fields and values
// of the wrong type are errors that name the field. Does not validate (see validate_spec).
Result<TaskSpec> spec_from_json(const nlohmann::json& j, const TaskSpec& defaults);

// The same from the text of a JSON object, whose payload is kept as written (compacted)
// rather than parsed: a batch's payloads are read once.
Result<TaskSpec> spec_from_text(std::string_view text, const TaskSpec& defaults);

}  // namespace rota
