// Decides which task runs on which worker, who is dead, and what is retried. Pure: no sockets,
// no threads, no clock reads and no logging; time is an argument, so tests control it exactly.
// Payloads are opaque: the scheduler sees only (job, index) pairs, never argument bytes.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <limits>
#include <queue>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include <acme/ids.hpp>
#include <acme/protocol/version.hpp>
#include <acme/scheduler/config.hpp>
#include <acme/scheduler/decisions.hpp>

namespace acme::scheduler {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

/// What a worker offers, from its READY (PROTOCOL.md §6.3.1).
struct WorkerSpec {
  std::vector<std::string> functions{};
  std::uint32_t slots = 1;
  std::uint32_t prefetch = 0;
};

/// A job as the broker opens it: resolved from a SUBMIT with the broker's defaults applied.
struct JobSpec {
  ClientId client{};
  std::string function{};
  std::uint64_t total = 0;
  std::uint32_t max_retries = 3;
  bool retry_on_error = false;
  std::uint32_t cores = 1;
};

/// What to do with a result a worker reported (PROTOCOL.md §10).
enum class Verdict : std::uint8_t {
  Deliver,  // forward it to the client: it is this task's one result
  Retry,    // the task went back to the queue (an error the job retries, or Unsupported)
  Drop,     // late or unknown: the task is not in flight on this worker; forget it
};

struct TaskVerdict {
  Verdict verdict = Verdict::Drop;
  std::uint32_t attempt = 0;  // the attempt that produced the result
};

/// Counters of peer-caused oddities; the broker logs them. Never an exception.
struct Stats {
  std::uint64_t dispatched = 0;     // task assignments sent
  std::uint64_t late_results = 0;   // results for tasks not in flight on that worker
  std::uint64_t unknown_peers = 0;  // events naming a worker or client that is gone
  std::uint64_t requeued = 0;       // tasks put back after a worker death, BYE or retry
  std::uint64_t poisoned = 0;
  std::uint64_t workers_lost = 0;
  std::uint64_t clients_lost = 0;
  std::uint64_t tasks_ok = 0;      // tasks finished with status ok (delivered to their client)
  std::uint64_t tasks_failed = 0;  // tasks finished with another status, poisoned included
};

/// What the broker holds now, for STATUS (PROTOCOL.md §6.2.7).
struct Load {
  std::uint64_t jobs = 0;     // open
  std::uint64_t queued = 0;   // tasks received and not yet dispatched (requeued ones included)
  std::uint64_t running = 0;  // tasks dispatched and not yet finished
  std::uint64_t done = 0;     // tasks finished ok since the start (Stats::tasks_ok)
  std::uint64_t failed = 0;   // tasks finished otherwise since the start (Stats::tasks_failed)
  friend bool operator==(const Load&, const Load&) = default;
};

class Scheduler {
 public:
  explicit Scheduler(Config config = {});

  // ---- clients ----
  /// A client sent its first message.
  ClientId add_client(TimePoint now);
  /// Any message from the client counts as a heartbeat (PROTOCOL.md §9).
  void heard_from(ClientId client, TimePoint now);
  /// The client said BYE: its open jobs end with JobEnd::ClientLost.
  void client_left(ClientId client, TimePoint now);
  [[nodiscard]] bool client_alive(ClientId client) const;
  /// Tasks the client may still submit (PROTOCOL.md §6.2.1). A 0 here arms a WindowOpened.
  std::uint64_t window(ClientId client);

  // ---- jobs ----
  /// Opens a job with no tasks yet. Precondition: spec.total > 0 and the client is known.
  JobId open_job(const JobSpec& spec, TimePoint now);
  /// The job's next `count` tasks arrived (indices continue where the last call stopped).
  /// Precondition: the job is open and the total is not exceeded.
  void add_tasks(JobId id, std::uint64_t count, TimePoint now);
  /// open_job + add_tasks.
  JobId submit(const JobSpec& spec, std::uint64_t count, TimePoint now);
  /// The client cancelled the job: queued tasks are dropped, in-flight ones cancelled.
  void cancel(JobId job, TimePoint now);
  [[nodiscard]] bool job_open(JobId job) const { return jobs_.contains(job); }
  /// Tasks of the job received and not yet dispatched (including requeued ones).
  [[nodiscard]] std::uint64_t queued(JobId job) const;

  // ---- workers ----
  /// A worker sent READY.
  WorkerId add_worker(const WorkerSpec& spec, TimePoint now);
  /// Any message from the worker counts as a heartbeat (PROTOCOL.md §9).
  void heard_from(WorkerId worker, TimePoint now);
  /// The worker reported a finished task. Counts as a heartbeat.
  TaskVerdict task_done(WorkerId worker, JobId job, TaskIndex index, protocol::TaskStatus status,
                        TimePoint now);
  /// The worker said BYE: its tasks go back to the queue with no penalty.
  void worker_left(WorkerId worker, TimePoint now);
  [[nodiscard]] bool worker_alive(WorkerId worker) const;
  /// Tasks (not cores) in flight on the worker, oldest first.
  [[nodiscard]] std::vector<std::pair<JobId, TaskIndex>> in_flight(WorkerId worker) const;
  /// Tasks (not cores) in flight on the worker; 0 for one that is gone.
  [[nodiscard]] std::uint32_t running(WorkerId worker) const;

  // ---- time ----
  /// Expires silent workers (requeue, poison) and clients (close jobs); fails orphaned jobs.
  void tick(TimePoint now);
  /// The earliest time at which tick() could have something to do.
  [[nodiscard]] TimePoint next_deadline() const;

  /// Decisions made since the last call, oldest first. Pending dispatch happens here, so the
  /// broker that drains its socket before calling this gets tasks batched for free.
  [[nodiscard]] std::vector<Decision> take_decisions();

  [[nodiscard]] const Stats& stats() const { return stats_; }
  [[nodiscard]] const Config& config() const { return config_; }
  [[nodiscard]] std::size_t live_workers() const { return live_workers_; }
  [[nodiscard]] std::size_t open_jobs() const { return jobs_.size(); }
  /// Task counts over all jobs. O(open jobs): for STATUS, not for every loop iteration.
  [[nodiscard]] Load load() const;

  /// Throws std::logic_error naming the first broken invariant. For tests.
  void check_invariants() const;

 private:
  using FunctionId = std::uint32_t;
  static constexpr std::size_t kNone = std::numeric_limits<std::size_t>::max();

  struct InFlight {
    JobId job{};
    TaskIndex index = 0;
    std::uint32_t attempt = 1;
    std::uint32_t failures = 0;  // earlier attempts that ended in a death or a retried error
    bool suspect = false;        // was in flight on a worker that died (PROTOCOL.md §10)
  };
  struct Retry {
    TaskIndex index = 0;
    std::uint32_t attempt = 1;  // the attempt number it will be sent with
    std::uint32_t failures = 0;
    bool suspect = false;
  };
  struct Worker {
    bool alive = false;
    bool dirty = false;
    std::uint32_t idle_generation = 0;  // entries of the idle lists with another value are stale
    std::uint32_t slots = 1;
    std::uint32_t capacity = 1;           // slots + prefetch, in cores
    std::uint32_t used = 0;               // cores of the tasks in flight
    std::uint32_t suspects = 0;           // suspects in flight (at most one: PROTOCOL.md §10)
    std::vector<FunctionId> functions{};  // sorted
    std::deque<InFlight> tasks{};         // in flight, in the order sent (§8: FIFO start order)
    TimePoint last_seen{};
  };
  struct Client {
    bool alive = false;
    bool stalled = false;         // window() returned 0; a WindowOpened is owed
    std::uint64_t holding = 0;    // tasks in the broker: received, not yet finished
    std::uint64_t in_flight = 0;  // cores of its tasks on workers (the fairness measure)
    std::vector<JobId> jobs{};
    TimePoint last_seen{};
  };
  struct Job {
    ClientId client{};
    FunctionId function = 0;
    std::uint64_t total = 0;
    std::uint64_t received = 0;   // tasks added so far: indices [0, received)
    std::uint64_t next = 0;       // the next never-dispatched index
    std::deque<Retry> retries{};  // requeued tasks; dispatched before fresh ones
    std::uint64_t in_flight = 0;  // tasks
    std::uint64_t ok = 0;
    std::uint64_t failed = 0;
    std::uint32_t max_retries = 3;
    std::uint32_t cores = 1;
    bool retry_on_error = false;
    bool dirty = false;
    std::size_t pending_pos = kNone;  // position in its function's pending list
    std::uint64_t served = 0;         // round-robin tie-break among equal shares
    TimePoint orphan_since{};
    bool orphan = false;
    [[nodiscard]] std::uint64_t queued() const { return received - next + retries.size(); }
  };
  struct IdleEntry {
    WorkerId worker{};
    std::uint32_t generation = 0;
  };
  struct Function {
    std::string name{};
    std::vector<JobId> pending{};  // open jobs with queued tasks
    // Workers that had credit left and nothing to do (lazy: stale entries are skipped): with
    // free cores, and with only prefetch room (all their slots busy). New work wakes the first
    // kind first (§8: free cores before prefetch).
    std::vector<IdleEntry> idle{};
    std::vector<IdleEntry> idle_prefetch{};
    std::uint32_t live_workers = 0;
    std::uint32_t max_slots = 0;  // the largest slots among live workers offering it
  };
  enum class PeerKind : std::uint8_t { Worker, Client };
  struct Deadline {
    TimePoint at{};
    PeerKind kind;
    std::uint32_t id;
    bool operator>(const Deadline& other) const { return at > other.at; }
  };

  FunctionId intern(const std::string& name);
  Worker* find(WorkerId id);
  Client* find(ClientId id);
  Job* find(JobId id);
  void watch(PeerKind kind, std::uint32_t id, TimePoint last_seen);
  void set_pending(JobId id, Job& job);
  void unset_pending(Job& job);
  void mark_dirty(JobId id, Job& job);
  void mark_dirty(WorkerId id, Worker& worker);
  void requeue(Job& job, JobId id, const InFlight& task);
  void release(Worker& worker, Job& job, std::uint32_t cores);
  void finish_task(JobId id, Job& job, bool ok);
  void maybe_open_window(ClientId id);
  void go_idle(WorkerId id, Worker& worker);
  void close_job(JobId id, JobEnd end);
  void remove_worker(WorkerId id, bool died);
  void forget_function(WorkerId id, Worker& worker, FunctionId function);
  void remove_client(ClientId id);
  void dispatch();
  void wake_idle_workers();
  [[nodiscard]] bool queue_covers_dirty_credit();
  void fill(WorkerId id, Worker& worker, std::uint32_t bound);
  std::uint32_t assign(WorkerId wid, Worker& worker, JobId jid, Job& job, std::uint32_t limit,
                       std::uint32_t bound);
  void check_orphans(TimePoint now);
  void refresh_capability();
  struct InFlightCounts {
    std::unordered_map<JobId, std::uint64_t> jobs;
    std::vector<std::uint64_t> clients;
  };
  [[nodiscard]] InFlightCounts check_worker_invariants() const;
  void check_job_invariants(const InFlightCounts& in_flight) const;
  void check_work_conservation() const;

  Config config_;
  Stats stats_;
  std::vector<Decision> decisions_{};
  std::vector<Worker> workers_{};  // indexed by WorkerId; ids are never reused
  std::vector<Client> clients_{};  // indexed by ClientId; ids are never reused
  std::unordered_map<JobId, Job> jobs_;
  std::uint64_t next_job_ = 1;
  std::vector<Function> functions_{};
  std::unordered_map<std::string, FunctionId> function_ids_;
  std::vector<JobId> dirty_jobs_{};
  std::vector<WorkerId> dirty_workers_{};
  std::priority_queue<Deadline, std::vector<Deadline>, std::greater<>> deadlines_;
  std::size_t live_workers_ = 0;
  bool capability_stale_ = false;
  TimePoint next_orphan_check_{};
  std::uint64_t serve_counter_ = 0;
  // Scratch space of fill(), kept to avoid allocations. Job pointers are stable: unordered_map
  // nodes do not move, and fill() closes no job.
  std::vector<std::pair<JobId, Job*>> candidates_{};
  std::vector<FunctionId> seen_functions_{};  // scratch of queue_covers_dirty_credit()
};

}  // namespace acme::scheduler
