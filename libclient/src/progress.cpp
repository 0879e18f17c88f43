#include "progress.hpp"

#include <cstdio>
#include <utility>

#include <fmt/format.h>

#include <unistd.h>

namespace acme::detail {
namespace {

constexpr auto kRedraw = std::chrono::milliseconds(100);
constexpr std::uint64_t kBarWidth = 24;

std::string duration(double seconds) {
  const auto s = static_cast<std::uint64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
  return fmt::format("{}:{:02}", s / 60, s % 60);
}

std::string rate(double per_second) {
  if (per_second >= 1e6) return fmt::format("{:.1f}M/s", per_second / 1e6);
  if (per_second >= 1e4) return fmt::format("{:.1f}k/s", per_second / 1e3);
  return fmt::format("{:.1f}/s", per_second);
}

}  // namespace

Progress::Progress(std::string label, std::uint64_t total, bool enabled)
    : label_(std::move(label)),
      total_(total),
      enabled_(enabled && total > 0),
      started_(std::chrono::steady_clock::now()) {}

Progress::~Progress() {
  finish();
}

bool Progress::stderr_is_terminal() noexcept {
  return ::isatty(STDERR_FILENO) == 1;
}

void Progress::tick(bool failed) {
  ++done_;
  if (failed) ++failed_;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - drawn_ < kRedraw && done_ < total_) return;
  drawn_ = now;
  draw();
}

void Progress::finish() noexcept {
  if (!enabled_ || finished_) return;
  finished_ = true;
  draw();
  std::fputs("\n", stderr);
}

std::string Progress::line() const {
  const auto elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  const auto filled = total_ == 0 ? kBarWidth : done_ * kBarWidth / total_;
  std::string bar(filled, '#');
  bar.resize(kBarWidth, '.');
  const double per_second = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
  std::string eta = "--:--";
  if (done_ >= total_) {
    eta = "done in " + duration(elapsed);
  } else if (per_second > 0) {
    eta = "ETA " + duration(static_cast<double>(total_ - done_) / per_second);
  }
  return fmt::format("{} [{}] {}/{} {}% {} {}{}", label_, bar, done_, total_,
                     total_ == 0 ? 100 : done_ * 100 / total_, rate(per_second), eta,
                     failed_ > 0 ? fmt::format(" ({} failed)", failed_) : std::string());
}

void Progress::draw() const noexcept {
  try {
    const auto text = "\r\x1b[K" + line();
    std::fwrite(text.data(), 1, text.size(), stderr);
    std::fflush(stderr);
  } catch (...) {  // NOLINT(bugprone-empty-catch): a progress bar must never fail the map
  }
}

}  // namespace acme::detail
