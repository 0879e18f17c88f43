// PROTOCOL.md §8: tasks go out only against credit, in batches, with no idle credit left while
// a task it could run is queued.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.hpp"

namespace acme::test {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

std::vector<TaskIndex> indices(const std::vector<protocol::TaskAssignment>& tasks) {
  std::vector<TaskIndex> out;
  for (const auto& task : tasks) out.push_back(task.index);
  return out;
}

TEST(SchedulerDispatch, SendsNoMoreThanSlotsPlusPrefetch) {
  SchedulerHarness h;
  const auto worker = h.add_worker({.slots = 2, .prefetch = 1});
  h.submit("square", 10);
  EXPECT_THAT(indices(h.take_sent(worker)), ElementsAre(0, 1, 2));
  EXPECT_THAT(h.tasks_on(worker), SizeIs(3));
  h.expect_no_more_decisions();
}

TEST(SchedulerDispatch, FreeCoresOfAllWorkersAreFilledBeforeAnyPrefetch) {
  SchedulerHarness h;
  const auto a = h.add_worker({.slots = 1, .prefetch = 1});
  const auto b = h.add_worker({.slots = 1, .prefetch = 1});
  const auto c = h.add_worker({.slots = 2, .prefetch = 4});
  const auto job = h.submit("square", 4);
  // Four tasks, four free cores: one each on a and b, two on c; nobody queues one ahead.
  EXPECT_THAT(h.take_sent(a), SizeIs(1));
  EXPECT_THAT(h.take_sent(b), SizeIs(1));
  EXPECT_THAT(h.take_sent(c), SizeIs(2));
  h.expect_no_more_decisions();
  // More work than cores: then prefetch fills too, up to each worker's credit.
  h.submit("square", 20);
  EXPECT_THAT(h.take_sent(a), SizeIs(1));
  EXPECT_THAT(h.take_sent(b), SizeIs(1));
  EXPECT_THAT(h.take_sent(c), SizeIs(4));
  h.expect_no_more_decisions();
  (void)job;
}

TEST(SchedulerDispatch, AWorkerWithOnlyPrefetchRoomIsWokenAfterOneWithAFreeCore) {
  SchedulerHarness h;
  const auto c = h.add_worker({.slots = 1, .prefetch = 1});
  const auto d = h.add_worker({.slots = 1, .prefetch = 1});
  const auto first = h.submit("square", 1);
  const auto on_c = h.take_sent(c).size();
  const auto on_d = h.take_sent(d).size();
  ASSERT_EQ(on_c + on_d, 1U);
  const auto busy = on_c == 1 ? c : d;  // one of them runs it
  const auto other = busy == c ? d : c;
  h.expect_no_more_decisions();
  // A second one-task job: the worker with a free core runs it, not the busy one's prefetch.
  h.submit("square", 1);
  EXPECT_THAT(h.take_sent(other), SizeIs(1));
  EXPECT_THAT(h.take_sent(busy), IsEmpty());
  h.expect_no_more_decisions();
  (void)first;
}

TEST(SchedulerDispatch, QueuesOfOtherFunctionsDoNotSkipTheFreeCoresFirst) {
  SchedulerHarness h;
  h.submit("cube", 1000);  // no worker offers cube
  const auto a = h.add_worker({.slots = 1, .prefetch = 1});
  const auto b = h.add_worker({.slots = 1, .prefetch = 1});
  h.submit("square", 2);
  EXPECT_THAT(h.take_sent(a), SizeIs(1));
  EXPECT_THAT(h.take_sent(b), SizeIs(1));
  h.expect_no_more_decisions();
}

TEST(SchedulerDispatch, HugeCoresAndSlotsFromPeersDoNotOverflowTheCredit) {
  SchedulerHarness h;
  const auto worker = h.add_worker({.slots = UINT32_MAX - 1, .prefetch = 1});
  h.submit("square", 3, {.cores = UINT32_MAX - 1});
  EXPECT_THAT(h.take_sent(worker), SizeIs(1));  // one task fills every core and the credit
  h.expect_no_more_decisions();
}

TEST(SchedulerDispatch, EachResultReturnsOneCredit) {
  SchedulerHarness h;
  const auto worker = h.add_worker({.slots = 2});
  const auto job = h.submit("square", 5);
  EXPECT_THAT(indices(h.take_sent(worker)), ElementsAre(0, 1));
  h.report(worker, job, 0);
  EXPECT_THAT(indices(h.take_sent(worker)), ElementsAre(2));
  h.report(worker, job, 1);
  h.report(worker, job, 2);
  EXPECT_THAT(indices(h.take_sent(worker)), ElementsAre(3, 4));
  h.report_done(worker);
  EXPECT_TRUE(h.job_finished(job));
  EXPECT_EQ(h.finished(job).ok, 5U);
  EXPECT_EQ(h.finished(job).end, JobEnd::Completed);
  h.expect_no_more_decisions();
}

TEST(SchedulerDispatch, BatchesUpToMaxBatchPerMessage) {
  SchedulerHarness h({.max_batch = 4});
  const auto worker = h.add_worker({.slots = 2, .prefetch = 8});
  h.submit("square", 100);
  const auto batches = h.take_batches(worker);
  ASSERT_THAT(batches, SizeIs(3));  // 10 credits in messages of at most 4
  EXPECT_THAT(batches[0].tasks, SizeIs(4));
  EXPECT_THAT(batches[1].tasks, SizeIs(4));
  EXPECT_THAT(batches[2].tasks, SizeIs(2));
  h.expect_no_more_decisions();
}

TEST(SchedulerDispatch, ResultsArrivingTogetherRefillInOneBatch) {
  SchedulerHarness h;
  const auto worker = h.add_worker({.slots = 4, .prefetch = 4});
  const auto job = h.submit("square", 100);
  ASSERT_THAT(h.take_sent(worker), SizeIs(8));
  // The broker drains its socket before it asks for decisions: four results, one TASKS.
  auto& s = h.scheduler();
  for (TaskIndex i = 0; i < 4; ++i) {
    ASSERT_EQ(s.task_done(worker, job, i, protocol::TaskStatus::Ok, h.now()).verdict,
              scheduler::Verdict::Deliver);
  }
  h.dispatch();
  const auto batches = h.take_batches(worker);
  ASSERT_THAT(batches, SizeIs(1));
  EXPECT_THAT(indices(batches[0].tasks), ElementsAre(8, 9, 10, 11));
  h.expect_no_more_decisions();
}

TEST(SchedulerDispatch, TasksSubmittedBeforeAnyWorkerWaitForOne) {
  SchedulerHarness h;
  const auto job = h.submit("square", 3);
  h.expect_no_more_decisions();
  EXPECT_EQ(h.scheduler().queued(job), 3U);
  const auto worker = h.add_worker({.slots = 8});
  EXPECT_THAT(indices(h.take_sent(worker)), ElementsAre(0, 1, 2));
  h.expect_no_more_decisions();
}

TEST(SchedulerDispatch, TasksArrivingInChunksGoToIdleWorkers) {
  SchedulerHarness h;
  const auto a = h.add_worker({.slots = 2});
  const auto b = h.add_worker({.slots = 2});
  const auto job = h.submit("square", 1, {.total = 5});
  EXPECT_EQ(h.take_sent(a).size() + h.take_sent(b).size(), 1U);
  h.add_tasks(job, 4);
  EXPECT_EQ(h.take_sent(a).size() + h.take_sent(b).size(), 3U);  // 4 credits were free
  EXPECT_EQ(h.scheduler().queued(job), 1U);
  h.expect_no_more_decisions();
}

TEST(SchedulerDispatch, OneSmallJobWakesOnlyTheWorkersItNeeds) {
  SchedulerHarness h;
  std::vector<WorkerId> workers;
  for (int i = 0; i < 100; ++i) workers.push_back(h.add_worker({.slots = 1}));
  h.submit("square", 2);
  std::size_t sent = 0;
  for (const auto worker : workers) sent += h.take_sent(worker).size();
  EXPECT_EQ(sent, 2U);
  h.expect_no_more_decisions();
}

TEST(SchedulerDispatch, LoadSpreadsAcrossWorkersWhenTasksAreFewerThanCredits) {
  SchedulerHarness h;
  const auto a = h.add_worker({.slots = 4});
  const auto b = h.add_worker({.slots = 4});
  h.submit("square", 8);
  EXPECT_THAT(h.take_sent(a), SizeIs(4));
  EXPECT_THAT(h.take_sent(b), SizeIs(4));
  h.expect_no_more_decisions();
}

TEST(SchedulerDispatch, MultiCoreTasksUseCoresAsCredit) {
  SchedulerHarness h;
  const auto worker = h.add_worker({.slots = 4, .prefetch = 4});
  const auto job = h.submit("square", 10, {.cores = 4});
  EXPECT_THAT(h.take_sent(worker), SizeIs(2));  // 8 credits / 4 cores
  h.report_oldest(worker, 1);
  EXPECT_THAT(h.take_sent(worker), SizeIs(1));
  EXPECT_EQ(h.scheduler().queued(job), 7U);
  h.expect_no_more_decisions();
}

TEST(SchedulerDispatch, ReportOfTaskNeverSentIsDropped) {
  SchedulerHarness h;
  const auto worker = h.add_worker({.slots = 1});
  const auto job = h.submit("square", 3);
  ASSERT_THAT(h.take_sent(worker), SizeIs(1));
  EXPECT_EQ(h.report(worker, job, 2).verdict, scheduler::Verdict::Drop);
  EXPECT_EQ(h.scheduler().stats().late_results, 1U);
  EXPECT_THAT(h.delivered(job), IsEmpty());
  h.expect_no_more_decisions();
}

TEST(SchedulerDispatch, UnknownWorkerEventsAreCountedNotThrown) {
  SchedulerHarness h;
  const auto job = h.submit("square", 1);
  auto& s = h.scheduler();
  s.heard_from(WorkerId{42}, h.now());
  EXPECT_EQ(s.task_done(WorkerId{42}, job, 0, protocol::TaskStatus::Ok, h.now()).verdict,
            scheduler::Verdict::Drop);
  s.worker_left(WorkerId{42}, h.now());
  s.heard_from(ClientId{42}, h.now());
  EXPECT_EQ(s.stats().unknown_peers, 4U);
  h.expect_no_more_decisions();
}

}  // namespace
}  // namespace acme::test
