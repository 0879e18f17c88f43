// Strong ids shared by every component. Never bare integers (STYLE.md, naming).
#pragma once

#include <cstdint>
#include <functional>

namespace acme {

/// A worker as the broker knows it; assigned on READY, never reused within a broker's life.
enum class WorkerId : std::uint32_t {};
/// A client connection as the broker knows it; never reused within a broker's life.
enum class ClientId : std::uint32_t {};
/// A job (one map) inside the broker; never reused within a broker's life.
enum class JobId : std::uint64_t {};
/// The position of a task within its job: 0 .. total-1, the order of the inputs.
using TaskIndex = std::uint64_t;

template <class Id>
constexpr auto to_underlying(Id id) noexcept {
  return static_cast<std::underlying_type_t<Id>>(id);
}

}  // namespace acme

template <>
struct std::hash<acme::JobId> {
  std::size_t operator()(acme::JobId id) const noexcept {
    return std::hash<std::uint64_t>{}(acme::to_underlying(id));
  }
};
template <>
struct std::hash<acme::ClientId> {
  std::size_t operator()(acme::ClientId id) const noexcept {
    return std::hash<std::uint32_t>{}(acme::to_underlying(id));
  }
};
template <>
struct std::hash<acme::WorkerId> {
  std::size_t operator()(acme::WorkerId id) const noexcept {
    return std::hash<std::uint32_t>{}(acme::to_underlying(id));
  }
};
