// PROTOCOL.md §8: a task only goes to a worker that offers its function and has its cores;
// a job no live worker can run fails after no_worker_timeout.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.hpp"

namespace acme::test {
namespace {

using ::testing::IsEmpty;
using ::testing::SizeIs;

TEST(SchedulerAffinity, WorkerWithoutTheFunctionGetsNoneOfItsTasks) {
  SchedulerHarness h;
  const auto squares = h.add_worker({.slots = 2, .functions = {"square"}});
  const auto cubes = h.add_worker({.slots = 2, .functions = {"cube"}});
  const auto job = h.submit("square", 10);
  EXPECT_THAT(h.take_sent(squares), SizeIs(2));
  EXPECT_THAT(h.take_sent(cubes), IsEmpty());
  for (int i = 0; i < 5; ++i) h.report_done(squares);
  EXPECT_TRUE(h.job_finished(job));
  EXPECT_THAT(h.take_sent(cubes), IsEmpty());
  h.take_sent(squares);
  h.expect_no_more_decisions();
}

TEST(SchedulerAffinity, WorkersServeEachTheirOwnFunction) {
  SchedulerHarness h;
  const auto squares = h.add_worker({.slots = 2, .functions = {"square"}});
  const auto both = h.add_worker({.slots = 2, .functions = {"cube", "square"}});
  const auto cube_job = h.submit("cube", 4);
  const auto square_job = h.submit("square", 4);
  for (const auto& batch : h.take_batches(squares)) EXPECT_EQ(batch.job, square_job);
  const auto batches = h.take_batches(both);
  ASSERT_THAT(batches, SizeIs(1));
  EXPECT_EQ(batches[0].job, cube_job);
  h.expect_no_more_decisions();
}

TEST(SchedulerAffinity, TaskNeedingMoreCoresThanSlotsIsNeverSent) {
  SchedulerHarness h;
  const auto small = h.add_worker({.slots = 2, .prefetch = 8});
  const auto big = h.add_worker({.slots = 8});
  h.submit("square", 3, {.cores = 4});
  EXPECT_THAT(h.take_sent(small), IsEmpty());
  EXPECT_THAT(h.take_sent(big), SizeIs(2));
  h.expect_no_more_decisions();
}

TEST(SchedulerAffinity, JobNoLiveWorkerOffersFailsAfterTheTimeout) {
  SchedulerHarness h({.no_worker_timeout = 5s});
  h.add_worker({.functions = {"cube"}});
  const auto job = h.submit("square", 3);
  for (int i = 0; i < 4; ++i) {
    h.advance(1s);
    h.heartbeat(WorkerId{0});
    h.heartbeat(h.client());
  }
  EXPECT_FALSE(h.job_finished(job));
  for (int i = 0; i < 3; ++i) {
    h.advance(1s);
    h.heartbeat(WorkerId{0});
    h.heartbeat(h.client());
  }
  ASSERT_TRUE(h.job_finished(job));
  EXPECT_EQ(h.finished(job).end, JobEnd::NoWorker);
  h.expect_no_more_decisions();
}

TEST(SchedulerAffinity, JobWaitsWithoutLimitWhileNoWorkerIsLive) {
  SchedulerHarness h({.no_worker_timeout = 1s});
  const auto job = h.submit("square", 3);
  for (int i = 0; i < 60; ++i) {
    h.advance(1s);
    h.heartbeat(h.client());
  }
  EXPECT_FALSE(h.job_finished(job));
  const auto worker = h.add_worker({.slots = 3});
  EXPECT_THAT(h.take_sent(worker), SizeIs(3));
  h.expect_no_more_decisions();
}

TEST(SchedulerAffinity, JobIsNotFailedWhenAWorkerWithTheFunctionArrivesInTime) {
  SchedulerHarness h({.no_worker_timeout = 3s});
  const auto other = h.add_worker({.functions = {"cube"}});
  const auto job = h.submit("square", 1);
  h.advance(1s);
  h.heartbeat(other);
  h.heartbeat(h.client());
  const auto worker = h.add_worker();
  for (int i = 0; i < 5; ++i) {
    h.advance(1s);
    h.heartbeat(other);
    h.heartbeat(worker);
    h.heartbeat(h.client());
  }
  EXPECT_FALSE(h.job_finished(job));
  EXPECT_THAT(h.take_sent(worker), SizeIs(1));
  h.expect_no_more_decisions();
}

TEST(SchedulerAffinity, LastWorkerWithTheFunctionLeavingStartsTheClock) {
  SchedulerHarness h({.no_worker_timeout = 2s});
  const auto squares = h.add_worker();
  const auto cubes = h.add_worker({.functions = {"cube"}});
  const auto job = h.submit("square", 5);
  h.take_sent(squares);
  h.worker_left(squares);
  for (int i = 0; i < 4; ++i) {
    h.advance(1s);
    h.heartbeat(cubes);
    h.heartbeat(h.client());
  }
  ASSERT_TRUE(h.job_finished(job));
  EXPECT_EQ(h.finished(job).end, JobEnd::NoWorker);
  h.expect_no_more_decisions();
}

}  // namespace
}  // namespace acme::test
