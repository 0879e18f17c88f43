// Private: the builtin functions of add_builtins (worker/README.md), one factory each, and the
// child-process runner behind `exec`.
#pragma once

#include <atomic>
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

/// Runs argv[0] (searched in PATH) with argv in its own process group, stdin from /dev/null,
/// and collects stdout and stderr (each up to kMaxCapture bytes). If `cancelled` becomes
/// true, the group gets SIGTERM, then SIGKILL 2 s later. Throws acme::Error (Errc::System) if
/// the program cannot be started.
CommandOutcome run_command(const std::vector<std::string>& argv,
                           const std::atomic<bool>* cancelled);

inline constexpr std::size_t kMaxCapture = std::size_t{64} << 20;

}  // namespace acme::worker
