// SLURM: one array job (sbatch --array=1-N), one worker per array task, each with
// --cpus-per-task CPUs (the worker reads SLURM_CPUS_PER_TASK). Pending reasons come from
// squeue's %r (Resources, Priority, JobHeldUser, ...).
#include <fmt/format.h>

#include "launcher.hpp"

namespace acme::launch {
namespace {

class SlurmLauncher final : public Launcher {
 public:
  [[nodiscard]] std::string_view directive() const override { return "#SBATCH"; }

  [[nodiscard]] std::string script(const Request& request) const override {
    std::string text = "#!/bin/bash\n";
    text += fmt::format("#SBATCH --job-name={}\n", request.job_name);
    text += fmt::format("#SBATCH --array=1-{}\n", request.workers);
    text += "#SBATCH --ntasks=1\n";
    text += fmt::format("#SBATCH --cpus-per-task={}\n", request.cpus_per_worker);
    if (request.mem_mib) text += fmt::format("#SBATCH --mem={}M\n", *request.mem_mib);
    if (request.time_s) {
      const auto minutes = (*request.time_s + 59) / 60;  // SLURM's unit: whole minutes
      text += fmt::format("#SBATCH --time={}\n", minutes);
    }
    if (!request.queue.empty()) text += fmt::format("#SBATCH --partition={}\n", request.queue);
    if (!request.account.empty()) text += fmt::format("#SBATCH --account={}\n", request.account);
    text += fmt::format("#SBATCH --output={}/acme-worker-%A_%a.log\n", request.log_dir);
    text += extra_directives(request, directive());
    text += worker_body(request);
    return text;
  }

  [[nodiscard]] Argv submit_command(const Request& /*request*/, const std::string& script_path,
                                    const std::string& /*launch_dir*/) const override {
    return {"sbatch", "--parsable", script_path};
  }

  [[nodiscard]] std::optional<std::string> parse_job_id(std::string_view out) const override {
    return leading_job_number(out);  // "67" or "67;cluster"
  }

  [[nodiscard]] JobState poll(const std::string& job, const std::string& /*launch_dir*/,
                              Runner run) const override {
    JobState state;
    // -r: one line per array task, also for the pending ones ("67_[1-4]" otherwise).
    const auto result = run({"squeue", "-h", "-r", "-j", job, "-o", "%T|%r"});
    if (result.status != 0) {
      // A job that left squeue's memory is "Invalid job id specified": it ended.
      if (result.err.find("Invalid job id") != std::string::npos) {
        state.gone = true;
      } else {
        state.error = result.timed_out ? "squeue timed out" : "squeue: " + result.err;
      }
      return state;
    }
    std::size_t start = 0;
    while (start < result.out.size()) {
      auto end = result.out.find('\n', start);
      if (end == std::string::npos) end = result.out.size();
      const std::string_view line(result.out.data() + start, end - start);
      start = end + 1;
      if (line.empty()) continue;
      const auto bar = line.find('|');
      const auto job_state = line.substr(0, bar);
      const auto reason = bar == std::string_view::npos ? std::string_view{} : line.substr(bar + 1);
      if (job_state == "PENDING" || job_state == "CONFIGURING" || job_state == "REQUEUED" ||
          job_state == "SUSPENDED" || job_state == "REQUEUE_HOLD") {
        ++state.pending;
        if (state.reason.empty() && !reason.empty() && reason != "None") {
          state.reason = std::string(reason);
        }
      } else if (job_state == "RUNNING" || job_state == "COMPLETING") {
        ++state.running;
      } else {
        ++state.ended;
      }
    }
    state.gone = state.pending == 0 && state.running == 0 && state.ended == 0;
    return state;
  }

  [[nodiscard]] Argv cancel_command(const std::string& job) const override {
    return {"scancel", job};
  }
};

}  // namespace

std::unique_ptr<Launcher> make_slurm_launcher() {
  return std::make_unique<SlurmLauncher>();
}

}  // namespace acme::launch
