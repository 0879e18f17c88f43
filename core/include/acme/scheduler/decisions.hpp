// What the scheduler asks the broker to do. The scheduler never sends anything itself: the
// broker drains these with Scheduler::take_decisions() and turns them into messages.
#pragma once

#include <cstdint>
#include <variant>
#include <vector>

#include <acme/ids.hpp>
#include <acme/protocol/commands.hpp>

namespace acme::scheduler {

/// Send these tasks of `job` to `worker` (one TASKS message). Each consumed `cores` credits.
struct SendTasks {
  WorkerId worker{};
  JobId job{};
  std::vector<protocol::TaskAssignment> tasks{};
  friend bool operator==(const SendTasks&, const SendTasks&) = default;
};

/// Tell `worker` to abandon these tasks of `job` (one CANCEL message). Their credits are
/// already free: the scheduler no longer counts them as in flight.
struct CancelTasks {
  WorkerId worker{};
  JobId job{};
  std::vector<TaskIndex> tasks{};
  friend bool operator==(const CancelTasks&, const CancelTasks&) = default;
};

/// A task that was running on `attempts` workers that all died: fail it (PROTOCOL.md §10).
struct TaskPoisoned {
  JobId job{};
  TaskIndex index = 0;
  std::uint32_t attempts = 0;
  WorkerId last_worker{};
  friend bool operator==(const TaskPoisoned&, const TaskPoisoned&) = default;
};

enum class JobEnd : std::uint8_t {
  Completed,   // every task has a delivered result (ok or failed)
  Cancelled,   // the client cancelled it
  ClientLost,  // the client went silent or left
  NoWorker,    // no live worker offered its function (or enough cores) for no_worker_timeout
};

/// The job is closed: no more decisions will name it. `ok + failed` results were delivered.
struct JobFinished {
  JobId job{};
  ClientId client{};
  JobEnd end = JobEnd::Completed;
  std::uint64_t ok = 0;
  std::uint64_t failed = 0;
  friend bool operator==(const JobFinished&, const JobFinished&) = default;
};

/// A worker went silent for the peer timeout and was removed (for logs, and to tell it BYE).
struct WorkerLost {
  WorkerId worker{};
  std::uint32_t requeued = 0;
  std::uint32_t poisoned = 0;
  friend bool operator==(const WorkerLost&, const WorkerLost&) = default;
};

/// A client went silent for the peer timeout; its jobs were closed with JobEnd::ClientLost.
struct ClientLost {
  ClientId client{};
  friend bool operator==(const ClientLost&, const ClientLost&) = default;
};

/// A client that had filled its submission window may send again (an ACCEPT, §6.2.1).
struct WindowOpened {
  ClientId client{};
  std::uint64_t window = 0;
  friend bool operator==(const WindowOpened&, const WindowOpened&) = default;
};

using Decision = std::variant<SendTasks, CancelTasks, TaskPoisoned, JobFinished, WorkerLost,
                              ClientLost, WindowOpened>;

}  // namespace acme::scheduler
