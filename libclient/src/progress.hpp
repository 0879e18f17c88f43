// A one-line progress bar on stderr: k/N, rate, ETA, failures. Drawn only when enabled (by
// default when stderr is a terminal) and at most 10 times a second. Private to libclient.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace acme::detail {

class Progress {
 public:
  Progress(std::string label, std::uint64_t total, bool enabled);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  /// Records one more result; redraws when the last drawing is 100 ms old.
  void tick(bool failed);
  /// Draws the final state and ends the line. Idempotent.
  void finish() noexcept;

  [[nodiscard]] static bool stderr_is_terminal() noexcept;
  /// The line as drawn (without the carriage return), for tests.
  [[nodiscard]] std::string line() const;

 private:
  void draw() const noexcept;

  std::string label_;
  std::uint64_t total_;
  bool enabled_;
  bool finished_ = false;
  std::uint64_t done_ = 0;
  std::uint64_t failed_ = 0;
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point drawn_{};
};

}  // namespace acme::detail
