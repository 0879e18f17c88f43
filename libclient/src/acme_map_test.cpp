// acme-map as a subprocess: arguments and stdin, --json, exit codes. Its local workers are
// copies of acme-map serving the builtins.
#include <chrono>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <acme/broker/broker.hpp>

#include "test_support.hpp"
#include <nlohmann/json.hpp>

namespace acme {
namespace {

using namespace std::chrono_literals;
using ::testing::AllOf;
using ::testing::HasSubstr;

test::Finished acme_map(std::vector<std::string> args, const std::string& input = "") {
  args.insert(args.begin(), ACME_MAP_PATH);
  test::Process process(std::move(args), {}, {"ACME_BROKER", "ACME_WORKER_OF"});
  process.write_stdin(input);
  auto finished = process.finish(60s);
  EXPECT_FALSE(finished.timed_out) << "acme-map did not finish; stderr:\n" << finished.err;
  return finished;
}

TEST(AcmeMap, ArgumentsAreJsonOrStringsAndPrintInOrder) {
  const auto run = acme_map({"--local", "2", "echo", "1", "\"a\"", "[1,2]", "hello", "2.5"});
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.out, "1\na\n[1,2]\nhello\n2.5\n");
}

TEST(AcmeMap, ReadsOneArgumentPerLineOfStdin) {
  std::string input;
  std::string expected;
  for (int i = 0; i < 200; ++i) {
    input += std::to_string(i) + "\n";
    expected += std::to_string(i) + "\n";
  }
  const auto run = acme_map({"--local", "2", "echo"}, input);
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_EQ(run.out, expected);
}

TEST(AcmeMap, JsonOutputHasIndexOkAndValue) {
  const auto run = acme_map({"--local", "1", "--json", "echo", "{\"k\":[1,true]}", "x"});
  EXPECT_EQ(run.status, 0) << run.err;
  std::vector<nlohmann::json> lines;
  std::string::size_type start = 0;
  while (start < run.out.size()) {
    const auto end = run.out.find('\n', start);
    lines.push_back(nlohmann::json::parse(run.out.substr(start, end - start)));
    start = end + 1;
  }
  ASSERT_EQ(lines.size(), 2U);
  EXPECT_EQ(lines[0]["index"], 0);
  EXPECT_EQ(lines[0]["ok"], true);
  EXPECT_EQ(lines[0]["value"], nlohmann::json::parse("{\"k\":[1,true]}"));
  EXPECT_EQ(lines[1]["value"], "x");
}

TEST(AcmeMap, FailedTasksExitOneAndAreListed) {
  const auto run = acme_map({"--local", "2", "--json", "fail", "boom", "bang"});
  EXPECT_EQ(run.status, 1);
  EXPECT_THAT(run.err, AllOf(HasSubstr("2 of 2 tasks failed"), HasSubstr("input 0 (boom)"),
                             HasSubstr("input 1 (bang)")));
  EXPECT_THAT(run.out, HasSubstr("\"ok\":false"));
}

TEST(AcmeMap, UsageErrorsExitTwo) {
  EXPECT_EQ(acme_map({}).status, 2);
  EXPECT_EQ(acme_map({"--no-such-option", "echo", "1"}).status, 2);
  EXPECT_EQ(acme_map({"--local", "2", "--broker", "tcp://127.0.0.1:9", "echo", "1"}).status, 2);
}

TEST(AcmeMap, HelpExitsZero) {
  EXPECT_EQ(acme_map({"--help"}).status, 0);
}

TEST(AcmeMap, UnknownFunctionIsARuntimeError) {
  const auto run = acme_map({"--local", "1", "no_such_function", "1"});
  EXPECT_EQ(run.status, 1);
  EXPECT_THAT(run.err, AllOf(HasSubstr("acme-map: error:"),
                             HasSubstr("no worker offers function 'no_such_function'")));
}

TEST(AcmeMap, UnreachableBrokerIsARuntimeError) {
  const auto run = acme_map({"--broker", "tcp://127.0.0.1:9", "echo", "1"});
  EXPECT_EQ(run.status, 1);
  EXPECT_THAT(run.err, AllOf(HasSubstr("acme-map: error:"), HasSubstr("tcp://127.0.0.1:9")));
}

TEST(AcmeMap, CoresPerTaskReachExecsChildAndSizeTheLocalWorkers) {
  // One local worker of 2 slots runs the 2-core tasks, one at a time.
  const auto run = acme_map({"--local", "1", "--cores", "2", "exec",
                             "echo $ACME_TASK_CORES $OMP_NUM_THREADS", "echo $ACME_TASK_CORES"});
  EXPECT_EQ(run.status, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr(R"("stdout":"2 2\n")"));
  EXPECT_THAT(run.out, HasSubstr(R"("stdout":"2\n")"));
  EXPECT_EQ(acme_map({"--cores", "0", "echo", "1"}).status, 2);
}

TEST(AcmeMap, TasksNeedingMoreCoresThanAnyWorkerHasFailClearly) {
  broker::BrokerOptions options;
  options.endpoint = "tcp://127.0.0.1:0";
  options.scheduler.no_worker_timeout = 500ms;
  broker::BrokerThread broker(options);
  const test::Process worker({ACME_MAP_PATH},
                             {{"ACME_WORKER_OF", broker.endpoint()}, {"ACME_WORKER_SLOTS", "1"}});
  const auto run = acme_map({"--broker", broker.endpoint(), "--cores", "2", "echo", "1"});
  EXPECT_EQ(run.status, 1);
  EXPECT_THAT(run.err, AllOf(HasSubstr("acme-map: error:"),
                             HasSubstr("no live worker offers function 'echo' with 2 cores")));
}

}  // namespace
}  // namespace acme
