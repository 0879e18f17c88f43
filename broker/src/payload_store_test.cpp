#include "payload_store.hpp"

#include <string>

#include <gtest/gtest.h>

namespace acme::broker {
namespace {

std::string text(const zmq::message_t& frame) {
  return {static_cast<const char*>(frame.data()), frame.size()};
}

TEST(PayloadStore, SharesFramesWithoutCopyingLargeOnes) {
  PayloadStore store;
  const std::string big(1000, 'x');
  store.push(zmq::message_t(big.data(), big.size()));
  auto first = store.share(0);
  auto second = store.share(0);
  EXPECT_EQ(text(first), big);
  // Above ZeroMQ's small-message size, a copy shares the buffer: one allocation for all.
  EXPECT_EQ(first.data(), second.data());
}

TEST(PayloadStore, KeepsTheCommonFrameApart) {
  PayloadStore store;
  store.set_common(zmq::message_t(std::string("common")));
  store.push(zmq::message_t(std::string("t0")));
  ASSERT_TRUE(store.has_common());
  EXPECT_EQ(text(store.share_common()), "common");
  EXPECT_EQ(text(store.share(0)), "t0");
  EXPECT_EQ(store.received(), 1U);
}

TEST(PayloadStore, ReleasedFramesAreFreedAndIndicesStayStable) {
  PayloadStore store;
  for (int i = 0; i < 4; ++i) store.push(zmq::message_t(std::to_string(i)));
  store.release(1);
  EXPECT_FALSE(store.holds(1));
  EXPECT_EQ(store.held(), 3U);
  store.release(0);  // the front goes; task 2 keeps its index
  EXPECT_EQ(text(store.share(2)), "2");
  EXPECT_EQ(store.held(), 2U);
  store.release(0);   // twice: ignored
  store.release(99);  // unknown: ignored
  EXPECT_EQ(store.received(), 4U);
  store.push(zmq::message_t(std::string("4")));
  EXPECT_EQ(text(store.share(4)), "4");
  EXPECT_EQ(store.share(1).size(), 0U);
}

}  // namespace
}  // namespace acme::broker
