#include <array>
#include <climits>

#include <acme/net/wire.hpp>

#include <unistd.h>

namespace acme::net {

std::vector<protocol::Frame> Received::frames(std::size_t first) const {
  std::vector<protocol::Frame> views;
  views.reserve(parts.size() > first ? parts.size() - first : 0);
  for (std::size_t i = first; i < parts.size(); ++i) {
    views.emplace_back(static_cast<const std::byte*>(parts[i].data()), parts[i].size());
  }
  return views;
}

std::optional<Received> receive(zmq::socket_t& socket, zmq::recv_flags flags) {
  Received message;
  while (true) {
    zmq::message_t part;
    if (!socket.recv(part, flags)) {
      if (message.parts.empty()) return std::nullopt;
      // A multipart message arrives whole (ZeroMQ guarantees atomicity), so a later part is
      // always ready once the first is.
      continue;
    }
    const bool more = part.more();
    message.parts.push_back(std::move(part));
    if (!more) return message;
  }
}

bool send(zmq::socket_t& socket, const protocol::Encoded& message,
          std::span<zmq::message_t> payload, const zmq::message_t* identity,
          zmq::send_flags flags) {
  const auto more = flags | zmq::send_flags::sndmore;
  if (identity != nullptr) {
    zmq::message_t copy(identity->data(), identity->size());
    if (!socket.send(copy, more)) return false;
  }
  if (!socket.send(zmq::const_buffer(message.signature.data(), message.signature.size()), more)) {
    return false;
  }
  const auto command = message.command_byte();
  if (!socket.send(zmq::const_buffer(&command, 1), more)) return false;
  if (!socket.send(zmq::const_buffer(message.header.data(), message.header.size()),
                   payload.empty() ? flags : more)) {
    return false;
  }
  for (std::size_t i = 0; i < payload.size(); ++i) {
    if (!socket.send(payload[i], i + 1 == payload.size() ? flags : more)) return false;
  }
  return true;
}

zmq::message_t frame(std::string_view bytes) {
  return zmq::message_t(bytes.data(), bytes.size());
}

std::string hostname() {
  std::array<char, HOST_NAME_MAX + 1> name{};
  if (::gethostname(name.data(), name.size() - 1) != 0) return "localhost";
  return name.data();
}

std::string bound_endpoint(zmq::socket_t& socket) {
  auto endpoint = socket.get(zmq::sockopt::last_endpoint);
  constexpr std::string_view kAny = "tcp://0.0.0.0:";
  if (endpoint.starts_with(kAny)) {
    endpoint = "tcp://" + hostname() + ":" + endpoint.substr(kAny.size());
  }
  return endpoint;
}

void configure(zmq::socket_t& socket) {
  socket.set(zmq::sockopt::linger, 500);
  socket.set(zmq::sockopt::tcp_keepalive, 1);
  socket.set(zmq::sockopt::tcp_keepalive_idle, 60);
  socket.set(zmq::sockopt::tcp_keepalive_intvl, 10);
}

}  // namespace acme::net
