// Real SLURM and SGE on this machine (scripts/ci/{slurm,sge}-up.sh bring them up). Skipped when
// the scheduler is not there, failed instead with ACME_REQUIRE_CLUSTERS=1. SGE is recognised by
// /usr/bin/qsub from gridengine-client, never by a qsub on PATH (that may be the PBS stand-in).
#include <cstdlib>

#include <gtest/gtest.h>

#include "launch_test.hpp"

namespace acme::launch_test {
namespace {

using ::acme::test::wait_until;

bool clusters_required() {
  const char* value = std::getenv("ACME_REQUIRE_CLUSTERS");
  return value != nullptr && std::string(value) == "1";
}

/// Skips (or fails, with ACME_REQUIRE_CLUSTERS=1) the current test.
#define ACME_CLUSTER_MISSING(why)                                             \
  do {                                                                        \
    if (clusters_required()) FAIL() << (why) << " (ACME_REQUIRE_CLUSTERS=1)"; \
    GTEST_SKIP() << (why);                                                    \
  } while (false)

class ClusterTest : public LaunchTest {
 protected:
  /// `args` with 2 workers on lo and a launch id.
  std::vector<std::string> args(const std::string& backend, const std::string& id,
                                const std::string& wait, const std::vector<std::string>& extra) {
    std::vector<std::string> result{backend, "--n",    "2",     "--interface", "lo", "--wait",
                                    wait,    "--time", "10:00", "--id",        id};
    result.insert(result.end(), extra.begin(), extra.end());
    return result;
  }

  /// Whether the scheduler still lists `job` (any part of it).
  virtual bool listed(const std::string& job) = 0;
  virtual std::string queue_text() = 0;

  // acme-launch removes state.json when a launch ends: the job ids are read while it runs.
  void expect_jobs_gone(const std::vector<std::string>& jobs) {
    EXPECT_FALSE(jobs.empty()) << "no job id seen in state.json";
    for (const auto& job : jobs) {
      EXPECT_TRUE(wait_until([&] { return !listed(job); }, 20s))
          << "job " << job << " still listed:\n"
          << queue_text();
    }
  }

  void two_workers_map_and_stop(const std::string& backend) {
    const auto id = unique_id(backend);
    const auto launch = acme_launch(args(backend, id, "60", {}), 120s);
    ASSERT_EQ(launch.code, 0) << launch.err << queue_text();
    const auto endpoint = broker_line(launch.out);
    ASSERT_TRUE(endpoint) << "stdout is not one ACME_BROKER= line:\n" << launch.out;
    EXPECT_TRUE(contains(launch.err, "2/2 workers online")) << launch.err;
    EXPECT_TRUE(wait_online(id, 2, 10s)) << status_json().dump(2);
    expect_echo_map(*endpoint, 20);
    const auto jobs = state(id) ? jobs_of(*state(id)) : std::vector<std::string>{};
    const auto stop = acme_launch({"stop", "--id", id}, 60s);
    EXPECT_EQ(stop.code, 0) << stop.err;
    expect_jobs_gone(jobs);
    EXPECT_FALSE(fs::exists(broker_file()));
  }

  void never_starts(const std::string& backend, const std::vector<std::string>& extra,
                    const std::string& reason) {
    const auto id = unique_id(backend);
    auto process = start_launch(args(backend, id, "5", extra));
    std::vector<std::string> jobs;
    wait_until(
        [&] {
          const auto st = state(id);
          return st && !(jobs = jobs_of(*st)).empty();
        },
        30s);
    const auto code = process->wait(60s);
    const auto err = process->err();
    EXPECT_EQ(code, 3) << err;
    EXPECT_TRUE(contains(err, "pending:")) << err;
    EXPECT_TRUE(contains(err, reason)) << err;
    expect_jobs_gone(jobs);
    EXPECT_FALSE(fs::exists(broker_file()));
  }
};

class LaunchSlurm : public ClusterTest {
 protected:
  void SetUp() override {
    LaunchTest::SetUp();
    if (HasFatalFailure()) return;
    if (!fs::exists("/usr/bin/sbatch")) ACME_CLUSTER_MISSING("no /usr/bin/sbatch");
    if (run_tool({"/usr/bin/squeue", "-h"}, 20s).code != 0) {
      ACME_CLUSTER_MISSING("SLURM is not up (squeue fails): scripts/ci/slurm-up.sh starts it");
    }
  }
  bool listed(const std::string& job) override {
    const auto squeue = run_tool({"/usr/bin/squeue", "-h", "-j", job});
    // A job SLURM has forgotten is an error ("Invalid job id"); any other failure: still there.
    if (squeue.code != 0) return !contains(squeue.err, "Invalid job id");
    return !squeue.out.empty();
  }
  std::string queue_text() override {
    const auto squeue = run_tool({"/usr/bin/squeue", "-o", "%i %j %T %r"});
    return squeue.out + squeue.err;
  }
};

class LaunchSge : public ClusterTest {
 protected:
  void SetUp() override {
    LaunchTest::SetUp();
    if (HasFatalFailure()) return;
    if (!fs::exists("/usr/bin/qsub")) ACME_CLUSTER_MISSING("no /usr/bin/qsub (gridengine-client)");
    env_["SGE_ROOT"] = "/var/lib/gridengine";
    env_["SGE_CELL"] = "default";
    // /usr/bin first: a PBS stand-in qsub earlier on PATH is not SGE's.
    env_["PATH"] = "/usr/bin:" + env_["PATH"];
    if (run_tool({"/usr/bin/qstat"}, 20s).code != 0) {
      ACME_CLUSTER_MISSING("SGE is not up (qstat fails): scripts/ci/sge-up.sh starts it");
    }
  }
  bool listed(const std::string& job) override {
    // qstat lists pending, running and deleting jobs: its first column is the job number.
    const auto number = job.substr(0, job.find_first_not_of("0123456789"));
    for (const auto& line : lines_of(run_tool({"/usr/bin/qstat"}).out)) {
      const auto first = line.find_first_not_of(' ');
      if (first != std::string::npos && line.compare(first, number.size() + 1, number + " ") == 0) {
        return true;
      }
    }
    return false;
  }
  std::string queue_text() override { return run_tool({"/usr/bin/qstat", "-u", "*"}).out; }
};

TEST_F(LaunchSlurm, TwoWorkersServeAMapAndStopCancelsTheJobs) {
  two_workers_map_and_stop("slurm");
}

TEST_F(LaunchSlurm, HeldJobTimesOutWithItsReason) {
  never_starts("slurm", {"--extra", "--hold"}, "JobHeldUser");
}

TEST_F(LaunchSlurm, ImpossibleMemoryIsRefusedBySbatch) {
  const auto id = unique_id("slurm");
  const auto launch = acme_launch(args("slurm", id, "30", {"--mem-per-worker", "999G"}), 60s);
  EXPECT_EQ(launch.code, 1) << launch.err;
  EXPECT_TRUE(contains(launch.err, "Requested node configuration is not available") ||
              contains(launch.err, "Memory"))
      << launch.err;
  EXPECT_TRUE(wait_until([&] { return leftovers().empty(); }, 10s)) << describe(leftovers());
  EXPECT_FALSE(fs::exists(broker_file()));
}

TEST_F(LaunchSge, TwoWorkersServeAMapAndStopDeletesTheJobs) {
  two_workers_map_and_stop("sge");
}

TEST_F(LaunchSge, HeldJobTimesOutWithItsReason) {
  never_starts("sge", {"--extra", "-h"}, "held");
}

TEST_F(LaunchSge, ImpossibleCpuCountIsRefusedOrTimesOut) {
  const auto id = unique_id("sge");
  const auto launch = acme_launch(args("sge", id, "5", {"--cpus-per-worker", "99"}), 60s);
  // SGE may refuse at submit (1) or leave the job pending with scheduling info (3).
  EXPECT_TRUE(launch.code == 1 || launch.code == 3) << launch.code << "\n" << launch.err;
  if (launch.code == 3) {
    EXPECT_TRUE(contains(launch.err, "pending:")) << launch.err;
  }
  if (launch.code == 1) {
    EXPECT_FALSE(launch.err.empty());
  }
  if (const auto st = state(id)) expect_jobs_gone(jobs_of(*st));
  EXPECT_FALSE(fs::exists(broker_file()));
}

}  // namespace
}  // namespace acme::launch_test
