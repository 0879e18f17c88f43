// The operating-system side of acme-launch.
#include "system.hpp"

#include <array>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include <acme/error.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace acme::launch {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

std::vector<char*> c_argv(const Argv& argv) {
  std::vector<char*> result;
  result.reserve(argv.size() + 1);
  for (const auto& arg : argv) result.push_back(const_cast<char*>(arg.c_str()));  // NOLINT
  result.push_back(nullptr);
  return result;
}

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

CommandResult run_command(const Argv& argv, std::chrono::milliseconds timeout) {
  CommandResult result;
  std::array<int, 2> out{-1, -1};
  std::array<int, 2> err{-1, -1};
  if (::pipe2(out.data(), O_CLOEXEC) != 0 || ::pipe2(err.data(), O_CLOEXEC) != 0) {
    result.err = fmt::format("pipe: {}", std::strerror(errno));
    return result;
  }
  auto args = c_argv(argv);
  const pid_t pid = ::fork();
  if (pid < 0) {
    result.err = fmt::format("fork: {}", std::strerror(errno));
    for (int* fd : {&out[0], &out[1], &err[0], &err[1]}) close_fd(*fd);
    return result;
  }
  if (pid == 0) {
    ::setpgid(0, 0);
    const int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGPIPE, SIG_DFL);
    ::execvp(args[0], args.data());
    const auto message = fmt::format("{}: {}\n", argv[0], std::strerror(errno));
    (void)!::write(2, message.data(), message.size());
    ::_exit(127);
  }
  ::setpgid(pid, pid);
  close_fd(out[1]);
  close_fd(err[1]);
  const auto deadline = Clock::now() + timeout;
  std::array<char, 4096> buffer{};
  while (out[0] >= 0 || err[0] >= 0) {
    std::array<pollfd, 2> fds{pollfd{out[0], POLLIN, 0}, pollfd{err[0], POLLIN, 0}};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      result.timed_out = true;
      ::kill(-pid, SIGKILL);
      break;
    }
    const int ready = ::poll(fds.data(), fds.size(), static_cast<int>(std::min<long>(left, 200)));
    if (ready < 0 && errno != EINTR) break;
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      const auto n = ::read(fds[i].fd, buffer.data(), buffer.size());
      if (n > 0) {
        (i == 0 ? result.out : result.err).append(buffer.data(), static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        close_fd(i == 0 ? out[0] : err[0]);
      }
    }
  }
  close_fd(out[0]);
  close_fd(err[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!result.timed_out) {
    result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  return result;
}

CommandResult run_scheduler_command(const Argv& argv) {
  return run_command(argv, std::chrono::seconds(30));
}

std::string self_exe() {
  std::error_code error;
  const auto path = fs::read_symlink("/proc/self/exe", error);
  return error ? std::string("acme-launch") : path.string();
}

namespace {

bool executable(const fs::path& path) {
  return ::access(path.c_str(), X_OK) == 0 && fs::is_regular_file(path);
}

/// `name` in the first directory of $PATH that has it as an executable.
std::optional<std::string> search_path(const std::string& name) {
  const char* path = std::getenv("PATH");  // NOLINT(concurrency-mt-unsafe)
  std::stringstream dirs(path != nullptr ? path : "");
  for (std::string entry; std::getline(dirs, entry, ':');) {
    if (!entry.empty() && executable(fs::path(entry) / name)) {
      return fs::absolute(fs::path(entry) / name).string();
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> find_program(const std::string& name, const char* env_var,
                                        const std::string& subdir) {
  if (const char* value = std::getenv(env_var); value != nullptr && *value != '\0') {  // NOLINT
    if (executable(value)) return std::string(value);
    return std::nullopt;
  }
  const auto dir = fs::path(self_exe()).parent_path();
  for (const auto& candidate : {dir / name, dir.parent_path() / subdir / name}) {
    if (executable(candidate)) return fs::absolute(candidate).lexically_normal().string();
  }
  return search_path(name);
}

bool on_path(const std::string& name) {
  return search_path(name).has_value();
}

namespace {

/// The interface of the IPv4 default route, from /proc/net/route.
std::string default_route_interface() {
  std::ifstream routes("/proc/net/route");
  std::string line;
  std::getline(routes, line);  // header
  while (std::getline(routes, line)) {
    std::istringstream fields(line);
    std::string name;
    std::string destination;
    fields >> name >> destination;
    if (destination == "00000000") return name;
  }
  return {};
}

}  // namespace

std::string pick_address(const std::string& choice) {
  in_addr literal{};
  if (!choice.empty() && ::inet_pton(AF_INET, choice.c_str(), &literal) == 1) return choice;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) {
    throw Error(Errc::System,
                fmt::format("cannot list network interfaces: {}", std::strerror(errno)));
  }
  const std::string wanted = choice.empty() ? default_route_interface() : choice;
  std::string chosen;
  std::string fallback;
  std::vector<std::string> names;
  for (auto* entry = list; entry != nullptr; entry = entry->ifa_next) {
    if (entry->ifa_addr == nullptr || entry->ifa_addr->sa_family != AF_INET) continue;
    if ((entry->ifa_flags & IFF_UP) == 0) continue;
    std::array<char, INET_ADDRSTRLEN> text{};
    const auto* address = reinterpret_cast<const sockaddr_in*>(entry->ifa_addr);  // NOLINT
    ::inet_ntop(AF_INET, &address->sin_addr, text.data(), text.size());
    names.push_back(fmt::format("{} ({})", entry->ifa_name, text.data()));
    if (entry->ifa_name == wanted && chosen.empty()) chosen = text.data();
    if (fallback.empty() && (entry->ifa_flags & IFF_LOOPBACK) == 0) fallback = text.data();
  }
  ::freeifaddrs(list);
  if (!chosen.empty()) return chosen;
  if (!choice.empty()) {
    throw Error(Errc::BadOptions, fmt::format("--interface {}: no such interface with an IPv4 "
                                              "address (there are: {})",
                                              choice, fmt::join(names, ", ")));
  }
  return fallback.empty() ? std::string("127.0.0.1") : fallback;
}

StartedBroker start_broker(const std::string& exe, const std::string& address,
                           const std::string& log_path, std::chrono::milliseconds timeout) {
  const Argv argv{exe, "--bind", fmt::format("tcp://{}:0", address)};
  auto args = c_argv(argv);
  const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (log < 0) {
    throw Error(Errc::System, fmt::format("cannot write {}: {}", log_path, std::strerror(errno)));
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log);
    throw Error(Errc::System, fmt::format("fork: {}", std::strerror(errno)));
  }
  if (pid == 0) {
    ::setsid();  // outlives acme-launch and its terminal's Ctrl-C
    const int null = ::open("/dev/null", O_RDONLY);
    ::dup2(null, 0);
    ::dup2(log, 1);
    ::dup2(log, 2);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGPIPE, SIG_DFL);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(log);
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    std::ifstream file(log_path);
    for (std::string line; std::getline(file, line);) {
      if (line.starts_with("ACME_BROKER=")) return {pid, line.substr(12)};
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      throw Error(Errc::System, fmt::format("the broker ({}) exited at start:\n{}", exe,
                                            tail_file(log_path, 10)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling a file, bounded above
  }
  ::kill(pid, SIGKILL);
  throw Error(Errc::System, fmt::format("the broker ({}) printed no endpoint within {} ms:\n{}",
                                        exe, timeout.count(), tail_file(log_path, 10)));
}

bool process_is(pid_t pid, const std::string& needle) {
  if (pid <= 0) return false;
  // A child of ours that exited is a zombie until reaped: reap it, it does not run.
  int status = 0;
  if (::waitpid(pid, &status, WNOHANG) == pid) return false;
  std::ifstream file(fmt::format("/proc/{}/cmdline", pid), std::ios::binary);
  if (!file) return false;
  std::string cmdline((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::ifstream stat_file(fmt::format("/proc/{}/stat", pid));
  std::string stat;
  std::getline(stat_file, stat);
  const auto close = stat.rfind(')');
  if (close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z') return false;
  return cmdline.find(needle) != std::string::npos;
}

bool stop_process(pid_t pid, const std::string& needle, std::chrono::milliseconds grace) {
  if (!process_is(pid, needle)) return true;
  ::kill(pid, SIGTERM);
  const auto deadline = Clock::now() + grace;
  while (Clock::now() < deadline) {
    if (!process_is(pid, needle)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  const auto kill_deadline = Clock::now() + std::chrono::seconds(2);
  while (Clock::now() < kill_deadline) {
    if (!process_is(pid, needle)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::string tail_file(const std::string& path, std::size_t lines) {
  std::ifstream file(path);
  if (!file) return {};
  std::vector<std::string> kept;
  for (std::string line; std::getline(file, line);) {
    kept.push_back(std::move(line));
    if (kept.size() > lines) kept.erase(kept.begin());
  }
  std::string text;
  for (const auto& line : kept) text += line + "\n";
  return text;
}

std::string newest_file(const std::string& dir) {
  std::error_code error;
  std::string best;
  fs::file_time_type best_time{};
  for (const auto& entry : fs::directory_iterator(dir, error)) {
    if (!entry.is_regular_file()) continue;
    const auto time = entry.last_write_time(error);
    if (best.empty() || time > best_time) {
      best = entry.path().string();
      best_time = time;
    }
  }
  return best;
}

std::string host_name() {
  std::array<char, 256> name{};
  if (::gethostname(name.data(), name.size() - 1) != 0) return "localhost";
  return name.data();
}

}  // namespace acme::launch
