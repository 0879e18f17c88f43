// serve_if_worker(): an app binary started with ACME_WORKER_OF=<endpoint> serves its own
// functions and exits; otherwise the call returns at once.
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <acme/log.hpp>
#include <acme/worker.hpp>

#include <unistd.h>

namespace acme {
namespace {

constexpr auto kEmbeddedGiveUp = std::chrono::seconds(10);
constexpr auto kLaunchedGiveUp = std::chrono::seconds(600);

/// A count from the environment variable `name`, if it is set to one (>= `least`).
std::optional<std::uint32_t> count_from_env(const char* name, std::uint32_t least) {
  const char* text = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): read at start
  if (text == nullptr) return std::nullopt;
  const std::string_view view(text);
  std::uint32_t value = 0;
  const auto [end, error] = std::from_chars(view.data(), view.data() + view.size(), value);
  if (error == std::errc{} && end == view.data() + view.size() && value >= least) return value;
  logger("worker")->warn("ignoring {}={}: not an integer >= {}", name, view, least);
  return std::nullopt;
}

}  // namespace

void serve_if_worker() {
  const char* endpoint = std::getenv(kWorkerEnv);  // NOLINT(concurrency-mt-unsafe): at start
  if (endpoint == nullptr || *endpoint == '\0') return;
  int status = 1;
  try {
    auto& registry = functions();
    add_builtins(registry);
    WorkerOptions options;
    options.endpoint = endpoint;
    options.slots = count_from_env("ACME_WORKER_SLOTS", 1).value_or(detect_slots().slots);
    options.prefetch = count_from_env("ACME_WORKER_PREFETCH", 0).value_or(options.prefetch);
    if (const char* pin = std::getenv("ACME_WORKER_PIN"); pin != nullptr) {  // NOLINT: at start
      if (auto mode = parse_pin(pin)) {
        options.pin = *mode;
      } else {
        logger("worker")->warn("ignoring ACME_WORKER_PIN={}: not auto, yes or no", pin);
      }
    }
    // The app that started this copy owns the broker: when it is gone for long, so is the job.
    options.give_up_after = kEmbeddedGiveUp;
    // Started by acme-launch (--worker-cmd): say which launch, and outlive a broker restart
    // as acme-worker does in a launch.
    if (const char* launch = std::getenv("ACME_LAUNCH_ID"); launch != nullptr) {  // NOLINT
      options.launch_id = launch;
      options.give_up_after = kLaunchedGiveUp;
    }
    options.agent = std::string(program_invocation_short_name) + " (embedded worker)";
    Worker worker(std::move(options), registry);
    status = worker.run();
    if (status == Worker::kRecycle) reexec_self();
  } catch (const std::exception& e) {
    logger("worker")->error("embedded worker failed: {}", e.what());
  }
  std::exit(status);  // NOLINT(concurrency-mt-unsafe): the worker's threads have ended
}

void reexec_self() {
  // The arguments as the kernel keeps them: NUL-terminated strings, one after the other.
  std::string all;
  {
    std::ifstream file("/proc/self/cmdline", std::ios::binary);  // closed before exec
    all.assign(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
  }
  std::vector<std::string> args;
  for (std::size_t at = 0; at < all.size();) {
    const auto end = all.find('\0', at);
    args.push_back(all.substr(at, end == std::string::npos ? std::string::npos : end - at));
    at = end == std::string::npos ? all.size() : end + 1;
  }
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  auto log = logger("worker");
  log->info("re-executing {} (pid {}) to free the cores of a stuck task",
            args.empty() ? std::string("/proc/self/exe") : args.front(), ::getpid());
  log->flush();
  if (!args.empty()) ::execv("/proc/self/exe", argv.data());
  log->error("cannot re-execute this program: {}", std::strerror(errno));  // NOLINT
  log->flush();
  std::_Exit(Worker::kRecycle);
}

}  // namespace acme
