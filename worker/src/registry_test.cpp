// FunctionRegistry: typed conversion of arguments and results, and its error messages.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_support.hpp"

namespace acme {
namespace {

using protocol::TaskStatus;
using test::args;
using test::run;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(FunctionRegistry, TypedFunctionConvertsArgumentsAndResult) {
  FunctionRegistry registry;
  registry.add("describe", [](int n, double x, const std::string& s, std::vector<int> v,
                              std::map<std::string, int> m) {
    return s + ":" +
           std::to_string(n + static_cast<int>(x * 10) + static_cast<int>(v.size()) + m.at("k"));
  });
  const auto outcome = run(registry, "describe",
                           args(1, 2.5, std::string("s"), std::vector<int>{1, 2, 3},
                                std::map<std::string, int>{{"k", 100}}));
  ASSERT_EQ(outcome.status, TaskStatus::Ok);
  EXPECT_EQ(outcome.value()->as<std::string>(), "s:129");
}

TEST(FunctionRegistry, IntegerConvertsToDouble) {
  FunctionRegistry registry;
  registry.add("half", [](double x) { return x / 2; });
  const auto outcome = run(registry, "half", args(3));
  ASSERT_EQ(outcome.status, TaskStatus::Ok);
  EXPECT_DOUBLE_EQ(outcome.value()->as<double>(), 1.5);
}

TEST(FunctionRegistry, ReturnsContainers) {
  FunctionRegistry registry;
  registry.add("range", [](int n) {
    std::vector<int> v;
    for (int i = 0; i < n; ++i) v.push_back(i);
    return v;
  });
  EXPECT_THAT(run(registry, "range", args(3)).value()->as<std::vector<int>>(),
              ElementsAre(0, 1, 2));
}

TEST(FunctionRegistry, WrongArityFailsWithAClearMessage) {
  FunctionRegistry registry;
  registry.add("add", [](int a, int b) { return a + b; });
  const auto outcome = run(registry, "add", args(1));
  ASSERT_EQ(outcome.status, TaskStatus::Failed);
  EXPECT_EQ(outcome.error().message, "add() takes 2 arguments but the task has 1");
  EXPECT_EQ(outcome.error().kind, "std::invalid_argument");
  EXPECT_EQ(outcome.error().host, "testhost");
  EXPECT_EQ(outcome.error().pid, 42U);
}

TEST(FunctionRegistry, WrongTypeNamesTheArgument) {
  FunctionRegistry registry;
  registry.add("scale", [](const std::vector<double>& v, double factor) {
    return v.size() * static_cast<std::size_t>(factor);
  });
  EXPECT_EQ(
      run(registry, "scale", args(std::vector<double>{1.0}, std::string("x"))).error().message,
      "scale() argument 2: expected float, got str");
  EXPECT_EQ(run(registry, "scale", args(3, 1.0)).error().message,
            "scale() argument 1: expected array, got int");
  EXPECT_EQ(run(registry, "scale", args(std::vector<std::string>{"a"}, 1.0)).error().message,
            "scale() argument 1: an element of the array has the wrong type");
}

TEST(FunctionRegistry, OutOfRangeIntegerIsNamed) {
  FunctionRegistry registry;
  registry.add("byte", [](std::uint8_t b) { return b; });
  EXPECT_EQ(run(registry, "byte", args(-1)).error().message,
            "byte() argument 1: int value out of range");
}

TEST(FunctionRegistry, VoidFunctionReturnsNil) {
  FunctionRegistry registry;
  int calls = 0;
  registry.add("touch", [&calls]() { ++calls; });
  const auto outcome = run(registry, "touch", args());
  ASSERT_EQ(outcome.status, TaskStatus::Ok);
  EXPECT_TRUE(outcome.value()->is_nil());
  EXPECT_EQ(calls, 1);
}

TEST(FunctionRegistry, ExceptionTypeIsTheKind) {
  FunctionRegistry registry;
  registry.add("boom", [](int) -> int { throw std::out_of_range("too far"); });
  const auto outcome = run(registry, "boom", args(1));
  ASSERT_EQ(outcome.status, TaskStatus::Failed);
  EXPECT_EQ(outcome.error().message, "too far");
  EXPECT_EQ(outcome.error().kind, "std::out_of_range");
}

TEST(FunctionRegistry, MalformedTaskFrameFails) {
  FunctionRegistry registry;
  registry.add("id", [](int x) { return x; });
  const auto outcome = run(registry, "id", std::string("\xc1", 1));  // 0xc1: never used
  ASSERT_EQ(outcome.status, TaskStatus::Failed);
  EXPECT_THAT(outcome.error().message, HasSubstr("the task frame of id() is not a msgpack value"));
}

TEST(FunctionRegistry, RawFunctionSeesKwargs) {
  FunctionRegistry registry;
  registry.add_raw("kw", [](const msgpack::object& /*args*/, const msgpack::object& kwargs,
                            msgpack::packer<msgpack::sbuffer>& result,
                            TaskContext& /*ctx*/) { result.pack(kwargs); });
  const auto outcome =
      run(registry, "kw", args(), test::packed(std::map<std::string, int>{{"a", 1}}));
  EXPECT_EQ((outcome.value()->as<std::map<std::string, int>>()),
            (std::map<std::string, int>{{"a", 1}}));
  EXPECT_TRUE(run(registry, "kw", args()).value()->is_nil());
}

TEST(FunctionRegistry, NamesAreSortedAndFindable) {
  FunctionRegistry registry;
  EXPECT_TRUE(registry.empty());
  registry.add("b", [] {});
  registry.add("a", [] {});
  EXPECT_THAT(registry.names(), ElementsAre("a", "b"));
  EXPECT_NE(registry.find("a"), nullptr);
  EXPECT_EQ(registry.find("c"), nullptr);
  EXPECT_THROW(registry.add("", [] {}), std::invalid_argument);
  EXPECT_THROW(registry.add(std::string(256, 'x'), [] {}), std::invalid_argument);
}

TEST(FunctionRegistry, DefineFillsTheProcessRegistry) {
  define("registry_test_square", [](double x) { return x * x; });
  EXPECT_DOUBLE_EQ(run(functions(), "registry_test_square", args(3.0)).value()->as<double>(), 9.0);
}

}  // namespace
}  // namespace acme
