// The functions the fault suite runs: each one misbehaves in a way a real scientific function
// can (dies, hangs, throws, fails once) on the input it is told to. Registered both into
// acme-worker (as the plugin acme_fault_plugin) and into acme_fault_tests itself (whose copies
// are the embedded default's local workers).
#pragma once

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>

#include <acme/worker.hpp>

#include <unistd.h>

namespace acme::fault {

/// Positional argument `i` of a task as an integer.
inline std::int64_t arg(const msgpack::object& args, std::uint32_t i) {
  if (args.type != msgpack::type::ARRAY || args.via.array.size <= i) {
    throw std::invalid_argument("missing argument " + std::to_string(i));
  }
  return args.via.array.ptr[i].as<std::int64_t>();
}

/// Sleeps `ms` milliseconds in small steps; returns early once the task is cancelled.
inline void nap(std::int64_t ms, const TaskContext& context) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < until && !context.cancelled()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

/// Leaves a file `<$ACME_FAULT_MARKS>/<pid>.<index>.<n>` when a task starts (n counts the
/// starts in this process, so that a later map's task of the same index does not overwrite
/// it), so that a test knows how many tasks started without asking the broker.
inline void mark_start(const TaskContext& context) {
  static std::atomic<std::uint64_t> starts{0};
  const char* dir = std::getenv("ACME_FAULT_MARKS");  // NOLINT(concurrency-mt-unsafe)
  if (dir == nullptr || *dir == '\0') return;
  std::ofstream(std::string(dir) + "/" + std::to_string(::getpid()) + "." +
                std::to_string(context.index()) + "." + std::to_string(++starts));
}

inline void add_fault_functions(FunctionRegistry& registry) {
  using Packer = msgpack::packer<msgpack::sbuffer>;
  // tag(x, ms) -> [x, pid]: the input back after ms milliseconds, with who computed it.
  registry.add_raw("tag", [](const msgpack::object& args, const msgpack::object& /*kwargs*/,
                             Packer& result, TaskContext& context) {
    const auto x = arg(args, 0);
    mark_start(context);
    nap(arg(args, 1), context);
    result.pack_array(2);
    result.pack(x);
    result.pack(static_cast<std::int64_t>(::getpid()));
  });
  // slow(ms) -> ms: one argument, for acme-map; marks its start, returns early when cancelled.
  registry.add_raw("slow", [](const msgpack::object& args, const msgpack::object& /*kwargs*/,
                              Packer& result, TaskContext& context) {
    const auto ms = arg(args, 0);
    mark_start(context);
    nap(ms, context);
    result.pack(ms);
  });
  // crash_on(x, bad) -> x; the input `bad` kills its worker process (as a segfault would).
  registry.add_raw("crash_on", [](const msgpack::object& args, const msgpack::object& /*kwargs*/,
                                  Packer& result, TaskContext& context) {
    const auto x = arg(args, 0);
    nap(5, context);
    if (x == arg(args, 1)) ::kill(::getpid(), SIGKILL);
    result.pack(x);
  });
  // fail_on(x, bad) -> x; the input `bad` throws.
  registry.add_raw("fail_on", [](const msgpack::object& args, const msgpack::object& /*kwargs*/,
                                 Packer& result, TaskContext& /*context*/) {
    const auto x = arg(args, 0);
    if (x == arg(args, 1)) throw std::domain_error("input " + std::to_string(x) + " is bad");
    result.pack(x);
  });
  // flaky(x) -> [x, attempt]; every first attempt throws.
  registry.add_raw("flaky", [](const msgpack::object& args, const msgpack::object& /*kwargs*/,
                               Packer& result, TaskContext& context) {
    const auto x = arg(args, 0);
    if (context.attempt() == 1) {
      throw std::runtime_error("first attempt of input " + std::to_string(x) + " fails");
    }
    result.pack_array(2);
    result.pack(x);
    result.pack(context.attempt());
  });
  // hang(x, bad) -> x; the input `bad` never returns and ignores cancellation.
  registry.add_raw("hang", [](const msgpack::object& args, const msgpack::object& /*kwargs*/,
                              Packer& result, TaskContext& context) {
    const auto x = arg(args, 0);
    mark_start(context);
    if (x == arg(args, 1)) {
      while (true) std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    result.pack(x);
  });
}

}  // namespace acme::fault
