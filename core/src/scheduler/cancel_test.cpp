// PROTOCOL.md §6.1.2, §6.4.3: cancelling a job drops its queue and frees its workers at once.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.hpp"

namespace acme::test {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

TEST(SchedulerCancel, CancelFreesWorkersForTheNextJob) {
  SchedulerHarness h;
  const auto worker = h.add_worker({.slots = 2});
  const auto first = h.submit("square", 100);
  ASSERT_THAT(h.take_sent(worker), SizeIs(2));
  const auto second = h.submit("square", 3);
  EXPECT_THAT(h.take_sent(worker), IsEmpty());  // busy
  h.cancel(first);
  const auto cancels = h.take_cancels(worker);
  ASSERT_THAT(cancels, SizeIs(1));
  EXPECT_EQ(cancels[0].job, first);
  EXPECT_THAT(cancels[0].tasks, ElementsAre(0, 1));
  ASSERT_TRUE(h.job_finished(first));
  EXPECT_EQ(h.finished(first).end, JobEnd::Cancelled);
  // The freed credits go to the next job at once, before any result of the cancelled tasks.
  const auto sent = h.take_batches(worker);
  ASSERT_THAT(sent, SizeIs(1));
  EXPECT_EQ(sent[0].job, second);
  EXPECT_THAT(sent[0].tasks, SizeIs(2));
  h.expect_no_more_decisions();
}

TEST(SchedulerCancel, ResultOfACancelledTaskIsDropped) {
  SchedulerHarness h;
  const auto worker = h.add_worker({.slots = 1});
  const auto job = h.submit("square", 5);
  h.take_sent(worker);
  h.cancel(job);
  h.take_cancels(worker);
  EXPECT_EQ(h.report(worker, job, 0).verdict, scheduler::Verdict::Drop);
  EXPECT_THAT(h.delivered(job), IsEmpty());
  h.expect_no_more_decisions();
}

TEST(SchedulerCancel, CancelOfAQueuedJobTouchesNoWorker) {
  SchedulerHarness h;
  const auto job = h.submit("square", 5);
  h.cancel(job);
  ASSERT_TRUE(h.job_finished(job));
  EXPECT_FALSE(h.scheduler().job_open(job));
  h.cancel(job);  // twice: nothing happens
  h.add_worker({.slots = 4});
  h.expect_no_more_decisions();
}

TEST(SchedulerCancel, CancelReachesEveryWorkerHoldingTasks) {
  SchedulerHarness h;
  const auto a = h.add_worker({.slots = 2});
  const auto b = h.add_worker({.slots = 2});
  const auto job = h.submit("square", 10);
  h.take_sent(a);
  h.take_sent(b);
  h.cancel(job);
  EXPECT_THAT(h.take_cancels(a), SizeIs(1));
  EXPECT_THAT(h.take_cancels(b), SizeIs(1));
  EXPECT_THAT(h.tasks_on(a), IsEmpty());
  EXPECT_THAT(h.tasks_on(b), IsEmpty());
  h.expect_no_more_decisions();
}

}  // namespace
}  // namespace acme::test
