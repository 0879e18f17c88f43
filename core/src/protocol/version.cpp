// Names of the wire constants of version.hpp, for logs.
#include <acme/protocol/version.hpp>

namespace acme::protocol {

std::string_view command_name(Command command) noexcept {
  switch (command) {
    case Command::Submit: return "SUBMIT";
    case Command::Cancel: return "CANCEL";
    case Command::Heartbeat: return "HEARTBEAT";
    case Command::Bye: return "BYE";
    case Command::Ready: return "READY";
    case Command::Results: return "RESULTS";
    case Command::Accept: return "ACCEPT";
    case Command::Done: return "DONE";
    case Command::Error: return "ERROR";
    case Command::Welcome: return "WELCOME";
    case Command::Tasks: return "TASKS";
    case Command::Status: return "STATUS";
  }
  return "unknown";  // a byte read off the wire may be any value
}

std::string_view peer_name(Peer peer) noexcept {
  switch (peer) {
    case Peer::Client: return "client";
    case Peer::Worker: return "worker";
    case Peer::Broker: return "broker";
  }
  return "unknown";
}

std::string_view status_name(TaskStatus status) noexcept {
  switch (status) {
    case TaskStatus::Ok: return "ok";
    case TaskStatus::Failed: return "failed";
    case TaskStatus::TimedOut: return "timed-out";
    case TaskStatus::Poisoned: return "poisoned";
    case TaskStatus::Unsupported: return "unsupported";
    case TaskStatus::Cancelled: return "cancelled";
  }
  return "unknown";
}

std::string_view error_code_name(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::Malformed: return "malformed";
    case ErrorCode::VersionMismatch: return "version-mismatch";
    case ErrorCode::UnknownCommand: return "unknown-command";
    case ErrorCode::BadRequest: return "bad-request";
    case ErrorCode::NoSuchFunction: return "no-such-function";
    case ErrorCode::TooLarge: return "too-large";
    case ErrorCode::ShuttingDown: return "shutting-down";
    case ErrorCode::Internal: return "internal";
  }
  return "unknown";  // ERROR keeps codes this version does not know (PROTOCOL.md §11)
}

}  // namespace acme::protocol
