// Trial-by-trial analysis of multichannel recordings, the way Syncopy and ACME users run it:
// one task per trial, each returning the band power of every channel and its peak frequency.
//
//   acme-trials [--trials 200] [--channels 16] [--samples 2000] [--rate 1000] [--check]
//
// The recordings are synthetic (an alpha rhythm whose frequency drifts from channel to channel,
// a beta burst on odd trials, and noise), generated inside the task from the trial number, so
// only the trial number travels to the worker, as when each task loads its own trial from disk.
// --check also runs every trial here, serially, and compares.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <numbers>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <msgpack.hpp>

#include <acme/parallel_map.hpp>
#include <acme/worker.hpp>

namespace {

struct Band {
  const char* name;
  double low;
  double high;
};
constexpr Band kBands[] = {{"theta", 4, 8}, {"alpha", 8, 13}, {"beta", 13, 30}};
constexpr std::size_t kBandCount = std::size(kBands);

/// What one trial gives: per channel, the power in each band and the frequency of the peak.
struct TrialResult {
  std::uint64_t trial = 0;
  std::vector<std::vector<double>> band_power{};  // [channel][band]
  std::vector<double> peak_hz{};                  // [channel]
  MSGPACK_DEFINE_MAP(trial, band_power, peak_hz)
  bool operator==(const TrialResult&) const = default;
};

/// One channel of one trial: an alpha rhythm at 9-12 Hz, a 20 Hz beta burst on odd trials,
/// white noise. Deterministic in (trial, channel, seed).
std::vector<double> record(std::uint64_t trial, std::uint32_t channel, std::uint32_t samples,
                           double rate, std::uint64_t seed) {
  std::mt19937_64 rng(seed ^ (trial * 0x9E3779B97F4A7C15ULL) ^ (std::uint64_t{channel} << 32U));
  std::normal_distribution<double> noise(0.0, 0.5);
  const double alpha_hz = 9.0 + 3.0 * channel / 16.0;
  const bool burst = trial % 2 == 1;
  std::vector<double> x(samples);
  for (std::uint32_t i = 0; i < samples; ++i) {
    const double t = i / rate;
    x[i] = std::sin(2 * std::numbers::pi * alpha_hz * t) + noise(rng);
    if (burst && t > 0.5 && t < 1.0) x[i] += 0.8 * std::sin(2 * std::numbers::pi * 20.0 * t);
  }
  return x;
}

/// Power at frequency bin k of x (a single DFT term).
double power_at(const std::vector<double>& x, std::size_t k) {
  const double w = 2 * std::numbers::pi * static_cast<double>(k) / static_cast<double>(x.size());
  double re = 0;
  double im = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    re += x[i] * std::cos(w * static_cast<double>(i));
    im -= x[i] * std::sin(w * static_cast<double>(i));
  }
  return (re * re + im * im) / static_cast<double>(x.size());
}

TrialResult analyse_trial(std::uint64_t trial, std::uint32_t channels, std::uint32_t samples,
                          double rate, std::uint64_t seed) {
  TrialResult result{.trial = trial};
  const double bin_hz = rate / samples;
  for (std::uint32_t c = 0; c < channels; ++c) {
    const auto x = record(trial, c, samples, rate, seed);
    std::vector<double> bands(kBandCount, 0.0);
    double peak_power = -1;
    double peak_hz = 0;
    for (std::size_t b = 0; b < kBandCount; ++b) {
      const auto first = static_cast<std::size_t>(std::ceil(kBands[b].low / bin_hz));
      const auto last = static_cast<std::size_t>(std::floor(kBands[b].high / bin_hz));
      for (std::size_t k = first; k < last; ++k) {
        const double p = power_at(x, k);
        bands[b] += p;
        if (p > peak_power) {
          peak_power = p;
          peak_hz = static_cast<double>(k) * bin_hz;
        }
      }
    }
    result.band_power.push_back(std::move(bands));
    result.peak_hz.push_back(peak_hz);
  }
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  acme::define("analyse_trial", analyse_trial);
  acme::serve_if_worker();  // the local workers are copies of this program: they serve here

  CLI::App app{"Band power of every channel of every trial, one task per trial"};
  std::uint64_t trials = 200;
  std::uint32_t channels = 16;
  std::uint32_t samples = 2000;
  double rate = 1000;
  std::uint64_t seed = 42;
  bool check = false;
  app.add_option("--trials", trials, "Trials (tasks)")->check(CLI::Range(1, 10'000'000));
  app.add_option("--channels", channels, "Channels per trial")->check(CLI::Range(1, 4096));
  app.add_option("--samples", samples, "Samples per channel")->check(CLI::Range(100, 1'000'000));
  app.add_option("--rate", rate, "Sampling rate, Hz")->check(CLI::Range(100.0, 100000.0));
  app.add_option("--seed", seed, "Seed of the synthetic recordings");
  app.add_flag("--check", check, "Also compute every trial serially here and compare");
  CLI11_PARSE(app, argc, argv);

  try {
    std::vector<std::uint64_t> trial_ids(trials);
    std::iota(trial_ids.begin(), trial_ids.end(), 0);
    // trial_ids is iterated; the other arguments are passed to every call (ACME's broadcast).
    acme::ParallelMap pmap("analyse_trial", trial_ids, channels, samples, rate, seed);
    const auto results = pmap.compute<TrialResult>();

    std::vector<double> mean(kBandCount, 0.0);
    double burst_beta = 0;
    double quiet_beta = 0;
    for (const auto& r : results) {
      for (const auto& channel : r.band_power) {
        for (std::size_t b = 0; b < kBandCount; ++b) mean[b] += channel[b];
      }
      (r.trial % 2 == 1 ? burst_beta : quiet_beta) += r.band_power[0][2];
    }
    std::printf("%llu trials x %u channels analysed\n", static_cast<unsigned long long>(trials),
                channels);
    for (std::size_t b = 0; b < kBandCount; ++b) {
      std::printf("  mean %-5s power per channel: %10.2f\n", kBands[b].name,
                  mean[b] / static_cast<double>(trials * channels));
    }
    std::printf("  alpha peak: channel 0 at %.1f Hz, channel %u at %.1f Hz\n",
                results[0].peak_hz[0], channels - 1, results[0].peak_hz[channels - 1]);
    if (trials >= 2) {
      std::printf("  beta power of channel 0: %.2f in burst trials vs %.2f in quiet ones\n",
                  burst_beta / static_cast<double>(trials / 2),
                  quiet_beta / static_cast<double>(trials - trials / 2));
    }
    if (check) {
      for (const auto trial : trial_ids) {
        if (!(analyse_trial(trial, channels, samples, rate, seed) == results[trial])) {
          std::fprintf(stderr, "acme-trials: trial %llu differs from the serial run\n",
                       static_cast<unsigned long long>(trial));
          return 1;
        }
      }
      std::printf("check: every trial equals the serial computation\n");
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "acme-trials: error: %s\n", e.what());
    return 1;
  }
}
