// Test-only helpers for acme_worker_tests: bounded waits, msgpack packing, running a function
// as the task threads do, a ROUTER socket that plays the broker, and a Worker on a thread.
#pragma once

#include <chrono>
#include <cstdlib>
#include <future>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <gtest/gtest.h>
#include <msgpack.hpp>
#include <zmq.hpp>

#include <acme/error.hpp>
#include <acme/net/wire.hpp>
#include <acme/protocol/codec.hpp>
#include <acme/worker.hpp>

#include "task.hpp"

namespace acme::test {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

/// Polls `predicate` until it holds or `timeout` passes; returns its last value.
template <class P>
bool wait_until(P predicate, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (!predicate()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

/// One msgpack value as bytes.
template <class T>
std::string packed(const T& value) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, value);
  return {buffer.data(), buffer.size()};
}

/// Positional arguments as a task frame.
template <class... A>
std::string args(const A&... values) {
  return packed(std::make_tuple(values...));
}

inline msgpack::object_handle unpacked(const std::string& bytes) {
  return msgpack::unpack(bytes.data(), bytes.size());
}

/// What running a task gave: its status and its result frame.
struct Outcome {
  protocol::TaskStatus status = protocol::TaskStatus::Ok;
  std::string frame{};
  [[nodiscard]] msgpack::object_handle value() const { return unpacked(frame); }
  [[nodiscard]] protocol::ErrorInfo error() const {
    auto info = protocol::decode_error_info(protocol::as_frame(frame));
    if (!info) {
      ADD_FAILURE() << "not an error map";
      return {};
    }
    return *info;
  }
};

/// Runs `name` from `registry` on this thread, exactly as a task thread would.
inline Outcome run(const FunctionRegistry& registry, const std::string& name,
                   const std::string& task_frame, const std::string& common_frame = {},
                   const std::atomic<bool>* cancel_from = nullptr) {
  worker::Task task;
  task.function = std::make_shared<const std::string>(name);
  task.run = registry.find(name);
  if (task.run == nullptr) {
    ADD_FAILURE() << "no function " << name;
    return {};
  }
  task.payload = zmq::message_t(task_frame);
  if (!common_frame.empty()) {
    task.common = std::make_shared<const msgpack::object_handle>(unpacked(common_frame));
  }
  if (cancel_from != nullptr) task.cancelled = cancel_from->load();
  worker::execute(task, {.host = "testhost", .pid = 42});
  return {.status = task.status, .frame = task.result.to_string()};
}

/// A message from the worker, as the fake broker saw it.
struct FromWorker {
  std::string identity{};
  protocol::WorkerCommand command{};
  std::vector<std::string> payload{};
};

/// A ROUTER socket on a free loopback port that plays the broker through the core codec.
class FakeBroker {
 public:
  FakeBroker() : router_(context_, zmq::socket_type::router) {
    router_.set(zmq::sockopt::linger, 0);
    router_.bind("tcp://127.0.0.1:*");
    endpoint_ = router_.get(zmq::sockopt::last_endpoint);
  }

  [[nodiscard]] const std::string& endpoint() const { return endpoint_; }
  [[nodiscard]] int heartbeats() const { return heartbeats_; }

  /// The next message, or nullopt after `timeout`.
  std::optional<FromWorker> receive(std::chrono::milliseconds timeout) {
    std::array items{zmq::pollitem_t{router_.handle(), 0, ZMQ_POLLIN, 0}};
    if (zmq::poll(items.data(), items.size(), timeout) == 0) return std::nullopt;
    auto message = net::receive(router_);
    if (!message) return std::nullopt;
    const auto frames = message->frames(1);
    auto decoded = protocol::decode_worker(frames);
    if (!decoded) {
      ADD_FAILURE() << "the worker sent a bad message: " << protocol::describe(decoded.error());
      return std::nullopt;
    }
    FromWorker got{.identity = message->parts[0].to_string(), .command = decoded->command};
    for (const auto& frame : decoded->payload) {
      got.payload.emplace_back(reinterpret_cast<const char*>(frame.data()),  // NOLINT
                               frame.size());
    }
    return got;
  }

  /// The next message of type C, skipping heartbeats (counted); nullopt after `timeout`, or if
  /// another command comes first (a test failure).
  template <class C>
  std::optional<std::pair<C, FromWorker>> expect(std::chrono::milliseconds timeout = 5s) {
    const auto deadline = Clock::now() + timeout;
    while (true) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left <= 0ms) return std::nullopt;
      auto got = receive(left);
      if (!got) return std::nullopt;
      if (std::holds_alternative<protocol::Heartbeat>(got->command)) {
        ++heartbeats_;
        if constexpr (!std::is_same_v<C, protocol::Heartbeat>) continue;
      }
      if (auto* command = std::get_if<C>(&got->command)) return std::pair{*command, *got};
      ADD_FAILURE() << "unexpected command from the worker (variant index " << got->command.index()
                    << ")";
      return std::nullopt;
    }
  }

  void send(const std::string& identity, const protocol::Encoded& message,
            const std::vector<std::string>& payload = {}) {
    std::vector<zmq::message_t> frames;
    for (const auto& bytes : payload) frames.emplace_back(bytes);
    const zmq::message_t id(identity);
    net::send(router_, message, frames, &id);
  }

  /// Waits for READY and answers WELCOME; returns the worker's identity and its READY.
  std::pair<std::string, protocol::Ready> admit(std::uint32_t heartbeat_ms = 100,
                                                std::uint32_t liveness = 100) {
    auto ready = expect<protocol::Ready>();
    if (!ready) {
      ADD_FAILURE() << "no READY";
      return {};
    }
    send(ready->second.identity,
         protocol::encode(
             protocol::Welcome{.worker = 1, .heartbeat_ms = heartbeat_ms, .liveness = liveness}));
    return {ready->second.identity, ready->first};
  }

  /// Results as they arrive until `count` have come, keyed by (job, index).
  struct Result {
    protocol::TaskStatus status = protocol::TaskStatus::Ok;
    std::string frame{};
  };
  std::map<std::pair<std::uint64_t, std::uint64_t>, Result> results(
      std::size_t count, std::chrono::milliseconds timeout = 10s) {
    std::map<std::pair<std::uint64_t, std::uint64_t>, Result> got;
    const auto deadline = Clock::now() + timeout;
    while (got.size() < count && Clock::now() < deadline) {
      auto message = expect<protocol::TaskResults>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
      if (!message) break;
      ++results_messages_;
      const auto& entries = message->first.results;
      for (std::size_t i = 0; i < entries.size(); ++i) {
        const auto key = std::pair{entries[i].job, entries[i].index};
        EXPECT_EQ(got.count(key), 0U) << "two results for task " << key.second;
        got[key] = {.status = entries[i].status, .frame = message->second.payload[i]};
      }
    }
    EXPECT_EQ(got.size(), count) << "results missing after the deadline";
    return got;
  }
  [[nodiscard]] int results_messages() const { return results_messages_; }

  /// Closes the socket: the port stops answering (a broker that died).
  void close() { router_.close(); }

 private:
  zmq::context_t context_{1};
  zmq::socket_t router_;
  std::string endpoint_;
  int heartbeats_ = 0;
  int results_messages_ = 0;
};

/// TASKS for `function` with one task per frame, indices from `first`.
inline protocol::Encoded tasks(std::uint64_t job, const std::string& function, std::size_t count,
                               std::uint64_t first = 0, bool common = false,
                               std::uint32_t timeout_ms = 0, std::uint32_t cores = 1) {
  protocol::Tasks message{.job = job,
                          .function = function,
                          .common = common,
                          .timeout_ms = timeout_ms,
                          .cores = cores,
                          .tasks = {}};
  for (std::size_t i = 0; i < count; ++i)
    message.tasks.push_back({.index = first + i, .attempt = 1});
  return protocol::encode(message);
}

/// A Worker serving on its own thread; stopped and joined on destruction.
class RunningWorker {
 public:
  RunningWorker(WorkerOptions options, const FunctionRegistry& registry)
      : worker_(std::move(options), registry) {
    auto promise = std::make_shared<std::promise<int>>();
    exit_ = promise->get_future();
    thread_ = std::thread([this, promise] {
      try {
        promise->set_value(worker_.run());
      } catch (...) {
        promise->set_exception(std::current_exception());
      }
    });
  }
  RunningWorker(const RunningWorker&) = delete;
  RunningWorker& operator=(const RunningWorker&) = delete;
  ~RunningWorker() {
    worker_.stop();
    thread_.join();
  }

  /// run()'s return value, or nullopt if it is still running after `timeout`.
  std::optional<int> exit_status(std::chrono::milliseconds timeout) {
    if (exit_.wait_for(timeout) != std::future_status::ready) return std::nullopt;
    return exit_.get();
  }
  void stop() { worker_.stop(); }

 private:
  Worker worker_;
  std::future<int> exit_;
  std::thread thread_;
};

/// Sets (or with nullptr, unsets) an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;  // NOLINT(concurrency-mt-unsafe)
    if (value != nullptr) {
      ::setenv(name, value, 1);  // NOLINT(concurrency-mt-unsafe)
    } else {
      ::unsetenv(name);  // NOLINT(concurrency-mt-unsafe)
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);  // NOLINT(concurrency-mt-unsafe)
    } else {
      ::unsetenv(name_.c_str());  // NOLINT(concurrency-mt-unsafe)
    }
  }

 private:
  std::string name_;
  std::optional<std::string> old_;
};

}  // namespace acme::test
