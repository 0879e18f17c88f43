// Uses the installed headers and libraries: encodes and decodes a message, runs a scheduler step,
// asks an endpoint nobody serves for a broker status, and runs a tiny ParallelMap on the embedded
// default (its local workers are copies of this program, which is why main() calls
// acme::serve_if_worker() first).
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <vector>

#include <acme/parallel_map.hpp>
#include <acme/protocol/codec.hpp>
#include <acme/scheduler/scheduler.hpp>
#include <acme/status.hpp>

int main() {
  using namespace acme;
  define("square", [](std::int64_t x) { return x * x; });
  serve_if_worker();
  const protocol::Submit submit{.job = 7, .function = "square", .total = 1, .first = 0, .count = 1};
  const auto encoded = protocol::encode(submit);
  const std::string command(1, static_cast<char>(encoded.command));
  const std::string payload = "\x91\x03";  // msgpack [3]
  const std::array frames{protocol::as_frame(encoded.signature), protocol::as_frame(command),
                          protocol::as_frame(encoded.header), protocol::as_frame(payload)};
  const auto decoded = protocol::decode_client(frames);
  if (!decoded || std::get<protocol::Submit>(decoded->command) != submit) {
    std::puts("decode failed");
    return 1;
  }

  scheduler::Scheduler scheduler;
  const scheduler::TimePoint now{};
  const auto client = scheduler.add_client(now);
  const auto worker = scheduler.add_worker({.functions = {"square"}, .slots = 1}, now);
  const auto job = scheduler.submit({.client = client, .function = "square", .total = 1}, 1, now);
  const auto decisions = scheduler.take_decisions();
  if (decisions.size() != 1 || !std::holds_alternative<scheduler::SendTasks>(decisions[0])) {
    std::puts("dispatch failed");
    return 1;
  }
  const auto verdict = scheduler.task_done(worker, job, 0, protocol::TaskStatus::Ok, now);
  if (verdict.verdict != scheduler::Verdict::Deliver) {
    std::puts("delivery failed");
    return 1;
  }

  ClientOptions options;
  options.embedded = true;
  options.local_workers = 1;
  Client acme_client(options);
  const auto squares =
      ParallelMap("square", std::vector<std::int64_t>{1, 2, 3}, MapOptions{.client = &acme_client})
          .compute<std::int64_t>();
  if (squares != std::vector<std::int64_t>{1, 4, 9}) {
    std::puts("map failed");
    return 1;
  }
  try {
    (void)query_status("tcp://127.0.0.1:9", std::chrono::milliseconds(100));
    std::puts("status from nowhere");
    return 1;
  } catch (const Error& e) {
    if (e.code() != Errc::Unreachable) {
      std::puts("status failed");
      return 1;
    }
  }
  std::puts("acme package: ok");
  return 0;
}
