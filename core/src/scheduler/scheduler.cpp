// The scheduler's rules. Every rule cites the section of docs/PROTOCOL.md it implements.
// Pure: no sockets, threads, clock reads or logging.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include <acme/scheduler/scheduler.hpp>

namespace acme::scheduler {
namespace {

// Our own bugs (a broken precondition of the broker's calls), never peer input.
void require(bool condition, const char* what) {
  if (!condition) throw std::logic_error(std::string("acme::scheduler: ") + what);
}

template <class Id>
std::uint32_t index_of(Id id) {
  return static_cast<std::uint32_t>(to_underlying(id));
}

}  // namespace

Scheduler::Scheduler(Config config) : config_(config) {
  config_.max_retries = std::max<std::uint32_t>(config_.max_retries, 1);
  config_.max_batch = std::max<std::uint32_t>(config_.max_batch, 1);
  config_.liveness = std::max<std::uint32_t>(config_.liveness, 1);
}

// ---------------------------------------------------------------------------------------------
// Lookup and bookkeeping helpers

Scheduler::Worker* Scheduler::find(WorkerId id) {
  const auto i = index_of(id);
  if (i >= workers_.size() || !workers_[i].alive) return nullptr;
  return &workers_[i];
}

Scheduler::Client* Scheduler::find(ClientId id) {
  const auto i = index_of(id);
  if (i >= clients_.size() || !clients_[i].alive) return nullptr;
  return &clients_[i];
}

Scheduler::Job* Scheduler::find(JobId id) {
  const auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : &it->second;
}

Scheduler::FunctionId Scheduler::intern(const std::string& name) {
  const auto [it, inserted] =
      function_ids_.try_emplace(name, static_cast<FunctionId>(functions_.size()));
  if (inserted) functions_.push_back(Function{.name = name});
  return it->second;
}

void Scheduler::watch(PeerKind kind, std::uint32_t id, TimePoint last_seen) {
  deadlines_.push(Deadline{last_seen + config_.peer_timeout(), kind, id});
}

void Scheduler::set_pending(JobId id, Job& job) {
  if (job.pending_pos != kNone || job.queued() == 0) return;
  auto& pending = functions_[job.function].pending;
  job.pending_pos = pending.size();
  pending.push_back(id);
}

void Scheduler::unset_pending(Job& job) {
  if (job.pending_pos == kNone) return;
  auto& pending = functions_[job.function].pending;
  const auto pos = job.pending_pos;
  if (pos + 1 != pending.size()) {
    pending[pos] = pending.back();
    jobs_.at(pending[pos]).pending_pos = pos;
  }
  pending.pop_back();
  job.pending_pos = kNone;
}

void Scheduler::mark_dirty(JobId id, Job& job) {
  set_pending(id, job);
  if (!job.dirty) {
    job.dirty = true;
    dirty_jobs_.push_back(id);
  }
}

void Scheduler::mark_dirty(WorkerId id, Worker& worker) {
  if (!worker.dirty) {
    worker.dirty = true;
    dirty_workers_.push_back(id);
  }
}

// ---------------------------------------------------------------------------------------------
// Clients

ClientId Scheduler::add_client(TimePoint now) {
  const auto id = ClientId{static_cast<std::uint32_t>(clients_.size())};
  clients_.push_back(Client{.alive = true, .last_seen = now});
  watch(PeerKind::Client, index_of(id), now);
  return id;
}

void Scheduler::heard_from(ClientId client, TimePoint now) {
  if (auto* c = find(client)) {
    c->last_seen = now;
  } else {
    ++stats_.unknown_peers;
  }
}

void Scheduler::client_left(ClientId client, TimePoint /*now*/) {
  if (find(client) == nullptr) {
    ++stats_.unknown_peers;
    return;
  }
  remove_client(client);
}

bool Scheduler::client_alive(ClientId client) const {
  const auto i = index_of(client);
  return i < clients_.size() && clients_[i].alive;
}

std::uint64_t Scheduler::window(ClientId client) {
  auto* c = find(client);
  if (c == nullptr) return 0;
  // PROTOCOL.md §6.2.1: the window counts tasks the broker holds for the client.
  const auto window = c->holding >= config_.client_window ? 0 : config_.client_window - c->holding;
  if (window == 0) c->stalled = true;
  return window;
}

void Scheduler::remove_client(ClientId id) {
  auto& client = clients_[index_of(id)];
  client.alive = false;
  // close_job edits client.jobs: work on a copy.
  const auto jobs = std::exchange(client.jobs, {});
  for (const auto job : jobs) close_job(job, JobEnd::ClientLost);
  client.jobs.shrink_to_fit();
}

// ---------------------------------------------------------------------------------------------
// Jobs

JobId Scheduler::open_job(const JobSpec& spec, TimePoint now) {
  auto* client = find(spec.client);
  require(client != nullptr, "open_job for an unknown client");
  require(spec.total > 0, "open_job with no tasks");
  const auto id = JobId{next_job_++};
  Job job;
  job.client = spec.client;
  job.function = intern(spec.function);
  job.total = spec.total;
  job.max_retries = std::max<std::uint32_t>(spec.max_retries, 1);
  job.retry_on_error = spec.retry_on_error;
  job.cores = std::max<std::uint32_t>(spec.cores, 1);
  jobs_.emplace(id, std::move(job));
  client->jobs.push_back(id);
  client->last_seen = std::max(client->last_seen, now);
  // A new job is checked for a capable worker at the next tick (the no-worker rule).
  next_orphan_check_ = std::min(next_orphan_check_, now);
  return id;
}

void Scheduler::add_tasks(JobId id, std::uint64_t count, TimePoint /*now*/) {
  auto* job = find(id);
  require(job != nullptr, "add_tasks for a closed job");
  require(count <= job->total - job->received, "add_tasks beyond the job's total");
  if (count == 0) return;
  job->received += count;
  clients_[index_of(job->client)].holding += count;
  mark_dirty(id, *job);
}

JobId Scheduler::submit(const JobSpec& spec, std::uint64_t count, TimePoint now) {
  const auto id = open_job(spec, now);
  add_tasks(id, count, now);
  return id;
}

std::uint64_t Scheduler::queued(JobId job) const {
  const auto it = jobs_.find(job);
  return it == jobs_.end() ? 0 : it->second.queued();
}

void Scheduler::cancel(JobId job, TimePoint /*now*/) {
  if (find(job) == nullptr) return;
  close_job(job, JobEnd::Cancelled);
}

void Scheduler::close_job(JobId id, JobEnd end) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return;
  auto& job = it->second;
  unset_pending(job);
  auto& client = clients_[index_of(job.client)];
  if (job.in_flight > 0) {
    // Cancellation frees the workers at once: their credits come back now, not when (or if)
    // the abandoned tasks' results arrive; a late result is then dropped (PROTOCOL.md §10).
    for (std::uint32_t w = 0; w < workers_.size() && job.in_flight > 0; ++w) {
      auto& worker = workers_[w];
      if (!worker.alive) continue;
      CancelTasks cancel{.worker = WorkerId{w}, .job = id, .tasks = {}};
      std::erase_if(worker.tasks, [&](const InFlight& task) {
        if (task.job != id) return false;
        cancel.tasks.push_back(task.index);
        if (task.suspect) --worker.suspects;
        return true;
      });
      if (cancel.tasks.empty()) continue;
      const auto count = static_cast<std::uint32_t>(cancel.tasks.size());
      worker.used -= count * job.cores;
      client.in_flight -= std::uint64_t{count} * job.cores;
      job.in_flight -= count;
      decisions_.emplace_back(std::move(cancel));
      mark_dirty(WorkerId{w}, worker);
    }
  }
  client.holding -= job.received - job.ok - job.failed;
  std::erase(client.jobs, id);
  const auto client_id = job.client;
  decisions_.emplace_back(
      JobFinished{.job = id, .client = client_id, .end = end, .ok = job.ok, .failed = job.failed});
  jobs_.erase(it);
  maybe_open_window(client_id);
}

void Scheduler::maybe_open_window(ClientId id) {
  auto& client = clients_[index_of(id)];
  if (!client.alive || !client.stalled) return;
  // PROTOCOL.md §6.2.1: a stalled client hears again once half its window is free, so that
  // it sends large chunks rather than one task per finished task.
  const auto window = config_.client_window - std::min(client.holding, config_.client_window);
  if (window < (config_.client_window + 1) / 2) return;
  client.stalled = false;
  decisions_.emplace_back(WindowOpened{.client = id, .window = window});
}

void Scheduler::finish_task(JobId id, Job& job, bool ok) {
  if (ok) {
    ++job.ok;
    ++stats_.tasks_ok;
  } else {
    ++job.failed;
    ++stats_.tasks_failed;
  }
  const auto client = job.client;
  --clients_[index_of(client)].holding;
  if (job.ok + job.failed == job.total) {
    close_job(id, JobEnd::Completed);
  } else {
    maybe_open_window(client);
  }
}

// ---------------------------------------------------------------------------------------------
// Workers

WorkerId Scheduler::add_worker(const WorkerSpec& spec, TimePoint now) {
  const auto id = WorkerId{static_cast<std::uint32_t>(workers_.size())};
  Worker worker;
  worker.alive = true;
  worker.slots = std::max<std::uint32_t>(spec.slots, 1);
  worker.capacity = worker.slots + std::min(spec.prefetch, UINT32_MAX - worker.slots);
  worker.last_seen = now;
  worker.functions.reserve(spec.functions.size());
  for (const auto& name : spec.functions) worker.functions.push_back(intern(name));
  std::sort(worker.functions.begin(), worker.functions.end());
  worker.functions.erase(std::unique(worker.functions.begin(), worker.functions.end()),
                         worker.functions.end());
  for (const auto f : worker.functions) {
    auto& function = functions_[f];
    ++function.live_workers;
    function.max_slots = std::max(function.max_slots, worker.slots);
  }
  workers_.push_back(std::move(worker));
  ++live_workers_;
  watch(PeerKind::Worker, index_of(id), now);
  mark_dirty(id, workers_.back());
  return id;
}

bool Scheduler::worker_alive(WorkerId worker) const {
  const auto i = index_of(worker);
  return i < workers_.size() && workers_[i].alive;
}

std::vector<std::pair<JobId, TaskIndex>> Scheduler::in_flight(WorkerId worker) const {
  std::vector<std::pair<JobId, TaskIndex>> tasks;
  if (!worker_alive(worker)) return tasks;
  for (const auto& task : workers_[index_of(worker)].tasks) {
    tasks.emplace_back(task.job, task.index);
  }
  return tasks;
}

std::uint32_t Scheduler::running(WorkerId worker) const {
  if (!worker_alive(worker)) return 0;
  return static_cast<std::uint32_t>(workers_[index_of(worker)].tasks.size());
}

Load Scheduler::load() const {
  Load load{.jobs = jobs_.size(), .done = stats_.tasks_ok, .failed = stats_.tasks_failed};
  for (const auto& [id, job] : jobs_) {
    load.queued += job.queued();
    load.running += job.in_flight;
  }
  return load;
}

void Scheduler::heard_from(WorkerId worker, TimePoint now) {
  if (auto* w = find(worker)) {
    w->last_seen = now;
  } else {
    ++stats_.unknown_peers;
  }
}

void Scheduler::release(Worker& worker, Job& job, std::uint32_t cores) {
  worker.used -= cores;
  clients_[index_of(job.client)].in_flight -= cores;
  --job.in_flight;
}

void Scheduler::requeue(Job& job, JobId id, const InFlight& task) {
  // PROTOCOL.md §10: requeued tasks go to the front of their job's queue, so a retry does not
  // wait behind the rest of a long map.
  job.retries.push_front(Retry{.index = task.index,
                               .attempt = task.attempt + 1,
                               .failures = task.failures,
                               .suspect = task.suspect});
  ++stats_.requeued;
  mark_dirty(id, job);
}

TaskVerdict Scheduler::task_done(WorkerId worker, JobId job_id, TaskIndex index,
                                 protocol::TaskStatus status, TimePoint now) {
  auto* w = find(worker);
  if (w == nullptr) {
    ++stats_.unknown_peers;
    ++stats_.late_results;
    return {};
  }
  w->last_seen = now;
  // PROTOCOL.md §10: a result counts only from the worker the task is in flight on. Results
  // mostly come back in the order sent, so the search usually stops at the first entry.
  const auto it = std::find_if(w->tasks.begin(), w->tasks.end(), [&](const InFlight& task) {
    return task.index == index && task.job == job_id;
  });
  if (it == w->tasks.end()) {
    ++stats_.late_results;
    return {};
  }
  auto task = *it;
  w->tasks.erase(it);
  if (task.suspect) --w->suspects;
  auto& job = jobs_.at(job_id);
  release(*w, job, job.cores);
  mark_dirty(worker, *w);
  const TaskVerdict deliver{.verdict = Verdict::Deliver, .attempt = task.attempt};
  switch (status) {
    case protocol::TaskStatus::Ok: finish_task(job_id, job, true); return deliver;
    case protocol::TaskStatus::Unsupported:
      // §6.5: the worker lacks the function after all: try elsewhere, at no cost to the task.
      forget_function(worker, *w, job.function);
      requeue(job, job_id, task);
      return {.verdict = Verdict::Retry, .attempt = task.attempt};
    case protocol::TaskStatus::Failed:
    case protocol::TaskStatus::TimedOut:
    case protocol::TaskStatus::Poisoned:
    case protocol::TaskStatus::Cancelled: break;
  }
  // §10: an error is final unless the job retries errors and has failures left.
  if (job.retry_on_error && task.failures + 1 < job.max_retries) {
    ++task.failures;
    requeue(job, job_id, task);
    return {.verdict = Verdict::Retry, .attempt = task.attempt};
  }
  finish_task(job_id, job, false);
  return deliver;
}

void Scheduler::forget_function(WorkerId /*id*/, Worker& worker, FunctionId function) {
  const auto it = std::lower_bound(worker.functions.begin(), worker.functions.end(), function);
  if (it == worker.functions.end() || *it != function) return;
  worker.functions.erase(it);
  --functions_[function].live_workers;
  capability_stale_ = true;
}

void Scheduler::worker_left(WorkerId worker, TimePoint /*now*/) {
  if (find(worker) == nullptr) {
    ++stats_.unknown_peers;
    return;
  }
  remove_worker(worker, false);
}

void Scheduler::remove_worker(WorkerId id, bool died) {
  auto& worker = workers_[index_of(id)];
  worker.alive = false;
  --live_workers_;
  for (const auto f : worker.functions) --functions_[f].live_workers;
  capability_stale_ = true;
  std::size_t lost_at = decisions_.size();
  if (died) {
    ++stats_.workers_lost;
    decisions_.emplace_back(WorkerLost{.worker = id});
  }
  auto tasks = std::exchange(worker.tasks, {});
  worker.used = 0;
  worker.suspects = 0;
  worker.functions = {};
  std::uint32_t requeued = 0;
  std::uint32_t poisoned = 0;
  // PROTOCOL.md §8, §10: a worker starts tasks in the order received and runs `slots` cores'
  // worth at once, so only the oldest slots' worth may have been running when it died. Those
  // count a failure; the prefetched rest never ran and go back blameless. All of them become
  // suspects: a result sent just before the death can be lost with the process, and then the
  // task that crashed it is among the "prefetched"; kept apart, the two cannot meet again.
  std::uint32_t running_cores = 0;
  // Requeue back to front so that the oldest task ends up first in its job's queue.
  std::vector<bool> blamed(tasks.size(), false);
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    const auto cores = jobs_.at(tasks[i].job).cores;
    if (!died || running_cores + cores > worker.slots) break;
    running_cores += cores;
    blamed[i] = true;
  }
  for (std::size_t i = tasks.size(); i-- > 0;) {
    auto task = tasks[i];
    auto& job = jobs_.at(task.job);
    --job.in_flight;
    clients_[index_of(job.client)].in_flight -= job.cores;
    if (died) task.suspect = true;
    if (blamed[i]) {
      ++task.failures;
      if (task.failures >= job.max_retries) {
        ++poisoned;
        ++stats_.poisoned;
        decisions_.emplace_back(TaskPoisoned{
            .job = task.job, .index = task.index, .attempts = task.attempt, .last_worker = id});
        finish_task(task.job, job, false);
        continue;
      }
    }
    ++requeued;
    requeue(job, task.job, task);
  }
  if (died) {
    auto& lost = std::get<WorkerLost>(decisions_[lost_at]);
    lost.requeued = requeued;
    lost.poisoned = poisoned;
  }
}

// ---------------------------------------------------------------------------------------------
// Time

void Scheduler::tick(TimePoint now) {
  // PROTOCOL.md §9: silence for liveness x interval means dead. The heap holds one entry per
  // live peer; an entry that fires for a peer heard from since is pushed again, so a tick
  // costs O(log peers) per expiry, not a scan of all peers.
  while (!deadlines_.empty() && deadlines_.top().at <= now) {
    const auto due = deadlines_.top();
    deadlines_.pop();
    if (due.kind == PeerKind::Worker) {
      const auto& worker = workers_[due.id];
      if (!worker.alive) continue;
      const auto expiry = worker.last_seen + config_.peer_timeout();
      if (expiry > now) {
        deadlines_.push(Deadline{expiry, due.kind, due.id});
        continue;
      }
      remove_worker(WorkerId{due.id}, true);
    } else {
      const auto& client = clients_[due.id];
      if (!client.alive) continue;
      const auto expiry = client.last_seen + config_.peer_timeout();
      if (expiry > now) {
        deadlines_.push(Deadline{expiry, due.kind, due.id});
        continue;
      }
      ++stats_.clients_lost;
      decisions_.emplace_back(ClientLost{.client = ClientId{due.id}});
      remove_client(ClientId{due.id});
    }
  }
  check_orphans(now);
}

TimePoint Scheduler::next_deadline() const {
  auto next = TimePoint::max();
  if (!deadlines_.empty()) next = deadlines_.top().at;
  if (!jobs_.empty() && live_workers_ > 0) next = std::min(next, next_orphan_check_);
  return next;
}

void Scheduler::refresh_capability() {
  for (auto& function : functions_) {
    function.live_workers = 0;
    function.max_slots = 0;
  }
  for (const auto& worker : workers_) {
    if (!worker.alive) continue;
    for (const auto f : worker.functions) {
      ++functions_[f].live_workers;
      functions_[f].max_slots = std::max(functions_[f].max_slots, worker.slots);
    }
  }
  capability_stale_ = false;
}

void Scheduler::check_orphans(TimePoint now) {
  if (jobs_.empty() || now < next_orphan_check_) return;
  next_orphan_check_ = now + config_.heartbeat_interval;
  // With no worker at all the clock does not run: workers may still be starting (a batch job
  // pending in a queue), and the client decides how long to wait for them.
  if (live_workers_ == 0) {
    for (auto& [id, job] : jobs_) job.orphan = false;
    return;
  }
  if (capability_stale_) refresh_capability();
  std::vector<JobId> expired;
  for (auto& [id, job] : jobs_) {
    const auto& function = functions_[job.function];
    if (function.live_workers > 0 && function.max_slots >= job.cores) {
      job.orphan = false;
      continue;
    }
    if (!job.orphan) {
      job.orphan = true;
      job.orphan_since = now;
    } else if (now - job.orphan_since >= config_.no_worker_timeout) {
      expired.push_back(id);
    }
  }
  for (const auto id : expired) close_job(id, JobEnd::NoWorker);
}

// ---------------------------------------------------------------------------------------------
// Dispatch (PROTOCOL.md §8)

std::vector<Decision> Scheduler::take_decisions() {
  dispatch();
  return std::exchange(decisions_, {});
}

void Scheduler::go_idle(WorkerId id, Worker& worker) {
  ++worker.idle_generation;
  for (const auto f : worker.functions) {
    auto& idle = worker.used < worker.slots ? functions_[f].idle : functions_[f].idle_prefetch;
    // Compact now and then, so that lists of functions nobody submits stay bounded.
    if (idle.size() >= 2 * live_workers_ + 16) {
      std::erase_if(idle, [&](const IdleEntry& entry) {
        const auto& w = workers_[index_of(entry.worker)];
        return !w.alive || w.idle_generation != entry.generation;
      });
    }
    idle.push_back(IdleEntry{.worker = id, .generation = worker.idle_generation});
  }
}

void Scheduler::dispatch() {
  wake_idle_workers();
  // §8: free cores before prefetch. Every worker that can start a task now gets one before any
  // worker queues one ahead: two tasks on two idle workers run at once, not one after the other.
  // (One dirty worker: the order of its own slots and prefetch changes nothing.)
  if (dirty_workers_.size() > 1 && !queue_covers_dirty_credit()) {
    for (const auto id : dirty_workers_) {
      auto& worker = workers_[index_of(id)];
      if (worker.alive) fill(id, worker, worker.slots);
    }
  }
  for (const auto id : dirty_workers_) {
    auto& worker = workers_[index_of(id)];
    worker.dirty = false;
    if (worker.alive) fill(id, worker, worker.capacity);
  }
  dirty_workers_.clear();
}

void Scheduler::wake_idle_workers() {
  // New work wakes idle workers of its function: just enough of them to take it all, those
  // with free cores first.
  for (const auto job_id : dirty_jobs_) {
    auto* job = find(job_id);
    if (job == nullptr) continue;
    job->dirty = false;
    auto& function = functions_[job->function];
    std::uint64_t wanted = job->queued() * job->cores;
    for (auto* idle : {&function.idle, &function.idle_prefetch}) {
      const bool cores_only = idle == &function.idle;  // count free cores, not prefetch room
      while (wanted > 0 && !idle->empty()) {
        const auto entry = idle->back();
        idle->pop_back();
        auto& worker = workers_[index_of(entry.worker)];
        if (!worker.alive || worker.idle_generation != entry.generation) continue;
        ++worker.idle_generation;  // its entries in other functions' lists are stale now
        const auto until = cores_only ? worker.slots : worker.capacity;
        wanted -= std::min<std::uint64_t>(wanted, worker.used < until ? until - worker.used : 0);
        mark_dirty(entry.worker, worker);
      }
    }
  }
  dirty_jobs_.clear();
}

bool Scheduler::queue_covers_dirty_credit() {
  // When the tasks the dirty workers could run fill all their credit, filling free cores first
  // changes nothing, and one pass sends fewer, larger TASKS. Counts the pending jobs of the
  // functions they offer, and stops once the credit is covered.
  std::uint64_t credit = 0;
  seen_functions_.clear();
  for (const auto id : dirty_workers_) {
    const auto& worker = workers_[index_of(id)];
    if (!worker.alive) continue;
    credit += worker.capacity - worker.used;
    seen_functions_.insert(seen_functions_.end(), worker.functions.begin(), worker.functions.end());
  }
  std::sort(seen_functions_.begin(), seen_functions_.end());
  seen_functions_.erase(std::unique(seen_functions_.begin(), seen_functions_.end()),
                        seen_functions_.end());
  std::uint64_t queued = 0;
  for (const auto f : seen_functions_) {
    for (const auto job_id : functions_[f].pending) {
      const auto& job = jobs_.at(job_id);
      queued += job.queued() * job.cores;
      if (queued >= credit) return true;
    }
  }
  return queued >= credit;
}

void Scheduler::fill(WorkerId id, Worker& worker, std::uint32_t bound) {
  // Fills the worker up to `bound` cores held: its slots, or its whole credit (with prefetch).
  if (worker.used >= bound) return;
  // Candidate jobs: pending, with a function the worker offers and cores it has.
  candidates_.clear();
  for (const auto f : worker.functions) {
    for (const auto job_id : functions_[f].pending) {
      auto& job = jobs_.at(job_id);
      if (job.cores <= worker.slots && job.cores <= bound - worker.used) {  // used < bound here
        candidates_.emplace_back(job_id, &job);
      }
    }
  }
  while (!candidates_.empty() && worker.used < bound) {
    // Fair share (§8): the client with the fewest cores in flight, then its job with the
    // fewest tasks in flight, then the job served longest ago.
    auto share_key = [this](const Job& job) {
      return std::tuple(clients_[index_of(job.client)].in_flight, job.in_flight, job.served);
    };
    auto best = candidates_.begin();
    for (auto it = std::next(candidates_.begin()); it != candidates_.end(); ++it) {
      if (share_key(*it->second) < share_key(*best->second)) best = it;
    }
    const auto [job_id, job] = *best;
    // Split the free credit evenly among the competing jobs, in batches of max_batch.
    const auto free = bound - worker.used;
    const auto share =
        std::max<std::uint32_t>(job->cores, free / static_cast<std::uint32_t>(candidates_.size()));
    const auto sent =
        assign(id, worker, job_id, *job, std::min(config_.max_batch, share / job->cores), bound);
    if (sent == 0 || job->queued() == 0 || worker.used >= bound ||
        job->cores > bound - worker.used) {
      *best = candidates_.back();
      candidates_.pop_back();
    }
  }
  if (bound == worker.capacity && worker.used < worker.capacity) go_idle(id, worker);
}

std::uint32_t Scheduler::assign(WorkerId wid, Worker& worker, JobId jid, Job& job,
                                std::uint32_t limit, std::uint32_t bound) {
  // Consecutive batches for the same worker and job travel as one TASKS message of at most
  // max_batch tasks.
  auto* send = decisions_.empty() ? nullptr : std::get_if<SendTasks>(&decisions_.back());
  auto& client = clients_[index_of(job.client)];
  std::uint32_t sent = 0;
  // (bound - used, not used + cores: cores and slots come from peers and could overflow.)
  while (sent < limit && worker.used < bound && job.cores <= bound - worker.used &&
         job.queued() > 0) {
    InFlight task{.job = jid};
    // §10: a suspect (a task in flight on a worker that died) never shares a worker with
    // another suspect, so that an innocent task that once ran beside a poison task is not
    // blamed again for the next worker the poison task kills.
    const auto retry = std::find_if(job.retries.begin(), job.retries.end(), [&](const Retry& r) {
      return !r.suspect || worker.suspects == 0;
    });
    if (retry != job.retries.end()) {
      task.index = retry->index;
      task.attempt = retry->attempt;
      task.failures = retry->failures;
      task.suspect = retry->suspect;
      job.retries.erase(retry);
    } else if (job.next < job.received) {
      task.index = job.next++;
    } else {
      break;  // only suspects left, and this worker holds one
    }
    if (task.suspect) ++worker.suspects;
    if (send == nullptr || send->worker != wid || send->job != jid ||
        send->tasks.size() >= config_.max_batch) {
      send = &std::get<SendTasks>(decisions_.emplace_back(SendTasks{.worker = wid, .job = jid}));
    }
    worker.tasks.push_back(task);
    worker.used += job.cores;
    ++job.in_flight;
    client.in_flight += job.cores;
    send->tasks.push_back(protocol::TaskAssignment{.index = task.index, .attempt = task.attempt});
    ++sent;
  }
  stats_.dispatched += sent;
  job.served = ++serve_counter_;
  if (job.queued() == 0) unset_pending(job);
  return sent;
}

// ---------------------------------------------------------------------------------------------
// Invariants (tests call this after every step)

void Scheduler::check_invariants() const {
  const auto in_flight = check_worker_invariants();
  check_job_invariants(in_flight);
  // Work conservation (§8): once dispatch has run, no live worker has credit for a queued task
  // it could run.
  if (dirty_jobs_.empty() && dirty_workers_.empty()) check_work_conservation();
}

Scheduler::InFlightCounts Scheduler::check_worker_invariants() const {
  InFlightCounts counts{.jobs = {}, .clients = std::vector<std::uint64_t>(clients_.size(), 0)};
  std::size_t alive = 0;
  for (const auto& worker : workers_) {
    if (!worker.alive) {
      require(worker.tasks.empty() && worker.used == 0, "a dead worker holds tasks");
      continue;
    }
    ++alive;
    std::uint64_t used = 0;
    std::uint32_t suspects = 0;
    for (const auto& task : worker.tasks) {
      suspects += task.suspect ? 1 : 0;
      const auto it = jobs_.find(task.job);
      require(it != jobs_.end(), "a worker holds a task of a closed job");
      const auto& job = it->second;
      used += job.cores;
      ++counts.jobs[task.job];
      counts.clients[index_of(job.client)] += job.cores;
      require(task.attempt >= 1 && task.failures < job.max_retries,
              "an in-flight task has a bad attempt or failure count");
    }
    require(used == worker.used, "a worker's used credit is not the sum of its tasks' cores");
    require(suspects == worker.suspects && suspects <= 1, "a worker holds more than one suspect");
    require(worker.used <= worker.capacity, "a worker holds more than its credit");
    require(std::is_sorted(worker.functions.begin(), worker.functions.end()),
            "a worker's functions are not sorted");
  }
  require(alive == live_workers_, "live worker count is wrong");
  return counts;
}

void Scheduler::check_job_invariants(const InFlightCounts& in_flight) const {
  std::vector<std::uint64_t> holding(clients_.size(), 0);
  for (const auto& [id, job] : jobs_) {
    require(job.received <= job.total, "a job received more than its total");
    require(job.next <= job.received, "a job dispatched a task it never received");
    require(job.ok + job.failed + job.in_flight + job.queued() == job.received,
            "a job's tasks do not add up: ok + failed + in flight + queued != received");
    const auto it = in_flight.jobs.find(id);
    require((it == in_flight.jobs.end() ? 0 : it->second) == job.in_flight,
            "a job's in-flight count differs from its tasks on workers");
    const auto& pending = functions_[job.function].pending;
    const bool listed = job.pending_pos < pending.size() && pending[job.pending_pos] == id;
    require(listed == (job.queued() > 0), "a job's place in its function's pending list is wrong");
    const auto& client = clients_[index_of(job.client)];
    require(client.alive, "an open job belongs to a lost client");
    require(std::find(client.jobs.begin(), client.jobs.end(), id) != client.jobs.end(),
            "an open job is missing from its client's list");
    holding[index_of(job.client)] += job.received - job.ok - job.failed;
  }
  for (std::size_t c = 0; c < clients_.size(); ++c) {
    if (!clients_[c].alive) continue;
    require(clients_[c].in_flight == in_flight.clients[c], "a client's in-flight count is wrong");
    require(clients_[c].holding == holding[c], "a client's held-task count is wrong");
  }
}

void Scheduler::check_work_conservation() const {
  for (const auto& worker : workers_) {
    if (!worker.alive) continue;
    for (const auto f : worker.functions) {
      for (const auto id : functions_[f].pending) {
        const auto& job = jobs_.at(id);
        // Only suspects left, and the worker holds one: they wait for another worker (§10).
        const bool only_suspects = job.next == job.received &&
                                   std::all_of(job.retries.begin(), job.retries.end(),
                                               [](const Retry& retry) { return retry.suspect; });
        if (only_suspects && worker.suspects > 0) continue;
        require(job.cores > worker.slots || worker.capacity - worker.used < job.cores,
                "a worker has free credit while a task it could run is queued");
      }
    }
  }
}

}  // namespace acme::scheduler
