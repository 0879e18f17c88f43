// PBS Professional / OpenPBS (--pbs-flavour pro: qsub -J, -l select=1:ncpus=C:mem=M) and Torque
// (--pbs-flavour torque: qsub -t, -l nodes=1:ppn=C, -l mem=M): one array job, one worker per
// sub-job (the worker reads NCPUS / PBS_NCPUS / PBS_NP). Pending reasons come from `qstat -f`'s
// comment attribute (PBS Pro) and the job_state letter (H: held).
#include <fmt/format.h>

#include "launcher.hpp"

namespace acme::launch {
namespace {

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\r' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  return text;
}

class PbsLauncher final : public Launcher {
 public:
  [[nodiscard]] std::string_view directive() const override { return "#PBS"; }

  [[nodiscard]] std::string script(const Request& request) const override {
    const bool torque = request.pbs_flavour == "torque";
    std::string text = "#!/bin/bash\n";
    text += fmt::format("#PBS -N {}\n", request.job_name);
    // PBS Pro refuses an array of one sub-job: one worker is a plain job.
    if (request.workers > 1) {
      text += fmt::format("#PBS {} 1-{}\n", torque ? "-t" : "-J", request.workers);
    }
    if (torque) {
      text += fmt::format("#PBS -l nodes=1:ppn={}\n", request.cpus_per_worker);
      if (request.mem_mib) text += fmt::format("#PBS -l mem={}mb\n", *request.mem_mib);
    } else {
      std::string select = fmt::format("select=1:ncpus={}", request.cpus_per_worker);
      if (request.mem_mib) select += fmt::format(":mem={}mb", *request.mem_mib);
      text += fmt::format("#PBS -l {}\n", select);
    }
    if (request.time_s) text += fmt::format("#PBS -l walltime={}\n", hms(*request.time_s));
    if (!request.queue.empty()) text += fmt::format("#PBS -q {}\n", request.queue);
    if (!request.account.empty()) text += fmt::format("#PBS -A {}\n", request.account);
    text += "#PBS -j oe\n";
    text += extra_directives(request, directive());
    // PBS copies its own output file back only when the job ends: the worker's log is written
    // as it goes, one file per sub-job.
    text += fmt::format("\nexec >>{}/acme-worker-\"${{PBS_JOBID}}\".log 2>&1\n",
                        shell_quote(request.log_dir));
    text += worker_body(request);
    return text;
  }

  [[nodiscard]] Argv submit_command(const Request& /*request*/, const std::string& script_path,
                                    const std::string& /*launch_dir*/) const override {
    return {"qsub", script_path};
  }

  [[nodiscard]] std::optional<std::string> parse_job_id(std::string_view out) const override {
    const auto id = trim(out.substr(0, out.find('\n')));  // "123[].server" or "123.server"
    if (!leading_job_number(id)) return std::nullopt;
    return std::string(id);
  }

  [[nodiscard]] JobState poll(const std::string& job, const std::string& /*launch_dir*/,
                              Runner run) const override {
    JobState state;
    const auto result = run({"qstat", "-f", "-t", job});
    if (result.status != 0) {
      // Ended and gone (153), or ended and in PBS Pro's job history ("Job has finished, use
      // -x or -H", 35).
      if (result.err.find("Unknown Job Id") != std::string::npos || result.status == 153 ||
          result.err.find("Job has finished") != std::string::npos || result.status == 35) {
        state.gone = true;
      } else {
        state.error = result.timed_out ? "qstat timed out" : "qstat: " + result.err;
      }
      return state;
    }
    bool in_parent = false;
    bool held = false;
    std::size_t start = 0;
    while (start < result.out.size()) {
      auto end = result.out.find('\n', start);
      if (end == std::string::npos) end = result.out.size();
      const auto line = trim(std::string_view(result.out).substr(start, end - start));
      start = end + 1;
      if (line.starts_with("Job Id:")) {
        in_parent = line.find("[]") != std::string_view::npos;  // the array itself
        continue;
      }
      if (in_parent) continue;
      const auto equals = line.find(" = ");
      if (equals == std::string_view::npos) continue;
      const auto key = line.substr(0, equals);
      const auto value = line.substr(equals + 3);
      if (key == "job_state") {
        if (value == "R" || value == "E") {
          ++state.running;
        } else if (value == "F" || value == "X" || value == "C") {
          ++state.ended;
        } else {  // Q, H, W, T, S, U
          ++state.pending;
          held = held || value == "H";
        }
      } else if (key == "comment" && state.reason.empty() && !value.starts_with("Job run at")) {
        state.reason = std::string(value);
      }
    }
    if (state.pending > 0 && state.reason.empty() && held) state.reason = "held (job_state H)";
    if (state.pending == 0) state.reason.clear();
    state.gone = state.pending == 0 && state.running == 0 && state.ended == 0;
    return state;
  }

  [[nodiscard]] Argv cancel_command(const std::string& job) const override { return {"qdel", job}; }
};

}  // namespace

std::unique_ptr<Launcher> make_pbs_launcher() {
  return std::make_unique<PbsLauncher>();
}

}  // namespace acme::launch
