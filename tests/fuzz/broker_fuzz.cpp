// libFuzzer target for the broker's message handling (PROTOCOL.md §6-§11), not only its decoder:
// a real Broker on an inproc:// endpoint, four DEALER peers, and an input that says which peer
// sends what. Input format (broker_fuzz.hpp): records of [op][length: 2 bytes LE][body]; the low
// two bits of op pick the peer, the next two what it does:
//   0 send     body split as fuzz_frames.hpp says, sent as one multipart message
//   1 answer   the peer answers every TASKS it has received with RESULTS (status body[0] % 6,
//              result frame the rest of the body), so that fuzzed sessions reach deep states
//   2 sync     a round trip through the broker on a fresh socket, so that it catches up
//   3 vanish   the peer's socket closes and a new one (a new identity) replaces it
// Oracles: the broker answers a probe after every input (it neither crashed nor stopped
// serving), never delivers a task result twice to a client job, and ASan/UBSan stay quiet.
#include "broker_fuzz.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <zmq.hpp>

#include <acme/broker/broker.hpp>
#include <acme/log.hpp>
#include <acme/net/wire.hpp>
#include <acme/protocol/codec.hpp>

#include "fuzz_frames.hpp"

namespace {

using namespace acme;
using namespace std::chrono_literals;
namespace proto = acme::protocol;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "broker_fuzz: %s\n", what);
  std::abort();
}

zmq::context_t& context() {
  static zmq::context_t instance{1};
  return instance;
}

class Peer {
 public:
  explicit Peer(const std::string& endpoint) { open(endpoint); }

  void open(const std::string& endpoint) {
    socket_.emplace(context(), zmq::socket_type::dealer);
    socket_->set(zmq::sockopt::linger, 0);
    socket_->set(zmq::sockopt::sndhwm, 0);
    socket_->connect(endpoint);
    delivered_.clear();
  }

  void send(std::span<const proto::Frame> frames) {
    // A client BYE ends its jobs without DONE (§6.1.4): their ids may be used again.
    if (auto sent = proto::decode_client(frames)) {
      if (std::holds_alternative<proto::Bye>(sent->command)) delivered_.clear();
    }
    for (std::size_t i = 0; i < frames.size(); ++i) {
      const auto more = i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none;
      (void)socket_->send(zmq::const_buffer(frames[i].data(), frames[i].size()),
                          more | zmq::send_flags::dontwait);
    }
  }

  /// Reads what the broker sent; TASKS are kept to answer, client results are checked.
  void drain() {
    while (auto message = net::receive(*socket_, zmq::recv_flags::dontwait)) {
      const auto frames = message->frames();
      if (auto for_worker = proto::decode_for_worker(frames)) {
        if (auto* tasks = std::get_if<proto::Tasks>(&for_worker->command)) {
          for (const auto& task : tasks->tasks) todo_.emplace_back(tasks->job, task.index);
        }
        // A broker BYE (as a client: "I forgot you") ends this peer's jobs too.
        if (std::holds_alternative<proto::Bye>(for_worker->command)) delivered_.clear();
        continue;
      }
      auto for_client = proto::decode_for_client(frames);
      if (!for_client) fail("the broker sent a message its own decoders reject");
      std::visit(
          [&](const auto& command) {
            using C = std::decay_t<decltype(command)>;
            if constexpr (std::is_same_v<C, proto::JobResults>) {
              for (const auto& result : command.results) {
                if (!delivered_[command.job].insert(result.index).second) {
                  fail("a task's result was delivered twice to the same client job");
                }
              }
            } else if constexpr (std::is_same_v<C, proto::Done> ||
                                 std::is_same_v<C, proto::Error>) {
              // The job is over (or this chunk was refused): a client may reuse the id later.
              if constexpr (std::is_same_v<C, proto::Done>) {
                delivered_.erase(command.job);
              } else if (command.job) {
                delivered_.erase(*command.job);
              }
            }
          },
          for_client->command);
    }
  }

  /// Answers every task received so far.
  void answer(std::span<const std::byte> body) {
    drain();
    if (todo_.empty()) return;
    const auto status =
        static_cast<proto::TaskStatus>(body.empty() ? 0 : std::to_integer<unsigned>(body[0]) % 6);
    const auto value = body.size() > 1 ? body.subspan(1) : std::as_bytes(std::span("\xc0", 1));
    proto::TaskResults results;
    std::vector<zmq::message_t> frames;
    for (const auto& [job, index] : todo_) {
      results.results.push_back({.job = job, .index = index, .status = status});
      frames.emplace_back(value.data(), value.size());
      if (results.results.size() == 1024) break;  // §5.6
    }
    todo_.clear();
    (void)net::send(*socket_, proto::encode(results), frames, nullptr, zmq::send_flags::dontwait);
  }

 private:
  std::optional<zmq::socket_t> socket_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> todo_;
  std::map<std::uint64_t, std::set<std::uint64_t>> delivered_;
};

/// Two round trips: an unknown client's HEARTBEAT is answered BYE (§9) at once, in the loop
/// iteration that reads it; the second one is read in a later iteration, after the first one's
/// decisions (TASKS, RESULTS) went out. False if an answer did not come within 10 s.
bool probe(const std::string& endpoint) {
  zmq::socket_t socket(context(), zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::rcvtimeo, 10000);
  socket.connect(endpoint);
  for (int i = 0; i < 2; ++i) {
    (void)net::send(socket, proto::encode(proto::Peer::Client, proto::Heartbeat{}));
    if (!net::receive(socket)) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The broker's log is off unless ACME_FUZZ_LOG names a level (to see what an input does).
  static const bool logging = [] {
    const char* level = std::getenv("ACME_FUZZ_LOG");  // NOLINT(concurrency-mt-unsafe)
    set_log_level(parse_log_level(level != nullptr ? level : "off").value_or(spdlog::level::off));
    return true;
  }();
  (void)logging;
  static std::uint64_t run = 0;
  const auto input = std::as_bytes(std::span(data, size));
  const auto records = fuzz::split_records(input);
  if (records.size() > fuzz::kMaxRecords) return -1;  // not worth the time: not in the corpus

  broker::BrokerOptions options;
  options.endpoint = "inproc://broker-fuzz-" + std::to_string(++run);
  options.context = &context();
  options.max_client_message = fuzz::kMaxClientMessage;
  broker::BrokerThread broker(options);
  std::array<std::optional<Peer>, fuzz::kPeers> peers;
  for (auto& peer : peers) peer.emplace(broker.endpoint());

  for (const auto& record : records) {
    auto& peer = *peers.at(record.peer);
    switch (record.action) {
      case fuzz::Action::Send: peer.send(fuzz::split_frames(record.body)); break;
      case fuzz::Action::Answer: peer.answer(record.body); break;
      case fuzz::Action::Sync:
        if (!probe(broker.endpoint())) fail("the broker stopped answering");
        for (auto& each : peers) each->drain();
        break;
      case fuzz::Action::Vanish: peer.open(broker.endpoint()); break;
    }
  }
  if (!probe(broker.endpoint())) fail("the broker stopped answering");
  for (auto& peer : peers) peer->drain();
  return 0;
}
