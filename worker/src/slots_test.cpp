// detect_slots(): batch-system variables first, then CPU affinity.
#include <gtest/gtest.h>

#include "test_support.hpp"
#include <sched.h>

namespace acme {
namespace {

using test::ScopedEnv;

/// Clears every variable detect_slots reads, for one test.
struct NoBatchSystem {
  ScopedEnv slurm{"SLURM_CPUS_PER_TASK", nullptr};
  ScopedEnv sge{"NSLOTS", nullptr};
  ScopedEnv pbs{"NCPUS", nullptr};
  ScopedEnv pbs_ncpus{"PBS_NCPUS", nullptr};
  ScopedEnv torque{"PBS_NP", nullptr};
};

std::uint32_t affinity() {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  return static_cast<std::uint32_t>(CPU_COUNT(&set));
}

TEST(DetectSlots, WithoutABatchSystemUsesAffinity) {
  const NoBatchSystem clean;
  const auto detected = detect_slots();
  EXPECT_EQ(detected.slots, affinity());
  EXPECT_EQ(detected.source, "affinity");
}

TEST(DetectSlots, SlurmFirst) {
  const NoBatchSystem clean;
  const ScopedEnv slurm("SLURM_CPUS_PER_TASK", "7");
  const ScopedEnv sge("NSLOTS", "3");
  const auto detected = detect_slots();
  EXPECT_EQ(detected.slots, 7U);
  EXPECT_EQ(detected.source, "SLURM_CPUS_PER_TASK");
}

TEST(DetectSlots, SgeThenPbsThenPbsNcpusThenTorque) {
  const NoBatchSystem clean;
  {
    const ScopedEnv sge("NSLOTS", "3");
    const ScopedEnv pbs("NCPUS", "5");
    EXPECT_EQ(detect_slots().slots, 3U);
    EXPECT_EQ(detect_slots().source, "NSLOTS");
  }
  {
    const ScopedEnv pbs("NCPUS", "5");
    const ScopedEnv pbs_ncpus("PBS_NCPUS", "4");
    const ScopedEnv torque("PBS_NP", "6");
    EXPECT_EQ(detect_slots().slots, 5U);
    EXPECT_EQ(detect_slots().source, "NCPUS");
  }
  {
    const ScopedEnv pbs_ncpus("PBS_NCPUS", "4");
    const ScopedEnv torque("PBS_NP", "6");
    EXPECT_EQ(detect_slots().slots, 4U);
    EXPECT_EQ(detect_slots().source, "PBS_NCPUS");
  }
  const ScopedEnv torque("PBS_NP", "6");
  EXPECT_EQ(detect_slots().slots, 6U);
  EXPECT_EQ(detect_slots().source, "PBS_NP");
}

TEST(DetectSlots, IgnoresValuesThatAreNotPositiveIntegers) {
  const NoBatchSystem clean;
  for (const char* bad : {"", "0", "-2", "4x", "abc"}) {
    const ScopedEnv slurm("SLURM_CPUS_PER_TASK", bad);
    EXPECT_EQ(detect_slots().source, "affinity") << "value '" << bad << "'";
  }
}

}  // namespace
}  // namespace acme
