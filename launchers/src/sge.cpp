// Grid Engine (Son of Grid Engine, OGS, Univa/Altair GE): one array job (qsub -t 1-N), one
// worker per task, with a parallel environment of C slots (the worker reads NSLOTS). Pending
// reasons come from `qstat -j`'s "scheduling info" (needs schedd_job_info true) and the state
// letters (h: held, E: error).
#include <fmt/format.h>

#include "launcher.hpp"

namespace acme::launch {
namespace {

std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> result;
  std::size_t start = 0;
  while (start < line.size()) {
    while (start < line.size() && (line[start] == ' ' || line[start] == '\t')) ++start;
    auto end = start;
    while (end < line.size() && line[end] != ' ' && line[end] != '\t') ++end;
    if (end > start) result.push_back(line.substr(start, end - start));
    start = end;
  }
  return result;
}

/// The lines under "scheduling info:" and any "error reason" line of `qstat -j` output.
std::string scheduling_info(std::string_view text) {
  std::string reason;
  bool in_info = false;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    start = end + 1;
    const bool continuation = !line.empty() && (line.front() == ' ' || line.front() == '\t');
    if (line.starts_with("scheduling info:")) {
      in_info = true;
      line.remove_prefix(16);
    } else if (line.starts_with("error reason")) {
      in_info = false;
      const auto colon = line.find(':');
      line = colon == std::string_view::npos ? line : line.substr(colon + 1);
    } else if (!(in_info && continuation)) {
      in_info = false;
      continue;
    }
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.remove_suffix(1);
    if (line.empty() || reason.find(line) != std::string::npos) continue;
    if (!reason.empty()) reason += "; ";
    reason += line;
  }
  return reason;
}

class SgeLauncher final : public Launcher {
 public:
  [[nodiscard]] std::string_view directive() const override { return "#$"; }

  [[nodiscard]] std::string script(const Request& request) const override {
    std::string text = "#!/bin/bash\n";
    text += fmt::format("#$ -N {}\n", request.job_name);
    text += "#$ -S /bin/bash\n";
    text += fmt::format("#$ -t 1-{}\n", request.workers);
    if (request.cpus_per_worker > 1)
      text += fmt::format("#$ -pe {} {}\n", request.sge_pe, request.cpus_per_worker);
    if (request.mem_mib) {
      // h_vmem is per slot: a worker with C slots may use C times it.
      const auto per_slot =
          (*request.mem_mib + request.cpus_per_worker - 1) / request.cpus_per_worker;
      text += fmt::format("#$ -l h_vmem={}M\n", per_slot);
    }
    if (request.time_s) text += fmt::format("#$ -l h_rt={}\n", hms(*request.time_s));
    if (!request.queue.empty()) text += fmt::format("#$ -q {}\n", request.queue);
    if (!request.account.empty()) text += fmt::format("#$ -A {}\n", request.account);
    text += "#$ -j y\n";
    text += fmt::format("#$ -o {}/acme-worker-$JOB_ID.$TASK_ID.log\n", request.log_dir);
    text += extra_directives(request, directive());
    text += worker_body(request);
    return text;
  }

  [[nodiscard]] Argv submit_command(const Request& /*request*/, const std::string& script_path,
                                    const std::string& /*launch_dir*/) const override {
    return {"qsub", "-terse", script_path};
  }

  [[nodiscard]] std::optional<std::string> parse_job_id(std::string_view out) const override {
    return leading_job_number(out);  // "67.1-4:1" for an array, "67" otherwise
  }

  [[nodiscard]] JobState poll(const std::string& job, const std::string& /*launch_dir*/,
                              Runner run) const override {
    JobState state;
    // -g d: one line per array task, pending ones too.
    const auto result = run({"qstat", "-g", "d"});
    if (result.status != 0) {
      state.error = result.timed_out ? "qstat timed out" : "qstat: " + result.err;
      return state;
    }
    bool held = false;
    bool error_state = false;
    std::size_t start = 0;
    while (start < result.out.size()) {
      auto end = result.out.find('\n', start);
      if (end == std::string::npos) end = result.out.size();
      const auto line = fields(std::string_view(result.out).substr(start, end - start));
      start = end + 1;
      if (line.size() < 5 || line[0] != job) continue;
      const auto letters = line[4];
      if (letters.find('E') != std::string_view::npos) {
        ++state.pending;
        error_state = true;
      } else if (letters.find('r') != std::string_view::npos ||
                 letters.find('t') != std::string_view::npos) {
        ++state.running;  // also "dr": being deleted, still running until it is gone
      } else if (letters.find('d') != std::string_view::npos) {
        ++state.ended;
      } else {
        ++state.pending;
        held = held || letters.find('h') != std::string_view::npos;
      }
    }
    state.gone = state.pending == 0 && state.running == 0 && state.ended == 0;
    if (state.pending > 0) {
      const auto details = run({"qstat", "-j", job});
      if (details.status == 0) state.reason = scheduling_info(details.out);
      if (held) {
        state.reason =
            state.reason.empty() ? "held (state hqw)" : "held (state hqw); " + state.reason;
      }
      if (error_state && state.reason.empty()) state.reason = "job in error state (Eqw)";
    }
    return state;
  }

  [[nodiscard]] Argv cancel_command(const std::string& job) const override { return {"qdel", job}; }
};

}  // namespace

std::unique_ptr<Launcher> make_sge_launcher() {
  return std::make_unique<SgeLauncher>();
}

}  // namespace acme::launch
