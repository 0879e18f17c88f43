// Wire constants of the acme protocol (docs/PROTOCOL.md), in the style of Majordomo's mdp.h.
// Pure constants: no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace acme::protocol {

/// PROTOCOL.md §12: the one version this code speaks.
inline constexpr std::uint32_t kVersion = 1;

/// PROTOCOL.md §5.2: the peer kind named by the signature frame "ACME" + kind + version.
enum class Peer : char { Client = 'C', Worker = 'W', Broker = 'B' };

/// PROTOCOL.md §5.3: the command frame is one byte. Values are unique across all peers.
enum class Command : std::uint8_t {
  Submit = 0x01,
  Cancel = 0x02,
  Heartbeat = 0x03,
  Bye = 0x04,
  Ready = 0x05,
  Results = 0x06,
  Accept = 0x07,
  Done = 0x08,
  Error = 0x09,
  Welcome = 0x0A,
  Tasks = 0x0B,
  Status = 0x0C,  // draft (PROTOCOL.md §6.1.5, §6.2.7)
};

/// PROTOCOL.md §6.5: how a task ended. Carried per result.
enum class TaskStatus : std::uint8_t {
  Ok = 0,           // the payload frame is the function's result
  Failed = 1,       // the function raised or returned an error; the payload is an error map
  TimedOut = 2,     // the task ran longer than the job's timeout; the payload is an error map
  Poisoned = 3,     // the task was on max_retries workers that died (broker only)
  Unsupported = 4,  // the worker does not have the function
  Cancelled = 5,    // the job was cancelled before the task ran (broker only, never sent today)
};
inline constexpr std::uint8_t kMaxTaskStatus = 5;

/// PROTOCOL.md §11: the code of an ERROR reply.
enum class ErrorCode : std::uint16_t {
  Malformed = 1,        // the message could not be decoded
  VersionMismatch = 2,  // the signature frame names another protocol version
  UnknownCommand = 3,   // the command byte is unknown, or not one this peer may send
  BadRequest = 4,       // well formed, but not valid now (e.g. SUBMIT for a job out of order)
  NoSuchFunction = 5,   // no worker offers the job's function (the job is failed)
  TooLarge = 6,         // a frame or message exceeds the broker's limits
  ShuttingDown = 7,     // the broker is stopping and accepts no more work
  Internal = 8,         // the broker failed; the message says how
};

/// PROTOCOL.md §5.6: limits every decoder enforces before reading further.
inline constexpr std::size_t kMaxHeaderBytes = std::size_t{64} * 1024;
inline constexpr std::size_t kMaxFunctionName = 255;
inline constexpr std::size_t kMaxFunctions = 4096;
inline constexpr std::size_t kMaxText = 4096;  // host, reason and error message strings

/// "CLIENT"-style names for logs.
[[nodiscard]] std::string_view command_name(Command command) noexcept;
[[nodiscard]] std::string_view peer_name(Peer peer) noexcept;
[[nodiscard]] std::string_view status_name(TaskStatus status) noexcept;
[[nodiscard]] std::string_view error_code_name(ErrorCode code) noexcept;

}  // namespace acme::protocol
