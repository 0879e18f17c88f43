// STATUS (PROTOCOL.md §6.1.5, §6.2.7, draft): any connection may ask; the broker answers with its
// counts and live workers, registers nobody, and refuses a broken request like any other.
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_peer.hpp"

namespace acme::broker::test {
namespace {

using protocol::Accept;
using protocol::Done;
using protocol::Error;
using protocol::ErrorCode;
using protocol::Ready;
using protocol::StatusReply;
using protocol::StatusRequest;
using protocol::Tasks;
using protocol::TaskStatus;
using ::testing::StartsWith;

const std::string kClient = "ACMEC1";

/// A STATUS from a fresh DEALER (a new identity that sends nothing else), and its reply.
StatusReply status_of(TestCluster& cluster, StatusRequest request = {}) {
  TestClient asker(cluster.context, cluster.broker.endpoint());
  asker.send(protocol::encode(request));
  return asker.expect<StatusReply>();
}

TEST(BrokerStatus, AnswersBeforeAnyWorkerOrClient) {
  TestCluster cluster;
  TestClient asker(cluster.context, cluster.broker.endpoint());
  asker.send(protocol::encode(StatusRequest{}));
  const auto status = asker.expect<StatusReply>();
  EXPECT_THAT(status.agent, StartsWith("acme-broker "));
  EXPECT_EQ(status.clients, 0U);
  EXPECT_EQ(status.jobs, 0U);
  EXPECT_EQ(status.tasks_queued + status.tasks_running + status.tasks_done + status.tasks_failed,
            0U);
  EXPECT_TRUE(status.workers.empty());
  EXPECT_EQ(status.workers_omitted, 0U);
  // §6.1.5: the asker is not a client: no heartbeats come (the interval is 100 ms), and a
  // second STATUS still counts no client.
  EXPECT_TRUE(asker.quiet_for(350ms));
  EXPECT_EQ(asker.heartbeats, 0U);
  asker.send(protocol::encode(StatusRequest{}));
  const auto again = asker.expect<StatusReply>();
  EXPECT_EQ(again.clients, 0U);
  EXPECT_GE(again.uptime_ms, status.uptime_ms + 300);
}

TEST(BrokerStatus, ListsLiveWorkersWithTheirLaunch) {
  TestCluster cluster;
  auto plain = cluster.ready_worker(
      Ready{.functions = {"f", "g", "f"}, .slots = 2, .host = "n1", .pid = 11});
  auto tagged = cluster.ready_worker(
      Ready{.functions = {"f"}, .slots = 4, .host = "n2", .pid = 22, .launch = "L1"});
  auto status = status_of(cluster);
  ASSERT_EQ(status.workers.size(), 2U);
  EXPECT_EQ(status.workers[0], (protocol::WorkerInfo{.id = 0,
                                                     .host = "n1",
                                                     .pid = 11,
                                                     .slots = 2,
                                                     .running = 0,
                                                     .launch = "",
                                                     .functions = 2}));
  EXPECT_EQ(status.workers[1], (protocol::WorkerInfo{.id = 1,
                                                     .host = "n2",
                                                     .pid = 22,
                                                     .slots = 4,
                                                     .running = 0,
                                                     .launch = "L1",
                                                     .functions = 1}));
  EXPECT_EQ(status.clients, 0U);

  // The launch filter: "L1", the untagged (""), and a launch with no workers.
  status = status_of(cluster, StatusRequest{.launch = "L1"});
  ASSERT_EQ(status.workers.size(), 1U);
  EXPECT_EQ(status.workers[0].pid, 22U);
  status = status_of(cluster, StatusRequest{.launch = ""});
  ASSERT_EQ(status.workers.size(), 1U);
  EXPECT_EQ(status.workers[0].pid, 11U);
  EXPECT_TRUE(status_of(cluster, StatusRequest{.launch = "L2"}).workers.empty());

  // A worker that said BYE is no longer listed.
  tagged->send(protocol::encode(protocol::Peer::Worker, protocol::Bye{}));
  for (int i = 0; i < 100 && !status_of(cluster, StatusRequest{.launch = "L1"}).workers.empty();
       ++i) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(status_of(cluster, StatusRequest{.launch = "L1"}).workers.empty());
}

TEST(BrokerStatus, CountsTasksOfASmallJob) {
  TestCluster cluster;
  auto worker = cluster.ready_worker(Ready{.functions = {"f"}, .slots = 1, .host = "n1"});
  auto client = cluster.client();
  client->send(protocol::encode(submit_all(7, "f", 3)), task_payloads(0, 3));
  client->expect<Accept>();
  auto tasks = worker->expect<Tasks>();
  ASSERT_EQ(tasks.tasks.size(), 1U);  // one slot, no prefetch

  auto status = status_of(cluster);
  EXPECT_EQ(status.clients, 1U);
  EXPECT_EQ(status.jobs, 1U);
  EXPECT_EQ(status.tasks_queued, 2U);
  EXPECT_EQ(status.tasks_running, 1U);
  EXPECT_EQ(status.tasks_done, 0U);
  ASSERT_EQ(status.workers.size(), 1U);
  EXPECT_EQ(status.workers[0].running, 1U);

  answer(*worker, tasks.job, indices_of(tasks));
  tasks = worker->expect<Tasks>();
  answer(*worker, tasks.job, indices_of(tasks), TaskStatus::Failed);
  tasks = worker->expect<Tasks>();
  answer(*worker, tasks.job, indices_of(tasks));
  std::optional<Done> done;
  while (!done) {
    auto message = client->next();
    ASSERT_TRUE(message.has_value());
    if (auto* d = std::get_if<Done>(&message->command)) done = *d;
  }
  EXPECT_EQ(done->ok, 2U);

  // A STATUS from the client itself is answered and leaves its session as it was.
  client->send(protocol::encode(StatusRequest{}));
  status = client->expect<StatusReply>();
  EXPECT_EQ(status.clients, 1U);
  EXPECT_EQ(status.jobs, 0U);
  EXPECT_EQ(status.tasks_queued, 0U);
  EXPECT_EQ(status.tasks_running, 0U);
  EXPECT_EQ(status.tasks_done, 2U);
  EXPECT_EQ(status.tasks_failed, 1U);
  EXPECT_EQ(status.workers.at(0).running, 0U);
  client->send(protocol::encode(submit_all(8, "f", 1)), task_payloads(0, 1));
  EXPECT_EQ(client->expect<Accept>().job, 8U);
}

TEST(BrokerStatus, MalformedRequestGetsErrorMalformed) {
  TestCluster cluster;
  TestClient asker(cluster.context, cluster.broker.endpoint());
  asker.send_raw({kClient, "\x0c", "\xc1"});
  EXPECT_EQ(asker.expect<Error>().code, ErrorCode::Malformed);
  const std::string launch_not_a_str("\x81\xa6launch\x01", 9);
  asker.send_raw({kClient, "\x0c", launch_not_a_str});
  EXPECT_EQ(asker.expect<Error>().code, ErrorCode::Malformed);
  asker.send_raw({kClient, "\x0c", "\x80", "a payload frame"});
  EXPECT_EQ(asker.expect<Error>().code, ErrorCode::Malformed);
  // The broker carries on, and the asker can still ask.
  asker.send(protocol::encode(StatusRequest{}));
  EXPECT_EQ(asker.expect<StatusReply>().clients, 0U);
}

TEST(BrokerStatus, LongWorkerListIsCutToFitTheHeaderLimit) {
  TestCluster cluster;
  std::vector<std::unique_ptr<TestWorker>> workers;
  constexpr std::size_t kWorkers = 24;
  for (std::size_t i = 0; i < kWorkers; ++i) {
    workers.push_back(cluster.ready_worker(Ready{
        .functions = {"f"}, .slots = 1, .host = std::string(protocol::kMaxText, 'h'), .pid = 1}));
  }
  const auto status = status_of(cluster);  // it decodes: the header is within the limit
  EXPECT_GT(status.workers_omitted, 0U);
  EXPECT_EQ(status.workers.size() + status.workers_omitted, kWorkers);
  EXPECT_GE(status.workers.size(), 14U);  // 15 entries of 4 KiB fit in 64 KiB: cut, not emptied
  EXPECT_EQ(status.workers.front().id, 0U);
}

}  // namespace
}  // namespace acme::broker::test
