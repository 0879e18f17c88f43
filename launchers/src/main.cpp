// acme-launch: starts a broker (or uses one), submits N workers to a batch system as one array
// job, shows "k/N workers online" until they are up, says why when they are not, and prints
// ACME_BROKER=... . `status` and `stop` act on the launches recorded under $ACME_HOME.
//   acme-launch slurm --partition short --n 10 --cpus-per-worker 4 --time 2:00:00
//   acme-launch status
//   acme-launch stop
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <acme/error.hpp>
#include <acme/status.hpp>

#include "launcher.hpp"
#include "state.hpp"
#include "system.hpp"
#include <nlohmann/json.hpp>
#include <unistd.h>

namespace acme::launch {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNotOnline = 3;
constexpr int kExitInterrupted = 130;

volatile std::sig_atomic_t interrupted = 0;

extern "C" void on_signal(int /*signo*/) {
  interrupted = 1;
}

void install_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: a blocking call returns and the flag is seen
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  ::sigaction(SIGHUP, &action, nullptr);
  ::signal(SIGPIPE, SIG_IGN);  // children get SIG_DFL back before exec (system.cpp, local.cpp)
}

/// Writes to stderr and never fails: a closed pipe or a hung-up terminal must not stop the
/// cleanup that follows (SIGPIPE is ignored, write errors are dropped).
template <class... Args>
void eprint(fmt::format_string<Args...> format, Args&&... args) {
  const auto text = fmt::format(format, std::forward<Args>(args)...);
  (void)!::write(2, text.data(), text.size());
}

template <class... Args>
void say(fmt::format_string<Args...> format, Args&&... args) {
  eprint("acme-launch: {}\n", fmt::format(format, std::forward<Args>(args)...));
}

/// Sleeps `duration` unless interrupted first.
void nap(std::chrono::milliseconds duration) {
  const auto until = Clock::now() + duration;
  while (interrupted == 0 && Clock::now() < until) std::this_thread::sleep_for(20ms);
}

std::string now_iso(const char* format = "%Y-%m-%dT%H:%M:%S") {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  ::localtime_r(&now, &local);
  std::array<char, 64> text{};
  std::strftime(text.data(), text.size(), format, &local);
  return text.data();
}

struct LaunchOptions {
  Request request;
  std::string mem;
  std::string time;
  std::string interface;
  std::string log_dir;
  double wait_s = 300;
  bool dry_run = false;
};

// ---- cleanup: cancel the job, stop the broker, forget the launch ----

/// Cancels the job and waits (at most `wait`) until the scheduler no longer runs any part of
/// it; false when something of it still runs.
bool cancel_job(const Launcher& launcher, const Record& record, std::chrono::milliseconds wait) {
  if (record.job.empty()) return true;
  const auto result = run_command(launcher.cancel_command(record.job), 30s);
  if (result.status != 0) {
    const auto state = launcher.poll(record.job, record.dir, run_scheduler_command);
    if (state.gone) return true;
    say("cancelling job {} failed: {}{}", record.job, result.err, result.out);
  }
  const auto deadline = Clock::now() + wait;
  JobState state;
  while (true) {
    state = launcher.poll(record.job, record.dir, run_scheduler_command);
    if (state.error.empty() && (state.gone || (state.pending == 0 && state.running == 0))) {
      return true;
    }
    if (Clock::now() >= deadline) break;
    std::this_thread::sleep_for(250ms);
  }
  say("job {} still has {} pending and {} running parts after {} s{}", record.job, state.pending,
      state.running, std::chrono::duration_cast<std::chrono::seconds>(wait).count(),
      state.error.empty() ? "" : " (" + state.error + ")");
  return false;
}

bool stop_broker(const Record& record) {
  if (record.broker_pid <= 0) return true;
  if (record.host != host_name()) {
    say("the broker of {} runs on {} (pid {}): stop it there", record.id, record.host,
        record.broker_pid);
    return false;
  }
  if (!stop_process(record.broker_pid, "acme-broker", 5s)) {
    say("the broker (pid {}) did not stop", record.broker_pid);
    return false;
  }
  return true;
}

bool tear_down(const Launcher& launcher, Record record, std::chrono::milliseconds wait) {
  const bool job_gone = cancel_job(launcher, record, wait);
  const bool broker_gone = stop_broker(record);
  unpublish_broker(record);
  if (job_gone && broker_gone) {
    retire(record);
  } else {
    // Keep what is left reachable by a later `acme-launch stop` (e.g. on the broker's host).
    if (job_gone) record.job.clear();
    if (broker_gone) record.broker_pid = 0;
    save(record);
  }
  return job_gone && broker_gone;
}

// ---- acme-launch BACKEND ----

std::string progress_line(std::size_t online, const Record& record, const JobState& state,
                          const std::string& reason) {
  std::string line = fmt::format("{}/{} workers online", online, record.workers);
  if (!state.error.empty()) return line + fmt::format(" (scheduler: {})", state.error);
  line += fmt::format(" ({} running, {} pending", state.running, state.pending);
  if (state.pending > 0 && !reason.empty()) line += ": " + reason;
  return line + ")";
}

/// The worker log to show when workers die at start: the newest in the log dir.
void show_worker_log(const Record& record) {
  const auto log = newest_file(record.log_dir);
  if (log.empty()) {
    say("no worker log in {} (the scheduler's own output may say more)", record.log_dir);
    return;
  }
  say("last lines of {}:", log);
  eprint("{}", tail_file(log, 15));
}

int submit_and_wait(const Launcher& launcher_ref, LaunchOptions& options, Record& record,
                    const std::function<int(int)>& fail);

int launch(LaunchOptions& options) {
  auto& request = options.request;
  auto launcher = make_launcher(request.backend);
  if (!launcher) throw Error(Errc::BadOptions, "unknown backend " + request.backend);
  if (request.pbs_flavour != "pro" && request.pbs_flavour != "torque") {
    throw Error(Errc::BadOptions,
                fmt::format("--pbs-flavour {}: expected pro or torque", request.pbs_flavour));
  }
  if (!options.mem.empty()) {
    request.mem_mib = parse_memory_mib(options.mem);
    if (!request.mem_mib) {
      throw Error(Errc::BadOptions, fmt::format("--mem-per-worker {}: expected a size such as "
                                                "500M, 2G or 1.5T",
                                                options.mem));
    }
  }
  if (!options.time.empty()) {
    request.time_s = parse_duration_s(options.time);
    if (!request.time_s) {
      throw Error(Errc::BadOptions, fmt::format("--time {}: expected SECONDS, MM:SS, HH:MM:SS or "
                                                "D-HH:MM:SS",
                                                options.time));
    }
  }
  if (request.id.empty()) {
    request.id = fmt::format("{}-{}-{}", request.backend, now_iso("%Y-%m-%dT%H-%M-%S"), ::getpid());
  } else if (!std::regex_match(request.id, std::regex("[A-Za-z0-9][A-Za-z0-9._-]*"))) {
    throw Error(Errc::BadOptions,
                fmt::format("--id {}: use letters, digits, '.', '_' and '-'", request.id));
  }
  if (request.worker_cmd.empty() && options.dry_run) {
    // A dry run prints the script for wherever it will run: no worker needs to exist here.
    const char* named = std::getenv("ACME_WORKER_EXE");  // NOLINT(concurrency-mt-unsafe)
    request.worker_exe =
        named != nullptr && *named != '\0'
            ? std::string(named)
            : find_program("acme-worker", "ACME_WORKER_EXE", "worker").value_or("acme-worker");
  } else if (request.worker_cmd.empty()) {
    const auto worker = find_program("acme-worker", "ACME_WORKER_EXE", "worker");
    if (!worker) {
      throw Error(Errc::System,
                  "acme-worker not found (next to acme-launch, on PATH or in "
                  "$ACME_WORKER_EXE); or give --worker-cmd");
    }
    request.worker_exe = *worker;
  }
  const auto dir = fs::path(launches_dir()) / request.id;
  request.log_dir = options.log_dir.empty()
                        ? (dir / "logs").string()
                        : fs::absolute(options.log_dir).lexically_normal().string();

  if (options.dry_run) {
    if (request.broker.empty()) {
      request.broker = fmt::format("tcp://{}:PORT", pick_address(options.interface));
    }
    const auto script_path = (dir / "job.sh").string();
    fmt::print("{}", launcher->script(request));
    std::string command;
    for (const auto& arg : launcher->submit_command(request, script_path, dir.string())) {
      command += (command.empty() ? "" : " ") + arg;
    }
    fmt::print("# submit: {}\n", command);
    return 0;
  }

  if (load(request.id)) {
    throw Error(
        Errc::BadOptions,
        fmt::format("a launch named {} is active: stop it first or pick another --id", request.id));
  }
  if (request.backend != "local") {
    const auto submit = launcher->submit_command(request, "job.sh", dir.string());
    if (!on_path(submit.front())) {
      throw Error(Errc::System, fmt::format("{} not found on PATH: is this a {} login node?",
                                            submit.front(), request.backend));
    }
  }
  fs::create_directories(dir);
  fs::create_directories(request.log_dir);
  fs::remove(dir / "supervisor.state");  // a stopped launch of the same --id left it

  Record record;
  record.id = request.id;
  record.backend = request.backend;
  record.host = host_name();
  record.workers = request.workers;
  record.cpus_per_worker = request.cpus_per_worker;
  record.created = now_iso();
  record.dir = dir.string();
  record.log_dir = request.log_dir;

  // The broker: the given one (it must answer), or one of our own on an address the workers
  // reach.
  if (request.broker.empty()) {
    const auto address = request.backend == "local" && options.interface.empty()
                             ? std::string("127.0.0.1")
                             : pick_address(options.interface);
    const auto broker_exe = find_program("acme-broker", "ACME_BROKER_EXE", "broker");
    if (!broker_exe) {
      throw Error(Errc::System,
                  "acme-broker not found (next to acme-launch, on PATH or in "
                  "$ACME_BROKER_EXE)");
    }
    const auto started = start_broker(*broker_exe, address, (dir / "broker.log").string(), 10s);
    request.broker = started.endpoint;
    request.broker_pid = started.pid;
    say("broker {} (pid {}, log {})", started.endpoint, started.pid, (dir / "broker.log").string());
  } else {
    (void)query_status(request.broker, 5s);  // throws Unreachable with the endpoint
    say("using the broker at {}", request.broker);
  }
  record.broker = request.broker;
  record.broker_pid = request.broker_pid;

  const std::function<int(int)> fail = [&](int code) {
    say("{} and stopping {}",
        record.job.empty() ? "cancelling nothing" : "cancelling job " + record.job,
        record.broker_pid > 0 ? "the broker" : "nothing else");
    tear_down(*launcher, record, 20s);
    return code;
  };
  // From here on a broker runs (and later a job): whatever goes wrong, they are cleaned up.
  try {
    return submit_and_wait(*launcher, options, record, fail);
  } catch (const std::exception& e) {
    say("error: {}", e.what());
    return fail(kExitError);
  }
}

int submit_and_wait(const Launcher& launcher_ref, LaunchOptions& options, Record& record,
                    const std::function<int(int)>& fail) {
  const auto* launcher = &launcher_ref;
  auto& request = options.request;
  const fs::path dir = record.dir;
  save(record);

  // The job.
  const auto script_path = (dir / "job.sh").string();
  {
    std::ofstream script(script_path, std::ios::trunc);
    script << launcher->script(request);
    if (!script) throw Error(Errc::System, "cannot write " + script_path);
  }
  fs::permissions(script_path, fs::perms::owner_exec | fs::perms::group_exec,
                  fs::perm_options::add);
  if (interrupted != 0) return fail(kExitInterrupted);
  const auto submitted =
      run_command(launcher->submit_command(request, script_path, dir.string()), 60s);
  if (submitted.status != 0) {
    say("submitting failed ({}): {}{}",
        submitted.timed_out ? "timed out" : fmt::format("exit {}", submitted.status), submitted.err,
        submitted.out);
    // A submit that failed late may still have created the job: cancel what it named.
    if (const auto partial = launcher->parse_job_id(submitted.out)) record.job = *partial;
    if (submitted.timed_out && record.job.empty()) {
      say("the scheduler may have queued the job anyway: look for a job named '{}' (script {}) "
          "and cancel it",
          request.job_name, script_path);
    }
    return fail(kExitError);
  }
  const auto job = launcher->parse_job_id(submitted.out);
  if (!job) {
    say("no job id in the scheduler's answer: {}{}", submitted.out, submitted.err);
    return fail(kExitError);
  }
  record.job = *job;
  save(record);
  say("{} workers submitted as {} job {} (script {})", request.workers, request.backend, record.job,
      script_path);

  // Wait for the workers.
  const bool tty = ::isatty(2) != 0;
  const auto started = Clock::now();
  const auto deadline =
      started + std::chrono::milliseconds(static_cast<std::int64_t>(options.wait_s * 1000));
  JobState state;
  std::string reason;  // the last reason the scheduler gave
  auto next_poll = Clock::now();
  std::string shown;
  std::size_t online = 0;
  while (true) {
    if (interrupted != 0) {
      if (tty) eprint("\n");
      say("interrupted");
      return fail(kExitInterrupted);
    }
    try {
      online = query_status(record.broker, 2s, record.id).workers_of(record.id);
    } catch (const Error& e) {
      if (tty) eprint("\n");
      say("the broker stopped answering: {}", e.what());
      if (record.broker_pid > 0) eprint("{}", tail_file(dir / "broker.log", 10));
      return fail(kExitError);
    }
    if (Clock::now() >= next_poll) {
      state = launcher->poll(record.job, record.dir, run_scheduler_command);
      if (!state.reason.empty()) reason = state.reason;
      next_poll = Clock::now() + 1s;
    }
    const auto line = progress_line(online, record, state, reason);
    if (line != shown) {
      if (tty) {
        eprint("\r\033[Kacme-launch: {}", line);
      } else {
        say("{}", line);
      }
      shown = line;
    }
    if (online >= record.workers) break;
    const bool all_ended = state.error.empty() && (state.gone || state.ended >= record.workers) &&
                           (request.backend == "local" || state.pending + state.running == 0);
    if (online == 0 && all_ended) {
      if (tty) eprint("\n");
      say("every worker ended before reaching the broker");
      show_worker_log(record);
      return fail(kExitError);
    }
    if (Clock::now() >= deadline) break;
    nap(250ms);
  }
  if (tty) eprint("\n");
  const auto waited = std::chrono::duration<double>(Clock::now() - started).count();
  if (online < record.workers) {
    if (state.pending > 0 && reason.empty()) {
      state = launcher->poll(record.job, record.dir, run_scheduler_command);
      reason = state.reason;
    }
    const auto why =
        state.pending > 0
            ? fmt::format("{} pending: {}", state.pending,
                          reason.empty() ? "the scheduler gives no reason" : reason)
            : fmt::format("{} running but not connected (see {})", state.running, record.log_dir);
    if (online == 0) {
      say("only 0/{} workers online after --wait {:g} s; {}", record.workers, options.wait_s, why);
      return fail(kExitNotOnline);
    }
    say("{}/{} workers online after --wait {:g} s; the others join when they start ({})", online,
        record.workers, options.wait_s, why);
  } else {
    say("{}/{} workers online after {:.1f} s", online, record.workers, waited);
  }
  publish_broker(record);
  say("clients on this machine find the broker in {}/broker; elsewhere export the line below. "
      "Stop with: acme-launch stop --id {}",
      acme_home(), record.id);
  fmt::print("ACME_BROKER={}\n", record.broker);
  std::fflush(stdout);
  return 0;
}

// ---- acme-launch status ----

nlohmann::json describe(const Record& record) {
  nlohmann::json entry = {{"id", record.id},
                          {"backend", record.backend},
                          {"host", record.host},
                          {"job", record.job},
                          {"broker", record.broker},
                          {"broker_pid", record.broker_pid},
                          {"workers_requested", record.workers},
                          {"created", record.created},
                          {"log_dir", record.log_dir}};
  try {
    const auto status = query_status(record.broker, 2s, record.id);
    entry["broker_up"] = true;
    entry["workers_online"] = status.workers_of(record.id);
    entry["tasks_queued"] = status.tasks_queued;
    entry["tasks_running"] = status.tasks_running;
    entry["tasks_done"] = status.tasks_done;
    entry["tasks_failed"] = status.tasks_failed;
    entry["clients"] = status.clients;
    nlohmann::json workers = nlohmann::json::array();
    for (const auto& worker : status.workers) {
      if (worker.launch != record.id) continue;
      workers.push_back({{"host", worker.host},
                         {"pid", worker.pid},
                         {"slots", worker.slots},
                         {"running", worker.running}});
    }
    entry["workers"] = workers;
  } catch (const Error& e) {
    entry["broker_up"] = false;
    entry["broker_error"] = e.what();
    entry["workers_online"] = 0;
  }
  auto launcher = make_launcher(record.backend);
  if (launcher && !record.job.empty() &&
      (record.backend != "local" || record.host == host_name())) {
    const auto state = launcher->poll(record.job, record.dir, run_scheduler_command);
    entry["jobs_pending"] = state.pending;
    entry["jobs_running"] = state.running;
    entry["job_gone"] = state.gone;
    if (!state.reason.empty()) entry["pending_reason"] = state.reason;
    if (!state.error.empty()) entry["scheduler_error"] = state.error;
  }
  return entry;
}

/// The active launch `id`, or a message saying there is none.
std::optional<Record> load_named(const std::string& id) {
  auto record = load(id);
  if (!record) say("no active launch named {} in {}", id, launches_dir());
  return record;
}

int status(const std::string& id, bool json) {
  std::vector<Record> records;
  if (!id.empty()) {
    auto record = load_named(id);
    if (!record) return kExitError;
    records.push_back(*record);
  } else {
    records = load_all();
  }
  nlohmann::json all = nlohmann::json::array();
  for (const auto& record : records) all.push_back(describe(record));
  if (json) {
    fmt::print("{}\n", all.dump(2));
    return 0;
  }
  if (all.empty()) {
    fmt::print("no active launches (in {})\n", launches_dir());
    return 0;
  }
  for (const auto& entry : all) {
    fmt::print("{} ({} job {}, on {} since {})\n", entry["id"].get<std::string>(),
               entry["backend"].get<std::string>(), entry["job"].get<std::string>(),
               entry["host"].get<std::string>(), entry["created"].get<std::string>());
    if (entry["broker_up"].get<bool>()) {
      fmt::print("  broker   {}\n", entry["broker"].get<std::string>());
      fmt::print("  workers  {}/{} online\n", entry["workers_online"].get<std::size_t>(),
                 entry["workers_requested"].get<std::uint32_t>());
      fmt::print(
          "  tasks    {} queued, {} running, {} done, {} failed\n",
          entry["tasks_queued"].get<std::uint64_t>(), entry["tasks_running"].get<std::uint64_t>(),
          entry["tasks_done"].get<std::uint64_t>(), entry["tasks_failed"].get<std::uint64_t>());
    } else {
      fmt::print("  broker   {} not answering: {}\n", entry["broker"].get<std::string>(),
                 entry["broker_error"].get<std::string>());
    }
    if (entry.contains("scheduler_error")) {
      fmt::print("  jobs     unknown: {}\n", entry["scheduler_error"].get<std::string>());
    } else if (entry.contains("jobs_pending")) {
      fmt::print(
          "  jobs     {} running, {} pending{}\n", entry["jobs_running"].get<std::uint32_t>(),
          entry["jobs_pending"].get<std::uint32_t>(),
          entry.contains("pending_reason") ? ": " + entry["pending_reason"].get<std::string>()
                                           : std::string());
    }
  }
  return 0;
}

// ---- acme-launch stop ----

int stop(const std::string& id, bool all, double wait_s) {
  std::vector<Record> records;
  if (all) {
    records = load_all();
  } else if (!id.empty()) {
    auto record = load_named(id);
    if (!record) return kExitError;
    records.push_back(*record);
  } else {
    auto active = load_all();
    const auto published = published_launch();
    for (const auto& record : active) {
      if (published && record.id == *published) records.push_back(record);
    }
    if (records.empty() && active.size() == 1) records = active;
    if (records.empty() && active.size() > 1) {
      say("{} active launches: name one with --id or use --all", active.size());
      for (const auto& record : active) eprint("  {}\n", record.id);
      return kExitError;
    }
  }
  if (records.empty()) {
    say("no active launch to stop");
    return 0;
  }
  bool clean = true;
  for (const auto& record : records) {
    auto launcher = make_launcher(record.backend);
    if (!launcher) continue;
    if (record.backend == "local" && record.host != host_name()) {
      say("{} runs on {}: run acme-launch stop there", record.id, record.host);
      clean = false;
      continue;
    }
    const bool done = tear_down(
        *launcher, record, std::chrono::milliseconds(static_cast<std::int64_t>(wait_s * 1000)));
    say("{} {}", record.id,
        done ? "stopped: no job left, broker stopped" : "stopped with warnings (above)");
    clean = clean && done;
  }
  return clean ? 0 : kExitError;
}

// ---- the command line ----

void add_launch_options(CLI::App& command, LaunchOptions& options, const std::string& backend) {
  auto& request = options.request;
  command.add_option("--n", request.workers, "number of workers (one array task each)")
      ->required()
      ->check(CLI::Range(1U, 1'000'000U));
  command
      .add_option("--cpus-per-worker", request.cpus_per_worker, "CPUs (task slots) of each worker")
      ->check(CLI::Range(1U, 100'000U))
      ->capture_default_str();
  command.add_option("--mem-per-worker", options.mem, "memory of each worker, e.g. 2G, 500M");
  command.add_option("--time", options.time, "walltime: SECONDS, MM:SS, HH:MM:SS or D-HH:MM:SS");
  command.add_option("--partition,--queue", request.queue, "partition (SLURM) or queue");
  command.add_option("--account", request.account, "account (project) to charge");
  command.add_option("--job-name", request.job_name, "the job's name")->capture_default_str();
  command.add_option("--log-dir", options.log_dir,
                     "one log per worker here (default: the launch's directory under "
                     "$ACME_HOME/launches)");
  command.add_option("--worker-cmd", request.worker_cmd,
                     "run this instead of acme-worker (e.g. an app that serves its own "
                     "functions, or 'python3 -m acme.worker'); it finds the broker in "
                     "$ACME_BROKER");
  command.add_option("--extra", request.extra,
                     "a scheduler directive passed on unchanged (repeatable): '#SBATCH --qos=x' "
                     "or just '--qos=x'");
  command.add_option("--broker", request.broker, "use this running broker instead of starting one");
  command.add_option("--interface", options.interface,
                     "network interface or IPv4 address the workers reach the broker on "
                     "(default: the default route's)");
  command.add_option("--wait", options.wait_s, "seconds to wait for the workers to come online")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  command.add_option("--id", request.id, "name of this launch (default: backend-date-pid)");
  if (backend == "pbs") {
    command.add_option("--pbs-flavour", request.pbs_flavour, "pro (PBS Pro, OpenPBS) or torque")
        ->capture_default_str();
  }
  if (backend == "sge") {
    command
        .add_option("--sge-pe", request.sge_pe,
                    "the parallel environment for --cpus-per-worker > 1")
        ->capture_default_str();
  }
  command.add_flag("--dry-run", options.dry_run, "print the job script and the submit command");
}

int run(int argc, char** argv) {
  CLI::App app("acme-launch: start acme workers on this machine or a batch system");
  app.require_subcommand(1);
  app.set_version_flag("--version", "acme-launch " ACME_VERSION);
  LaunchOptions options;
  std::vector<CLI::App*> backends;
  for (const auto& name : launcher_names()) {
    auto* command = app.add_subcommand(
        name, name == "local" ? "workers on this machine, kept alive by a supervisor"
                              : fmt::format("workers as one {} array job", name));
    add_launch_options(*command, options, name);
    backends.push_back(command);
  }
  std::string id;
  bool json = false;
  auto* status_command = app.add_subcommand("status", "the active launches: workers, jobs, tasks");
  status_command->add_option("--id", id, "only this launch");
  status_command->add_flag("--json", json, "as JSON");
  bool all = false;
  double stop_wait = 30;
  auto* stop_command = app.add_subcommand(
      "stop", "cancel a launch's jobs and stop its broker (default: the latest)");
  stop_command->add_option("--id", id, "the launch to stop");
  stop_command->add_flag("--all", all, "stop every active launch");
  stop_command->add_option("--wait", stop_wait, "seconds to wait for the jobs to leave the queue")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  // An unknown first word is most likely a backend acme-launch does not have: say so.
  if (argc > 1 && argv[1][0] != '-') {
    const std::string word = argv[1];
    auto known = launcher_names();
    known.insert(known.end(), {"status", "stop", "_supervise"});
    if (std::find(known.begin(), known.end(), word) == known.end()) {
      eprint(
          "acme-launch: unknown backend or command '{}' (backends: {}; commands: status, "
          "stop; see --help)\n",
          word, fmt::join(launcher_names(), ", "));
      return kExitUsage;
    }
  }
  std::string dir;
  std::string script;
  std::string log_dir;
  std::uint32_t workers = 1;
  int broker_pid = 0;
  auto* supervise_command = app.add_subcommand("_supervise", "");  // hidden: the local backend
  supervise_command->group("");
  supervise_command->add_option("--dir", dir)->required();
  supervise_command->add_option("--script", script)->required();
  supervise_command->add_option("--n", workers)->required();
  supervise_command->add_option("--log-dir", log_dir)->required();
  supervise_command->add_option("--broker-pid", broker_pid);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }
  if (supervise_command->parsed()) return supervise(dir, script, workers, log_dir, broker_pid);
  if (status_command->parsed()) return status(id, json);
  if (stop_command->parsed()) return stop(id, all, stop_wait);
  for (auto* command : backends) {
    if (command->parsed()) options.request.backend = command->get_name();
  }
  install_signal_handlers();
  return launch(options);
}

}  // namespace
}  // namespace acme::launch

int main(int argc, char** argv) {
  try {
    return acme::launch::run(argc, argv);
  } catch (const acme::Error& e) {
    acme::launch::eprint("acme-launch: error: {}\n", e.what());
    return e.code() == acme::Errc::BadOptions ? 2 : 1;
  } catch (const std::exception& e) {
    acme::launch::eprint("acme-launch: error: {}\n", e.what());
    return 1;
  }
}
