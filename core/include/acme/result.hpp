// acme::Result<T, E>: a value or a typed error. A small stand-in for std::expected, which
// Debian 12's clang 14 cannot compile with libstdc++ 12 (STYLE.md, error handling policy).
#pragma once

#include <utility>
#include <variant>

namespace acme {

/// Wraps an error value so that Result<T, E> can be built from it even when T == E.
template <class E>
struct Unexpected {
  E error;
};
template <class E>
Unexpected(E) -> Unexpected<E>;

/// Holds either a T or an E; never both, never neither.
template <class T, class E>
class Result {
 public:
  Result(T value) : data_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit
  Result(Unexpected<E> error)                                           // NOLINT: implicit
      : data_(std::in_place_index<1>, std::move(error.error)) {}

  [[nodiscard]] bool has_value() const noexcept { return data_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  /// Precondition: has_value().
  [[nodiscard]] T& value() & { return std::get<0>(data_); }
  [[nodiscard]] const T& value() const& { return std::get<0>(data_); }
  [[nodiscard]] T&& value() && { return std::get<0>(std::move(data_)); }
  T* operator->() { return &std::get<0>(data_); }
  const T* operator->() const { return &std::get<0>(data_); }
  T& operator*() & { return std::get<0>(data_); }
  const T& operator*() const& { return std::get<0>(data_); }

  /// Precondition: !has_value().
  [[nodiscard]] const E& error() const { return std::get<1>(data_); }

 private:
  std::variant<T, E> data_;
};

}  // namespace acme
