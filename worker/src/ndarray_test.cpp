// acme::NdArray / NdArrayView: msgpack ext 1 as PROTOCOL.md §6.5 specifies it, byte for byte
// as the Python package writes it, and the errors for what is not one.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <acme/ndarray.hpp>

namespace acme {
namespace {

msgpack::object_handle unpack(const std::string& bytes) {
  return msgpack::unpack(bytes.data(), bytes.size());
}

template <class T>
std::string packed(const T& value) {
  msgpack::sbuffer buffer;
  msgpack::pack(buffer, value);
  return {buffer.data(), buffer.size()};
}

// serial.packb(numpy.array([1.5, 2.0])) in the Python package.
const std::string kPythonBytes =
    std::string("\xc7\x17\x01\x92\xa3<f8\x91\x02", 10) +
    std::string("\x00\x00\x00\x00\x00\x00\xf8\x3f\x00\x00\x00\x00\x00\x00\x00\x40", 16);

TEST(NdArray, ReadsWhatThePythonPackageWrites) {
  const auto handle = unpack(kPythonBytes);
  const auto view = NdArrayView::from(handle.get());
  EXPECT_EQ(view.dtype, "<f8");
  EXPECT_EQ(view.shape, (std::vector<std::uint64_t>{2}));
  EXPECT_EQ(view.size(), 2U);
  EXPECT_EQ(view.copy_values<double>(), (std::vector<double>{1.5, 2.0}));
  // The view points into the message: no copy.
  const auto* first = reinterpret_cast<const char*>(view.bytes.data());
  EXPECT_GE(first, handle.get().via.ext.data());
  EXPECT_LT(first, handle.get().via.ext.data() + handle.get().via.ext.size);
}

TEST(NdArray, WritesWhatThePythonPackageReads) {
  const std::vector<double> values{1.5, 2.0};
  EXPECT_EQ(packed(NdArray::of<double>({2}, values)), kPythonBytes);
}

TEST(NdArray, RoundTripsShapesAndDtypes) {
  const std::vector<std::int32_t> ints{1, -2, 3, -4, 5, -6};
  const auto handle = unpack(packed(NdArray::of<std::int32_t>({2, 3}, ints)));
  const auto array = handle.get().as<NdArray>();
  EXPECT_EQ(array.dtype, "<i4");
  EXPECT_EQ(array.shape, (std::vector<std::uint64_t>{2, 3}));
  EXPECT_EQ(array.view().copy_values<std::int32_t>(), ints);

  const std::vector<std::uint8_t> none;
  const auto empty = unpack(packed(NdArray::of<std::uint8_t>({0, 4}, none)));
  EXPECT_EQ(NdArrayView::from(empty.get()).size(), 0U);

  const std::vector<double> scalar{7.0};  // a 0-d array: empty shape, one element
  const auto zero_d = unpack(packed(NdArray::of<double>({}, scalar)));
  EXPECT_EQ(NdArrayView::from(zero_d.get()).copy_values<double>(), scalar);
}

TEST(NdArray, AlignedViewsNeedNoCopy) {
  const std::vector<std::uint8_t> bytes{1, 2, 3};
  const auto handle = unpack(packed(NdArray::of<std::uint8_t>({3}, bytes)));
  const auto values = NdArrayView::from(handle.get()).values<std::uint8_t>();
  EXPECT_EQ(std::vector<std::uint8_t>(values.begin(), values.end()), bytes);
}

TEST(NdArray, SaysWhatIsWrong) {
  const auto expect_error = [](const std::string& bytes, const std::string& part) {
    const auto handle = unpack(bytes);
    try {
      (void)NdArrayView::from(handle.get());
      ADD_FAILURE() << "no error for " << part;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
    }
  };
  expect_error(packed(std::vector<double>{1.0}), "expected an n-dimensional array");
  // [dtype, shape] missing, unknown dtype, too few bytes for the shape
  expect_error(std::string("\xd4\x01\x05", 3), "must start with [dtype str, shape array]");
  expect_error(std::string("\xc7\x08\x01\x92\xa3<x8\x91\x00", 10) + std::string("\x00", 1),
               "is not one of ext 1's");
  expect_error(std::string("\xc7\x0f\x01", 3) + kPythonBytes.substr(3, 7) + std::string(8, '\0'),
               "need 2 x 8");  // 8 data bytes where [2] x "<f8" needs 16
  const auto handle = unpack(kPythonBytes);
  EXPECT_THROW((void)NdArrayView::from(handle.get()).copy_values<float>(), std::invalid_argument);
  EXPECT_THROW((void)NdArray::of<double>({3}, std::vector<double>{1.0}), std::invalid_argument);
}

}  // namespace
}  // namespace acme
