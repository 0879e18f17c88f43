// The soak: a 100,000-task map while random workers are killed and replaced every few hundred
// milliseconds. Nothing may be lost, duplicated or poisoned.
//   ACME_SOAK_SECONDS=600 ACME_SOAK_TASKS=2000000 acme_fault_tests --gtest_filter='Soak.*'
#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "fault_cluster.hpp"

namespace acme::fault {
namespace {

std::uint64_t from_env(const char* name, std::uint64_t fallback) {
  const char* value = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): before threads
  return value != nullptr && *value != '\0' ? std::stoull(value) : fallback;
}

TEST(Soak, KillAndReplaceRandomWorkersDuringAMapLosesNothing) {
  const auto seconds = from_env("ACME_SOAK_SECONDS", 60);
  const auto tasks = from_env("ACME_SOAK_TASKS", 100'000);
  const Watchdog watchdog(std::chrono::seconds(seconds + 30), "Soak");
  // max-retries 50: a task is blamed only when it ran on a killed worker, and it must not be
  // unlucky enough to be poisoned by chance in a long run. Liveness 5 x 200 ms: the soak keeps
  // two cores at 100 % with seven processes and a fork every few hundred ms, and the client
  // (which shares the broker's liveness) must not be declared dead by a scheduling stall.
  Cluster cluster(4, {"--heartbeat-ms", "200", "--liveness", "5", "--max-retries", "50"});
  ASSERT_TRUE(cluster.all_joined()) << cluster.broker().err();
  Client client(cluster.client_options());
  auto stream = client.submit(tags(tasks, 0));

  std::atomic<bool> done{false};
  std::vector<Arrival> arrivals;
  std::string failure;
  std::thread reader([&] {
    try {
      arrivals = drain(stream);
    } catch (const std::exception& e) {
      failure = e.what();
    }
    done = true;
  });

  // This thread kills and starts workers (it forked them: PR_SET_PDEATHSIG follows it).
  std::mt19937 random(20261125);
  std::size_t kills = 0;
  const auto started = Clock::now();
  const auto deadline = started + std::chrono::seconds(seconds);
  while (!done && Clock::now() < deadline) {
    const auto pause = Ms(std::uniform_int_distribution<int>(200, 400)(random));
    test::wait_until([&] { return done.load(); }, pause);
    if (done) break;
    auto& workers = cluster.workers();
    const auto victim = std::uniform_int_distribution<std::size_t>(0, workers.size() - 1)(random);
    workers[victim]->signal(SIGKILL);
    workers.erase(workers.begin() + static_cast<std::ptrdiff_t>(victim));  // reaps it
    cluster.add_worker();
    ++kills;
  }
  const bool finished = test::wait_until([&] { return done.load(); }, 20s);
  if (!finished) stream.cancel();
  reader.join();
  const auto took = Clock::now() - started;
  ASSERT_TRUE(finished) << "the map did not finish within " << seconds << " s + 20 s";
  ASSERT_TRUE(failure.empty()) << failure;

  std::size_t requeued = 0;
  std::size_t failed = 0;
  std::vector<std::uint8_t> seen(tasks, 0);
  std::size_t duplicated = 0;
  for (const auto& arrival : arrivals) {
    if (arrival.result.index() < tasks && seen[arrival.result.index()]++ > 0) ++duplicated;
    if (arrival.result.attempts() > 1) ++requeued;
    if (!arrival.result.ok()) {
      ++failed;
    } else if (arrival.result.value().via.array.ptr[0].as<std::uint64_t>() !=
               arrival.result.index()) {
      ADD_FAILURE() << "task " << arrival.result.index() << " has another task's value";
    }
  }
  const auto lost = static_cast<std::size_t>(std::count(seen.begin(), seen.end(), 0));
  EXPECT_TRUE(each_index_once(arrivals, tasks));
  EXPECT_EQ(failed, 0U);
  EXPECT_GT(kills, 0U);
  figure("soak",
         fmt::format("{} tasks in {:.1f} s, {} workers killed and replaced, {} results rerun, "
                     "{} lost, {} duplicated, {} failed",
                     tasks, ms(took) / 1000, kills, requeued, lost, duplicated, failed));
}

}  // namespace
}  // namespace acme::fault
