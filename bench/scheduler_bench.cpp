// The scheduler alone: task cycles per second (a result in, the next task out) with up to 10,000
// workers and 1M+ queued tasks, and heap bytes per queued and in-flight task.
//   acme_scheduler_bench                      # everything
//   acme_scheduler_bench --memory-only        # only the bytes-per-task table
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include <benchmark/benchmark.h>

#include <acme/scheduler/scheduler.hpp>

namespace {

// Counts live heap bytes, so that memory per task is measured, not estimated.
std::atomic<std::int64_t> g_live_bytes{0};

}  // namespace

// The replacement pair below hands out malloc'd blocks; GCC cannot see that they match.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

void* operator new(std::size_t size) {
  auto* block = static_cast<std::size_t*>(std::malloc(size + sizeof(std::max_align_t)));
  if (block == nullptr) throw std::bad_alloc();
  *block = size;
  g_live_bytes.fetch_add(static_cast<std::int64_t>(size), std::memory_order_relaxed);
  return reinterpret_cast<char*>(block) + sizeof(std::max_align_t);  // NOLINT
}
void operator delete(void* pointer) noexcept {
  if (pointer == nullptr) return;
  auto* block = reinterpret_cast<std::size_t*>(static_cast<char*>(pointer) -  // NOLINT
                                               sizeof(std::max_align_t));
  g_live_bytes.fetch_sub(static_cast<std::int64_t>(*block), std::memory_order_relaxed);
  std::free(block);  // NOLINT
}
void operator delete(void* pointer, std::size_t /*size*/) noexcept {
  operator delete(pointer);
}

namespace {

using acme::ClientId;
using acme::JobId;
using acme::WorkerId;
using acme::protocol::TaskStatus;
using acme::scheduler::Scheduler;
using acme::scheduler::SendTasks;
using acme::scheduler::TimePoint;

struct Cluster {
  explicit Cluster(acme::scheduler::Config config = {.client_window = UINT64_MAX})
      : scheduler(config), client(scheduler.add_client(now)) {}

  TimePoint now{};
  Scheduler scheduler;
  ClientId client{};
  std::vector<WorkerId> workers{};
  std::vector<JobId> jobs{};
};

void add_workers(Cluster& cluster, std::int64_t count, std::uint32_t slots,
                 std::uint32_t prefetch) {
  for (std::int64_t i = 0; i < count; ++i) {
    cluster.workers.push_back(cluster.scheduler.add_worker(
        {.functions = {"noop"}, .slots = slots, .prefetch = prefetch}, cluster.now));
  }
}

JobId submit(Cluster& cluster, std::uint64_t tasks, std::uint64_t total = 0) {
  const auto job = cluster.scheduler.submit(
      {.client = cluster.client, .function = "noop", .total = std::max(total, tasks)}, tasks,
      cluster.now);
  cluster.jobs.push_back(job);
  return job;
}

// Steady state: each step, one worker returns every task it holds and gets refilled. Counts
// task cycles: one result accepted plus one task dispatched.
void run_cycles(benchmark::State& state, std::int64_t workers, std::uint64_t queued, int jobs) {
  Cluster cluster;
  add_workers(cluster, workers, 4, 4);
  // Jobs too long to finish; the client tops them up as they drain, like a streaming client,
  // so the queue holds between `queued` / 2 and `queued` tasks throughout.
  const auto per_job = queued / static_cast<std::uint64_t>(jobs);
  for (int j = 0; j < jobs; ++j) submit(cluster, per_job, std::uint64_t{1} << 50);
  // Per worker, what it holds (as the broker would keep it from the TASKS it sent).
  std::vector<std::vector<std::pair<JobId, acme::TaskIndex>>> held(cluster.workers.size());
  auto record = [&](std::vector<acme::scheduler::Decision>&& decisions) {
    std::size_t sent = 0;
    for (auto& decision : decisions) {
      if (auto* send = std::get_if<SendTasks>(&decision)) {
        auto& mine = held[acme::to_underlying(send->worker)];
        for (const auto& task : send->tasks) mine.emplace_back(send->job, task.index);
        sent += send->tasks.size();
      }
    }
    return sent;
  };
  record(cluster.scheduler.take_decisions());
  std::size_t next = 0;
  std::uint64_t dispatched = 0;
  for (auto _ : state) {
    const auto worker = cluster.workers[next];
    auto& mine = held[next];
    for (const auto& [job, index] : mine) {
      benchmark::DoNotOptimize(
          cluster.scheduler.task_done(worker, job, index, TaskStatus::Ok, cluster.now));
    }
    mine.clear();
    dispatched += record(cluster.scheduler.take_decisions());
    next = next + 1 == cluster.workers.size() ? 0 : next + 1;
    for (const auto job : cluster.jobs) {
      if (cluster.scheduler.queued(job) < per_job / 2) {
        cluster.scheduler.add_tasks(job, per_job / 2, cluster.now);
      }
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(dispatched));
  state.counters["workers"] = static_cast<double>(workers);
  state.counters["queued"] = static_cast<double>(queued);
  state.counters["s_per_task"] = benchmark::Counter(
      static_cast<double>(dispatched), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

void BM_TaskCycle(benchmark::State& state) {
  run_cycles(state, state.range(0), static_cast<std::uint64_t>(state.range(1)),
             static_cast<int>(state.range(2)));
}
BENCHMARK(BM_TaskCycle)
    ->ArgNames({"workers", "queued", "jobs"})
    ->Args({2, 1 << 20, 1})
    ->Args({100, 1 << 20, 1})
    ->Args({10000, 1 << 20, 1})
    ->Args({10000, 1 << 24, 1})
    ->Args({10000, 1 << 20, 4})
    ->Unit(benchmark::kMicrosecond)
    ->MinTime(1.0);

// Initial fill: 1M tasks arrive while 10,000 workers (8 credits each) are idle.
void BM_InitialFill(benchmark::State& state) {
  std::uint64_t dispatched = 0;
  for (auto _ : state) {
    state.PauseTiming();
    auto cluster = std::make_unique<Cluster>();
    add_workers(*cluster, state.range(0), 4, 4);
    benchmark::DoNotOptimize(cluster->scheduler.take_decisions());
    state.ResumeTiming();
    submit(*cluster, 1 << 20);
    for (const auto& decision : cluster->scheduler.take_decisions()) {
      if (const auto* send = std::get_if<SendTasks>(&decision)) dispatched += send->tasks.size();
    }
    state.PauseTiming();
    cluster.reset();  // destruction is not dispatch
    state.ResumeTiming();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(dispatched));
}
BENCHMARK(BM_InitialFill)->ArgName("workers")->Arg(10000)->Unit(benchmark::kMillisecond);

// Liveness at scale: 10,000 workers heard from once a second; one tick per 10 ms of clock.
void BM_HeartbeatsAndTicks(benchmark::State& state) {
  Cluster cluster;
  add_workers(cluster, 10000, 1, 0);
  std::size_t next = 0;
  std::int64_t events = 0;
  for (auto _ : state) {
    // 100 heartbeats then one tick: 10,000 workers at 1 Hz is 100 per 10 ms.
    for (int i = 0; i < 100; ++i) {
      cluster.scheduler.heard_from(cluster.workers[next], cluster.now);
      next = next + 1 == cluster.workers.size() ? 0 : next + 1;
    }
    cluster.now += std::chrono::milliseconds(10);
    cluster.scheduler.heard_from(cluster.client, cluster.now);
    cluster.scheduler.tick(cluster.now);
    events += 101;
  }
  if (cluster.scheduler.live_workers() != 10000) state.SkipWithError("a live worker expired");
  state.SetItemsProcessed(events);
}
BENCHMARK(BM_HeartbeatsAndTicks);

// Heap bytes the scheduler keeps per task: queued (never dispatched), requeued, in flight.
void print_memory() {
  constexpr std::uint64_t kTasks = 1 << 20;
  const auto base = g_live_bytes.load();
  {
    Cluster cluster;
    const auto before = g_live_bytes.load();
    submit(cluster, kTasks);
    const auto queued = g_live_bytes.load() - before;

    // Fixed cost of a worker, then what its 8 tasks in flight add.
    constexpr std::int64_t kWorkers = 10000;
    const auto before_workers = g_live_bytes.load();
    add_workers(cluster, kWorkers, 4, 4);
    const auto per_worker = g_live_bytes.load() - before_workers;
    const auto with_workers = g_live_bytes.load();
    auto decisions = cluster.scheduler.take_decisions();
    decisions.clear();
    decisions.shrink_to_fit();
    constexpr auto kInFlight = kWorkers * 8;
    const auto in_flight = g_live_bytes.load() - with_workers;

    // Requeued: every worker dies; its 8 tasks go back to the queue.
    const auto before_death = g_live_bytes.load();
    cluster.now += std::chrono::seconds(10);
    cluster.scheduler.heard_from(cluster.client, cluster.now);
    cluster.scheduler.tick(cluster.now);
    benchmark::DoNotOptimize(cluster.scheduler.take_decisions());
    // Dead workers free their in-flight deques; count only what the queue gained.
    const auto requeued = g_live_bytes.load() - before_death + in_flight;

    std::printf("scheduler heap bytes (1M tasks, 10,000 workers x 8 credits):\n");
    std::printf("  per queued task, never dispatched : %.4f B (%lld B for %llu tasks)\n",
                static_cast<double>(queued) / kTasks, static_cast<long long>(queued),
                static_cast<unsigned long long>(kTasks));
    std::printf("  per task in flight on a worker    : %.1f B\n",
                static_cast<double>(in_flight) / kInFlight);
    std::printf("  per requeued task                 : %.1f B\n",
                static_cast<double>(requeued) / kInFlight);
    std::printf("  per worker (fixed, before tasks)  : %.0f B\n",
                static_cast<double>(per_worker) / kWorkers);
  }
  std::printf("  (heap left after teardown: %lld B)\n",
              static_cast<long long>(g_live_bytes.load() - base));
}

}  // namespace

int main(int argc, char** argv) {
  print_memory();
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--memory-only") == 0) return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
