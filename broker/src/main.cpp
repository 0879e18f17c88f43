// acme-broker: binds the broker endpoint, prints ACME_BROKER=<endpoint> and serves until SIGINT
// or SIGTERM. Exit codes: 0 after a clean stop, 1 on a runtime error, 2 on a usage error.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <acme/broker/broker.hpp>
#include <acme/log.hpp>

namespace {

constexpr int kExitOk = 0;
constexpr int kExitRuntimeError = 1;
constexpr int kExitUsage = 2;

// The broker a signal stops. Lock-free atomics are async-signal-safe, and so is Broker::stop.
std::atomic<acme::broker::Broker*> g_broker{nullptr};  // NOLINT: a signal handler needs a global

extern "C" void on_signal(int /*signal*/) {
  if (auto* broker = g_broker.load()) broker->stop();
}

void install_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

int run(int argc, char** argv) {
  CLI::App app{"acme broker: load-balances tasks from clients over workers", "acme-broker"};
  acme::broker::BrokerOptions options;
  auto& config = options.scheduler;
  std::uint32_t heartbeat_ms = 1000;
  std::uint32_t no_worker_timeout_ms = 10000;
  std::uint32_t max_message_mib = 1024;
  std::string log_level;
  app.add_option("--bind", options.endpoint,
                 "endpoint to bind: tcp://127.0.0.1:PORT, tcp://*:PORT (0: any free port), "
                 "ipc:///path")
      ->capture_default_str();
  app.add_option("--heartbeat-ms", heartbeat_ms, "heartbeat interval in milliseconds")
      ->capture_default_str()
      ->check(CLI::Range(1U, 3'600'000U));
  app.add_option("--liveness", config.liveness,
                 "missed heartbeat intervals after which a peer is dead")
      ->capture_default_str()
      ->check(CLI::Range(1U, 1000U));
  app.add_option("--max-retries", config.max_retries,
                 "workers a task may kill before it fails as poisoned")
      ->capture_default_str()
      ->check(CLI::Range(1U, 1000U));
  app.add_option("--no-worker-timeout-ms", no_worker_timeout_ms,
                 "a job whose function no live worker offers fails after this long")
      ->capture_default_str();
  app.add_option("--max-batch", config.max_batch, "most tasks in one TASKS message")
      ->capture_default_str()
      ->check(CLI::Range(1U, 1024U));
  app.add_option("--max-window", config.client_window,
                 "most tasks the broker holds for one client, received and not finished: with the "
                 "largest task size, this bounds the broker's memory per client")
      ->capture_default_str()
      ->check(CLI::Range(std::uint64_t{1024}, std::uint64_t{1} << 40U));
  app.add_option("--max-message-mb", max_message_mib,
                 "largest client message accepted, in MiB; larger ones get ERROR too-large "
                 "(0: no limit)")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off (default info)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "warning", "error", "off"}));
  app.set_version_flag("--version", std::string("acme-broker ") + ACME_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    const int code = app.exit(error);  // prints help, the version or the usage error
    return code == 0 ? kExitOk : kExitUsage;
  }
  config.heartbeat_interval = std::chrono::milliseconds{heartbeat_ms};
  config.no_worker_timeout = std::chrono::milliseconds{no_worker_timeout_ms};
  options.max_client_message = std::size_t{max_message_mib} << 20U;

  // An explicit --log-level wins over ACME_LOG, which wins over the default, info.
  if (!log_level.empty()) {
    acme::set_log_level(*acme::parse_log_level(log_level));
  } else {
    acme::set_log_level(acme::log_level_from_env().value_or(spdlog::level::info));
  }

  acme::broker::Broker broker(options);
  g_broker.store(&broker);
  install_signal_handlers();
  std::fputs(fmt::format("ACME_BROKER={}\n", broker.endpoint()).c_str(), stdout);
  std::fflush(stdout);
  acme::logger("broker")->info("serving on {}", broker.endpoint());
  broker.run();
  g_broker.store(nullptr);
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& error) {
    fmt::print(stderr, "acme-broker: error: {}\n", error.what());
  } catch (...) {
    fmt::print(stderr, "acme-broker: error: unknown exception\n");
  }
  return kExitRuntimeError;
}
