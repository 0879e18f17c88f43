// The path of a task through a real broker (PROTOCOL.md §6-§8): SUBMIT, TASKS, RESULTS, DONE,
// credits, cancel, the client window, large payloads and the stop.
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_peer.hpp"

namespace acme::broker::test {
namespace {

using protocol::Accept;
using protocol::Bye;
using protocol::CancelJob;
using protocol::CancelTasks;
using protocol::Done;
using protocol::Error;
using protocol::ErrorCode;
using protocol::JobResults;
using protocol::Ready;
using protocol::Tasks;
using protocol::TaskStatus;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

/// Reads RESULTS until DONE; returns index -> (payload, attempts), failing on a duplicate.
struct Collected {
  std::map<std::uint64_t, std::pair<std::string, std::uint32_t>> results;
  std::map<std::uint64_t, TaskStatus> statuses;
  std::optional<Done> done;
};
Collected collect_until_done(TestClient& client, milliseconds timeout = 5s) {
  Collected collected;
  const auto deadline = Clock::now() + timeout;
  while (!collected.done && Clock::now() < deadline) {
    auto message =
        client.next(std::chrono::ceil<milliseconds>(deadline - Clock::now()) + milliseconds{1});
    if (!message) break;
    if (auto* done = std::get_if<Done>(&message->command)) {
      collected.done = *done;
    } else if (auto* results = std::get_if<JobResults>(&message->command)) {
      EXPECT_EQ(results->results.size(), message->payload.size());
      for (std::size_t i = 0; i < results->results.size(); ++i) {
        const auto& entry = results->results[i];
        const bool fresh =
            collected.results
                .emplace(entry.index, std::pair{bytes(message->payload[i]), entry.attempts})
                .second;
        EXPECT_TRUE(fresh) << "task " << entry.index << " delivered twice";
        collected.statuses[entry.index] = entry.status;
      }
    } else if (!std::holds_alternative<Accept>(message->command)) {
      ADD_FAILURE() << "unexpected message, variant index " << message->command.index();
    }
  }
  return collected;
}

TEST(BrokerFlow, SubmitTasksResultsDoneWithPayloadsUnchanged) {
  TestCluster cluster;
  auto worker =
      cluster.ready_worker(Ready{.functions = {"square"}, .slots = 2, .host = "n1", .pid = 11});
  auto client = cluster.client();
  auto submit = submit_all(7, "square", 4);
  submit.common = true;
  const std::string big(200, 'b');
  client->send(protocol::encode(submit), {"common", "\x91\x03", big, "t2", "t3"});

  const auto accept = client->expect<Accept>();
  EXPECT_EQ(accept.job, 7U);
  EXPECT_EQ(accept.received, 4U);
  EXPECT_EQ(accept.window, (std::uint64_t{1} << 20) - 4);
  EXPECT_EQ(accept.heartbeat_ms, 100U);

  // §6.4.2: the common frame comes with the job's first TASKS to this worker only.
  std::vector<zmq::message_t> frames;
  const auto first = worker->expect<Tasks>(3s, &frames);
  EXPECT_EQ(first.function, "square");
  EXPECT_TRUE(first.common);
  ASSERT_EQ(frames.size(), 3U);
  EXPECT_EQ(bytes(frames[0]), "common");
  EXPECT_EQ(bytes(frames[1]), "\x91\x03");
  EXPECT_EQ(bytes(frames[2]), big);
  EXPECT_THAT(indices_of(first), ElementsAre(0, 1));
  EXPECT_EQ(first.tasks[0].attempt, 1U);

  answer(*worker, first.job, {0, 1});
  const auto second = worker->expect<Tasks>(3s, &frames);
  EXPECT_FALSE(second.common);
  ASSERT_EQ(frames.size(), 2U);
  EXPECT_EQ(bytes(frames[0]), "t2");
  answer(*worker, second.job, {2, 3});

  const auto collected = collect_until_done(*client);
  ASSERT_TRUE(collected.done.has_value());
  EXPECT_EQ(*collected.done, (Done{.job = 7, .ok = 4, .failed = 0}));
  ASSERT_EQ(collected.results.size(), 4U);
  for (std::uint64_t i = 0; i < 4; ++i) {
    EXPECT_EQ(collected.results.at(i).first, "r" + std::to_string(i));
    EXPECT_EQ(collected.results.at(i).second, 1U);
  }
  // §6.4.3: the job is over on the worker.
  EXPECT_EQ(worker->expect<CancelTasks>(), (CancelTasks{.job = first.job, .tasks = {}}));
}

TEST(BrokerFlow, WorkerNeverHoldsMoreThanItsCredit) {
  TestCluster cluster;
  auto worker = cluster.ready_worker(Ready{.functions = {"f"}, .slots = 1, .prefetch = 1});
  auto client = cluster.client();
  constexpr std::uint64_t kTasks = 10;
  client->send(protocol::encode(submit_all(1, "f", kTasks)), task_payloads(0, kTasks));
  client->expect<Accept>();

  std::vector<std::uint64_t> held;
  std::uint64_t job = 0;
  std::uint64_t answered = 0;
  while (answered < kTasks) {
    // Take every TASKS the broker sends until it goes quiet; never more than 2 held.
    while (auto message = worker->next(held.empty() ? 3s : 100ms)) {
      const auto& tasks = std::get<Tasks>(message->command);
      job = tasks.job;
      for (const auto index : indices_of(tasks)) held.push_back(index);
      ASSERT_LE(held.size(), 2U);
    }
    ASSERT_FALSE(held.empty());
    answer(*worker, job, {held.front()});
    held.erase(held.begin());
    ++answered;
  }
  const auto collected = collect_until_done(*client);
  ASSERT_TRUE(collected.done.has_value());
  EXPECT_EQ(collected.done->ok, kTasks);
}

TEST(BrokerFlow, CancelTellsWorkersAndEndsWithDone) {
  TestCluster cluster;
  auto worker = cluster.ready_worker(Ready{.functions = {"f"}, .slots = 2});
  auto client = cluster.client();
  client->send(protocol::encode(submit_all(3, "f", 5)), task_payloads(0, 5));
  client->expect<Accept>();
  const auto tasks = worker->expect<Tasks>();

  client->send(protocol::encode(CancelJob{.job = 3}));
  EXPECT_EQ(client->expect<Done>(), (Done{.job = 3, .ok = 0, .failed = 0, .cancelled = true}));
  EXPECT_EQ(worker->expect<CancelTasks>(), (CancelTasks{.job = tasks.job, .tasks = {}}));

  // §10: results for cancelled tasks are late and dropped.
  answer(*worker, tasks.job, indices_of(tasks));
  EXPECT_TRUE(client->quiet_for(200ms));
  // §6.1.2: a CANCEL for a job that is not open is a bad request naming it.
  client->send(protocol::encode(CancelJob{.job = 3}));
  const auto error = client->expect<Error>();
  EXPECT_EQ(error.code, ErrorCode::BadRequest);
  EXPECT_EQ(error.job, 3U);
}

TEST(BrokerFlow, ClientWindowRefusesTooManyAndReopens) {
  auto options = test_options();
  options.scheduler.client_window = 4;
  TestCluster cluster(options);
  auto client = cluster.client();
  auto submit = submit_all(1, "f", 10);
  submit.count = 5;
  client->send(protocol::encode(submit), task_payloads(0, 5));
  auto error = client->expect<Error>();
  EXPECT_EQ(error.code, ErrorCode::BadRequest);
  EXPECT_THAT(error.message, HasSubstr("window"));
  EXPECT_EQ(error.job, 1U);

  submit.count = 4;  // the refused SUBMIT opened no job: this one is the first again
  client->send(protocol::encode(submit), task_payloads(0, 4));
  auto accept = client->expect<Accept>();
  EXPECT_EQ(accept.received, 4U);
  EXPECT_EQ(accept.window, 0U);

  auto worker = cluster.ready_worker(Ready{.functions = {"f"}, .slots = 2});
  const auto tasks = worker->expect<Tasks>();
  answer(*worker, tasks.job, indices_of(tasks));
  // §6.2.1: half the window is free again: an unsolicited ACCEPT for the latest job.
  std::optional<Accept> reopened;
  while (auto message = client->next()) {
    if (auto* got = std::get_if<Accept>(&message->command)) {
      reopened = *got;
      break;
    }
  }
  ASSERT_TRUE(reopened.has_value());
  EXPECT_EQ(reopened->job, 1U);
  EXPECT_EQ(reopened->received, 4U);
  EXPECT_EQ(reopened->window, 2U);

  // §6.1.1: later SUBMITs continue where the broker's count stands, and no further.
  submit.first = 3;
  submit.count = 1;
  client->send(protocol::encode(submit), task_payloads(3, 1));
  while (true) {  // the RESULTS of tasks 0 and 1 may still be on their way
    auto message = client->next();
    ASSERT_TRUE(message.has_value());
    if (std::holds_alternative<JobResults>(message->command)) continue;
    error = std::get<Error>(message->command);
    break;
  }
  EXPECT_EQ(error.code, ErrorCode::BadRequest);
  EXPECT_THAT(error.message, HasSubstr("out of order"));
  submit.first = 4;
  submit.count = 2;
  client->send(protocol::encode(submit), task_payloads(4, 2));
  // RESULTS of the first tasks may come first.
  while (auto message = client->next()) {
    if (auto* got = std::get_if<Accept>(&message->command)) {
      EXPECT_EQ(got->received, 6U);
      EXPECT_EQ(got->window, 0U);
      break;
    }
    ASSERT_TRUE(std::holds_alternative<JobResults>(message->command));
  }
}

TEST(BrokerFlow, MebibytePayloadsAreForwardedIntact) {
  TestCluster cluster;
  auto worker = cluster.ready_worker(Ready{.functions = {"f"}, .slots = 1});
  auto client = cluster.client();
  std::string task(std::size_t{1} << 20, '\0');
  for (std::size_t i = 0; i < task.size(); ++i) task[i] = static_cast<char>(i * 7 + i / 4096);
  client->send(protocol::encode(submit_all(1, "f", 1)), {task});
  client->expect<Accept>();
  std::vector<zmq::message_t> frames;
  const auto tasks = worker->expect<Tasks>(3s, &frames);
  ASSERT_EQ(frames.size(), 1U);
  EXPECT_TRUE(bytes(frames[0]) == task);

  std::string result(task.rbegin(), task.rend());
  worker->send(protocol::encode(protocol::TaskResults{
                   .results = {{.job = tasks.job, .index = 0, .status = TaskStatus::Ok}}}),
               {result});
  std::vector<zmq::message_t> payload;
  const auto results = client->expect<JobResults>(3s, &payload);
  ASSERT_EQ(payload.size(), 1U);
  EXPECT_TRUE(bytes(payload[0]) == result);
  EXPECT_EQ(results.results.at(0).status, TaskStatus::Ok);
  EXPECT_EQ(client->expect<Done>().ok, 1U);
}

TEST(BrokerFlow, UnknownFunctionFailsTheJobAfterTheNoWorkerTimeout) {
  auto options = test_options();
  options.scheduler.no_worker_timeout = 200ms;
  TestCluster cluster(options);
  auto worker = cluster.ready_worker(Ready{.functions = {"other"}, .slots = 1});
  auto client = cluster.client();
  client->send(protocol::encode(submit_all(9, "nosuch", 2)), task_payloads(0, 2));
  client->expect<Accept>();
  const auto started = Clock::now();
  const auto error = client->expect<Error>(3s);
  EXPECT_GE(Clock::now() - started, 150ms);
  EXPECT_EQ(error.code, ErrorCode::NoSuchFunction);
  EXPECT_EQ(error.job, 9U);
  EXPECT_THAT(error.message, HasSubstr("nosuch"));
  EXPECT_TRUE(client->quiet_for(150ms));  // §6.2.4: no DONE follows
}

TEST(BrokerFlow, StopSaysByeToEveryPeer) {
  zmq::context_t context{1};
  std::optional<BrokerThread> broker(std::in_place, test_options());
  TestClient client(context, broker->endpoint());
  TestWorker worker(context, broker->endpoint());
  worker.send(protocol::encode(Ready{.functions = {"f"}, .slots = 1}));
  worker.expect<protocol::Welcome>();
  client.send(protocol::encode(submit_all(1, "g", 1)), task_payloads(0, 1));
  client.expect<Accept>();

  broker.reset();  // stop() and join
  EXPECT_EQ(client.expect<Bye>(), (Bye{.reason = "broker stopping", .reconnect = false}));
  EXPECT_FALSE(worker.expect<Bye>().reconnect);
}

}  // namespace
}  // namespace acme::broker::test
