// Private: the task threads. The I/O thread decides when a task starts (PROTOCOL.md §8) and
// submits it; one of `threads` threads runs it and hands it back through take_finished(),
// waking the I/O thread with the Notifier.
#pragma once

#include <memory>
#include <thread>
#include <vector>

#include "pinning.hpp"
#include "task.hpp"

namespace acme::worker {

class Executor {
 public:
  /// With a `binder`, a thread binds itself to a task's `cpus` before running it (if the
  /// system refuses, it warns once and runs the task unpinned, with `cpus` cleared).
  Executor(std::uint32_t threads, std::shared_ptr<const Notifier> notifier, Identity identity,
           std::shared_ptr<const CpuBinder> binder = nullptr);
  /// Waits up to kJoinGrace for running tasks (which should have been cancelled) to return,
  /// then leaves the threads of any that do not, so that a stuck function cannot hang the exit.
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  /// Starts `task` on a free thread. The caller keeps at most `threads` tasks in flight.
  void submit(std::shared_ptr<Task> task);

  /// Tasks that ended since the last call, in the order they ended.
  [[nodiscard]] std::vector<std::shared_ptr<Task>> take_finished();

  static constexpr auto kJoinGrace = std::chrono::seconds(5);

 private:
  struct State;
  std::shared_ptr<State> state_;
  std::vector<std::thread> threads_;
};

}  // namespace acme::worker
