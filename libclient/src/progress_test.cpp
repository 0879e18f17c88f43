// The progress line: k/N, percentage, rate, ETA, failures.
#include "progress.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace acme::detail {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(Progress, LineShowsCountPercentageAndFailures) {
  Progress progress("square", 10, /*enabled=*/false);
  for (int i = 0; i < 5; ++i) progress.tick(false);
  progress.tick(true);
  EXPECT_THAT(progress.line(), AllOf(HasSubstr("square ["), HasSubstr("] 6/10 60%"),
                                     HasSubstr("/s"), HasSubstr("(1 failed)")));
}

TEST(Progress, FinishedLineSaysDone) {
  Progress progress("f", 2, false);
  progress.tick(false);
  progress.tick(false);
  EXPECT_THAT(progress.line(),
              AllOf(HasSubstr("2/2 100%"), HasSubstr("done in"), Not(HasSubstr("failed"))));
}

}  // namespace
}  // namespace acme::detail
