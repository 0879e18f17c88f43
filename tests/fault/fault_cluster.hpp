// What every fault test needs: an acme-broker process, acme-worker processes serving the fault
// functions (acme_fault_plugin), jobs of those functions, and checks that each index arrived
// exactly once. Every wait has a deadline; a test that still runs past its watchdog aborts, and
// its child processes die with it (PR_SET_PDEATHSIG in acme::test::Process).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <acme/client.hpp>
#include <acme/test/process.hpp>

namespace acme::fault {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;

/// Broker options for the fault tests: a worker is dead after 3 x 200 ms of silence.
inline constexpr Ms kHeartbeat{200};
inline constexpr std::uint32_t kLiveness = 3;
std::vector<std::string> fast_broker(std::vector<std::string> extra = {});

/// Milliseconds as a number, for messages and the figures the tests print.
double ms(Clock::duration d);

/// Prints "[ figure ] name: value" so the closing note can quote what a run measured.
void figure(const std::string& name, const std::string& value);

/// The acme-broker process and its acme-worker processes.
class Cluster {
 public:
  explicit Cluster(std::size_t workers, std::vector<std::string> broker_args = fast_broker(),
                   std::uint32_t slots = 1);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  [[nodiscard]] const std::string& endpoint() const noexcept { return endpoint_; }
  test::Process& broker() { return broker_->process(); }
  std::vector<std::unique_ptr<test::Process>>& workers() noexcept { return workers_; }

  /// Starts one more worker (from the calling thread: PR_SET_PDEATHSIG follows the thread).
  test::Process& add_worker(std::uint32_t slots = 1);
  /// Kills the broker and starts a new one on the same endpoint with the same options.
  void restart_broker();

  /// Waits until the broker's log says `count` times that the worker with this pid joined.
  bool joined(pid_t pid, std::size_t count = 1, Ms timeout = 10s);
  /// Waits until every worker started so far has joined once.
  bool all_joined(Ms timeout = 10s);
  /// Waits until the broker's log says that the worker with this pid was lost.
  bool lost(pid_t pid, Ms timeout = 10s);
  /// How often `needle` occurs in the broker's log.
  [[nodiscard]] std::size_t count_in_log(const std::string& needle);

  /// Start marks (<dir>/<pid>.<index>) the tag and hang functions leave.
  [[nodiscard]] std::size_t marks() const;

  [[nodiscard]] ClientOptions client_options() const;

 private:
  std::vector<std::string> broker_args_;
  std::unique_ptr<test::BrokerProcess> broker_;
  std::string endpoint_;
  std::vector<std::unique_ptr<test::Process>> workers_;
  std::filesystem::path marks_;
};

/// A job of `function` over `n` inputs; input i's positional arguments are args(i).
JobSpec job(const std::string& function, std::uint64_t n,
            std::function<std::vector<std::int64_t>(std::uint64_t)> args);

/// tag(i, nap_ms) for i in [0, n): returns [i, pid].
JobSpec tags(std::uint64_t n, std::int64_t nap_ms);

/// The results of a job, as they arrived, with the time each arrived.
struct Arrival {
  TaskResult result;
  Clock::time_point at;
};

/// Reads a stream to its end. `on_result` sees each result as it arrives (to inject a fault).
std::vector<Arrival> drain(ResultStream& stream,
                           const std::function<void(const Arrival&, std::size_t)>& on_result = {});

/// Every index in [0, n) exactly once; returns a description of what is lost or duplicated.
testing::AssertionResult each_index_once(const std::vector<Arrival>& arrivals, std::uint64_t n);

/// The pid a tag result names.
std::int64_t tag_pid(const TaskResult& result);

/// Aborts the test binary (and, through PR_SET_PDEATHSIG, its children) if it is not disarmed
/// before the deadline: a fault test that hangs must fail, loudly, not wait for ctest.
class Watchdog {
 public:
  Watchdog(Ms timeout, std::string what);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

/// Resident memory of a process in bytes (VmRSS), 0 if it cannot be read.
std::uint64_t rss_bytes(pid_t pid);

}  // namespace acme::fault
