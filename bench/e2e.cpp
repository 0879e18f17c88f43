// End-to-end benchmark: a real client, broker and 2 worker processes, the workloads of the peer
// comparison (shared bench README): (a) no-op tasks/s, (b) single-task round trip p50/p99,
// (c) efficiency of 200 x 10 ms sleeps on 2 workers, (d) MB/s of 1 MiB results.
//
//   acme-bench-e2e [--only abcd] [--n 20000] [--reps 3] [--broker ENDPOINT]
//
// Without --broker it runs what a user gets with no set-up: the embedded default (a broker
// thread in this process and 2 local workers, copies of this program with 1 slot each).
// With --broker it uses a running broker and its workers (start 2 with --slots 1).
// Prints one line per figure: "RESULT acme <name>: median <value> (range <min> - <max>, n=<reps>)".
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include <acme/client.hpp>
#include <acme/parallel_map.hpp>
#include <acme/worker.hpp>

namespace {

using Clock = std::chrono::steady_clock;
using Seconds = std::chrono::duration<double>;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(rank, v.size() - 1)];
}

void report(const char* name, const std::vector<double>& values, const char* unit,
            const char* what) {
  std::printf("RESULT acme %s: median %.4g %s (range %.4g - %.4g, n=%zu) [%s]\n", name,
              median(values), unit, *std::min_element(values.begin(), values.end()),
              *std::max_element(values.begin(), values.end()), values.size(), what);
  std::fflush(stdout);
}

/// Runs `function` over `inputs`, checks that every task succeeded, returns the wall time.
template <class T>
double timed_map(acme::Client& client, const std::string& function, const std::vector<T>& inputs) {
  acme::MapOptions options;
  options.client = &client;
  options.progress = acme::ProgressBar::Off;
  const auto start = Clock::now();
  acme::ParallelMap pmap(function, inputs, options);
  const auto results = pmap.compute();
  const double wall = Seconds(Clock::now() - start).count();
  for (const auto& r : results) {
    if (!r.ok()) throw std::runtime_error("task " + std::to_string(r.index()) + " failed");
  }
  return wall;
}

}  // namespace

int main(int argc, char** argv) {
  acme::define("noop", [](std::int64_t x) { return x; });
  acme::define("nap", [](double seconds) {
    std::this_thread::sleep_for(Seconds(seconds));
    return seconds;
  });
  acme::define("blob", [](std::uint64_t bytes) {
    std::vector<char> data(bytes, 'x');  // packed as msgpack bin
    return data;
  });
  acme::serve_if_worker();

  CLI::App app{"acme end-to-end benchmark: client, broker and 2 workers"};
  std::string only = "abcd";
  std::string broker;
  std::uint64_t n = 20000;
  int reps = 3;
  app.add_option("--only", only, "Workloads to run, from abcd");
  app.add_option("--n", n, "Tasks of workload (a)")->check(CLI::Range(100, 100'000'000));
  app.add_option("--reps", reps, "Repetitions of each workload")->check(CLI::Range(1, 100));
  app.add_option("--broker", broker, "Use this broker and its workers instead of local ones");
  CLI11_PARSE(app, argc, argv);

  try {
    auto connect = [&] {
      acme::ClientOptions options;
      if (broker.empty()) {
        options.embedded = true;
        options.local_workers = 2;
      } else {
        options.broker = broker;
      }
      return std::make_unique<acme::Client>(options);
    };
    // Each repetition gets a fresh client (and, embedded, a fresh broker and workers), warmed
    // up with a small map so that worker start-up is not timed.
    std::vector<double> a_tps;
    std::vector<double> b_p50;
    std::vector<double> b_p99;
    std::vector<double> c_eff;
    std::vector<double> d_mbps;
    for (int rep = 0; rep < reps; ++rep) {
      auto client = connect();
      timed_map(*client, "noop", std::vector<std::int64_t>(200, 1));
      if (only.find('a') != std::string::npos) {
        const double wall = timed_map(*client, "noop", std::vector<std::int64_t>(n, 7));
        a_tps.push_back(static_cast<double>(n) / wall);
      }
      if (only.find('b') != std::string::npos) {
        std::vector<double> rtt;
        for (int i = 0; i < 320; ++i) {
          const double wall = timed_map(*client, "noop", std::vector<std::int64_t>{i});
          if (i >= 20) rtt.push_back(wall * 1e3);
        }
        b_p50.push_back(percentile(rtt, 0.50));
        b_p99.push_back(percentile(rtt, 0.99));
      }
      if (only.find('c') != std::string::npos) {
        const double wall = timed_map(*client, "nap", std::vector<double>(200, 0.010));
        c_eff.push_back(1.0 / wall);  // 200 x 10 ms on 2 workers: 1.0 s with no overhead
      }
      if (only.find('d') != std::string::npos) {
        constexpr std::uint64_t kMiB = 1 << 20;
        const double wall = timed_map(*client, "blob", std::vector<std::uint64_t>(200, kMiB));
        d_mbps.push_back(200.0 * kMiB / wall / 1e6);
      }
    }
    const char* how =
        broker.empty() ? "embedded broker thread, 2 local workers x 1 slot" : "external broker";
    const std::string a_what = std::to_string(n) + " no-op tasks, one map, " + how;
    if (!a_tps.empty()) report("a_tps", a_tps, "tasks/s", a_what.c_str());
    if (!b_p50.empty()) {
      report("b_p50_ms", b_p50, "ms", "300 sequential 1-task maps, round trip p50");
      report("b_p99_ms", b_p99, "ms", "300 sequential 1-task maps, round trip p99");
    }
    if (!c_eff.empty()) report("c_efficiency", c_eff, "", "200 x 10 ms sleep, 1.0 s / wall");
    if (!d_mbps.empty()) report("d_mbps", d_mbps, "MB/s", "200 x 1 MiB results into the client");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "acme-bench-e2e: error: %s\n", e.what());
    return 1;
  }
}
