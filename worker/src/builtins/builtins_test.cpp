// The small builtins: echo, sleep, fail, crash.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "../test_support.hpp"

namespace acme {
namespace {

using protocol::TaskStatus;
using test::args;
using test::run;

FunctionRegistry builtins() {
  FunctionRegistry registry;
  add_builtins(registry);
  return registry;
}

TEST(Builtins, AddsTheFiveAndKeepsExistingNames) {
  FunctionRegistry registry;
  registry.add("echo", [] { return 7; });
  add_builtins(registry);
  EXPECT_THAT(registry.names(), ::testing::ElementsAre("crash", "echo", "exec", "fail", "sleep"));
  EXPECT_EQ(run(registry, "echo", args()).value()->as<int>(), 7);
}

TEST(BuiltinEcho, ReturnsItsOneArgument) {
  const auto registry = builtins();
  EXPECT_EQ(run(registry, "echo", args(std::string("hi"))).value()->as<std::string>(), "hi");
  EXPECT_EQ(run(registry, "echo", args(std::vector<int>{1, 2})).value()->as<std::vector<int>>(),
            (std::vector<int>{1, 2}));
}

TEST(BuiltinEcho, ReturnsSeveralArgumentsAsTheArray) {
  const auto registry = builtins();
  const auto value = run(registry, "echo", args(1, 2, 3)).value();
  EXPECT_EQ(value->as<std::vector<int>>(), (std::vector<int>{1, 2, 3}));
}

TEST(BuiltinSleep, SleepsAndReturnsTheSeconds) {
  const auto registry = builtins();
  const auto start = test::Clock::now();
  const auto outcome = run(registry, "sleep", args(0.05));
  EXPECT_GE(test::Clock::now() - start, std::chrono::milliseconds(50));
  ASSERT_EQ(outcome.status, TaskStatus::Ok);
  EXPECT_DOUBLE_EQ(outcome.value()->as<double>(), 0.05);
  EXPECT_EQ(run(registry, "sleep", args(0)).value()->as<double>(), 0.0);  // ints are seconds too
}

TEST(BuiltinSleep, WakesEarlyWhenCancelled) {
  const auto registry = builtins();
  const std::atomic<bool> cancelled{true};
  const auto start = test::Clock::now();
  run(registry, "sleep", args(30.0), {}, &cancelled);
  EXPECT_LT(test::Clock::now() - start, std::chrono::seconds(2));
}

TEST(BuiltinSleep, RejectsBadSeconds) {
  const auto registry = builtins();
  EXPECT_EQ(run(registry, "sleep", args(-1.0)).status, TaskStatus::Failed);
  EXPECT_EQ(run(registry, "sleep", args(std::string("x"))).error().message,
            "sleep() argument 1: expected float, got str");
  EXPECT_EQ(run(registry, "sleep", args()).error().message,
            "sleep() takes 1 argument but the task has 0");
}

TEST(BuiltinFail, FailsWithItsArgumentAsTheMessage) {
  const auto registry = builtins();
  const auto outcome = run(registry, "fail", args(std::string("bad input")));
  ASSERT_EQ(outcome.status, TaskStatus::Failed);
  EXPECT_EQ(outcome.error().message, "bad input");
  EXPECT_EQ(outcome.error().kind, "std::runtime_error");
  EXPECT_EQ(run(registry, "fail", args(12)).error().message, "12");
}

TEST(BuiltinCrashDeathTest, AbortsTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // re-executes the test binary: fork+exec
  const auto registry = builtins();
  EXPECT_DEATH(run(registry, "crash", args()), "");
}

}  // namespace
}  // namespace acme
