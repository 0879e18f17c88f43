// The exec builtin: output, exit codes, signals, the argv form, and kill on cancel.
#include <fstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "../test_support.hpp"
#include "builtins.hpp"
#include <signal.h>

namespace acme {
namespace {

using protocol::TaskStatus;
using test::args;
using test::run;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

FunctionRegistry builtins() {
  FunctionRegistry registry;
  add_builtins(registry);
  return registry;
}

std::map<std::string, msgpack::object> as_map(const msgpack::object_handle& handle) {
  return handle->as<std::map<std::string, msgpack::object>>();
}

TEST(BuiltinExec, ReturnsExitCodeStdoutAndStderr) {
  const auto registry = builtins();
  const auto outcome = run(registry, "exec", args(std::string("echo out; echo err >&2")));
  ASSERT_EQ(outcome.status, TaskStatus::Ok) << outcome.frame;
  const auto value = outcome.value();
  const auto map = as_map(value);
  EXPECT_EQ(map.at("exit_code").as<int>(), 0);
  EXPECT_EQ(map.at("stdout").as<std::string>(), "out\n");
  EXPECT_EQ(map.at("stderr").as<std::string>(), "err\n");
}

TEST(BuiltinExec, ArgvFormPassesWordsUnchanged) {
  const auto registry = builtins();
  const auto outcome =
      run(registry, "exec", args(std::vector<std::string>{"printf", "%s|", "a b", "$HOME"}));
  ASSERT_EQ(outcome.status, TaskStatus::Ok);
  const auto value = outcome.value();
  EXPECT_EQ(as_map(value).at("stdout").as<std::string>(), "a b|$HOME|");
}

TEST(BuiltinExec, NonZeroExitFailsWithCodeAndStderrTail) {
  const auto registry = builtins();
  const auto outcome = run(registry, "exec", args(std::string("echo oops >&2; exit 3")));
  ASSERT_EQ(outcome.status, TaskStatus::Failed);
  EXPECT_EQ(outcome.error().message,
            "exec: `echo oops >&2; exit 3` exited with code 3; stderr: oops");
}

TEST(BuiltinExec, DeathBySignalIsAFailure) {
  const auto registry = builtins();
  const auto outcome = run(registry, "exec", args(std::string("kill -9 $$")));
  ASSERT_EQ(outcome.status, TaskStatus::Failed);
  EXPECT_THAT(outcome.error().message, HasSubstr("was killed by signal 9"));
}

TEST(BuiltinExec, MissingProgramFails) {
  const auto registry = builtins();
  const auto outcome =
      run(registry, "exec", args(std::vector<std::string>{"/nonexistent/acme-no-such-program"}));
  ASSERT_EQ(outcome.status, TaskStatus::Failed);
  EXPECT_THAT(outcome.error().message, HasSubstr("cannot run"));
}

TEST(BuiltinExec, RejectsBadArguments) {
  const auto registry = builtins();
  EXPECT_EQ(run(registry, "exec", args(3)).error().message,
            "exec() argument 1: expected str or array, got int");
  EXPECT_EQ(run(registry, "exec", args(std::vector<int>{1})).error().message,
            "exec() argument 1: every element of argv must be a str");
}

TEST(BuiltinExec, ReadsLargeOutputOnBothPipesWithoutDeadlock) {
  const auto registry = builtins();
  // 1 MiB on each pipe, far beyond a pipe's buffer: reading one pipe only would hang.
  const auto outcome = run(registry, "exec",
                           args(std::string("head -c 1048576 /dev/zero; head -c 1048576 "
                                            "/dev/zero >&2; head -c 10 /dev/zero")));
  ASSERT_EQ(outcome.status, TaskStatus::Ok);
  const auto value = outcome.value();
  const auto map = as_map(value);
  EXPECT_EQ(map.at("stdout").via.str.size, 1048576U + 10U);
  EXPECT_EQ(map.at("stderr").via.str.size, 1048576U);
}

bool process_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string skip;
  std::string state;
  stat >> skip >> skip >> state;  // pid (comm) state; comm has no spaces here
  return state == "Z";            // a zombie nobody reaps has ended too
}

TEST(BuiltinExec, CancelKillsTheProcessGroup) {
  const auto pid_file = ::testing::TempDir() + "acme_exec_cancel_pid";
  std::remove(pid_file.c_str());
  std::atomic<bool> cancelled{false};
  worker::CommandOutcome outcome;
  std::thread runner([&] {
    // The shell starts a grandchild in its group; the cancel must reach both.
    outcome = worker::run_command({"/bin/sh", "-c", "sleep 30 & echo $! > " + pid_file + "; wait"},
                                  &cancelled);
  });
  pid_t grandchild = 0;
  ASSERT_TRUE(test::wait_until(
      [&] {
        std::ifstream file(pid_file);
        return static_cast<bool>(file >> grandchild);
      },
      5s));
  const auto start = test::Clock::now();
  cancelled = true;
  runner.join();
  EXPECT_LT(test::Clock::now() - start, 5s);
  EXPECT_TRUE(outcome.cancelled);
  EXPECT_EQ(outcome.signal, SIGTERM);
  EXPECT_TRUE(test::wait_until([&] { return process_gone(grandchild); }, 5s));
  std::remove(pid_file.c_str());
}

}  // namespace
}  // namespace acme
