// PROTOCOL.md §6.2.7: the task counts a STATUS reply reports, read from the scheduler's state.
#include <gtest/gtest.h>

#include "harness.hpp"

namespace acme::test {
namespace {

using protocol::TaskStatus;
using scheduler::Load;

TEST(SchedulerLoad, EmptySchedulerHoldsNothing) {
  SchedulerHarness h;
  EXPECT_EQ(h.scheduler().load(), Load{});
  EXPECT_EQ(h.scheduler().running(WorkerId{0}), 0U);  // no such worker
  h.expect_no_more_decisions();
}

TEST(SchedulerLoad, CountsQueuedRunningAndFinishedTasks) {
  SchedulerHarness h;
  const auto a = h.add_worker({.slots = 2});
  const auto b = h.add_worker({.slots = 1});
  const auto job = h.submit("square", 5, {.total = 8});
  EXPECT_EQ(h.scheduler().load(), (Load{.jobs = 1, .queued = 2, .running = 3}));
  EXPECT_EQ(h.scheduler().running(a), 2U);
  EXPECT_EQ(h.scheduler().running(b), 1U);

  EXPECT_EQ(h.report_done(a), 2U);  // two ok; the two queued tasks go to a
  EXPECT_EQ(h.scheduler().load(), (Load{.jobs = 1, .queued = 0, .running = 3, .done = 2}));
  EXPECT_EQ(h.report_done(b, TaskStatus::Failed), 1U);
  EXPECT_EQ(h.scheduler().load(),
            (Load{.jobs = 1, .queued = 0, .running = 2, .done = 2, .failed = 1}));

  h.add_tasks(job, 3);  // b is free: one runs there, two wait
  EXPECT_EQ(h.scheduler().load(),
            (Load{.jobs = 1, .queued = 2, .running = 3, .done = 2, .failed = 1}));
  h.take_sent(a);
  h.take_sent(b);
  h.expect_no_more_decisions();
}

TEST(SchedulerLoad, RequeuedTasksCountAsQueuedAgain) {
  SchedulerHarness h;
  const auto worker = h.add_worker({.slots = 2});
  h.submit("square", 3);
  EXPECT_EQ(h.scheduler().load(), (Load{.jobs = 1, .queued = 1, .running = 2}));
  h.worker_left(worker);  // §10: blameless requeue
  EXPECT_EQ(h.scheduler().load(), (Load{.jobs = 1, .queued = 3, .running = 0}));
  EXPECT_EQ(h.scheduler().running(worker), 0U);
  h.take_sent(worker);
  h.expect_no_more_decisions();
}

TEST(SchedulerLoad, CancelledTasksAreNeitherDoneNorFailed) {
  SchedulerHarness h;
  const auto worker = h.add_worker({.slots = 1});
  const auto job = h.submit("square", 3);
  h.report_oldest(worker, 1);
  h.cancel(job);
  EXPECT_EQ(h.scheduler().load(), (Load{.done = 1}));
  EXPECT_EQ(h.scheduler().stats().tasks_ok, 1U);
  EXPECT_EQ(h.scheduler().stats().tasks_failed, 0U);
  h.take_sent(worker);
  h.take_cancels(worker);
  h.expect_no_more_decisions();
}

}  // namespace
}  // namespace acme::test
