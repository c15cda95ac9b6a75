#include "worker/spawn.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <vector>

namespace rota {
namespace {

bool is_executable(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

// Owns what posix_spawn needs and releases it on every path.
struct SpawnAttrs {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  SpawnAttrs() {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
  }
  ~SpawnAttrs() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
};

}  // namespace

std::string resolve_program(const std::string& name, const Env& env, const std::string& cwd) {
  if (name.find('/') != std::string::npos) {
    return name.front() == '/' ? name : cwd + "/" + name;
  }
  auto it = env.find("PATH");
  std::string path = it != env.end() ? it->second : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    if (dir.empty()) dir = cwd;
    if (dir.front() != '/') dir = cwd + "/" + dir;
    std::string candidate = dir + "/" + name;
    if (is_executable(candidate)) return candidate;
    start = end + 1;
  }
  return {};
}

Result<Spawned> spawn_command(const Command& command, int64_t task_id, int attempt,
                              const std::string& token, const std::string& result_path) {
  std::vector<std::string> args = command.argv;
  std::string program;
  if (args.empty()) {
    program = "/bin/sh";
    args = {"sh", "-c", command.shell};
  } else {
    program = resolve_program(args.front(), command.env ? *command.env : Env{}, command.cwd);
    if (program.empty()) {
      return make_error(Code::kNotFound,
                        fmt::format("command not found: {} (not in the task's PATH)", args[0]));
    }
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  if (command.env) {
    for (const auto& [k, v] : *command.env) {
      if (k != "ROTA_TASK_ID" && k != "ROTA_ATTEMPT" && k != "ROTA_ATTEMPT_TOKEN" &&
          k != "ROTA_RESULT" && !command.vars.contains(k)) {
        env_strings.push_back(k + "=" + v);
      }
    }
  }
  for (const auto& [k, v] : command.vars) env_strings.push_back(k + "=" + v);
  if (task_id) {
    // The task knows who it is, and so can the daemon find its processes by it.
    env_strings.push_back(fmt::format("ROTA_TASK_ID={}", task_id));
    env_strings.push_back(fmt::format("ROTA_ATTEMPT={}", attempt));
    env_strings.push_back("ROTA_ATTEMPT_TOKEN=" + token);
  }
  if (!result_path.empty()) env_strings.push_back("ROTA_RESULT=" + result_path);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    return make_error(Code::kInternal, fmt::format("pipe: {}", std::strerror(errno)));
  }
  SpawnAttrs s;
  posix_spawn_file_actions_addopen(&s.actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&s.actions, pipe_fds[1], 1);
  posix_spawn_file_actions_adddup2(&s.actions, pipe_fds[1], 2);
  posix_spawn_file_actions_addclosefrom_np(&s.actions, 3);  // the worker's socket stays its own
  posix_spawn_file_actions_addchdir_np(&s.actions, command.cwd.c_str());
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&s.attr, &all);
  posix_spawnattr_setsigmask(&s.attr, &none);
  posix_spawnattr_setpgroup(&s.attr, 0);
  posix_spawnattr_setflags(&s.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF |
                                        POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_USEVFORK);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, program.c_str(), &s.actions, &s.attr, argv.data(), envp.data());
  close(pipe_fds[1]);
  if (rc != 0) {
    close(pipe_fds[0]);
    return make_error(Code::kInternal,
                      fmt::format("cannot start {}: {}", args.front(), std::strerror(rc)));
  }
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    kill(-pid, SIGKILL);
    close(pipe_fds[0]);
    return make_error(Code::kInternal, fmt::format("pidfd_open: {}", std::strerror(errno)));
  }
  fcntl(pipe_fds[0], F_SETFL, O_NONBLOCK);
  return Spawned{pid, pidfd, pipe_fds[0]};
}

int kill_attempt_processes(const std::vector<std::string>& tokens) {
  std::set<std::string, std::less<>> needles;
  for (const std::string& token : tokens) {
    if (!token.empty()) needles.insert("ROTA_ATTEMPT_TOKEN=" + token);
  }
  if (needles.empty()) return 0;
  int killed = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::ifstream in(entry.path() / "environ", std::ios::binary);
    std::string var;
    while (std::getline(in, var, '\0')) {
      if (!needles.contains(var)) continue;
      pid_t pid = static_cast<pid_t>(std::stol(name));
      pid_t group = getpgid(pid);
      if (group > 0) ::kill(-group, SIGKILL);
      ::kill(pid, SIGKILL);
      ++killed;
      break;
    }
  }
  return killed;
}

}  // namespace rota
