// An acme-worker plugin with three small signal-processing functions:
//   acme-worker --plugin ./libacme_example_plugin.so
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <vector>

#include <acme/ndarray.hpp>
#include <acme/worker.hpp>

namespace {

/// The arithmetic mean of `values`.
double mean(const std::vector<double>& values) {
  if (values.empty()) throw std::invalid_argument("mean() of an empty vector");
  double sum = 0;
  for (const double v : values) sum += v;
  return sum / static_cast<double>(values.size());
}

/// Mean power of `signal` (sampled at `rate` Hz) in the band [low, high] Hz, from its discrete
/// Fourier transform. O(n^2): for examples, not for long signals.
double bandpower(const std::vector<double>& signal, double rate, double low, double high) {
  if (signal.empty() || rate <= 0 || low < 0 || high < low) {
    throw std::invalid_argument("bandpower() needs a signal, rate > 0 and 0 <= low <= high");
  }
  const auto n = signal.size();
  double power = 0;
  std::size_t bins = 0;
  for (std::size_t k = 0; k <= n / 2; ++k) {
    const double frequency = static_cast<double>(k) * rate / static_cast<double>(n);
    if (frequency < low || frequency > high) continue;
    double re = 0;
    double im = 0;
    for (std::size_t t = 0; t < n; ++t) {
      const double angle =
          2 * std::numbers::pi * static_cast<double>(k * t) / static_cast<double>(n);
      re += signal[t] * std::cos(angle);
      im -= signal[t] * std::sin(angle);
    }
    power += (re * re + im * im) / static_cast<double>(n * n);
    ++bins;
  }
  return bins == 0 ? 0.0 : power / static_cast<double>(bins);
}

/// `signal` times `factor`, element by element: a numpy float64 array in (msgpack ext 1, read
/// in place), a numpy array of the same shape out.
acme::NdArray scale(const acme::NdArrayView& signal, double factor) {
  auto values = signal.copy_values<double>();
  for (auto& v : values) v *= factor;
  return acme::NdArray::of<double>(signal.shape, values);
}

}  // namespace

ACME_PLUGIN(registry) {
  registry.add("mean", mean);
  registry.add("bandpower", bandpower);
  registry.add("scale", scale);
}
