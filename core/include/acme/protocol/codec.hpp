// Encodes commands into frames and decodes peer input into commands (docs/PROTOCOL.md §5-6).
// Decoding never throws and never reads past its input: every rejection is a DecodeError.
// Payload frames are never copied or decoded here; decoded messages hold views of them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include <acme/protocol/commands.hpp>
#include <acme/protocol/version.hpp>
#include <acme/result.hpp>

namespace acme::protocol {

/// One frame of a multipart message: a view; the caller keeps the bytes alive.
using Frame = std::span<const std::byte>;

/// Views a string's bytes as a frame.
inline Frame as_frame(std::string_view text) noexcept {
  return std::as_bytes(std::span<const char>(text.data(), text.size()));
}

/// One value per rejection rule of PROTOCOL.md §5-6.
enum class DecodeError : std::uint8_t {
  TooFewFrames,          // fewer than the 3 frames every message has (§5)
  NotAcme,               // the signature frame does not start with "ACME" (§5.2)
  UnknownPeer,           // the signature names no known peer kind (§5.2)
  VersionMismatch,       // the signature names another protocol version (§12)
  WrongPeer,             // a valid signature of a peer that may not send to this receiver
  UnknownCommand,        // the command frame is not one byte, or names no command (§5.3)
  CommandNotAllowed,     // a known command this peer may not send (§6 table)
  HeaderTooLarge,        // the header frame exceeds kMaxHeaderBytes (§5.6)
  MalformedHeader,       // the header is not one msgpack map, or is truncated (§5.4)
  MissingField,          // a required header field is absent
  BadField,              // a header field has the wrong type or a value out of range
  PayloadCountMismatch,  // the number of payload frames is not what the header says (§5.5)
};

[[nodiscard]] std::string_view describe(DecodeError error) noexcept;

/// The signature frame, decoded: who sent it and which version it speaks.
struct Signature {
  Peer peer = Peer::Client;
  std::uint32_t version = kVersion;
};

/// A decoded message: the command's header fields and views of its payload frames.
template <class C>
struct Message {
  C command;
  std::span<const Frame> payload;
};

/// Reads a signature frame ("ACME" + peer letter + decimal version). Succeeds for any version,
/// so that a receiver can say which version a peer speaks; decode_* reject other versions.
[[nodiscard]] Result<Signature, DecodeError> decode_signature(Frame frame) noexcept;

/// Decoders for each direction; `frames` starts at the signature frame (after any routing
/// envelope). The broker peeks with decode_signature to choose decode_client or decode_worker.
[[nodiscard]] Result<Message<ClientCommand>, DecodeError> decode_client(
    std::span<const Frame> frames) noexcept;
[[nodiscard]] Result<Message<WorkerCommand>, DecodeError> decode_worker(
    std::span<const Frame> frames) noexcept;
[[nodiscard]] Result<Message<ToClientCommand>, DecodeError> decode_for_client(
    std::span<const Frame> frames) noexcept;
[[nodiscard]] Result<Message<ToWorkerCommand>, DecodeError> decode_for_worker(
    std::span<const Frame> frames) noexcept;

/// The three frames every message starts with; payload frames follow, supplied by the caller.
struct Encoded {
  std::string_view signature;  // static storage
  Command command = Command::Heartbeat;
  std::string header;  // msgpack map

  [[nodiscard]] std::byte command_byte() const noexcept { return static_cast<std::byte>(command); }
};

/// The signature frame a peer of this kind sends.
[[nodiscard]] std::string_view signature(Peer from) noexcept;

[[nodiscard]] Encoded encode(const Submit& command);
[[nodiscard]] Encoded encode(const CancelJob& command);
[[nodiscard]] Encoded encode(Peer from, const Heartbeat& command);
[[nodiscard]] Encoded encode(Peer from, const Bye& command);
[[nodiscard]] Encoded encode(const Accept& command);
[[nodiscard]] Encoded encode(const JobResults& command);
[[nodiscard]] Encoded encode(const Done& command);
[[nodiscard]] Encoded encode(const Error& command);
[[nodiscard]] Encoded encode(const Ready& command);
[[nodiscard]] Encoded encode(const TaskResults& command);
[[nodiscard]] Encoded encode(const Welcome& command);
[[nodiscard]] Encoded encode(const Tasks& command);
[[nodiscard]] Encoded encode(const CancelTasks& command);
[[nodiscard]] Encoded encode(const StatusRequest& command);
/// The header may exceed kMaxHeaderBytes when `workers` is long: the broker trims the list
/// and counts the rest in `workers_omitted` (PROTOCOL.md §6.2.7).
[[nodiscard]] Encoded encode(const StatusReply& command);

/// Payload frames of an error result (§6.5): a msgpack map {"message", "kind", ...}.
struct ErrorInfo {
  std::string message;
  std::string kind;       // e.g. "std::runtime_error", "ValueError", "Poisoned"
  std::string traceback;  // may be empty
  std::string host;
  std::uint32_t pid = 0;
  friend bool operator==(const ErrorInfo&, const ErrorInfo&) = default;
};
[[nodiscard]] std::string encode_error_info(const ErrorInfo& info);
[[nodiscard]] Result<ErrorInfo, DecodeError> decode_error_info(Frame frame) noexcept;

}  // namespace acme::protocol
