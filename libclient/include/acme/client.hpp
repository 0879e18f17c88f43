// acme::Client: a connection to a broker (or, with none configured, an embedded broker and local
// workers that are copies of this program), jobs submitted in window-sized chunks and results
// streamed back in completion order. ParallelMap (parallel_map.hpp) is built on it.
//
//   int main(int argc, char** argv) {
//     acme::serve_if_worker();  // first: a copy started as a local worker serves here
//     acme::Client client;      // $ACME_BROKER, else an embedded broker + local workers
//     ...
//   }
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <msgpack.hpp>

#include <acme/error.hpp>
#include <acme/worker.hpp>  // define(), serve_if_worker(): what a ParallelMap app also needs

namespace acme {

namespace detail {
class Connection;
struct JobState;
class EmbeddedCluster;
}  // namespace detail

struct ClientOptions {
  /// Broker endpoint, e.g. tcp://node1:5555. Empty: configured_broker() ($ACME_BROKER, else
  /// the broker acme-launch recorded), else the embedded default (a broker thread on
  /// tcp://127.0.0.1:0 and local workers that are copies of this program).
  std::string broker{};
  /// Always run the embedded default, even when $ACME_BROKER is set (acme-map --local).
  bool embedded = false;
  /// Local workers of the embedded default; 0: acme::detect_slots() / local_worker_slots.
  std::uint32_t local_workers = 0;
  /// Slots of each local worker: set it to the jobs' cores per task (JobSpec::cores), so that
  /// each local worker runs one such task at a time; a job needing more cores than this never
  /// finds a local worker and fails after no_worker_timeout.
  std::uint32_t local_worker_slots = 1;
  /// How long a configured broker has to answer before the constructor throws Unreachable.
  std::chrono::milliseconds connect_timeout{5000};
  /// Embedded default only: a job whose function no live worker offers fails after this long.
  std::chrono::milliseconds no_worker_timeout{10000};
  /// Embedded default only: heartbeat interval of the broker (PROTOCOL.md §9).
  std::chrono::milliseconds heartbeat_interval{1000};
  /// Most tasks this client keeps in the broker and unread at once (on top of the broker's own
  /// window): what bounds the memory of a huge map.
  std::uint64_t max_in_flight = std::uint64_t{1} << 16;
};

/// Why a task failed: the error map of PROTOCOL.md §6.5, plus the attempts it took.
struct TaskError {
  std::string message{};
  std::string kind{};  // "std::runtime_error", "TimedOut", "Poisoned", ...
  std::string traceback{};
  std::string host{};
  std::uint32_t pid = 0;
  std::uint32_t attempts = 0;
};

/// The outcome of one task: its value (a msgpack object) or a TaskError. A failed task is a
/// value, not an exception; as<T>() and value() throw only when asked for a value it lacks.
class TaskResult {
 public:
  TaskResult() = default;
  static TaskResult success(std::uint64_t index, std::uint32_t attempts,
                            msgpack::object_handle value);
  static TaskResult failure(std::uint64_t index, TaskError error);

  [[nodiscard]] std::uint64_t index() const noexcept { return index_; }
  [[nodiscard]] bool ok() const noexcept { return !error_.has_value(); }
  [[nodiscard]] std::uint32_t attempts() const noexcept {
    return error_ ? error_->attempts : attempts_;
  }

  /// The returned value. Throws acme::Error (TaskFailed) when the task failed.
  [[nodiscard]] const msgpack::object& value() const;

  /// The value converted to T. Throws acme::Error: TaskFailed when the task failed, BadOptions
  /// when the value does not convert to T.
  template <class T>
  [[nodiscard]] T as() const {
    const auto& object = value();
    try {
      return object.as<T>();
    } catch (const msgpack::type_error&) {
      throw_conversion_error();
    }
  }

  /// Precondition: !ok().
  [[nodiscard]] const TaskError& error() const { return *error_; }

 private:
  [[noreturn]] void throw_conversion_error() const;

  std::uint64_t index_ = 0;
  std::uint32_t attempts_ = 0;
  std::shared_ptr<const msgpack::object_handle> value_{};
  std::optional<TaskError> error_{};
};

/// What compute<T>() throws when tasks failed: every failure, and a what() that says how many
/// failed and lists the first few with their index and message.
class MapError : public Error {
 public:
  MapError(std::string function, std::uint64_t total, std::vector<TaskResult> failures);
  [[nodiscard]] const std::vector<TaskResult>& failures() const noexcept { return failures_; }
  [[nodiscard]] std::uint64_t total() const noexcept { return total_; }

 private:
  std::vector<TaskResult> failures_;
  std::uint64_t total_ = 0;
};

/// A job as the client sends it: a function, `total` task frames generated on demand and an
/// optional common frame (PROTOCOL.md §6.1.1, §6.5).
struct JobSpec {
  std::string function{};
  std::uint64_t total = 0;
  /// Packs the task frame of input `index` (a msgpack array of positional arguments) into the
  /// buffer. Called once per task, in index order, on the client's I/O thread, shortly before
  /// the task is sent: inputs are never all packed at once.
  std::function<void(std::uint64_t index, msgpack::sbuffer& frame)> task{};
  /// The common frame (a msgpack map of named arguments shared by every task), if any.
  std::optional<std::string> common{};
  std::optional<std::uint32_t> max_retries{};  // absent: the broker's default
  bool retry_on_error = false;
  std::chrono::milliseconds timeout{0};  // per task; 0: no limit
  /// Cores each task uses (>= 1): a worker with S slots runs at most S / cores such tasks at
  /// once, each pinned to cores of its own when the worker pins (worker/README.md). A job
  /// needing more cores than every worker has fails after the broker's no-worker timeout.
  std::uint32_t cores = 1;
};

/// Results of one job in completion order, holding only what has arrived and not been read.
/// Move-only; destroying it before the end cancels the job.
class ResultStream {
 public:
  ResultStream() = default;
  ResultStream(std::shared_ptr<detail::Connection> connection,
               std::shared_ptr<detail::JobState> job);
  ResultStream(ResultStream&& other) noexcept = default;
  ResultStream& operator=(ResultStream&& other) noexcept;
  ResultStream(const ResultStream&) = delete;
  ResultStream& operator=(const ResultStream&) = delete;
  ~ResultStream();

  /// Blocks until the next result; nullopt after the last one. Throws acme::Error when the job
  /// fails as a whole (UnknownFunction, BrokerGone, Refused); results read before stay valid.
  [[nodiscard]] std::optional<TaskResult> next();

  /// Tasks in the job, and results read so far.
  [[nodiscard]] std::uint64_t total() const noexcept;
  [[nodiscard]] std::uint64_t read() const noexcept { return read_; }

  /// Abandons the job: the broker drops its queued tasks and no more results come.
  void cancel() noexcept;

  /// for (acme::TaskResult& r : stream) ...: an input range over next().
  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = TaskResult;
    using difference_type = std::ptrdiff_t;
    using pointer = TaskResult*;
    using reference = TaskResult&;
    iterator() = default;
    explicit iterator(ResultStream* stream) : stream_(stream) { ++*this; }
    reference operator*() { return *current_; }
    pointer operator->() { return &*current_; }
    iterator& operator++() {
      current_ = stream_->next();
      if (!current_) stream_ = nullptr;
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& a, const iterator& b) noexcept {
      return a.stream_ == b.stream_;
    }

   private:
    ResultStream* stream_ = nullptr;
    std::optional<TaskResult> current_{};
  };
  iterator begin() { return iterator(this); }
  iterator end() { return {}; }  // NOLINT(readability-convert-member-functions-to-static)

 private:
  std::shared_ptr<detail::Connection> connection_{};
  std::shared_ptr<detail::JobState> job_{};
  std::uint64_t read_ = 0;
};

/// Where a client finds its broker when none is given.
struct ConfiguredBroker {
  std::string endpoint;  // empty: none configured (the embedded default runs)
  std::string source;    // "$ACME_BROKER" or the file's path
};

/// $ACME_BROKER, else the broker `acme-launch` recorded in $ACME_HOME/broker (ACME_HOME
/// defaults to ~/.acme), unless that file was written on this host and the broker process it
/// names has ended (a stale launch); else none.
[[nodiscard]] ConfiguredBroker configured_broker();

class Client {
 public:
  /// Calls acme::serve_if_worker() first (a copy of this program started as a worker serves
  /// and exits there), then connects. Throws acme::Error: Unreachable when a configured broker
  /// does not answer within connect_timeout, System when local workers cannot be started.
  explicit Client(ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  /// The broker endpoint this client talks to.
  [[nodiscard]] const std::string& endpoint() const noexcept;
  /// True when this client runs the embedded broker and local workers.
  [[nodiscard]] bool embedded() const noexcept;
  /// Local worker processes of the embedded default (0 for a configured broker).
  [[nodiscard]] std::uint32_t local_workers() const noexcept;

  /// Submits a job; its results stream back through the returned stream. Thread-safe.
  /// Throws acme::Error (BadOptions) for an invalid spec; job failures arrive via the stream.
  [[nodiscard]] ResultStream submit(JobSpec spec);

 private:
  std::string endpoint_;
  std::unique_ptr<detail::EmbeddedCluster> cluster_;
  std::shared_ptr<detail::Connection> connection_;
};

/// The process-wide client that ParallelMap uses when given none: created on first use with
/// default options, stopped at exit.
Client& default_client();

}  // namespace acme
