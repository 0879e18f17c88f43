// PROTOCOL.md §8: concurrent jobs and clients share the workers.
#include <map>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.hpp"

namespace acme::test {
namespace {

using ::testing::SizeIs;

// Runs `rounds` rounds in which every worker finishes everything it holds; counts the tasks
// each job got.
std::map<JobId, std::size_t> run_rounds(SchedulerHarness& h, const std::vector<WorkerId>& workers,
                                        int rounds) {
  std::map<JobId, std::size_t> share;
  for (int r = 0; r < rounds; ++r) {
    for (const auto worker : workers) {
      for (const auto& [job, index] : h.tasks_on(worker)) ++share[job];
      h.report_done(worker);
      h.take_sent(worker);
    }
  }
  return share;
}

TEST(SchedulerFairness, TwoJobsOfOneClientShareWorkers) {
  SchedulerHarness h;
  std::vector<WorkerId> workers;
  for (int i = 0; i < 4; ++i) workers.push_back(h.add_worker({.slots = 2}));
  const auto first = h.submit("square", 1000);
  const auto second = h.submit("square", 1000);
  const auto share = run_rounds(h, workers, 20);
  // The second job arrived when the first held every worker; within a round it has its half.
  EXPECT_NEAR(static_cast<double>(share.at(first)), static_cast<double>(share.at(second)), 8.0);
}

TEST(SchedulerFairness, TwoClientsShareWorkersEvenWithUnequalJobCounts) {
  SchedulerHarness h;
  std::vector<WorkerId> workers;
  for (int i = 0; i < 4; ++i) workers.push_back(h.add_worker({.slots = 2}));
  const auto greedy = h.client();
  const auto modest = h.add_client();
  std::vector<JobId> greedy_jobs;
  for (int i = 0; i < 3; ++i) greedy_jobs.push_back(h.submit("square", 1000, {.client = greedy}));
  const auto modest_job = h.submit("square", 1000, {.client = modest});
  const auto share = run_rounds(h, workers, 30);
  std::size_t greedy_total = 0;
  for (const auto job : greedy_jobs) greedy_total += share.at(job);
  // Clients first: the one-job client gets half of the workers, not a quarter.
  EXPECT_NEAR(static_cast<double>(greedy_total), static_cast<double>(share.at(modest_job)), 12.0);
}

TEST(SchedulerFairness, FreedCreditIsSplitAmongCompetingJobs) {
  SchedulerHarness h;
  const auto first = h.submit("square", 100);
  const auto second = h.submit("square", 100);
  const auto worker = h.add_worker({.slots = 4, .prefetch = 4});
  const auto batches = h.take_batches(worker);
  ASSERT_THAT(batches, SizeIs(2));
  EXPECT_THAT(batches[0].tasks, SizeIs(4));
  EXPECT_THAT(batches[1].tasks, SizeIs(4));
  EXPECT_NE(batches[0].job, batches[1].job);
  EXPECT_TRUE((batches[0].job == first) != (batches[1].job == first));
  EXPECT_TRUE(batches[0].job == second || batches[1].job == second);
  h.expect_no_more_decisions();
}

TEST(SchedulerFairness, ALoneJobGetsEveryWorker) {
  SchedulerHarness h;
  std::vector<WorkerId> workers;
  for (int i = 0; i < 3; ++i) workers.push_back(h.add_worker({.slots = 2}));
  h.submit("square", 100);
  for (const auto worker : workers) EXPECT_THAT(h.take_sent(worker), SizeIs(2));
  h.expect_no_more_decisions();
}

}  // namespace
}  // namespace acme::test
