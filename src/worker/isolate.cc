#include "worker/isolate.h"

#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>

extern char** environ;

namespace rota {
namespace {

namespace fs = std::filesystem;

// Runs a git command to completion, its output going where the task's goes (the task's log).
int git(const std::vector<std::string>& args) {
  std::vector<std::string> full = {"git"};
  full.insert(full.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : full) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawnp(&pid, "git", nullptr, nullptr, argv.data(), environ) != 0) return 127;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void remove_worktree(const std::string& repo, const std::string& path) {
  git({"-C", repo, "worktree", "remove", "--force", path});
  std::error_code ec;
  fs::remove_all(path, ec);
  git({"-C", repo, "worktree", "prune"});
}

}  // namespace

std::vector<std::string> isolated_argv(const Command& command, const std::string& self_exe,
                                       const std::string& worktrees_dir, int64_t task_id) {
  std::vector<std::string> argv = {self_exe, "__isolate", "--isolation",
                                   isolation_to_json(command.isolation)};
  if (command.isolation.kind == Isolation::Kind::kWorktree) {
    argv.push_back("--path");
    argv.push_back(fmt::format("{}/task-{}", worktrees_dir, task_id));
  }
  argv.push_back("--");
  if (command.argv.empty()) {
    argv.insert(argv.end(), {"/bin/sh", "-c", command.shell});
  } else {
    argv.insert(argv.end(), command.argv.begin(), command.argv.end());
  }
  return argv;
}

int run_isolated(const std::string& isolation_json, const std::string& worktree_path,
                 const std::vector<std::string>& argv) {
  auto isolation = isolation_from_json(isolation_json);
  if (!isolation || argv.empty()) {
    fmt::print(stderr, "rota: __isolate: bad arguments\n");
    return 125;
  }
  // A timeout or a cancel signals the whole group: the command gets it; this process stays to
  // clean up after it.
  std::signal(SIGTERM, SIG_IGN);
  std::signal(SIGINT, SIG_IGN);
  std::signal(SIGHUP, SIG_IGN);

  std::string dir;
  if (isolation->kind == Isolation::Kind::kTemp) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = fmt::format("{}/rota-task-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!::mkdtemp(pattern.data())) {
      fmt::print(stderr, "rota: cannot make a temporary directory in {}: {}\n", pattern,
                 std::strerror(errno));
      return 125;
    }
    dir = pattern;
  } else if (isolation->kind == Isolation::Kind::kWorktree) {
    dir = worktree_path;
    std::error_code ec;
    fs::create_directories(fs::path(dir).parent_path(), ec);
    if (fs::exists(dir, ec)) {
      // Left by an attempt whose worker died before it could clean up.
      fmt::print(stderr, "rota: pruning the stale worktree {}\n", dir);
      remove_worktree(isolation->repo, dir);
    }
    if (int rc = git(
            {"-C", isolation->repo, "worktree", "add", "--detach", "--quiet", dir, isolation->ref});
        rc != 0) {
      fmt::print(stderr, "rota: git worktree add {} {} failed (exit {})\n", dir, isolation->ref,
                 rc);
      return 125;
    }
  }

  pid_t child = ::fork();
  if (child < 0) return 125;
  if (child == 0) {
    std::signal(SIGTERM, SIG_DFL);
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGHUP, SIG_DFL);
    if (::chdir(dir.c_str()) != 0) _exit(125);
    ::setenv("ROTA_WORKDIR", dir.c_str(), 1);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    fmt::print(stderr, "rota: command not found: {}\n", argv[0]);
    _exit(127);
  }
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  bool failed = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
  if (isolation->kind == Isolation::Kind::kTemp) {
    std::error_code ec;
    fs::remove_all(dir, ec);
  } else if (failed && isolation->keep_failed) {
    fmt::print(stderr, "rota: the attempt failed; its worktree is kept at {}\n", dir);
  } else {
    remove_worktree(isolation->repo, dir);
  }
  if (WIFSIGNALED(status)) {
    std::signal(WTERMSIG(status), SIG_DFL);
    ::kill(::getpid(), WTERMSIG(status));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace rota
