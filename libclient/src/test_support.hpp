// Test-only helpers for libclient's tests: bounded waits, a child process with captured output
// that is killed on destruction, and the list of this process's children. Not installed.
#pragma once

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

namespace acme::test {

using namespace std::chrono_literals;

/// Polls `predicate` until it holds or `timeout` passes; returns its last value.
inline bool wait_until(const std::function<bool()>& predicate, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!predicate()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

/// Pids of the live (not zombie) children of this process.
inline std::vector<pid_t> children() {
  std::vector<pid_t> result;
  const auto self = ::getpid();
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const auto name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const auto close = line.rfind(')');
    if (close == std::string::npos || close + 4 >= line.size()) continue;
    const char state = line[close + 2];
    const auto ppid = std::strtol(line.c_str() + close + 4, nullptr, 10);
    if (ppid == self && state != 'Z') result.push_back(static_cast<pid_t>(std::stoi(name)));
  }
  return result;
}

/// The outcome of run().
struct Finished {
  int status = -1;  // exit status, or 128 + signal
  std::string out{};
  std::string err{};
  bool timed_out = false;
};

/// A child process (fork+exec) with stdin fed and stdout/stderr captured. Killed (SIGTERM, then
/// SIGKILL) and reaped on destruction if still running.
class Process {
 public:
  Process(std::vector<std::string> argv, std::map<std::string, std::string> env = {},
          std::vector<std::string> unset = {}) {
    int in[2];
    int out[2];
    int err[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 ||
        ::pipe2(err, O_CLOEXEC) != 0) {
      throw std::runtime_error("pipe failed");
    }
    std::vector<std::string> environment;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry(*e);
      const auto name = entry.substr(0, entry.find('='));
      if (env.contains(name) || std::find(unset.begin(), unset.end(), name) != unset.end()) {
        continue;
      }
      environment.push_back(entry);
    }
    for (const auto& [name, value] : env) environment.push_back(name + "=" + value);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    std::vector<char*> envp;
    for (auto& e : environment) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      ::execve(args[0], args.data(), envp.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    ::close(err[1]);
    stdin_ = in[1];
    stdout_ = out[0];
    stderr_ = err[0];
  }
  ~Process() {
    if (stdin_ >= 0) ::close(stdin_);
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGTERM);
      if (!wait_for(2s)) {
        ::kill(pid_, SIGKILL);
        int status = 0;
        ::waitpid(pid_, &status, 0);
      }
    }
    ::close(stdout_);
    ::close(stderr_);
  }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

  void write_stdin(const std::string& text) {
    std::size_t done = 0;
    while (done < text.size()) {
      const auto n = ::write(stdin_, text.data() + done, text.size() - done);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
  }
  void close_stdin() {
    if (stdin_ >= 0) ::close(stdin_);
    stdin_ = -1;
  }

  /// Reads stdout until a line starting with `prefix` arrives; returns the rest of that line.
  std::optional<std::string> read_line_starting(const std::string& prefix,
                                                std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      std::string::size_type start = 0;
      while (true) {
        const auto end = out_.find('\n', start);
        if (end == std::string::npos) break;
        const auto line = out_.substr(start, end - start);
        if (line.starts_with(prefix)) return line.substr(prefix.size());
        start = end + 1;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !pump(left)) return std::nullopt;
    }
  }

  /// Waits for the exit (killing the child after `timeout`) and collects its output.
  Finished finish(std::chrono::milliseconds timeout) {
    close_stdin();
    Finished result;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        result.timed_out = true;
        ::kill(pid_, SIGKILL);
        break;
      }
      if (!pump(left)) break;  // both pipes closed: the child is (about to be) gone
    }
    int status = 0;
    ::waitpid(pid_, &status, 0);
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    result.status = *status_;
    result.out = out_;
    result.err = err_;
    return result;
  }

  /// Sends `signal` and reaps the child within `timeout`.
  bool kill_and_wait(int signal, std::chrono::milliseconds timeout) {
    ::kill(pid_, signal);
    return wait_for(timeout);
  }

 private:
  bool wait_for(std::chrono::milliseconds timeout) {
    return wait_until(
        [this] {
          int status = 0;
          if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            status_ = status;
            return true;
          }
          return false;
        },
        timeout);
  }

  // Reads what is available; false once both pipes are at end of file.
  bool pump(std::chrono::milliseconds timeout) {
    pollfd fds[2] = {{stdout_, POLLIN, 0}, {stderr_, POLLIN, 0}};
    const int ready = ::poll(fds, 2, static_cast<int>(std::min<long long>(timeout.count(), 100)));
    if (ready < 0) return false;
    bool open = false;
    for (int i = 0; i < 2; ++i) {
      auto& buffer = i == 0 ? out_ : err_;
      auto& fd = i == 0 ? stdout_eof_ : stderr_eof_;
      if (fd) continue;
      if ((fds[i].revents & (POLLIN | POLLHUP)) != 0) {
        char chunk[4096];
        const auto n = ::read(fds[i].fd, chunk, sizeof chunk);
        if (n <= 0) {
          fd = true;
          continue;
        }
        buffer.append(chunk, static_cast<std::size_t>(n));
      }
      open = true;
    }
    return open;
  }

  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
  int stderr_ = -1;
  bool stdout_eof_ = false;
  bool stderr_eof_ = false;
  std::string out_{};
  std::string err_{};
  std::optional<int> status_{};
};

}  // namespace acme::test
