// PROTOCOL.md §10: requeue on death, poison after max_retries, exactly-once delivery.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.hpp"

namespace acme::test {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;

// Lets the given worker die of silence while `keep` stays in touch.
void let_die(SchedulerHarness& h, const std::vector<WorkerId>& keep) {
  for (int i = 0; i < 3; ++i) {
    h.advance(1s);
    for (const auto worker : keep) h.heartbeat(worker);
  }
}

TEST(SchedulerRetry, TaskOnMaxRetriesDeadWorkersIsPoisoned) {
  SchedulerHarness h({.max_retries = 3});
  const auto job = h.submit("square", 1);
  for (std::uint32_t attempt = 1; attempt <= 3; ++attempt) {
    const auto victim = h.add_worker({.slots = 1});
    const auto sent = h.take_sent(victim);
    ASSERT_THAT(sent, SizeIs(1));
    EXPECT_EQ(sent[0].attempt, attempt);
    let_die(h, {});
  }
  const auto poisoned = h.take_poisoned();
  ASSERT_THAT(poisoned, SizeIs(1));
  EXPECT_EQ(poisoned[0].index, 0U);
  EXPECT_EQ(poisoned[0].attempts, 3U);
  ASSERT_TRUE(h.job_finished(job));
  EXPECT_EQ(h.finished(job).failed, 1U);
  EXPECT_EQ(h.finished(job).end, JobEnd::Completed);
  h.expect_no_more_decisions();
}

TEST(SchedulerRetry, PoisonedTaskDoesNotStopTheRestOfTheJob) {
  SchedulerHarness h({.max_retries = 2});
  const auto job = h.submit("square", 10);
  for (int round = 0; round < 2; ++round) {
    const auto victim = h.add_worker({.slots = 1});  // gets task 0 (requeued to the front)
    ASSERT_EQ(h.take_sent(victim).at(0).index, 0U);
    let_die(h, {});
  }
  ASSERT_THAT(h.take_poisoned(), SizeIs(1));
  const auto healthy = h.add_worker({.slots = 4});
  while (!h.job_finished(job)) h.report_done(healthy);
  h.take_sent(healthy);
  EXPECT_EQ(h.finished(job).ok, 9U);
  EXPECT_EQ(h.finished(job).failed, 1U);
  EXPECT_THAT(h.delivered(job), SizeIs(10));
  h.expect_no_more_decisions();
}

TEST(SchedulerRetry, PrefetchedTasksOfADeadWorkerAreNotBlamed) {
  SchedulerHarness h({.max_retries = 1});  // one death poisons a task that was running
  const auto job = h.submit("square", 5);
  const auto victim = h.add_worker({.slots = 2, .prefetch = 3});
  ASSERT_THAT(h.take_sent(victim), SizeIs(5));
  let_die(h, {});
  // Only the oldest 2 (slots) may have been running: they are poisoned; 3 are requeued.
  const auto poisoned = h.take_poisoned();
  ASSERT_THAT(poisoned, SizeIs(2));
  EXPECT_EQ(poisoned[0].index + poisoned[1].index, 1U);  // indices 0 and 1
  const auto lost = h.take_lost_workers();
  ASSERT_THAT(lost, SizeIs(1));
  EXPECT_EQ(lost[0].requeued, 3U);
  EXPECT_EQ(lost[0].poisoned, 2U);
  EXPECT_EQ(h.scheduler().queued(job), 3U);
  h.expect_no_more_decisions();
}

TEST(SchedulerRetry, InnocentTaskThatRanBesideAPoisonTaskIsNotPoisoned) {
  SchedulerHarness h({.max_retries = 2});
  const auto job = h.submit("square", 2);
  const auto first = h.add_worker({.slots = 2});
  ASSERT_THAT(h.take_sent(first), SizeIs(2));
  let_die(h, {});  // both were running: both are suspects now
  // Suspects never share a worker: each goes to its own.
  const auto a = h.add_worker({.slots = 2});
  const auto sent_a = h.take_sent(a);
  ASSERT_THAT(sent_a, SizeIs(1));
  const auto b = h.add_worker({.slots = 2});
  const auto sent_b = h.take_sent(b);
  ASSERT_THAT(sent_b, SizeIs(1));
  EXPECT_NE(sent_a[0].index, sent_b[0].index);
  // The poison task (on a) kills its second worker; the innocent one (on b) completes.
  let_die(h, {b});
  const auto poisoned = h.take_poisoned();
  ASSERT_THAT(poisoned, SizeIs(1));
  EXPECT_EQ(poisoned[0].index, sent_a[0].index);
  h.report_done(b);
  ASSERT_TRUE(h.job_finished(job));
  EXPECT_EQ(h.finished(job).ok, 1U);
  EXPECT_EQ(h.finished(job).failed, 1U);
  h.expect_no_more_decisions();
}

TEST(SchedulerRetry, SuspectWaitsForAWorkerWithoutOneWhileFreshTasksFlow) {
  SchedulerHarness h({.max_retries = 3});
  const auto job = h.submit("square", 10);
  const auto first = h.add_worker({.slots = 2});
  ASSERT_THAT(h.take_sent(first), SizeIs(2));
  let_die(h, {});
  const auto next = h.add_worker({.slots = 2});
  // One suspect, then a fresh task, never both suspects.
  const auto sent = h.take_sent(next);
  ASSERT_THAT(sent, SizeIs(2));
  EXPECT_EQ(sent[0].attempt, 2U);
  EXPECT_EQ(sent[1].attempt, 1U);
  EXPECT_EQ(sent[1].index, 2U);
  h.report_done(next);  // the suspect done: the other suspect may come now
  const auto again = h.take_sent(next);
  ASSERT_THAT(again, SizeIs(2));
  EXPECT_EQ(again[0].attempt, 2U);
  EXPECT_EQ(h.scheduler().queued(job), 6U);
  h.expect_no_more_decisions();
}

TEST(SchedulerRetry, AFinishedTaskWhoseResultDiedWithItsWorkerIsNotPoisoned) {
  // A worker sends task 0's result and starts task 1, which kills it at once: the result is
  // lost with the process (libzmq had not written it yet), so the broker blames task 0. Task 1
  // was "prefetched", so it is not blamed, but it is a suspect too: the two never again run on
  // one worker, and the same loss cannot blame task 0 a second time.
  SchedulerHarness h({.max_retries = 2});
  const auto job = h.submit("square", 8);
  const auto first = h.add_worker({.slots = 1, .prefetch = 1});
  const auto sent = h.take_sent(first);
  ASSERT_THAT(sent, SizeIs(2));
  let_die(h, {});
  // Both suspects, each on its own worker, with fresh tasks beside them.
  const auto a = h.add_worker({.slots = 1, .prefetch = 1});
  const auto sent_a = h.take_sent(a);
  const auto b = h.add_worker({.slots = 1, .prefetch = 1});
  const auto sent_b = h.take_sent(b);
  ASSERT_THAT(sent_a, SizeIs(2));
  ASSERT_THAT(sent_b, SizeIs(2));
  EXPECT_EQ(sent_a[0].index, 0U);
  EXPECT_EQ(sent_a[0].attempt, 2U);
  EXPECT_EQ(sent_a[1].attempt, 1U);  // a fresh task, not the other suspect
  EXPECT_EQ(sent_b[0].index, 1U);
  EXPECT_EQ(sent_b[0].attempt, 2U);
  EXPECT_EQ(sent_b[1].attempt, 1U);
  // Task 1 kills b while running first there: now it is blamed; the next worker gets it
  // first again, and it kills that one too.
  let_die(h, {a});
  const auto c = h.add_worker({.slots = 1, .prefetch = 1});
  const auto sent_c = h.take_sent(c);
  ASSERT_THAT(sent_c, SizeIs(2));
  EXPECT_EQ(sent_c[0].index, 1U);
  EXPECT_EQ(sent_c[0].attempt, 3U);
  let_die(h, {a});
  const auto poisoned = h.take_poisoned();
  ASSERT_THAT(poisoned, SizeIs(1));
  EXPECT_EQ(poisoned[0].index, 1U);  // the poison task, not the one whose result was lost
  while (!h.job_finished(job)) {
    h.report_done(a);
    h.take_sent(a);
  }
  EXPECT_EQ(h.finished(job).ok, 7U);
  EXPECT_EQ(h.finished(job).failed, 1U);
  h.expect_no_more_decisions();
}

TEST(SchedulerRetry, RequeuedTasksGoFirstInTheirOriginalOrder) {
  SchedulerHarness h;
  const auto job = h.submit("square", 10);
  const auto victim = h.add_worker({.slots = 1, .prefetch = 2});
  ASSERT_THAT(h.take_sent(victim), SizeIs(3));
  let_die(h, {});
  // All three are suspects: one per worker at a time, each first in its batch, in the order
  // they were first sent; fresh tasks fill the rest.
  const auto next = h.add_worker({.slots = 4});
  for (const TaskIndex suspect : {0U, 1U, 2U}) {
    const auto sent = h.take_sent(next);
    ASSERT_THAT(sent, ::testing::Not(IsEmpty()));
    EXPECT_EQ(sent[0].index, suspect);
    EXPECT_EQ(sent[0].attempt, 2U);
    for (std::size_t i = 1; i < sent.size(); ++i) EXPECT_EQ(sent[i].attempt, 1U);
    h.report_done(next);
  }
  EXPECT_EQ(h.scheduler().queued(job), 0U);
  EXPECT_TRUE(h.job_finished(job));
  EXPECT_EQ(h.finished(job).ok, 10U);
  h.expect_no_more_decisions();
}

TEST(SchedulerDelivery, LateResultAfterRequeueIsDropped) {
  SchedulerHarness h;
  const auto job = h.submit("square", 1);
  const auto frozen = h.add_worker({.slots = 1});
  ASSERT_THAT(h.take_sent(frozen), SizeIs(1));
  const auto awake = h.add_worker({.slots = 1});
  for (int i = 0; i < 3; ++i) {
    h.advance(1s);
    h.heartbeat(awake);
  }
  ASSERT_FALSE(h.scheduler().worker_alive(frozen));
  ASSERT_THAT(h.take_sent(awake), SizeIs(1));
  // The frozen worker wakes up and reports: dropped, not delivered twice.
  EXPECT_EQ(h.report(frozen, job, 0).verdict, scheduler::Verdict::Drop);
  EXPECT_EQ(h.report(awake, job, 0).verdict, scheduler::Verdict::Deliver);
  EXPECT_THAT(h.delivered(job), ElementsAre(0));
  EXPECT_TRUE(h.job_finished(job));
  EXPECT_EQ(h.scheduler().stats().late_results, 1U);
  h.expect_no_more_decisions();
}

TEST(SchedulerDelivery, SecondResultForTheSameTaskIsDropped) {
  SchedulerHarness h;
  const auto worker = h.add_worker({.slots = 1});
  const auto job = h.submit("square", 2);
  EXPECT_EQ(h.report(worker, job, 0).verdict, scheduler::Verdict::Deliver);
  EXPECT_EQ(h.report(worker, job, 0).verdict, scheduler::Verdict::Drop);
  h.take_sent(worker);
  h.report_done(worker);
  EXPECT_THAT(h.delivered(job), ElementsAre(0, 1));
  h.expect_no_more_decisions();
}

TEST(SchedulerDelivery, ResultAfterAnotherWorkerDeliveredIsDropped) {
  SchedulerHarness h;
  const auto job = h.submit("square", 1);
  const auto slow = h.add_worker({.slots = 1});
  h.take_sent(slow);
  h.worker_left(slow);  // BYE: requeued
  const auto fast = h.add_worker({.slots = 1});
  h.take_sent(fast);
  EXPECT_EQ(h.report(fast, job, 0).verdict, scheduler::Verdict::Deliver);
  EXPECT_EQ(h.report(slow, job, 0).verdict, scheduler::Verdict::Drop);
  EXPECT_THAT(h.delivered(job), ElementsAre(0));
  h.expect_no_more_decisions();
}

TEST(SchedulerRetry, ByeRequeuesWithoutBlame) {
  SchedulerHarness h({.max_retries = 1});
  const auto job = h.submit("square", 2);
  const auto leaving = h.add_worker({.slots = 2});
  ASSERT_THAT(h.take_sent(leaving), SizeIs(2));
  h.worker_left(leaving);
  EXPECT_THAT(h.take_poisoned(), IsEmpty());
  EXPECT_THAT(h.take_lost_workers(), IsEmpty());  // a goodbye is not a loss
  EXPECT_EQ(h.scheduler().queued(job), 2U);
  const auto next = h.add_worker({.slots = 2});
  const auto sent = h.take_sent(next);
  ASSERT_THAT(sent, SizeIs(2));
  EXPECT_EQ(sent[0].attempt, 2U);
  h.report_done(next);
  EXPECT_EQ(h.finished(job).ok, 2U);
  h.expect_no_more_decisions();
}

TEST(SchedulerRetry, FunctionErrorIsDeliveredNotRetriedByDefault) {
  SchedulerHarness h;
  const auto worker = h.add_worker({.slots = 1});
  const auto job = h.submit("square", 1);
  const auto verdict = h.report(worker, job, 0, protocol::TaskStatus::Failed);
  EXPECT_EQ(verdict.verdict, scheduler::Verdict::Deliver);
  EXPECT_EQ(verdict.attempt, 1U);
  h.take_sent(worker);
  ASSERT_TRUE(h.job_finished(job));
  EXPECT_EQ(h.finished(job).failed, 1U);
  h.expect_no_more_decisions();
}

TEST(SchedulerRetry, RetryOnErrorRetriesUntilMaxRetriesThenDelivers) {
  SchedulerHarness h({.max_retries = 3});
  const auto worker = h.add_worker({.slots = 1});
  const auto job = h.submit("square", 1, {.max_retries = 3, .retry_on_error = true});
  EXPECT_EQ(h.report(worker, job, 0, protocol::TaskStatus::Failed).verdict,
            scheduler::Verdict::Retry);
  EXPECT_EQ(h.report(worker, job, 0, protocol::TaskStatus::TimedOut).verdict,
            scheduler::Verdict::Retry);
  const auto last = h.report(worker, job, 0, protocol::TaskStatus::Failed);
  EXPECT_EQ(last.verdict, scheduler::Verdict::Deliver);
  EXPECT_EQ(last.attempt, 3U);
  const auto sent = h.take_sent(worker);
  ASSERT_THAT(sent, SizeIs(3));
  EXPECT_EQ(sent[2].attempt, 3U);
  EXPECT_EQ(h.finished(job).failed, 1U);
  h.expect_no_more_decisions();
}

TEST(SchedulerRetry, UnsupportedGoesElsewhereAndTheWorkerStopsGettingTheFunction) {
  SchedulerHarness h;
  const auto liar = h.add_worker({.slots = 1, .functions = {"square", "cube"}});
  const auto job = h.submit("square", 2);
  ASSERT_THAT(h.take_sent(liar), SizeIs(1));
  EXPECT_EQ(h.report(liar, job, 0, protocol::TaskStatus::Unsupported).verdict,
            scheduler::Verdict::Retry);
  EXPECT_THAT(h.take_sent(liar), IsEmpty());
  const auto honest = h.add_worker({.slots = 2});
  const auto sent = h.take_sent(honest);
  ASSERT_THAT(sent, SizeIs(2));
  EXPECT_EQ(sent[0].index, 0U);
  EXPECT_EQ(sent[0].attempt, 2U);
  h.expect_no_more_decisions();
}

}  // namespace
}  // namespace acme::test
