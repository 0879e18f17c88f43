// The acme-worker program: options, exit codes, and a clean stop on SIGTERM.
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "builtins/builtins.hpp"
#include "test_support.hpp"
#include <signal.h>

namespace acme {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

worker::CommandOutcome acme_worker(std::vector<std::string> arguments,
                                   const std::atomic<bool>* stop = nullptr) {
  arguments.insert(arguments.begin(), ACME_WORKER_EXE);
  return worker::run_command(arguments, stop);  // posix_spawn: fork+exec, never fork alone
}

TEST(AcmeWorkerProgram, BadOptionExits2) {
  const auto outcome = acme_worker({"--no-such-option"});
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_EQ(acme_worker({"--slots", "0"}).exit_code, 2);
  EXPECT_EQ(acme_worker({"--log-level", "loud"}).exit_code, 2);
  const auto recycle = acme_worker({"--recycle-after-ms", "soon"});
  EXPECT_EQ(recycle.exit_code, 2);
  EXPECT_THAT(recycle.err, HasSubstr("--recycle-after-ms"));
}

TEST(AcmeWorkerProgram, BadPinValueExits2WithAClearMessage) {
  const auto outcome = acme_worker({"--pin", "sometimes"});
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_THAT(outcome.err, HasSubstr("--pin must be auto, yes or no, not 'sometimes'"));
  EXPECT_EQ(acme_worker({"--pin", "no", "--list-functions"}).exit_code, 0);
}

TEST(AcmeWorkerProgram, LaunchIdGoesIntoReady) {
  test::FakeBroker broker;
  std::atomic<bool> stop{false};
  worker::CommandOutcome outcome;
  std::thread program([&] {
    outcome =
        acme_worker({"--connect", broker.endpoint(), "--slots", "1", "--launch-id", "L1"}, &stop);
  });
  const auto ready = broker.expect<protocol::Ready>(10s);
  stop = true;
  program.join();
  ASSERT_TRUE(ready.has_value());
  EXPECT_EQ(ready->first.launch, "L1");
  EXPECT_THAT(outcome.err, HasSubstr(", launch L1"));
}

TEST(AcmeWorkerProgram, LaunchIdLongerThanTheProtocolAllowsExits2) {
  const auto outcome = acme_worker({"--launch-id", std::string(protocol::kMaxText + 1, 'L')});
  EXPECT_EQ(outcome.exit_code, 2);
  EXPECT_THAT(outcome.err, HasSubstr("--launch-id"));
}

TEST(AcmeWorkerProgram, ListFunctionsPrintsTheBuiltins) {
  const auto outcome = acme_worker({"--list-functions"});
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_EQ(outcome.out, "crash\necho\nexec\nfail\nsleep\n");
}

TEST(AcmeWorkerProgram, VersionPrintsTheVersion) {
  const auto outcome = acme_worker({"--version"});
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_THAT(outcome.out, HasSubstr("acme-worker 0."));
}

TEST(AcmeWorkerProgram, PluginThatFailsToLoadExits1) {
  const auto outcome = acme_worker({"--plugin", "/nonexistent/libp.so", "--list-functions"});
  EXPECT_EQ(outcome.exit_code, 1);
  EXPECT_THAT(outcome.err,
              HasSubstr("acme-worker: error: cannot load plugin /nonexistent/libp.so: "));
}

#ifdef ACME_EXAMPLE_PLUGIN
TEST(AcmeWorkerProgram, PluginFunctionsAreListed) {
  const auto outcome = acme_worker({"--plugin", ACME_EXAMPLE_PLUGIN, "--list-functions"});
  EXPECT_EQ(outcome.exit_code, 0);
  EXPECT_THAT(outcome.out, HasSubstr("bandpower\n"));
  EXPECT_THAT(outcome.out, HasSubstr("mean\n"));
}
#endif

TEST(AcmeWorkerProgram, SigtermSendsByeAndExits0) {
  test::FakeBroker broker;
  std::atomic<bool> stop{false};
  worker::CommandOutcome outcome;
  std::thread program([&] {
    outcome = acme_worker({"--connect", broker.endpoint(), "--slots", "2", "--pin", "no"}, &stop);
  });
  const auto ready = broker.expect<protocol::Ready>(10s);
  EXPECT_TRUE(ready.has_value());
  if (ready) {
    EXPECT_EQ(ready->first.slots, 2U);
    EXPECT_THAT(ready->first.agent, HasSubstr("acme-worker"));
  }
  stop = true;  // run_command sends SIGTERM to the program's process group
  const auto bye = broker.expect<protocol::Bye>(10s);
  program.join();
  EXPECT_TRUE(bye.has_value());
  EXPECT_EQ(outcome.signal, 0);
  EXPECT_EQ(outcome.exit_code, 0) << outcome.err;
  EXPECT_THAT(outcome.err, HasSubstr("offers 5 functions with 2 slots (--slots) to"));
  EXPECT_THAT(outcome.err, HasSubstr("not pinning: --pin no"));
}

}  // namespace
}  // namespace acme
