// acme::query_status against a real broker (in-process, with in-process and spawned acme-worker
// workers), an endpoint where nobody answers, and fake brokers that refuse. Every wait is bounded.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <zmq.hpp>

#include <acme/broker/broker.hpp>
#include <acme/error.hpp>
#include <acme/net/wire.hpp>
#include <acme/protocol/codec.hpp>
#include <acme/status.hpp>
#include <acme/worker.hpp>

#include "test_support.hpp"

namespace acme {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using Clock = std::chrono::steady_clock;

broker::BrokerOptions loopback() {
  broker::BrokerOptions options;
  options.endpoint = "tcp://127.0.0.1:0";
  return options;
}

/// Polls query_status until `predicate` holds for its answer, or 10 s pass.
BrokerStatus status_when(const std::string& endpoint,
                         const std::function<bool(const BrokerStatus&)>& predicate) {
  BrokerStatus status;
  test::wait_until(
      [&] {
        status = query_status(endpoint, 2s);
        return predicate(status);
      },
      10s);
  return status;
}

TEST(QueryStatus, AnswersFromAFreshBroker) {
  broker::BrokerThread broker(loopback());
  const auto status = query_status(broker.endpoint(), 5s);
  EXPECT_EQ(status.endpoint, broker.endpoint());
  EXPECT_THAT(status.agent, StartsWith("acme-broker "));
  EXPECT_EQ(status.clients, 0U);
  EXPECT_EQ(status.jobs, 0U);
  EXPECT_TRUE(status.workers.empty());
  EXPECT_EQ(status.workers_of(""), 0U);
  // Asking registers nobody: the broker still counts no client.
  EXPECT_EQ(query_status(broker.endpoint(), 5s).clients, 0U);
}

TEST(QueryStatus, SeesTheLaunchTagOfAnEmbeddedWorker) {
  broker::BrokerThread broker(loopback());
  FunctionRegistry registry;
  registry.add("twice", [](std::int64_t x) { return 2 * x; });
  WorkerOptions options;
  options.endpoint = broker.endpoint();
  options.slots = 3;
  options.launch_id = "L1";
  Worker worker(options, registry);
  std::thread serving([&] { (void)worker.run(); });
  const auto status =
      status_when(broker.endpoint(), [](const BrokerStatus& s) { return s.workers_of("L1") == 1; });
  worker.stop();
  serving.join();
  ASSERT_EQ(status.workers.size(), 1U);
  EXPECT_EQ(status.workers_of("L1"), 1U);
  EXPECT_EQ(status.workers_of(""), 0U);
  EXPECT_EQ(status.workers[0].slots, 3U);
  EXPECT_EQ(status.workers[0].functions, 1U);
  EXPECT_EQ(status.workers[0].pid, static_cast<std::uint32_t>(::getpid()));
}

#ifdef ACME_WORKER_PATH
TEST(QueryStatus, SeesTheLaunchIdOfAcmeWorkerFromItsOptionOrEnvironment) {
  broker::BrokerThread broker(loopback());
  test::Process by_option(
      {ACME_WORKER_PATH, "--connect", broker.endpoint(), "--slots", "1", "--launch-id", "L7"}, {},
      {"ACME_LAUNCH_ID"});
  test::Process by_environment({ACME_WORKER_PATH, "--connect", broker.endpoint(), "--slots", "2"},
                               {{"ACME_LAUNCH_ID", "L8"}});
  test::Process option_wins(
      {ACME_WORKER_PATH, "--connect", broker.endpoint(), "--slots", "1", "--launch-id", "L7"},
      {{"ACME_LAUNCH_ID", "L8"}});
  test::Process untagged({ACME_WORKER_PATH, "--connect", broker.endpoint(), "--slots", "1"}, {},
                         {"ACME_LAUNCH_ID"});
  const auto status =
      status_when(broker.endpoint(), [](const BrokerStatus& s) { return s.workers.size() == 4; });
  EXPECT_EQ(status.workers.size(), 4U);
  EXPECT_EQ(status.workers_of("L7"), 2U);
  EXPECT_EQ(status.workers_of("L8"), 1U);
  EXPECT_EQ(status.workers_of(""), 1U);
}
#endif

TEST(QueryStatus, UnreachableEndpointThrowsByTheDeadline) {
  const auto started = Clock::now();
  try {
    (void)query_status("tcp://127.0.0.1:9", 300ms);  // discard port: nobody speaks ZMTP there
    FAIL() << "a status from nowhere";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::Unreachable);
    EXPECT_EQ(std::string(e.what()), "no broker answered at tcp://127.0.0.1:9 within 300 ms");
  }
  const auto took = Clock::now() - started;
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 1300ms);
}

TEST(QueryStatus, InvalidEndpointIsABadOption) {
  try {
    (void)query_status("nonsense", 300ms);
    FAIL() << "connected to nonsense";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::BadOptions);
    EXPECT_THAT(std::string(e.what()), HasSubstr("nonsense"));
  }
}

/// A ROUTER that answers the first message it gets with `reply` (frames after the identity).
class FakeBroker {
 public:
  explicit FakeBroker(std::vector<std::string> reply) : reply_(std::move(reply)) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.bind("tcp://127.0.0.1:0");
    endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
    thread_ = std::thread([this] {
      socket_.set(zmq::sockopt::rcvtimeo, 5000);
      auto request = net::receive(socket_);
      if (!request) return;
      (void)socket_.send(request->parts.front(), zmq::send_flags::sndmore);
      for (std::size_t i = 0; i < reply_.size(); ++i) {
        (void)socket_.send(zmq::buffer(reply_[i]), i + 1 < reply_.size() ? zmq::send_flags::sndmore
                                                                         : zmq::send_flags::none);
      }
    });
  }
  ~FakeBroker() { thread_.join(); }
  FakeBroker(const FakeBroker&) = delete;
  FakeBroker& operator=(const FakeBroker&) = delete;

  [[nodiscard]] const std::string& endpoint() const { return endpoint_; }

 private:
  std::vector<std::string> reply_;
  zmq::context_t context_{1};
  zmq::socket_t socket_{context_, zmq::socket_type::router};
  std::string endpoint_;
  std::thread thread_;
};

Errc refusal_code(std::vector<std::string> reply) {
  FakeBroker fake(std::move(reply));
  try {
    (void)query_status(fake.endpoint(), 5s);
  } catch (const Error& e) {
    return e.code();
  }
  ADD_FAILURE() << "the fake broker's reply was taken for a status";
  return Errc::System;
}

std::vector<std::string> frames_of(const protocol::Encoded& encoded) {
  return {std::string(encoded.signature), std::string(1, static_cast<char>(encoded.command)),
          encoded.header};
}

TEST(QueryStatus, RefusalsMapToTheirErrorCodes) {
  using protocol::ErrorCode;
  const auto error = [](ErrorCode code) {
    return frames_of(protocol::encode(protocol::Error{.code = code, .message = "no"}));
  };
  EXPECT_EQ(refusal_code(error(ErrorCode::VersionMismatch)), Errc::VersionRefused);
  EXPECT_EQ(refusal_code(error(ErrorCode::UnknownCommand)), Errc::Protocol);  // an older broker
  EXPECT_EQ(refusal_code(error(ErrorCode::ShuttingDown)), Errc::Refused);
  EXPECT_EQ(refusal_code(frames_of(
                protocol::encode(protocol::Peer::Broker, protocol::Bye{.reason = "stopping"}))),
            Errc::Refused);
  // A broker of version 2 refuses in its own version (§12).
  auto v2 = error(ErrorCode::VersionMismatch);
  v2[0] = "ACMEB2";
  EXPECT_EQ(refusal_code(v2), Errc::VersionRefused);
  EXPECT_EQ(refusal_code({"ACMEB1", "\x0c", "\xc1"}), Errc::Protocol);
}

}  // namespace
}  // namespace acme
