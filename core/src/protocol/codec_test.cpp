// Round trips of every command of PROTOCOL.md §6 in its direction, of error payloads (§6.5)
// and of signatures (§5.2), plus the names used in logs.
#include <cstdint>
#include <limits>
#include <set>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <msgpack.hpp>

#include <acme/protocol/codec.hpp>
#include <acme/protocol/commands.hpp>
#include <acme/protocol/version.hpp>

#include "codec_harness.hpp"

namespace acme::protocol {
namespace {

using test::Frames;
using ::testing::ElementsAre;

/// The decoded payload views the caller's frames 3.. and copies none of them.
void expect_payload_views(std::span<const Frame> payload, std::span<const Frame> frames) {
  ASSERT_EQ(payload.size(), frames.size() - 3);
  EXPECT_EQ(payload.data(), frames.data() + 3);
  for (std::size_t i = 0; i < payload.size(); ++i) {
    EXPECT_EQ(payload[i].data(), frames[3 + i].data());
    EXPECT_EQ(payload[i].size(), frames[3 + i].size());
  }
}

/// Encodes `command`, adds `payloads` payload frames, decodes with `decode`, and checks that
/// the same command comes back with views of the same payload frames.
template <class C, class Decode>
void expect_round_trip(const Encoded& encoded, const C& command, std::size_t payloads,
                       Decode decode) {
  auto message = Frames::of(encoded, payloads);
  const auto frames = message.frames();
  const auto decoded = decode(frames);
  ASSERT_TRUE(decoded) << describe(decoded.error());
  ASSERT_TRUE(std::holds_alternative<C>(decoded->command));
  EXPECT_EQ(std::get<C>(decoded->command), command);
  expect_payload_views(decoded->payload, frames);
}

/// The keys of an encoded header, in order.
std::vector<std::string> keys_of(const std::string& header) {
  const auto handle = msgpack::unpack(header.data(), header.size());
  const auto& map = handle.get().via.map;
  std::vector<std::string> keys;
  for (const auto& entry : std::span(map.ptr, map.size))
    keys.push_back(entry.key.as<std::string>());
  return keys;
}

// ---- §6.1: client to broker ----

TEST(CodecRoundTrip, Submit) {
  const Submit submit{.job = 7,
                      .function = "square",
                      .total = 10,
                      .first = 0,
                      .count = 3,
                      .common = true,
                      .max_retries = 2,
                      .retry_on_error = true,
                      .timeout_ms = 5000,
                      .cores = 2};
  const auto encoded = encode(submit);
  EXPECT_EQ(encoded.signature, "ACMEC1");
  EXPECT_EQ(encoded.command, Command::Submit);
  expect_round_trip(encoded, submit, 4, decode_client);  // the common frame and 3 tasks
}

TEST(CodecRoundTrip, SubmitWithDefaultsAndLargestValues) {
  Submit submit;
  submit.job = std::numeric_limits<std::uint64_t>::max();
  submit.function = std::string(kMaxFunctionName, 'f');
  submit.total = std::numeric_limits<std::uint64_t>::max();
  submit.first = std::numeric_limits<std::uint64_t>::max() - 5;
  submit.count = 5;
  expect_round_trip(encode(submit), submit, 5, decode_client);
}

TEST(CodecRoundTrip, CancelJob) {
  const CancelJob cancel{.job = 42};
  const auto encoded = encode(cancel);
  EXPECT_EQ(encoded.command, Command::Cancel);
  expect_round_trip(encoded, cancel, 0, decode_client);
}

TEST(CodecRoundTrip, HeartbeatFromEachPeer) {
  expect_round_trip(encode(Peer::Client, Heartbeat{}), Heartbeat{}, 0, decode_client);
  expect_round_trip(encode(Peer::Worker, Heartbeat{}), Heartbeat{}, 0, decode_worker);
  expect_round_trip(encode(Peer::Broker, Heartbeat{}), Heartbeat{}, 0, decode_for_client);
  expect_round_trip(encode(Peer::Broker, Heartbeat{}), Heartbeat{}, 0, decode_for_worker);
}

TEST(CodecRoundTrip, ByeFromEachPeer) {
  const Bye bye{.reason = "maintenance", .reconnect = true};
  expect_round_trip(encode(Peer::Client, bye), bye, 0, decode_client);
  expect_round_trip(encode(Peer::Worker, bye), bye, 0, decode_worker);
  expect_round_trip(encode(Peer::Broker, bye), bye, 0, decode_for_client);
  expect_round_trip(encode(Peer::Broker, Bye{}), Bye{}, 0, decode_for_worker);
}

TEST(CodecRoundTrip, StatusRequest) {
  const StatusRequest all{};
  const auto encoded = encode(all);
  EXPECT_EQ(encoded.signature, "ACMEC1");
  EXPECT_EQ(encoded.command, Command::Status);
  EXPECT_EQ(encoded.header, "\x80");  // §6.1.5: the header may be empty
  expect_round_trip(encoded, all, 0, decode_client);
  expect_round_trip(encode(StatusRequest{.launch = "L1"}), StatusRequest{.launch = "L1"}, 0,
                    decode_client);
  // An empty launch asks for the untagged workers: it is not the same as no launch.
  expect_round_trip(encode(StatusRequest{.launch = ""}), StatusRequest{.launch = ""}, 0,
                    decode_client);
}

// ---- §6.2: broker to client ----

TEST(CodecRoundTrip, Accept) {
  const Accept accept{.job = 7, .received = 1000, .window = 256, .heartbeat_ms = 2500};
  const auto encoded = encode(accept);
  EXPECT_EQ(encoded.signature, "ACMEB1");
  EXPECT_EQ(encoded.command, Command::Accept);
  expect_round_trip(encoded, accept, 0, decode_for_client);
}

TEST(CodecRoundTrip, JobResults) {
  const JobResults results{.job = 7,
                           .results = {{.index = 0, .status = TaskStatus::Ok, .attempts = 1},
                                       {.index = 1, .status = TaskStatus::Failed, .attempts = 2},
                                       {.index = 2, .status = TaskStatus::TimedOut, .attempts = 1},
                                       {.index = 3, .status = TaskStatus::Poisoned, .attempts = 3},
                                       {.index = 4, .status = TaskStatus::Unsupported},
                                       {.index = 5, .status = TaskStatus::Cancelled}}};
  const auto encoded = encode(results);
  EXPECT_EQ(encoded.command, Command::Results);
  expect_round_trip(encoded, results, 6, decode_for_client);
}

TEST(CodecRoundTrip, Done) {
  const Done done{.job = 7, .ok = 9, .failed = 1, .cancelled = true};
  const auto encoded = encode(done);
  EXPECT_EQ(encoded.command, Command::Done);
  expect_round_trip(encoded, done, 0, decode_for_client);
}

TEST(CodecRoundTrip, Error) {
  const Error error{
      .code = ErrorCode::NoSuchFunction, .message = "no worker offers cube", .job = 7};
  const auto encoded = encode(error);
  EXPECT_EQ(encoded.command, Command::Error);
  expect_round_trip(encoded, error, 0, decode_for_client);
}

TEST(CodecRoundTrip, ErrorWithoutJobAndWithAnUnknownCode) {
  const Error error{.code = static_cast<ErrorCode>(999), .message = "", .job = std::nullopt};
  expect_round_trip(encode(error), error, 0, decode_for_client);
}

TEST(CodecRoundTrip, StatusReply) {
  const StatusReply reply{.agent = "acme-broker 0.1.0",
                          .uptime_ms = 123456,
                          .clients = 2,
                          .jobs = 3,
                          .tasks_queued = 10,
                          .tasks_running = 4,
                          .tasks_done = std::numeric_limits<std::uint64_t>::max(),
                          .tasks_failed = 1,
                          .workers = {{.id = 0,
                                       .host = "node12",
                                       .pid = 4411,
                                       .slots = 8,
                                       .running = 3,
                                       .launch = "L1",
                                       .functions = 5},
                                      {.id = std::numeric_limits<std::uint32_t>::max(),
                                       .host = "",
                                       .pid = 0,
                                       .slots = 1,
                                       .running = 0,
                                       .launch = "",
                                       .functions = 0}},
                          .workers_omitted = 7};
  const auto encoded = encode(reply);
  EXPECT_EQ(encoded.signature, "ACMEB1");
  EXPECT_EQ(encoded.command, Command::Status);
  expect_round_trip(encoded, reply, 0, decode_for_client);
}

TEST(CodecRoundTrip, StatusReplyWithNoWorkers) {
  const StatusReply reply{.agent = "acme-broker 0.1.0", .uptime_ms = 1};
  expect_round_trip(encode(reply), reply, 0, decode_for_client);
}

// ---- §6.3: worker to broker ----

TEST(CodecRoundTrip, Ready) {
  const Ready ready{.functions = {"square", "cube", std::string(kMaxFunctionName, 'x')},
                    .slots = 16,
                    .prefetch = 4,
                    .host = "node12",
                    .pid = 4411,
                    .cores = 32,
                    .memory = std::uint64_t{64} << 30,
                    .agent = "acme-worker 0.1.0"};
  const auto encoded = encode(ready);
  EXPECT_EQ(encoded.signature, "ACMEW1");
  EXPECT_EQ(encoded.command, Command::Ready);
  expect_round_trip(encoded, ready, 0, decode_worker);
}

TEST(CodecRoundTrip, ReadyWithLaunch) {
  const Ready ready{.functions = {"square"}, .slots = 2, .launch = "launch-2024-01-02-abcd"};
  expect_round_trip(encode(ready), ready, 0, decode_worker);
}

TEST(CodecRoundTrip, ReadyWithNoFunctions) {
  Ready ready;
  ready.slots = 1;
  expect_round_trip(encode(ready), ready, 0, decode_worker);
}

TEST(CodecRoundTrip, TaskResults) {
  const TaskResults results{.results = {{.job = 7, .index = 0, .status = TaskStatus::Ok},
                                        {.job = 8, .index = 1, .status = TaskStatus::Failed},
                                        {.job = 7, .index = 2, .status = TaskStatus::Unsupported}}};
  const auto encoded = encode(results);
  EXPECT_EQ(encoded.command, Command::Results);
  expect_round_trip(encoded, results, 3, decode_worker);
}

// ---- §6.4: broker to worker ----

TEST(CodecRoundTrip, Welcome) {
  const Welcome welcome{.worker = 3, .heartbeat_ms = 500, .liveness = 5};
  const auto encoded = encode(welcome);
  EXPECT_EQ(encoded.command, Command::Welcome);
  expect_round_trip(encoded, welcome, 0, decode_for_worker);
}

TEST(CodecRoundTrip, Tasks) {
  const Tasks tasks{.job = 7,
                    .function = "square",
                    .common = true,
                    .timeout_ms = 60000,
                    .cores = 4,
                    .tasks = {{.index = 0, .attempt = 1}, {.index = 9, .attempt = 3}}};
  const auto encoded = encode(tasks);
  EXPECT_EQ(encoded.command, Command::Tasks);
  expect_round_trip(encoded, tasks, 3, decode_for_worker);  // the common frame and 2 tasks
}

TEST(CodecRoundTrip, CancelTasks) {
  const CancelTasks cancel{.job = 7, .tasks = {3, 4, std::numeric_limits<std::uint64_t>::max()}};
  const auto encoded = encode(cancel);
  EXPECT_EQ(encoded.command, Command::Cancel);
  expect_round_trip(encoded, cancel, 0, decode_for_worker);
  expect_round_trip(encode(CancelTasks{.job = 7, .tasks = {}}), CancelTasks{.job = 7, .tasks = {}},
                    0, decode_for_worker);
}

// ---- What the encoder writes ----

TEST(Encode, HeartbeatHeaderIsAnEmptyMap) {
  EXPECT_EQ(encode(Peer::Worker, Heartbeat{}).header, "\x80");
}

TEST(Encode, NumbersUseTheSmallestMsgpackForm) {
  EXPECT_EQ(encode(CancelJob{.job = 7}).header, std::string("\x81\xa3job\x07"));
  EXPECT_EQ(encode(CancelJob{.job = 300}).header, std::string("\x81\xa3job\xcd\x01\x2c"));
}

TEST(Encode, HeadersUseTheFieldNamesOfCommandsHpp) {
  Submit with_retries;
  with_retries.max_retries = 1;
  EXPECT_THAT(keys_of(encode(with_retries).header),
              ElementsAre("job", "function", "total", "first", "count", "common", "max_retries",
                          "retry_on_error", "timeout_ms", "cores"));
  EXPECT_THAT(keys_of(encode(Submit{}).header),
              ElementsAre("job", "function", "total", "first", "count", "common", "retry_on_error",
                          "timeout_ms", "cores"));
  EXPECT_THAT(keys_of(encode(Peer::Client, Bye{}).header), ElementsAre("reason", "reconnect"));
  EXPECT_THAT(keys_of(encode(Accept{}).header),
              ElementsAre("job", "received", "window", "heartbeat_ms"));
  EXPECT_THAT(keys_of(encode(JobResults{}).header), ElementsAre("job", "results"));
  EXPECT_THAT(keys_of(encode(Done{}).header), ElementsAre("job", "ok", "failed", "cancelled"));
  Error with_job;
  with_job.job = 1;
  EXPECT_THAT(keys_of(encode(with_job).header), ElementsAre("code", "message", "job"));
  EXPECT_THAT(keys_of(encode(Error{}).header), ElementsAre("code", "message"));
  EXPECT_THAT(keys_of(encode(Ready{}).header), ElementsAre("functions", "slots", "prefetch", "host",
                                                           "pid", "cores", "memory", "agent"));
  EXPECT_THAT(keys_of(encode(Ready{.launch = "L1"}).header),
              ElementsAre("functions", "slots", "prefetch", "host", "pid", "cores", "memory",
                          "agent", "launch"));
  EXPECT_THAT(keys_of(encode(TaskResults{}).header), ElementsAre("results"));
  EXPECT_THAT(keys_of(encode(Welcome{}).header), ElementsAre("worker", "heartbeat_ms", "liveness"));
  EXPECT_THAT(keys_of(encode(Tasks{}).header),
              ElementsAre("job", "function", "common", "timeout_ms", "cores", "tasks"));
  EXPECT_THAT(keys_of(encode(CancelTasks{}).header), ElementsAre("job", "tasks"));
  EXPECT_THAT(keys_of(encode(StatusRequest{}).header), ElementsAre());
  EXPECT_THAT(keys_of(encode(StatusRequest{.launch = "L1"}).header), ElementsAre("launch"));
  EXPECT_THAT(keys_of(encode(StatusReply{.workers = {WorkerInfo{}}}).header),
              ElementsAre("agent", "uptime_ms", "clients", "jobs", "tasks_queued", "tasks_running",
                          "tasks_done", "tasks_failed", "workers", "workers_omitted"));
  EXPECT_THAT(keys_of(encode_error_info(ErrorInfo{})),
              ElementsAre("message", "kind", "traceback", "host", "pid"));
}

TEST(Encode, CommandByteIsTheCommand) {
  EXPECT_EQ(encode(Welcome{}).command_byte(), std::byte{0x0A});
  EXPECT_EQ(encode(StatusRequest{}).command_byte(), std::byte{0x0C});
  EXPECT_EQ(encode(StatusReply{}).command_byte(), std::byte{0x0C});
}

// ---- §6.5: error payloads ----

TEST(ErrorInfoRoundTrip, AllFields) {
  const ErrorInfo info{.message = "division by zero",
                       .kind = "ZeroDivisionError",
                       .traceback = "Traceback (most recent call last):\n  ...",
                       .host = "node12",
                       .pid = 4411};
  const auto decoded = decode_error_info(as_frame(encode_error_info(info)));
  ASSERT_TRUE(decoded) << describe(decoded.error());
  EXPECT_EQ(*decoded, info);
}

TEST(ErrorInfoRoundTrip, TracebackLargerThanTheHeaderLimit) {
  // A payload frame, not a header: kMaxHeaderBytes does not apply.
  const ErrorInfo info{.message = "boom",
                       .kind = "",
                       .traceback = std::string(kMaxHeaderBytes * 2, 't'),
                       .host = "",
                       .pid = 0};
  const auto decoded = decode_error_info(as_frame(encode_error_info(info)));
  ASSERT_TRUE(decoded) << describe(decoded.error());
  EXPECT_EQ(*decoded, info);
}

// ---- §5.2: signatures ----

TEST(SignatureRoundTrip, EachPeer) {
  for (const Peer peer : {Peer::Client, Peer::Worker, Peer::Broker}) {
    const auto decoded = decode_signature(as_frame(signature(peer)));
    ASSERT_TRUE(decoded) << describe(decoded.error());
    EXPECT_EQ(decoded->peer, peer);
    EXPECT_EQ(decoded->version, kVersion);
  }
}

TEST(SignatureRoundTrip, VersionOneFramesAreExactlyTheSpecOnes) {
  EXPECT_EQ(signature(Peer::Client), "ACMEC1");
  EXPECT_EQ(signature(Peer::Worker), "ACMEW1");
  EXPECT_EQ(signature(Peer::Broker), "ACMEB1");
  // Static storage: Encoded keeps only a view.
  EXPECT_EQ(signature(Peer::Worker).data(), signature(Peer::Worker).data());
  EXPECT_EQ(encode(Peer::Worker, Heartbeat{}).signature.data(), signature(Peer::Worker).data());
}

// ---- Names for logs ----

TEST(Names, Commands) {
  EXPECT_EQ(command_name(Command::Submit), "SUBMIT");
  EXPECT_EQ(command_name(Command::Cancel), "CANCEL");
  EXPECT_EQ(command_name(Command::Heartbeat), "HEARTBEAT");
  EXPECT_EQ(command_name(Command::Bye), "BYE");
  EXPECT_EQ(command_name(Command::Ready), "READY");
  EXPECT_EQ(command_name(Command::Results), "RESULTS");
  EXPECT_EQ(command_name(Command::Accept), "ACCEPT");
  EXPECT_EQ(command_name(Command::Done), "DONE");
  EXPECT_EQ(command_name(Command::Error), "ERROR");
  EXPECT_EQ(command_name(Command::Welcome), "WELCOME");
  EXPECT_EQ(command_name(Command::Tasks), "TASKS");
  EXPECT_EQ(command_name(Command::Status), "STATUS");
  EXPECT_EQ(command_name(static_cast<Command>(0)), "unknown");
  EXPECT_EQ(command_name(static_cast<Command>(0xFF)), "unknown");
}

TEST(Names, Peers) {
  EXPECT_EQ(peer_name(Peer::Client), "client");
  EXPECT_EQ(peer_name(Peer::Worker), "worker");
  EXPECT_EQ(peer_name(Peer::Broker), "broker");
  EXPECT_EQ(peer_name(static_cast<Peer>('X')), "unknown");
}

TEST(Names, TaskStatuses) {
  EXPECT_EQ(status_name(TaskStatus::Ok), "ok");
  EXPECT_EQ(status_name(TaskStatus::Failed), "failed");
  EXPECT_EQ(status_name(TaskStatus::TimedOut), "timed-out");
  EXPECT_EQ(status_name(TaskStatus::Poisoned), "poisoned");
  EXPECT_EQ(status_name(TaskStatus::Unsupported), "unsupported");
  EXPECT_EQ(status_name(TaskStatus::Cancelled), "cancelled");
  EXPECT_EQ(status_name(static_cast<TaskStatus>(kMaxTaskStatus + 1)), "unknown");
}

TEST(Names, ErrorCodes) {
  EXPECT_EQ(error_code_name(ErrorCode::Malformed), "malformed");
  EXPECT_EQ(error_code_name(ErrorCode::VersionMismatch), "version-mismatch");
  EXPECT_EQ(error_code_name(ErrorCode::UnknownCommand), "unknown-command");
  EXPECT_EQ(error_code_name(ErrorCode::BadRequest), "bad-request");
  EXPECT_EQ(error_code_name(ErrorCode::NoSuchFunction), "no-such-function");
  EXPECT_EQ(error_code_name(ErrorCode::TooLarge), "too-large");
  EXPECT_EQ(error_code_name(ErrorCode::ShuttingDown), "shutting-down");
  EXPECT_EQ(error_code_name(ErrorCode::Internal), "internal");
  EXPECT_EQ(error_code_name(static_cast<ErrorCode>(999)), "unknown");
}

TEST(Names, EachDecodeErrorHasItsOwnSentence) {
  std::set<std::string_view> sentences;
  for (int value = 0; value <= static_cast<int>(DecodeError::PayloadCountMismatch); ++value) {
    const auto sentence = describe(static_cast<DecodeError>(value));
    EXPECT_FALSE(sentence.empty());
    EXPECT_EQ(sentence.back(), '.');
    EXPECT_TRUE(sentences.insert(sentence).second) << sentence;
  }
}

}  // namespace
}  // namespace acme::protocol
