// What acme-launch asks of the operating system: run a command with a deadline, find programs,
// pick the address compute nodes reach, start and stop detached processes.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "launcher.hpp"
#include <sys/types.h>

namespace acme::launch {

/// Runs `argv` (PATH search) in its own process group with stdin from /dev/null; kills the
/// group when it runs past `timeout`.
CommandResult run_command(const Argv& argv,
                          std::chrono::milliseconds timeout = std::chrono::seconds(60));

/// run_command with the default deadline (a Launcher::Runner).
CommandResult run_scheduler_command(const Argv& argv);

/// This program's absolute path.
[[nodiscard]] std::string self_exe();

/// `name` (acme-broker, acme-worker) from $env_var, next to this program, in ../<subdir>/ of
/// its directory (the build tree), or on PATH; nullopt when none is executable.
[[nodiscard]] std::optional<std::string> find_program(const std::string& name, const char* env_var,
                                                      const std::string& subdir);

/// Whether `name` is an executable on PATH.
[[nodiscard]] bool on_path(const std::string& name);

/// The IPv4 address workers should connect to: `choice` is an interface name (eth0, lo) or an
/// address; empty picks the interface of the default route, else the first non-loopback one
/// that is up. Throws acme::Error(BadOptions) for an unknown interface.
[[nodiscard]] std::string pick_address(const std::string& choice);

/// Starts `acme-broker --bind tcp://address:0` detached (own session, output to `log_path`) and
/// waits for the endpoint it prints. Throws acme::Error(System) with the log's tail on failure.
struct StartedBroker {
  pid_t pid = 0;
  std::string endpoint;
};
StartedBroker start_broker(const std::string& exe, const std::string& address,
                           const std::string& log_path, std::chrono::milliseconds timeout);

/// Whether process `pid` runs and its command line contains `needle` (guards against reuse).
[[nodiscard]] bool process_is(pid_t pid, const std::string& needle);

/// SIGTERM, then SIGKILL after `grace`; true when the process is gone.
bool stop_process(pid_t pid, const std::string& needle, std::chrono::milliseconds grace);

/// The last `lines` lines of a file ("" when it cannot be read).
[[nodiscard]] std::string tail_file(const std::string& path, std::size_t lines);

/// The most recently modified regular file in `dir` ("" when none).
[[nodiscard]] std::string newest_file(const std::string& dir);

[[nodiscard]] std::string host_name();

}  // namespace acme::launch
