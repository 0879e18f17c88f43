// Test kit for tests that span processes (STYLE.md, Tests): a child process that is always
// reaped, output that is kept for failure messages, and waits that always have a deadline.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace acme::test {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

/// Polls `predicate` every few milliseconds until it holds or `timeout` passes; returns its last
/// value. The one way a test waits (never a bare sleep).
bool wait_until(const std::function<bool()>& predicate, std::chrono::milliseconds timeout = 10s);

/// The path of a program this build made: acme-broker, acme-worker or acme-map.
[[nodiscard]] std::string program(const std::string& name);

struct ProcessOptions {
  std::map<std::string, std::string> env{};  // added to (or replacing in) the parent's
  std::vector<std::string> unset_env{};      // removed from the child's environment
  std::optional<std::string> stdin_text{};   // written to the child's stdin, then closed
  std::string cwd{};                         // empty: the parent's
};

/// A child process started with fork+exec. Its stdout and stderr are collected by a thread each.
/// The destructor sends SIGTERM, then SIGKILL after a deadline, and reaps it.
class Process {
 public:
  Process(std::vector<std::string> argv, ProcessOptions options = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

  /// The first line the child printed on stdout, waiting at most `timeout`; nullopt if none.
  [[nodiscard]] std::optional<std::string> first_line(std::chrono::milliseconds timeout = 10s);

  /// Waits for the child to exit; its exit code (128 + signal for a signal), nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout = 30s);

  /// Whether it still runs (not yet reaped and not exited).
  [[nodiscard]] bool running();

  void signal(int signo) const;

  /// What it printed so far (complete after wait() returned).
  [[nodiscard]] std::string out() const;
  [[nodiscard]] std::string err() const;

 private:
  struct Impl;
  Impl* impl_;
  pid_t pid_ = -1;
};

/// Runs a program to its end and returns exit code, stdout and stderr; fails the calling test
/// (via the returned code -1) if it does not finish within `timeout`.
struct Run {
  int code = -1;
  std::string out{};
  std::string err{};
};
Run run(std::vector<std::string> argv, ProcessOptions options = {},
        std::chrono::milliseconds timeout = 60s);

/// A broker started as `acme-broker --bind BIND ARGS...`; endpoint() is the address it printed
/// (port 0 resolved). Throws std::runtime_error (with its stderr) if it does not start in time.
class BrokerProcess {
 public:
  explicit BrokerProcess(std::vector<std::string> args = {},
                         const std::string& bind = "tcp://127.0.0.1:0");
  [[nodiscard]] const std::string& endpoint() const noexcept { return endpoint_; }
  Process& process() noexcept { return process_; }

 private:
  Process process_;
  std::string endpoint_;
};

}  // namespace acme::test
