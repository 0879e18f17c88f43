// Heartbeats, dead peers, requeues, exactly-once delivery and poison through a real broker
// (PROTOCOL.md §9-§10). Short intervals keep each test well under a second or two.
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <acme/protocol/codec.hpp>

#include "test_peer.hpp"

namespace acme::broker::test {
namespace {

using protocol::Accept;
using protocol::Bye;
using protocol::Done;
using protocol::JobResults;
using protocol::Ready;
using protocol::Tasks;
using protocol::TaskStatus;

BrokerOptions fast_options() {
  auto options = test_options();
  // Workers are dead after 400 ms of silence, clients (liveness 3, §9) after 300 ms: short, but
  // long enough that a test thread descheduled on a loaded machine does not lose its peers.
  options.scheduler.heartbeat_interval = 100ms;
  options.scheduler.liveness = 4;
  return options;
}

TEST(BrokerLiveness, SilentWorkersTasksGoElsewhereAndEachResultIsDeliveredOnce) {
  TestCluster cluster(fast_options());
  auto client = cluster.client();
  // slots 1 + prefetch 1: task 0 may have been running when it dies (blamed), task 1 not; both
  // are suspects (§10), so the live worker gets them one after the other.
  auto silent = cluster.ready_worker(
      Ready{.functions = {"f"}, .slots = 1, .prefetch = 1, .host = "a", .pid = 1});
  client->send(protocol::encode(submit_all(1, "f", 2)), task_payloads(0, 2));
  client->expect<Accept>();
  client->keepalive = true;  // only now: a HEARTBEAT before the first SUBMIT gets BYE (§9)
  const auto first = silent->expect<Tasks>();
  ASSERT_EQ(first.tasks.size(), 2U);

  auto live = cluster.ready_worker(Ready{.functions = {"f"}, .slots = 2, .host = "b", .pid = 2});
  live->keepalive = true;
  std::vector<zmq::message_t> frames;
  const auto second = live->expect<Tasks>(3s, &frames);  // after `silent` is declared dead
  ASSERT_EQ(second.tasks.size(), 1U);
  EXPECT_EQ(second.tasks[0].index, 0U);
  EXPECT_EQ(second.tasks[0].attempt, 2U);
  EXPECT_EQ(bytes(frames[0]), "t0");  // the stored frame went out again
  // §9: the dead worker is told to register again.
  EXPECT_TRUE(silent->expect<Bye>().reconnect);

  // §10: its late result is dropped (and, as it is unknown now, it hears BYE again).
  answer(*silent, first.job, indices_of(first));
  EXPECT_TRUE(silent->expect<Bye>().reconnect);
  answer(*live, second.job, indices_of(second));
  const auto third = live->expect<Tasks>(3s, &frames);  // the other suspect, now that 0 is in
  ASSERT_EQ(third.tasks.size(), 1U);
  EXPECT_EQ(third.tasks[0].index, 1U);
  EXPECT_EQ(third.tasks[0].attempt, 2U);
  EXPECT_EQ(bytes(frames[0]), "t1");
  answer(*live, third.job, indices_of(third));

  std::map<std::uint64_t, std::uint32_t> attempts;
  std::optional<Done> done;
  while (!done) {
    auto message = client->next();
    ASSERT_TRUE(message.has_value());
    if (auto* results = std::get_if<JobResults>(&message->command)) {
      for (const auto& entry : results->results) {
        EXPECT_TRUE(attempts.emplace(entry.index, entry.attempts).second);
      }
    } else {
      done = std::get<Done>(message->command);
    }
  }
  EXPECT_EQ(done->ok, 2U);
  EXPECT_EQ(attempts, (std::map<std::uint64_t, std::uint32_t>{{0, 2}, {1, 2}}));
  EXPECT_TRUE(client->quiet_for(100ms));
  EXPECT_EQ(cluster.broker.broker().stats().workers_lost, 1U);
}

TEST(BrokerLiveness, TaskThatKillsMaxRetriesWorkersIsPoisoned) {
  auto options = fast_options();
  options.scheduler.max_retries = 2;
  TestCluster cluster(options);
  auto client = cluster.client();
  auto first = cluster.ready_worker(Ready{.functions = {"f"}, .slots = 1, .host = "n1", .pid = 7});
  client->send(protocol::encode(submit_all(4, "f", 1)), task_payloads(0, 1));
  client->expect<Accept>();
  client->keepalive = true;  // only now: a HEARTBEAT before the first SUBMIT gets BYE (§9)
  first->expect<Tasks>();    // then silent: dies with the task running

  auto second = cluster.ready_worker(Ready{.functions = {"f"}, .slots = 1, .host = "n2", .pid = 8});
  second->keepalive = true;
  EXPECT_EQ(second->expect<Tasks>().tasks.at(0).attempt, 2U);
  second->keepalive = false;  // dies too: the second counted failure

  std::vector<zmq::message_t> payload;
  const auto results = client->expect<JobResults>(3s, &payload);
  ASSERT_EQ(results.results.size(), 1U);
  EXPECT_EQ(results.results[0].status, TaskStatus::Poisoned);
  EXPECT_EQ(results.results[0].attempts, 2U);
  ASSERT_EQ(payload.size(), 1U);
  const auto info = protocol::decode_error_info(
      protocol::Frame(static_cast<const std::byte*>(payload[0].data()), payload[0].size()));
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->kind, "Poisoned");
  EXPECT_EQ(info->host, "n2");
  EXPECT_EQ(info->pid, 8U);
  EXPECT_EQ(client->expect<Done>(), (Done{.job = 4, .ok = 0, .failed = 1}));
}

TEST(BrokerLiveness, BrokerHeartbeatsPeersItHasNothingToSay) {
  TestCluster cluster(fast_options());
  auto worker = cluster.ready_worker(Ready{.functions = {"f"}, .slots = 1});
  worker->keepalive = true;
  EXPECT_TRUE(worker->quiet_for(450ms));
  EXPECT_GE(worker->heartbeats, 3U);
}

TEST(BrokerLiveness, UnknownPeersAreToldToRegisterAgain) {
  TestCluster cluster;
  auto worker = cluster.worker();
  worker->heartbeat();
  EXPECT_TRUE(worker->expect<Bye>().reconnect);
  answer(*worker, 1, {0});
  EXPECT_TRUE(worker->expect<Bye>().reconnect);
  worker->send(protocol::encode(protocol::Peer::Worker, Bye{}));  // BYE is never answered
  EXPECT_TRUE(worker->quiet_for(100ms));

  auto client = cluster.client();
  client->heartbeat();
  EXPECT_TRUE(client->expect<Bye>().reconnect);
  client->send(protocol::encode(protocol::Peer::Client, Bye{}));
  EXPECT_TRUE(client->quiet_for(100ms));
}

TEST(BrokerLiveness, SilentClientLosesItsJobs) {
  TestCluster cluster(fast_options());
  auto worker = cluster.ready_worker(Ready{.functions = {"f"}, .slots = 1});
  worker->keepalive = true;
  auto client = cluster.client();
  client->send(protocol::encode(submit_all(2, "f", 3)), task_payloads(0, 3));
  client->expect<Accept>();
  const auto tasks = worker->expect<Tasks>();
  // The client stays silent: dead, told BYE, and its job is over on the worker.
  EXPECT_EQ(worker->expect<protocol::CancelTasks>(),
            (protocol::CancelTasks{.job = tasks.job, .tasks = {}}));
  EXPECT_TRUE(client->expect<Bye>().reconnect);
  // The counters are published after the loop iteration that sent the BYE.
  const auto deadline = std::chrono::steady_clock::now() + 3s;
  while (cluster.broker.broker().stats().clients_lost == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(cluster.broker.broker().stats().clients_lost, 1U);
}

TEST(BrokerLiveness, ReadyAgainRequeuesWithoutBlame) {
  TestCluster cluster;
  auto worker = cluster.ready_worker(Ready{.functions = {"f"}, .slots = 1});
  auto client = cluster.client();
  client->send(protocol::encode(submit_all(1, "f", 1)), task_payloads(0, 1));
  client->expect<Accept>();
  const auto first = worker->expect<Tasks>();
  worker->send(protocol::encode(Ready{.functions = {"f"}, .slots = 1}));
  const auto welcome = worker->expect<protocol::Welcome>();
  EXPECT_EQ(welcome.worker, 1U);  // a new registration
  const auto again = worker->expect<Tasks>();
  EXPECT_EQ(again.tasks.at(0).attempt, 2U);
  EXPECT_TRUE(again.job == first.job);
  answer(*worker, again.job, {0});
  EXPECT_EQ(client->expect<JobResults>().results.at(0).attempts, 2U);
  EXPECT_EQ(client->expect<Done>().ok, 1U);
}

}  // namespace
}  // namespace acme::broker::test
