// acme::ParallelMap: ACME's ParallelMap for C++. Sequence arguments of the common length n are
// iterated, everything else is passed whole to every call; named arguments (acme::kw) go to
// every call as the job's common frame.
//
//   acme::define("f", [](double x, double y) { return (x + y) * 3; });
//   acme::ParallelMap pmap("f", std::vector{2.0, 4.0, 6.0, 8.0}, 4.0);  // f(2,4) ... f(8,4)
//   std::vector<double> r = pmap.compute<double>();                    // in input order
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <msgpack.hpp>

#include <acme/client.hpp>
#include <acme/error.hpp>

namespace acme {

/// An argument passed whole to every call, even when it is a sequence of length n_inputs.
struct Broadcast {
  std::string packed{};  // the msgpack value
};
template <class T>
[[nodiscard]] Broadcast broadcast(const T& value) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, value);
  return Broadcast{std::string(buffer.data(), buffer.size())};
}

/// A named argument shared by every call: acme::kw("z", 3) puts z = 3 in the common frame.
struct Kw {
  std::string name{};
  std::string packed{};  // the msgpack value
};
template <class T>
[[nodiscard]] Kw kw(std::string name, const T& value) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, value);
  return Kw{std::move(name), std::string(buffer.data(), buffer.size())};
}

enum class ProgressBar : std::uint8_t {
  Auto,  // on when stderr is a terminal
  On,
  Off,
};

/// Options of a map, given as an argument of the constructor (anywhere) or set via options().
struct MapOptions {
  /// The client to run on; nullptr: acme::default_client(), created on first use.
  Client* client = nullptr;
  /// Calls to make; nullopt: inferred from the sequence arguments (ACME's n_inputs="auto").
  std::optional<std::uint64_t> n_inputs{};
  /// Runs the first input once first (in this process when the function is registered here,
  /// else on one worker), reports its run time and result size on stderr, then runs the map.
  bool dryrun = false;
  /// nullopt: the library's log level; true: info and debug messages; false: errors only.
  std::optional<bool> verbose{};
  ProgressBar progress = ProgressBar::Auto;
  /// Failures after which a task is given up (PROTOCOL.md §10); nullopt: the broker's (3).
  std::optional<std::uint32_t> max_retries{};
  /// Retries tasks that raised or timed out, not only those whose worker died.
  bool retry_on_error = false;
  /// Longest run time of one task; 0: no limit.
  std::chrono::milliseconds timeout{0};
  /// Cores per task (JobSpec::cores). With no client and no configured broker, a map with
  /// cores > 1 runs on local workers of its own with `cores` slots each (the default client's
  /// have one), kept while the ParallelMap lives.
  std::uint32_t cores = 1;
};

namespace detail {

template <class T>
concept StringLike = std::is_convertible_v<const T&, std::string_view>;
template <class T>
concept Associative = requires {
  typename T::key_type;
};

/// What ParallelMap iterates: sized forward ranges that are neither strings nor maps.
template <class T>
concept Sequence =
    std::ranges::forward_range<const T> && std::ranges::sized_range<const T> && !StringLike<T> &&
    !Associative<T>;

using Packer = msgpack::packer<msgpack::sbuffer>;

/// One positional argument: a value packed once, or a sequence packed element by element.
struct Argument {
  bool sequence = false;
  std::uint64_t length = 0;  // sequences only
  bool iterated = false;     // decided by resolve_arguments
  std::string packed{};      // what every call gets when not iterated
  std::function<void(Packer&, std::uint64_t)> pack_element{};
  std::function<void(Packer&)> pack_whole{};
};

template <class R>
Argument sequence_argument(const R* range, std::shared_ptr<const R> owner) {
  Argument argument;
  argument.sequence = true;
  argument.length = static_cast<std::uint64_t>(std::ranges::size(*range));
  argument.pack_element = [range, owner](Packer& packer, std::uint64_t index) {
    auto it = std::ranges::begin(*range);
    std::advance(it, static_cast<std::ranges::range_difference_t<const R>>(index));
    const std::ranges::range_value_t<const R>& value = *it;  // a proxy (vector<bool>) converts
    packer.pack(value);
  };
  argument.pack_whole = [range, owner](Packer& packer) {
    packer.pack_array(static_cast<std::uint32_t>(std::ranges::size(*range)));
    for (const std::ranges::range_value_t<const R>& value : *range) packer.pack(value);
  };
  return argument;
}

/// Decides n_inputs and which sequences are iterated (ACME's rules, ParallelMap docs).
/// Throws acme::Error (BadOptions) naming argument positions and lengths.
std::uint64_t resolve_arguments(const std::string& function, std::vector<Argument>& arguments,
                                std::optional<std::uint64_t> n_inputs);

}  // namespace detail

class ParallelMap {
 public:
  /// Arguments: sequences (std::vector, std::array, std::span, ...) of length n_inputs are
  /// iterated, anything else (and acme::broadcast(x)) is passed whole to every call; acme::kw
  /// values are named arguments for every call; a MapOptions sets options. Rvalue sequences are
  /// kept; lvalue ones are referenced and must outlive the map (and its stream()).
  /// Throws acme::Error (BadOptions) when n_inputs cannot be inferred or does not fit.
  template <class... Args>
  explicit ParallelMap(std::string function, Args&&... args) : function_(std::move(function)) {
    (add(std::forward<Args>(args)), ...);
    resolve();
  }

  [[nodiscard]] const std::string& function() const noexcept { return function_; }
  [[nodiscard]] std::uint64_t n_inputs() const noexcept { return n_inputs_; }
  [[nodiscard]] MapOptions& options() noexcept { return options_; }
  /// Whether positional argument `position` (from 0) is iterated or passed whole.
  [[nodiscard]] bool iterated(std::size_t position) const {
    return arguments_->at(position).iterated;
  }

  /// Packs the task frame of input `index`: the array of positional arguments of that call.
  void pack_task(std::uint64_t index, msgpack::sbuffer& frame) const;
  /// The common frame (a map of the acme::kw arguments), if there are any.
  [[nodiscard]] const std::optional<std::string>& common_frame() const noexcept { return common_; }

  /// Runs every call; results in input order. A failed task is a TaskResult with !ok().
  /// Throws acme::Error when the map fails as a whole (UnknownFunction, BrokerGone, ...).
  [[nodiscard]] std::vector<TaskResult> compute();

  /// Runs every call and converts the results to T, in input order. Throws acme::MapError
  /// (TaskFailed) listing the failures when any task failed.
  template <class T>
  [[nodiscard]] std::vector<T> compute() {
    auto results = compute();
    throw_if_failed(results);
    std::vector<T> values;
    values.reserve(results.size());
    for (const auto& result : results) values.push_back(result.as<T>());
    return values;
  }

  /// Calls `on_result` for every result as it arrives (completion order), keeping only what
  /// is in flight: for maps whose results do not fit in memory.
  void for_each(const std::function<void(TaskResult&&)>& on_result);

  /// Starts the map and returns its results as a stream (completion order).
  [[nodiscard]] ResultStream stream();

 private:
  template <class T>
  void add(T&& value) {
    using V = std::remove_cvref_t<T>;
    if constexpr (std::is_same_v<V, MapOptions>) {
      options_ = value;
    } else if constexpr (std::is_same_v<V, Kw>) {
      kwargs_.push_back(std::forward<T>(value));
    } else if constexpr (std::is_same_v<V, Broadcast>) {
      arguments_->push_back(detail::Argument{.packed = std::forward<T>(value).packed});
    } else if constexpr (detail::Sequence<V>) {
      if constexpr (std::is_lvalue_reference_v<T>) {
        arguments_->push_back(detail::sequence_argument<V>(&value, nullptr));
      } else {
        auto owner = std::make_shared<const V>(std::forward<T>(value));
        arguments_->push_back(detail::sequence_argument<V>(owner.get(), owner));
      }
    } else {
      msgpack::sbuffer buffer;
      msgpack::pack(buffer, value);
      arguments_->push_back(detail::Argument{.packed = std::string(buffer.data(), buffer.size())});
    }
  }

  void resolve();
  [[nodiscard]] JobSpec job_spec() const;
  void dry_run(Client& client);
  [[nodiscard]] Client& client() const;
  void throw_if_failed(const std::vector<TaskResult>& results) const;

  std::string function_;
  std::shared_ptr<std::vector<detail::Argument>> arguments_ =
      std::make_shared<std::vector<detail::Argument>>();
  std::vector<Kw> kwargs_{};
  std::optional<std::string> common_{};
  MapOptions options_{};
  std::optional<std::uint64_t> resolved_for_{};  // options_.n_inputs when resolve() ran
  std::uint64_t n_inputs_ = 0;
  mutable std::shared_ptr<Client> own_client_{};  // multi-core tasks on local workers
};

}  // namespace acme
