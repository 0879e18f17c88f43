// Tunables of the scheduler. Plain data: the broker fills it from its command line.
#pragma once

#include <chrono>
#include <cstdint>

namespace acme::scheduler {

struct Config {
  /// PROTOCOL.md §9: peers heartbeat this often; silence for liveness x interval means dead.
  std::chrono::milliseconds heartbeat_interval{1000};
  std::uint32_t liveness = 3;
  /// PROTOCOL.md §10: a task that was running on this many workers that died is poisoned.
  std::uint32_t max_retries = 3;
  /// PROTOCOL.md §8: the most tasks one SendTasks carries.
  std::uint32_t max_batch = 64;
  /// PROTOCOL.md §6.2.1: tasks a client may have in the broker (queued or running) at once.
  std::uint64_t client_window = std::uint64_t{1} << 20;
  /// A job whose function no live worker offers fails after this long, if any worker is live.
  std::chrono::milliseconds no_worker_timeout{10000};

  [[nodiscard]] std::chrono::milliseconds peer_timeout() const {
    return heartbeat_interval * liveness;
  }
};

}  // namespace acme::scheduler
