// The acme-broker program: its first stdout line, exit codes and signal handling. Runs the real
// executable (fork + exec through posix_spawn), with every wait bounded.
#include <array>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <optional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_peer.hpp"
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;  // NOLINT: POSIX

namespace acme::broker::test {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

/// The program as a child process with its stdout and stderr piped to us. Killed (SIGKILL) on
/// destruction if still running.
class Program {
 public:
  explicit Program(const std::vector<std::string>& args) {
    std::array<int, 2> out{};
    std::array<int, 2> err{};
    if (::pipe(out.data()) != 0 || ::pipe(err.data()) != 0) throw std::runtime_error("pipe");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    posix_spawn_file_actions_addclose(&actions, err[0]);
    std::vector<std::string> storage{ACME_BROKER_EXE};
    storage.insert(storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& arg : storage) argv.push_back(arg.data());
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, ACME_BROKER_EXE, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    ::close(err[1]);
    out_ = out[0];
    err_ = err[0];
    if (rc != 0) throw std::runtime_error("posix_spawn failed");
  }
  ~Program() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(out_);
    ::close(err_);
  }
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;
  Program(Program&&) = delete;
  Program& operator=(Program&&) = delete;

  /// The first line of stdout, or nullopt at the deadline or end of file.
  std::optional<std::string> first_line(milliseconds timeout = 5s) {
    const auto deadline = Clock::now() + timeout;
    while (stdout_.find('\n') == std::string::npos) {
      if (!pump(deadline)) return std::nullopt;
    }
    return stdout_.substr(0, stdout_.find('\n'));
  }

  /// Waits for the exit (both pipes closed, then waitpid); the exit code, or -1 at the deadline.
  int wait(milliseconds timeout = 5s) {
    const auto deadline = Clock::now() + timeout;
    while (out_open_ || err_open_) {
      if (!pump(deadline) && Clock::now() >= deadline) return -1;
    }
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  void signal(int number) const { ::kill(pid_, number); }
  [[nodiscard]] const std::string& err() const { return stderr_; }

 private:
  /// Reads what is ready on either pipe; false at the deadline or when both are closed.
  bool pump(Clock::time_point deadline) {
    const auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now());
    if (left <= 0ms || (!out_open_ && !err_open_)) return false;
    std::array fds{pollfd{out_open_ ? out_ : -1, POLLIN, 0},
                   pollfd{err_open_ ? err_ : -1, POLLIN, 0}};
    if (::poll(fds.data(), fds.size(), static_cast<int>(left.count())) <= 0) return false;
    std::array<char, 4096> buffer{};
    const auto drain = [&](const pollfd& fd, std::string& into, bool& open) {
      if ((fd.revents & (POLLIN | POLLHUP)) == 0) return;
      const auto n = ::read(fd.fd, buffer.data(), buffer.size());
      if (n <= 0) {
        open = false;
      } else {
        into.append(buffer.data(), static_cast<std::size_t>(n));
      }
    };
    drain(fds[0], stdout_, out_open_);
    drain(fds[1], stderr_, err_open_);
    return true;
  }

  pid_t pid_ = -1;
  int out_ = -1;
  int err_ = -1;
  bool out_open_ = true;
  bool err_open_ = true;
  std::string stdout_;
  std::string stderr_;
};

TEST(AcmeBrokerProgram, UsageErrorExitsTwo) {
  Program program({"--no-such-option"});
  EXPECT_EQ(program.wait(), 2);
  EXPECT_THAT(program.err(), HasSubstr("--no-such-option"));
  Program bad_level({"--log-level", "loud"});
  EXPECT_EQ(bad_level.wait(), 2);
  Program small_window({"--max-window", "10"});  // PROTOCOL.md §6.2.1: at least 1024
  EXPECT_EQ(small_window.wait(), 2);
  EXPECT_THAT(small_window.err(), HasSubstr("--max-window"));
  Program bad_size({"--max-message-mb", "-1"});
  EXPECT_EQ(bad_size.wait(), 2);
  EXPECT_THAT(bad_size.err(), HasSubstr("--max-message-mb"));
}

TEST(AcmeBrokerProgram, AddressInUseExitsOneWithOneLine) {
  zmq::context_t context{1};
  zmq::socket_t holder(context, zmq::socket_type::router);
  holder.bind("tcp://127.0.0.1:0");
  const auto endpoint = holder.get(zmq::sockopt::last_endpoint);
  Program program({"--bind", endpoint});
  EXPECT_EQ(program.wait(), 1);
  EXPECT_EQ(program.err(),
            "acme-broker: error: cannot bind " + endpoint + ": Address already in use\n");
}

TEST(AcmeBrokerProgram, PrintsEndpointAndStopsCleanlyOnSigterm) {
  Program program({"--bind", "tcp://127.0.0.1:0", "--log-level", "warn"});
  const auto line = program.first_line();
  ASSERT_TRUE(line.has_value()) << program.err();
  ASSERT_THAT(*line, StartsWith("ACME_BROKER=tcp://127.0.0.1:"));
  const auto endpoint = line->substr(std::string("ACME_BROKER=").size());
  EXPECT_NE(endpoint, "tcp://127.0.0.1:0");  // the port is resolved

  zmq::context_t context{1};
  TestWorker worker(context, endpoint);
  worker.send(protocol::encode(protocol::Ready{.functions = {"f"}, .slots = 1}));
  worker.expect<protocol::Welcome>();
  program.signal(SIGTERM);
  EXPECT_FALSE(worker.expect<protocol::Bye>().reconnect);
  EXPECT_EQ(program.wait(), 0);
}

}  // namespace
}  // namespace acme::broker::test
