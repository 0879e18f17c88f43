// The local backend: a supervisor daemon runs N acme-worker processes on this machine, restarts
// one that dies, and is stopped (with the workers and the broker) by `acme-launch stop`. Also
// the two ways a launch ends early: SIGINT while it waits (130) and workers that die at start (1).
#include <algorithm>
#include <csignal>

#include <gtest/gtest.h>

#include "launch_test.hpp"

namespace acme::launch_test {
namespace {

using ::acme::test::wait_until;

class LaunchLocal : public LaunchTest {};

TEST_F(LaunchLocal, TwoWorkersServeAMapRestartAfterAKillAndStopCleansUp) {
  const auto id = unique_id("local");
  const auto launch =
      acme_launch({"local", "--n", "2", "--interface", "lo", "--wait", "30", "--id", id}, 60s);
  ASSERT_EQ(launch.code, 0) << launch.err;
  const auto endpoint = broker_line(launch.out);
  ASSERT_TRUE(endpoint) << "stdout is not one ACME_BROKER= line:\n" << launch.out;
  EXPECT_TRUE(endpoint->starts_with("tcp://127.0.0.1:")) << *endpoint;
  EXPECT_TRUE(contains(launch.err, "2/2 workers online")) << launch.err;
  for (const auto& line : lines_of(launch.err)) {
    EXPECT_TRUE(line.starts_with("acme-launch: ")) << "progress line without prefix: " << line;
  }
  ASSERT_TRUE(fs::exists(broker_file()));
  EXPECT_EQ(lines_of(read_text(broker_file())).at(0), *endpoint);

  const auto st = state(id);
  ASSERT_TRUE(st) << "no " << launch_dir(id) / "state.json";
  EXPECT_EQ(st->value("id", ""), id);
  EXPECT_EQ(st->value("backend", ""), "local");
  // The spec says "n"; the launcher writes "workers": either is accepted.
  EXPECT_EQ(st->value("n", st->value("workers", 0)), 2) << st->dump();
  EXPECT_EQ(endpoint_of(*st), *endpoint);
  const auto broker_pid = broker_pid_of(*st);
  ASSERT_TRUE(broker_pid);
  EXPECT_TRUE(pid_alive(*broker_pid));
  const auto jobs = jobs_of(*st);
  ASSERT_EQ(jobs.size(), 1U) << st->dump();
  const auto supervisor = static_cast<pid_t>(std::stol(jobs[0]));
  EXPECT_TRUE(pid_alive(supervisor)) << "the supervisor must outlive acme-launch";
  EXPECT_TRUE(fs::exists(launch_dir(id) / "broker.log"));
  EXPECT_TRUE(fs::is_directory(launch_dir(id) / "logs"));

  EXPECT_TRUE(wait_online(id, 2, 10s)) << "status --json:\n" << status_json().dump(2);
  const auto human = acme_launch({"status"}, 30s);
  EXPECT_EQ(human.code, 0) << human.err;
  EXPECT_TRUE(contains(human.out, id) && contains(human.out, "2/2")) << human.out;

  expect_echo_map(*endpoint, 3);

  // A killed worker is replaced by the supervisor and comes online again. Its pid is the one
  // status --json reports (the worker's own report to the broker), checked against /proc.
  std::vector<pid_t> workers;
  ASSERT_TRUE(wait_until([&] { return (workers = online_pids(id)).size() == 2; }, 5s))
      << "status --json:\n"
      << status_json().dump(2);
  EXPECT_EQ(workers, workers_of(id))
      << "status pids vs acme-worker processes tagged " << id << ":\n"
      << describe(workers_of(id));
  const auto victim = workers[0];
  ::kill(victim, SIGKILL);
  const auto replaced = wait_until(
      [&] {
        const auto now = online_pids(id);
        return now.size() == 2 && std::find(now.begin(), now.end(), victim) == now.end() &&
               online(id) == 2 && !pid_alive(victim);
      },
      10s);
  EXPECT_TRUE(replaced) << "workers now:\n"
                        << describe(workers_of(id)) << "status:\n"
                        << status_json().dump(2);
  expect_echo_map(*endpoint, 3);

  const auto stop = acme_launch({"stop", "--id", id}, 60s);
  EXPECT_EQ(stop.code, 0) << stop.err;
  EXPECT_TRUE(wait_until(
      [&] { return !pid_alive(*broker_pid) && !pid_alive(supervisor) && workers_of(id).empty(); },
      5s))
      << "after stop: broker " << pid_alive(*broker_pid) << " supervisor " << pid_alive(supervisor)
      << " workers:\n"
      << describe(workers_of(id));
  EXPECT_TRUE(wait_until([&] { return leftovers().empty(); }, 5s)) << describe(leftovers());
  EXPECT_FALSE(fs::exists(broker_file())) << "stop must remove $ACME_HOME/broker";
}

TEST_F(LaunchLocal, StopWithoutIdStopsTheOnlyLaunch) {
  const auto id = unique_id("local");
  const auto launch =
      acme_launch({"local", "--n", "1", "--interface", "lo", "--wait", "30", "--id", id}, 60s);
  ASSERT_EQ(launch.code, 0) << launch.err;
  const auto stop = acme_launch({"stop"}, 60s);
  EXPECT_EQ(stop.code, 0) << stop.err;
  EXPECT_TRUE(wait_until([&] { return leftovers().empty(); }, 5s)) << describe(leftovers());
  EXPECT_FALSE(fs::exists(broker_file()));
}

TEST_F(LaunchLocal, InterruptWhileWaitingStopsEverything) {
  const auto id = unique_id("local");
  // A worker that never connects ('sh -c' so that arguments appended to the command are harmless).
  auto launch = start_launch({"local", "--n", "2", "--interface", "lo", "--wait", "30", "--id", id,
                              "--worker-cmd", "sh -c 'sleep 60'"});
  // Waiting: the supervisor runs the sleeping workers.
  const auto waiting = wait_until(
      [&] {
        const auto st = state(id);
        return st && !jobs_of(*st).empty() && contains(launch->err(), "workers online");
      },
      20s);
  ASSERT_TRUE(waiting) << "acme-launch did not reach its wait; stderr:\n" << launch->err();
  const auto st = *state(id);
  launch->signal(SIGINT);
  const auto code = launch->wait(20s);
  ASSERT_TRUE(code) << "acme-launch did not exit 20 s after SIGINT; stderr:\n" << launch->err();
  EXPECT_EQ(*code, 130) << launch->err();
  EXPECT_EQ(launch->out(), "");
  EXPECT_TRUE(wait_until([&] { return leftovers().empty(); }, 5s)) << "left after SIGINT:\n"
                                                                   << describe(leftovers());
  if (const auto pid = broker_pid_of(st)) {
    EXPECT_FALSE(pid_alive(*pid));
  }
  EXPECT_FALSE(fs::exists(broker_file()));
}

TEST_F(LaunchLocal, WorkersThatDieAtStartFailTheLaunchWithTheirLog) {
  const auto id = unique_id("local");
  const auto started = ::acme::test::Clock::now();
  const auto launch = acme_launch({"local", "--n", "2", "--interface", "lo", "--wait", "30", "--id",
                                   id, "--worker-cmd", R"(sh -c "echo boom >&2; exit 3")"},
                                  40s);
  const auto took = ::acme::test::Clock::now() - started;
  EXPECT_EQ(launch.code, 1) << launch.err;
  EXPECT_LT(took, 15s) << "a launch whose workers all die must fail fast, not wait out --wait";
  EXPECT_TRUE(contains(launch.err, "boom")) << "stderr lacks the worker log's tail:\n"
                                            << launch.err;
  EXPECT_EQ(launch.out, "");
  EXPECT_TRUE(wait_until([&] { return leftovers().empty(); }, 5s)) << describe(leftovers());
  EXPECT_FALSE(fs::exists(broker_file()));
}

}  // namespace
}  // namespace acme::launch_test
