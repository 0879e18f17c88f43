#include "embedded_cluster.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <iterator>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <acme/error.hpp>
#include <acme/log.hpp>
#include <acme/worker.hpp>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;  // NOLINT: POSIX

namespace acme::detail {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kSupervisePeriod = std::chrono::milliseconds(100);
constexpr auto kQuickDeath = std::chrono::seconds(2);
constexpr int kMaxQuickDeaths = 5;  // in a row, per slot: then the slot is given up
// Registered workers exit on the broker's BYE at once; one still starting never got it, and its
// task would be moot anyway: so the wait is short before SIGTERM.
constexpr auto kByeDeadline = std::chrono::milliseconds(500);
constexpr auto kTermDeadline = std::chrono::seconds(1);

std::vector<std::string> own_command_line() {
  std::ifstream file("/proc/self/cmdline", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::vector<std::string> argv;
  std::string::size_type start = 0;
  while (start < all.size()) {
    const auto end = all.find('\0', start);
    argv.push_back(all.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  if (argv.empty()) argv.emplace_back("acme-worker-copy");
  return argv;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exit status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("killed by signal {}", WTERMSIG(status));
  return fmt::format("wait status {}", status);
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> result;
  result.reserve(strings.size() + 1);
  for (auto& s : strings) result.push_back(s.data());
  result.push_back(nullptr);
  return result;
}

}  // namespace

EmbeddedCluster::EmbeddedCluster(ClusterOptions options) : options_(options) {
  options_.workers = std::max<std::uint32_t>(options_.workers, 1);
  broker::BrokerOptions broker_options;
  broker_options.endpoint = "tcp://127.0.0.1:0";
  broker_options.scheduler.no_worker_timeout = options_.no_worker_timeout;
  broker_options.scheduler.heartbeat_interval = options_.heartbeat_interval;
  broker_ = std::make_unique<broker::BrokerThread>(std::move(broker_options));
  endpoint_ = broker_->endpoint();

  argv_ = own_command_line();
  const std::string worker_var = std::string(kWorkerEnv) + "=";
  for (char** e = environ; *e != nullptr; ++e) {  // NOLINT: walking the C environment
    const std::string_view entry(*e);
    if (entry.starts_with(worker_var) || entry.starts_with("ACME_WORKER_SLOTS=")) continue;
    env_.emplace_back(entry);
  }
  env_.push_back(worker_var + endpoint_);
  // One task per local worker process (of worker_slots cores).
  env_.push_back("ACME_WORKER_SLOTS=" +
                 std::to_string(std::max<std::uint32_t>(options_.worker_slots, 1)));
  parent_ = ::getpid();

  slots_.resize(options_.workers);
  // The supervisor thread forks the workers: PR_SET_PDEATHSIG fires when the *thread* that
  // forked a child ends, so it must be a thread that lives exactly as long as this cluster.
  supervisor_ = std::thread([this] { supervise(); });
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [this] { return started_; });
  if (start_error_) {
    const auto message = *start_error_;
    stop_ = true;
    lock.unlock();
    cv_.notify_all();
    supervisor_.join();
    broker_.reset();
    throw Error(Errc::System, message);
  }
  logger("client")->debug("embedded broker {} with {} local workers", endpoint_, options_.workers);
}

EmbeddedCluster::~EmbeddedCluster() {
  {
    const std::lock_guard lock(mutex_);
    stop_ = true;  // no more respawns; the supervisor reaps what the broker's BYE ends
  }
  broker_.reset();  // PROTOCOL.md §11: a stopping broker sends BYE (reconnect false) to workers
  cv_.notify_all();
  if (supervisor_.joinable()) supervisor_.join();
}

std::vector<pid_t> EmbeddedCluster::pids() const {
  const std::lock_guard lock(mutex_);
  std::vector<pid_t> result;
  for (const auto& slot : slots_) {
    if (slot.pid > 0) result.push_back(slot.pid);
  }
  return result;
}

std::optional<std::string> EmbeddedCluster::problem() const {
  const std::lock_guard lock(mutex_);
  return problem_;
}

pid_t EmbeddedCluster::spawn() {
  // Everything the child needs is prepared before fork(): between fork and exec only
  // async-signal-safe calls (the parent has threads; libzmq is not fork-safe without exec).
  auto argv = pointers(argv_);
  auto envp = pointers(env_);
  const pid_t parent = parent_;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);       // never outlive the application
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    const int null = ::open("/dev/null", O_RDONLY);  // NOLINT: async-signal-safe open
    if (null >= 0) {
      ::dup2(null, STDIN_FILENO);
      if (null != STDIN_FILENO) ::close(null);
    }
    ::execve("/proc/self/exe", argv.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

void EmbeddedCluster::supervise() {
  {
    const std::lock_guard lock(mutex_);
    for (auto& slot : slots_) {
      slot.pid = spawn();
      slot.started = Clock::now();
      if (slot.pid < 0) {
        start_error_ = fmt::format("could not start local workers: fork failed: {}",
                                   std::strerror(errno));  // NOLINT(concurrency-mt-unsafe)
        break;
      }
    }
    started_ = true;
  }
  cv_.notify_all();
  std::unique_lock lock(mutex_);
  while (!stop_) {
    cv_.wait_for(lock, kSupervisePeriod, [this] { return stop_; });
    if (!stop_) reap(true);
  }
  lock.unlock();
  terminate_all();
}

void EmbeddedCluster::reap(bool respawn) {
  // Called with mutex_ held.
  auto log = logger("client");
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    auto& slot = slots_[i];
    if (slot.pid <= 0) continue;
    int status = 0;
    if (::waitpid(slot.pid, &status, WNOHANG) != slot.pid) continue;
    const auto now = Clock::now();
    const bool quick = now - slot.started < kQuickDeath;
    slot.quick_deaths = quick ? slot.quick_deaths + 1 : 0;
    const auto how = describe_status(status);
    const pid_t old = slot.pid;
    slot.pid = -1;
    if (!respawn) continue;
    if (slot.quick_deaths >= kMaxQuickDeaths) {
      slot.given_up = true;
      log->error(
          "local worker {} died {} times right after starting (last: {}); not restarting "
          "it. Does main() call acme::serve_if_worker() (or create the acme::Client) "
          "before anything that can fail or exit?",
          i, slot.quick_deaths, how);
      if (std::all_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.given_up; })) {
        problem_ = fmt::format(
            "no local worker could run: copies of this program started with {}=<endpoint> "
            "exit right after starting (last: {}); call acme::serve_if_worker() first in main()",
            kWorkerEnv, how);
      }
      continue;
    }
    log->warn("local worker {} (pid {}) {}; starting another", i, old, how);
    slot.pid = spawn();
    slot.started = now;
    if (slot.pid < 0) {
      slot.given_up = true;
      log->error("could not restart local worker {}: fork failed: {}", i,
                 std::strerror(errno));  // NOLINT(concurrency-mt-unsafe)
    }
  }
}

void EmbeddedCluster::terminate_all() noexcept {
  // Bounded: the broker's BYE ends the workers; SIGTERM, then SIGKILL, for those that linger.
  std::vector<pid_t> alive;
  {
    const std::lock_guard lock(mutex_);
    for (auto& slot : slots_) {
      if (slot.pid > 0) alive.push_back(slot.pid);
      slot.pid = -1;
    }
  }
  const auto wait_until = [&alive](Clock::time_point deadline) {
    while (!alive.empty()) {
      std::erase_if(alive, [](pid_t pid) {
        int status = 0;
        const auto reaped = ::waitpid(pid, &status, WNOHANG);
        return reaped == pid || (reaped < 0 && errno == ECHILD);
      });
      if (alive.empty() || Clock::now() >= deadline) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  };
  wait_until(Clock::now() + kByeDeadline);
  if (alive.empty()) return;
  logger("client")->debug("{} local worker(s) still running after the broker stopped; SIGTERM",
                          alive.size());
  for (const auto pid : alive) ::kill(pid, SIGTERM);
  wait_until(Clock::now() + kTermDeadline);
  for (const auto pid : alive) {
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
  }
}

}  // namespace acme::detail
