// The `exec` builtin: runs a command line (/bin/sh -c) or an argv array as a child process,
// or a map {"argv" | "cmd", "env", "cwd"}; the child learns its task's cores from the
// environment (ACME_TASK_CORES, ACME_TASK_CPUS, OMP_NUM_THREADS).
// The worker is multithreaded, so the child is started with posix_spawn (no code of ours runs
// between fork and exec), in its own process group so that a cancel kills all it started.
#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <string_view>
#include <utility>

#include <acme/error.hpp>

#include "builtins.hpp"
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;  // NOLINT: POSIX declares it nowhere

namespace acme::worker {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr auto kKillGrace = 2s;            // SIGTERM, then SIGKILL this much later
constexpr std::size_t kStderrTail = 2000;  // bytes of stderr quoted in a failure message

/// A file descriptor closed on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  [[nodiscard]] int get() const noexcept { return fd_; }
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

std::array<Fd, 2> make_pipe() {
  std::array<int, 2> fds{-1, -1};
  // O_CLOEXEC: a child spawned by another task thread must not inherit this pipe, or our
  // reader would wait for that unrelated child to exit before seeing end of file.
  if (::pipe2(fds.data(), O_CLOEXEC) != 0) {
    throw Error(Errc::System, std::string("exec: pipe failed: ") + std::strerror(errno));
  }
  return {Fd(fds[0]), Fd(fds[1])};
}

/// posix_spawn attributes and file actions, destroyed on scope exit.
struct SpawnSetup {
  posix_spawnattr_t attr{};
  posix_spawn_file_actions_t actions{};
  SpawnSetup() {
    ::posix_spawnattr_init(&attr);
    ::posix_spawn_file_actions_init(&actions);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;
  ~SpawnSetup() {
    ::posix_spawn_file_actions_destroy(&actions);
    ::posix_spawnattr_destroy(&attr);
  }
};

void append_capped(std::string& to, const char* data, std::size_t size) {
  if (to.size() >= kMaxCapture) return;
  to.append(data, std::min(size, kMaxCapture - to.size()));
}

std::string quote(const std::vector<std::string>& argv) {
  // The shell form shows the command line, the argv form its words.
  if (argv.size() == 3 && argv[0] == "/bin/sh" && argv[1] == "-c") return "`" + argv[2] + "`";
  std::string text;
  for (const auto& word : argv) text += (text.empty() ? "" : " ") + word;
  return "`" + text + "`";
}

std::string cpu_csv(const std::vector<unsigned>& cpus) {
  std::string text;
  for (const auto cpu : cpus) text += (text.empty() ? "" : ",") + std::to_string(cpu);
  return text;
}

/// What a task asks exec to run.
struct Request {
  std::vector<std::string> argv{};
  std::vector<std::string> env{};  // "NAME=value" overrides
  std::string cwd{};
};

constexpr const char* kUsage =
    "exec() takes 1 argument: a command line (str), an argv array of str, or a map "
    "{\"argv\": [...] or \"cmd\": \"...\", \"env\": {\"NAME\": \"value\"}, \"cwd\": \"dir\"}";

std::vector<std::string> argv_of(const msgpack::object& value, const std::string& where) {
  std::vector<std::string> argv;
  try {
    argv = value.as<std::vector<std::string>>();
  } catch (const msgpack::type_error&) {
    throw std::invalid_argument("exec() " + where + ": every element of argv must be a str");
  }
  if (argv.empty()) throw std::invalid_argument("exec() " + where + ": argv is empty");
  return argv;
}

std::string key_of(const msgpack::object& key) {
  if (key.type != msgpack::type::STR) {
    throw std::invalid_argument(std::string("exec() argument 1: map keys must be str, got ") +
                                detail::msgpack_type_name(key.type));
  }
  return key.as<std::string>();
}

/// What `what` must be and what it is, as an exception.
std::invalid_argument wrong_type(const std::string& what, const char* expected,
                                 const msgpack::object& value) {
  return std::invalid_argument("exec() " + what + ": expected " + expected + ", got " +
                               detail::msgpack_type_name(value.type));
}

/// A str, or an integer written in decimal (env values such as {"N": 4}).
std::string env_value(const std::string& name, const msgpack::object& value) {
  switch (value.type) {
    case msgpack::type::STR: return value.as<std::string>();
    case msgpack::type::POSITIVE_INTEGER: return std::to_string(value.via.u64);
    case msgpack::type::NEGATIVE_INTEGER: return std::to_string(value.via.i64);
    default:
      throw std::invalid_argument("exec() env: the value of " + name + " must be a str, got " +
                                  detail::msgpack_type_name(value.type));
  }
}

Request request_from_map(const msgpack::object& map) {
  Request request;
  bool has_argv = false;
  bool has_cmd = false;
  for (const auto& entry : std::span(map.via.map.ptr, map.via.map.size)) {
    const auto key = key_of(entry.key);
    const auto& value = entry.val;
    if (key == "argv") {
      if (value.type != msgpack::type::ARRAY) throw wrong_type("argv", "array", value);
      request.argv = argv_of(value, "argv");
      has_argv = true;
    } else if (key == "cmd") {
      if (value.type != msgpack::type::STR) throw wrong_type("cmd", "str", value);
      request.argv = {"/bin/sh", "-c", value.as<std::string>()};
      has_cmd = true;
    } else if (key == "env") {
      if (value.type != msgpack::type::MAP) throw wrong_type("env", "a map of str", value);
      for (const auto& variable : std::span(value.via.map.ptr, value.via.map.size)) {
        const auto name = key_of(variable.key);
        if (name.empty() || name.find('=') != std::string::npos) {
          throw std::invalid_argument("exec() env: '" + name + "' is not a variable name");
        }
        request.env.push_back(name + "=" + env_value(name, variable.val));
      }
    } else if (key == "cwd") {
      if (value.type != msgpack::type::STR) throw wrong_type("cwd", "str", value);
      request.cwd = value.as<std::string>();
    } else {
      throw std::invalid_argument("exec() argument 1: unknown key '" + key +
                                  "' (expected argv or cmd, env, cwd)");
    }
  }
  if (has_argv == has_cmd) {
    throw std::invalid_argument(has_argv ? "exec() argument 1: give either argv or cmd, not both"
                                         : "exec() argument 1: the map needs argv or cmd");
  }
  return request;
}

Request request_from(const msgpack::object& args) {
  if (args.type != msgpack::type::ARRAY || args.via.array.size != 1) {
    throw std::invalid_argument(kUsage);
  }
  const auto& command = args.via.array.ptr[0];  // NOLINT: msgpack's array
  switch (command.type) {
    case msgpack::type::STR: return {.argv = {"/bin/sh", "-c", command.as<std::string>()}};
    case msgpack::type::ARRAY: return {.argv = argv_of(command, "argument 1")};
    case msgpack::type::MAP: return request_from_map(command);
    default: throw wrong_type("argument 1", "str, array or map", command);
  }
}

}  // namespace

std::vector<std::string> task_environment(const TaskContext& context,
                                          const std::vector<std::string>& overrides) {
  const auto name_of = [](std::string_view entry) { return entry.substr(0, entry.find('=')); };
  std::vector<std::string> ours = {"ACME_TASK_CORES=" + std::to_string(context.cores()),
                                   "OMP_NUM_THREADS=" + std::to_string(context.cores())};
  if (!context.cpus().empty()) ours.push_back("ACME_TASK_CPUS=" + cpu_csv(context.cpus()));
  const auto replaced = [&](std::string_view name) {
    const auto same = [&](const std::string& entry) { return name_of(entry) == name; };
    return name == "ACME_TASK_CPUS" || std::any_of(ours.begin(), ours.end(), same) ||
           std::any_of(overrides.begin(), overrides.end(), same);
  };
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {  // NOLINT: walking the C environment
    if (!replaced(name_of(*e))) env.emplace_back(*e);
  }
  for (auto& entry : ours) {
    const auto same = [&](const std::string& o) { return name_of(o) == name_of(entry); };
    if (std::none_of(overrides.begin(), overrides.end(), same)) env.push_back(std::move(entry));
  }
  env.insert(env.end(), overrides.begin(), overrides.end());
  return env;
}

CommandOutcome run_command(const std::vector<std::string>& argv, const std::atomic<bool>* cancelled,
                           const SpawnOptions& spawn) {
  if (argv.empty()) throw std::invalid_argument("exec() needs a non-empty command");
  if (!spawn.cwd.empty()) {
    struct stat info {};
    if (::stat(spawn.cwd.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
      throw std::invalid_argument("exec: cwd '" + spawn.cwd + "' is not a directory");
    }
  }
  auto out = make_pipe();
  auto err = make_pipe();

  SpawnSetup setup;
  ::posix_spawn_file_actions_addopen(&setup.actions, 0, "/dev/null", O_RDONLY, 0);
  ::posix_spawn_file_actions_adddup2(&setup.actions, out[1].get(), 1);
  ::posix_spawn_file_actions_adddup2(&setup.actions, err[1].get(), 2);
  if (!spawn.cwd.empty()) ::posix_spawn_file_actions_addchdir_np(&setup.actions, spawn.cwd.c_str());
  // Its own process group (so a cancel reaches its children too), default signal handling and
  // an empty signal mask whatever the worker's threads have set.
  sigset_t none;
  sigset_t all;
  ::sigemptyset(&none);
  ::sigfillset(&all);
  ::posix_spawnattr_setpgroup(&setup.attr, 0);
  ::posix_spawnattr_setsigmask(&setup.attr, &none);
  ::posix_spawnattr_setsigdefault(&setup.attr, &all);
  ::posix_spawnattr_setflags(
      &setup.attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const auto& word : argv) args.push_back(const_cast<char*>(word.c_str()));  // NOLINT
  args.push_back(nullptr);
  std::vector<char*> envp;
  if (spawn.env) {
    envp.reserve(spawn.env->size() + 1);
    for (const auto& entry : *spawn.env)
      envp.push_back(const_cast<char*>(entry.c_str()));  // NOLINT
    envp.push_back(nullptr);
  }

  pid_t pid = 0;
  const int spawned = ::posix_spawnp(&pid, args[0], &setup.actions, &setup.attr, args.data(),
                                     spawn.env ? envp.data() : environ);
  if (spawned != 0) {
    throw Error(Errc::System, "exec: cannot run " + quote(argv) + ": " + std::strerror(spawned));
  }
  out[1].reset();
  err[1].reset();

  CommandOutcome outcome;
  std::array<pollfd, 2> fds{pollfd{out[0].get(), POLLIN, 0}, pollfd{err[0].get(), POLLIN, 0}};
  std::array<std::string*, 2> sinks{&outcome.out, &outcome.err};
  std::array<char, 65536> buffer{};
  std::optional<Clock::time_point> terminated_at;
  bool killed = false;
  int status = 0;
  bool reaped = false;
  // Reads both pipes together, so a child that fills one while we wait on the other cannot
  // deadlock; wakes every 20 ms to notice a cancel.
  while (fds[0].fd >= 0 || fds[1].fd >= 0) {
    const int ready = ::poll(fds.data(), fds.size(), 20);
    if (ready < 0 && errno != EINTR) break;
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      const auto n = ::read(fds[i].fd, buffer.data(), buffer.size());
      if (n > 0) {
        append_capped(*sinks[i], buffer.data(), static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;  // end of file (the Fd still closes it)
      }
    }
    if (cancelled != nullptr && cancelled->load(std::memory_order_relaxed)) {
      outcome.cancelled = true;
      const auto now = Clock::now();
      if (!terminated_at) {
        ::kill(-pid, SIGTERM);
        terminated_at = now;
      } else if (!killed && now - *terminated_at >= kKillGrace) {
        ::kill(-pid, SIGKILL);
        killed = true;
      }
      // A grandchild that left the group may hold the pipes open: once our child is gone,
      // stop waiting for them.
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        reaped = true;
        break;
      }
    }
  }
  if (!reaped) {
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  if (WIFSIGNALED(status)) {
    outcome.signal = WTERMSIG(status);
  } else if (WIFEXITED(status)) {
    outcome.exit_code = WEXITSTATUS(status);
  }
  return outcome;
}

RawFunction make_exec() {
  return [](const msgpack::object& args, const msgpack::object& /*kwargs*/,
            msgpack::packer<msgpack::sbuffer>& result, TaskContext& context) {
    auto request = request_from(args);
    const auto& argv = request.argv;
    const auto outcome =
        run_command(argv, context.cancelled_flag(),
                    {.env = task_environment(context, request.env), .cwd = std::move(request.cwd)});
    if (outcome.cancelled) throw std::runtime_error("exec: " + quote(argv) + " was cancelled");
    if (outcome.signal != 0 || outcome.exit_code != 0) {
      std::string message = "exec: " + quote(argv);
      if (outcome.signal != 0) {
        message += " was killed by signal " + std::to_string(outcome.signal) + " (" +
                   ::strsignal(outcome.signal) + ")";  // NOLINT(concurrency-mt-unsafe)
      } else {
        message += " exited with code " + std::to_string(outcome.exit_code);
      }
      const std::string_view err = outcome.err;
      if (!err.empty()) {
        message += err.size() > kStderrTail ? "; stderr ends: ..." : "; stderr: ";
        message += err.substr(err.size() - std::min(err.size(), kStderrTail));
        while (!message.empty() && (message.back() == '\n' || message.back() == '\r')) {
          message.pop_back();
        }
      }
      throw std::runtime_error(message);
    }
    result.pack_map(3);
    result.pack(std::string_view("exit_code"));
    result.pack(outcome.exit_code);
    result.pack(std::string_view("stdout"));
    result.pack(outcome.out);
    result.pack(std::string_view("stderr"));
    result.pack(outcome.err);
  };
}

}  // namespace acme::worker
