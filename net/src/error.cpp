#include <acme/error.hpp>

namespace acme {

std::string_view name(Errc code) noexcept {
  switch (code) {
    case Errc::BadOptions: return "bad options";
    case Errc::Unreachable: return "broker unreachable";
    case Errc::VersionRefused: return "version refused";
    case Errc::Refused: return "refused";
    case Errc::BrokerGone: return "broker gone";
    case Errc::UnknownFunction: return "unknown function";
    case Errc::TaskFailed: return "task failed";
    case Errc::Protocol: return "protocol error";
    case Errc::System: return "system error";
  }
  return "unknown error";
}

}  // namespace acme
