// acme::query_status: asks a broker what it holds (PROTOCOL.md §6.1.5, §6.2.7, draft), for
// `acme-launch status` and launchers that wait for their workers. One request, one reply.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace acme {

/// One live worker registration, as the broker reports it.
struct WorkerStatus {
  std::uint32_t id = 0;
  std::string host;
  std::uint32_t pid = 0;
  std::uint32_t slots = 0;
  std::uint32_t running = 0;    // tasks assigned to it now
  std::string launch;           // the acme-launch launch that started it; empty if none
  std::uint32_t functions = 0;  // functions it offers
};

/// A broker's answer to STATUS. Task counts are over all jobs since the broker started.
struct BrokerStatus {
  std::string endpoint;
  std::string agent;  // e.g. "acme-broker 0.1.0"
  std::uint64_t uptime_ms = 0;
  std::uint64_t clients = 0, jobs = 0, tasks_queued = 0, tasks_running = 0, tasks_done = 0,
                tasks_failed = 0;
  std::vector<WorkerStatus> workers;
  /// Live workers left out of `workers` to keep the reply small (thousands of workers).
  std::uint64_t workers_omitted = 0;
  /// The launch the request was restricted to; empty: all workers.
  std::string restricted_to;

  /// Workers whose launch tag is `launch` (exact also beyond the listed ones when the request
  /// was restricted to that launch).
  [[nodiscard]] std::size_t workers_of(std::string_view launch) const;
};

/// Asks the broker at `endpoint` for its status: a fresh DEALER, one STATUS, one reply.
/// Throws acme::Error{Errc::Unreachable, "no broker answered at <endpoint> within <N> ms"} when no
/// reply arrives by `timeout`; Errc::VersionRefused when the broker speaks another protocol
/// version; Errc::Protocol when its reply cannot be decoded or it does not know STATUS (an older
/// broker); Errc::Refused when it answers ERROR or BYE; Errc::BadOptions for an invalid
/// endpoint. Never blocks longer than `timeout` (linger 0). A non-empty `launch` restricts the
/// worker list to that launch's workers.
[[nodiscard]] BrokerStatus query_status(const std::string& endpoint,
                                        std::chrono::milliseconds timeout,
                                        const std::string& launch = {});

}  // namespace acme
