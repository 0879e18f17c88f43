// Writes the seed inputs of corpus-broker/ (in broker_fuzz.hpp's format): whole sessions of
// clients and workers, so that the fuzzer starts from registered workers, open jobs, results,
// retries, cancellation and departures instead of having to find them.
//   acme_broker_corpus_gen DIR           writes the seeds
//   acme_broker_corpus_gen --check DIR   fails if DIR's seeds are stale (a ctest)
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <acme/protocol/codec.hpp>

#include "broker_fuzz.hpp"
#include "fuzz_frames.hpp"

namespace {

using namespace acme::protocol;
using acme::fuzz::Action;
using acme::fuzz::frames_of;
using acme::fuzz::join_frames;
using acme::fuzz::record;

// Peers 0 and 1 act as clients, 2 and 3 as workers (any peer may send anything when fuzzed).
constexpr std::size_t kClientA = 0;
constexpr std::size_t kClientB = 1;
constexpr std::size_t kWorkerA = 2;
constexpr std::size_t kWorkerB = 3;

std::string send(std::size_t peer, const Encoded& message, std::vector<std::string> payloads = {}) {
  return record(peer, Action::Send, join_frames(frames_of(message, std::move(payloads))));
}
std::string answer(std::size_t peer, TaskStatus status = TaskStatus::Ok,
                   const std::string& value = "\x2a") {
  return record(peer, Action::Answer, std::string(1, static_cast<char>(status)) + value);
}
std::string sync() {
  return record(0, Action::Sync);
}
std::string vanish(std::size_t peer) {
  return record(peer, Action::Vanish);
}

std::string ready(std::size_t peer, std::vector<std::string> functions, std::uint32_t slots = 2) {
  return send(peer, encode(Ready{.functions = std::move(functions),
                                 .slots = slots,
                                 .prefetch = 1,
                                 .host = "node1",
                                 .pid = static_cast<std::uint32_t>(100 + peer),
                                 .cores = 4,
                                 .memory = 1U << 30,
                                 .agent = "seed"}));
}

std::string submit(std::size_t peer, Submit command) {
  std::vector<std::string> payloads;
  if (command.common) payloads.emplace_back("\x81\xa1k\x01");                           // {"k": 1}
  for (std::uint32_t i = 0; i < command.count; ++i) payloads.emplace_back("\x91\x07");  // [7]
  return send(peer, encode(command), std::move(payloads));
}

std::vector<std::pair<std::string, std::string>> seeds() {
  const Submit echo3{.job = 1, .function = "echo", .total = 3, .first = 0, .count = 3};
  return {
      {"session-echo", ready(kWorkerA, {"echo"}) + sync() + submit(kClientA, echo3) + sync() +
                           answer(kWorkerA) + sync() + answer(kWorkerA) + sync()},
      {"session-chunks-common",
       ready(kWorkerA, {"echo", "sleep"}) + ready(kWorkerB, {"echo"}) + sync() +
           submit(kClientA, {.job = 5,
                             .function = "echo",
                             .total = 6,
                             .first = 0,
                             .count = 3,
                             .common = true,
                             .max_retries = 2,
                             .timeout_ms = 100}) +
           submit(kClientA, {.job = 5, .function = "echo", .total = 6, .first = 3, .count = 3}) +
           sync() + answer(kWorkerA) + answer(kWorkerB) + sync() + answer(kWorkerA) +
           answer(kWorkerB) + sync()},
      {"session-retry-on-error", ready(kWorkerA, {"echo"}) + ready(kWorkerB, {"echo"}) + sync() +
                                     submit(kClientA, {.job = 2,
                                                       .function = "echo",
                                                       .total = 2,
                                                       .first = 0,
                                                       .count = 2,
                                                       .max_retries = 2,
                                                       .retry_on_error = true}) +
                                     sync() +
                                     answer(kWorkerA, TaskStatus::Failed,
                                            "\x81\xa7message\xa3"
                                            "bad") +
                                     answer(kWorkerB, TaskStatus::Failed) + sync() +
                                     answer(kWorkerA) + answer(kWorkerB) + sync()},
      {"session-worker-dies", ready(kWorkerA, {"echo"}) + sync() + submit(kClientA, echo3) +
                                  sync() + vanish(kWorkerA) + ready(kWorkerB, {"echo"}) +
                                  send(kWorkerA, encode(Peer::Worker, Heartbeat{})) + sync() +
                                  answer(kWorkerB) + sync()},
      {"session-worker-bye", ready(kWorkerA, {"echo"}) + ready(kWorkerB, {"echo"}) + sync() +
                                 submit(kClientA, echo3) + sync() +
                                 send(kWorkerA, encode(Peer::Worker, Bye{.reason = "stopping"})) +
                                 sync() + answer(kWorkerB) + answer(kWorkerA) + sync()},
      {"session-cancel",
       ready(kWorkerA, {"echo"}) + sync() + submit(kClientA, echo3) +
           submit(kClientB, {.job = 1, .function = "echo", .total = 1, .first = 0, .count = 1}) +
           sync() + send(kClientA, encode(CancelJob{.job = 1})) + answer(kWorkerA) + sync() +
           answer(kWorkerA) + send(kClientB, encode(Peer::Client, Bye{.reason = "done"})) + sync()},
      {"session-unsupported-and-unknown",
       ready(kWorkerA, {"echo"}) + ready(kWorkerB, {"sleep"}) + sync() +
           submit(kClientA, {.job = 3, .function = "sleep", .total = 2, .first = 0, .count = 2}) +
           submit(kClientB, {.job = 4, .function = "nope", .total = 1, .first = 0, .count = 1}) +
           sync() + answer(kWorkerB, TaskStatus::Unsupported) + sync() +
           answer(kWorkerB, TaskStatus::TimedOut) + sync()},
      {"session-late-result", ready(kWorkerA, {"echo"}) + sync() + submit(kClientA, echo3) +
                                  sync() +
                                  send(kWorkerA,
                                       encode(TaskResults{.results = {{.job = 1, .index = 0},
                                                                      {.job = 1, .index = 0},
                                                                      {.job = 9, .index = 5}}}),
                                       {"\x01", "\x02", "\x03"}) +
                                  sync() + answer(kWorkerA) + sync()},
      {"session-client-vanishes", ready(kWorkerA, {"echo"}) + sync() + submit(kClientA, echo3) +
                                      sync() + vanish(kClientA) + answer(kWorkerA) + sync() +
                                      submit(kClientA, echo3) + sync() + answer(kWorkerA)},
      {"session-too-large",
       ready(kWorkerA, {"echo"}) + sync() +
           send(kClientA,
                encode(Submit{.job = 1, .function = "echo", .total = 1, .first = 0, .count = 1}),
                {std::string(3000, 'x')}) +
           sync() + submit(kClientA, echo3) + sync() + answer(kWorkerA)},
      // STATUS (draft, §6.1.5): from a stranger, from a client with an open job, filtered by
      // launch, and malformed; none of them opens a session.
      {"session-status",
       send(kClientB, encode(StatusRequest{})) + ready(kWorkerA, {"echo"}) +
           send(kWorkerB, encode(Ready{.functions = {"echo"}, .slots = 1, .launch = "L1"})) +
           sync() + submit(kClientA, echo3) + sync() + send(kClientA, encode(StatusRequest{})) +
           send(kClientB, encode(StatusRequest{.launch = "L1"})) + answer(kWorkerA) +
           answer(kWorkerB) + sync() +
           record(kClientB, Action::Send, join_frames({"ACMEC1", "\x0c", "\x81\xa6launch\x01"})) +
           send(kClientB, encode(StatusRequest{.launch = ""})) + sync()},
  };
}

}  // namespace

int main(int argc, char** argv) {
  const bool checking = argc == 3 && std::string_view(argv[1]) == "--check";
  if (argc != 2 && !checking) {
    std::fprintf(stderr, "usage: acme_broker_corpus_gen [--check] DIR\n");
    return 2;
  }
  try {
    const std::filesystem::path dir(argv[argc - 1]);
    int problems = 0;
    if (!checking) std::filesystem::create_directories(dir);
    for (const auto& [name, input] : seeds()) {
      if (checking) {
        if (acme::fuzz::read_file(dir / name) != input) {
          std::fprintf(stderr, "%s is stale or missing: run acme_broker_corpus_gen %s\n",
                       name.c_str(), dir.c_str());
          ++problems;
        }
        continue;
      }
      std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
      out << input;
      if (!out) throw std::runtime_error("cannot write " + (dir / name).string());
    }
    std::printf("acme_broker_corpus_gen: %s %zu seeds in %s\n", checking ? "checked" : "wrote",
                seeds().size(), dir.c_str());
    return problems == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "acme_broker_corpus_gen: error: %s\n", e.what());
    return 1;
  }
}
