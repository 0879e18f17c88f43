// The embedded default: a broker thread on tcp://127.0.0.1:0 and local workers that are copies
// of this program (fork+exec of /proc/self/exe with ACME_WORKER_OF set). Private to libclient.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <acme/broker/broker.hpp>

#include <sys/types.h>

namespace acme::detail {

struct ClusterOptions {
  std::uint32_t workers = 1;
  std::uint32_t worker_slots = 1;  // ACME_WORKER_SLOTS of each worker
  std::chrono::milliseconds no_worker_timeout{10000};
  std::chrono::milliseconds heartbeat_interval{1000};
};

class EmbeddedCluster {
 public:
  /// Starts the broker and the workers. Throws acme::Error (System) when it cannot.
  explicit EmbeddedCluster(ClusterOptions options);
  /// Stops the broker (BYE to the workers), waits for the workers with a deadline, then
  /// SIGTERM, then SIGKILL; reaps them all.
  ~EmbeddedCluster();
  EmbeddedCluster(const EmbeddedCluster&) = delete;
  EmbeddedCluster& operator=(const EmbeddedCluster&) = delete;

  [[nodiscard]] const std::string& endpoint() const noexcept { return endpoint_; }
  [[nodiscard]] std::uint32_t workers() const noexcept { return options_.workers; }
  /// Pids of the live local workers (for tests and logs).
  [[nodiscard]] std::vector<pid_t> pids() const;
  /// Why no local worker can run, once every one of them keeps dying right after its start.
  [[nodiscard]] std::optional<std::string> problem() const;

 private:
  struct Slot {
    pid_t pid = -1;
    std::chrono::steady_clock::time_point started{};
    int quick_deaths = 0;  // in a row
    bool given_up = false;
  };

  void supervise();
  pid_t spawn();
  void reap(bool respawn);
  void terminate_all() noexcept;

  ClusterOptions options_;
  std::unique_ptr<broker::BrokerThread> broker_;
  std::string endpoint_;
  std::vector<std::string> argv_;
  std::vector<std::string> env_;
  pid_t parent_ = 0;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool started_ = false;
  std::optional<std::string> start_error_{};
  std::vector<Slot> slots_{};
  std::optional<std::string> problem_{};
  std::thread supervisor_{};
};

}  // namespace acme::detail
