// Private: the builtin functions of add_builtins (worker/README.md), one factory each, and the
// child-process runner behind `exec`.
#pragma once

#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include <acme/worker.hpp>

namespace acme::worker {

[[nodiscard]] RawFunction make_echo();
[[nodiscard]] RawFunction make_sleep();
[[nodiscard]] RawFunction make_fail();
[[nodiscard]] RawFunction make_crash();
[[nodiscard]] RawFunction make_exec();

/// How a child process ended and what it wrote.
struct CommandOutcome {
  int exit_code = 0;       // valid when signal == 0
  int signal = 0;          // the signal that killed it, or 0
  bool cancelled = false;  // killed because `cancelled` became true
  std::string out{};
  std::string err{};
};

/// Where and with what environment a child runs.
struct SpawnOptions {
  /// The child's whole environment as "NAME=value" entries; nullopt: the worker's.
  std::optional<std::vector<std::string>> env{};
  /// The child's working directory; empty: the worker's.
  std::string cwd{};
};

/// Runs argv[0] (searched in the worker's PATH) with argv in its own process group, stdin from
/// /dev/null, and collects stdout and stderr (each up to kMaxCapture bytes). If `cancelled`
/// becomes true, the group gets SIGTERM, then SIGKILL 2 s later. The child inherits the
/// calling thread's CPU binding. Throws acme::Error (Errc::System) if the program cannot be
/// started.
CommandOutcome run_command(const std::vector<std::string>& argv, const std::atomic<bool>* cancelled,
                           const SpawnOptions& spawn = {});

/// The environment exec gives a task's child: the worker's, then ACME_TASK_CORES, ACME_TASK_CPUS
/// (only when pinned; an inherited one is dropped otherwise) and OMP_NUM_THREADS set from the
/// task, then `overrides` ("NAME=value") on top.
[[nodiscard]] std::vector<std::string> task_environment(const TaskContext& context,
                                                        const std::vector<std::string>& overrides);

inline constexpr std::size_t kMaxCapture = std::size_t{64} << 20;

}  // namespace acme::worker
