// ZeroMQ framing of protocol messages (PROTOCOL.md §5): [envelope] | signature | command |
// header | payload... The payload frames are zmq::message_t so that the broker forwards them
// without a copy.
#pragma once

#include <chrono>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <zmq.hpp>

#include <acme/protocol/codec.hpp>

namespace acme::net {

/// One received multipart message and the borrowed views the decoders take.
struct Received {
  std::vector<zmq::message_t> parts;

  /// The frames from `first` on, as spans over `parts` (valid while `parts` lives).
  [[nodiscard]] std::vector<protocol::Frame> frames(std::size_t first = 0) const;
};

/// Receives one whole multipart message; nullopt when none is ready (ZMQ_DONTWAIT) or the
/// socket timed out.
[[nodiscard]] std::optional<Received> receive(zmq::socket_t& socket,
                                              zmq::recv_flags flags = zmq::recv_flags::none);

/// Sends [identity] | signature | command | header | payload..., moving the payload frames.
/// Returns false when the message could not be queued (ZMQ_DONTWAIT and the pipe is full, or
/// ROUTER_MANDATORY and the peer is gone).
bool send(zmq::socket_t& socket, const protocol::Encoded& message,
          std::span<zmq::message_t> payload = {}, const zmq::message_t* identity = nullptr,
          zmq::send_flags flags = zmq::send_flags::none);

/// A frame holding a copy of `bytes`.
[[nodiscard]] zmq::message_t frame(std::string_view bytes);

/// The endpoint a socket is bound to, with tcp://0.0.0.0 shown as this host's name so that a
/// printed address works from other nodes, and tcp://127.0.0.1 kept as it is.
[[nodiscard]] std::string bound_endpoint(zmq::socket_t& socket);

/// This host's name (gethostname).
[[nodiscard]] std::string hostname();

/// The socket options every acme socket sets: a linger of 500 ms (a closing peer's BYE gets out,
/// but nothing keeps a process alive for long), and TCP keep-alives so half-open links die.
void configure(zmq::socket_t& socket);

}  // namespace acme::net
