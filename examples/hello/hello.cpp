// Hello map: square the numbers 0..N-1 on local workers, with no set-up.
//
//   acme-hello [N]        # default 100; uses $ACME_BROKER when set, else local workers
//
// The workers are copies of this program: serve_if_worker() is where they serve `square`.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <numeric>
#include <string>
#include <vector>

#include <acme/parallel_map.hpp>
#include <acme/worker.hpp>

int main(int argc, char** argv) {
  acme::define("square", [](std::int64_t x) { return x * x; });
  acme::serve_if_worker();  // a copy started as a worker serves `square` here and exits

  try {
    const std::int64_t n = argc > 1 ? std::stoll(argv[1]) : 100;  // NOLINT: argv access
    std::vector<std::int64_t> inputs(static_cast<std::size_t>(n));
    std::iota(inputs.begin(), inputs.end(), 0);

    acme::ParallelMap pmap("square", inputs);
    const auto squares = pmap.compute<std::int64_t>();

    for (std::size_t i = 0; i < squares.size(); ++i) {
      if (squares[i] != inputs[i] * inputs[i]) {
        std::fprintf(stderr, "acme-hello: wrong result for %zu\n", i);
        return 1;
      }
    }
    std::printf(
        "squared %zu numbers on %s; the last is %lld\n", squares.size(),
        std::getenv("ACME_BROKER") != nullptr ? "the broker in ACME_BROKER" : "local workers",
        static_cast<long long>(squares.empty() ? 0 : squares.back()));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "acme-hello: error: %s\n", e.what());
    return 1;
  }
}
