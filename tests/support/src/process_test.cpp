// The test kit's own checks: exit codes, output, stdin, the first line, and that a child that
// ignores SIGTERM is still ended by the destructor.
#include <gtest/gtest.h>

#include <acme/test/process.hpp>

#include <signal.h>

namespace acme::test {
namespace {

TEST(Process, RunReturnsCodeAndOutput) {
  const auto r = run({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.code, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
}

TEST(Process, StdinAndEnvironmentReachTheChild) {
  const auto r = run({"/bin/sh", "-c", "cat; echo \"$ACME_TEST_VALUE\""},
                     {.env = {{"ACME_TEST_VALUE", "42"}}, .stdin_text = "a\nb\n"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "a\nb\n42\n");
}

TEST(Process, FirstLineArrivesBeforeTheChildEnds) {
  Process p({"/bin/sh", "-c", "echo ready; exec sleep 30"});
  EXPECT_EQ(p.first_line(5s).value_or("<none>"), "ready");
  EXPECT_TRUE(p.running());
}

TEST(Process, DestructorEndsAChildThatIgnoresSigterm) {
  pid_t pid = 0;
  {
    Process p({"/bin/sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done"});
    ASSERT_TRUE(p.first_line(5s));
    pid = p.pid();
  }
  EXPECT_NE(::kill(pid, 0), 0);  // reaped: no such process
}

TEST(Process, ExitBySignalIs128PlusSignal) {
  Process p({"/bin/sh", "-c", "kill -KILL $$"});
  EXPECT_EQ(p.wait(10s), 128 + SIGKILL);
}

TEST(WaitUntil, ReturnsFalseAtTheDeadline) {
  const auto start = Clock::now();
  EXPECT_FALSE(wait_until([] { return false; }, 50ms));
  EXPECT_GE(Clock::now() - start, 50ms);
}

}  // namespace
}  // namespace acme::test
