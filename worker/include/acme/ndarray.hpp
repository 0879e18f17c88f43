// acme::NdArray and acme::NdArrayView: n-dimensional arrays as msgpack ext type 1
// (docs/PROTOCOL.md §6.5), the form numpy arrays take between the Python package and C++.
// A typed worker function takes them like any argument:
//
//   acme::define("scale", [](acme::NdArrayView a, double by) {
//     auto values = a.copy_values<double>();          // or a.values<double>() when aligned
//     for (auto& v : values) v *= by;
//     return acme::NdArray::of<double>(a.shape, values);   // a numpy array in Python
//   });
//
// NdArrayView reads the ext in place (no copy: it points into the message, valid while the
// task runs); NdArray owns its bytes.
#pragma once

#include <bit>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <msgpack.hpp>

namespace acme {

static_assert(std::endian::native == std::endian::little,
              "acme::NdArray reads and writes little-endian dtypes only");

inline constexpr std::int8_t kNdArrayExt = 1;

/// numpy's dtype string of T ("<f8" for double), or empty for a type ext 1 cannot hold.
template <class T>
constexpr std::string_view dtype_of() {
  if constexpr (std::is_same_v<T, bool>)
    return "|b1";
  else if constexpr (std::is_same_v<T, float>)
    return "<f4";
  else if constexpr (std::is_same_v<T, double>)
    return "<f8";
  else if constexpr (std::is_same_v<T, std::complex<float>>)
    return "<c8";
  else if constexpr (std::is_same_v<T, std::complex<double>>)
    return "<c16";
  else if constexpr (std::is_same_v<T, std::int8_t>)
    return "|i1";
  else if constexpr (std::is_same_v<T, std::uint8_t>)
    return "|u1";
  else if constexpr (std::is_same_v<T, std::int16_t>)
    return "<i2";
  else if constexpr (std::is_same_v<T, std::uint16_t>)
    return "<u2";
  else if constexpr (std::is_same_v<T, std::int32_t>)
    return "<i4";
  else if constexpr (std::is_same_v<T, std::uint32_t>)
    return "<u4";
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return "<i8";
  else if constexpr (std::is_same_v<T, std::uint64_t>)
    return "<u8";
  else
    return {};
}

namespace detail {

/// Item size in bytes of a dtype string of ext 1 ("<f8" → 8); throws on anything else.
inline std::size_t ndarray_itemsize(std::string_view dtype) {
  std::size_t size = 0;
  const bool order =
      !dtype.empty() && std::string_view("<|>").find(dtype[0]) != std::string_view::npos;
  const bool kind =
      dtype.size() >= 3 && std::string_view("biufc").find(dtype[1]) != std::string_view::npos;
  if (order && kind && dtype.size() <= 4) {
    for (const char c : dtype.substr(2)) {
      size = (c >= '0' && c <= '9' && size != SIZE_MAX)
                 ? size * 10 + static_cast<std::size_t>(c - '0')
                 : SIZE_MAX;
    }
  }
  if (size == 0 || size == SIZE_MAX) {
    throw std::invalid_argument(
        "ndarray: dtype '" + std::string(dtype) +
        "' is not one of ext 1's (e.g. \"<f8\", \"|u1\"; PROTOCOL.md §6.5)");
  }
  return size;
}

}  // namespace detail

/// An ext-1 array read in place from a msgpack object: dtype, shape and the raw C-order bytes.
struct NdArrayView {
  std::string_view dtype;
  std::vector<std::uint64_t> shape;
  std::span<const std::byte> bytes;

  /// Number of elements (1 for a 0-d array).
  [[nodiscard]] std::uint64_t size() const noexcept {
    std::uint64_t n = 1;
    for (const auto d : shape) n *= d;
    return n;
  }

  /// The elements as T without a copy. Throws if the dtype is not T's, or if the bytes are not
  /// aligned for T (they sit wherever the message put them): then use copy_values().
  template <class T>
  [[nodiscard]] std::span<const T> values() const {
    check<T>();
    if (reinterpret_cast<std::uintptr_t>(bytes.data()) % alignof(T) != 0) {
      throw std::invalid_argument("ndarray: the bytes are not aligned for " +
                                  std::string(dtype_of<T>()) + ": use copy_values()");
    }
    return {reinterpret_cast<const T*>(bytes.data()), bytes.size() / sizeof(T)};
  }

  /// The elements as T, copied (always works for T's dtype).
  template <class T>
  [[nodiscard]] std::vector<T> copy_values() const {
    check<T>();
    std::vector<T> out(bytes.size() / sizeof(T));
    if (!out.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
    return out;
  }

  /// Reads ext 1 from `object`; throws std::invalid_argument saying what is wrong.
  static NdArrayView from(const msgpack::object& object) {
    if (object.type != msgpack::type::EXT || object.via.ext.type() != kNdArrayExt) {
      throw std::invalid_argument("expected an n-dimensional array (msgpack ext 1)");
    }
    const char* data = object.via.ext.data();
    const std::size_t length = object.via.ext.size;
    std::size_t offset = 0;
    msgpack::object_handle header;
    try {
      // Strings refer into `data` (no copy), so that dtype stays valid with the message.
      header = msgpack::unpack(data, length, offset,
                               [](msgpack::type::object_type, std::size_t, void*) { return true; });
    } catch (const std::exception& e) {
      throw std::invalid_argument(std::string("ndarray: unreadable [dtype, shape]: ") + e.what());
    }
    const auto& h = header.get();
    if (h.type != msgpack::type::ARRAY || h.via.array.size != 2 ||
        h.via.array.ptr[0].type != msgpack::type::STR ||
        h.via.array.ptr[1].type != msgpack::type::ARRAY) {
      throw std::invalid_argument("ndarray: ext 1 must start with [dtype str, shape array]");
    }
    NdArrayView view;
    view.dtype = std::string_view(h.via.array.ptr[0].via.str.ptr, h.via.array.ptr[0].via.str.size);
    std::uint64_t elements = 1;
    for (std::uint32_t i = 0; i < h.via.array.ptr[1].via.array.size; ++i) {
      const auto& d = h.via.array.ptr[1].via.array.ptr[i];
      if (d.type != msgpack::type::POSITIVE_INTEGER) {
        throw std::invalid_argument("ndarray: shape entries must be integers >= 0");
      }
      view.shape.push_back(d.via.u64);
      if (d.via.u64 != 0 && elements > UINT64_MAX / d.via.u64) {
        throw std::invalid_argument("ndarray: shape too large");
      }
      elements *= d.via.u64;
    }
    const auto itemsize = detail::ndarray_itemsize(view.dtype);
    if (elements > (length - offset) / itemsize || elements * itemsize != length - offset) {
      throw std::invalid_argument("ndarray: " + std::to_string(length - offset) +
                                  " bytes of data, but shape and dtype '" +
                                  std::string(view.dtype) + "' need " + std::to_string(elements) +
                                  " x " + std::to_string(itemsize));
    }
    view.bytes = std::span<const std::byte>(reinterpret_cast<const std::byte*>(data + offset),
                                            length - offset);
    return view;
  }

 private:
  template <class T>
  void check() const {
    if (dtype_of<T>().empty() || dtype != dtype_of<T>()) {
      throw std::invalid_argument("ndarray: dtype is '" + std::string(dtype) + "', not '" +
                                  std::string(dtype_of<T>()) + "'");
    }
  }
};

/// An ext-1 array that owns its bytes: what a C++ function returns to get a numpy array.
struct NdArray {
  std::string dtype;
  std::vector<std::uint64_t> shape;
  std::vector<std::byte> bytes;

  template <class T>
  static NdArray of(std::vector<std::uint64_t> shape, std::span<const T> values) {
    static_assert(!dtype_of<T>().empty(), "NdArray::of: T has no ext-1 dtype");
    NdArray array{std::string(dtype_of<T>()), std::move(shape), {}};
    std::uint64_t n = 1;
    for (const auto d : array.shape) n *= d;
    if (n != values.size()) {
      throw std::invalid_argument("NdArray::of: shape holds " + std::to_string(n) +
                                  " elements, values " + std::to_string(values.size()));
    }
    array.bytes.resize(values.size_bytes());
    if (!values.empty()) std::memcpy(array.bytes.data(), values.data(), values.size_bytes());
    return array;
  }
  template <class T>
  static NdArray of(std::vector<std::uint64_t> shape, const std::vector<T>& values) {
    return of<T>(std::move(shape), std::span<const T>(values));
  }

  [[nodiscard]] NdArrayView view() const { return {dtype, shape, bytes}; }
};

namespace detail {

template <class Stream>
void pack_ndarray(msgpack::packer<Stream>& packer, std::string_view dtype,
                  const std::vector<std::uint64_t>& shape, std::span<const std::byte> bytes) {
  msgpack::sbuffer header;
  msgpack::packer<msgpack::sbuffer> h(header);
  h.pack_array(2);
  h.pack_str(static_cast<std::uint32_t>(dtype.size()));
  h.pack_str_body(dtype.data(), static_cast<std::uint32_t>(dtype.size()));
  h.pack(shape);
  packer.pack_ext(header.size() + bytes.size(), kNdArrayExt);
  packer.pack_ext_body(header.data(), static_cast<std::uint32_t>(header.size()));
  packer.pack_ext_body(reinterpret_cast<const char*>(bytes.data()),
                       static_cast<std::uint32_t>(bytes.size()));
}

}  // namespace detail
}  // namespace acme

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
  namespace adaptor {

  // A value that is not a valid ext 1 throws std::invalid_argument saying why.
  template <>
  struct convert<acme::NdArrayView> {
    const msgpack::object& operator()(const msgpack::object& o, acme::NdArrayView& v) const {
      v = acme::NdArrayView::from(o);
      return o;
    }
  };

  template <>
  struct convert<acme::NdArray> {
    const msgpack::object& operator()(const msgpack::object& o, acme::NdArray& v) const {
      acme::NdArrayView view;
      convert<acme::NdArrayView>()(o, view);
      v.dtype = std::string(view.dtype);
      v.shape = view.shape;
      v.bytes.assign(view.bytes.begin(), view.bytes.end());
      return o;
    }
  };

  template <>
  struct pack<acme::NdArrayView> {
    template <class Stream>
    msgpack::packer<Stream>& operator()(msgpack::packer<Stream>& p,
                                        const acme::NdArrayView& v) const {
      acme::detail::pack_ndarray(p, v.dtype, v.shape, v.bytes);
      return p;
    }
  };

  template <>
  struct pack<acme::NdArray> {
    template <class Stream>
    msgpack::packer<Stream>& operator()(msgpack::packer<Stream>& p, const acme::NdArray& v) const {
      acme::detail::pack_ndarray(p, v.dtype, v.shape, v.bytes);
      return p;
    }
  };

  }  // namespace adaptor
}  // MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS)
}  // namespace msgpack
