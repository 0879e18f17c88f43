#include <chrono>
#include <cstdio>
#include <set>
#include <utility>

#include <fmt/format.h>

#include <acme/log.hpp>
#include <acme/parallel_map.hpp>
#include <acme/worker.hpp>

#include "progress.hpp"

namespace acme {
namespace detail {
namespace {

std::string lengths(const std::vector<Argument>& arguments) {
  std::string text;
  for (std::size_t i = 0; i < arguments.size(); ++i) {
    if (!arguments[i].sequence) continue;
    if (!text.empty()) text += ", ";
    text += fmt::format("argument {} has {} element{}", i + 1, arguments[i].length,
                        arguments[i].length == 1 ? "" : "s");
  }
  return text;
}

void pack_whole(Argument& argument) {
  msgpack::sbuffer buffer;
  Packer packer(buffer);
  argument.pack_whole(packer);
  argument.packed.assign(buffer.data(), buffer.size());
}

}  // namespace

std::uint64_t resolve_arguments(const std::string& function, std::vector<Argument>& arguments,
                                std::optional<std::uint64_t> n_inputs) {
  std::set<std::uint64_t> seen;
  for (const auto& argument : arguments) {
    if (argument.sequence) seen.insert(argument.length);
  }
  const auto where = fmt::format("ParallelMap(\"{}\")", function);
  std::uint64_t n = 0;
  if (n_inputs) {
    // ACME: an explicit n_inputs needs at least one argument of that length; sequences of
    // other lengths go whole to every call.
    if (*n_inputs == 0) {
      throw Error(Errc::BadOptions, fmt::format("{}: n_inputs must be at least 1", where));
    }
    n = *n_inputs;
    if (!seen.contains(n)) {
      throw Error(Errc::BadOptions,
                  fmt::format("{}: n_inputs is {}, but no argument is a sequence of {} "
                              "elements ({}); nothing to iterate over",
                              where, n, n,
                              seen.empty() ? "no argument is a sequence" : lengths(arguments)));
    }
  } else {
    if (seen.empty()) {
      throw Error(Errc::BadOptions,
                  fmt::format("{}: cannot infer n_inputs: no argument is a sequence to iterate "
                              "over; pass one (std::vector, std::array, std::span, ...) or set "
                              "MapOptions::n_inputs",
                              where));
    }
    if (seen.size() > 1) {
      throw Error(Errc::BadOptions,
                  fmt::format("{}: cannot infer n_inputs: the sequence arguments differ in "
                              "length ({}); set MapOptions::n_inputs to the number of calls "
                              "(sequences of another length then go whole to every call), or "
                              "wrap an argument in acme::broadcast() to pass it whole",
                              where, lengths(arguments)));
    }
    n = *seen.begin();
  }
  for (std::size_t i = 0; i < arguments.size(); ++i) {
    auto& argument = arguments[i];
    if (!argument.sequence) continue;
    argument.iterated = argument.length == n;
    if (!argument.iterated) {
      logger("client")->info("{}: argument {} ({} elements) goes whole to each of the {} calls",
                             where, i + 1, argument.length, n);
      pack_whole(argument);
    }
  }
  return n;
}

}  // namespace detail

void ParallelMap::resolve() {
  for (auto& argument : *arguments_) {
    if (argument.sequence) argument.packed.clear();
  }
  n_inputs_ = detail::resolve_arguments(function_, *arguments_, options_.n_inputs);
  resolved_for_ = options_.n_inputs;
  common_.reset();
  if (!kwargs_.empty()) {
    std::set<std::string> names;
    msgpack::sbuffer buffer;
    detail::Packer packer(buffer);
    packer.pack_map(static_cast<std::uint32_t>(kwargs_.size()));
    for (const auto& kw : kwargs_) {
      if (!names.insert(kw.name).second) {
        throw Error(Errc::BadOptions, fmt::format("ParallelMap(\"{}\"): named argument '{}' is "
                                                  "given twice",
                                                  function_, kw.name));
      }
      packer.pack(kw.name);
      buffer.write(kw.packed.data(), kw.packed.size());
    }
    common_ = std::string(buffer.data(), buffer.size());
  }
}

void ParallelMap::pack_task(std::uint64_t index, msgpack::sbuffer& frame) const {
  detail::Packer packer(frame);
  packer.pack_array(static_cast<std::uint32_t>(arguments_->size()));
  for (const auto& argument : *arguments_) {
    if (argument.iterated) {
      argument.pack_element(packer, index);
    } else {
      frame.write(argument.packed.data(), argument.packed.size());
    }
  }
}

JobSpec ParallelMap::job_spec() const {
  JobSpec spec;
  spec.function = function_;
  spec.total = n_inputs_;
  // The I/O thread packs each task just before sending it; the arguments stay shared with it.
  spec.task = [arguments = arguments_](std::uint64_t index, msgpack::sbuffer& frame) {
    detail::Packer packer(frame);
    packer.pack_array(static_cast<std::uint32_t>(arguments->size()));
    for (const auto& argument : *arguments) {
      if (argument.iterated) {
        argument.pack_element(packer, index);
      } else {
        frame.write(argument.packed.data(), argument.packed.size());
      }
    }
  };
  spec.common = common_;
  spec.max_retries = options_.max_retries;
  spec.retry_on_error = options_.retry_on_error;
  spec.timeout = options_.timeout;
  spec.cores = options_.cores;
  return spec;
}

Client& ParallelMap::client() const {
  if (options_.client != nullptr) return *options_.client;
  if (options_.cores > 1 && configured_broker().endpoint.empty()) {
    // The default client's local workers have one slot each: a task of C cores needs workers
    // of C slots (each pins its tasks to cores of their own).
    if (!own_client_) {
      ClientOptions options;
      options.local_worker_slots = options_.cores;
      own_client_ = std::make_shared<Client>(options);
    }
    return *own_client_;
  }
  return default_client();
}

ResultStream ParallelMap::stream() {
  if (resolved_for_ != options_.n_inputs) resolve();
  if (options_.verbose) {
    logger("client")->set_level(*options_.verbose ? spdlog::level::debug : spdlog::level::err);
  }
  auto& chosen = client();
  logger("client")->info("ParallelMap(\"{}\"): {} calls on {}", function_, n_inputs_,
                         chosen.endpoint());
  if (options_.dryrun) dry_run(chosen);
  return chosen.submit(job_spec());
}

void ParallelMap::for_each(const std::function<void(TaskResult&&)>& on_result) {
  auto results = stream();
  const bool bar =
      options_.progress == ProgressBar::On ||
      (options_.progress == ProgressBar::Auto && detail::Progress::stderr_is_terminal());
  detail::Progress progress(function_, n_inputs_, bar);
  while (auto result = results.next()) {
    progress.tick(!result->ok());
    on_result(std::move(*result));
  }
}

std::vector<TaskResult> ParallelMap::compute() {
  std::vector<TaskResult> results;
  for_each([&](TaskResult&& result) {
    if (results.empty()) results.resize(n_inputs_);
    const auto index = result.index();
    results[index] = std::move(result);
  });
  results.resize(n_inputs_);
  return results;
}

void ParallelMap::throw_if_failed(const std::vector<TaskResult>& results) const {
  std::vector<TaskResult> failures;
  for (const auto& result : results) {
    if (!result.ok()) failures.push_back(result);
  }
  if (!failures.empty()) throw MapError(function_, results.size(), std::move(failures));
}

void ParallelMap::dry_run(Client& chosen) {
  if (n_inputs_ == 0) return;
  msgpack::sbuffer frame;
  pack_task(0, frame);
  const auto started = std::chrono::steady_clock::now();
  std::size_t result_bytes = 0;
  std::string where;
  if (const auto* function = functions().find(function_)) {
    // Registered here: run it in this process, as a worker would.
    const auto args = msgpack::unpack(frame.data(), frame.size());
    msgpack::object_handle kwargs;
    if (common_) kwargs = msgpack::unpack(common_->data(), common_->size());
    msgpack::sbuffer out;
    msgpack::packer<msgpack::sbuffer> packer(out);
    TaskContext context(0, 1, nullptr);
    try {
      (*function)(args.get(), kwargs.get(), packer, context);
    } catch (const std::exception& e) {
      throw Error(Errc::TaskFailed, fmt::format("dry run of {}() on input 0 failed in this "
                                                "process: {}",
                                                function_, e.what()));
    }
    result_bytes = out.size();
    where = "in this process";
  } else {
    auto spec = job_spec();
    spec.total = 1;
    auto stream = chosen.submit(std::move(spec));
    auto result = stream.next();
    if (!result || !result->ok()) {
      throw Error(Errc::TaskFailed,
                  fmt::format("dry run of {}() on input 0 failed on a worker: {}", function_,
                              result ? result->error().message : std::string("no result")));
    }
    msgpack::sbuffer out;
    msgpack::pack(out, result->value());
    result_bytes = out.size();
    where = "on a worker, with the round trip";
  }
  const auto seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const auto serial = seconds * static_cast<double>(n_inputs_);
  std::string estimate = fmt::format("{} calls: about {:.3g} s of work", n_inputs_, serial);
  if (chosen.local_workers() > 0) {
    estimate += fmt::format(", about {:.3g} s on {} local workers", serial / chosen.local_workers(),
                            chosen.local_workers());
  }
  fmt::print(stderr, "acme: dry run of {}() on input 0 {}: {:.3g} s, result {} bytes; {}\n",
             function_, where, seconds, result_bytes, estimate);
}

}  // namespace acme
