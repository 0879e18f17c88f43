// ParallelMap's argument model (ACME's rules): which arguments are iterated, which go whole to
// every call, how n_inputs is inferred, and the errors. No broker, no process.
#include <array>
#include <cstdint>
#include <list>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <acme/parallel_map.hpp>

namespace acme {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

msgpack::object_handle task(const ParallelMap& pmap, std::uint64_t index) {
  msgpack::sbuffer frame;
  pmap.pack_task(index, frame);
  return msgpack::unpack(frame.data(), frame.size());
}

template <class T>
T task_as(const ParallelMap& pmap, std::uint64_t index) {
  return task(pmap, index).get().as<T>();
}

Errc code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.code();
  }
  ADD_FAILURE() << "no acme::Error thrown";
  return Errc::System;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no acme::Error thrown)";
}

TEST(ParallelMapArguments, SequenceIsIteratedAndScalarBroadcast) {
  const std::vector<int> xs{2, 4, 6, 8};
  const ParallelMap pmap("f", xs, 4);  // ACME: ParallelMap(f, [2, 4, 6, 8], 4)
  EXPECT_EQ(pmap.n_inputs(), 4U);
  EXPECT_TRUE(pmap.iterated(0));
  EXPECT_FALSE(pmap.iterated(1));
  using Call = std::tuple<int, int>;
  EXPECT_EQ(task_as<Call>(pmap, 0), Call(2, 4));
  EXPECT_EQ(task_as<Call>(pmap, 3), Call(8, 4));
  EXPECT_FALSE(pmap.common_frame().has_value());
}

TEST(ParallelMapArguments, SeveralSequencesOfTheSameLengthGoTogether) {
  const std::array<double, 3> xs{1.0, 2.0, 3.0};
  const std::vector<std::string> names{"a", "b", "c"};
  const ParallelMap pmap("f", xs, names, 3.5);
  EXPECT_EQ(pmap.n_inputs(), 3U);
  using Call = std::tuple<double, std::string, double>;
  EXPECT_EQ(task_as<Call>(pmap, 1), Call(2.0, "b", 3.5));
}

TEST(ParallelMapArguments, SpansListsAndTemporariesAreSequences) {
  const std::vector<int> storage{1, 2, 3};
  const std::list<int> list{10, 20, 30};
  const ParallelMap pmap("f", std::span<const int>(storage), list, std::vector<int>{7, 8, 9});
  EXPECT_EQ(pmap.n_inputs(), 3U);
  using Call = std::tuple<int, int, int>;
  EXPECT_EQ(task_as<Call>(pmap, 2), Call(3, 30, 9));
}

TEST(ParallelMapArguments, StringsAndMapsAreScalars) {
  const std::map<std::string, int> table{{"a", 1}};
  const ParallelMap pmap("f", std::vector<int>{1, 2}, std::string("text"), "literal", table);
  EXPECT_EQ(pmap.n_inputs(), 2U);
  using Call = std::tuple<int, std::string, std::string, std::map<std::string, int>>;
  EXPECT_EQ(task_as<Call>(pmap, 1), Call(2, "text", "literal", table));
}

TEST(ParallelMapArguments, BroadcastPassesASequenceWhole) {
  const std::vector<int> xs{1, 2, 3};
  const std::vector<int> weights{5, 6, 7};
  const ParallelMap pmap("f", xs, broadcast(weights));
  EXPECT_EQ(pmap.n_inputs(), 3U);
  using Call = std::tuple<int, std::vector<int>>;
  EXPECT_EQ(task_as<Call>(pmap, 0), Call(1, weights));
  EXPECT_EQ(task_as<Call>(pmap, 2), Call(3, weights));
}

TEST(ParallelMapArguments, VectorOfBoolIsIterated) {
  const ParallelMap pmap("f", std::vector<bool>{true, false});
  EXPECT_EQ(task_as<std::tuple<bool>>(pmap, 1), std::tuple<bool>(false));
}

TEST(ParallelMapArguments, KwArgumentsGoToTheCommonFrame) {
  const ParallelMap pmap("f", std::vector<int>{1, 2}, kw("z", 3), kw("mode", std::string("fast")));
  ASSERT_TRUE(pmap.common_frame().has_value());
  const auto common = msgpack::unpack(pmap.common_frame()->data(), pmap.common_frame()->size());
  const auto named = common.get().as<std::map<std::string, msgpack::object>>();
  EXPECT_EQ(named.at("z").as<int>(), 3);
  EXPECT_EQ(named.at("mode").as<std::string>(), "fast");
  EXPECT_EQ(task_as<std::tuple<int>>(pmap, 1), std::tuple<int>(2));  // kw are not positional
}

TEST(ParallelMapArguments, DuplicateKwIsRejected) {
  EXPECT_EQ(code_of([] { ParallelMap("f", std::vector<int>{1}, kw("z", 1), kw("z", 2)); }),
            Errc::BadOptions);
}

TEST(ParallelMapArguments, MismatchedLengthsNameThePositionsAndLengths) {
  const std::vector<int> four{1, 2, 3, 4};
  const std::vector<int> three{1, 2, 3};
  const auto message = message_of([&] { ParallelMap("f", four, 1, three); });
  EXPECT_THAT(message, AllOf(HasSubstr("ParallelMap(\"f\")"), HasSubstr("n_inputs"),
                             HasSubstr("argument 1 has 4 elements"),
                             HasSubstr("argument 3 has 3 elements")));
  EXPECT_EQ(code_of([&] { ParallelMap("f", four, three); }), Errc::BadOptions);
}

TEST(ParallelMapArguments, ExplicitNInputsPassesOtherLengthsWhole) {
  // ACME: ParallelMap(f, [2, 4, 6, 8], [2, 2], n_inputs=4): [2, 2] goes to every call.
  const std::vector<int> xs{2, 4, 6, 8};
  const std::vector<int> pair{2, 2};
  const ParallelMap pmap("f", xs, pair, MapOptions{.n_inputs = 4});
  EXPECT_EQ(pmap.n_inputs(), 4U);
  EXPECT_TRUE(pmap.iterated(0));
  EXPECT_FALSE(pmap.iterated(1));
  using Call = std::tuple<int, std::vector<int>>;
  EXPECT_EQ(task_as<Call>(pmap, 3), Call(8, pair));
}

TEST(ParallelMapArguments, ExplicitNInputsNeedsASequenceOfThatLength) {
  const std::vector<int> xs{1, 2, 3};
  const auto message = message_of([&] { ParallelMap("f", xs, MapOptions{.n_inputs = 5}); });
  EXPECT_THAT(message, AllOf(HasSubstr("n_inputs is 5"), HasSubstr("argument 1 has 3 elements")));
  EXPECT_EQ(code_of([&] { ParallelMap("f", 7, MapOptions{.n_inputs = 2}); }), Errc::BadOptions);
  EXPECT_EQ(code_of([&] { ParallelMap("f", xs, MapOptions{.n_inputs = 0}); }), Errc::BadOptions);
}

TEST(ParallelMapArguments, NoSequenceCannotBeInferred) {
  const auto message = message_of([] { ParallelMap("f", 1, 2.0); });
  EXPECT_THAT(message, AllOf(HasSubstr("cannot infer n_inputs"), HasSubstr("no argument")));
}

TEST(ParallelMapArguments, EmptySequenceMeansNoCalls) {
  ParallelMap pmap("f", std::vector<int>{});
  EXPECT_EQ(pmap.n_inputs(), 0U);
}

TEST(ParallelMapArguments, LvalueSequencesAreReferencedNotCopied) {
  std::vector<int> xs{1, 2, 3};
  const ParallelMap pmap("f", xs);
  xs[1] = 42;  // packed lazily, at submission: the map sees the change
  EXPECT_EQ(task_as<std::tuple<int>>(pmap, 1), std::tuple<int>(42));
}

}  // namespace
}  // namespace acme
