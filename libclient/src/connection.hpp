// The client side of the protocol (PROTOCOL.md §6.1-6.2, §9) over one DEALER socket, run by an
// I/O thread: jobs go out in window-sized chunks, results come back into per-job queues that
// the application's threads read. Private to libclient.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include <acme/client.hpp>
#include <acme/error.hpp>
#include <acme/net/wire.hpp>
#include <acme/protocol/commands.hpp>

namespace acme::detail {

using Clock = std::chrono::steady_clock;

/// One job. `spec` is immutable; the I/O-only fields are touched by the I/O thread alone; the
/// rest is guarded by Connection::mutex_.
struct JobState {
  std::uint64_t id = 0;
  JobSpec spec{};

  // I/O thread only.
  bool opened = false;    // its first SUBMIT was sent
  bool accepted = false;  // the broker accepted a SUBMIT of it
  bool cancel_sent = false;

  // Guarded by Connection::mutex_.
  std::uint64_t sent = 0;      // tasks submitted
  std::uint64_t received = 0;  // results arrived
  std::deque<TaskResult> ready{};
  bool finished = false;  // no more results will be queued
  bool cancel_requested = false;
  std::optional<Error> failure{};
};

class Connection {
 public:
  Connection(std::string endpoint, std::uint64_t max_in_flight);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  [[nodiscard]] const std::string& endpoint() const noexcept { return endpoint_; }

  /// Sends a HEARTBEAT and waits for any broker message (a broker answers an unknown client's
  /// HEARTBEAT with BYE, PROTOCOL.md §9). Throws acme::Error (Unreachable) after `timeout`,
  /// with `hint` appended to the message. Call before start().
  void probe(std::chrono::milliseconds timeout, const std::string& hint);

  /// Called every 200 ms on the I/O thread; an error message fails every open job (the
  /// embedded cluster reports local workers that cannot start).
  void set_health_check(std::function<std::optional<std::string>()> check);

  void start();
  /// Says BYE, fails the open jobs and joins the I/O thread. Idempotent.
  void stop() noexcept;

  [[nodiscard]] std::shared_ptr<JobState> open(JobSpec spec);
  [[nodiscard]] std::optional<TaskResult> next(JobState& job);
  void cancel(JobState& job) noexcept;

 private:
  void run();
  void wake() noexcept;
  void new_socket();
  void handle(const net::Received& message, Clock::time_point now);
  void on_accept(const protocol::Accept& accept);
  void on_results(const protocol::JobResults& results, std::span<const protocol::Frame> payload);
  void on_done(const protocol::Done& done);
  void on_error(const protocol::Error& error);
  void on_bye(const protocol::Bye& bye);
  void take_requests();
  void pump(Clock::time_point now);
  bool submit_chunk(JobState& job, std::uint64_t count, Clock::time_point now);
  void keepalive(Clock::time_point now);
  void fail(JobState& job, const Error& error);
  void fail_all(const Error& error);
  void forget(std::uint64_t job);
  void send(const protocol::Encoded& message, std::span<zmq::message_t> payload = {});

  std::string endpoint_;
  std::uint64_t max_in_flight_;
  zmq::context_t context_{1};
  std::unique_ptr<zmq::socket_t> socket_;
  int wake_fd_ = -1;
  std::thread thread_{};
  std::atomic<bool> stopping_{false};
  std::function<std::optional<std::string>()> health_check_{};

  std::mutex mutex_;
  std::condition_variable ready_cv_;
  // Guarded by mutex_.
  std::uint64_t next_job_id_ = 1;
  std::vector<std::shared_ptr<JobState>> new_jobs_{};
  bool cancels_pending_ = false;
  std::uint64_t unread_ = 0;  // tasks sent whose results are not yet read (or dropped)
  bool starved_ = false;      // the I/O thread waits for unread_ to shrink
  bool stopped_ = false;

  // I/O thread only.
  std::map<std::uint64_t, std::shared_ptr<JobState>> jobs_{};
  std::uint64_t last_served_ = 0;
  std::optional<std::uint64_t> outstanding_{};  // job of the SUBMIT awaiting its answer
  std::uint64_t outstanding_count_ = 0;
  std::uint64_t window_ = 1024;  // PROTOCOL.md §6.2.1: assumed before the first ACCEPT
  std::chrono::milliseconds heartbeat_{1000};
  Clock::time_point last_sent_{};
  Clock::time_point last_heard_{};
  std::size_t open_jobs_ = 0;  // opened on the broker and not yet closed
  bool session_ = false;       // the broker may know us: BYE on stop
};

}  // namespace acme::detail
