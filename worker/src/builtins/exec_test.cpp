// The exec builtin: output, exit codes, signals, the argv and map forms, the task's environment,
// and kill on cancel.
#include <fstream>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "../test_support.hpp"
#include "builtins.hpp"
#include <sched.h>
#include <signal.h>

namespace acme {
namespace {

using protocol::TaskStatus;
using test::args;
using test::run;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

FunctionRegistry builtins() {
  FunctionRegistry registry;
  add_builtins(registry);
  return registry;
}

std::map<std::string, msgpack::object> as_map(const msgpack::object_handle& handle) {
  return handle->as<std::map<std::string, msgpack::object>>();
}

TEST(BuiltinExec, ReturnsExitCodeStdoutAndStderr) {
  const auto registry = builtins();
  const auto outcome = run(registry, "exec", args(std::string("echo out; echo err >&2")));
  ASSERT_EQ(outcome.status, TaskStatus::Ok) << outcome.frame;
  const auto value = outcome.value();
  const auto map = as_map(value);
  EXPECT_EQ(map.at("exit_code").as<int>(), 0);
  EXPECT_EQ(map.at("stdout").as<std::string>(), "out\n");
  EXPECT_EQ(map.at("stderr").as<std::string>(), "err\n");
}

TEST(BuiltinExec, ArgvFormPassesWordsUnchanged) {
  const auto registry = builtins();
  const auto outcome =
      run(registry, "exec", args(std::vector<std::string>{"printf", "%s|", "a b", "$HOME"}));
  ASSERT_EQ(outcome.status, TaskStatus::Ok);
  const auto value = outcome.value();
  EXPECT_EQ(as_map(value).at("stdout").as<std::string>(), "a b|$HOME|");
}

TEST(BuiltinExec, NonZeroExitFailsWithCodeAndStderrTail) {
  const auto registry = builtins();
  const auto outcome = run(registry, "exec", args(std::string("echo oops >&2; exit 3")));
  ASSERT_EQ(outcome.status, TaskStatus::Failed);
  EXPECT_EQ(outcome.error().message,
            "exec: `echo oops >&2; exit 3` exited with code 3; stderr: oops");
}

TEST(BuiltinExec, DeathBySignalIsAFailure) {
  const auto registry = builtins();
  const auto outcome = run(registry, "exec", args(std::string("kill -9 $$")));
  ASSERT_EQ(outcome.status, TaskStatus::Failed);
  EXPECT_THAT(outcome.error().message, HasSubstr("was killed by signal 9"));
}

TEST(BuiltinExec, MissingProgramFails) {
  const auto registry = builtins();
  const auto outcome =
      run(registry, "exec", args(std::vector<std::string>{"/nonexistent/acme-no-such-program"}));
  ASSERT_EQ(outcome.status, TaskStatus::Failed);
  EXPECT_THAT(outcome.error().message, HasSubstr("cannot run"));
}

TEST(BuiltinExec, RejectsBadArguments) {
  const auto registry = builtins();
  EXPECT_EQ(run(registry, "exec", args(3)).error().message,
            "exec() argument 1: expected str, array or map, got int");
  EXPECT_EQ(run(registry, "exec", args(std::vector<int>{1})).error().message,
            "exec() argument 1: every element of argv must be a str");
}

TEST(BuiltinExec, ReadsLargeOutputOnBothPipesWithoutDeadlock) {
  const auto registry = builtins();
  // 1 MiB on each pipe, far beyond a pipe's buffer: reading one pipe only would hang.
  const auto outcome = run(registry, "exec",
                           args(std::string("head -c 1048576 /dev/zero; head -c 1048576 "
                                            "/dev/zero >&2; head -c 10 /dev/zero")));
  ASSERT_EQ(outcome.status, TaskStatus::Ok);
  const auto value = outcome.value();
  const auto map = as_map(value);
  EXPECT_EQ(map.at("stdout").via.str.size, 1048576U + 10U);
  EXPECT_EQ(map.at("stderr").via.str.size, 1048576U);
}

bool process_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string skip;
  std::string state;
  stat >> skip >> skip >> state;  // pid (comm) state; comm has no spaces here
  return state == "Z";            // a zombie nobody reaps has ended too
}

TEST(BuiltinExec, CancelKillsTheProcessGroup) {
  const auto pid_file = ::testing::TempDir() + "acme_exec_cancel_pid";
  std::remove(pid_file.c_str());
  std::atomic<bool> cancelled{false};
  worker::CommandOutcome outcome;
  std::thread runner([&] {
    // The shell starts a grandchild in its group; the cancel must reach both.
    outcome = worker::run_command({"/bin/sh", "-c", "sleep 30 & echo $! > " + pid_file + "; wait"},
                                  &cancelled);
  });
  pid_t grandchild = 0;
  ASSERT_TRUE(test::wait_until(
      [&] {
        std::ifstream file(pid_file);
        return static_cast<bool>(file >> grandchild);
      },
      5s));
  const auto start = test::Clock::now();
  cancelled = true;
  runner.join();
  EXPECT_LT(test::Clock::now() - start, 5s);
  EXPECT_TRUE(outcome.cancelled);
  EXPECT_EQ(outcome.signal, SIGTERM);
  EXPECT_TRUE(test::wait_until([&] { return process_gone(grandchild); }, 5s));
  std::remove(pid_file.c_str());
}

/// Runs exec with `frame` as a task given `cores` and bound (as far as the context says) to
/// `cpus`, on this thread.
test::Outcome run_task(const std::string& frame, std::uint32_t cores,
                       std::vector<unsigned> cpus = {}) {
  const auto registry = builtins();
  worker::Task task;
  task.function = std::make_shared<const std::string>("exec");
  task.run = registry.find("exec");
  task.payload = zmq::message_t(frame);
  task.cores = cores;
  task.cpus = std::move(cpus);
  worker::execute(task, {.host = "testhost", .pid = 42});
  return {.status = task.status, .frame = task.result.to_string()};
}

/// The task frame [{...}] of exec's map form, packed by `fill` (which packs the map).
template <class F>
std::string map_frame(F fill) {
  msgpack::sbuffer buffer;
  msgpack::packer<msgpack::sbuffer> packer(buffer);
  packer.pack_array(1);
  fill(packer);
  return {buffer.data(), buffer.size()};
}

std::string stdout_of(const test::Outcome& outcome) {
  const auto value = outcome.value();
  return as_map(value).at("stdout").as<std::string>();
}

TEST(BuiltinExec, TheChildLearnsItsCoresFromTheEnvironment) {
  const test::ScopedEnv inherited("ACME_TASK_CPUS", "stale");
  const auto command =
      args(std::string(R"(echo "$ACME_TASK_CORES $OMP_NUM_THREADS ${ACME_TASK_CPUS-unpinned}")"));
  const auto unpinned = run_task(command, 3);
  ASSERT_EQ(unpinned.status, TaskStatus::Ok) << unpinned.frame;
  EXPECT_EQ(stdout_of(unpinned), "3 3 unpinned\n");
  const auto pinned = run_task(command, 2, {0, 1});
  ASSERT_EQ(pinned.status, TaskStatus::Ok) << pinned.frame;
  EXPECT_EQ(stdout_of(pinned), "2 2 0,1\n");
}

TEST(BuiltinExec, MapFormWithEnvOverridesAndCwd) {
  const auto frame = map_frame([](auto& packer) {
    packer.pack_map(3);
    packer.pack(std::string("cmd"));
    packer.pack(std::string("echo $ACME_TASK_CORES $OMP_NUM_THREADS $GREETING; pwd"));
    packer.pack(std::string("env"));
    packer.pack(std::map<std::string, std::string>{{"OMP_NUM_THREADS", "1"}, {"GREETING", "hi"}});
    packer.pack(std::string("cwd"));
    packer.pack(std::string("/"));
  });
  const auto outcome = run_task(frame, 4);
  ASSERT_EQ(outcome.status, TaskStatus::Ok) << outcome.frame;
  EXPECT_EQ(stdout_of(outcome), "4 1 hi\n/\n");
}

TEST(BuiltinExec, MapFormWithArgv) {
  const auto frame = map_frame([](auto& packer) {
    packer.pack_map(2);
    packer.pack(std::string("argv"));
    packer.pack(std::vector<std::string>{"sh", "-c", "echo $N", "ignored"});
    packer.pack(std::string("env"));
    packer.pack_map(1);
    packer.pack(std::string("N"));
    packer.pack(12);  // a number is written in decimal
  });
  const auto outcome = run_task(frame, 1);
  ASSERT_EQ(outcome.status, TaskStatus::Ok) << outcome.frame;
  EXPECT_EQ(stdout_of(outcome), "12\n");
}

TEST(BuiltinExec, BadMapsFailWithAClearMessage) {
  const auto message = [](auto fill) { return run_task(map_frame(fill), 1).error().message; };
  EXPECT_EQ(message([](auto& p) {
              p.pack(std::map<std::string, std::string>{{"cwd", "/"}});
            }),
            "exec() argument 1: the map needs argv or cmd");
  EXPECT_EQ(message([](auto& p) {
              p.pack_map(2);
              p.pack(std::string("cmd"));
              p.pack(std::string("true"));
              p.pack(std::string("argv"));
              p.pack(std::vector<std::string>{"true"});
            }),
            "exec() argument 1: give either argv or cmd, not both");
  EXPECT_EQ(message([](auto& p) {
              p.pack(std::map<std::string, std::string>{{"cmd", "true"}, {"dir", "/"}});
            }),
            "exec() argument 1: unknown key 'dir' (expected argv or cmd, env, cwd)");
  EXPECT_EQ(message([](auto& p) {
              p.pack(std::map<std::string, std::string>{{"cmd", "true"}, {"env", "A=1"}});
            }),
            "exec() env: expected a map of str, got str");
  EXPECT_EQ(message([](auto& p) {
              p.pack_map(2);
              p.pack(std::string("cmd"));
              p.pack(std::string("true"));
              p.pack(std::string("env"));
              p.pack(std::map<std::string, bool>{{"A", true}});
            }),
            "exec() env: the value of A must be a str, got bool");
  EXPECT_EQ(message([](auto& p) {
              p.pack(std::map<std::string, std::string>{{"cmd", "true"},
                                                        {"cwd", "/nonexistent/acme-dir"}});
            }),
            "exec: cwd '/nonexistent/acme-dir' is not a directory");
  EXPECT_EQ(message([](auto& p) {
              p.pack_map(1);
              p.pack(std::string("argv"));
              p.pack(std::vector<std::string>{});
            }),
            "exec() argv: argv is empty");
}

TEST(BuiltinExec, TheChildInheritsTheTaskThreadsBinding) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  ASSERT_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
  std::size_t cpu = CPU_SETSIZE;
  for (std::size_t i = 0; i < CPU_SETSIZE && cpu == CPU_SETSIZE; ++i) {
    if (CPU_ISSET(i, &allowed)) cpu = i;
  }
  ASSERT_LT(cpu, std::size_t{CPU_SETSIZE});
  test::Outcome outcome;
  std::thread task([&] {  // bound as a pinned task thread is; the test's thread stays free
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
    outcome = run_task(args(std::string("grep Cpus_allowed_list /proc/self/status")), 1,
                       {static_cast<unsigned>(cpu)});
  });
  task.join();
  ASSERT_EQ(outcome.status, TaskStatus::Ok) << outcome.frame;
  EXPECT_THAT(stdout_of(outcome), HasSubstr("\t" + std::to_string(cpu) + "\n"));
}

}  // namespace
}  // namespace acme
