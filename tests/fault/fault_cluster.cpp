#include "fault_cluster.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include <acme/net/wire.hpp>

#include <unistd.h>

namespace acme::fault {

std::vector<std::string> fast_broker(std::vector<std::string> extra) {
  std::vector<std::string> args{"--heartbeat-ms", std::to_string(kHeartbeat.count()), "--liveness",
                                std::to_string(kLiveness)};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

double ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

void figure(const std::string& name, const std::string& value) {
  fmt::print("[ figure   ] {}: {}\n", name, value);
  std::fflush(stdout);
}

Cluster::Cluster(std::size_t workers, std::vector<std::string> broker_args, std::uint32_t slots)
    : broker_args_(std::move(broker_args)),
      broker_(std::make_unique<test::BrokerProcess>(broker_args_)),
      endpoint_(broker_->endpoint()) {
  char pattern[] = "/tmp/acme-fault-XXXXXX";  // NOLINT(cppcoreguidelines-avoid-c-arrays)
  if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
  marks_ = pattern;
  for (std::size_t i = 0; i < workers; ++i) add_worker(slots);
}

Cluster::~Cluster() {
  workers_.clear();
  broker_.reset();
  std::error_code ignored;
  std::filesystem::remove_all(marks_, ignored);
}

test::Process& Cluster::add_worker(std::uint32_t slots) {
  test::ProcessOptions options;
  options.env["ACME_FAULT_MARKS"] = marks_.string();
  workers_.push_back(std::make_unique<test::Process>(
      std::vector<std::string>{test::program("acme-worker"), "--connect", endpoint_, "--slots",
                               std::to_string(slots), "--plugin", ACME_FAULT_PLUGIN, "--log-level",
                               "warn"},
      std::move(options)));
  return *workers_.back();
}

void Cluster::restart_broker() {
  broker().signal(SIGKILL);
  (void)broker().wait(5s);
  broker_ = std::make_unique<test::BrokerProcess>(broker_args_, endpoint_);
}

std::size_t Cluster::count_in_log(const std::string& needle) {
  const auto log = broker().err();
  std::size_t count = 0;
  for (auto at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

bool Cluster::joined(pid_t pid, std::size_t count, Ms timeout) {
  const auto needle = fmt::format("{}:{}) joined", net::hostname(), pid);
  return test::wait_until([&] { return count_in_log(needle) >= count; }, timeout);
}

bool Cluster::all_joined(Ms timeout) {
  const auto deadline = Clock::now() + timeout;
  for (const auto& worker : workers_) {
    const auto left = std::chrono::duration_cast<Ms>(deadline - Clock::now());
    if (!joined(worker->pid(), 1, std::max(left, Ms{0}))) return false;
  }
  return true;
}

bool Cluster::lost(pid_t pid, Ms timeout) {
  const auto needle = fmt::format("{}:{}) lost", net::hostname(), pid);
  return test::wait_until([&] { return count_in_log(needle) >= 1; }, timeout);
}

std::size_t Cluster::marks() const {
  std::error_code error;
  std::size_t count = 0;
  for (auto it = std::filesystem::directory_iterator(marks_, error);
       !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
    ++count;
  }
  return count;
}

ClientOptions Cluster::client_options() const {
  ClientOptions options;
  options.broker = endpoint_;
  return options;
}

JobSpec job(const std::string& function, std::uint64_t n,
            std::function<std::vector<std::int64_t>(std::uint64_t)> args) {
  JobSpec spec;
  spec.function = function;
  spec.total = n;
  spec.task = [args = std::move(args)](std::uint64_t index, msgpack::sbuffer& frame) {
    msgpack::pack(frame, args(index));
  };
  return spec;
}

JobSpec tags(std::uint64_t n, std::int64_t nap_ms) {
  return job("tag", n, [nap_ms](std::uint64_t i) {
    return std::vector<std::int64_t>{static_cast<std::int64_t>(i), nap_ms};
  });
}

std::vector<Arrival> drain(ResultStream& stream,
                           const std::function<void(const Arrival&, std::size_t)>& on_result) {
  std::vector<Arrival> arrivals;
  while (auto result = stream.next()) {
    arrivals.push_back({std::move(*result), Clock::now()});
    if (on_result) on_result(arrivals.back(), arrivals.size());
  }
  return arrivals;
}

testing::AssertionResult each_index_once(const std::vector<Arrival>& arrivals, std::uint64_t n) {
  std::vector<std::uint32_t> seen(n, 0);
  std::vector<std::uint64_t> duplicated;
  std::vector<std::uint64_t> outside;
  for (const auto& arrival : arrivals) {
    const auto index = arrival.result.index();
    if (index >= n) {
      outside.push_back(index);
    } else if (++seen[index] == 2) {
      duplicated.push_back(index);
    }
  }
  std::vector<std::uint64_t> lost;
  for (std::uint64_t i = 0; i < n; ++i) {
    if (seen[i] == 0) lost.push_back(i);
  }
  if (lost.empty() && duplicated.empty() && outside.empty()) {
    return testing::AssertionSuccess();
  }
  const auto first = [](const std::vector<std::uint64_t>& v) {
    std::ostringstream out;
    for (std::size_t i = 0; i < v.size() && i < 10; ++i) out << (i ? ", " : "") << v[i];
    if (v.size() > 10) out << ", ...";
    return out.str();
  };
  return testing::AssertionFailure()
         << lost.size() << " lost [" << first(lost) << "], " << duplicated.size() << " duplicated ["
         << first(duplicated) << "], " << outside.size() << " outside the job [" << first(outside)
         << "] of " << n;
}

std::int64_t tag_pid(const TaskResult& result) {
  return result.value().via.array.ptr[1].as<std::int64_t>();
}

struct Watchdog::State {
  std::mutex mutex;
  std::condition_variable disarmed_cv;
  bool disarmed = false;
  std::thread thread;
};

Watchdog::Watchdog(Ms timeout, std::string what) : state_(std::make_shared<State>()) {
  state_->thread = std::thread([state = state_, timeout, what = std::move(what)] {
    std::unique_lock lock(state->mutex);
    if (state->disarmed_cv.wait_for(lock, timeout, [&] { return state->disarmed; })) return;
    std::fprintf(stderr, "\nWATCHDOG: %s did not finish within %lld ms; aborting the test\n",
                 what.c_str(), static_cast<long long>(timeout.count()));
    std::fflush(stderr);
    std::abort();
  });
}

Watchdog::~Watchdog() {
  {
    const std::lock_guard lock(state_->mutex);
    state_->disarmed = true;
  }
  state_->disarmed_cv.notify_all();
  state_->thread.join();
}

std::uint64_t rss_bytes(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

}  // namespace acme::fault
