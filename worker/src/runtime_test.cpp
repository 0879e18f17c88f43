// The Worker against a ROUTER socket that plays the broker (PROTOCOL.md §6.3-§6.4, §8, §9).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_support.hpp"
#include <unistd.h>

namespace acme {
namespace {

using namespace std::chrono_literals;
using protocol::TaskStatus;
using test::args;
using test::FakeBroker;
using test::RunningWorker;
using test::tasks;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

WorkerOptions options_for(const FakeBroker& broker, std::uint32_t slots = 2) {
  WorkerOptions options;
  options.endpoint = broker.endpoint();
  options.slots = slots;
  options.prefetch = 1;
  options.agent = "runtime-test";
  return options;
}

FunctionRegistry builtins() {
  FunctionRegistry registry;
  add_builtins(registry);
  return registry;
}

TEST(WorkerReady, SaysWhatItOffers) {
  FakeBroker broker;
  auto registry = builtins();
  RunningWorker worker(options_for(broker, 3), registry);
  const auto ready = broker.expect<protocol::Ready>();
  ASSERT_TRUE(ready);
  EXPECT_THAT(ready->first.functions, ElementsAre("crash", "echo", "exec", "fail", "sleep"));
  EXPECT_EQ(ready->first.slots, 3U);
  EXPECT_EQ(ready->first.prefetch, 1U);
  EXPECT_EQ(ready->first.pid, static_cast<std::uint32_t>(::getpid()));
  EXPECT_FALSE(ready->first.host.empty());
  EXPECT_GT(ready->first.cores, 0U);
  EXPECT_GT(ready->first.memory, 0U);
  EXPECT_EQ(ready->first.agent, "runtime-test");
}

TEST(WorkerTasks, ResultsCarryStatusesAndPayloads) {
  FakeBroker broker;
  auto registry = builtins();
  RunningWorker worker(options_for(broker), registry);
  const auto [id, ready] = broker.admit();
  broker.send(id, tasks(7, "echo", 2), {args(std::string("a")), args(5)});
  broker.send(id, tasks(8, "fail", 1), {args(std::string("broken"))});
  broker.send(id, tasks(9, "no_such_function", 2), {args(), args()});
  auto results = broker.results(5);
  ASSERT_EQ(results.size(), 5U);
  EXPECT_EQ((results[{7, 0}].status), TaskStatus::Ok);
  EXPECT_EQ(test::unpacked(results[{7, 0}].frame)->as<std::string>(), "a");
  EXPECT_EQ(test::unpacked(results[{7, 1}].frame)->as<int>(), 5);
  EXPECT_EQ((results[{8, 0}].status), TaskStatus::Failed);
  const auto error = protocol::decode_error_info(protocol::as_frame(results[{8, 0}].frame));
  ASSERT_TRUE(error);
  EXPECT_EQ(error->message, "broken");
  EXPECT_EQ(error->kind, "std::runtime_error");
  EXPECT_EQ(error->pid, static_cast<std::uint32_t>(::getpid()));
  EXPECT_EQ((results[{9, 0}].status), TaskStatus::Unsupported);
  EXPECT_EQ((results[{9, 1}].status), TaskStatus::Unsupported);
}

TEST(WorkerTasks, ResultsThatAreReadyTogetherShareOneMessage) {
  FakeBroker broker;
  auto registry = builtins();
  RunningWorker worker(options_for(broker), registry);
  const auto [id, ready] = broker.admit();
  // Unsupported tasks are all ready at once, while the TASKS message is handled.
  broker.send(id, tasks(1, "no_such_function", 50), std::vector<std::string>(50, args()));
  EXPECT_EQ(broker.results(50).size(), 50U);
  EXPECT_EQ(broker.results_messages(), 1);
}

TEST(WorkerTasks, NeverRunsMoreThanSlotsCoresAtOnce) {
  FakeBroker broker;
  FunctionRegistry registry;
  std::atomic<int> now_running{0};
  std::atomic<int> most{0};
  std::atomic<int> target{4};
  registry.add("probe", [&](int /*i*/) {
    const int n = ++now_running;
    int seen = most.load();
    while (n > seen && !most.compare_exchange_weak(seen, n)) {
    }
    // Holds its slot until `target` tasks run together (or 1 s passes), so the peak is
    // reached however slowly the threads are scheduled; a worker that overran its slots
    // would push the peak above it.
    test::wait_until([&] { return most.load() >= target.load(); }, 1000ms);
    --now_running;
    return n;
  });
  RunningWorker worker(options_for(broker, 4), registry);
  const auto [id, ready] = broker.admit();
  std::vector<std::string> frames;
  for (int i = 0; i < 16; ++i) frames.push_back(args(i));
  broker.send(id, tasks(1, "probe", 16), frames);
  EXPECT_EQ(broker.results(16).size(), 16U);
  EXPECT_EQ(most.load(), 4);

  // Two cores per task: at most two at once on four slots.
  most = 0;
  target = 2;
  broker.send(id, tasks(2, "probe", 8, 0, false, 0, 2),
              std::vector<std::string>(frames.begin(), frames.begin() + 8));
  EXPECT_EQ(broker.results(8).size(), 8U);
  EXPECT_EQ(most.load(), 2);
}

TEST(WorkerTasks, TaskNeedingMoreCoresThanSlotsFails) {
  FakeBroker broker;
  auto registry = builtins();
  RunningWorker worker(options_for(broker, 2), registry);
  const auto [id, ready] = broker.admit();
  broker.send(id, tasks(1, "echo", 1, 0, false, 0, 3), {args(1)});
  auto results = broker.results(1);
  EXPECT_EQ((results[{1, 0}].status), TaskStatus::Failed);
}

TEST(WorkerHeartbeat, KeepsComingWhileALongTaskRuns) {
  FakeBroker broker;
  auto registry = builtins();
  RunningWorker worker(options_for(broker, 1), registry);
  const auto [id, ready] = broker.admit(/*heartbeat_ms=*/50, /*liveness=*/100);
  const int before = broker.heartbeats();
  broker.send(id, tasks(1, "sleep", 1), {args(0.6)});
  auto results = broker.results(1);
  EXPECT_EQ((results[{1, 0}].status), TaskStatus::Ok);
  EXPECT_GE(broker.heartbeats() - before, 6);  // ~11 intervals of 50 ms
}

TEST(WorkerCancel, StopsARunningSleepAndSendsNoResult) {
  FakeBroker broker;
  auto registry = builtins();
  RunningWorker worker(options_for(broker, 1), registry);
  const auto [id, ready] = broker.admit();
  broker.send(id, tasks(1, "sleep", 1), {args(60.0)});
  broker.send(id, tasks(2, "echo", 1), {args(std::string("after"))});  // waits for the slot
  broker.send(id, protocol::encode(protocol::CancelTasks{.job = 1, .tasks = {0}}));
  const auto start = test::Clock::now();
  auto results = broker.results(1, 5s);
  EXPECT_LT(test::Clock::now() - start, 5s);
  ASSERT_EQ(results.count({2, 0}), 1U);  // the only result: none for the cancelled sleep
  EXPECT_EQ(test::unpacked(results[{2, 0}].frame)->as<std::string>(), "after");
}

TEST(WorkerCancel, DropsQueuedTasksOfTheJob) {
  FakeBroker broker;
  auto registry = builtins();
  RunningWorker worker(options_for(broker, 1), registry);
  const auto [id, ready] = broker.admit();
  broker.send(id, tasks(1, "sleep", 3), {args(60.0), args(0), args(0)});
  broker.send(id, protocol::encode(protocol::CancelTasks{.job = 1, .tasks = {}}));
  broker.send(id, tasks(2, "echo", 1), {args(1)});
  auto results = broker.results(1, 5s);
  EXPECT_EQ(results.count({2, 0}), 1U);
  EXPECT_FALSE(broker.expect<protocol::TaskResults>(300ms));  // nothing for job 1, ever
}

TEST(WorkerTimeout, SendsTimedOutAndFreesTheSlot) {
  FakeBroker broker;
  auto registry = builtins();
  RunningWorker worker(options_for(broker, 1), registry);
  const auto [id, ready] = broker.admit();
  broker.send(id, tasks(1, "sleep", 1, 0, false, /*timeout_ms=*/100), {args(60.0)});
  auto results = broker.results(1, 5s);
  ASSERT_EQ((results[{1, 0}].status), TaskStatus::TimedOut);
  const auto error = protocol::decode_error_info(protocol::as_frame(results[{1, 0}].frame));
  ASSERT_TRUE(error);
  EXPECT_EQ(error->kind, "TimedOut");
  EXPECT_THAT(error->message, HasSubstr("timeout of 100 ms"));
  broker.send(id, tasks(2, "echo", 1), {args(1)});
  EXPECT_EQ(broker.results(1, 5s).count({2, 0}), 1U);
}

TEST(WorkerStuck, ATaskThatIgnoresItsTimeoutRecyclesTheWorkerOnceTheOthersEnd) {
  FakeBroker broker;
  FunctionRegistry registry;
  std::atomic<bool> release{false};
  registry.add("stuck", [&](int /*i*/) {  // ignores cancellation until the test ends
    test::wait_until([&] { return release.load(); }, 30s);
    return 0;
  });
  registry.add("nap", [](int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
  });
  auto options = options_for(broker, 2);
  options.recycle_after = 200ms;
  RunningWorker worker(options, registry);
  // Destroyed before the worker: lets the stuck thread end so that the test can.
  const std::unique_ptr<std::atomic<bool>, void (*)(std::atomic<bool>*)> releaser(
      &release, [](std::atomic<bool>* flag) { flag->store(true); });
  const auto [id, ready] = broker.admit();
  const auto start = test::Clock::now();
  broker.send(id, tasks(1, "stuck", 1, 0, false, /*timeout_ms=*/100), {args(0)});
  broker.send(id, tasks(2, "nap", 1), {args(700)});
  broker.send(id, tasks(3, "nap", 1), {args(1)});  // queued: both slots are taken
  auto results = broker.results(2, 5s);
  EXPECT_EQ((results[{1, 0}].status), TaskStatus::TimedOut);
  EXPECT_EQ((results[{2, 0}].status), TaskStatus::Ok);  // the running task ends first
  const auto bye = broker.expect<protocol::Bye>(5s);    // and nothing else starts: no job 3
  ASSERT_TRUE(bye);
  EXPECT_THAT(bye->first.reason, HasSubstr("recycling: task 0 of job 1 is stuck in stuck()"));
  EXPECT_GE(test::Clock::now() - start, 700ms);
  EXPECT_EQ(worker.exit_status(5s), Worker::kRecycle);
}

TEST(WorkerStuck, ACancelledTaskThatEndsWithinTheGraceIsNotStuck) {
  FakeBroker broker;
  auto registry = builtins();
  std::atomic<bool> started{false};
  registry.add_raw("polite", [&](const msgpack::object& /*args*/, const msgpack::object& /*kw*/,
                                 msgpack::packer<msgpack::sbuffer>& result, TaskContext& context) {
    started = true;
    test::wait_until([&] { return context.cancelled(); }, 30s);
    std::this_thread::sleep_for(100ms);  // some clean-up, well within the grace
    result.pack_nil();
  });
  auto options = options_for(broker, 1);
  options.recycle_after = 400ms;
  RunningWorker worker(options, registry);
  const auto [id, ready] = broker.admit();
  broker.send(id, tasks(1, "polite", 1), {args()});
  ASSERT_TRUE(test::wait_until([&] { return started.load(); }, 5s));
  broker.send(id, protocol::encode(protocol::CancelTasks{.job = 1, .tasks = {}}));
  EXPECT_FALSE(broker.expect<protocol::Bye>(800ms));  // it returned in time: no recycling
  EXPECT_FALSE(worker.exit_status(0ms));
  broker.send(id, tasks(2, "echo", 1), {args(1)});
  EXPECT_EQ(broker.results(1, 5s).count({2, 0}), 1U);
}

TEST(WorkerCommon, IsPassedAsKwargsUntilTheJobEnds) {
  FakeBroker broker;
  FunctionRegistry registry;
  registry.add_raw("kwargs", [](const msgpack::object& /*args*/, const msgpack::object& kwargs,
                                msgpack::packer<msgpack::sbuffer>& result,
                                TaskContext& /*c*/) { result.pack(kwargs); });
  RunningWorker worker(options_for(broker), registry);
  const auto [id, ready] = broker.admit();
  const auto common = test::packed(std::map<std::string, int>{{"scale", 2}});
  broker.send(id, tasks(5, "kwargs", 1, 0, /*common=*/true), {common, args()});
  broker.send(id, tasks(5, "kwargs", 1, 1), {args()});  // later TASKS: no common frame
  auto results = broker.results(2);
  using Kwargs = std::map<std::string, int>;
  EXPECT_EQ(test::unpacked(results[{5, 0}].frame)->as<Kwargs>(), (Kwargs{{"scale", 2}}));
  EXPECT_EQ(test::unpacked(results[{5, 1}].frame)->as<Kwargs>(), (Kwargs{{"scale", 2}}));
  broker.send(id, protocol::encode(protocol::CancelTasks{.job = 5, .tasks = {}}));
  broker.send(id, tasks(5, "kwargs", 1, 2), {args()});
  EXPECT_TRUE(test::unpacked(broker.results(1)[{5, 2}].frame)->is_nil());
}

TEST(WorkerLiveness, SilentBrokerMeansReconnectWithANewReady) {
  FakeBroker broker;
  auto registry = builtins();
  RunningWorker worker(options_for(broker, 1), registry);
  const auto [first_id, ready] = broker.admit(/*heartbeat_ms=*/50, /*liveness=*/3);
  broker.send(first_id, tasks(1, "sleep", 1), {args(60.0)});
  // The broker says nothing more: after 150 ms the worker gives up on this socket, abandons
  // the sleep and, after a backoff of 50..100 ms, registers again from a new socket.
  const auto again = broker.expect<protocol::Ready>(3s);
  ASSERT_TRUE(again);
  EXPECT_NE(again->second.identity, first_id);
  // The abandoned sleep stopped, so its slot is free for the new registration's work.
  broker.send(again->second.identity, protocol::encode(protocol::Welcome{
                                          .worker = 2, .heartbeat_ms = 100, .liveness = 100}));
  broker.send(again->second.identity, tasks(2, "echo", 1), {args(1)});
  auto results = broker.results(1, 5s);
  EXPECT_EQ(results.count({2, 0}), 1U);
}

TEST(WorkerLiveness, NoWelcomeMeansReconnect) {
  FakeBroker broker;
  auto registry = builtins();
  RunningWorker worker(options_for(broker), registry);
  const auto first = broker.expect<protocol::Ready>();
  ASSERT_TRUE(first);
  const auto again = broker.expect<protocol::Ready>(6s);  // 3 s for WELCOME, then backoff
  ASSERT_TRUE(again);
  EXPECT_NE(again->second.identity, first->second.identity);
}

TEST(WorkerBye, ReconnectTrueMeansReadyAgainAtOnce) {
  FakeBroker broker;
  auto registry = builtins();
  RunningWorker worker(options_for(broker), registry);
  const auto [id, ready] = broker.admit();
  broker.send(id, protocol::encode(protocol::Peer::Broker,
                                   protocol::Bye{.reason = "who are you", .reconnect = true}));
  const auto again = broker.expect<protocol::Ready>(1s);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->second.identity, id);  // same socket
}

TEST(WorkerBye, ReconnectFalseEndsRunWithZero) {
  FakeBroker broker;
  auto registry = builtins();
  RunningWorker worker(options_for(broker), registry);
  const auto [id, ready] = broker.admit();
  broker.send(id, tasks(1, "sleep", 1), {args(60.0)});
  broker.send(id, protocol::encode(protocol::Peer::Broker,
                                   protocol::Bye{.reason = "stopping", .reconnect = false}));
  EXPECT_EQ(worker.exit_status(5s), 0);
}

TEST(WorkerStop, SendsByeAndReturnsZero) {
  FakeBroker broker;
  auto registry = builtins();
  RunningWorker worker(options_for(broker), registry);
  const auto [id, ready] = broker.admit();
  worker.stop();
  EXPECT_TRUE(broker.expect<protocol::Bye>(5s));
  EXPECT_EQ(worker.exit_status(5s), 0);
}

TEST(WorkerGiveUp, ReturnsOneWhenTheBrokerStaysAway) {
  FakeBroker broker;  // never answers
  auto registry = builtins();
  auto options = options_for(broker);
  options.give_up_after = 300ms;
  RunningWorker worker(options, registry);
  const auto start = test::Clock::now();
  EXPECT_EQ(worker.exit_status(5s), 1);
  EXPECT_GE(test::Clock::now() - start, 300ms);
}

TEST(WorkerGiveUp, ABadEndpointIsAnError) {
  auto registry = builtins();
  WorkerOptions options;
  options.endpoint = "nonsense://x";
  options.slots = 1;
  Worker worker(options, registry);
  EXPECT_THROW(worker.run(), Error);
}

}  // namespace
}  // namespace acme
