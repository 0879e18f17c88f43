// End-to-end no-op throughput through a real broker, with raw DEALER peers speaking the protocol
// through the core codec (no worker runtime, no client library): the broker's own cost.
//
//   acme_broker_throughput worker EP SLOTS PREFETCH [per-task]
//       echoes every task back as its result: one RESULTS per TASKS, or one per task
//   acme_broker_throughput client EP TASKS [WARMUP]
//       one job of TASKS 16-byte tasks (after an untimed job of WARMUP, default 2000), sent as
//       fast as the window allows; prints tasks/s
//
// Run the broker (acme-broker), two workers and a client as separate processes, like
// the raw ZeroMQ limit program (zlimit) it is compared with.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <zmq.hpp>

#include <acme/net/wire.hpp>
#include <acme/protocol/codec.hpp>

namespace {

using Clock = std::chrono::steady_clock;
namespace protocol = acme::protocol;

int worker(const std::string& endpoint, std::uint32_t slots, std::uint32_t prefetch,
           bool per_task) {
  zmq::context_t context{1};
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  socket.connect(endpoint);
  acme::net::send(socket, protocol::encode(protocol::Ready{
                              .functions = {"noop"}, .slots = slots, .prefetch = prefetch}));
  auto last_sent = Clock::now();
  std::vector<zmq::message_t> payload;
  while (true) {
    std::array items{zmq::pollitem_t{socket.handle(), 0, ZMQ_POLLIN, 0}};
    zmq::poll(items.data(), items.size(), std::chrono::milliseconds{200});
    while (auto message = acme::net::receive(socket, zmq::recv_flags::dontwait)) {
      const auto frames = message->frames();
      auto decoded = protocol::decode_for_worker(frames);
      if (!decoded) continue;
      if (std::holds_alternative<protocol::Bye>(decoded->command)) return 0;
      const auto* tasks = std::get_if<protocol::Tasks>(&decoded->command);
      if (tasks == nullptr) continue;
      const std::size_t first = message->parts.size() - tasks->tasks.size();
      protocol::TaskResults results;
      payload.clear();
      for (std::size_t i = 0; i < tasks->tasks.size(); ++i) {
        results.results.push_back(protocol::TaskResult{
            .job = tasks->job, .index = tasks->tasks[i].index, .status = protocol::TaskStatus::Ok});
        payload.push_back(std::move(message->parts[first + i]));
        if (per_task) {
          acme::net::send(socket, protocol::encode(results), payload);
          results.results.clear();
          payload.clear();
        }
      }
      if (!per_task) acme::net::send(socket, protocol::encode(results), payload);
      last_sent = Clock::now();
    }
    if (Clock::now() - last_sent > std::chrono::milliseconds{500}) {
      acme::net::send(socket, protocol::encode(protocol::Peer::Worker, protocol::Heartbeat{}));
      last_sent = Clock::now();
    }
  }
}

/// Runs one job of `total` tasks; returns the seconds from its first SUBMIT to its DONE.
double run_job(zmq::socket_t& socket, std::uint64_t job, std::uint64_t total) {
  const std::string task(16, 'x');
  std::uint64_t sent = 0;
  std::uint64_t window = 1024;  // PROTOCOL.md §6.2.1: before the first ACCEPT
  std::uint64_t results = 0;
  bool awaiting_accept = false;
  const auto start = Clock::now();
  std::vector<zmq::message_t> payload;
  while (true) {
    // One SUBMIT at a time is always correct (§6.2.1).
    if (!awaiting_accept && sent < total && window > 0) {
      const auto count = static_cast<std::uint32_t>(std::min<std::uint64_t>(
          {total - sent, window, protocol::kMaxHeaderBytes / 64, std::uint64_t{4096}}));
      payload.clear();
      for (std::uint32_t i = 0; i < count; ++i) payload.emplace_back(task.data(), task.size());
      acme::net::send(
          socket,
          protocol::encode(protocol::Submit{
              .job = job, .function = "noop", .total = total, .first = sent, .count = count}),
          payload);
      sent += count;
      awaiting_accept = true;
    }
    auto message = acme::net::receive(socket);
    if (!message) continue;
    const auto frames = message->frames();
    auto decoded = protocol::decode_for_client(frames);
    if (!decoded) continue;
    if (const auto* accept = std::get_if<protocol::Accept>(&decoded->command)) {
      window = accept->window;
      awaiting_accept = false;
    } else if (const auto* batch = std::get_if<protocol::JobResults>(&decoded->command)) {
      results += batch->results.size();
    } else if (std::holds_alternative<protocol::Done>(decoded->command)) {
      if (results != total) fmt::print(stderr, "only {} of {} results\n", results, total);
      return std::chrono::duration<double>(Clock::now() - start).count();
    } else if (const auto* error = std::get_if<protocol::Error>(&decoded->command)) {
      fmt::print(stderr, "ERROR {}\n", error->message);
      return -1;
    }
  }
}

int client(const std::string& endpoint, std::uint64_t tasks, std::uint64_t warmup) {
  zmq::context_t context{1};
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  socket.set(zmq::sockopt::linger, 0);
  socket.set(zmq::sockopt::rcvtimeo, 5000);
  socket.connect(endpoint);
  if (warmup > 0) run_job(socket, 1, warmup);
  const double seconds = run_job(socket, 2, tasks);
  fmt::print("{} no-op tasks in {:.3f} s: {:.0f} tasks/s\n", tasks, seconds,
             static_cast<double>(tasks) / seconds);
  acme::net::send(socket, protocol::encode(protocol::Peer::Client, protocol::Bye{}));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  if (args.size() >= 4 && args[0] == "worker") {
    return worker(args[1], static_cast<std::uint32_t>(std::stoul(args[2])),
                  static_cast<std::uint32_t>(std::stoul(args[3])),
                  args.size() > 4 && args[4] == "per-task");
  }
  if (args.size() >= 3 && args[0] == "client") {
    return client(args[1], std::stoull(args[2]), args.size() > 3 ? std::stoull(args[3]) : 2000);
  }
  std::fputs(
      "usage: acme_broker_throughput worker EP SLOTS PREFETCH [per-task]\n"
      "       acme_broker_throughput client EP TASKS [WARMUP]\n",
      stderr);
  return 2;
}
