// acme::query_status (status.hpp): one STATUS request on a fresh DEALER socket and its reply
// (PROTOCOL.md §6.1.5, §6.2.7). No session: the broker does not register the asker.
#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include <fmt/format.h>
#include <zmq.hpp>

#include <acme/error.hpp>
#include <acme/net/wire.hpp>
#include <acme/protocol/codec.hpp>
#include <acme/status.hpp>

namespace acme {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

BrokerStatus to_status(const std::string& endpoint, protocol::StatusReply&& reply) {
  BrokerStatus status{.endpoint = endpoint,
                      .agent = std::move(reply.agent),
                      .uptime_ms = reply.uptime_ms,
                      .clients = reply.clients,
                      .jobs = reply.jobs,
                      .tasks_queued = reply.tasks_queued,
                      .tasks_running = reply.tasks_running,
                      .tasks_done = reply.tasks_done,
                      .tasks_failed = reply.tasks_failed,
                      .workers = {},
                      .workers_omitted = reply.workers_omitted,
                      .restricted_to = {}};
  status.workers.reserve(reply.workers.size());
  for (auto& worker : reply.workers) {
    status.workers.push_back(WorkerStatus{.id = worker.id,
                                          .host = std::move(worker.host),
                                          .pid = worker.pid,
                                          .slots = worker.slots,
                                          .running = worker.running,
                                          .launch = std::move(worker.launch),
                                          .functions = worker.functions});
  }
  return status;
}

/// The exception for a broker message that is not a STATUS reply; nullopt for one to skip.
std::optional<Error> refusal(const std::string& endpoint, const protocol::ToClientCommand& reply) {
  return std::visit(
      Overloaded{
          [&](const protocol::Error& error) -> std::optional<Error> {
            const auto what = fmt::format("broker at {} refused STATUS: {} ({})", endpoint,
                                          error.message, protocol::error_code_name(error.code));
            switch (error.code) {
              case protocol::ErrorCode::VersionMismatch: return Error(Errc::VersionRefused, what);
              // An older broker does not know the command (§12: STATUS is a draft addition).
              case protocol::ErrorCode::UnknownCommand:
              case protocol::ErrorCode::Malformed: return Error(Errc::Protocol, what);
              default: return Error(Errc::Refused, what);
            }
          },
          [&](const protocol::Bye& bye) -> std::optional<Error> {
            return Error(Errc::Refused, fmt::format("broker at {} said BYE instead of STATUS: {}",
                                                    endpoint, bye.reason));
          },
          [](const auto& /*other*/) -> std::optional<Error> {
            return std::nullopt;  // HEARTBEAT, or a message for a session this socket never had
          },
      },
      reply);
}

}  // namespace

std::size_t BrokerStatus::workers_of(std::string_view launch) const {
  const auto listed = static_cast<std::size_t>(std::count_if(
      workers.begin(), workers.end(), [&](const WorkerStatus& w) { return w.launch == launch; }));
  // Restricted to this launch, the omitted ones are this launch's too.
  const bool restricted = !restricted_to.empty() && restricted_to == launch;
  return listed + (restricted ? static_cast<std::size_t>(workers_omitted) : 0);
}

BrokerStatus query_status(const std::string& endpoint, milliseconds timeout,
                          const std::string& launch) {
  const auto deadline = Clock::now() + timeout;
  zmq::context_t context(1);
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  net::configure(socket);
  socket.set(zmq::sockopt::linger, 0);  // nothing may hold the caller past the deadline
  try {
    socket.connect(endpoint);
  } catch (const zmq::error_t& e) {
    throw Error(Errc::BadOptions,
                fmt::format("invalid broker endpoint '{}': {} (expected e.g. tcp://host:5555)",
                            endpoint, e.what()));
  }
  const auto unreachable = [&] {
    return Error(Errc::Unreachable,
                 fmt::format("no broker answered at {} within {} ms", endpoint, timeout.count()));
  };
  // connect() queues the message on the new pipe at once: this does not wait for the peer.
  protocol::StatusRequest request;
  if (!launch.empty()) request.launch = launch;
  if (!net::send(socket, protocol::encode(request), {}, nullptr, zmq::send_flags::dontwait)) {
    throw unreachable();
  }
  while (true) {
    const auto left = std::chrono::ceil<milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) throw unreachable();
    std::array items{zmq::pollitem_t{socket.handle(), 0, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items.data(), items.size(), left);
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;  // a signal: the deadline still holds
    }
    auto message = net::receive(socket, zmq::recv_flags::dontwait);
    if (!message) continue;
    const auto frames = message->frames();
    auto decoded = protocol::decode_for_client(frames);
    if (!decoded) {
      // §12: a broker of another version refuses in its own version; name it.
      if (decoded.error() == protocol::DecodeError::VersionMismatch) {
        const auto signature = protocol::decode_signature(frames.front());
        throw Error(Errc::VersionRefused,
                    fmt::format("broker at {} speaks protocol version {}, this client {}", endpoint,
                                signature ? signature->version : 0, protocol::kVersion));
      }
      throw Error(Errc::Protocol, fmt::format("broker at {} sent an undecodable reply: {}",
                                              endpoint, protocol::describe(decoded.error())));
    }
    if (auto* reply = std::get_if<protocol::StatusReply>(&decoded->command)) {
      auto status = to_status(endpoint, std::move(*reply));
      status.restricted_to = launch;
      return status;
    }
    if (auto error = refusal(endpoint, decoded->command)) throw *error;
  }
}

}  // namespace acme
