// acme-worker: serves the builtins and the functions of --plugin libraries to a broker.
#include <atomic>
#include <cstdlib>
#include <iostream>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <acme/error.hpp>
#include <acme/log.hpp>
#include <acme/net/wire.hpp>
#include <acme/worker.hpp>

#include <signal.h>
#include <unistd.h>

namespace {

constexpr int kExitRuntimeError = 1;
constexpr int kExitUsage = 2;

std::atomic<acme::Worker*> running_worker{nullptr};
std::atomic<bool> stop_signalled{false};  // a SIGTERM between run() and a re-exec still stops

extern "C" void on_stop_signal(int /*signal*/) {
  stop_signalled = true;
  if (auto* worker = running_worker.load()) worker->stop();  // async-signal-safe
}

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  ::sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
}

int run(int argc, char** argv) {
  CLI::App app{"acme-worker: runs tasks for an acme broker"};
  const char* env_broker = std::getenv("ACME_BROKER");  // NOLINT(concurrency-mt-unsafe)
  acme::WorkerOptions options;
  options.endpoint =
      env_broker != nullptr && *env_broker != '\0' ? env_broker : "tcp://127.0.0.1:5555";
  options.agent = "acme-worker " ACME_VERSION;
  std::vector<std::string> plugins;
  double give_up_seconds = 0;
  std::string log_level = "info";
  bool list_functions = false;
  app.add_option("--connect", options.endpoint, "broker endpoint (default: $ACME_BROKER)")
      ->capture_default_str();
  app.add_option("--slots", options.slots,
                 "tasks run at once (default: the batch system's CPUs, else this process's)")
      ->check(CLI::PositiveNumber);
  std::string pin = "auto";
  app.add_option("--pin", pin,
                 "bind each task's thread to cores of its own: auto (inside a batch job or when "
                 "this process may not use the whole machine), yes or no")
      ->capture_default_str()
      ->check([](const std::string& value) {
        return acme::parse_pin(value) ? std::string{}
                                      : "--pin must be auto, yes or no, not '" + value + "'";
      });
  app.add_option("--prefetch", options.prefetch, "extra tasks held queued")->capture_default_str();
  const char* env_launch = std::getenv("ACME_LAUNCH_ID");  // NOLINT(concurrency-mt-unsafe)
  if (env_launch != nullptr) options.launch_id = env_launch;
  app.add_option("--launch-id", options.launch_id,
                 "the acme-launch launch this worker belongs to, sent to the broker "
                 "(default: $ACME_LAUNCH_ID)")
      ->check([](const std::string& value) {
        return value.size() <= acme::protocol::kMaxText ? std::string{}
                                                        : "a launch id is at most 4096 bytes";
      });
  app.add_option("--plugin", plugins, "shared library with ACME_PLUGIN functions (repeatable)");
  app.add_option("--give-up-after", give_up_seconds,
                 "exit 1 when the broker has been gone this many seconds (0: never)")
      ->check(CLI::NonNegativeNumber);
  std::uint32_t recycle_after_ms = 1000;
  app.add_option("--recycle-after-ms", recycle_after_ms,
                 "a cancelled or timed-out task still running this long after is stuck: the "
                 "worker re-executes itself to free its cores (0: never)")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->capture_default_str()
      ->check([](const std::string& value) {
        return acme::parse_log_level(value) ? std::string{} : "unknown log level " + value;
      });
  app.add_flag("--list-functions", list_functions, "print the functions offered and exit");
  app.set_version_flag("--version", "acme-worker " ACME_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }

  acme::set_log_level(*acme::parse_log_level(log_level));
  options.pin = *acme::parse_pin(pin);
  auto log = acme::logger("worker");

  auto& registry = acme::functions();
  acme::add_builtins(registry);
  for (const auto& plugin : plugins) {
    try {
      acme::load_plugin(registry, plugin);
    } catch (const acme::Error& e) {
      fmt::print(stderr, "acme-worker: error: {}\n", e.what());
      return kExitRuntimeError;
    }
  }
  if (list_functions) {
    for (const auto& name : registry.names()) fmt::print("{}\n", name);
    return 0;
  }

  std::string source = "--slots";
  if (options.slots == 0) {
    const auto detected = acme::detect_slots();
    options.slots = detected.slots;
    source = detected.source;
  }
  options.give_up_after =
      std::chrono::milliseconds(static_cast<std::int64_t>(give_up_seconds * 1000));
  options.recycle_after = std::chrono::milliseconds(recycle_after_ms);
  log->info("worker {}:{} offers {} functions with {} slots ({}) to {}{}{}", acme::net::hostname(),
            ::getpid(), registry.names().size(), options.slots, source, options.endpoint,
            options.launch_id.empty() ? "" : ", launch ", options.launch_id);

  acme::Worker worker(options, registry);
  running_worker = &worker;
  install_stop_handlers();
  const int status = worker.run();
  running_worker = nullptr;
  // A stuck task holds its cores until the process ends: replace it, the Worker not destroyed.
  if (status == acme::Worker::kRecycle && !stop_signalled) acme::reexec_self();
  if (status == acme::Worker::kRecycle)
    std::_Exit(0);  // stopped: the stuck thread must not hold the exit
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const acme::Error& e) {
    fmt::print(stderr, "acme-worker: error: {}\n", e.what());
    return e.code() == acme::Errc::BadOptions ? kExitUsage : kExitRuntimeError;
  } catch (const std::exception& e) {
    fmt::print(stderr, "acme-worker: error: {}\n", e.what());
  } catch (...) {
    fmt::print(stderr, "acme-worker: error: unknown exception\n");
  }
  return kExitRuntimeError;
}
