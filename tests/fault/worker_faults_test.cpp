// Faults of workers and tasks, injected while a map runs: a worker killed or frozen, a task that
// kills every worker that runs it, raises, or never returns.
#include <algorithm>
#include <csignal>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <acme/net/wire.hpp>

#include "fault_cluster.hpp"

namespace acme::fault {
namespace {

using ::testing::HasSubstr;

// The time from a fault to the first and the last result of a task it requeued.
struct Recovery {
  std::optional<Clock::time_point> first;
  Clock::time_point last{};
  std::size_t requeued = 0;
};

Recovery requeued_after(const std::vector<Arrival>& arrivals, Clock::time_point fault) {
  Recovery recovery;
  for (const auto& arrival : arrivals) {
    if (arrival.at < fault || arrival.result.attempts() < 2) continue;
    ++recovery.requeued;
    if (!recovery.first) recovery.first = arrival.at;
    recovery.last = std::max(recovery.last, arrival.at);
  }
  return recovery;
}

TEST(WorkerFaults, KilledWorkersTasksCompleteElsewhereExactlyOnce) {
  const Watchdog watchdog(60s, "KilledWorkersTasksCompleteElsewhereExactlyOnce");
  Cluster cluster(3);
  ASSERT_TRUE(cluster.all_joined()) << cluster.broker().err();
  Client client(cluster.client_options());
  constexpr std::uint64_t kTasks = 600;
  auto stream = client.submit(tags(kTasks, 10));
  const pid_t victim = cluster.workers()[0]->pid();
  Clock::time_point killed{};
  const auto arrivals = drain(stream, [&](const Arrival& /*arrival*/, std::size_t n) {
    if (n == 150) {
      cluster.workers()[0]->signal(SIGKILL);
      killed = Clock::now();
    }
  });
  EXPECT_TRUE(each_index_once(arrivals, kTasks));
  for (const auto& arrival : arrivals) {
    ASSERT_TRUE(arrival.result.ok()) << arrival.result.error().message;
    EXPECT_EQ(arrival.result.value().via.array.ptr[0].as<std::uint64_t>(), arrival.result.index());
  }
  ASSERT_TRUE(cluster.lost(victim, 5s)) << cluster.broker().err();
  const auto recovery = requeued_after(arrivals, killed);
  // It held one task running and one prefetched; both ran again elsewhere.
  EXPECT_GE(recovery.requeued, 1U);
  ASSERT_TRUE(recovery.first.has_value());
  const auto bound = kHeartbeat * kLiveness + 2 * kHeartbeat + 1s;  // + checks and slow CI
  EXPECT_LT(recovery.last - killed, bound);
  figure("worker SIGKILL -> its tasks' results from other workers (heartbeat 200 ms x 3)",
         fmt::format("first {:.0f} ms, last {:.0f} ms, {} requeued", ms(*recovery.first - killed),
                     ms(recovery.last - killed), recovery.requeued));
}

TEST(WorkerFaults, DefaultHeartbeatDeclaresAKilledWorkerDeadWithinThreeSeconds) {
  const Watchdog watchdog(60s, "DefaultHeartbeatDeclaresAKilledWorkerDeadWithinThreeSeconds");
  Cluster cluster(2, {});  // the broker's defaults: heartbeat 1000 ms, liveness 3
  ASSERT_TRUE(cluster.all_joined()) << cluster.broker().err();
  Client client(cluster.client_options());
  auto stream = client.submit(tags(40, 100));
  const pid_t victim = cluster.workers()[0]->pid();
  Clock::time_point killed{};
  std::optional<Clock::time_point> declared;
  const auto arrivals = drain(stream, [&](const Arrival& /*arrival*/, std::size_t n) {
    if (n == 4) {
      cluster.workers()[0]->signal(SIGKILL);
      killed = Clock::now();
    }
  });
  EXPECT_TRUE(each_index_once(arrivals, 40));
  // The broker's log line is what tells when it noticed; poll it from the kill on.
  ASSERT_TRUE(cluster.lost(victim, 10s)) << cluster.broker().err();
  const auto recovery = requeued_after(arrivals, killed);
  ASSERT_TRUE(recovery.first.has_value());
  // The task it ran (100 ms) reruns right after the death: its result comes <= 100 ms later.
  const auto detected = *recovery.first - killed;
  EXPECT_GT(detected, 2s) << "noticed before 3 heartbeats were missed";
  EXPECT_LT(detected, 4500ms) << "3 missed heartbeats of 1 s, plus one check interval";
  figure("worker SIGKILL -> first requeued result (defaults: heartbeat 1000 ms x 3)",
         fmt::format("{:.0f} ms", ms(detected)));
}

TEST(WorkerFaults, FrozenWorkerIsReplacedItsStaleResultsDroppedThenItRejoins) {
  const Watchdog watchdog(60s, "FrozenWorkerIsReplacedItsStaleResultsDroppedThenItRejoins");
  Cluster cluster(3);
  ASSERT_TRUE(cluster.all_joined()) << cluster.broker().err();
  Client client(cluster.client_options());
  auto& frozen = *cluster.workers()[0];
  constexpr std::uint64_t kTasks = 600;
  auto stream = client.submit(tags(kTasks, 10));
  Clock::time_point stopped{};
  const auto arrivals = drain(stream, [&](const Arrival& /*arrival*/, std::size_t n) {
    if (n == 150) {
      frozen.signal(SIGSTOP);
      stopped = Clock::now();
    }
  });
  EXPECT_TRUE(each_index_once(arrivals, kTasks));
  ASSERT_TRUE(cluster.lost(frozen.pid(), 5s)) << cluster.broker().err();
  const auto recovery = requeued_after(arrivals, stopped);
  EXPECT_GE(recovery.requeued, 1U);

  // Awake again, it sends what it finished while frozen: dropped as late, never delivered.
  frozen.signal(SIGCONT);
  const auto woken = Clock::now();
  ASSERT_TRUE(cluster.joined(frozen.pid(), 2, 10s)) << cluster.broker().err();
  figure("SIGSTOP -> tasks rerun elsewhere; SIGCONT -> registered again",
         fmt::format("last requeued result {:.0f} ms after SIGSTOP; rejoined {:.0f} ms after "
                     "SIGCONT",
                     ms(recovery.last - stopped), ms(Clock::now() - woken)));
  // ... and it serves again: a second map reaches all three workers, nothing twice.
  auto again = client.submit(tags(300, 10));
  const auto second = drain(again);
  EXPECT_TRUE(each_index_once(second, 300));
  std::set<std::int64_t> pids;
  for (const auto& arrival : second) pids.insert(tag_pid(arrival.result));
  EXPECT_TRUE(pids.contains(frozen.pid())) << "the woken worker got no task";
}

TEST(WorkerFaults, PoisonTaskFailsAfterMaxRetriesTheRestCompletesLocalWorkersRestart) {
  const Watchdog watchdog(90s, "PoisonTaskFailsAfterMaxRetries...");
  ClientOptions options;
  options.embedded = true;  // local workers are copies of this binary
  options.local_workers = 2;
  options.heartbeat_interval = kHeartbeat;
  Client client(options);
  const auto pids_of = [&client](std::uint64_t n) {
    auto stream = client.submit(tags(n, 20));
    std::set<std::int64_t> pids;
    for (const auto& arrival : drain(stream)) pids.insert(tag_pid(arrival.result));
    return pids;
  };
  const auto before = pids_of(20);
  ASSERT_EQ(before.size(), 2U);

  constexpr std::uint64_t kTasks = 60;
  constexpr std::int64_t kPoison = 7;
  auto stream = client.submit(job("crash_on", kTasks, [](std::uint64_t i) {
    return std::vector<std::int64_t>{static_cast<std::int64_t>(i), kPoison};
  }));
  const auto arrivals = drain(stream);
  EXPECT_TRUE(each_index_once(arrivals, kTasks));
  for (const auto& arrival : arrivals) {
    const auto& result = arrival.result;
    if (result.index() == kPoison) {
      ASSERT_FALSE(result.ok());
      EXPECT_EQ(result.error().kind, "Poisoned");
      EXPECT_THAT(result.error().message, HasSubstr("3 workers that died"));
      EXPECT_EQ(result.attempts(), 3U);
    } else {
      EXPECT_TRUE(result.ok()) << "task " << result.index() << ": " << result.error().message;
    }
  }
  // The embedded default restarted the workers the poison killed: both slots serve again.
  const auto after = pids_of(40);
  EXPECT_EQ(after.size(), 2U);
  std::vector<std::int64_t> survivors;
  std::set_intersection(before.begin(), before.end(), after.begin(), after.end(),
                        std::back_inserter(survivors));
  EXPECT_LE(survivors.size(), 1U) << "no worker was restarted";
}

TEST(WorkerFaults, TaskErrorCarriesMessageHostAndAttemptAndIsNotRetried) {
  const Watchdog watchdog(60s, "TaskErrorCarriesMessageHostAndAttemptAndIsNotRetried");
  Cluster cluster(2);
  ASSERT_TRUE(cluster.all_joined()) << cluster.broker().err();
  Client client(cluster.client_options());
  const auto fail_on_5 = [](std::uint64_t i) {
    return std::vector<std::int64_t>{static_cast<std::int64_t>(i), 5};
  };
  auto stream = client.submit(job("fail_on", 50, fail_on_5));
  const auto arrivals = drain(stream);
  EXPECT_TRUE(each_index_once(arrivals, 50));
  std::set<pid_t> workers;
  for (const auto& w : cluster.workers()) workers.insert(w->pid());
  for (const auto& arrival : arrivals) {
    const auto& result = arrival.result;
    if (result.index() != 5) {
      EXPECT_TRUE(result.ok());
      continue;
    }
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.error().message, "input 5 is bad");
    EXPECT_EQ(result.error().kind, "std::domain_error");
    EXPECT_EQ(result.error().host, net::hostname());
    EXPECT_TRUE(workers.contains(static_cast<pid_t>(result.error().pid)));
    EXPECT_EQ(result.attempts(), 1U) << "an error is not retried unless the map asks";
  }

  // Asked to: retried up to max_retries, and a task that fails once only then succeeds.
  auto spec = job("fail_on", 10, fail_on_5);
  spec.retry_on_error = true;
  spec.max_retries = 3;
  auto retried = client.submit(std::move(spec));
  for (const auto& arrival : drain(retried)) {
    if (arrival.result.index() == 5) {
      EXPECT_EQ(arrival.result.attempts(), 3U);
      EXPECT_EQ(arrival.result.error().message, "input 5 is bad");
    }
  }
  auto flaky = job("flaky", 20, [](std::uint64_t i) {
    return std::vector<std::int64_t>{static_cast<std::int64_t>(i)};
  });
  flaky.retry_on_error = true;
  auto healed = client.submit(std::move(flaky));
  const auto healed_results = drain(healed);
  EXPECT_TRUE(each_index_once(healed_results, 20));
  for (const auto& arrival : healed_results) {
    ASSERT_TRUE(arrival.result.ok()) << arrival.result.error().message;
    EXPECT_EQ(arrival.result.attempts(), 2U);
  }
}

JobSpec hang_on(std::uint64_t n, std::int64_t bad, Ms timeout) {
  auto spec = job("hang", n, [bad](std::uint64_t i) {
    return std::vector<std::int64_t>{static_cast<std::int64_t>(i), bad};
  });
  spec.timeout = timeout;
  return spec;
}

TEST(WorkerFaults, TimedOutTaskFailsAndItsWorkerIsRecycledSoTheMapGoesOn) {
  const Watchdog watchdog(60s, "TimedOutTaskFailsAndItsWorkerIsRecycledSoTheMapGoesOn");
  // One worker with one slot: unless the process that runs the hung function is replaced, its
  // slot stays taken and nothing after task 3 ever runs.
  Cluster cluster(1);
  ASSERT_TRUE(cluster.all_joined()) << cluster.broker().err();
  Client client(cluster.client_options());
  const auto started = Clock::now();
  auto stream = client.submit(hang_on(20, 3, 500ms));
  const auto arrivals = drain(stream);
  const auto took = Clock::now() - started;
  EXPECT_TRUE(each_index_once(arrivals, 20));
  for (const auto& arrival : arrivals) {
    const auto& result = arrival.result;
    if (result.index() == 3) {
      ASSERT_FALSE(result.ok());
      EXPECT_EQ(result.error().kind, "TimedOut");
      EXPECT_THAT(result.error().message, HasSubstr("ran longer than its timeout of 500 ms"));
    } else {
      EXPECT_TRUE(result.ok()) << result.index() << ": " << result.error().message;
    }
  }
  EXPECT_LT(took, 10s);
  EXPECT_GE(cluster.count_in_log(") joined"), 2U) << "the worker did not register anew";
  // It said BYE before it re-executed: the broker never had to declare it dead.
  EXPECT_EQ(cluster.count_in_log(") lost"), 0U) << cluster.broker().err();
  EXPECT_EQ(cluster.count_in_log("recycling: task 3 of job"), 1U) << cluster.broker().err();
  figure("hung task with a 500 ms timeout: map of 20 on 1 worker",
         fmt::format("{:.0f} ms (the worker process re-executed itself)", ms(took)));
}

TEST(WorkerFaults, CancelledHungTaskRecyclesItsWorker) {
  const Watchdog watchdog(60s, "CancelledHungTaskRecyclesItsWorker");
  Cluster cluster(1);
  ASSERT_TRUE(cluster.all_joined()) << cluster.broker().err();
  Client client(cluster.client_options());
  {
    auto stream = client.submit(hang_on(1, 0, Ms{0}));
    ASSERT_TRUE(test::wait_until([&] { return cluster.marks() == 1; }, 10s));
    stream.cancel();
  }
  const auto cancelled = Clock::now();
  auto next = client.submit(tags(10, 1));
  EXPECT_TRUE(each_index_once(drain(next), 10));
  const auto took = Clock::now() - cancelled;
  EXPECT_LT(took, 8s);
  figure("cancel of a task that ignores it -> next map done on the recycled worker",
         fmt::format("{:.0f} ms", ms(took)));
}

}  // namespace
}  // namespace acme::fault
