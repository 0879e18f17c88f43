// load_plugin(): the example plugin, and the errors for files that are no plugin.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <acme/error.hpp>
#include <acme/ndarray.hpp>

#include "test_support.hpp"

namespace acme {
namespace {

using ::testing::HasSubstr;

#ifdef ACME_EXAMPLE_PLUGIN
TEST(LoadPlugin, RegistersTheExamplePluginsFunctions) {
  FunctionRegistry registry;
  load_plugin(registry, ACME_EXAMPLE_PLUGIN);
  EXPECT_THAT(registry.names(), ::testing::ElementsAre("bandpower", "mean", "scale"));
  const auto mean = test::run(registry, "mean", test::args(std::vector<double>{1, 2, 3, 6}));
  ASSERT_EQ(mean.status, protocol::TaskStatus::Ok);
  EXPECT_DOUBLE_EQ(mean.value()->as<double>(), 3.0);
  // A 10 Hz sine sampled at 100 Hz has its power in the 5..15 Hz band, none in 30..40 Hz.
  std::vector<double> signal;
  for (int t = 0; t < 100; ++t) signal.push_back(std::sin(2 * M_PI * 10 * t / 100.0));
  const auto in_band = test::run(registry, "bandpower", test::args(signal, 100.0, 5.0, 15.0));
  const auto off_band = test::run(registry, "bandpower", test::args(signal, 100.0, 30.0, 40.0));
  ASSERT_EQ(in_band.status, protocol::TaskStatus::Ok);
  EXPECT_GT(in_band.value()->as<double>(), 0.01);
  EXPECT_LT(off_band.value()->as<double>(), 1e-12);
  // scale() takes and returns an ext-1 array, keeping its shape.
  const auto input = NdArray::of<double>({2, 2}, std::vector<double>{1, 2, 3, 4});
  const auto scaled = test::run(registry, "scale", test::args(input, 2.0));
  ASSERT_EQ(scaled.status, protocol::TaskStatus::Ok);
  const auto out = scaled.value()->as<NdArray>();
  EXPECT_EQ(out.dtype, "<f8");
  EXPECT_THAT(out.shape, ::testing::ElementsAre(2u, 2u));
  EXPECT_THAT(out.view().copy_values<double>(), ::testing::ElementsAre(2.0, 4.0, 6.0, 8.0));
}
#endif

TEST(LoadPlugin, MissingFileNamesTheFileAndTheReason) {
  FunctionRegistry registry;
  try {
    load_plugin(registry, "/nonexistent/libnothing.so");
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::BadOptions);
    EXPECT_THAT(e.what(), HasSubstr("cannot load plugin /nonexistent/libnothing.so: "));
    EXPECT_THAT(e.what(), HasSubstr("No such file"));
  }
}

TEST(LoadPlugin, LibraryWithoutEntryPointIsRefused) {
  FunctionRegistry registry;
  try {
    load_plugin(registry, "libm.so.6");
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("acme_register"));
  }
  EXPECT_TRUE(registry.empty());
}

}  // namespace
}  // namespace acme
