#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <utility>

#include <fmt/format.h>

#include <acme/client.hpp>
#include <acme/log.hpp>
#include <acme/net/wire.hpp>
#include <acme/worker.hpp>

#include "connection.hpp"
#include "embedded_cluster.hpp"

namespace acme {
namespace {

constexpr std::size_t kListedFailures = 5;  // MapError::what() lists this many

std::string map_error_message(const std::string& function, std::uint64_t total,
                              const std::vector<TaskResult>& failures) {
  auto message = fmt::format("{} of {} call{} of {}() failed:", failures.size(), total,
                             total == 1 ? "" : "s", function);
  for (std::size_t i = 0; i < failures.size() && i < kListedFailures; ++i) {
    const auto& error = failures[i].error();
    message += fmt::format(
        "\n  input {}: {}{}{}", failures[i].index(), error.message,
        error.kind.empty() ? "" : " [" + error.kind + "]",
        error.attempts > 1 ? fmt::format(" ({} attempts)", error.attempts) : std::string());
  }
  if (failures.size() > kListedFailures) {
    message += fmt::format("\n  ... and {} more (MapError::failures() has them all)",
                           failures.size() - kListedFailures);
  }
  return message;
}

std::string env(const char* name) {
  const char* value = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): read-only use
  return value == nullptr ? std::string() : std::string(value);
}

}  // namespace

// ---- configured_broker ----

ConfiguredBroker configured_broker() {
  if (auto broker = env("ACME_BROKER"); !broker.empty()) return {broker, "$ACME_BROKER"};
  auto home = env("ACME_HOME");
  if (home.empty()) {
    const auto user_home = env("HOME");
    if (user_home.empty()) return {};
    home = user_home + "/.acme";
  }
  const auto path = home + "/broker";
  std::ifstream file(path);
  std::string endpoint;
  if (!std::getline(file, endpoint) || endpoint.empty()) return {};
  std::string host;
  long pid = 0;
  for (std::string line; std::getline(file, line);) {
    if (line.starts_with("host=")) host = line.substr(5);
    if (line.starts_with("pid=")) pid = std::strtol(line.c_str() + 4, nullptr, 10);
  }
  // Written here for a broker of ours that has ended: a stale launch, not a broker to wait for.
  if (pid > 0 && host == net::hostname() && ::kill(static_cast<pid_t>(pid), 0) != 0 &&
      errno == ESRCH) {
    return {};
  }
  return {endpoint, path};
}

// ---- TaskResult ----

TaskResult TaskResult::success(std::uint64_t index, std::uint32_t attempts,
                               msgpack::object_handle value) {
  TaskResult result;
  result.index_ = index;
  result.attempts_ = attempts;
  result.value_ = std::make_shared<const msgpack::object_handle>(std::move(value));
  return result;
}

TaskResult TaskResult::failure(std::uint64_t index, TaskError error) {
  TaskResult result;
  result.index_ = index;
  result.attempts_ = error.attempts;
  result.error_ = std::move(error);
  return result;
}

const msgpack::object& TaskResult::value() const {
  if (error_) {
    throw Error(Errc::TaskFailed,
                fmt::format("task {} failed: {}{}", index_, error_->message,
                            error_->kind.empty() ? "" : " [" + error_->kind + "]"));
  }
  if (!value_) throw Error(Errc::TaskFailed, fmt::format("task {} has no result", index_));
  return value_->get();
}

void TaskResult::throw_conversion_error() const {
  const auto& object = value_->get();
  throw Error(Errc::BadOptions,
              fmt::format("the result of task {} (msgpack type {}) cannot be converted to the "
                          "requested type",
                          index_, static_cast<int>(object.type)));
}

// ---- MapError ----

MapError::MapError(std::string function, std::uint64_t total, std::vector<TaskResult> failures)
    : Error(Errc::TaskFailed, map_error_message(function, total, failures)),
      failures_(std::move(failures)),
      total_(total) {}

// ---- ResultStream ----

ResultStream::ResultStream(std::shared_ptr<detail::Connection> connection,
                           std::shared_ptr<detail::JobState> job)
    : connection_(std::move(connection)), job_(std::move(job)) {}

ResultStream& ResultStream::operator=(ResultStream&& other) noexcept {
  if (this != &other) {
    cancel();
    connection_ = std::move(other.connection_);
    job_ = std::move(other.job_);
    read_ = other.read_;
  }
  return *this;
}

ResultStream::~ResultStream() {
  cancel();
}

std::optional<TaskResult> ResultStream::next() {
  if (!job_) return std::nullopt;
  auto result = connection_->next(*job_);
  if (result) ++read_;
  return result;
}

std::uint64_t ResultStream::total() const noexcept {
  return job_ ? job_->spec.total : 0;
}

void ResultStream::cancel() noexcept {
  if (job_ && connection_) connection_->cancel(*job_);
}

// ---- Client ----

Client::Client(ClientOptions options) {
  serve_if_worker();  // a copy of this program started as a local worker serves here and exits
  std::string broker = options.broker;
  std::string hint;
  if (options.embedded) {
    broker.clear();
  } else if (broker.empty()) {
    const auto configured = configured_broker();
    broker = configured.endpoint;
    if (configured.source == "$ACME_BROKER") {
      hint = " (from $ACME_BROKER; unset it to run on local workers)";
    } else if (!broker.empty()) {
      hint = fmt::format(
          " (from {}, written by acme-launch; acme-launch stop, or remove the "
          "file, to run on local workers)",
          configured.source);
    }
  }
  if (broker.empty()) {
    const auto worker_slots = std::max<std::uint32_t>(options.local_worker_slots, 1);
    const auto workers = options.local_workers > 0
                             ? options.local_workers
                             : std::max<std::uint32_t>(detect_slots().slots / worker_slots, 1);
    cluster_ = std::make_unique<detail::EmbeddedCluster>(
        detail::ClusterOptions{.workers = workers,
                               .worker_slots = worker_slots,
                               .no_worker_timeout = options.no_worker_timeout,
                               .heartbeat_interval = options.heartbeat_interval});
    endpoint_ = cluster_->endpoint();
  } else {
    endpoint_ = broker;
  }
  connection_ = std::make_shared<detail::Connection>(endpoint_, options.max_in_flight);
  connection_->probe(
      cluster_ ? std::chrono::milliseconds(5000) : options.connect_timeout,
      cluster_ ? std::string(" (the embedded broker)")
               : hint +
                     ": check that acme-broker runs there (it prints ACME_BROKER=<endpoint> "
                     "when it starts), that host and port are right, and that no firewall "
                     "blocks the port");
  if (cluster_) {
    connection_->set_health_check([cluster = cluster_.get()] { return cluster->problem(); });
  }
  connection_->start();
  logger("client")->debug(
      "client connected to {}{}", endpoint_,
      cluster_ ? fmt::format(" (embedded, {} local workers)", cluster_->workers()) : std::string());
}

Client::~Client() {
  connection_->stop();  // BYE to the broker; open jobs fail
  cluster_.reset();     // broker stops (BYE to workers); workers are waited for and reaped
}

const std::string& Client::endpoint() const noexcept {
  return endpoint_;
}
bool Client::embedded() const noexcept {
  return cluster_ != nullptr;
}
std::uint32_t Client::local_workers() const noexcept {
  return cluster_ ? cluster_->workers() : 0;
}

ResultStream Client::submit(JobSpec spec) {
  if (spec.function.empty() || spec.function.size() > 255) {
    throw Error(Errc::BadOptions,
                fmt::format("function name '{}' must have 1 to 255 bytes", spec.function));
  }
  if (!spec.task) throw Error(Errc::BadOptions, "JobSpec::task is empty");
  if (spec.cores == 0) throw Error(Errc::BadOptions, "JobSpec::cores must be at least 1");
  if (spec.timeout.count() < 0 || spec.timeout.count() > 0xFFFFFFFFLL) {
    throw Error(Errc::BadOptions, "JobSpec::timeout must be between 0 and 2^32-1 ms");
  }
  if (spec.total == 0) {  // nothing to run: an empty stream, no job (PROTOCOL.md: total >= 1)
    auto job = std::make_shared<detail::JobState>();
    job->spec = std::move(spec);
    job->finished = true;
    return ResultStream(connection_, std::move(job));
  }
  auto job = connection_->open(std::move(spec));
  return ResultStream(connection_, std::move(job));
}

Client& default_client() {
  static std::mutex mutex;
  static std::unique_ptr<Client> client;
  const std::lock_guard lock(mutex);
  if (!client) client = std::make_unique<Client>();
  return *client;
}

}  // namespace acme
