#include "worker/isolate.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <filesystem>

extern char** environ;

namespace rota {
namespace {

namespace fs = std::filesystem;

constexpr std::array kStopSignals = {SIGTERM, SIGINT, SIGHUP};
volatile std::sig_atomic_t g_stop_signal = 0;

void note_stop(int sig) { g_stop_signal = sig; }

// Dies of `sig`, as the task's main process would have.
[[noreturn]] void die_of(int sig) {
  std::signal(sig, SIG_DFL);
  ::kill(::getpid(), sig);
  _exit(128 + sig);
}

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

// An exclusive lock on a repository's directory while this process changes its worktrees:
// git does not make one worktree's add and another's remove safe together (the last remove
// deletes .git/worktrees while an add is filling it). A lock on the directory itself writes
// nothing into the user's repository, and holds for every path that names it.
class RepoLock {
 public:
  explicit RepoLock(const std::string& repo)
      : fd_(::open(repo.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
    if (fd_ < 0) return;  // git then says what is wrong with the repository
    while (::flock(fd_, LOCK_EX) < 0 && errno == EINTR) {
    }
  }
  ~RepoLock() {
    if (fd_ >= 0) ::close(fd_);
  }
  RepoLock(const RepoLock&) = delete;
  RepoLock& operator=(const RepoLock&) = delete;

 private:
  int fd_;
};

void remove_worktree(const std::string& repo, const std::string& path) {
  RepoLock lock(repo);
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
  // A timeout or a cancel signals the whole group: the command gets it; this process notes
  // it and stays to clean up. (Caught, not ignored: git and the command start with the
  // default dispositions.)
  struct sigaction stop {};
  stop.sa_handler = note_stop;
  sigemptyset(&stop.sa_mask);
  for (int sig : kStopSignals) sigaction(sig, &stop, nullptr);

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
    int rc = 0;
    {
      RepoLock lock(isolation->repo);
      rc = git(
          {"-C", isolation->repo, "worktree", "add", "--detach", "--quiet", dir, isolation->ref});
    }
    if (rc != 0) {
      fmt::print(stderr, "rota: git worktree add {} {} failed (exit {})\n", dir, isolation->ref,
                 rc);
      return 125;
    }
  }

  auto clean_up = [&](bool failed) {
    if (isolation->kind == Isolation::Kind::kTemp) {
      std::error_code ec;
      fs::remove_all(dir, ec);
    } else if (failed && isolation->keep_failed) {
      fmt::print(stderr, "rota: the attempt failed; its worktree is kept at {}\n", dir);
    } else {
      remove_worktree(isolation->repo, dir);
    }
  };
  // Stopped during the set-up: the command never starts.
  sigset_t stops, previous;
  sigemptyset(&stops);
  for (int sig : kStopSignals) sigaddset(&stops, sig);
  sigprocmask(SIG_BLOCK, &stops, &previous);
  if (g_stop_signal) {
    clean_up(true);
    die_of(g_stop_signal);
  }
  pid_t child = ::fork();
  if (child < 0) return 125;
  if (child == 0) {
    // A stop that came since the block is delivered to the command, by default, once it
    // unblocks.
    for (int sig : kStopSignals) std::signal(sig, SIG_DFL);
    sigprocmask(SIG_SETMASK, &previous, nullptr);
    if (::chdir(dir.c_str()) != 0) _exit(125);
    ::setenv("ROTA_WORKDIR", dir.c_str(), 1);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    fmt::print(stderr, "rota: command not found: {}\n", argv[0]);
    _exit(127);
  }
  sigprocmask(SIG_SETMASK, &previous, nullptr);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  clean_up(!WIFEXITED(status) || WEXITSTATUS(status) != 0);
  if (WIFSIGNALED(status)) die_of(WTERMSIG(status));
  return WEXITSTATUS(status);
}

}  // namespace rota
