// acme-map: runs FUNCTION once per argument on acme workers and prints the results in input
// order. Without --broker (or $ACME_BROKER) it runs an embedded broker and local workers that
// are copies of acme-map itself, which serve the builtins (echo, sleep, fail, crash, exec).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <acme/client.hpp>
#include <acme/log.hpp>
#include <acme/worker.hpp>

#include "progress.hpp"
#include <nlohmann/json.hpp>

namespace {

constexpr int kExitFailed = 1;  // a task failed, or a runtime error
constexpr int kExitUsage = 2;
constexpr std::size_t kListedFailures = 20;

using Json = nlohmann::json;

/// An argument is JSON when it parses as JSON, else a string.
Json parse_argument(const std::string& text) {
  auto value = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  return value.is_discarded() ? Json(text) : value;
}

/// The task frame: a msgpack array holding the one positional argument.
std::string task_frame(const Json& argument) {
  std::string frame(1, static_cast<char>(0x91));  // fixarray of 1
  Json::to_msgpack(argument, frame);
  return frame;
}

template <class J>
std::string dump(const J& value) {
  return value.dump(-1, ' ', false, J::error_handler_t::replace);
}

/// A result value as JSON; msgpack values JSON cannot hold (non-string map keys) fall back to
/// msgpack-c's own text form.
std::string to_text(const msgpack::object& value, bool raw_strings) {
  if (raw_strings && value.type == msgpack::type::STR) {
    return {value.via.str.ptr, value.via.str.size};
  }
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, value);
  try {
    const auto* begin = reinterpret_cast<const std::uint8_t*>(buffer.data());  // NOLINT
    return dump(Json::from_msgpack(begin, begin + buffer.size()));
  } catch (const Json::exception&) {
    std::ostringstream text;
    text << value;
    return text.str();
  }
}

std::string json_line(const acme::TaskResult& result) {
  if (result.ok()) {
    return fmt::format(R"({{"index":{},"ok":true,"value":{}}})", result.index(),
                       to_text(result.value(), false));
  }
  const nlohmann::ordered_json line = {{"index", result.index()},
                                       {"ok", false},
                                       {"error", result.error().message},
                                       {"kind", result.error().kind}};
  return dump(line);
}

/// argv up to and including FUNCTION (the first argument that is neither an option nor an
/// option's value; "--" ends the options), and the index of the first ARG.
std::pair<std::vector<char*>, int> split_command_line(int argc, char** argv) {
  static const std::vector<std::string> kWithValue = {"--broker",  "--local",   "--cores",
                                                      "--timeout", "--retries", "--log-level"};
  std::vector<char*> head{argv[0]};  // NOLINT: argv
  int i = 1;
  while (i < argc) {
    const std::string arg = argv[i];  // NOLINT: argv
    if (arg == "--") {
      head.push_back(argv[i++]);  // NOLINT: argv
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') break;
    head.push_back(argv[i++]);  // NOLINT: argv
    if (std::find(kWithValue.begin(), kWithValue.end(), arg) != kWithValue.end() && i < argc) {
      head.push_back(argv[i++]);  // NOLINT: argv
    }
  }
  if (i < argc) head.push_back(argv[i++]);  // FUNCTION  // NOLINT: argv
  return {head, i};
}

int run(int argc, char** argv) {
  CLI::App app{
      "Runs FUNCTION once per ARG on acme workers and prints one result per line, in input "
      "order. Each ARG is parsed as JSON when it parses as JSON, else taken as a string; it is "
      "the single argument of one call. Without ARGs, each line of stdin is one ARG.\n"
      "Without --broker or $ACME_BROKER, acme-map runs a broker and local workers itself.",
      "acme-map"};
  std::string broker;
  std::uint32_t local = 0;
  std::uint32_t cores = 1;
  bool json = false;
  double timeout = 0;
  std::uint32_t retries = 0;
  std::string log_level = "warn";
  std::string function;
  std::vector<std::string> inputs;
  auto* broker_option = app.add_option("--broker", broker,
                                       "Broker endpoint, e.g. tcp://node1:5555 (default: "
                                       "$ACME_BROKER, else local workers)");
  auto* local_option = app.add_option("--local", local,
                                      "Run an embedded broker with N local workers (the default "
                                      "without --broker and $ACME_BROKER, with N = the cores "
                                      "this process may use)")
                           ->check(CLI::Range(1U, 4096U))
                           ->excludes(broker_option);
  app.add_option("--cores", cores,
                 "Cores each task uses (default 1). A worker with S slots runs at most S/N such "
                 "tasks at once, each pinned to its own cores when the worker pins; local "
                 "workers get N slots each, and without --local there are (cores this process "
                 "may use)/N of them. exec tells the command in ACME_TASK_CORES and "
                 "OMP_NUM_THREADS.")
      ->check(CLI::Range(1U, 65536U));
  app.add_flag("--json", json,
               "Print one JSON object per line: {\"index\":i,\"ok\":true,\"value\":...} or "
               "{\"index\":i,\"ok\":false,\"error\":\"...\",\"kind\":\"...\"}");
  app.add_option("--timeout", timeout, "Longest run time of one task in seconds (0: none)")
      ->check(CLI::Range(0.0, 4.0e6));
  auto* retries_option =
      app.add_option("--retries", retries, "Run a failing task up to N more times");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->check([](const std::string& text) {
        return acme::parse_log_level(text) ? std::string() : "unknown log level " + text;
      });
  app.add_option("FUNCTION", function,
                 "Function the workers offer (acme-worker's: echo, sleep, "
                 "fail, crash, exec)")
      ->required();
  std::vector<std::string> unused;
  app.add_option("ARG", unused, "Arguments, one call each (default: the lines of stdin)");
  // Everything after FUNCTION is an ARG, verbatim: CLI11 would take "-3" for an option and
  // split "[1,2]" into two values. So CLI11 sees only the options and FUNCTION.
  auto [head, args_from] = split_command_line(argc, argv);
  for (int i = args_from; i < argc; ++i) inputs.emplace_back(argv[i]);  // NOLINT: argv
  try {
    app.parse(static_cast<int>(head.size()), head.data());
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }
  acme::set_log_level(*acme::parse_log_level(log_level));

  if (args_from >= argc) {
    std::string line;
    while (std::getline(std::cin, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      inputs.push_back(std::move(line));
    }
  }
  std::vector<std::string> frames;
  frames.reserve(inputs.size());
  for (const auto& input : inputs) frames.push_back(task_frame(parse_argument(input)));

  acme::ClientOptions options;
  options.broker = broker;
  if (local_option->count() > 0) {
    options.embedded = true;
    options.local_workers = local;
  }
  options.local_worker_slots = cores;
  if (options.embedded || (broker.empty() && acme::configured_broker().endpoint.empty())) {
    // The local workers are copies of acme-map: they offer the builtins and nothing else, so
    // an unknown name fails now instead of after the broker's no-worker timeout.
    acme::FunctionRegistry offered;
    acme::add_builtins(offered);
    if (offered.find(function) == nullptr && acme::functions().find(function) == nullptr) {
      auto names = offered.names();
      throw acme::Error(acme::Errc::UnknownFunction,
                        fmt::format("no worker offers function '{}' (the local workers offer: {}); "
                                    "use --broker to reach workers with other functions",
                                    function, fmt::join(names, ", ")));
    }
  }
  acme::Client client(options);

  acme::JobSpec spec;
  spec.function = function;
  spec.total = frames.size();
  spec.task = [&frames](std::uint64_t index, msgpack::sbuffer& frame) {
    frame.write(frames[index].data(), frames[index].size());
  };
  spec.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(timeout * 1000.0));
  spec.cores = cores;
  if (retries_option->count() > 0) {
    spec.max_retries = retries + 1;
    spec.retry_on_error = true;
  }
  auto stream = client.submit(std::move(spec));

  acme::detail::Progress progress(function, frames.size(),
                                  acme::detail::Progress::stderr_is_terminal());
  std::map<std::uint64_t, acme::TaskResult> waiting;  // arrived before their turn
  std::vector<acme::TaskResult> failures;
  std::uint64_t next = 0;
  while (auto result = stream.next()) {
    progress.tick(!result->ok());
    const auto index = result->index();
    waiting.emplace(index, std::move(*result));
    for (auto it = waiting.find(next); it != waiting.end(); it = waiting.find(++next)) {
      const auto& r = it->second;
      if (json) {
        std::cout << json_line(r) << '\n';
      } else {
        // A failed task prints an empty line, so that line i of the output is input i.
        std::cout << (r.ok() ? to_text(r.value(), true) : std::string()) << '\n';
      }
      if (!r.ok()) failures.push_back(r);
      waiting.erase(it);
    }
  }
  progress.finish();
  std::cout.flush();
  if (failures.empty()) return 0;
  fmt::print(stderr, "acme-map: {} of {} tasks failed:\n", failures.size(), frames.size());
  for (std::size_t i = 0; i < failures.size() && i < kListedFailures; ++i) {
    const auto& failure = failures[i];
    fmt::print(stderr, "  input {} ({}): {}{}\n", failure.index(), inputs[failure.index()],
               failure.error().message,
               failure.error().kind.empty() ? "" : " [" + failure.error().kind + "]");
  }
  if (failures.size() > kListedFailures) {
    fmt::print(stderr, "  ... and {} more\n", failures.size() - kListedFailures);
  }
  return kExitFailed;
}

}  // namespace

int main(int argc, char** argv) {
  acme::serve_if_worker();  // first: a copy started as a local worker serves the builtins here
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "acme-map: error: {}\n", e.what());
  } catch (...) {
    fmt::print(stderr, "acme-map: error: unknown exception\n");
  }
  return kExitFailed;
}
