#include "router.hpp"

#include <cerrno>
#include <string_view>

#include <fmt/format.h>
#include <msgpack.hpp>

#include <acme/error.hpp>
#include <acme/net/wire.hpp>

namespace acme::broker {

std::size_t Incoming::size() const noexcept {
  std::size_t total = 0;
  for (std::size_t i = 1; i < parts.size(); ++i) total += parts[i].size();
  return total;
}

Router::Router(zmq::context_t& context, const std::string& endpoint)
    : socket_(context, zmq::socket_type::router) {
  net::configure(socket_);
  // PROTOCOL.md §4: never lose a message to a live peer. An unknown identity fails with
  // EHOSTUNREACH instead of vanishing, and no high-water mark drops or blocks anything: libzmq's
  // pipe keeps what a slow peer has not read yet (clients are bounded by their window, workers
  // by their credit).
  socket_.set(zmq::sockopt::router_mandatory, 1);
  socket_.set(zmq::sockopt::sndhwm, 0);
  socket_.set(zmq::sockopt::rcvhwm, 0);
  try {
    socket_.bind(endpoint);
  } catch (const zmq::error_t& error) {
    throw Error(Errc::System, fmt::format("cannot bind {}: {}", endpoint, error.what()));
  }
  endpoint_ = net::bound_endpoint(socket_);
}

bool Router::receive(Incoming& in) {
  in.parts.clear();
  in.frames.clear();
  while (true) {
    zmq::message_t part;
    // A multipart message arrives whole (ZeroMQ guarantees atomicity): once its first part is
    // here, the rest is too, so only the first receive can come back empty.
    if (!socket_.recv(part, zmq::recv_flags::dontwait)) {
      if (in.parts.empty()) return false;
      continue;
    }
    const bool more = part.more();
    in.parts.push_back(std::move(part));
    if (!more) break;
  }
  for (std::size_t i = 1; i < in.parts.size(); ++i) {
    in.frames.emplace_back(static_cast<const std::byte*>(in.parts[i].data()), in.parts[i].size());
  }
  return true;
}

bool Router::send(std::string_view identity, const protocol::Encoded& message,
                  std::span<zmq::message_t> payload) {
  constexpr auto kMore = zmq::send_flags::sndmore | zmq::send_flags::dontwait;
  constexpr auto kLast = zmq::send_flags::dontwait;
  try {
    // Only the identity frame can fail: after it, libzmq takes the whole message (no HWM).
    if (!socket_.send(zmq::const_buffer(identity.data(), identity.size()), kMore)) {
      ++unroutable_;
      return false;
    }
  } catch (const zmq::error_t& error) {
    if (error.num() != EHOSTUNREACH) throw;
    ++unroutable_;
    return false;
  }
  socket_.send(zmq::const_buffer(message.signature.data(), message.signature.size()), kMore);
  const auto command = message.command_byte();
  socket_.send(zmq::const_buffer(&command, 1), kMore);
  socket_.send(zmq::const_buffer(message.header.data(), message.header.size()),
               payload.empty() ? kLast : kMore);
  for (std::size_t i = 0; i < payload.size(); ++i) {
    socket_.send(payload[i], i + 1 == payload.size() ? kLast : kMore);
  }
  return true;
}

std::optional<protocol::ErrorCode> client_error_code(protocol::DecodeError error) noexcept {
  using protocol::DecodeError;
  using protocol::ErrorCode;
  switch (error) {
    case DecodeError::NotAcme:
    case DecodeError::UnknownPeer:
    case DecodeError::WrongPeer: return std::nullopt;
    case DecodeError::VersionMismatch: return ErrorCode::VersionMismatch;
    case DecodeError::UnknownCommand:
    case DecodeError::CommandNotAllowed: return ErrorCode::UnknownCommand;
    case DecodeError::HeaderTooLarge: return ErrorCode::TooLarge;
    case DecodeError::TooFewFrames:
    case DecodeError::MalformedHeader:
    case DecodeError::MissingField:
    case DecodeError::BadField:
    case DecodeError::PayloadCountMismatch: return ErrorCode::Malformed;
  }
  return ErrorCode::Malformed;
}

std::optional<std::uint64_t> peek_job(protocol::Frame header) noexcept {
  if (header.empty() || header.size() > protocol::kMaxHeaderBytes) return std::nullopt;
  try {
    // Small limits: a header worth peeking at is one flat map; anything bigger is refused
    // before msgpack allocates for it.
    const msgpack::unpack_limit limit(1024, 64, protocol::kMaxHeaderBytes, 0, 0, 3);
    // NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): char may alias any bytes
    const auto handle = msgpack::unpack(reinterpret_cast<const char*>(header.data()), header.size(),
                                        nullptr, nullptr, limit);
    const auto& map = handle.get();
    if (map.type != msgpack::type::MAP) return std::nullopt;
    // NOLINTBEGIN(cppcoreguidelines-pro-type-union-access): each access checks the tag first
    for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
      const auto& kv =
          map.via.map.ptr[i];  // NOLINT(cppcoreguidelines-pro-bounds-pointer-arithmetic)
      if (kv.key.type != msgpack::type::STR) continue;
      if (std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) != "job") continue;
      if (kv.val.type != msgpack::type::POSITIVE_INTEGER) return std::nullopt;
      return kv.val.via.u64;
    }
    // NOLINTEND(cppcoreguidelines-pro-type-union-access)
  } catch (...) {  // NOLINT(bugprone-empty-catch): any failure means "no job to name"
  }
  return std::nullopt;
}

std::string version_mismatch_message(std::uint32_t peer_version) {
  return fmt::format("protocol version mismatch: peer speaks {}, broker speaks {}", peer_version,
                     protocol::kVersion);
}

}  // namespace acme::broker
