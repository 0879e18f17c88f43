// Real runs: the embedded default (local workers are copies of this test binary, see
// test_main.cpp) and an acme-broker process shared by two clients. Every wait is bounded.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <numeric>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <acme/broker/broker.hpp>
#include <acme/client.hpp>
#include <acme/parallel_map.hpp>

#include "test_support.hpp"

namespace acme {
namespace {

using namespace std::chrono_literals;
using ::testing::AllOf;
using ::testing::HasSubstr;

using Clock = std::chrono::steady_clock;

ClientOptions local(std::uint32_t workers = 2) {
  ClientOptions options;
  options.embedded = true;
  options.local_workers = workers;
  options.no_worker_timeout = 1000ms;
  return options;
}

std::vector<std::int64_t> iota(std::int64_t n) {
  std::vector<std::int64_t> values(static_cast<std::size_t>(n));
  std::iota(values.begin(), values.end(), std::int64_t{0});
  return values;
}

std::string self_exe() {
  return std::filesystem::read_symlink("/proc/self/exe").string();
}

// Children left behind by a test are a bug: every test ends with none.
class ClientTest : public ::testing::Test {
 protected:
  void TearDown() override {
    EXPECT_TRUE(test::wait_until([] { return test::children().empty(); }, 5s))
        << test::children().size() << " child processes left behind";
  }
};

TEST_F(ClientTest, EmbeddedDefaultMatchesSerialFor10000InputsInOrder) {
  Client client(local());
  EXPECT_TRUE(client.embedded());
  EXPECT_EQ(client.local_workers(), 2U);
  const auto xs = iota(10000);
  const auto started = Clock::now();
  const auto squares =
      ParallelMap("square", xs, MapOptions{.client = &client}).compute<std::int64_t>();
  std::vector<std::int64_t> serial;
  for (const auto x : xs) serial.push_back(x * x);
  EXPECT_EQ(squares, serial);
  EXPECT_LT(Clock::now() - started, 60s);
}

TEST_F(ClientTest, MultiCoreTasksGetLocalWorkersWithThatManySlots) {
  // No client given, no broker configured: the map starts local workers of 2 slots each.
  const auto squares =
      ParallelMap("square", iota(6), MapOptions{.cores = 2}).compute<std::int64_t>();
  EXPECT_EQ(squares, (std::vector<std::int64_t>{0, 1, 4, 9, 16, 25}));
}

TEST_F(ClientTest, ScalarsAreBroadcastAndKwReachEveryCall) {
  Client client(local());
  const auto sums =
      ParallelMap("add", std::vector<double>{2, 4, 6, 8}, 4.0, MapOptions{.client = &client})
          .compute<double>();
  EXPECT_EQ(sums, (std::vector<double>{6, 8, 10, 12}));
  const auto scaled = ParallelMap("scale", iota(5), kw("z", 3), MapOptions{.client = &client})
                          .compute<std::int64_t>();
  EXPECT_EQ(scaled, (std::vector<std::int64_t>{0, 3, 6, 9, 12}));
}

TEST_F(ClientTest, FailuresAreCollectedNotThrownOneByOne) {
  Client client(local());
  ParallelMap pmap("fail_odd", iota(20), MapOptions{.client = &client});
  const auto results = pmap.compute();
  ASSERT_EQ(results.size(), 20U);
  std::size_t failed = 0;
  for (std::size_t i = 0; i < results.size(); ++i) {
    EXPECT_EQ(results[i].index(), i);
    if (i % 2 == 0) {
      ASSERT_TRUE(results[i].ok()) << results[i].error().message;
      EXPECT_EQ(results[i].as<std::int64_t>(), static_cast<std::int64_t>(i));
    } else {
      ASSERT_FALSE(results[i].ok());
      EXPECT_THAT(results[i].error().message, HasSubstr("odd input " + std::to_string(i)));
      EXPECT_GE(results[i].error().attempts, 1U);
      ++failed;
    }
  }
  EXPECT_EQ(failed, 10U);

  try {
    static_cast<void>(
        ParallelMap("fail_odd", iota(20), MapOptions{.client = &client}).compute<std::int64_t>());
    FAIL() << "no MapError";
  } catch (const MapError& e) {
    EXPECT_EQ(e.code(), Errc::TaskFailed);
    EXPECT_EQ(e.failures().size(), 10U);
    EXPECT_THAT(std::string(e.what()),
                AllOf(HasSubstr("10 of 20"), HasSubstr("input 1: odd input 1"),
                      HasSubstr("input 3: odd input 3"), HasSubstr("and 5 more")));
  }
}

TEST_F(ClientTest, UnknownFunctionFailsClearlyWithinTheNoWorkerTimeout) {
  Client client(local(1));
  const auto started = Clock::now();
  try {
    static_cast<void>(
        ParallelMap("no_such_function", iota(3), MapOptions{.client = &client}).compute());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::UnknownFunction);
    EXPECT_THAT(std::string(e.what()), HasSubstr("no worker offers function 'no_such_function'"));
  }
  EXPECT_LT(Clock::now() - started, 15s);
}

TEST_F(ClientTest, AKillerTaskIsPoisonedAndDeadWorkersAreReplaced) {
  ClientOptions options = local(2);
  options.heartbeat_interval = 200ms;  // a dead worker is noticed after 0.6 s
  Client client(options);
  const auto results =
      ParallelMap("die_on_3", iota(8), MapOptions{.client = &client, .max_retries = 2}).compute();
  ASSERT_EQ(results.size(), 8U);
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (i == 3) {
      ASSERT_FALSE(results[i].ok());
      EXPECT_EQ(results[i].error().kind, "Poisoned");
    } else {
      ASSERT_TRUE(results[i].ok()) << i << ": " << results[i].error().message;
    }
  }
  // The pool is whole again: a later map runs on replaced workers.
  EXPECT_EQ(ParallelMap("square", iota(4), MapOptions{.client = &client}).compute<std::int64_t>(),
            (std::vector<std::int64_t>{0, 1, 4, 9}));
}

TEST_F(ClientTest, StreamingCallbackSeesEveryIndexOnce) {
  ClientOptions options = local();
  options.max_in_flight = 64;  // forces many windows and chunks
  Client client(options);
  std::vector<int> seen(3000, 0);
  std::int64_t sum = 0;
  ParallelMap("square", iota(3000), MapOptions{.client = &client})
      .for_each([&](TaskResult&& result) {
        ASSERT_TRUE(result.ok());
        ++seen.at(result.index());
        sum += result.as<std::int64_t>();
      });
  EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));
  std::int64_t expected = 0;
  for (std::int64_t x = 0; x < 3000; ++x) expected += x * x;
  EXPECT_EQ(sum, expected);
}

TEST_F(ClientTest, StreamIteratorAndEarlyCancel) {
  Client client(local());
  {
    ParallelMap pmap("nap", std::vector<std::int64_t>(200, 20), MapOptions{.client = &client});
    auto stream = pmap.stream();
    int read = 0;
    for (auto& result : stream) {
      EXPECT_TRUE(result.ok());
      if (++read == 3) break;
    }
  }  // the stream is cancelled here; the client stays usable
  EXPECT_EQ(
      ParallelMap("square", iota(10), MapOptions{.client = &client}).compute<std::int64_t>().at(9),
      81);
}

TEST_F(ClientTest, DryRunRunsTheFirstInputThenTheMap) {
  Client client(local());
  testing::internal::CaptureStderr();
  const auto squares = ParallelMap("square", iota(4), MapOptions{.client = &client, .dryrun = true})
                           .compute<std::int64_t>();
  const auto err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(squares, (std::vector<std::int64_t>{0, 1, 4, 9}));
  EXPECT_THAT(err, AllOf(HasSubstr("dry run of square()"), HasSubstr("in this process")));
}

TEST_F(ClientTest, UnreachableBrokerThrowsByTheDeadline) {
  ClientOptions options;
  options.broker = "tcp://127.0.0.1:9";  // discard port: nobody speaks ZMTP there
  options.connect_timeout = 500ms;
  const auto started = Clock::now();
  try {
    Client client(options);
    FAIL() << "connected to nothing";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::Unreachable);
    EXPECT_THAT(std::string(e.what()),
                AllOf(HasSubstr("tcp://127.0.0.1:9"), HasSubstr("acme-broker")));
  }
  EXPECT_LT(Clock::now() - started, 3s);
}

#ifdef ACME_BROKER_PATH
// An acme-broker process and two workers that are copies of this binary.
struct ExternalCluster {
  test::Process broker{{ACME_BROKER_PATH, "--bind", "tcp://127.0.0.1:0"}};
  std::string endpoint;
  std::vector<std::unique_ptr<test::Process>> workers;

  explicit ExternalCluster(int n) {
    endpoint = broker.read_line_starting("ACME_BROKER=", 10s).value_or("");
    for (int i = 0; i < n; ++i) {
      workers.push_back(std::make_unique<test::Process>(
          std::vector<std::string>{self_exe()},
          std::map<std::string, std::string>{{"ACME_WORKER_OF", endpoint},
                                             {"ACME_WORKER_SLOTS", "1"}}));
    }
  }
};

TEST_F(ClientTest, ARefusedSubmitDoesNotStallLaterJobs) {
  // The broker refuses the first job's SUBMIT (too large); that SUBMIT used the whole window.
  // A later job must still be sent and run instead of the client waiting forever.
  broker::BrokerOptions broker_options;
  broker_options.endpoint = "tcp://127.0.0.1:0";
  broker_options.max_client_message = 2000;
  broker::BrokerThread broker(broker_options);
  const test::Process worker({self_exe()},
                             {{"ACME_WORKER_OF", broker.endpoint()}, {"ACME_WORKER_SLOTS", "1"}});
  ClientOptions options;
  options.broker = broker.endpoint();
  Client client(options);
  try {
    (void)ParallelMap("square", iota(2000), MapOptions{.client = &client}).compute();
    ADD_FAILURE() << "a SUBMIT larger than the broker's limit was not refused";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("exceeds the broker's limit")) << e.what();
  }
  EXPECT_EQ(ParallelMap("square", iota(3), MapOptions{.client = &client}).compute<std::int64_t>(),
            (std::vector<std::int64_t>{0, 1, 4}));
}

TEST_F(ClientTest, ArgumentsThatFailToPackFailTheJobAndTheClientGoesOn) {
  Client client(local(1));
  JobSpec spec;
  spec.function = "square";
  spec.total = 3;
  spec.task = [](std::uint64_t /*index*/, msgpack::sbuffer& /*frame*/) {
    throw std::runtime_error("cannot pack this input");
  };
  auto stream = client.submit(spec);
  try {
    (void)stream.next();
    ADD_FAILURE() << "a job whose arguments cannot be packed did not fail";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::BadOptions);
    EXPECT_THAT(e.what(), HasSubstr("cannot pack this input"));
  }
  EXPECT_EQ(ParallelMap("square", iota(3), MapOptions{.client = &client}).compute<std::int64_t>(),
            (std::vector<std::int64_t>{0, 1, 4}));
}

TEST_F(ClientTest, TwoClientsShareOneBrokerProcess) {
  ExternalCluster cluster(2);
  ASSERT_FALSE(cluster.endpoint.empty()) << "acme-broker printed no ACME_BROKER= line";
  ClientOptions options;
  options.broker = cluster.endpoint;
  Client first(options);
  Client second(options);
  std::vector<std::int64_t> a;
  std::vector<std::int64_t> b;
  std::thread other([&] {
    b = ParallelMap("scale", iota(500), kw("z", 2), MapOptions{.client = &second})
            .compute<std::int64_t>();
  });
  a = ParallelMap("square", iota(500), MapOptions{.client = &first}).compute<std::int64_t>();
  other.join();
  ASSERT_EQ(a.size(), 500U);
  ASSERT_EQ(b.size(), 500U);
  for (std::int64_t i = 0; i < 500; ++i) {
    EXPECT_EQ(a[static_cast<std::size_t>(i)], i * i);
    EXPECT_EQ(b[static_cast<std::size_t>(i)], 2 * i);
  }
}

TEST_F(ClientTest, BrokerDeathFailsOpenJobsInsteadOfHanging) {
  ExternalCluster cluster(1);
  ASSERT_FALSE(cluster.endpoint.empty());
  ClientOptions options;
  options.broker = cluster.endpoint;
  Client client(options);
  ParallelMap pmap("nap", std::vector<std::int64_t>(100, 100), MapOptions{.client = &client});
  auto stream = pmap.stream();
  ASSERT_TRUE(stream.next().has_value());
  ASSERT_TRUE(cluster.broker.kill_and_wait(SIGKILL, 5s));
  const auto killed = Clock::now();
  try {
    while (stream.next()) {
    }
    FAIL() << "the stream ended without an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::BrokerGone);
    EXPECT_THAT(std::string(e.what()), HasSubstr(cluster.endpoint));
  }
  EXPECT_LT(Clock::now() - killed, 10s);  // 3 x heartbeat (1 s) plus slack
}
#endif

}  // namespace
}  // namespace acme
