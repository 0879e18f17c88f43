// PROTOCOL.md §6.2.1: a client's submission window bounds the tasks the broker holds for it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "harness.hpp"

namespace acme::test {
namespace {

using ::testing::IsEmpty;
using ::testing::SizeIs;

TEST(SchedulerFlow, WindowShrinksWithHeldTasks) {
  SchedulerHarness h({.client_window = 100});
  EXPECT_EQ(h.scheduler().window(h.client()), 100U);
  h.submit("square", 30, {.total = 500});
  EXPECT_EQ(h.scheduler().window(h.client()), 70U);
  h.expect_no_more_decisions();
}

TEST(SchedulerFlow, StalledClientHearsWhenHalfTheWindowIsFree) {
  SchedulerHarness h({.client_window = 10});
  const auto worker = h.add_worker({.slots = 1});
  const auto job = h.submit("square", 10, {.total = 100});
  EXPECT_EQ(h.scheduler().window(h.client()), 0U);
  for (int i = 0; i < 4; ++i) h.report_done(worker);
  EXPECT_THAT(h.take_windows(), IsEmpty());  // 4 free: not yet half
  h.report_done(worker);
  const auto windows = h.take_windows();
  ASSERT_THAT(windows, SizeIs(1));
  EXPECT_EQ(windows[0].client, h.client());
  EXPECT_EQ(windows[0].window, 5U);
  h.add_tasks(job, 5);
  h.take_sent(worker);
  h.expect_no_more_decisions();
}

TEST(SchedulerFlow, ClientThatNeverFilledItsWindowGetsNoWindowMessages) {
  SchedulerHarness h({.client_window = 10});
  const auto worker = h.add_worker({.slots = 1});
  h.submit("square", 3);
  EXPECT_EQ(h.scheduler().window(h.client()), 7U);
  for (int i = 0; i < 3; ++i) h.report_done(worker);
  EXPECT_THAT(h.take_windows(), IsEmpty());
  h.take_sent(worker);
  h.expect_no_more_decisions();
}

TEST(SchedulerFlow, CancelReopensTheWindow) {
  SchedulerHarness h({.client_window = 10});
  const auto job = h.submit("square", 10, {.total = 50});
  EXPECT_EQ(h.scheduler().window(h.client()), 0U);
  h.cancel(job);
  const auto windows = h.take_windows();
  ASSERT_THAT(windows, SizeIs(1));
  EXPECT_EQ(windows[0].window, 10U);
  h.expect_no_more_decisions();
}

}  // namespace
}  // namespace acme::test
