// Test-only driver of the scheduler: builds workers and jobs from short specs, moves a manual
// clock, records every decision and checks the scheduler's invariants after every step
// (HyperQueue tako's TestEnv + sanity_check). No sockets, no sleeps.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <acme/scheduler/scheduler.hpp>

namespace acme::test {

using namespace std::chrono_literals;
using scheduler::Decision;
using scheduler::JobEnd;
using scheduler::TimePoint;

struct WorkerOptions {
  std::uint32_t slots = 1;
  std::uint32_t prefetch = 0;
  std::vector<std::string> functions = {"square"};
};

struct JobOptions {
  std::optional<ClientId> client{};            // default: the harness's first client
  std::optional<std::uint64_t> total{};        // default: the submitted count
  std::optional<std::uint32_t> max_retries{};  // default: the config's, as the broker does
  bool retry_on_error = false;
  std::uint32_t cores = 1;
};

class SchedulerHarness {
 public:
  explicit SchedulerHarness(scheduler::Config config = {}) : scheduler_(config) {
    client_ = scheduler_.add_client(now_);
  }

  scheduler::Scheduler& scheduler() { return scheduler_; }
  [[nodiscard]] TimePoint now() const { return now_; }
  [[nodiscard]] ClientId client() const { return client_; }

  ClientId add_client() {
    const auto id = scheduler_.add_client(now_);
    step();
    return id;
  }

  WorkerId add_worker(const WorkerOptions& options = {}) {
    const auto id = scheduler_.add_worker(
        {.functions = options.functions, .slots = options.slots, .prefetch = options.prefetch},
        now_);
    step();
    return id;
  }

  JobId submit(const std::string& function, std::uint64_t count, const JobOptions& options = {}) {
    const auto id = scheduler_.submit(
        {.client = options.client.value_or(client_),
         .function = function,
         .total = options.total.value_or(count),
         .max_retries = options.max_retries.value_or(scheduler_.config().max_retries),
         .retry_on_error = options.retry_on_error,
         .cores = options.cores},
        count, now_);
    step();
    return id;
  }

  void add_tasks(JobId job, std::uint64_t count) {
    scheduler_.add_tasks(job, count, now_);
    step();
  }

  /// Runs pending dispatch and records its decisions.
  void dispatch() { step(); }

  /// Moves the clock and lets the scheduler expire whoever is silent. The harness's own client
  /// stands for a connected client and is heard from at the new time; other peers are not.
  void advance(std::chrono::milliseconds by) {
    now_ += by;
    if (scheduler_.client_alive(client_)) scheduler_.heard_from(client_, now_);
    scheduler_.tick(now_);
    step();
  }

  void heartbeat(WorkerId worker) {
    scheduler_.heard_from(worker, now_);
    step();
  }
  void heartbeat(ClientId client) {
    scheduler_.heard_from(client, now_);
    step();
  }

  /// Reports one task; returns the scheduler's verdict.
  scheduler::TaskVerdict report(WorkerId worker, JobId job, TaskIndex index,
                                protocol::TaskStatus status = protocol::TaskStatus::Ok) {
    const auto verdict = scheduler_.task_done(worker, job, index, status, now_);
    if (verdict.verdict == scheduler::Verdict::Deliver) delivered_[job].push_back(index);
    step();
    return verdict;
  }

  /// Reports every task in flight on the worker as finished with `status`; returns how many.
  std::size_t report_done(WorkerId worker, protocol::TaskStatus status = protocol::TaskStatus::Ok) {
    return report_oldest(worker, std::numeric_limits<std::size_t>::max(), status);
  }

  /// Reports the oldest `n` tasks in flight on the worker; returns how many it reported.
  std::size_t report_oldest(WorkerId worker, std::size_t n,
                            protocol::TaskStatus status = protocol::TaskStatus::Ok) {
    auto tasks = scheduler_.in_flight(worker);
    tasks.resize(std::min(n, tasks.size()));
    for (const auto& [job, index] : tasks) {
      const auto verdict = scheduler_.task_done(worker, job, index, status, now_);
      if (verdict.verdict == scheduler::Verdict::Deliver) delivered_[job].push_back(index);
    }
    step();
    return tasks.size();
  }

  void worker_left(WorkerId worker) {
    scheduler_.worker_left(worker, now_);
    step();
  }
  void client_left(ClientId client) {
    scheduler_.client_left(client, now_);
    step();
  }
  void cancel(JobId job) {
    scheduler_.cancel(job, now_);
    step();
  }

  /// Tasks now in flight on the worker, as (job, index), oldest first.
  [[nodiscard]] std::vector<std::pair<JobId, TaskIndex>> tasks_on(WorkerId worker) const {
    return scheduler_.in_flight(worker);
  }

  /// Task assignments sent to the worker since the last call (all jobs), in order.
  std::vector<protocol::TaskAssignment> take_sent(WorkerId worker) {
    std::vector<protocol::TaskAssignment> tasks;
    for (auto& send : std::exchange(sent_[worker], {})) {
      tasks.insert(tasks.end(), send.tasks.begin(), send.tasks.end());
    }
    return tasks;
  }
  /// SendTasks decisions for the worker since the last call (one per TASKS message).
  std::vector<scheduler::SendTasks> take_batches(WorkerId worker) {
    return std::exchange(sent_[worker], {});
  }

  std::vector<scheduler::CancelTasks> take_cancels(WorkerId worker) {
    return std::exchange(cancels_[worker], {});
  }
  std::vector<scheduler::TaskPoisoned> take_poisoned() { return std::exchange(poisoned_, {}); }
  std::vector<scheduler::WorkerLost> take_lost_workers() {
    return std::exchange(lost_workers_, {});
  }
  std::vector<ClientId> take_lost_clients() { return std::exchange(lost_clients_, {}); }
  std::vector<scheduler::WindowOpened> take_windows() { return std::exchange(windows_, {}); }

  [[nodiscard]] bool job_finished(JobId job) const { return finished_.contains(job); }
  [[nodiscard]] const scheduler::JobFinished& finished(JobId job) const {
    return finished_.at(job);
  }
  /// Indices delivered for the job (verdict Deliver), in order of delivery.
  [[nodiscard]] std::vector<TaskIndex> delivered(JobId job) const {
    const auto it = delivered_.find(job);
    return it == delivered_.end() ? std::vector<TaskIndex>{} : it->second;
  }

  /// tako's emptiness check: nothing further happens without a new event.
  void expect_no_more_decisions() {
    scheduler_.check_invariants();
    const auto decisions = scheduler_.take_decisions();
    EXPECT_TRUE(decisions.empty()) << decisions.size() << " unexpected decision(s)";
    for (const auto& [worker, sends] : sent_) {
      EXPECT_TRUE(sends.empty()) << "unread tasks sent to worker " << to_underlying(worker);
    }
  }

 private:
  void step() {
    for (auto& decision : scheduler_.take_decisions()) record(std::move(decision));
    scheduler_.check_invariants();
  }

  void record(Decision decision) {
    std::visit(
        [this](auto&& d) {
          using T = std::decay_t<decltype(d)>;
          if constexpr (std::is_same_v<T, scheduler::SendTasks>) {
            sent_[d.worker].push_back(std::move(d));
          } else if constexpr (std::is_same_v<T, scheduler::CancelTasks>) {
            cancels_[d.worker].push_back(std::move(d));
          } else if constexpr (std::is_same_v<T, scheduler::TaskPoisoned>) {
            delivered_[d.job].push_back(d.index);
            poisoned_.push_back(d);
          } else if constexpr (std::is_same_v<T, scheduler::JobFinished>) {
            EXPECT_FALSE(finished_.contains(d.job)) << "job finished twice";
            finished_.emplace(d.job, d);
          } else if constexpr (std::is_same_v<T, scheduler::WorkerLost>) {
            lost_workers_.push_back(d);
          } else if constexpr (std::is_same_v<T, scheduler::ClientLost>) {
            lost_clients_.push_back(d.client);
          } else if constexpr (std::is_same_v<T, scheduler::WindowOpened>) {
            windows_.push_back(d);
          }
        },
        std::move(decision));
  }

  scheduler::Scheduler scheduler_;
  TimePoint now_{};
  ClientId client_{};
  std::map<WorkerId, std::vector<scheduler::SendTasks>> sent_;
  std::map<WorkerId, std::vector<scheduler::CancelTasks>> cancels_;
  std::map<JobId, std::vector<TaskIndex>> delivered_;
  std::map<JobId, scheduler::JobFinished> finished_;
  std::vector<scheduler::TaskPoisoned> poisoned_;
  std::vector<scheduler::WorkerLost> lost_workers_;
  std::vector<ClientId> lost_clients_;
  std::vector<scheduler::WindowOpened> windows_;
};

}  // namespace acme::test
