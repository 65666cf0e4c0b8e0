// core::input_buffer, core::block_pool and core::output_queue: capacity bounds, memory release
// and reuse.
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

// A buffer with a pool takes its first block from it and gives it back when emptied, so the
// next buffer (or the same one) reuses that block instead of allocating.
TEST(BlockPool, InputBuffersReuseTheirBlocks) {
    block_pool pool(4096, 2);
    input_buffer a(&pool), b(&pool);
    auto [pa, room] = a.reserve(4096, 8192);
    ASSERT_EQ(room, 4096u);
    a.commit(10);
    a.release();  // not empty: keeps its block
    EXPECT_EQ(pool.free_blocks(), 0u);
    a.consume(10);
    a.release();
    EXPECT_EQ(pool.free_blocks(), 1u);
    EXPECT_EQ(a.capacity(), 0u);
    auto [pb, room_b] = b.reserve(4096, 8192);
    EXPECT_EQ(pb, pa);  // the same block
    EXPECT_EQ(pool.free_blocks(), 0u);
    (void)room_b;
}

TEST(BlockPool, KeepsAtMostMaxFreeAndOnlyItsOwnSize) {
    block_pool pool(4096, 2);
    {
        input_buffer a(&pool), b(&pool), c(&pool), odd(&pool);
        for (input_buffer* x : {&a, &b, &c})
            x->reserve(4096, 8192);
        odd.reserve(100, 1000);  // 1000-byte limit: not a pool block
        EXPECT_EQ(odd.capacity(), 1000u);
        odd.release();
        EXPECT_EQ(pool.free_blocks(), 0u);
        auto [p, room] = c.reserve(4096, 8192);  // c is empty: still one block
        EXPECT_EQ(c.capacity(), 4096u);
        c.commit(room);
        c.reserve(1, 8192);  // grows past the block: the block goes back to the pool
        EXPECT_EQ(c.capacity(), 8192u);
        EXPECT_EQ(pool.free_blocks(), 1u);
        (void)p;
    }  // a and b are destroyed: one more fits, the other is freed
    EXPECT_EQ(pool.free_blocks(), 2u);
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

// A small owned string with nothing to coalesce into becomes the segment itself, spare capacity
// included, so a response head reserved with room for its body takes the body without a copy
// or a reallocation.
TEST(OutputQueue, SmallOwnedStringBecomesTheSegment) {
    output_queue q;
    std::string head;
    head.reserve(256);
    head.assign("HTTP/1.1 200 OK\r\n\r\n");
    const char* storage = head.data();
    q.append(std::move(head));
    q.append(std::string_view("body"));
    iovec iov[2];
    ASSERT_EQ(q.iov(iov, 2), 1);
    EXPECT_EQ(iov[0].iov_base, storage);
    EXPECT_EQ(std::string(static_cast<char*>(iov[0].iov_base), iov[0].iov_len),
              "HTTP/1.1 200 OK\r\n\r\nbody");
    q.append(std::string("more"));  // small, with an unwritten segment to join: coalesced
    EXPECT_EQ(q.iov(iov, 2), 1);
    EXPECT_EQ(q.size(), 27u);
}

}  // namespace
}  // namespace coachwhip::core
