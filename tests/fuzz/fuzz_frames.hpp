// The input format of decode_fuzz.cpp and of the seeds in corpus/: byte 0 = frame count
// (mod 16); then, for each frame but the last, a 2-byte little-endian length and that many
// bytes; the last frame is whatever remains. Short or lying lengths are clamped, never rejected.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <acme/protocol/codec.hpp>

namespace acme::fuzz {

inline constexpr std::size_t kMaxFrames = 16;

/// Splits a fuzzer input into frames that view it.
inline std::vector<protocol::Frame> split_frames(std::span<const std::byte> input) {
  std::vector<protocol::Frame> frames;
  if (input.empty()) return frames;
  const std::size_t count = std::to_integer<std::size_t>(input[0]) % kMaxFrames;
  auto rest = input.subspan(1);
  for (std::size_t i = 0; i < count; ++i) {
    if (i + 1 == count) {
      frames.push_back(rest);
      break;
    }
    std::size_t size = 0;
    if (rest.size() >= 2) {
      size = std::to_integer<std::size_t>(rest[0]) | (std::to_integer<std::size_t>(rest[1]) << 8);
    }
    rest = rest.subspan(std::min<std::size_t>(2, rest.size()));
    size = std::min(size, rest.size());
    frames.push_back(rest.first(size));
    rest = rest.subspan(size);
  }
  return frames;
}

/// The inverse of split_frames, for writing seeds. Throws std::invalid_argument for more than
/// 15 frames, or a frame (but the last) of 64 KiB or more.
inline std::string join_frames(const std::vector<std::string>& frames) {
  if (frames.size() >= kMaxFrames) throw std::invalid_argument("too many frames for a seed");
  std::string input(1, static_cast<char>(frames.size()));
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const auto& frame = frames[i];
    if (i + 1 < frames.size()) {
      if (frame.size() > 0xFFFF) throw std::invalid_argument("frame too large for a seed");
      input += static_cast<char>(frame.size() & 0xFF);
      input += static_cast<char>(frame.size() >> 8);
    }
    input += frame;
  }
  return input;
}

/// A message's frames as strings: signature, command, header, then `payloads`.
inline std::vector<std::string> frames_of(const protocol::Encoded& encoded,
                                          std::vector<std::string> payloads = {}) {
  std::vector<std::string> frames{std::string(encoded.signature),
                                  std::string(1, static_cast<char>(encoded.command)),
                                  encoded.header};
  for (auto& payload : payloads) frames.push_back(std::move(payload));
  return frames;
}

/// A whole file (a seed), for the corpus generators' --check; empty if it cannot be read.
inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline std::string_view as_text(protocol::Frame frame) {
  return {reinterpret_cast<const char*>(frame.data()), frame.size()};
}

}  // namespace acme::fuzz
