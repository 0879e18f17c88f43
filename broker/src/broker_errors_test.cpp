// Broken and refused input (PROTOCOL.md §6.1.1, §11, §12): clients get ERROR with the right
// code, broken workers are dropped or refused, and the broker keeps serving.
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "test_peer.hpp"

namespace acme::broker::test {
namespace {

using protocol::Accept;
using protocol::Bye;
using protocol::Error;
using protocol::ErrorCode;
using protocol::Ready;
using protocol::Tasks;
using ::testing::HasSubstr;

const std::string kClient = "ACMEC1";
const std::string kWorker = "ACMEW1";
const std::string kEmptyMap = "\x80";

TEST(BrokerErrors, BrokenClientMessagesGetErrorAndTheBrokerGoesOn) {
  TestCluster cluster;
  auto client = cluster.client();
  const auto error_for = [&](const std::vector<std::string>& frames) {
    client->send_raw(frames);
    return client->expect<Error>();
  };

  auto error = error_for({kClient, "\x01"});
  EXPECT_EQ(error.code, ErrorCode::Malformed);  // too few frames
  EXPECT_FALSE(error.job.has_value());

  error = error_for({"ACMEC2", "\x03", kEmptyMap});
  EXPECT_EQ(error.code, ErrorCode::VersionMismatch);
  EXPECT_EQ(error.message, "protocol version mismatch: peer speaks 2, broker speaks 1");

  EXPECT_EQ(error_for({kClient, "\x42", kEmptyMap}).code, ErrorCode::UnknownCommand);
  EXPECT_EQ(error_for({kClient, "\x05", kEmptyMap}).code, ErrorCode::UnknownCommand);  // READY
  EXPECT_EQ(error_for({kClient, "\x01", "\xc1"}).code, ErrorCode::Malformed);
  EXPECT_EQ(error_for({kClient, "\x03", std::string(70000, '\x80')}).code, ErrorCode::TooLarge);

  // A header that can be read names its job, even when the message is refused.
  const auto submit = protocol::encode(submit_all(5, "f", 2));
  error = error_for({kClient, "\x01", submit.header, "only one task frame"});
  EXPECT_EQ(error.code, ErrorCode::Malformed);
  EXPECT_EQ(error.job, 5U);

  // No acme signature, or a broker's: dropped without a reply.
  client->send_raw({"hello", "\x03", kEmptyMap});
  client->send_raw({"ACMEB1", "\x03", kEmptyMap});
  client->send_raw({"ACMEX1", "\x03", kEmptyMap});
  EXPECT_TRUE(client->quiet_for(100ms));

  client->send(submit, task_payloads(0, 2));
  EXPECT_EQ(client->expect<Accept>().received, 2U);
  EXPECT_GE(cluster.broker.broker().stats().messages_rejected, 10U);
}

TEST(BrokerErrors, SubmitOutOfOrderIsABadRequest) {
  TestCluster cluster;
  auto client = cluster.client();
  auto submit = submit_all(1, "f", 4);
  submit.count = 2;
  submit.first = 2;  // a job that is not open
  client->send(protocol::encode(submit), task_payloads(2, 2));
  auto error = client->expect<Error>();
  EXPECT_EQ(error.code, ErrorCode::BadRequest);
  EXPECT_EQ(error.job, 1U);

  submit.first = 0;
  client->send(protocol::encode(submit), task_payloads(0, 2));
  client->expect<Accept>();
  client->send(protocol::encode(submit), task_payloads(0, 2));  // first == 0 again
  EXPECT_THAT(client->expect<Error>().message, HasSubstr("already open"));
  submit.first = 2;
  submit.function = "g";
  client->send(protocol::encode(submit), task_payloads(2, 2));
  EXPECT_EQ(client->expect<Error>().code, ErrorCode::BadRequest);
  submit.function = "f";
  client->send(protocol::encode(submit), task_payloads(2, 2));
  EXPECT_EQ(client->expect<Accept>().received, 4U);
}

TEST(BrokerErrors, SubmitOrCancelRightAfterCancelIsABadRequest) {
  // A CANCEL and a SUBMIT (or a second CANCEL) of the same job sent back to back reach the
  // broker in one batch; the job is closed by then and both are refused, never a crash.
  TestCluster cluster;
  auto client = cluster.client();
  auto submit = submit_all(4, "f", 4);
  submit.count = 2;
  client->send(protocol::encode(submit), task_payloads(0, 2));
  client->expect<Accept>();
  submit.first = 2;
  client->send(protocol::encode(protocol::CancelJob{.job = 4}));
  client->send(protocol::encode(submit), task_payloads(2, 2));
  client->send(protocol::encode(protocol::CancelJob{.job = 4}));
  std::vector<ErrorCode> errors;
  while (auto message = client->next(1s)) {
    if (const auto* error = std::get_if<Error>(&message->command)) errors.push_back(error->code);
  }
  EXPECT_EQ(errors, (std::vector<ErrorCode>{ErrorCode::BadRequest, ErrorCode::BadRequest}));
  // The broker still serves.
  client->send(protocol::encode(submit_all(5, "f", 1)), task_payloads(0, 1));
  EXPECT_EQ(client->expect<Accept>().received, 1U);
}

TEST(BrokerErrors, ClientMessagesOverTheSizeLimitAreTooLarge) {
  auto options = test_options();
  options.max_client_message = 1000;
  TestCluster cluster(options);
  auto client = cluster.client();
  client->send(protocol::encode(submit_all(3, "f", 1)), {std::string(2000, 'x')});
  const auto error = client->expect<Error>();
  EXPECT_EQ(error.code, ErrorCode::TooLarge);
  EXPECT_EQ(error.job, 3U);
}

TEST(BrokerErrors, BrokenWorkersAreRefusedOrIgnored) {
  TestCluster cluster;
  // §12: another version is refused for good, naming both versions.
  auto future = cluster.worker();
  future->send_raw({"ACMEW2", "\x05", kEmptyMap});
  const auto refusal = future->expect<Bye>();
  EXPECT_FALSE(refusal.reconnect);
  EXPECT_THAT(refusal.reason, HasSubstr("peer speaks 2, broker speaks 1"));

  // §11: a READY that does not decode is refused too.
  auto broken = cluster.worker();
  broken->send_raw({kWorker, "\x05", kEmptyMap});
  const auto malformed = broken->expect<Bye>();
  EXPECT_FALSE(malformed.reconnect);
  EXPECT_THAT(malformed.reason, HasSubstr("malformed READY"));

  // Any other broken worker message is dropped; the worker goes on.
  auto worker = cluster.ready_worker(Ready{.functions = {"f"}, .slots = 1});
  worker->send_raw({kWorker, "\x06", "\xc1"});
  worker->send_raw({kWorker, "\x06"});
  worker->send_raw({kWorker, "\x01", kEmptyMap});  // SUBMIT from a worker
  worker->send_raw({kClient, "\x03", kEmptyMap});  // a client message from a worker's identity
  EXPECT_TRUE(worker->quiet_for(100ms));
  auto client = cluster.client();
  client->send(protocol::encode(submit_all(1, "f", 1)), task_payloads(0, 1));
  client->expect<Accept>();
  const auto tasks = worker->expect<Tasks>();
  answer(*worker, tasks.job, {0});
  EXPECT_EQ(client->expect<protocol::JobResults>().results.size(), 1U);
}

}  // namespace
}  // namespace acme::broker::test
