// One struct per command of docs/PROTOCOL.md §6, in the spec's order. Each holds the fields of
// the command's header frame; payload frames stay with the caller (the broker never decodes
// them). Pure data: no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <acme/protocol/version.hpp>

namespace acme::protocol {

// ---- PROTOCOL.md §6.1: client to broker ----

/// §6.1.1 SUBMIT: tasks [first, first+count) of job `job`; one payload frame per task, after
/// the job's common frame when `common` is set (only in the SUBMIT with first == 0).
struct Submit {
  std::uint64_t job = 0;  // chosen by the client, unique among its open jobs
  std::string function{};
  std::uint64_t total = 0;  // tasks in the whole job
  std::uint64_t first = 0;
  std::uint32_t count = 0;
  bool common = false;
  std::optional<std::uint32_t> max_retries{};  // absent: the broker's default
  bool retry_on_error = false;
  std::uint32_t timeout_ms = 0;  // 0: no timeout
  std::uint32_t cores = 1;       // cores each task needs
  friend bool operator==(const Submit&, const Submit&) = default;
};

/// §6.1.2 CANCEL: abandon job `job`.
struct CancelJob {
  std::uint64_t job = 0;
  friend bool operator==(const CancelJob&, const CancelJob&) = default;
};

/// §6.1.3, §6.2.5, §6.3.3, §6.4.4 HEARTBEAT: any peer, no fields.
struct Heartbeat {
  friend bool operator==(const Heartbeat&, const Heartbeat&) = default;
};

/// §6.1.4, §6.2.6, §6.3.4, §6.4.5 BYE: any peer. `reconnect` is only meaningful from the broker.
struct Bye {
  std::string reason{};
  bool reconnect = false;
  friend bool operator==(const Bye&, const Bye&) = default;
};

/// §6.1.5 STATUS (draft): asks for the broker's state. Any connection may send it, even as its
/// first and only message; the broker does not register the sender as a client.
struct StatusRequest {
  std::optional<std::string> launch{};  // list only the workers of this launch ("": untagged)
  friend bool operator==(const StatusRequest&, const StatusRequest&) = default;
};

// ---- PROTOCOL.md §6.2: broker to client ----

/// §6.2.1 ACCEPT: the broker holds `received` tasks of `job`; the client may send `window`
/// more tasks (over all its jobs) before the next ACCEPT, and heartbeats every `heartbeat_ms`.
struct Accept {
  std::uint64_t job = 0;
  std::uint64_t received = 0;
  std::uint64_t window = 0;
  std::uint32_t heartbeat_ms = 1000;
  friend bool operator==(const Accept&, const Accept&) = default;
};

/// One entry of §6.2.2 RESULTS.
struct JobResult {
  std::uint64_t index = 0;
  TaskStatus status = TaskStatus::Ok;
  std::uint32_t attempts = 1;  // how many times the task was sent to a worker
  friend bool operator==(const JobResult&, const JobResult&) = default;
};

/// §6.2.2 RESULTS: finished tasks of `job`, one payload frame each, in the same order.
struct JobResults {
  std::uint64_t job = 0;
  std::vector<JobResult> results{};
  friend bool operator==(const JobResults&, const JobResults&) = default;
};

/// §6.2.3 DONE: every result of `job` has been sent; the job is closed.
struct Done {
  std::uint64_t job = 0;
  std::uint64_t ok = 0;
  std::uint64_t failed = 0;
  bool cancelled = false;
  friend bool operator==(const Done&, const Done&) = default;
};

/// §6.2.4 ERROR: a request was refused, or a job failed as a whole.
struct Error {
  ErrorCode code = ErrorCode::Internal;
  std::string message{};
  std::optional<std::uint64_t> job{};  // the job it concerns, if any
  friend bool operator==(const Error&, const Error&) = default;
};

/// One entry of §6.2.7 STATUS `workers`: a live worker registration.
struct WorkerInfo {
  std::uint32_t id = 0;  // as in its WELCOME
  std::string host{};
  std::uint32_t pid = 0;
  std::uint32_t slots = 0;
  std::uint32_t running = 0;    // tasks assigned to it now (in flight, queued there included)
  std::string launch{};         // from its READY; empty if none
  std::uint32_t functions = 0;  // distinct functions it offers
  friend bool operator==(const WorkerInfo&, const WorkerInfo&) = default;
};

/// §6.2.7 STATUS (draft): the broker's state when it read the request. Task counts are over
/// all jobs since the broker started.
struct StatusReply {
  std::string agent{};  // implementation and version, e.g. "acme-broker 0.1.0"
  std::uint64_t uptime_ms = 0;
  std::uint64_t clients = 0;        // connected clients (sessions)
  std::uint64_t jobs = 0;           // open jobs
  std::uint64_t tasks_queued = 0;   // received, not yet dispatched
  std::uint64_t tasks_running = 0;  // dispatched, not yet finished
  std::uint64_t tasks_done = 0;     // finished with status ok
  std::uint64_t tasks_failed = 0;   // finished with another status (failed, timed-out, poisoned)
  std::vector<WorkerInfo> workers{};
  std::uint64_t workers_omitted = 0;  // left out of `workers` to keep the header within §5.6
  friend bool operator==(const StatusReply&, const StatusReply&) = default;
};

// ---- PROTOCOL.md §6.3: worker to broker ----

/// §6.3.1 READY: the worker joins (or rejoins) and says what it offers.
struct Ready {
  std::vector<std::string> functions{};
  std::uint32_t slots = 1;     // tasks it runs at once (in cores: see §8)
  std::uint32_t prefetch = 0;  // extra tasks it may hold queued
  std::string host{};
  std::uint32_t pid = 0;
  std::uint32_t cores = 0;   // cores of its machine or allocation (information)
  std::uint64_t memory = 0;  // bytes of memory it may use (information)
  std::string agent{};       // implementation and version, e.g. "acme-worker 0.1.0"
  std::string launch{};      // the acme-launch launch that started it; empty if none
  friend bool operator==(const Ready&, const Ready&) = default;
};

/// One entry of §6.3.2 RESULTS.
struct TaskResult {
  std::uint64_t job = 0;
  std::uint64_t index = 0;
  TaskStatus status = TaskStatus::Ok;
  friend bool operator==(const TaskResult&, const TaskResult&) = default;
};

/// §6.3.2 RESULTS: finished tasks, one payload frame each, in the same order.
struct TaskResults {
  std::vector<TaskResult> results{};
  friend bool operator==(const TaskResults&, const TaskResults&) = default;
};

// ---- PROTOCOL.md §6.4: broker to worker ----

/// §6.4.1 WELCOME: the broker registered the worker under `worker`.
struct Welcome {
  std::uint32_t worker = 0;
  std::uint32_t heartbeat_ms = 1000;
  std::uint32_t liveness = 3;
  friend bool operator==(const Welcome&, const Welcome&) = default;
};

/// One entry of §6.4.2 TASKS.
struct TaskAssignment {
  std::uint64_t index = 0;
  std::uint32_t attempt = 1;
  friend bool operator==(const TaskAssignment&, const TaskAssignment&) = default;
};

/// §6.4.2 TASKS: run these tasks of `job`; one payload frame each, after the job's common
/// frame when `common` is set.
struct Tasks {
  std::uint64_t job = 0;
  std::string function{};
  bool common = false;
  std::uint32_t timeout_ms = 0;
  std::uint32_t cores = 1;
  std::vector<TaskAssignment> tasks{};
  friend bool operator==(const Tasks&, const Tasks&) = default;
};

/// §6.4.3 CANCEL: abandon these tasks of `job`; no indices: the job is over on this worker
/// (abandon all its tasks and forget its common frame).
struct CancelTasks {
  std::uint64_t job = 0;
  std::vector<std::uint64_t> tasks{};
  friend bool operator==(const CancelTasks&, const CancelTasks&) = default;
};

/// What each peer may send (§6 table). The broker decodes the first two; peers the last two.
using ClientCommand = std::variant<Submit, CancelJob, Heartbeat, Bye, StatusRequest>;
using WorkerCommand = std::variant<Ready, TaskResults, Heartbeat, Bye>;
using ToClientCommand = std::variant<Accept, JobResults, Done, Error, Heartbeat, Bye, StatusReply>;
using ToWorkerCommand = std::variant<Welcome, Tasks, CancelTasks, Heartbeat, Bye>;

}  // namespace acme::protocol
