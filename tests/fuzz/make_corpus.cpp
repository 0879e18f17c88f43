// Writes the seed inputs of corpus/ (in fuzz_frames.hpp's format): one valid message per command
// per direction, error payloads, and a few malformed messages ("bad-*").
//   acme_fuzz_corpus_gen DIR           writes the seeds
//   acme_fuzz_corpus_gen --check DIR   fails if DIR's seeds are stale or misnamed (a ctest)
#include <cstddef>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <acme/protocol/codec.hpp>

#include "fuzz_frames.hpp"

namespace {

using namespace acme::protocol;
using acme::fuzz::frames_of;

std::vector<std::pair<std::string, std::vector<std::string>>> seeds() {
  const auto failure = encode_error_info({.message = "division by zero",
                                          .kind = "ZeroDivisionError",
                                          .traceback = "  File \"job.py\", line 3",
                                          .host = "node12",
                                          .pid = 4411});
  const std::string header_cancel = encode(CancelJob{.job = 7}).header;
  return {
      // client -> broker
      {"client-submit-common", frames_of(encode(Submit{.job = 7,
                                                       .function = "square",
                                                       .total = 4,
                                                       .first = 0,
                                                       .count = 2,
                                                       .common = true,
                                                       .max_retries = 3,
                                                       .retry_on_error = true,
                                                       .timeout_ms = 1000,
                                                       .cores = 2}),
                                         {"common", "task 0", "task 1"})},
      {"client-submit-next", frames_of(encode(Submit{.job = 7,
                                                     .function = "square",
                                                     .total = 4,
                                                     .first = 2,
                                                     .count = 2,
                                                     .common = false,
                                                     .max_retries = std::nullopt}),
                                       {"task 2", "task 3"})},
      {"client-cancel", frames_of(encode(CancelJob{.job = 7}))},
      {"client-heartbeat", frames_of(encode(Peer::Client, Heartbeat{}))},
      {"client-bye", frames_of(encode(Peer::Client, Bye{.reason = "done"}))},
      {"client-status", frames_of(encode(StatusRequest{.launch = "L1"}))},
      // worker -> broker
      {"worker-ready", frames_of(encode(Ready{.functions = {"square", "cube"},
                                              .slots = 4,
                                              .prefetch = 2,
                                              .host = "node12",
                                              .pid = 4411,
                                              .cores = 8,
                                              .memory = 1U << 30,
                                              .agent = "acme-worker 0.1.0",
                                              .launch = "L1"}))},
      {"worker-results",
       frames_of(
           encode(TaskResults{.results = {{.job = 7, .index = 0, .status = TaskStatus::Ok},
                                          {.job = 7, .index = 1, .status = TaskStatus::Failed}}}),
           {"0", failure})},
      {"worker-heartbeat", frames_of(encode(Peer::Worker, Heartbeat{}))},
      {"worker-bye", frames_of(encode(Peer::Worker, Bye{}))},
      // broker -> client
      {"broker-accept",
       frames_of(encode(Accept{.job = 7, .received = 2, .window = 64, .heartbeat_ms = 500}))},
      {"broker-client-results",
       frames_of(encode(JobResults{
                     .job = 7,
                     .results = {{.index = 0, .status = TaskStatus::Ok, .attempts = 1},
                                 {.index = 1, .status = TaskStatus::Failed, .attempts = 2}}}),
                 {"0", failure})},
      {"broker-done", frames_of(encode(Done{.job = 7, .ok = 3, .failed = 1, .cancelled = true}))},
      {"broker-error",
       frames_of(encode(Error{
           .code = ErrorCode::NoSuchFunction, .message = "no worker offers cube", .job = 8}))},
      {"broker-heartbeat", frames_of(encode(Peer::Broker, Heartbeat{}))},
      {"broker-bye", frames_of(encode(Peer::Broker, Bye{.reason = "restart", .reconnect = true}))},
      {"broker-status", frames_of(encode(StatusReply{.agent = "acme-broker 0.1.0",
                                                     .uptime_ms = 60000,
                                                     .clients = 1,
                                                     .jobs = 1,
                                                     .tasks_queued = 5,
                                                     .tasks_running = 2,
                                                     .tasks_done = 10,
                                                     .tasks_failed = 1,
                                                     .workers = {{.id = 0,
                                                                  .host = "node12",
                                                                  .pid = 4411,
                                                                  .slots = 2,
                                                                  .running = 2,
                                                                  .launch = "L1",
                                                                  .functions = 5}},
                                                     .workers_omitted = 0}))},
      // broker -> worker
      {"broker-welcome",
       frames_of(encode(Welcome{.worker = 3, .heartbeat_ms = 1000, .liveness = 3}))},
      {"broker-tasks",
       frames_of(encode(Tasks{.job = 7,
                              .function = "square",
                              .common = true,
                              .timeout_ms = 1000,
                              .cores = 2,
                              .tasks = {{.index = 0, .attempt = 1}, {.index = 1, .attempt = 2}}}),
                 {"common", "task 0", "task 1"})},
      {"broker-cancel", frames_of(encode(CancelTasks{.job = 7, .tasks = {0, 1}}))},
      // error payloads alone
      {"error-info", {failure}},
      // malformed
      {"bad-too-few-frames", {"ACMEC1", "\x03"}},
      {"bad-version", {"ACMEC2", "\x03", "\x80"}},
      {"bad-signature", {"MDPC01", "\x03", "\x80"}},
      {"bad-command", {"ACMEC1", "\x0d", "\x80"}},
      {"bad-not-allowed", {"ACMEC1", "\x0a", "\x80"}},
      {"bad-truncated-header",
       {"ACMEC1", "\x02", header_cancel.substr(0, header_cancel.size() - 1)}},
      {"bad-trailing-bytes", {"ACMEC1", "\x02", header_cancel + '\0'}},
      {"bad-duplicate-key", {"ACMEC1", "\x02", std::string("\x82\xa3job\x07\xa3job\x08", 11)}},
      {"bad-hostile-array", {"ACMEC1", "\x02", std::string("\x81\xa3job\xdd\xff\xff\xff\xff", 10)}},
      {"bad-payload-count", frames_of(encode(CancelJob{.job = 7}), {"extra"})},
      {"bad-negative", {"ACMEC1", "\x02", std::string("\x81\xa3job\xff", 6)}},
  };
}

/// Whether some decoder accepts the message (or, for a lone frame, decode_error_info does).
bool decodes(const std::string& input) {
  const auto frames = acme::fuzz::split_frames(std::as_bytes(std::span(input)));
  if (frames.size() == 1) return decode_error_info(frames[0]).has_value();
  return decode_client(frames).has_value() || decode_worker(frames).has_value() ||
         decode_for_client(frames).has_value() || decode_for_worker(frames).has_value();
}

/// --check: the seeds in `dir` are what this program writes, the valid ones decode and the
/// "bad-" ones do not.
int check(const std::filesystem::path& dir) {
  int problems = 0;
  for (const auto& [name, frames] : seeds()) {
    const auto input = acme::fuzz::join_frames(frames);
    if (acme::fuzz::read_file(dir / name) != input) {
      std::fprintf(stderr, "%s is stale or missing: run acme_fuzz_corpus_gen %s\n", name.c_str(),
                   dir.c_str());
      ++problems;
    }
    if (decodes(input) == name.starts_with("bad-")) {
      std::fprintf(stderr, "%s: expected %s\n", name.c_str(),
                   name.starts_with("bad-") ? "a rejection" : "a valid message");
      ++problems;
    }
  }
  std::printf("acme_fuzz_corpus_gen: %d problems in %s\n", problems, dir.c_str());
  return problems == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const bool checking = argc == 3 && std::string_view(argv[1]) == "--check";
  if (argc != 2 && !checking) {
    std::fprintf(stderr, "usage: acme_fuzz_corpus_gen [--check] DIR\n");
    return 2;
  }
  try {
    const std::filesystem::path dir(argv[argc - 1]);
    if (checking) return check(dir);
    std::filesystem::create_directories(dir);
    std::size_t written = 0;
    for (const auto& [name, frames] : seeds()) {
      std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
      out << acme::fuzz::join_frames(frames);
      if (!out) throw std::runtime_error("cannot write " + (dir / name).string());
      ++written;
    }
    std::printf("acme_fuzz_corpus_gen: wrote %zu seeds to %s\n", written, dir.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "acme_fuzz_corpus_gen: error: %s\n", e.what());
    return 1;
  }
}
