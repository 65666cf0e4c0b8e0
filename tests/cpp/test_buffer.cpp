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

// A written large segment's buffer is handed out again instead of a new allocation.
TEST(OutputQueue, TakeBufferReusesWrittenSegments) {
    output_queue q;
    std::string first = q.take_buffer(64 * 1024);
    first.assign(64 * 1024, 'a');
    const char* storage = first.data();
    q.append(std::move(first));
    q.consume(q.size());
    std::string again = q.take_buffer(64 * 1024);
    EXPECT_EQ(again.data(), storage);
    EXPECT_TRUE(again.empty());
    EXPECT_NE(q.take_buffer(64 * 1024).data(), storage);  // only one was kept
    EXPECT_NE(q.take_buffer(16).capacity(), 64u * 1024);  // small: never a spare
}

}  // namespace
}  // namespace coachwhip::core
