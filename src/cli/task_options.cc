#include "cli/task_options.h"

#include <fmt/format.h>
#include <unistd.h>

#include <fstream>

#include "cli/command.h"
#include "core/backoff.h"
#include "core/duration.h"
#include "core/task.h"

extern char** environ;

namespace rota::cli {
namespace {

using nlohmann::json;

Env current_env() {
  Env env;
  for (char** e = environ; *e; ++e) {
    std::string_view kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string_view::npos) env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return env;
}

}  // namespace

std::string current_dir() {
  char buf[4096];
  return ::getcwd(buf, sizeof buf) ? std::string(buf) : std::string("/");
}

void add_task_flags(CLI::App* c, TaskFlags& f) {
  c->add_option("command", f.command, "The command and its arguments (after --)");
  c->add_option("--shell", f.shell, "Run this command line through /bin/sh -c");
  c->add_option("--queue", f.queue, "Queue name (default: default)");
  c->add_option("--priority", f.priority, "Higher runs first; FIFO within a priority");
  c->add_option("--retries", f.retries, "Attempts after the first (default 0)");
  c->add_option("--backoff", f.backoff, "Retry delay BASE[,MAX], exponential with jitter (1s,5m)");
  c->add_option("--timeout", f.timeout, "Kill the task's process group after this long");
  c->add_option("--delay", f.delay, "Start no sooner than this from now");
  c->add_option("--slow-after", f.slow_after, "Call the worker slow when the task runs this long");
  c->add_option("--after", f.after, "Run only after these tasks succeeded (ID[,ID...])");
  c->add_option("--label", f.labels, "KEY=VALUE (repeatable)");
  c->add_option("--env", f.env, "KEY=VALUE added to the caller's environment (repeatable)");
  c->add_option("--cwd", f.cwd, "Working directory (default: the current one)");
  c->add_option("--unique", f.unique, "Queue nothing if a task with this key is not finished");
  c->add_option("--unique-for", f.unique_for, "With --unique: nor finished within this long");
  c->add_option("--workdir", f.workdir,
                "temp: run in a fresh temporary directory, removed afterwards");
  c->add_option("--worktree", f.worktree,
                "Run in a fresh git worktree of this repository, removed afterwards");
  c->add_option("--ref", f.ref, "With --worktree: what to check out (default HEAD)");
  c->add_flag("--keep-failed", f.keep_failed, "With --worktree: keep it when the attempt fails");
  c->add_option("--http", f.http, "An HTTP request as the task: --http POST https://...")
      ->expected(2);
  c->add_option("--header", f.headers, "With --http: 'Name: value' (repeatable)");
  c->add_option("--data", f.data, "With --http: the request body, or @FILE");
}

Result<json> task_options_json(const TaskFlags& f) {
  json j = {{"queue", f.queue}, {"priority", f.priority}, {"retries", f.retries}};
  if (!f.backoff.empty()) {
    if (auto b = parse_backoff(f.backoff); !b) return std::unexpected(b.error());
    j["backoff"] = f.backoff;
  }
  for (auto [flag, value, key] :
       {std::tuple{"--timeout", &f.timeout, "timeout"}, std::tuple{"--delay", &f.delay, "delay"},
        std::tuple{"--slow-after", &f.slow_after, "slow_after"}}) {
    if (value->empty()) continue;
    auto ms = parse_duration_ms(*value, flag);
    if (!ms) return std::unexpected(ms.error());
    j[key] = *ms;
  }
  if (!f.unique.empty()) j["unique"] = f.unique;
  if (!f.unique_for.empty()) {
    if (f.unique.empty()) {
      return make_error(Code::kInvalidArgument, "--unique-for goes with --unique KEY",
                        "--unique-for");
    }
    auto d = parse_duration_ms(f.unique_for, "--unique-for");
    if (!d) return std::unexpected(d.error());
    j["unique_for"] = *d;
  }
  auto after = parse_task_ids(f.after, "--after");
  if (!after) return std::unexpected(after.error());
  if (!after->empty()) j["after"] = *after;
  json labels = json::object();
  for (const std::string& l : f.labels) {
    auto kv = parse_key_value(l, "--label");
    if (!kv) return std::unexpected(kv.error());
    labels[kv->first] = kv->second;
  }
  if (!labels.empty()) j["labels"] = labels;
  Env env = current_env();
  for (const std::string& e : f.env) {
    auto kv = parse_key_value(e, "--env");
    if (!kv) return std::unexpected(kv.error());
    env[kv->first] = kv->second;
  }
  j["env"] = env;
  std::string cwd = f.cwd.empty() ? current_dir() : f.cwd;
  if (!cwd.empty() && cwd.front() != '/') cwd = current_dir() + "/" + cwd;
  j["cwd"] = cwd;
  if (!f.workdir.empty()) {
    if (f.workdir != "temp") {
      return make_error(Code::kInvalidArgument,
                        fmt::format("--workdir: \"{}\" is not a choice (temp)", f.workdir),
                        "--workdir");
    }
    if (!f.worktree.empty()) {
      return make_error(Code::kInvalidArgument, "--workdir and --worktree do not go together",
                        "--workdir");
    }
    j["workdir"] = "temp";
  }
  if ((!f.ref.empty() || f.keep_failed) && f.worktree.empty()) {
    return make_error(Code::kInvalidArgument, "--ref and --keep-failed go with --worktree REPO",
                      "--worktree");
  }
  if ((!f.headers.empty() || !f.data.empty()) && f.http.empty()) {
    return make_error(Code::kInvalidArgument, "--header and --data go with --http METHOD URL",
                      "--http");
  }
  if (!f.http.empty()) {
    if (!f.command.empty() || !f.shell.empty()) {
      return make_error(Code::kInvalidArgument, "--http is the command: give no other", "--http");
    }
    std::string body = f.data;
    if (body.starts_with('@')) {
      std::ifstream in(body.substr(1), std::ios::binary);
      if (!in) {
        return make_error(Code::kInvalidArgument,
                          fmt::format("--data: cannot read {}", body.substr(1)), "--data");
      }
      body.assign(std::istreambuf_iterator<char>(in), {});
    }
    std::string method = f.http[0];
    for (char& ch : method) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    j["http"] = {{"method", method}, {"url", f.http[1]}, {"headers", f.headers}, {"body", body}};
  }
  if (!f.worktree.empty()) {
    std::string repo = f.worktree.front() == '/' ? f.worktree : current_dir() + "/" + f.worktree;
    if (::access((repo + "/.git").c_str(), F_OK) != 0) {
      return make_error(Code::kInvalidArgument,
                        fmt::format("--worktree: {} is not a git repository", repo), "--worktree");
    }
    j["worktree"] = repo;
    if (!f.ref.empty()) j["ref"] = f.ref;
    if (f.keep_failed) j["keep_failed"] = true;
  }
  return j;
}

Result<json> task_json(const TaskFlags& f) {
  auto j = task_options_json(f);
  if (!j) return j;
  if (auto r = check_task_locally(f, *j); !r) return std::unexpected(r.error());
  if (!j->contains("http")) {
    // The command: argv, or a shell line (an HTTP request is in the options already).
    if (f.command.empty()) {
      (*j)["shell"] = f.shell;
    } else {
      (*j)["argv"] = f.command;
    }
  }
  return j;
}

Status check_task_locally(const TaskFlags& f, const json& options, bool stdin_commands) {
  TaskSpec spec;
  spec.command.argv = f.command;
  spec.command.shell = f.shell;
  if (options.contains("http")) {
    auto http = http_from_json(options["http"].dump());
    if (!http) return std::unexpected(http.error());
    spec.command.http = std::move(*http);
  }
  if (stdin_commands) spec.command.shell = "true";
  spec.command.cwd = options["cwd"];
  spec.queue = f.queue;
  spec.retries = f.retries;
  if (options.contains("labels")) spec.labels = options["labels"].get<Labels>();
  if (auto r = validate_spec(spec); !r) return r;
  return validate_cwd(spec.command.cwd);
}

}  // namespace rota::cli
