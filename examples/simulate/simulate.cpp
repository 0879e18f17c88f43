// acme-simulate: a map on a simulated cluster, driven by acme's real scheduler with a virtual
// clock. Workers are killed, frozen and poisoned on schedule; the program checks that every
// task's result is delivered exactly once and exits non-zero if not. Runs in well under a second.
//   acme-simulate [--workers 8] [--slots 2] [--tasks 10000] [--task-ms 20] [--seed 1]
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include <acme/scheduler/scheduler.hpp>

namespace {

using namespace std::chrono_literals;
using acme::ClientId;
using acme::JobId;
using acme::TaskIndex;
using acme::WorkerId;
using acme::protocol::TaskStatus;
using acme::scheduler::Scheduler;
using acme::scheduler::TimePoint;
using Ms = std::chrono::milliseconds;

struct Options {
  int workers = 8;
  std::uint32_t slots = 2;
  std::uint64_t tasks = 10000;
  int task_ms = 20;
  unsigned seed = 1;
};

struct SimWorker {
  WorkerId id{};
  bool alive = true;         // false once killed: it never speaks again
  TimePoint frozen_until{};  // a frozen worker neither runs nor speaks until then
  std::uint32_t running = 0;
  std::deque<std::pair<JobId, TaskIndex>> queue{};
};

struct Event {
  TimePoint at{};
  std::uint64_t seq = 0;  // FIFO among events at the same time: deterministic
  std::function<void()> run{};
  bool operator>(const Event& other) const {
    return at != other.at ? at > other.at : seq > other.seq;
  }
};

class Simulation {
 public:
  explicit Simulation(const Options& options)
      : options_(options), rng_(options.seed), scheduler_({.max_retries = 3}) {}

  int run() {
    const TimePoint start{};
    client_a_ = scheduler_.add_client(now_);
    client_b_ = scheduler_.add_client(now_);
    for (int i = 0; i < options_.workers; ++i) add_worker();
    job_a_ = scheduler_.submit(
        {.client = client_a_, .function = "analyse_trial", .total = options_.tasks}, options_.tasks,
        now_);
    poison_ = options_.tasks / 3;
    at(start + 2s, [this] {
      job_b_ = scheduler_.submit(
          {.client = client_b_, .function = "analyse_trial", .total = options_.tasks / 4},
          options_.tasks / 4, now_);
      say("client B submits %llu tasks", static_cast<unsigned long long>(options_.tasks / 4));
    });
    at(start + 3s, [this] { kill(1, "node lost (SIGKILL)"); });
    at(start + 4s, [this] { freeze(2, 6s); });
    for (auto t = start; t < start + 1h; t += 100ms) {
      at(t, [this] { scheduler_.tick(now_); });
    }
    for (auto t = start + 1s; t < start + 1h; t += 1s) {
      at(t, [this] {
        scheduler_.heard_from(client_a_, now_);
        scheduler_.heard_from(client_b_, now_);
        for (auto& worker : workers_) {
          if (speaks(worker)) scheduler_.heard_from(worker.id, now_);
        }
      });
    }
    say("%d workers x %u slots; client A maps %llu tasks of ~%d ms; task %llu crashes any worker",
        options_.workers, options_.slots, static_cast<unsigned long long>(options_.tasks),
        options_.task_ms, static_cast<unsigned long long>(poison_));
    while (!events_.empty() && !(finished(job_a_) && finished(job_b_))) {
      auto event = events_.top();
      events_.pop();
      now_ = event.at;
      event.run();
      apply(scheduler_.take_decisions());
    }
    return report();
  }

 private:
  void at(TimePoint when, std::function<void()> run) {
    events_.push(Event{.at = when, .seq = seq_++, .run = std::move(run)});
  }

  template <class... Args>
  void say(const char* format, Args... args) {
    std::printf("t=%7.3fs  ", std::chrono::duration<double>(now_.time_since_epoch()).count());
    std::printf(format, args...);  // NOLINT(cppcoreguidelines-pro-type-vararg)
    std::printf("\n");
  }

  bool speaks(const SimWorker& worker) const { return worker.alive && now_ >= worker.frozen_until; }
  bool finished(JobId job) const { return job != JobId{} && !scheduler_.job_open(job); }

  void add_worker() {
    SimWorker worker;
    worker.id = scheduler_.add_worker(
        {.functions = {"analyse_trial"}, .slots = options_.slots, .prefetch = options_.slots},
        now_);
    workers_.push_back(std::move(worker));
  }

  void kill(std::size_t w, const char* why) {
    auto& worker = workers_[w];
    if (!worker.alive) return;
    worker.alive = false;
    say("worker %u dies: %s", acme::to_underlying(worker.id), why);
  }

  void freeze(std::size_t w, Ms how_long) {
    auto& worker = workers_[w];
    worker.frozen_until = now_ + how_long;
    say("worker %u frozen for %.1f s (SIGSTOP)", acme::to_underlying(worker.id),
        std::chrono::duration<double>(how_long).count());
    at(worker.frozen_until, [this, w] { thaw(w); });
  }

  void thaw(std::size_t w) {
    auto& worker = workers_[w];
    if (!worker.alive) return;
    say("worker %u wakes up (SIGCONT)", acme::to_underlying(worker.id));
    start_tasks(w);  // its overdue tasks finish now; their results arrive late
  }

  // The worker runs what it holds, in order, `slots` at a time (PROTOCOL.md §8).
  void start_tasks(std::size_t w) {
    auto& worker = workers_[w];
    while (speaks(worker) && worker.running < options_.slots && !worker.queue.empty()) {
      const auto [job, index] = worker.queue.front();
      worker.queue.pop_front();
      ++worker.running;
      if (job == job_a_ && index == poison_) {
        at(now_ + 10ms, [this, w] { kill(w, "the poison task crashed it"); });
        continue;
      }
      std::uniform_int_distribution<int> jitter(options_.task_ms / 2, options_.task_ms * 3 / 2);
      const auto id = worker.id;
      at(now_ + Ms(jitter(rng_)), [this, w, id, job, index] { finish(w, id, job, index); });
    }
  }

  void finish(std::size_t w, WorkerId id, JobId job, TaskIndex index) {
    auto& worker = workers_[w];
    if (!worker.alive) return;
    if (now_ < worker.frozen_until) {  // frozen mid-task: the result waits for the thaw
      at(worker.frozen_until, [this, w, id, job, index] { finish(w, id, job, index); });
      return;
    }
    const auto verdict = scheduler_.task_done(id, job, index, TaskStatus::Ok, now_);
    if (verdict.verdict == acme::scheduler::Verdict::Deliver) ++delivered_[job][index];
    if (worker.id != id) return;  // a task of the process's previous incarnation: its slot is gone
    --worker.running;
    if (!scheduler_.worker_alive(id) && worker.id == id) {
      // PROTOCOL.md §9: the broker no longer knows it (BYE reconnect=true): it rejoins anew.
      worker.queue.clear();
      worker.running = 0;
      worker.id = scheduler_.add_worker(
          {.functions = {"analyse_trial"}, .slots = options_.slots, .prefetch = options_.slots},
          now_);
      say("worker %u had been declared dead; it rejoins as worker %u", acme::to_underlying(id),
          acme::to_underlying(worker.id));
      return;
    }
    start_tasks(w);
  }

  void apply(std::vector<acme::scheduler::Decision> decisions) {
    for (auto& decision : decisions) {
      std::visit([this](auto& d) { on(d); }, decision);
    }
  }

  std::size_t index_of(WorkerId id) const {
    for (std::size_t w = 0; w < workers_.size(); ++w) {
      if (workers_[w].id == id) return w;
    }
    return workers_.size();
  }

  void on(const acme::scheduler::SendTasks& send) {
    const auto w = index_of(send.worker);
    if (w == workers_.size()) return;
    for (const auto& task : send.tasks) workers_[w].queue.emplace_back(send.job, task.index);
    start_tasks(w);
  }
  void on(const acme::scheduler::CancelTasks& /*cancel*/) {}
  void on(const acme::scheduler::TaskPoisoned& poisoned) {
    ++delivered_[poisoned.job][poisoned.index];
    say("task %llu poisoned on attempt %u: 3 workers died running it",
        static_cast<unsigned long long>(poisoned.index), poisoned.attempts);
  }
  void on(const acme::scheduler::JobFinished& done) {
    say("job %llu finished: %llu ok, %llu failed",
        static_cast<unsigned long long>(acme::to_underlying(done.job)),
        static_cast<unsigned long long>(done.ok), static_cast<unsigned long long>(done.failed));
  }
  void on(const acme::scheduler::WorkerLost& lost) {
    say("worker %u lost: silent for 3 s; %u tasks requeued, %u poisoned; a new worker starts",
        acme::to_underlying(lost.worker), lost.requeued, lost.poisoned);
    // The local launcher restarts dead workers (half a second to start a process).
    at(now_ + 500ms, [this] { add_worker(); });
  }
  void on(const acme::scheduler::ClientLost& /*lost*/) {}
  void on(const acme::scheduler::WindowOpened& /*opened*/) {}

  int report() {
    bool ok = finished(job_a_) && finished(job_b_);
    for (const auto& [job, total] :
         {std::pair{job_a_, options_.tasks}, std::pair{job_b_, options_.tasks / 4}}) {
      const auto& seen = delivered_[job];
      std::uint64_t once = 0;
      for (const auto& [index, count] : seen) once += (count == 1 && index < total) ? 1 : 0;
      const bool exact = once == total && seen.size() == total;
      ok = ok && exact;
      std::printf("job %llu: %llu/%llu tasks delivered exactly once%s\n",
                  static_cast<unsigned long long>(acme::to_underlying(job)),
                  static_cast<unsigned long long>(once), static_cast<unsigned long long>(total),
                  exact ? "" : "  <-- LOST OR DUPLICATED RESULTS");
    }
    const auto& stats = scheduler_.stats();
    const double ideal = static_cast<double>(options_.tasks + options_.tasks / 4) *
                         options_.task_ms / 1000.0 /
                         (options_.workers * static_cast<int>(options_.slots));
    const double wall = std::chrono::duration<double>(now_.time_since_epoch()).count();
    std::printf(
        "makespan %.2f s (ideal %.2f s with no faults); %llu dispatches, %llu requeued, "
        "%llu poisoned, %llu late results dropped\n",
        wall, ideal, static_cast<unsigned long long>(stats.dispatched),
        static_cast<unsigned long long>(stats.requeued),
        static_cast<unsigned long long>(stats.poisoned),
        static_cast<unsigned long long>(stats.late_results));
    std::printf("%s\n", ok ? "OK: every result exactly once" : "FAILED");
    return ok ? 0 : 1;
  }

  Options options_;
  std::mt19937 rng_;
  Scheduler scheduler_;
  TimePoint now_{};
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  std::uint64_t seq_ = 0;
  std::vector<SimWorker> workers_;
  ClientId client_a_{};
  ClientId client_b_{};
  JobId job_a_{};
  JobId job_b_{};
  TaskIndex poison_ = 0;
  std::map<JobId, std::map<TaskIndex, int>> delivered_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"A map on a simulated cluster, driven by acme's scheduler with a virtual clock"};
  Options options;
  app.add_option("--workers", options.workers, "Workers at the start")->check(CLI::Range(3, 10000));
  app.add_option("--slots", options.slots, "Tasks each worker runs at once")
      ->check(CLI::Range(1, 256));
  app.add_option("--tasks", options.tasks, "Tasks of client A's map")
      ->check(CLI::Range(std::uint64_t{10}, std::uint64_t{10'000'000}));
  app.add_option("--task-ms", options.task_ms, "Mean task duration (uniform +-50%)")
      ->check(CLI::Range(2, 60'000));
  app.add_option("--seed", options.seed, "Random seed");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  return Simulation(options).run();
}
