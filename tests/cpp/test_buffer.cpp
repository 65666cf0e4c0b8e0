// core::input_buffer and core::output_queue: capacity bounds and memory release.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "core/buffer.hpp"

namespace coachwhip::core {
namespace {

TEST(InputBuffer, ReserveNeverGrowsPastTheLimit) {
    input_buffer b;
    auto [p, room] = b.reserve(64, 100);
    ASSERT_NE(p, nullptr);
    EXPECT_GE(room, 64u);
    EXPECT_LE(b.capacity(), 100u);
    b.commit(room);
    auto [p2, room2] = b.reserve(64, 100);
    EXPECT_LE(b.capacity(), 100u);
    EXPECT_EQ(room2, 100u - room);
    (void)p2;
}

TEST(InputBuffer, ReleaseKeepsUnreadBytes) {
    input_buffer b;
    auto [p, room] = b.reserve(16, 64);
    std::memcpy(p, "abc", 3);
    b.commit(3);
    b.release();  // not empty: must keep the bytes
    EXPECT_EQ(b.readable(), "abc");
    b.consume(3);
    b.release();
    EXPECT_EQ(b.capacity(), 0u);
    (void)room;
}

TEST(InputBuffer, DiscardDropsUnreadBytesAndFreesMemory) {
    input_buffer b;
    auto [p, room] = b.reserve(16, 64);
    std::memcpy(p, "abc", 3);
    b.commit(3);
    b.discard();
    EXPECT_TRUE(b.empty());
    EXPECT_EQ(b.capacity(), 0u);
    auto [p2, room2] = b.reserve(8, 64);  // usable again afterwards
    EXPECT_NE(p2, nullptr);
    EXPECT_GE(room2, 8u);
    (void)room;
}

TEST(OutputQueue, CoalescesSmallAppendsAndConsumesAcrossSegments) {
    output_queue q;
    q.append(std::string_view("hello "));
    q.append(std::string_view("world"));
    q.append(std::string(output_queue::coalesce_limit * 3, 'x'));  // large: its own segment
    EXPECT_EQ(q.size(), 11 + output_queue::coalesce_limit * 3);
    iovec iov[4];
    ASSERT_EQ(q.iov(iov, 4), 2);
    EXPECT_EQ(std::string(static_cast<char*>(iov[0].iov_base), iov[0].iov_len), "hello world");
    q.consume(13);
    ASSERT_EQ(q.iov(iov, 4), 1);
    EXPECT_EQ(iov[0].iov_len, output_queue::coalesce_limit * 3 - 2);
    q.clear();
    EXPECT_TRUE(q.empty());
    q.release();
    EXPECT_EQ(q.iov(iov, 4), 0);
}

}  // namespace
}  // namespace coachwhip::core
