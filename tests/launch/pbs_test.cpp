// PBS through the stand-in (pbs-standin/: qsub, qstat, qdel on PATH; jobs run here as detached
// processes, state in $PBS_STANDIN_DIR). Its switches give the cases a real server gives
// rarely: a job that stays queued with a reason (PBS_STANDIN_HOLD), a refused submit
// (PBS_STANDIN_REJECT). ACME_PBS_STANDIN=DIR uses a stand-in from elsewhere (e.g. another
// worktree); without one the tests skip.
#include <csignal>
#include <cstdlib>

#include <gtest/gtest.h>

#include "launch_test.hpp"

namespace acme::launch_test {
namespace {

using ::acme::test::wait_until;

fs::path standin_dir() {
  const char* from_env = std::getenv("ACME_PBS_STANDIN");
  return from_env != nullptr ? fs::path(from_env) : test_dir() / "pbs-standin";
}

class LaunchPbs : public LaunchTest {
 protected:
  void SetUp() override {
    LaunchTest::SetUp();
    if (HasFatalFailure()) return;
    if (!fs::exists(standin_dir() / "qsub")) {
      GTEST_SKIP() << "no PBS stand-in at " << standin_dir()
                   << " (it arrives from another branch; ACME_PBS_STANDIN=DIR points elsewhere)";
    }
    prepend_path(standin_dir());
    env_["PBS_STANDIN_DIR"] = (home_ / "pbs").string();
  }

  void TearDown() override {
    LaunchTest::TearDown();  // stop --all first: it qdels through the stand-in
  }

  /// The stand-in no longer lists a live part of `job` (qstat -t without -x shows only
  /// queued/running parts).
  bool job_gone(const std::string& job) {
    const auto qstat = run_tool({(standin_dir() / "qstat").string(), "-t", job});
    return qstat.code != -1 && lines_of(qstat.out).empty();
  }

  std::string qstat_all() {
    const auto qstat = run_tool({(standin_dir() / "qstat").string(), "-t", "-x"});
    return qstat.out + qstat.err;
  }

  std::vector<std::string> args(const std::string& id, const std::string& wait,
                                const std::vector<std::string>& extra = {}) {
    std::vector<std::string> result{"pbs", "--n",  "2", "--interface", "lo", "--wait",
                                    wait,  "--id", id};
    result.insert(result.end(), extra.begin(), extra.end());
    return result;
  }
};

TEST_F(LaunchPbs, TwoWorkersServeAMapAndStopDeletesTheJob) {
  const auto id = unique_id("pbs");
  const auto launch = acme_launch(args(id, "60"), 90s);
  ASSERT_EQ(launch.code, 0) << launch.err << qstat_all();
  const auto endpoint = broker_line(launch.out);
  ASSERT_TRUE(endpoint) << "stdout is not one ACME_BROKER= line:\n" << launch.out;
  EXPECT_TRUE(contains(launch.err, "2/2 workers online")) << launch.err;
  EXPECT_TRUE(fs::exists(launch_dir(id) / "job.sh"));
  ASSERT_TRUE(fs::exists(broker_file()));
  EXPECT_EQ(lines_of(read_text(broker_file())).at(0), *endpoint);
  const auto st = state(id);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->value("backend", ""), "pbs");
  const auto jobs = jobs_of(*st);
  ASSERT_FALSE(jobs.empty()) << st->dump();

  EXPECT_TRUE(wait_online(id, 2, 10s)) << status_json().dump(2);
  expect_echo_map(*endpoint, 20);

  const auto stop = acme_launch({"stop", "--id", id}, 60s);
  EXPECT_EQ(stop.code, 0) << stop.err;
  for (const auto& job : jobs) {
    EXPECT_TRUE(wait_until([&] { return job_gone(job); }, 20s)) << qstat_all();
  }
  EXPECT_TRUE(wait_until([&] { return leftovers().empty(); }, 10s)) << describe(leftovers());
  if (const auto pid = broker_pid_of(*st)) {
    EXPECT_FALSE(pid_alive(*pid));
  }
  EXPECT_FALSE(fs::exists(broker_file()));
}

TEST_F(LaunchPbs, QueuedJobTimesOutWithTheSchedulersReason) {
  env_["PBS_STANDIN_HOLD"] = "1";
  const auto id = unique_id("pbs");
  const auto started = ::acme::test::Clock::now();
  auto process = start_launch(args(id, "3"));
  std::vector<std::string> jobs;  // state.json goes when the launch ends: read it meanwhile
  wait_until(
      [&] {
        const auto st = state(id);
        return st && !(jobs = jobs_of(*st)).empty();
      },
      20s);
  ::acme::test::Run launch;
  launch.code = process->wait(60s).value_or(-1);
  launch.err = process->err();
  launch.out = process->out();
  const auto took = ::acme::test::Clock::now() - started;
  EXPECT_EQ(launch.code, 3) << launch.err;
  EXPECT_LT(took, 20s) << "--wait 3 took too long";
  EXPECT_TRUE(contains(launch.err, "pending:")) << launch.err;
  EXPECT_TRUE(contains(launch.err, "Insufficient amount of resource")) << launch.err;
  EXPECT_EQ(launch.out, "");
  EXPECT_FALSE(jobs.empty()) << "no job id seen in state.json";
  for (const auto& job : jobs) {
    EXPECT_TRUE(wait_until([&] { return job_gone(job); }, 20s)) << qstat_all();
  }
  EXPECT_TRUE(wait_until([&] { return leftovers().empty(); }, 10s)) << describe(leftovers());
  EXPECT_FALSE(fs::exists(broker_file()));
}

TEST_F(LaunchPbs, RefusedSubmitFailsWithQsubsMessage) {
  env_["PBS_STANDIN_REJECT"] = "Unknown queue name nosuchq";
  const auto id = unique_id("pbs");
  const auto launch = acme_launch(args(id, "30"), 60s);
  EXPECT_EQ(launch.code, 1) << launch.err;
  EXPECT_TRUE(contains(launch.err, "Unknown queue name nosuchq")) << launch.err;
  EXPECT_EQ(launch.out, "");
  EXPECT_TRUE(wait_until([&] { return leftovers().empty(); }, 10s))
      << "the broker must be stopped:\n"
      << describe(leftovers());
  if (const auto st = state(id)) {
    if (const auto pid = broker_pid_of(*st)) {
      EXPECT_FALSE(pid_alive(*pid));
    }
  }
  EXPECT_FALSE(fs::exists(broker_file()));
}

TEST_F(LaunchPbs, InterruptWhileWaitingDeletesTheJob) {
  env_["PBS_STANDIN_HOLD"] = "1";
  const auto id = unique_id("pbs");
  auto launch = start_launch(args(id, "60"));
  std::vector<std::string> jobs;
  const auto submitted = wait_until(
      [&] {
        const auto st = state(id);
        if (!st) return false;
        jobs = jobs_of(*st);
        return !jobs.empty();
      },
      20s);
  ASSERT_TRUE(submitted) << "no job id in state.json; stderr:\n" << launch->err();
  const auto st = *state(id);
  launch->signal(SIGINT);
  const auto code = launch->wait(30s);
  ASSERT_TRUE(code) << "no exit 30 s after SIGINT; stderr:\n" << launch->err();
  EXPECT_EQ(*code, 130) << launch->err();
  for (const auto& job : jobs) {
    EXPECT_TRUE(wait_until([&] { return job_gone(job); }, 20s)) << qstat_all();
  }
  EXPECT_TRUE(wait_until([&] { return leftovers().empty(); }, 10s)) << describe(leftovers());
  if (const auto pid = broker_pid_of(st)) {
    EXPECT_FALSE(pid_alive(*pid));
  }
  EXPECT_FALSE(fs::exists(broker_file()));
}

TEST_F(LaunchPbs, WorkersThatDieAtStartFailTheLaunchWithTheirLog) {
  const auto id = unique_id("pbs");
  const auto started = ::acme::test::Clock::now();
  const auto launch =
      acme_launch(args(id, "60", {"--worker-cmd", R"(sh -c "echo boom >&2; exit 3")"}), 90s);
  const auto took = ::acme::test::Clock::now() - started;
  EXPECT_EQ(launch.code, 1) << launch.err;
  EXPECT_LT(took, 30s) << "dead workers must fail the launch before --wait ends";
  EXPECT_TRUE(contains(launch.err, "boom")) << "stderr lacks the worker log's tail:\n"
                                            << launch.err;
  EXPECT_TRUE(wait_until([&] { return leftovers().empty(); }, 10s)) << describe(leftovers());
  EXPECT_FALSE(fs::exists(broker_file()));
}

TEST_F(LaunchPbs, TorqueFlavourRunsToo) {
  const auto id = unique_id("pbs");
  const auto launch = acme_launch(args(id, "60", {"--pbs-flavour", "torque"}), 90s);
  ASSERT_EQ(launch.code, 0) << launch.err << qstat_all();
  const auto endpoint = broker_line(launch.out);
  ASSERT_TRUE(endpoint) << launch.out;
  expect_echo_map(*endpoint, 3);
  const auto stop = acme_launch({"stop", "--id", id}, 60s);
  EXPECT_EQ(stop.code, 0) << stop.err;
  EXPECT_TRUE(wait_until([&] { return leftovers().empty(); }, 10s)) << describe(leftovers());
}

}  // namespace
}  // namespace acme::launch_test
