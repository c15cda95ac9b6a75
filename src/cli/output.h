// Printing for people: tables, task details, a progress bar.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace rota::cli {

// Prints rows under a header, columns padded to their widest cell.
void print_table(const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows);
std::string colored_state(const std::string& state);
// One line for a task's command: argv joined, or the shell line.
std::string command_line(const nlohmann::json& task);
// The table of `rota workers` and `rota health`, from /v1/workers.
void print_workers(const nlohmann::json& workers);
// A JSON value as a table cell: "-" for null, strings bare.
std::string cell(const nlohmann::json& value);
// "-" or a duration, for a JSON number of milliseconds.
std::string age(const nlohmann::json& ms);
// Percent-encodes a query parameter's value.
std::string url_encode(const std::string& text);
// "[#####.....] 50/100 (3 failed)" on stderr, redrawn in place.
void draw_progress(int64_t finished, int64_t total, int64_t failed);

}  // namespace rota::cli
