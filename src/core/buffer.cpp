#include "core/buffer.hpp"

#include <unistd.h>

#include <algorithm>

namespace coachwhip::core {

block_pool::block_pool(size_t block_size, size_t max_free)
    : block_size_(block_size), max_free_(max_free) {
    free_.reserve(max_free);
}

std::unique_ptr<char[]> block_pool::take() {
    if (free_.empty()) return std::make_unique_for_overwrite<char[]>(block_size_);
    std::unique_ptr<char[]> b = std::move(free_.back());
    free_.pop_back();
    return b;
}

void block_pool::give(std::unique_ptr<char[]> block) noexcept {
    if (block && free_.size() < max_free_) free_.push_back(std::move(block));
}

std::pair<char*, size_t> input_buffer::reserve(size_t want, size_t limit) {
    if (cap_ - end_ >= want) return {data_.get() + end_, cap_ - end_};
    // Reclaim consumed space first: cheaper than growing, and keeps the buffer at its size.
    if (start_ > 0) compact();
    if (cap_ - end_ < want && cap_ < limit) {
        size_t new_cap = std::min(limit, std::max({cap_ * 2, end_ + want, size_t{4096}}));
        if (!data_ && pool_ && new_cap == pool_->block_size()) {
            data_ = pool_->take();
            cap_ = new_cap;
            return {data_.get(), cap_};
        }
        auto grown = std::make_unique_for_overwrite<char[]>(new_cap);
        if (end_) std::memcpy(grown.get(), data_.get(), end_);
        if (pool_ && cap_ == pool_->block_size()) pool_->give(std::move(data_));
        data_ = std::move(grown);
        cap_ = new_cap;
    }
    return {data_.get() + end_, cap_ - end_};
}

void input_buffer::consume(size_t n) noexcept {
    start_ += n;
    if (start_ == end_) start_ = end_ = 0;  // the common case: everything parsed, no memmove
}

void input_buffer::compact() noexcept {
    if (start_ == 0) return;
    if (end_ > start_) std::memmove(data_.get(), data_.get() + start_, end_ - start_);
    end_ -= start_;
    start_ = 0;
}

void input_buffer::release() noexcept {
    if (!empty()) return;
    if (pool_ && cap_ == pool_->block_size()) pool_->give(std::move(data_));
    data_.reset();
    cap_ = start_ = end_ = 0;
}

void input_buffer::discard() noexcept {
    start_ = end_ = 0;
    release();
}

void output_queue::append(std::string_view bytes) {
    if (bytes.empty()) return;
    bytes_ += bytes.size();
    if (segs_.size() > head_ && bytes.size() < coalesce_limit && segs_.back().fd < 0) {
        auto& last = segs_.back().data;
        if (last.size() + bytes.size() <= coalesce_limit * 2) {
            last.append(bytes);
            return;
        }
    }
    std::string copy = take_buffer(bytes.size());
    copy.assign(bytes);
    segs_.push_back({std::move(copy), 0});
}

std::string output_queue::take_buffer(size_t capacity) {
    // (Small appends are coalesced into the last segment; a spare would only be freed.)
    for (size_t i = capacity >= coalesce_limit ? spares_.size() : 0; i-- > 0;) {
        if (spares_[i].capacity() >= capacity) {
            std::string s = std::move(spares_[i]);
            spares_.erase(spares_.begin() + static_cast<std::ptrdiff_t>(i));
            s.clear();
            return s;
        }
    }
    std::string s;
    s.reserve(capacity);
    return s;
}

void output_queue::append(std::string&& bytes) {
    if (bytes.empty()) return;
    // Small: into the last unwritten segment when it has room. Otherwise the string itself
    // becomes the segment (no copy), with whatever spare capacity the caller gave it, so the
    // small appends that follow (a response body after its head) land there too.
    if (bytes.size() < coalesce_limit && segs_.size() > head_ && segs_.back().fd < 0 &&
        segs_.back().data.size() + bytes.size() <= coalesce_limit * 2)
        return append(std::string_view(bytes));
    bytes_ += bytes.size();
    segs_.push_back({std::move(bytes), 0});
}

void output_queue::append_file(int fd, uint64_t offset, size_t len) {
    if (len == 0) {
        ::close(fd);
        return;
    }
    bytes_ += len;
    segment s;
    s.fd = fd;
    s.file_offset = offset;
    s.file_left = len;
    segs_.push_back(std::move(s));
}

output_queue::file_part output_queue::front_file() const noexcept {
    if (head_ >= segs_.size() || segs_[head_].fd < 0) return {};
    const segment& s = segs_[head_];
    return {s.fd, s.file_offset, s.file_left};
}

int output_queue::iov(iovec* out, int max) const noexcept {
    int n = 0;
    for (size_t i = head_; i < segs_.size() && n < max && segs_[i].fd < 0; ++i, ++n) {
        out[n].iov_base = const_cast<char*>(segs_[i].data.data() + segs_[i].offset);
        out[n].iov_len = segs_[i].data.size() - segs_[i].offset;
    }
    return n;
}

void output_queue::consume(size_t n) noexcept {
    bytes_ -= n;
    while (n > 0) {
        auto& s = segs_[head_];
        if (s.fd >= 0) {
            if (n < s.file_left) {
                s.file_offset += n;
                s.file_left -= n;
                return;
            }
            n -= s.file_left;
            ::close(s.fd);
            s.fd = -1;
            s.file_left = 0;
            ++head_;
            continue;
        }
        size_t left = s.data.size() - s.offset;
        if (n < left) {
            s.offset += n;
            return;
        }
        n -= left;
        // Written segments are freed now, not when the queue empties; large ones are kept
        // for reuse (take_buffer), a few at most.
        if (s.data.capacity() >= coalesce_limit && spares_.size() < max_spares)
            spares_.push_back(std::move(s.data));
        s.data = std::string();
        ++head_;
    }
    if (head_ == segs_.size()) {
        segs_.clear();  // keeps capacity for the next response on a busy connection
        head_ = 0;
    }
}

void output_queue::clear() noexcept {
    for (size_t i = head_; i < segs_.size(); ++i)
        if (segs_[i].fd >= 0) ::close(segs_[i].fd);
    segs_.clear();
    head_ = 0;
    bytes_ = 0;
}

void output_queue::release() noexcept {
    if (bytes_ != 0) return;
    std::vector<segment>().swap(segs_);
    std::vector<std::string>().swap(spares_);
}

}  // namespace coachwhip::core
