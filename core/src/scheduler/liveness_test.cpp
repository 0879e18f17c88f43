// PROTOCOL.md §9: any message is a heartbeat; silence for liveness x interval means dead.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.hpp"

namespace acme::test {
namespace {

using ::testing::IsEmpty;
using ::testing::SizeIs;

TEST(SchedulerLiveness, SilentWorkerLosesItsTasksToALiveOne) {
  SchedulerHarness h;  // default Config: 3 x 1 s liveness; time starts at 0
  const auto quiet = h.add_worker({.slots = 2});
  const auto loud = h.add_worker({.slots = 2});
  const auto job = h.submit("square", 4);
  const auto quiet_tasks = h.take_sent(quiet);
  ASSERT_THAT(quiet_tasks, SizeIs(2));
  ASSERT_THAT(h.take_sent(loud), SizeIs(2));

  h.advance(2s);
  h.report_done(loud);  // loud finishes its 2 tasks and is heard from at t = 2 s
  h.advance(1001ms);    // quiet: 3.001 s of silence

  EXPECT_FALSE(h.scheduler().worker_alive(quiet));
  EXPECT_THAT(h.tasks_on(quiet), IsEmpty());
  // quiet's two tasks were both running: suspects go out one per worker at a time (§10).
  const auto retried = h.take_sent(loud);
  ASSERT_THAT(retried, SizeIs(1));
  EXPECT_EQ(retried[0].index, quiet_tasks[0].index);
  EXPECT_EQ(retried[0].attempt, 2U);
  const auto lost = h.take_lost_workers();
  ASSERT_THAT(lost, SizeIs(1));
  EXPECT_EQ(lost[0].worker, quiet);
  EXPECT_EQ(lost[0].requeued, 2U);
  h.report_done(loud);
  const auto second = h.take_sent(loud);
  ASSERT_THAT(second, SizeIs(1));
  EXPECT_EQ(second[0].index, quiet_tasks[1].index);
  h.report_done(loud);
  EXPECT_TRUE(h.job_finished(job));
  EXPECT_EQ(h.finished(job).ok, 4U);
  h.expect_no_more_decisions();
}

TEST(SchedulerLiveness, HeartbeatsKeepAnIdleWorkerAlive) {
  SchedulerHarness h;
  const auto worker = h.add_worker();
  for (int i = 0; i < 10; ++i) {
    h.advance(1s);
    h.heartbeat(worker);
  }
  EXPECT_TRUE(h.scheduler().worker_alive(worker));
  EXPECT_THAT(h.take_lost_workers(), IsEmpty());
  h.expect_no_more_decisions();
}

TEST(SchedulerLiveness, WorkerIsDeadExactlyAtTheTimeout) {
  SchedulerHarness h({.heartbeat_interval = 500ms, .liveness = 4});
  const auto worker = h.add_worker();
  h.advance(1999ms);
  EXPECT_TRUE(h.scheduler().worker_alive(worker));
  h.advance(1ms);
  EXPECT_FALSE(h.scheduler().worker_alive(worker));
  EXPECT_THAT(h.take_lost_workers(), SizeIs(1));
  h.expect_no_more_decisions();
}

TEST(SchedulerLiveness, NextDeadlineIsTheEarliestExpiry) {
  SchedulerHarness h;
  h.add_worker();
  EXPECT_EQ(h.scheduler().next_deadline(), h.now() + 3s);
}

TEST(SchedulerLiveness, SilentClientLosesItsJobsAndFreesWorkers) {
  SchedulerHarness h;
  const auto worker = h.add_worker({.slots = 2});
  const auto other = h.add_client();
  const auto job = h.submit("square", 10, {.client = other});
  ASSERT_THAT(h.take_sent(worker), SizeIs(2));
  for (int i = 0; i < 3; ++i) {  // the worker stays in touch, the client does not
    h.advance(1s);
    h.heartbeat(worker);
    h.heartbeat(h.client());
  }
  EXPECT_THAT(h.take_lost_clients(), testing::ElementsAre(other));
  ASSERT_TRUE(h.job_finished(job));
  EXPECT_EQ(h.finished(job).end, JobEnd::ClientLost);
  const auto cancels = h.take_cancels(worker);
  ASSERT_THAT(cancels, SizeIs(1));
  EXPECT_THAT(cancels[0].tasks, SizeIs(2));
  EXPECT_THAT(h.tasks_on(worker), IsEmpty());
  h.expect_no_more_decisions();
}

TEST(SchedulerLiveness, ClientByeClosesItsJobs) {
  SchedulerHarness h;
  const auto worker = h.add_worker({.slots = 1});
  const auto job = h.submit("square", 3);
  ASSERT_THAT(h.take_sent(worker), SizeIs(1));
  h.client_left(h.client());
  ASSERT_TRUE(h.job_finished(job));
  EXPECT_EQ(h.finished(job).end, JobEnd::ClientLost);
  EXPECT_THAT(h.take_cancels(worker), SizeIs(1));
  h.expect_no_more_decisions();
}

TEST(SchedulerLiveness, ManyWorkersExpireWithoutScanningAll) {
  // 1,000 workers; only the silent half expires, each exactly once.
  SchedulerHarness h;
  std::vector<WorkerId> workers;
  for (int i = 0; i < 1000; ++i) workers.push_back(h.add_worker());
  for (int t = 0; t < 4; ++t) {
    h.advance(1s);
    for (std::size_t i = 0; i < workers.size(); i += 2)
      h.scheduler().heard_from(workers[i], h.now());
  }
  EXPECT_THAT(h.take_lost_workers(), SizeIs(500));
  EXPECT_EQ(h.scheduler().live_workers(), 500U);
  h.expect_no_more_decisions();
}

}  // namespace
}  // namespace acme::test
