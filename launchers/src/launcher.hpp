// The launcher interface: one implementation per batch system (slurm.cpp, sge.cpp, pbs.cpp,
// local.cpp), chosen by name from the table in launcher.cpp. A launcher only turns a request into
// a job script and scheduler commands, and reads the scheduler's answers; acme-launch (main.cpp)
// runs the commands, starts the broker and counts the workers that come online.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace acme::launch {

/// What the user asked for: `acme-launch BACKEND [options]`.
struct Request {
  std::string backend;
  std::string id;  // the launch id, carried by every worker to the broker
  std::uint32_t workers = 1;
  std::uint32_t cpus_per_worker = 1;
  std::optional<std::uint64_t> mem_mib;  // per worker
  std::optional<std::uint64_t> time_s;   // walltime
  std::string queue;                     // --partition / --queue
  std::string account;
  std::string job_name = "acme";
  std::string log_dir;              // absolute
  std::string worker_cmd;           // shell text; empty: worker_exe
  std::string worker_exe;           // absolute path of acme-worker
  std::string broker;               // the endpoint workers connect to
  int broker_pid = 0;               // the broker acme-launch started (0: --broker, not ours)
  std::vector<std::string> extra;   // directive lines, passed on unchanged
  std::string pbs_flavour = "pro";  // pro | torque
  std::string sge_pe = "smp";       // the SGE parallel environment for --cpus-per-worker
};

/// What the scheduler says of the workers of one job.
struct JobState {
  std::uint32_t pending = 0;  // queued or held: not started
  std::uint32_t running = 0;
  std::uint32_t ended = 0;  // finished, failed or cancelled (as far as the scheduler still says)
  std::string reason;       // why the pending ones wait, in the scheduler's words; may be empty
  bool gone = false;        // the scheduler no longer knows the job: every part of it ended
  std::string error;        // the scheduler could not be asked (command failed): unknown state
};

/// A command line and what it printed.
struct CommandResult {
  int status = -1;  // exit code; -1 when it could not be started or timed out
  std::string out;
  std::string err;
  bool timed_out = false;
};

using Argv = std::vector<std::string>;

class Launcher {
 public:
  virtual ~Launcher() = default;

  /// The job script: directives for the scheduler, then worker_body(request).
  [[nodiscard]] virtual std::string script(const Request& request) const = 0;

  /// The command that submits the script at `script_path` (kept in `launch_dir`).
  [[nodiscard]] virtual Argv submit_command(const Request& request, const std::string& script_path,
                                            const std::string& launch_dir) const = 0;

  /// The job id in the submit command's output; nullopt when there is none.
  [[nodiscard]] virtual std::optional<std::string> parse_job_id(std::string_view out) const = 0;

  /// Asks the scheduler about job `job` of the launch kept in `launch_dir`, running its query
  /// commands through `run`.
  using Runner = CommandResult (*)(const Argv& argv);
  [[nodiscard]] virtual JobState poll(const std::string& job, const std::string& launch_dir,
                                      Runner run) const = 0;

  /// The command that cancels every part of job `job`.
  [[nodiscard]] virtual Argv cancel_command(const std::string& job) const = 0;

  /// The prefix that makes a bare option (e.g. "--hold") a directive line of this scheduler.
  [[nodiscard]] virtual std::string_view directive() const = 0;
};

/// The launcher registered under `name` (local, slurm, sge, pbs), or null.
[[nodiscard]] std::unique_ptr<Launcher> make_launcher(std::string_view name);

/// The local backend's supervisor (`acme-launch _supervise`, started by its submit command):
/// detaches, prints its pid, keeps `workers` copies of the job script running (restarting the
/// ones that die, with a back-off) until SIGTERM or until the broker process ends.
int supervise(const std::string& launch_dir, const std::string& script, std::uint32_t workers,
              const std::string& log_dir, int broker_pid);

/// The registered names, in help order.
[[nodiscard]] std::vector<std::string> launcher_names();

// ---- helpers shared by the launchers (launcher.cpp) ----

/// `text` quoted for a POSIX shell: 'it'\''s'.
[[nodiscard]] std::string shell_quote(std::string_view text);

/// "2G", "500M", "1.5G", "1024" (MiB) -> MiB; nullopt when it is not a size.
[[nodiscard]] std::optional<std::uint64_t> parse_memory_mib(std::string_view text);

/// "90", "30:00", "1:30:00", "2-00:00:00" -> seconds; nullopt when it is not a duration.
[[nodiscard]] std::optional<std::uint64_t> parse_duration_s(std::string_view text);

/// Seconds as HH:MM:SS (hours may exceed 24).
[[nodiscard]] std::string hms(std::uint64_t seconds);

/// The part every job script shares: exports ACME_BROKER, ACME_LAUNCH_ID, ACME_WORKER_OF,
/// ACME_WORKER_SLOTS and execs the worker (acme-worker or --worker-cmd).
[[nodiscard]] std::string worker_body(const Request& request);

/// request.extra as directive lines: kept when they start with '#', else prefixed.
[[nodiscard]] std::string extra_directives(const Request& request, std::string_view prefix);

/// The number at the start of `text` after leading blanks ("67.1-2:1" -> "67").
[[nodiscard]] std::optional<std::string> leading_job_number(std::string_view text);

}  // namespace acme::launch
