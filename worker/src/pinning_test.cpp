// Pinning: the core pool, the decision, and tasks of a pinned Worker on disjoint cores.
#include "pinning.hpp"

#include <mutex>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_support.hpp"
#include <sched.h>

namespace acme {
namespace {

using namespace std::chrono_literals;
using test::args;
using test::FakeBroker;
using test::RunningWorker;
using test::tasks;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using worker::CorePool;
using worker::decide_pin;
using worker::PinFacts;

TEST(CorePool, TakesTheLowestFreeCoresInTopologyOrder) {
  CorePool pool({{0, 4}, {1, 5}, {2, 6}, {3, 7}});
  EXPECT_EQ(pool.size(), 4U);
  const auto first = pool.take(1);
  ASSERT_TRUE(first);
  EXPECT_THAT(*first, ElementsAre(0U));
  const auto two = pool.take(2);
  ASSERT_TRUE(two);
  EXPECT_THAT(*two, ElementsAre(1U, 2U));
  EXPECT_THAT(pool.cpus(*two), ElementsAre(1U, 2U, 5U, 6U));
  EXPECT_EQ(pool.free(), 1U);
  EXPECT_FALSE(pool.take(2)) << "only one core is free";
  EXPECT_EQ(pool.free(), 1U) << "a failed take takes nothing";
}

TEST(CorePool, ReleasedCoresAreTakenAgainLowestFirst) {
  CorePool pool({{0}, {1}, {2}, {3}});
  const auto a = pool.take(2);
  const auto b = pool.take(2);
  ASSERT_TRUE(a && b);
  pool.release(*a);
  EXPECT_EQ(pool.free(), 2U);
  pool.release(*a);  // twice: ignored
  EXPECT_EQ(pool.free(), 2U);
  const auto c = pool.take(1);
  ASSERT_TRUE(c);
  EXPECT_THAT(*c, ElementsAre(0U));
  EXPECT_THAT(pool.all_cpus(), ElementsAre(0U, 1U, 2U, 3U));
}

TEST(CpuList, WritesRanges) {
  EXPECT_EQ(worker::cpu_list({}), "");
  EXPECT_EQ(worker::cpu_list({3}), "3");
  EXPECT_EQ(worker::cpu_list({0, 1, 2, 3}), "0-3");
  EXPECT_EQ(worker::cpu_list({0, 2, 4, 5, 6, 9}), "0,2,4-6,9");
}

TEST(ParsePin, KnowsTheThreeModes) {
  EXPECT_EQ(parse_pin("auto"), Pin::Auto);
  EXPECT_EQ(parse_pin("yes"), Pin::Yes);
  EXPECT_EQ(parse_pin("no"), Pin::No);
  EXPECT_FALSE(parse_pin("on"));
  EXPECT_FALSE(parse_pin(""));
}

TEST(DecidePin, AutoPinsInABatchJobOrWithARestrictedAffinity) {
  const PinFacts whole{.batch_job = "", .allowed_cpus = 8, .machine_cpus = 8, .allowed_cores = 8};
  const auto off = decide_pin(Pin::Auto, whole, 4);
  EXPECT_FALSE(off.pin);
  EXPECT_THAT(off.why, HasSubstr("not in a batch job"));

  auto slurm = whole;
  slurm.batch_job = "SLURM_JOB_ID";
  const auto in_job = decide_pin(Pin::Auto, slurm, 4);
  EXPECT_TRUE(in_job.pin);
  EXPECT_THAT(in_job.why, HasSubstr("SLURM_JOB_ID"));

  const PinFacts taskset{.batch_job = "", .allowed_cpus = 4, .machine_cpus = 8, .allowed_cores = 4};
  const auto restricted = decide_pin(Pin::Auto, taskset, 4);
  EXPECT_TRUE(restricted.pin);
  EXPECT_THAT(restricted.why, HasSubstr("4 of the machine's 8 cpus"));

  EXPECT_TRUE(decide_pin(Pin::Yes, whole, 8).pin);
  EXPECT_FALSE(decide_pin(Pin::No, slurm, 1).pin);
}

TEST(DecidePin, MoreSlotsThanCoresTurnsPinningOff) {
  const PinFacts facts{.batch_job = "PBS_JOBID",
                       .allowed_cpus = 4,
                       .machine_cpus = 8,
                       .allowed_cores = 2};  // 2 cores with 2 hyperthreads each
  const auto decision = decide_pin(Pin::Yes, facts, 4);
  EXPECT_FALSE(decision.pin);
  EXPECT_EQ(decision.why, "4 slots but only 2 cores available, so tasks would share cores");
  EXPECT_TRUE(decide_pin(Pin::Auto, facts, 2).pin);
}

TEST(DecidePin, BatchJobVariables) {
  const test::ScopedEnv slurm("SLURM_JOB_ID", nullptr);
  const test::ScopedEnv pbs("PBS_JOBID", nullptr);
  const test::ScopedEnv sge_nslots("NSLOTS", nullptr);
  {
    const test::ScopedEnv sge("JOB_ID", "17");
    EXPECT_EQ(worker::batch_job_variable(), "") << "JOB_ID without NSLOTS is not SGE's";
    const test::ScopedEnv nslots("NSLOTS", "2");
    EXPECT_EQ(worker::batch_job_variable(), "JOB_ID");
  }
  const test::ScopedEnv job("PBS_JOBID", "12.server");
  EXPECT_EQ(worker::batch_job_variable(), "PBS_JOBID");
}

TEST(CpuBinder, FindsTheCoresThisProcessMayUse) {
  const worker::CpuBinder binder;
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  std::size_t pus = 0;
  for (const auto& core : binder.cores()) {
    EXPECT_FALSE(core.empty());
    for (const auto cpu : core) {
      EXPECT_TRUE(CPU_ISSET(cpu, &set)) << "cpu " << cpu << " is not allowed";
      ++pus;
    }
  }
  EXPECT_EQ(pus, static_cast<std::size_t>(CPU_COUNT(&set)));
  EXPECT_EQ(binder.facts().allowed_cpus, static_cast<std::size_t>(CPU_COUNT(&set)));
}

/// What the `where` function saw: the task's cores and cpus, and the thread's affinity.
struct Seen {
  std::uint32_t cores = 0;
  std::vector<unsigned> cpus{};
  std::vector<unsigned> affinity{};
};

std::vector<unsigned> thread_affinity() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<unsigned> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (unsigned cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

TEST(WorkerPinning, ConcurrentTasksRunOnDisjointCpusAndBigTasksOneAtATime) {
  const worker::CpuBinder probe;
  if (probe.cores().size() < 2) GTEST_SKIP() << "fewer than 2 cores available";
  FakeBroker broker;
  FunctionRegistry registry;
  std::mutex mutex;
  std::vector<Seen> seen;
  std::atomic<int> now_running{0};
  std::atomic<int> most{0};
  std::atomic<int> target{2};
  // How long a task holds its cores waiting for `target` tasks to run together: long when
  // they should (a loaded machine may take a while to start the second), short when they
  // must not (then every task waits it out).
  std::atomic<int> hold_ms{10000};
  registry.add_raw("where", [&](const msgpack::object& /*args*/, const msgpack::object&,
                                msgpack::packer<msgpack::sbuffer>& result, TaskContext& context) {
    const int n = ++now_running;
    int peak = most.load();
    while (n > peak && !most.compare_exchange_weak(peak, n)) {
    }
    {
      const std::lock_guard lock(mutex);
      seen.push_back({context.cores(), context.cpus(), thread_affinity()});
    }
    // Holds its cores until `target` tasks run together (or hold_ms passes).
    test::wait_until([&] { return most.load() >= target.load(); },
                     std::chrono::milliseconds(hold_ms.load()));
    --now_running;
    result.pack_nil();
  });
  auto options = WorkerOptions{};
  options.endpoint = broker.endpoint();
  options.slots = 2;
  options.prefetch = 1;
  options.pin = Pin::Yes;
  RunningWorker worker(options, registry);
  const auto [id, ready] = broker.admit();

  broker.send(id, tasks(1, "where", 4), std::vector<std::string>(4, args()));
  EXPECT_EQ(broker.results(4).size(), 4U);
  EXPECT_EQ(most.load(), 2);
  {
    const std::lock_guard lock(mutex);
    ASSERT_EQ(seen.size(), 4U);
    std::set<unsigned> all;
    for (const auto& s : seen) {
      EXPECT_EQ(s.cores, 1U);
      EXPECT_FALSE(s.cpus.empty());
      EXPECT_EQ(s.cpus, s.affinity) << "the thread is bound to the task's cpus";
      all.insert(s.cpus.begin(), s.cpus.end());
    }
    // The first two ran together: their cpus are disjoint.
    for (const auto cpu : seen[0].cpus) {
      EXPECT_THAT(seen[1].cpus, ::testing::Not(::testing::Contains(cpu)));
    }
    seen.clear();
  }

  // Two cores per task on two slots: one at a time, each bound to both cores.
  most = 0;
  target = 2;
  hold_ms = 1000;
  broker.send(id, tasks(2, "where", 3, 0, false, 0, 2), std::vector<std::string>(3, args()));
  EXPECT_EQ(broker.results(3).size(), 3U);
  EXPECT_EQ(most.load(), 1);
  const std::lock_guard lock(mutex);
  ASSERT_EQ(seen.size(), 3U);
  for (const auto& s : seen) {
    EXPECT_EQ(s.cores, 2U);
    EXPECT_EQ(s.cpus, s.affinity);
    EXPECT_EQ(s.cpus, worker::CorePool(probe.cores()).cpus({0, 1}));
  }
}

TEST(WorkerPinning, UnpinnedTasksHaveNoCpus) {
  FakeBroker broker;
  FunctionRegistry registry;
  std::atomic<std::size_t> cpus{99};
  std::atomic<std::uint32_t> cores{0};
  registry.add_raw("where", [&](const msgpack::object&, const msgpack::object&,
                                msgpack::packer<msgpack::sbuffer>& result, TaskContext& context) {
    cpus = context.cpus().size();
    cores = context.cores();
    result.pack_nil();
  });
  auto options = WorkerOptions{};
  options.endpoint = broker.endpoint();
  options.slots = 2;
  options.pin = Pin::No;
  RunningWorker worker(options, registry);
  const auto [id, ready] = broker.admit();
  broker.send(id, tasks(1, "where", 1, 0, false, 0, 2), {args()});
  EXPECT_EQ(broker.results(1).size(), 1U);
  EXPECT_EQ(cpus.load(), 0U);
  EXPECT_EQ(cores.load(), 2U);
}

}  // namespace
}  // namespace acme
