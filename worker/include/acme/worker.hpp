// The worker runtime, for acme-worker and for any app binary that serves its own functions:
// a registry of named functions, and a Worker that connects to a broker, runs tasks on its own
// threads and heartbeats from its I/O thread so that a long task never looks dead.
//
//   acme::define("square", [](double x) { return x * x; });   // typed: msgpack converts
//   int main(int argc, char** argv) {
//     acme::serve_if_worker();   // a copy started as a worker serves here and never returns
//     ...
//   }
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <msgpack.hpp>

namespace acme {

/// What a running task can ask of the worker.
class TaskContext {
 public:
  TaskContext() = default;
  TaskContext(std::uint64_t index, std::uint32_t attempt, const std::atomic<bool>* cancelled)
      : index_(index), attempt_(attempt), cancelled_(cancelled) {}
  /// `cores`: the cores the task was given (at least 1); `cpus`: the OS cpu ids its thread is
  /// bound to, empty when the worker does not pin.
  TaskContext(std::uint64_t index, std::uint32_t attempt, const std::atomic<bool>* cancelled,
              std::uint32_t cores, std::vector<unsigned> cpus)
      : index_(index),
        attempt_(attempt),
        cancelled_(cancelled),
        cores_(cores > 0 ? cores : 1),
        cpus_(std::move(cpus)) {}

  /// The task's index in its job and its attempt (1 for the first run).
  [[nodiscard]] std::uint64_t index() const noexcept { return index_; }
  [[nodiscard]] std::uint32_t attempt() const noexcept { return attempt_; }

  /// True once the task was cancelled or timed out: its result will not be sent, so a long
  /// function may return early.
  [[nodiscard]] bool cancelled() const noexcept {
    return cancelled_ != nullptr && cancelled_->load(std::memory_order_relaxed);
  }

  /// The flag behind cancelled(), for code that watches it elsewhere (e.g. a child-process
  /// runner); null when the task cannot be cancelled.
  [[nodiscard]] const std::atomic<bool>* cancelled_flag() const noexcept { return cancelled_; }

  /// The cores the task was given (the job's cores per task, PROTOCOL.md TASKS `cores`), >= 1:
  /// how many threads or processes the function should run.
  [[nodiscard]] std::uint32_t cores() const noexcept { return cores_; }

  /// The OS cpu ids (as in /proc/cpuinfo, taskset) the task's thread is bound to, ascending:
  /// the processing units of its cores. Empty when the worker does not pin tasks.
  [[nodiscard]] const std::vector<unsigned>& cpus() const noexcept { return cpus_; }

 private:
  std::uint64_t index_ = 0;
  std::uint32_t attempt_ = 1;
  const std::atomic<bool>* cancelled_ = nullptr;
  std::uint32_t cores_ = 1;
  std::vector<unsigned> cpus_{};
};

/// A function as the runtime calls it: `args` is the task frame (an array of positional
/// arguments), `kwargs` the job's common frame (a map of named arguments, or nil), and the
/// return value is packed into `result`. Throwing fails the task with the exception's what().
using RawFunction =
    std::function<void(const msgpack::object& args, const msgpack::object& kwargs,
                       msgpack::packer<msgpack::sbuffer>& result, TaskContext& context)>;

namespace detail {

template <class T>
struct signature_of : signature_of<decltype(&T::operator())> {};
template <class R, class... A>
struct signature_of<R (*)(A...)> {
  using result = R;
  using args = std::tuple<std::decay_t<A>...>;
};
template <class R, class C, class... A>
struct signature_of<R (C::*)(A...) const> : signature_of<R (*)(A...)> {};
template <class R, class C, class... A>
struct signature_of<R (C::*)(A...)> : signature_of<R (*)(A...)> {};

/// msgpack's name for a value's type, as the error messages of typed functions show it.
inline const char* msgpack_type_name(msgpack::type::object_type type) noexcept {
  switch (type) {
    case msgpack::type::NIL: return "nil";
    case msgpack::type::BOOLEAN: return "bool";
    case msgpack::type::POSITIVE_INTEGER:
    case msgpack::type::NEGATIVE_INTEGER: return "int";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return "float";
    case msgpack::type::STR: return "str";
    case msgpack::type::BIN: return "bin";
    case msgpack::type::ARRAY: return "array";
    case msgpack::type::MAP: return "map";
    case msgpack::type::EXT: return "ext";
  }
  return "unknown";
}

template <class T>
concept Range = requires(const T& t) {
  t.begin();
  t.end();
};

/// The msgpack type a parameter of type T expects, for error messages.
template <class T>
const char* expected_type_name() noexcept {
  if constexpr (std::is_same_v<T, bool>) {
    return "bool";
  } else if constexpr (std::is_integral_v<T>) {
    return "int";
  } else if constexpr (std::is_floating_point_v<T>) {
    return "float";
  } else if constexpr (std::is_convertible_v<T, std::string>) {
    return "str";
  } else if constexpr (requires { typename T::mapped_type; }) {
    return "map";
  } else if constexpr (Range<T> || requires { std::tuple_size<T>::value; }) {
    return "array";
  } else {
    return "a value of the parameter's type";
  }
}

/// Converts positional argument `position` (from 0) of function `function`; a value that does
/// not convert throws std::invalid_argument saying which argument and why.
template <class T>
T convert_arg(const msgpack::object& value, const std::string& function, std::size_t position) {
  try {
    return value.as<T>();
  } catch (const msgpack::type_error&) {
    const std::string expected = expected_type_name<T>();
    const std::string got = msgpack_type_name(value.type);
    const auto where = function + "() argument " + std::to_string(position + 1) + ": ";
    if (expected != got)
      throw std::invalid_argument(where + "expected " + expected + ", got " + got);
    if (got == "array" || got == "map") {
      throw std::invalid_argument(where + "an element of the " + got + " has the wrong type");
    }
    throw std::invalid_argument(where + got + " value out of range");
  }
}

template <class Args, std::size_t... I>
Args convert_args([[maybe_unused]] const msgpack::object& args,
                  [[maybe_unused]] const std::string& function,
                  std::index_sequence<I...> /*unused*/) {
  // Braced initialisation converts left to right, so the first bad argument is the one named.
  return Args{convert_arg<std::tuple_element_t<I, Args>>(
      args.via.array.ptr[I], function, I)...};  // NOLINT: msgpack's array is a pointer + size
}

}  // namespace detail

/// Named functions a worker offers. Typed functions take and return anything msgpack-c can
/// convert (numbers, strings, std::vector, std::map, std::tuple, MSGPACK_DEFINE types...).
class FunctionRegistry {
 public:
  /// Registers `function` under `name`, replacing a function of that name.
  /// Throws std::invalid_argument if `name` is empty or longer than 255 bytes (PROTOCOL.md §5.6).
  void add_raw(std::string name, RawFunction function);

  /// Registers a typed function: its parameters are converted from the task's positional
  /// arguments (a count mismatch or a wrong type fails the task with a message saying which),
  /// its return value packed as the result. A void function returns nil.
  template <class F>
  void add(std::string name, F function) {
    using Sig = detail::signature_of<std::decay_t<F>>;
    using Args = typename Sig::args;
    constexpr auto arity = std::tuple_size_v<Args>;
    auto fname = name;
    add_raw(
        std::move(name), [function = std::move(function), fname = std::move(fname)](
                             const msgpack::object& args, const msgpack::object& /*kwargs*/,
                             msgpack::packer<msgpack::sbuffer>& result, TaskContext& /*context*/) {
          if (args.type != msgpack::type::ARRAY || args.via.array.size != arity) {
            throw std::invalid_argument(fname + "() takes " + std::to_string(arity) + " argument" +
                                        (arity == 1 ? "" : "s") + " but the task has " +
                                        (args.type == msgpack::type::ARRAY
                                             ? std::to_string(args.via.array.size)
                                             : std::string("no argument array")));
          }
          auto values = detail::convert_args<Args>(args, fname, std::make_index_sequence<arity>{});
          if constexpr (std::is_void_v<typename Sig::result>) {
            std::apply(function, std::move(values));
            result.pack_nil();
          } else {
            result.pack(std::apply(function, std::move(values)));
          }
        });
  }

  [[nodiscard]] const RawFunction* find(const std::string& name) const;
  [[nodiscard]] std::vector<std::string> names() const;
  [[nodiscard]] bool empty() const noexcept { return functions_.empty(); }

 private:
  std::map<std::string, RawFunction, std::less<>> functions_;
};

/// The process-wide registry that acme::define fills and serve_if_worker serves.
FunctionRegistry& functions();

/// Registers `function` under `name` in the process-wide registry.
template <class F>
void define(std::string name, F function) {
  functions().add(std::move(name), std::move(function));
}

/// The builtins: echo, sleep, fail, crash, exec (worker/README.md). Names the registry already
/// has keep their function.
void add_builtins(FunctionRegistry& registry);

/// Loads a plugin: dlopen()s `path` and calls its `acme_register(acme::FunctionRegistry&)`
/// (see ACME_PLUGIN). Throws acme::Error (Errc::BadOptions) naming the file and dlerror().
void load_plugin(FunctionRegistry& registry, const std::string& path);

/// Whether a worker binds each task's thread to cores of its own (WorkerOptions::pin).
enum class Pin : std::uint8_t {
  /// Pin inside a batch job (SLURM_JOB_ID, JOB_ID with NSLOTS, PBS_JOBID) or when this
  /// process may run on fewer CPUs than the machine has; else do not.
  Auto,
  /// Always pin; if hwloc cannot, warn and run unpinned.
  Yes,
  /// Never pin.
  No,
};

/// "auto", "yes", "no" -> Pin; nullopt for anything else.
[[nodiscard]] std::optional<Pin> parse_pin(std::string_view text) noexcept;

struct WorkerOptions {
  std::string endpoint = "tcp://127.0.0.1:5555";
  /// Cores used at once by the running tasks (a task uses its job's `cores`); 0 means the CPUs
  /// the batch system gave (SLURM_CPUS_PER_TASK, NSLOTS, NCPUS, PBS_NCPUS, PBS_NP), else the
  /// CPUs this process may run on, else hwloc's core count.
  std::uint32_t slots = 0;
  /// Pinning: each task that starts takes `cores` free cores of the worker's pool (the hwloc
  /// cores this process may run on, in topology order, the first `slots` of them) and its
  /// thread is bound to their processing units until the function returns. Off when `slots`
  /// exceeds the cores available.
  Pin pin = Pin::Auto;
  /// Extra tasks held ready beyond `slots` (PROTOCOL.md §8); the default keeps cores busy
  /// between tasks.
  std::uint32_t prefetch = 1;
  /// Stop (run() returns 1) after the broker has been gone this long; 0 means retry forever.
  std::chrono::milliseconds give_up_after{0};
  /// Sent in READY, e.g. "acme-worker 0.1.0".
  std::string agent = "acme-worker";
  /// Sent in READY (PROTOCOL.md §6.3.1): the id of the acme-launch launch that started this
  /// worker, so that `acme-launch status` can count its workers; empty: none.
  std::string launch_id{};
  /// A task abandoned (timed out, cancelled, broker gone) that has not returned this long
  /// after is stuck: the worker stops starting tasks, lets its other running tasks end, says
  /// BYE and run() returns Worker::kRecycle, so that the process can be replaced and its cores
  /// freed (PROTOCOL.md §6.4.3). 0 means never.
  std::chrono::milliseconds recycle_after{1000};
};

/// The slot count WorkerOptions::slots = 0 resolves to, and where it came from.
struct DetectedSlots {
  std::uint32_t slots = 1;
  std::string source;  // "SLURM_CPUS_PER_TASK", "NSLOTS", "affinity", "hwloc cores", ...
};
[[nodiscard]] DetectedSlots detect_slots();

class Worker {
 public:
  /// Keeps a reference to `registry`; it must outlive the Worker and not change while it runs.
  Worker(WorkerOptions options, const FunctionRegistry& registry);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  /// Serves until stop(), a broker BYE without reconnect, give_up_after, or a stuck task.
  /// Returns the exit status for a main(): 0 after stop() or a broker's clean stop, 1 after
  /// giving up, kRecycle when a stuck task holds cores: then call reexec_self() without
  /// destroying the Worker first (its destructor would wait for the stuck task).
  int run();

  /// run()'s status when the process should be replaced (EX_TEMPFAIL).
  static constexpr int kRecycle = 75;

  /// Asks run() to return; thread-safe and async-signal-safe.
  void stop() noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Replaces this process by a fresh run of the same program with the same arguments and
/// environment (execv of /proc/self/exe; the pid stays). Threads, stuck ones too, end with the
/// old image. Returns only if the exec failed: then it ends the process with Worker::kRecycle.
[[noreturn]] void reexec_self();

/// The environment variable that makes a program a worker: its value is the broker endpoint.
inline constexpr const char* kWorkerEnv = "ACME_WORKER_OF";

/// If this process was started as a worker (kWorkerEnv set), serves functions() (with the
/// builtins) until the broker stops, then exits the process; else returns at once. Call it
/// first in main(), before anything with side effects.
void serve_if_worker();

}  // namespace acme

/// Defines the entry point of a plugin library:
///   ACME_PLUGIN(registry) { registry.add("square", [](double x) { return x * x; }); }
#define ACME_PLUGIN(registry) \
  extern "C" void acme_register(acme::FunctionRegistry& registry) /* NOLINT */
