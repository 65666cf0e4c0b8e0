// coachwhip::core byte buffers.
//
// input_buffer: one contiguous region that a socket reads into and a parser reads from.
//   [ consumed | readable | writable ]. Bytes are appended at the end and consumed from the
//   front; `compact()` moves the readable bytes to the start. Views into `readable()` are
//   invalidated by `reserve()` and `compact()` only. Capacity never exceeds the limit given to
//   `reserve()`, so memory is bounded by the caller's limits, not by the peer.
//
// block_pool: spare blocks of one size for input buffers. A keep-alive connection under load
//   empties its input buffer with every request; handing the block to the pool and taking it
//   back on the next read costs a vector push and pop instead of a 16 KiB malloc and free
//   (glibc consolidates its fast bins on every such malloc). Bounded: at most `max_free` blocks
//   wait here, the rest are freed.
//
// output_queue: an ordered list of byte segments to be written with writev(). Small writes are
//   coalesced into the last segment; large ones get their own. `iov()` fills an iovec array from
//   the front; `consume(n)` drops n written bytes. A segment may also be a part of a file
//   (append_file, for sendfile): iov() stops in front of it, and the writer sends it with
//   `front_file()` and transport::send_file. The queue owns such a file descriptor and closes
//   it once the part is written, or dropped.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace coachwhip::core {

class block_pool {
  public:
    block_pool(size_t block_size, size_t max_free);
    block_pool(const block_pool&) = delete;
    block_pool& operator=(const block_pool&) = delete;

    size_t block_size() const noexcept { return block_size_; }
    size_t free_blocks() const noexcept { return free_.size(); }
    // A block of block_size() bytes, uninitialised: a spare one if there is one.
    std::unique_ptr<char[]> take();
    // Takes back a block of block_size() bytes; frees it when `max_free` are already waiting.
    void give(std::unique_ptr<char[]> block) noexcept;

  private:
    size_t block_size_;
    size_t max_free_;
    std::vector<std::unique_ptr<char[]>> free_;  // capacity reserved up front: give() never throws
};

class input_buffer {
  public:
    // `pool` (optional, must outlive the buffer): where a first block of its block size comes
    // from and goes back to.
    explicit input_buffer(block_pool* pool = nullptr) noexcept : pool_(pool) {}
    ~input_buffer() { discard(); }
    input_buffer(const input_buffer&) = delete;
    input_buffer& operator=(const input_buffer&) = delete;

    std::string_view readable() const noexcept { return {data_.get() + start_, end_ - start_}; }
    size_t size() const noexcept { return end_ - start_; }
    bool empty() const noexcept { return end_ == start_; }
    size_t capacity() const noexcept { return cap_; }

    // Makes room for at least `want` more bytes without growing past `limit` total capacity.
    // Returns the writable span (possibly smaller than `want`; empty when the limit is reached).
    std::pair<char*, size_t> reserve(size_t want, size_t limit);
    void commit(size_t n) noexcept { end_ += n; }
    void consume(size_t n) noexcept;
    void compact() noexcept;
    // Frees the memory of an empty buffer (or returns it to the pool); a no-op otherwise.
    void release() noexcept;
    // Drops unread bytes and frees the memory (a closed connection keeps nothing).
    void discard() noexcept;

  private:
    block_pool* pool_;
    std::unique_ptr<char[]> data_;
    size_t cap_ = 0, start_ = 0, end_ = 0;
};

class output_queue {
  public:
    static constexpr size_t coalesce_limit = 16 * 1024;  // appends below this are copied together

    output_queue() = default;
    ~output_queue() { clear(); }
    output_queue(const output_queue&) = delete;
    output_queue& operator=(const output_queue&) = delete;
    void append(std::string_view bytes);
    void append(std::string&& bytes);
    // `len` bytes of the file `fd` from `offset`; takes ownership of `fd` (closed when written,
    // cleared, or at once when `len` is 0).
    void append_file(int fd, uint64_t offset, size_t len);
    // The file part at the front, if the front is one ({-1, 0, 0} when it is not).
    struct file_part {
        int fd = -1;
        uint64_t offset = 0;
        size_t len = 0;
    };
    file_part front_file() const noexcept;
    size_t size() const noexcept { return bytes_; }
    bool empty() const noexcept { return bytes_ == 0; }
    // Fills up to `max` iovecs from the front; returns how many.
    int iov(iovec* out, int max) const noexcept;
    void consume(size_t n) noexcept;
    void clear() noexcept;
    // Frees the storage of an empty queue (idle keep-alive connections keep nothing).
    void release() noexcept;
    // An empty string with room for `capacity` bytes, for the caller to fill and append(): the
    // buffer of an already written segment when one is large enough, else a new one.
    std::string take_buffer(size_t capacity);

  private:
    struct segment {
        std::string data;
        size_t offset = 0;  // bytes of `data` already written
        // A file part: `fd` (owned) >= 0, `file_offset` the next byte, `file_left` still to go.
        int fd = -1;
        uint64_t file_offset = 0;
        size_t file_left = 0;
    };
    // A vector with a moving head rather than a std::deque: an empty vector allocates nothing
    // (libstdc++'s deque allocates ~600 bytes up front, per idle connection), and the common
    // case is one segment per response.
    std::vector<segment> segs_;
    // Buffers of written large segments, reused by take_buffer(). A streaming response would
    // otherwise allocate and free 64 KiB per chunk: with many connections the heap top then
    // rises and falls through glibc's trim threshold, and each fall costs page faults that zero
    // fresh pages again (perf: 15% of a 64-connection stream run in exc_page_fault, from the
    // copy into a new chunk). Bounded by `max_spares`; release() frees them.
    static constexpr size_t max_spares = 4;
    std::vector<std::string> spares_;
    size_t head_ = 0;  // first unwritten segment
    size_t bytes_ = 0;
};

}  // namespace coachwhip::core
