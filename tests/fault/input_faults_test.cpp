// Bad input and too much input while a map runs: a flood of connections sending garbage,
// truncated and oversized messages, wrong versions and unknown commands and functions; and a
// client that submits ten million tasks.
#include <atomic>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <zmq.hpp>

#include <acme/net/wire.hpp>
#include <acme/protocol/codec.hpp>

#include "fault_cluster.hpp"

namespace acme::fault {
namespace {

namespace proto = protocol;

std::string text(const proto::Encoded& e) {
  return std::string(e.signature);
}

std::string byte_of(const proto::Encoded& e) {
  return std::string(1, static_cast<char>(e.command_byte()));
}

// One bad message and what the broker must answer: an ERROR code, or nothing (dropped).
struct Bad {
  std::string name;
  std::vector<std::string> frames;
  std::optional<proto::ErrorCode> expect;
};

std::vector<Bad> bad_messages() {
  const auto submit =
      proto::encode(proto::Submit{.job = 1, .function = "tag", .total = 1, .first = 0, .count = 1});
  const auto nosuch = proto::encode(
      proto::Submit{.job = 1, .function = "nosuch", .total = 1, .first = 0, .count = 1});
  const std::string task = "\x92\x01\x00";  // [1, 0]
  return {
      {"garbage", {"hello"}, std::nullopt},
      {"no signature", {"ACME", byte_of(submit), submit.header, task}, std::nullopt},
      {"wrong version",
       {"ACMEC2", byte_of(submit), submit.header, task},
       proto::ErrorCode::VersionMismatch},
      {"unknown command", {text(submit), "\x7f", submit.header}, proto::ErrorCode::UnknownCommand},
      {"truncated msgpack",
       {text(submit), byte_of(submit), submit.header.substr(0, 7), task},
       proto::ErrorCode::Malformed},
      {"missing payload",
       {text(submit), byte_of(submit), submit.header},
       proto::ErrorCode::Malformed},
      {"huge frame",
       {text(submit), byte_of(submit), submit.header, std::string(2 << 20, 'x')},
       proto::ErrorCode::TooLarge},
      {"worker garbage", {"ACMEW1", "\x06", "\xc1"}, std::nullopt},
      {"unknown function",
       {text(nosuch), byte_of(nosuch), nosuch.header, task},
       proto::ErrorCode::NoSuchFunction},
  };
}

// Waits for an ERROR on `socket` (skipping ACCEPT and HEARTBEAT); its code, or nullopt.
std::optional<proto::ErrorCode> error_reply(zmq::socket_t& socket, Ms timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    std::array items{zmq::pollitem_t{socket.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items.data(), 1, std::chrono::duration_cast<Ms>(deadline - Clock::now()));
    if ((items[0].revents & ZMQ_POLLIN) == 0) continue;
    const auto message = net::receive(socket, zmq::recv_flags::dontwait);
    if (!message) continue;
    auto decoded = proto::decode_for_client(message->frames());
    if (!decoded) continue;
    if (const auto* error = std::get_if<proto::Error>(&decoded->command)) return error->code;
  }
  return std::nullopt;
}

TEST(InputFaults, AFloodOfBadMessagesGetsErrorsWhileTheMapCompletesExactlyOnce) {
  const Watchdog watchdog(90s, "AFloodOfBadMessages...");
  // The raw sockets below never send HEARTBEAT: a liveness of 10 x 200 ms keeps the broker
  // from dropping them (as it must drop a silent client) before the unknown function's
  // 200 ms no-worker timeout answers them.
  Cluster cluster(2, {"--heartbeat-ms", "200", "--liveness", "10", "--max-message-mb", "1",
                      "--no-worker-timeout-ms", "200"});
  ASSERT_TRUE(cluster.all_joined()) << cluster.broker().err();
  Client client(cluster.client_options());
  constexpr std::uint64_t kTasks = 3000;
  auto stream = client.submit(tags(kTasks, 0));
  std::vector<Arrival> arrivals;
  std::thread reader([&] { arrivals = drain(stream); });

  // 300 connections at once, each sending one bad message, then each waits for its answer.
  zmq::context_t context(1);
  const auto kinds = bad_messages();
  constexpr std::size_t kConnections = 300;
  std::vector<zmq::socket_t> sockets;
  sockets.reserve(kConnections);
  for (std::size_t i = 0; i < kConnections; ++i) {
    sockets.emplace_back(context, zmq::socket_type::dealer);
    sockets.back().set(zmq::sockopt::linger, 0);
    sockets.back().connect(cluster.endpoint());
  }
  for (std::size_t i = 0; i < kConnections; ++i) {
    const auto& frames = kinds[i % kinds.size()].frames;
    for (std::size_t f = 0; f < frames.size(); ++f) {
      sockets[i].send(zmq::buffer(frames[f]),
                      f + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
  std::size_t answered = 0;
  const auto deadline = Clock::now() + 20s;  // for all of them together
  for (std::size_t i = 0; i < kConnections; ++i) {
    const auto& kind = kinds[i % kinds.size()];
    if (!kind.expect) continue;
    const auto left = std::max(Ms{0}, std::chrono::duration_cast<Ms>(deadline - Clock::now()));
    const auto code = error_reply(sockets[i], left);
    EXPECT_EQ(code, kind.expect) << kind.name;
    if (code == kind.expect) ++answered;
  }
  // The dropped ones get nothing at all.
  for (std::size_t i = 0; i < kinds.size(); ++i) {
    if (!kinds[i].expect) {
      EXPECT_FALSE(error_reply(sockets[i], 100ms)) << kinds[i].name;
    }
  }
  sockets.clear();
  reader.join();
  EXPECT_TRUE(each_index_once(arrivals, kTasks));
  for (const auto& arrival : arrivals) {
    EXPECT_EQ(arrival.result.value().via.array.ptr[0].as<std::uint64_t>(), arrival.result.index());
  }
  EXPECT_TRUE(cluster.broker().running());
  figure("bad-input flood during a 3000-task map",
         fmt::format("{} connections, {} ERROR replies as expected, map complete", kConnections,
                     answered));
}

TEST(InputFaults, TenMillionTasksDoNotGrowTheBrokersMemory) {
  const Watchdog watchdog(90s, "TenMillionTasksDoNotGrowTheBrokersMemory");
  Cluster cluster(1);
  ASSERT_TRUE(cluster.all_joined()) << cluster.broker().err();
  const auto broker_pid = cluster.broker().pid();
  const auto baseline = rss_bytes(broker_pid);
  ClientOptions options = cluster.client_options();
  Client client(options);
  std::atomic<std::uint64_t> packed{0};
  auto spec = tags(10'000'000, 0);
  auto pack = spec.task;
  spec.task = [&packed, pack](std::uint64_t index, msgpack::sbuffer& frame) {
    packed.fetch_add(1, std::memory_order_relaxed);
    pack(index, frame);
  };
  auto stream = client.submit(std::move(spec));
  std::uint64_t peak = baseline;
  std::uint64_t read = 0;
  const auto until = Clock::now() + 4s;
  while (Clock::now() < until) {
    const auto result = stream.next();
    ASSERT_TRUE(result.has_value());
    ++read;
    if (read % 256 == 0) peak = std::max(peak, rss_bytes(broker_pid));
  }
  peak = std::max(peak, rss_bytes(broker_pid));
  stream.cancel();
  const auto in_flight = packed.load() - read;
  // The client keeps at most max_in_flight tasks beyond what it has read (ACCEPT's window
  // bounds the broker further); nothing else of the ten million exists anywhere yet.
  EXPECT_LE(in_flight, options.max_in_flight + 1024);
  EXPECT_LT(peak - baseline, std::uint64_t{64} << 20U);
  figure("10,000,000-task submit, 4 s in",
         fmt::format("{} read, {} packed ({} in flight, max_in_flight {}); broker RSS {:.1f} -> "
                     "{:.1f} MiB",
                     read, packed.load(), in_flight, options.max_in_flight,
                     static_cast<double>(baseline) / (1 << 20),
                     static_cast<double>(peak) / (1 << 20)));
}

}  // namespace
}  // namespace acme::fault
