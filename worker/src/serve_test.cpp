// serve_if_worker(): a copy of this test binary, started with ACME_WORKER_OF, serves the
// process-wide registry and exits; without the variable the call returns at once.
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "builtins/builtins.hpp"
#include "test_support.hpp"

namespace acme {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// Run by the parent test below in a child process, where it never returns; in the test run
// itself ACME_WORKER_OF is unset, so it checks that serve_if_worker() returns at once.
TEST(ServeIfWorker, ServesWhenStartedAsAWorker) {
  define("serve_test_triple", [](int x) { return 3 * x; });
  serve_if_worker();
}

TEST(ServeIfWorker, ACopyStartedWithTheVariableServesItsFunctions) {
  test::FakeBroker broker;
  const test::ScopedEnv endpoint(kWorkerEnv, broker.endpoint().c_str());
  const test::ScopedEnv slots("ACME_WORKER_SLOTS", "2");
  std::atomic<bool> kill{false};
  worker::CommandOutcome outcome;
  std::atomic<bool> exited{false};
  std::thread child([&] {
    // posix_spawn of /proc/self/exe: fork+exec of this binary, never fork alone.
    outcome = worker::run_command(
        {"/proc/self/exe", "--gtest_filter=ServeIfWorker.ServesWhenStartedAsAWorker"}, &kill);
    exited = true;
  });
  const auto [id, ready] = broker.admit();
  EXPECT_EQ(ready.slots, 2U);
  EXPECT_THAT(ready.functions, ::testing::Contains("serve_test_triple"));
  EXPECT_THAT(ready.functions, ::testing::Contains("exec"));  // builtins come too
  EXPECT_THAT(ready.agent, HasSubstr("(embedded worker)"));
  if (!id.empty()) {
    broker.send(id, test::tasks(1, "serve_test_triple", 1), {test::args(14)});
    auto results = broker.results(1);
    EXPECT_EQ(test::unpacked(results[{1, 0}].frame)->as<int>(), 42);
    broker.send(id, protocol::encode(protocol::Peer::Broker, protocol::Bye{.reason = "done"}));
  }
  // BYE without reconnect ends the child's worker, which exits the process with 0.
  EXPECT_TRUE(test::wait_until([&] { return exited.load(); }, 10s));
  kill = true;  // if it is still running: SIGTERM, so that join() below returns
  child.join();
  EXPECT_EQ(outcome.signal, 0);
  EXPECT_EQ(outcome.exit_code, 0) << outcome.err;
}

}  // namespace
}  // namespace acme
