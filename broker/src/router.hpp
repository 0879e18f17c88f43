// The broker's ROUTER socket: frames in, frames out (PROTOCOL.md §4-5). Receives whole messages
// into reused buffers without blocking, sends encoded commands to a routing identity, and maps
// decode errors to ERROR codes (§11). Private to the broker; holds no protocol state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <zmq.hpp>

#include <acme/protocol/codec.hpp>

namespace acme::broker {

/// One received message: parts[0] is the routing identity, parts[1..] what the peer sent.
struct Incoming {
  std::vector<zmq::message_t> parts{};
  std::vector<protocol::Frame> frames{};  // views of parts[1..], what the decoders take

  /// Index in `parts` of payload frame 0 (after identity, signature, command and header).
  static constexpr std::size_t kPayloadPart = 4;

  [[nodiscard]] std::string_view identity() const noexcept {
    return {static_cast<const char*>(parts.front().data()), parts.front().size()};
  }
  /// Bytes of everything the peer sent (for the client message size limit, §5.6).
  [[nodiscard]] std::size_t size() const noexcept;
};

class Router {
 public:
  /// Creates the ROUTER socket and binds it. Throws acme::Error (Errc::System) naming the
  /// endpoint and the reason.
  Router(zmq::context_t& context, const std::string& endpoint);

  /// The bound endpoint, port 0 resolved and tcp://* shown with the host name.
  [[nodiscard]] const std::string& endpoint() const noexcept { return endpoint_; }
  [[nodiscard]] zmq::socket_t& socket() noexcept { return socket_; }

  /// Receives one whole message into `in` without blocking; false when none is ready.
  bool receive(Incoming& in);

  /// Sends [identity] | signature | command | header | payload..., moving the payload frames.
  /// Returns false when the peer is gone (ROUTER_MANDATORY: EHOSTUNREACH): nothing is sent.
  bool send(std::string_view identity, const protocol::Encoded& message,
            std::span<zmq::message_t> payload = {});

  /// Messages not sent because the peer was gone.
  [[nodiscard]] std::uint64_t unroutable() const noexcept { return unroutable_; }

 private:
  zmq::socket_t socket_;
  std::string endpoint_;
  std::uint64_t unroutable_ = 0;
};

/// PROTOCOL.md §11: the ERROR code a client gets for a decode error; nullopt when the message
/// is dropped instead (no acme signature, or a broker signature).
[[nodiscard]] std::optional<protocol::ErrorCode> client_error_code(
    protocol::DecodeError error) noexcept;

/// The `job` field of a header that failed to decode, if it can be read, so that the ERROR can
/// name the job (§6.1.1). Never throws; reads at most kMaxHeaderBytes.
[[nodiscard]] std::optional<std::uint64_t> peek_job(protocol::Frame header) noexcept;

/// The message of a version-mismatch refusal, naming both versions (§11).
[[nodiscard]] std::string version_mismatch_message(std::uint32_t peer_version);

}  // namespace acme::broker
