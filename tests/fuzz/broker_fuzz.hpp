// The input format of broker_fuzz.cpp and of the seeds in corpus-broker/: records of
// [op: 1 byte][length: 2 bytes little-endian][body: length bytes]. The low two bits of op pick
// one of four peers, the next two bits the action. A short or lying length is clamped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace acme::fuzz {

inline constexpr std::size_t kPeers = 4;
inline constexpr std::size_t kMaxRecords = 64;
/// The broker's --max-message in the fuzzer: small, so that fuzzed inputs reach ERROR too-large.
inline constexpr std::size_t kMaxClientMessage = 2048;

enum class Action : std::uint8_t { Send = 0, Answer = 1, Sync = 2, Vanish = 3 };

struct Record {
  std::size_t peer = 0;
  Action action = Action::Send;
  std::span<const std::byte> body{};
};

inline std::vector<Record> split_records(std::span<const std::byte> input) {
  std::vector<Record> records;
  while (!input.empty()) {
    const auto op = std::to_integer<unsigned>(input[0]);
    std::size_t size = 0;
    if (input.size() >= 3) {
      size = std::to_integer<std::size_t>(input[1]) | (std::to_integer<std::size_t>(input[2]) << 8);
    }
    input = input.subspan(std::min<std::size_t>(3, input.size()));
    size = std::min(size, input.size());
    records.push_back({.peer = op % kPeers,
                       .action = static_cast<Action>((op / kPeers) % 4),
                       .body = input.first(size)});
    input = input.subspan(size);
  }
  return records;
}

/// One record, for writing seeds. Throws std::invalid_argument for a body of 64 KiB or more.
inline std::string record(std::size_t peer, Action action, const std::string& body = {}) {
  if (body.size() > 0xFFFF) throw std::invalid_argument("record body too large for a seed");
  std::string out(1, static_cast<char>(peer % kPeers + kPeers * static_cast<std::size_t>(action)));
  out += static_cast<char>(body.size() & 0xFF);
  out += static_cast<char>(body.size() >> 8);
  return out + body;
}

}  // namespace acme::fuzz
