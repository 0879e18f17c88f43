// Private: a task as the I/O thread and the task threads share it, and the eventfd that wakes
// the I/O thread when a task ends or stop() is called.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <msgpack.hpp>
#include <zmq.hpp>

#include <acme/protocol/version.hpp>
#include <acme/worker.hpp>

namespace acme::worker {

using Clock = std::chrono::steady_clock;

/// Who runs the tasks, for error maps (PROTOCOL.md §6.5 `host`, `pid`).
struct Identity {
  std::string host{};
  std::uint32_t pid = 0;
};

/// One task of a TASKS message. The I/O thread fills the inputs and owns the bookkeeping; a
/// task thread writes `status` and `result` and hands the task back through Executor.
struct Task {
  // Inputs, set by the I/O thread before the task starts.
  std::uint64_t job = 0;
  std::uint64_t index = 0;
  std::uint32_t attempt = 1;
  std::uint32_t cores = 1;
  std::chrono::milliseconds timeout{0};  // 0: none
  std::shared_ptr<const std::string> function{};
  const RawFunction* run = nullptr;
  zmq::message_t payload{};                                // the task frame, moved from TASKS
  std::shared_ptr<const msgpack::object_handle> common{};  // the job's kwargs, or null
  std::vector<unsigned> cpus{};  // OS cpu ids to bind the thread to; empty: not pinned

  // Set by the I/O thread (cancel, timeout, broker gone); read by the running function.
  std::atomic<bool> cancelled{false};

  // Outputs, written by the task thread before it hands the task back.
  protocol::TaskStatus status = protocol::TaskStatus::Ok;
  zmq::message_t result{};

  // I/O thread only.
  std::vector<std::size_t> pool_cores{};  // the CorePool's cores it holds until it returns
  bool abandoned = false;                 // its result must not be sent (PROTOCOL.md §6.4.3)
  Clock::time_point abandoned_at{};  // when; a task still running long after is stuck (§6.4.3)
  Clock::time_point deadline{};
};

/// An eventfd: any thread (or a signal handler) notifies; the I/O thread polls it.
class Notifier {
 public:
  Notifier();
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  /// Async-signal-safe.
  void notify() const noexcept;
  /// Resets the counter; call after a poll saw it readable.
  void drain() const noexcept;
  [[nodiscard]] int fd() const noexcept { return fd_; }

 private:
  int fd_ = -1;
};

/// Runs a task's function on the calling thread and fills `status` and `result` (the return
/// value, or an error map for an exception or a malformed task frame).
void execute(Task& task, const Identity& identity);

/// An error map payload (PROTOCOL.md §6.5).
[[nodiscard]] zmq::message_t error_frame(const std::string& message, const std::string& kind,
                                         const Identity& identity);

}  // namespace acme::worker
