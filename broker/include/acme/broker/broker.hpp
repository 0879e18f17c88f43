// acme::broker::Broker: the event loop that turns socket traffic into scheduler events and
// scheduler decisions into messages (docs/ARCHITECTURE.md). It runs as the acme-broker program
// or inside a client process on a thread (the embedded default).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include <acme/scheduler/config.hpp>

namespace zmq {
class context_t;
}

namespace acme::broker {

struct BrokerOptions {
  /// Where to bind: tcp://127.0.0.1:5555, tcp://*:PORT, tcp://127.0.0.1:0 (any free port),
  /// ipc:///path, inproc://name (inproc needs the context of the peers: embedded use only).
  std::string endpoint = "tcp://127.0.0.1:5555";
  scheduler::Config scheduler{};
  /// Largest client message accepted, in bytes; 0 means no limit (PROTOCOL.md §5.6).
  std::size_t max_client_message = 0;
  /// The ZeroMQ context to create the socket in; null: the broker makes its own. Needed for
  /// inproc:// endpoints, whose peers must share the context. Must outlive the Broker.
  zmq::context_t* context = nullptr;
};

/// Counters for logs, tests and benchmarks.
struct BrokerStats {
  std::uint64_t tasks_received = 0;
  std::uint64_t results_delivered = 0;
  std::uint64_t messages_rejected = 0;  // decode errors answered with ERROR or dropped
  std::uint64_t late_results = 0;
  std::uint64_t workers_lost = 0;
  std::uint64_t clients_lost = 0;
  std::uint64_t tasks_dispatched = 0;  // task assignments sent to workers (retries included)
  std::uint64_t tasks_poisoned = 0;
  std::size_t workers = 0;  // live now
  std::size_t jobs = 0;     // open now
};

class Broker {
 public:
  /// Binds the endpoint. Throws acme::Error (Errc::System) when it cannot, naming the endpoint
  /// and the reason (address in use, bad endpoint).
  explicit Broker(BrokerOptions options);
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;
  Broker(Broker&&) = delete;
  Broker& operator=(Broker&&) = delete;

  /// The endpoint it is bound to, with a port of 0 resolved (tcp://127.0.0.1:40123).
  [[nodiscard]] const std::string& endpoint() const noexcept;

  /// Serves until stop(): on stop it sends BYE (reconnect false) to every client and worker
  /// and returns. Call from one thread only.
  void run();

  /// Asks run() to return; thread-safe and async-signal-safe (a write to a pipe).
  void stop() noexcept;

  /// A snapshot, safe to call from any thread while run() serves.
  [[nodiscard]] BrokerStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// A Broker serving on its own thread; the destructor stops and joins it.
class BrokerThread {
 public:
  explicit BrokerThread(BrokerOptions options);
  ~BrokerThread();
  BrokerThread(const BrokerThread&) = delete;
  BrokerThread& operator=(const BrokerThread&) = delete;
  BrokerThread(BrokerThread&&) = delete;  // the thread holds `this`
  BrokerThread& operator=(BrokerThread&&) = delete;

  [[nodiscard]] const std::string& endpoint() const noexcept { return broker_.endpoint(); }
  [[nodiscard]] Broker& broker() noexcept { return broker_; }

 private:
  Broker broker_;
  std::thread thread_;
};

}  // namespace acme::broker
