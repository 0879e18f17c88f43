// The small builtins: echo, sleep, fail, crash (exec is in exec.cpp).
#include "builtins.hpp"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace acme {
namespace worker {
namespace {

using namespace std::chrono_literals;

/// Throws unless `args` is an array of `min`..`max` values.
void expect_arity(const msgpack::object& args, const char* name, std::uint32_t min,
                  std::uint32_t max) {
  if (args.type != msgpack::type::ARRAY) {
    throw std::invalid_argument(std::string(name) + "() expects an array of arguments, got " +
                                detail::msgpack_type_name(args.type));
  }
  const auto count = args.via.array.size;
  if (count < min || count > max) {
    throw std::invalid_argument(
        std::string(name) + "() takes " +
        (min == max ? std::to_string(min) : std::to_string(min) + ".." + std::to_string(max)) +
        " argument" + (max == 1 ? "" : "s") + " but the task has " + std::to_string(count));
  }
}

}  // namespace

RawFunction make_echo() {
  return [](const msgpack::object& args, const msgpack::object& /*kwargs*/,
            msgpack::packer<msgpack::sbuffer>& result, TaskContext& /*context*/) {
    // One argument comes back as it is; none or several come back as the array.
    if (args.type == msgpack::type::ARRAY && args.via.array.size == 1) {
      result.pack(args.via.array.ptr[0]);
    } else {
      result.pack(args);
    }
  };
}

RawFunction make_sleep() {
  return [](const msgpack::object& args, const msgpack::object& /*kwargs*/,
            msgpack::packer<msgpack::sbuffer>& result, TaskContext& context) {
    expect_arity(args, "sleep", 1, 1);
    const auto seconds = detail::convert_arg<double>(args.via.array.ptr[0], "sleep", 0);
    if (!std::isfinite(seconds) || seconds < 0) {
      throw std::invalid_argument("sleep() needs a finite number of seconds >= 0");
    }
    // Sleeps in short steps so that a cancel or timeout ends it within 10 ms.
    const auto until = std::chrono::steady_clock::now() +
                       std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                           std::chrono::duration<double>(seconds));
    while (!context.cancelled()) {
      const auto left = until - std::chrono::steady_clock::now();
      if (left <= 0s) break;
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(left, 10ms));
    }
    result.pack(seconds);
  };
}

RawFunction make_fail() {
  return [](const msgpack::object& args, const msgpack::object& /*kwargs*/,
            msgpack::packer<msgpack::sbuffer>& /*result*/, TaskContext& /*context*/) {
    expect_arity(args, "fail", 0, 1);
    if (args.via.array.size == 0) throw std::runtime_error("fail() was called");
    const auto& message = args.via.array.ptr[0];
    if (message.type == msgpack::type::STR) throw std::runtime_error(message.as<std::string>());
    std::ostringstream text;
    text << message;  // msgpack's JSON-like rendering of any other value
    throw std::runtime_error(text.str());
  };
}

RawFunction make_crash() {
  return [](const msgpack::object& /*args*/, const msgpack::object& /*kwargs*/,
            msgpack::packer<msgpack::sbuffer>& /*result*/, TaskContext& /*context*/) {
    std::abort();  // for fault tests: the worker process dies with this task running
  };
}

}  // namespace worker

void add_builtins(FunctionRegistry& registry) {
  const std::pair<const char*, RawFunction (*)()> builtins[] = {
      {"echo", worker::make_echo},   {"sleep", worker::make_sleep}, {"fail", worker::make_fail},
      {"crash", worker::make_crash}, {"exec", worker::make_exec},
  };
  for (const auto& [name, make] : builtins) {
    if (registry.find(name) == nullptr) registry.add_raw(name, make());
  }
}

}  // namespace acme
