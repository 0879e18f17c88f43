// Faults of the broker and of clients, injected while a map runs: the broker killed (and a new
// one started on its endpoint), a client killed, a map cancelled.
#include <csignal>
#include <set>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <acme/error.hpp>

#include "fault_cluster.hpp"

namespace acme::fault {
namespace {

using ::testing::HasSubstr;

TEST(PeerFaults, BrokerKilledMidMapFailsTheClientFastAndWorkersRejoinANewBroker) {
  const Watchdog watchdog(60s, "BrokerKilledMidMap...");
  Cluster cluster(2);
  ASSERT_TRUE(cluster.all_joined()) << cluster.broker().err();
  Clock::time_point killed{};
  {
    Client client(cluster.client_options());
    auto stream = client.submit(tags(400, 20));
    std::size_t read = 0;
    try {
      (void)drain(stream, [&](const Arrival& /*arrival*/, std::size_t n) {
        read = n;
        if (n == 50) {
          cluster.broker().signal(SIGKILL);
          killed = Clock::now();
        }
      });
      FAIL() << "the map ended normally without its broker";
    } catch (const Error& e) {
      const auto noticed = Clock::now() - killed;
      EXPECT_EQ(e.code(), Errc::BrokerGone) << e.what();
      EXPECT_THAT(e.what(), HasSubstr(cluster.endpoint()));
      // §9: silent for 3 x ACCEPT.heartbeat_ms (200 ms) is gone; + one check and slow CI.
      EXPECT_LT(noticed, kHeartbeat * 3 + 1500ms);
      figure("broker SIGKILL -> client's map fails with BrokerGone (heartbeat 200 ms)",
             fmt::format("{:.0f} ms, after {} results", ms(noticed), read));
    }
  }
  // The workers were never restarted: they reconnect with backoff to whoever binds the
  // endpoint next, and serve a new map.
  const auto pids =
      std::set<std::int64_t>{cluster.workers()[0]->pid(), cluster.workers()[1]->pid()};
  cluster.restart_broker();
  const auto restarted = Clock::now();
  for (const auto pid : pids) {
    ASSERT_TRUE(cluster.joined(static_cast<pid_t>(pid), 1, 15s)) << cluster.broker().err();
  }
  const auto rejoined = Clock::now() - restarted;
  Client client(cluster.client_options());
  auto stream = client.submit(tags(100, 5));
  const auto arrivals = drain(stream);
  EXPECT_TRUE(each_index_once(arrivals, 100));
  std::set<std::int64_t> served;
  for (const auto& arrival : arrivals) served.insert(tag_pid(arrival.result));
  EXPECT_EQ(served, pids);
  figure("new broker on the same endpoint -> both old workers registered",
         fmt::format("{:.0f} ms (reconnect backoff 100 ms doubling to 5 s)", ms(rejoined)));
}

TEST(PeerFaults, KilledClientsTasksAreCancelledAndItsWorkersServeOthers) {
  const Watchdog watchdog(60s, "KilledClientsTasksAreCancelled...");
  Cluster cluster(2);
  ASSERT_TRUE(cluster.all_joined()) << cluster.broker().err();
  // acme-map, a client in its own process, runs two 60 s tasks: one on each worker.
  test::ProcessOptions env;
  env.env["ACME_BROKER"] = cluster.endpoint();
  test::Process map(
      {test::program("acme-map"), "--broker", cluster.endpoint(), "slow", "60000", "60000"}, env);
  ASSERT_TRUE(test::wait_until([&] { return cluster.marks() == 2; }, 10s))
      << map.err() << cluster.broker().err();
  map.signal(SIGKILL);
  const auto killed = Clock::now();
  ASSERT_TRUE(
      test::wait_until([&] { return cluster.count_in_log("1 open jobs closed") == 1; }, 10s))
      << cluster.broker().err();
  const auto noticed = Clock::now() - killed;
  Client client(cluster.client_options());
  auto stream = client.submit(tags(20, 1));
  EXPECT_TRUE(each_index_once(drain(stream), 20));
  const auto freed = Clock::now() - killed;
  // The broker's client liveness is 3 x 200 ms; the workers stop the tasks within 10 ms.
  EXPECT_LT(freed, kHeartbeat * 3 + 2s);
  figure("client SIGKILL -> broker drops it / next client's map done",
         fmt::format("{:.0f} ms / {:.0f} ms", ms(noticed), ms(freed)));
}

TEST(PeerFaults, CancelledMapFreesTheWorkersAtOnce) {
  const Watchdog watchdog(60s, "CancelledMapFreesTheWorkersAtOnce");
  Cluster cluster(2);
  ASSERT_TRUE(cluster.all_joined()) << cluster.broker().err();
  Client client(cluster.client_options());
  Clock::time_point cancelled{};
  {
    auto stream = client.submit(tags(50, 60000));  // 50 tasks of a minute each
    ASSERT_TRUE(test::wait_until([&] { return cluster.marks() == 2; }, 10s));
    stream.cancel();
    cancelled = Clock::now();
  }
  auto next = client.submit(tags(20, 1));
  const auto arrivals = drain(next);
  const auto took = Clock::now() - cancelled;
  EXPECT_TRUE(each_index_once(arrivals, 20));
  EXPECT_EQ(cluster.marks(), 2U + 20U) << "a cancelled task started after the cancel";
  EXPECT_LT(took, 2s);  // 26 ms measured; the bound leaves room for a loaded machine
  figure("cancel of a map of 50 one-minute tasks -> next map of 20 done",
         fmt::format("{:.0f} ms", ms(took)));
}

}  // namespace
}  // namespace acme::fault
