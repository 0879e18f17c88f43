// The local backend: no batch system. Its "job" is a supervisor process (acme-launch
// _supervise) that runs N copies of the job script on this machine, restarts the ones that die
// (a crash, the OOM killer) with a back-off, and stops them on SIGTERM or when the broker ends.
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

#include "launcher.hpp"
#include "system.hpp"
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace acme::launch {
namespace {

using Clock = std::chrono::steady_clock;
constexpr std::string_view kStateFile = "supervisor.state";

class LocalLauncher final : public Launcher {
 public:
  [[nodiscard]] std::string_view directive() const override { return "#"; }

  [[nodiscard]] std::string script(const Request& request) const override {
    std::string text = "#!/bin/bash\n";
    text += fmt::format("# acme-launch local: {} workers, run by a supervisor on this machine\n",
                        request.workers);
    text += extra_directives(request, directive());
    text += worker_body(request);
    return text;
  }

  [[nodiscard]] Argv submit_command(const Request& request, const std::string& script_path,
                                    const std::string& launch_dir) const override {
    return {self_exe(),  "_supervise",    "--dir",        launch_dir,
            "--script",  script_path,     "--n",          std::to_string(request.workers),
            "--log-dir", request.log_dir, "--broker-pid", std::to_string(request.broker_pid)};
  }

  [[nodiscard]] std::optional<std::string> parse_job_id(std::string_view out) const override {
    return leading_job_number(out);  // the supervisor's pid
  }

  [[nodiscard]] JobState poll(const std::string& job, const std::string& launch_dir,
                              Runner /*run*/) const override {
    JobState state;
    if (!process_is(supervisor_pid(job), "_supervise")) {
      state.gone = true;
      return state;
    }
    std::ifstream file(launch_dir + "/" + std::string(kStateFile));
    std::uint32_t workers = 0;
    std::uint32_t running = 0;
    std::uint32_t exits = 0;
    std::string key;
    while (file >> key) {
      std::uint32_t value = 0;
      file >> value;
      if (key == "workers") workers = value;
      if (key == "running") running = value;
      if (key == "exits") exits = value;
    }
    state.running = running;
    state.pending = workers > running ? workers - running : 0;
    state.ended = exits;  // every exit so far, restarted or waiting to be
    if (state.pending > 0 && exits > 0) {
      state.reason = fmt::format("{} worker exits so far, restarting with a back-off", exits);
    }
    return state;
  }

  [[nodiscard]] Argv cancel_command(const std::string& job) const override {
    // Only our supervisor: after a reboot the pid may be anybody's.
    if (!process_is(supervisor_pid(job), "_supervise")) return {"true"};
    return {"kill", "-TERM", job};
  }

 private:
  static pid_t supervisor_pid(const std::string& job) {
    pid_t pid = 0;
    const auto [end, error] = std::from_chars(job.data(), job.data() + job.size(), pid);
    return error == std::errc{} && end == job.data() + job.size() ? pid : 0;
  }
};

struct Slot {
  pid_t pid = 0;
  Clock::time_point started{};
  Clock::time_point restart_at{};
  std::uint32_t quick_failures = 0;
};

pid_t spawn_worker(const std::string& script, const std::string& log_dir, std::uint32_t index,
                   const sigset_t& original_mask) {
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  ::setpgid(0, 0);
  ::sigprocmask(SIG_SETMASK, &original_mask, nullptr);
  ::signal(SIGTERM, SIG_DFL);
  ::signal(SIGINT, SIG_DFL);
  ::signal(SIGHUP, SIG_DFL);
  ::signal(SIGPIPE, SIG_DFL);
  const auto log_path = fmt::format("{}/acme-worker-{}.log", log_dir, index);
  const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (log >= 0) {
    ::dup2(log, 1);
    ::dup2(log, 2);
  }
  const auto index_text = std::to_string(index);
  ::setenv("ACME_WORKER_INDEX", index_text.c_str(), 1);  // NOLINT(concurrency-mt-unsafe)
  ::execl("/bin/bash", "bash", script.c_str(), static_cast<char*>(nullptr));
  const auto message = fmt::format("cannot run /bin/bash {}: {}\n", script, std::strerror(errno));
  (void)!::write(2, message.data(), message.size());
  ::_exit(127);
}

void write_state(const std::string& launch_dir, const std::vector<Slot>& slots,
                 std::uint32_t exits) {
  const auto path = launch_dir + "/" + std::string(kStateFile);
  const auto temporary = path + ".tmp";
  {
    std::ofstream file(temporary, std::ios::trunc);
    const auto running =
        std::count_if(slots.begin(), slots.end(), [](const Slot& slot) { return slot.pid != 0; });
    file << "workers " << slots.size() << "\nrunning " << running << "\nexits " << exits << "\n";
  }
  std::rename(temporary.c_str(), path.c_str());
}

}  // namespace

std::unique_ptr<Launcher> make_local_launcher() {
  return std::make_unique<LocalLauncher>();
}

int supervise(const std::string& launch_dir, const std::string& script, std::uint32_t workers,
              const std::string& log_dir, int broker_pid) {
  // Detach: the parent prints the daemon's pid (the "job id") and returns at once.
  const pid_t daemon = ::fork();
  if (daemon < 0) {
    fmt::print(stderr, "acme-launch: fork: {}\n", std::strerror(errno));
    return 1;
  }
  if (daemon > 0) {
    fmt::print("{}\n", daemon);
    return 0;
  }
  ::setsid();
  const int null = ::open("/dev/null", O_RDONLY);
  const auto log_path = launch_dir + "/supervisor.log";
  const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  ::dup2(null, 0);
  ::dup2(log >= 0 ? log : null, 1);
  ::dup2(log >= 0 ? log : null, 2);

  sigset_t wanted;
  sigset_t original;
  sigemptyset(&wanted);
  for (const int signo : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&wanted, signo);
  ::sigprocmask(SIG_BLOCK, &wanted, &original);

  std::vector<Slot> slots(workers);
  std::uint32_t exits = 0;
  bool changed = true;
  auto say = [](const std::string& line) {
    fmt::print(stderr, "acme-launch supervisor: {}\n", line);
  };
  say(fmt::format("keeping {} workers running ({})", workers, script));
  std::string why = "stopped";
  while (true) {
    const auto now = Clock::now();
    for (std::uint32_t i = 0; i < slots.size(); ++i) {
      auto& slot = slots[i];
      if (slot.pid != 0 || now < slot.restart_at) continue;
      slot.pid = spawn_worker(script, log_dir, i + 1, original);
      slot.started = now;
      changed = true;
    }
    if (changed) write_state(launch_dir, slots, exits);
    changed = false;
    const timespec wait{0, 500'000'000};
    const int signo = ::sigtimedwait(&wanted, nullptr, &wait);
    if (signo == SIGTERM || signo == SIGINT || signo == SIGHUP) break;
    int status = 0;
    for (pid_t pid; (pid = ::waitpid(-1, &status, WNOHANG)) > 0;) {
      for (std::uint32_t i = 0; i < slots.size(); ++i) {
        auto& slot = slots[i];
        if (slot.pid != pid) continue;
        slot.pid = 0;
        ++exits;
        changed = true;
        const auto ran = Clock::now() - slot.started;
        slot.quick_failures = ran < std::chrono::seconds(10) ? slot.quick_failures + 1 : 0;
        const auto backoff = std::chrono::seconds(
            std::min<std::uint32_t>(30, 1U << std::min<std::uint32_t>(slot.quick_failures, 5)));
        slot.restart_at = Clock::now() + backoff;
        say(fmt::format("worker {} (pid {}) {} {}; restarting in {} s", i + 1, pid,
                        WIFEXITED(status) ? "exited with" : "killed by signal",
                        WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
                        backoff.count()));
      }
    }
    if (broker_pid > 0 && !process_is(broker_pid, "acme-broker")) {
      why = fmt::format("the broker (pid {}) ended", broker_pid);
      break;
    }
  }
  say(fmt::format("{}: stopping the workers", why));
  for (const auto& slot : slots) {
    if (slot.pid != 0) ::kill(-slot.pid, SIGTERM);
  }
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  auto alive = [&] {
    return std::any_of(slots.begin(), slots.end(), [](const Slot& s) { return s.pid != 0; });
  };
  while (alive() && Clock::now() < deadline) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      for (auto& slot : slots) {
        if (slot.pid == pid) slot.pid = 0;
      }
      continue;
    }
    const timespec wait{0, 50'000'000};
    ::sigtimedwait(&wanted, nullptr, &wait);
  }
  for (auto& slot : slots) {
    if (slot.pid != 0) {
      ::kill(-slot.pid, SIGKILL);
      ::waitpid(slot.pid, nullptr, 0);
      slot.pid = 0;
    }
  }
  write_state(launch_dir, slots, exits);
  say("done");
  return 0;
}

}  // namespace acme::launch
