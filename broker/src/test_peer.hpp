// Test kit of the broker's unit tests (test-only, never installed): raw DEALER sockets that play
// a client or a worker through the core codec, and waits that are always bounded by a deadline.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <zmq.hpp>

#include <acme/broker/broker.hpp>
#include <acme/net/wire.hpp>
#include <acme/protocol/codec.hpp>

namespace acme::broker::test {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// Bytes of a frame, as a string, for comparisons.
inline std::string bytes(const zmq::message_t& frame) {
  return {static_cast<const char*>(frame.data()), frame.size()};
}

/// Options for a test broker on a free loopback port. Liveness is long unless a test is about
/// it, so that peers need not heartbeat.
inline BrokerOptions test_options() {
  BrokerOptions options;
  options.endpoint = "tcp://127.0.0.1:0";
  options.scheduler.heartbeat_interval = 100ms;
  options.scheduler.liveness = 50;
  options.scheduler.no_worker_timeout = 10s;
  return options;
}

/// A peer that speaks the protocol over its own DEALER socket. `Variant` is what it receives:
/// protocol::ToClientCommand or protocol::ToWorkerCommand.
template <class Variant>
class TestPeer {
 public:
  struct Received {
    Variant command;
    std::vector<zmq::message_t> payload;
  };

  TestPeer(zmq::context_t& context, const std::string& endpoint)
      : socket_(context, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.connect(endpoint);
  }

  static constexpr protocol::Peer kRole = std::is_same_v<Variant, protocol::ToClientCommand>
                                              ? protocol::Peer::Client
                                              : protocol::Peer::Worker;

  /// Sends a command with payload frames made of these byte strings.
  void send(const protocol::Encoded& message, const std::vector<std::string>& payload = {}) {
    std::vector<zmq::message_t> frames;
    frames.reserve(payload.size());
    for (const auto& bytes : payload) frames.push_back(net::frame(bytes));
    send_frames(message, frames);
  }
  void send_frames(const protocol::Encoded& message, std::vector<zmq::message_t>& payload) {
    ASSERT_TRUE(net::send(socket_, message, payload));
    last_sent_ = Clock::now();
  }
  /// Sends raw frames, for malformed input.
  void send_raw(const std::vector<std::string>& frames) {
    for (std::size_t i = 0; i < frames.size(); ++i) {
      socket_.send(zmq::buffer(frames[i]),
                   i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
    last_sent_ = Clock::now();
  }
  void heartbeat() { send(protocol::encode(kRole, protocol::Heartbeat{})); }

  /// When set, the peer heartbeats every 30 ms while any peer of the test waits.
  bool keepalive = false;

  /// The next message other than HEARTBEAT, or nullopt at the deadline. Throws on a message
  /// that does not decode (a broker bug).
  std::optional<Received> next(milliseconds timeout = 3s) {
    const auto deadline = Clock::now() + timeout;
    while (true) {
      keep_alive();
      if (auto message = net::receive(socket_, zmq::recv_flags::dontwait)) {
        const auto frames = message->frames();
        auto decoded = decode(frames);
        if (!decoded) {
          throw std::runtime_error(
              fmt::format("undecodable broker message: {}", protocol::describe(decoded.error())));
        }
        if (std::holds_alternative<protocol::Heartbeat>(decoded->command)) {
          ++heartbeats;
          continue;
        }
        Received received{std::move(decoded->command), {}};
        for (std::size_t i = frames.size() - decoded->payload.size(); i < frames.size(); ++i) {
          received.payload.push_back(std::move(message->parts[i]));
        }
        return received;
      }
      const auto now = Clock::now();
      if (now >= deadline) return std::nullopt;
      const auto slice = std::min<Clock::duration>(deadline - now, 10ms);
      std::array items{zmq::pollitem_t{socket_.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items.data(), items.size(), std::chrono::ceil<milliseconds>(slice));
    }
  }

  /// The next message, which must be a C; throws otherwise (gtest reports it).
  template <class C>
  C expect(milliseconds timeout = 3s, std::vector<zmq::message_t>* payload = nullptr) {
    auto received = next(timeout);
    if (!received) throw std::runtime_error("timed out waiting for a broker message");
    auto* command = std::get_if<C>(&received->command);
    if (command == nullptr) {
      throw std::runtime_error(
          fmt::format("got another broker message (variant index {}) than expected",
                      received->command.index()));
    }
    if (payload != nullptr) *payload = std::move(received->payload);
    return std::move(*command);
  }

  /// True if no message but HEARTBEAT arrives for `duration`.
  bool quiet_for(milliseconds duration) { return !next(duration).has_value(); }

  std::size_t heartbeats = 0;
  [[nodiscard]] Clock::time_point last_sent() const { return last_sent_; }

  /// Every live TestPeer with keepalive set, so that any wait keeps them all alive.
  static std::vector<TestPeer*>& registry() {
    static std::vector<TestPeer*> peers;
    return peers;
  }
  void register_keepalive() { registry().push_back(this); }
  ~TestPeer() { std::erase(registry(), this); }
  TestPeer(const TestPeer&) = delete;
  TestPeer& operator=(const TestPeer&) = delete;
  TestPeer(TestPeer&&) = delete;
  TestPeer& operator=(TestPeer&&) = delete;

 private:
  static auto decode(const std::vector<protocol::Frame>& frames) {
    if constexpr (kRole == protocol::Peer::Client) {
      return protocol::decode_for_client(frames);
    } else {
      return protocol::decode_for_worker(frames);
    }
  }
  void keep_alive();

  zmq::socket_t socket_;
  Clock::time_point last_sent_ = Clock::now();
};

using TestClient = TestPeer<protocol::ToClientCommand>;
using TestWorker = TestPeer<protocol::ToWorkerCommand>;

template <class Variant>
void TestPeer<Variant>::keep_alive() {
  const auto now = Clock::now();
  auto beat = [&](auto* peer) {
    if (peer->keepalive && now - peer->last_sent() >= 30ms) peer->heartbeat();
  };
  for (auto* peer : TestClient::registry()) beat(peer);
  for (auto* peer : TestWorker::registry()) beat(peer);
}

/// A broker on its own thread plus the context its test peers share.
struct TestCluster {
  explicit TestCluster(BrokerOptions options = test_options()) : broker(std::move(options)) {}

  std::unique_ptr<TestClient> client() {
    auto peer = std::make_unique<TestClient>(context, broker.endpoint());
    peer->register_keepalive();
    return peer;
  }
  std::unique_ptr<TestWorker> worker() {
    auto peer = std::make_unique<TestWorker>(context, broker.endpoint());
    peer->register_keepalive();
    return peer;
  }
  /// A worker that sent READY and got WELCOME.
  std::unique_ptr<TestWorker> ready_worker(protocol::Ready ready) {
    auto peer = worker();
    peer->send(protocol::encode(ready));
    peer->template expect<protocol::Welcome>();
    return peer;
  }

  zmq::context_t context{1};
  BrokerThread broker;
};

/// The SUBMIT of a whole job in one message, with tasks made of these payloads.
inline protocol::Submit submit_all(std::uint64_t job, std::string function, std::uint64_t count) {
  return protocol::Submit{.job = job,
                          .function = std::move(function),
                          .total = count,
                          .first = 0,
                          .count = static_cast<std::uint32_t>(count)};
}

/// Payloads "t0", "t1", ... for tasks [first, first + count).
inline std::vector<std::string> task_payloads(std::size_t first, std::size_t count) {
  std::vector<std::string> payloads;
  for (std::size_t i = first; i < first + count; ++i) payloads.push_back(fmt::format("t{}", i));
  return payloads;
}

/// A worker's RESULTS for these (job, index) pairs, each with result payload "r<index>".
inline void answer(TestWorker& worker, std::uint64_t job, const std::vector<std::uint64_t>& indices,
                   protocol::TaskStatus status = protocol::TaskStatus::Ok) {
  protocol::TaskResults results;
  std::vector<std::string> payload;
  for (const auto index : indices) {
    results.results.push_back(protocol::TaskResult{.job = job, .index = index, .status = status});
    payload.push_back(fmt::format("r{}", index));
  }
  worker.send(protocol::encode(results), payload);
}

inline std::vector<std::uint64_t> indices_of(const protocol::Tasks& tasks) {
  std::vector<std::uint64_t> indices;
  for (const auto& task : tasks.tasks) indices.push_back(task.index);
  return indices;
}

}  // namespace acme::broker::test
