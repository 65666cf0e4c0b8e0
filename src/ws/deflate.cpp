// coachwhip::ws permessage-deflate. The contract and the memory figures are in deflate.hpp;
// this file says why.
#include "ws/deflate.hpp"

#include "ws/frame.hpp"

#include <zlib.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <utility>

namespace coachwhip::ws {

// A z_stream plus the bytes zlib allocated through it. Heap-allocated as one block, so the
// `opaque` pointer zlib hands to our allocator stays valid when the inflater or deflater moves.
struct detail::zlib_stream {
    z_stream zs{};
    size_t bytes = 0;
    bool deflating = false;

    zlib_stream() = default;
    zlib_stream(const zlib_stream&) = delete;
    zlib_stream& operator=(const zlib_stream&) = delete;
    // Also right after a failed init: inflateEnd() / deflateEnd() then find no state and only
    // return Z_STREAM_ERROR.
    ~zlib_stream() {
        if (deflating) {
            deflateEnd(&zs);
        } else {
            inflateEnd(&zs);
        }
    }
};

namespace {

// RFC 7692 §7.2.1: the tail a sync flush ends with, removed by the sender, restored here.
constexpr unsigned char k_tail[4] = {0x00, 0x00, 0xff, 0xff};

// zlib's allocator hooks, counting bytes per stream. Each block carries its size in a header
// rounded to max_align_t, so zlib's structures stay suitably aligned.
constexpr size_t k_prefix = alignof(std::max_align_t);

void* counting_alloc(void* opaque, uInt items, uInt size) {
    const size_t n = static_cast<size_t>(items) * size;
    void* block = std::malloc(n + k_prefix);
    if (block == nullptr) return Z_NULL;
    std::memcpy(block, &n, sizeof n);
    *static_cast<size_t*>(opaque) += n;
    return static_cast<char*>(block) + k_prefix;
}

void counting_free(void* opaque, void* address) {
    if (address == nullptr) return;
    void* block = static_cast<char*>(address) - k_prefix;
    size_t n;
    std::memcpy(&n, block, sizeof n);
    *static_cast<size_t*>(opaque) -= n;
    std::free(block);
}

detail::zlib_stream_ptr new_stream(bool deflating) {
    auto z = std::make_unique<detail::zlib_stream>();
    z->deflating = deflating;
    z->zs.zalloc = counting_alloc;
    z->zs.zfree = counting_free;
    z->zs.opaque = &z->bytes;
    return z;
}

uInt clamp_uint(size_t n) { return static_cast<uInt>(std::min<size_t>(n, UINT_MAX)); }

}  // namespace

// ---- inflater ---------------------------------------------------------------------------------

inflater::inflater() noexcept = default;
inflater::inflater(options opt) noexcept : opt_(opt) {}
inflater::~inflater() = default;
inflater::inflater(inflater&&) noexcept = default;
inflater& inflater::operator=(inflater&&) noexcept = default;

bool inflater::create() noexcept {
    detail::zlib_stream_ptr z = new_stream(false);
    const int bits = std::clamp<int>(opt_.window_bits, 8, 15);
    // Deleting a stream whose init failed is harmless: inflateEnd() then returns an error.
    if (inflateInit2(&z->zs, -bits) != Z_OK) return false;
    z_ = std::move(z);
    return true;
}

inflater::result inflater::fail(result r, uint16_t code, std::string_view reason) noexcept {
    error_ = core::error{code, reason};
    r.status = status::error;
    r.error = error_;
    return r;
}

// The message is complete: forget its counters, and prepare the stream for the next one.
bool inflater::finish_message() noexcept {
    produced_ = 0;
    tail_fed_ = 0;
    saw_input_ = false;
    at_boundary_ = true;  // a complete message leaves the stream between blocks (or fresh)
    in_message_ = false;
    history_ = true;
    const bool ended = std::exchange(stream_end_, false);
    if (opt_.no_context_takeover) return inflateReset(&z_->zs) == Z_OK;
    if (!ended) return true;  // the stream simply goes on with the next message
    // The message ended the DEFLATE stream with a BFINAL block. The next message continues the
    // LZ77 window (§7.2.3 with context takeover), but zlib accepts no data after the end of a
    // stream: start a new one and give it the old window as its dictionary (allowed at any time
    // on a raw inflate stream, zlib.h inflateSetDictionary).
    // On the stack: this path is rare (most senders never set BFINAL), and it must not fail.
    Bytef saved[1 << 15];
    uInt n = 0;
    if (inflateGetDictionary(&z_->zs, saved, &n) != Z_OK) return false;
    if (inflateReset(&z_->zs) != Z_OK) return false;
    return n == 0 || inflateSetDictionary(&z_->zs, saved, n) == Z_OK;
}

inflater::result inflater::inflate(std::string_view in, std::span<char> out, bool last) noexcept {
    result r;
    if (error_) return fail(r, error_.status, error_.reason);
    if (!z_ && !create())
        return fail(r, close_code::internal_error, "cannot allocate the inflate state");
    if (out.empty())
        return fail(r, close_code::internal_error, "inflate called without output space");
    in_message_ = true;
    z_stream& zs = z_->zs;
    // At most one byte past the limit: enough to know the message is too big, never more.
    const uint64_t left = opt_.max_message - produced_;
    const size_t room = left < out.size() ? static_cast<size_t>(left) + 1 : out.size();
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = clamp_uint(room);
    const uInt out_start = zs.avail_out;
    core::error problem;
    for (;;) {
        // RFC 7692 §7.2.3.4: after a final block (BFINAL) the message may go on with bytes that
        // only exist so that appending the tail still works (its example has one 0x00). They
        // carry no data: skip whatever follows the end of the stream.
        if (stream_end_) {
            r.consumed += in.size();
            in = {};
        }
        // Input comes from the caller, then (for the last chunk) from the 4-byte tail. zlib is
        // called at least once per call, even without input, to drain output it still holds.
        const bool from_caller = !in.empty();
        saw_input_ = saw_input_ || from_caller;
        // A message with no compressed byte at all is an empty message: the tail alone would be
        // a broken stored block (see deflater::compress), so it is not fed.
        const bool from_tail = !from_caller && last && !stream_end_ && tail_fed_ < 4 && saw_input_;
        static const unsigned char k_none = 0;
        zs.next_in = const_cast<Bytef*>(from_caller ? reinterpret_cast<const Bytef*>(in.data())
                                        : from_tail ? k_tail + tail_fed_
                                                    : &k_none);
        zs.avail_in = from_caller ? clamp_uint(in.size()) : from_tail ? 4u - tail_fed_ : 0u;
        const uInt avail_before = zs.avail_in;
        const uInt out_before = zs.avail_out;
        const int rc = ::inflate(&zs, Z_SYNC_FLUSH);
        const uInt used = avail_before - zs.avail_in;
        if (from_caller) {
            in.remove_prefix(used);
            r.consumed += used;
        } else if (from_tail) {
            tail_fed_ = static_cast<uint8_t>(tail_fed_ + used);
        }
        // zlib says whether it stopped between blocks in data_type (bit 128, zlib.h). Only a call
        // that made progress says it reliably: a call that starts between blocks and finds no
        // input reports 0 (inflate() turns mode TYPE into TYPEDO on entry).
        if (used > 0 || zs.avail_out != out_before) at_boundary_ = (zs.data_type & 128) != 0;
        if (rc == Z_STREAM_END) stream_end_ = true;
        if (rc == Z_MEM_ERROR) {
            problem = {close_code::internal_error, "zlib could not allocate"};
            break;
        }
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
            problem = {close_code::invalid_payload,
                       "invalid DEFLATE data in a compressed message (RFC 7692 §7.2.2)"};
            break;
        }
        if (zs.avail_out == 0 || (!from_caller && !from_tail)) break;
    }
    r.produced = out_start - zs.avail_out;
    if (r.produced > left) {
        // Past the limit. The byte too many is dropped, and the error waits like the one below.
        r.produced = static_cast<size_t>(left);
        problem = {close_code::message_too_big,
                   "compressed message inflates past the configured limit"};
    }
    produced_ += r.produced;
    // The output zlib wrote before it stopped on a problem goes out first and the error comes
    // with the next call: whatever the caller checks in the output (UTF-8 of a text message)
    // then fails before the problem, however the input was cut. Otherwise a short read that
    // ends before the bad bytes would give one error and a long one the other.
    const bool ends =
        !problem && zs.avail_out != 0 && last && (stream_end_ || tail_fed_ == 4 || !saw_input_);
    // With the tail consumed, a well-formed message leaves zlib between blocks; anything else is
    // a block cut short (the tail was read as part of it).
    if (ends && !stream_end_ && saw_input_ && !at_boundary_)
        problem = {close_code::invalid_payload,
                   "compressed message ends inside a DEFLATE block (RFC 7692 §7.2.2)"};
    if (problem) {
        error_ = problem;
        if (r.produced == 0) return fail(r, problem.status, problem.reason);
        r.status = status::more_output;
        return r;
    }
    if (ends) {
        if (!finish_message())
            return fail(r, close_code::internal_error, "cannot reset the inflate state");
        r.status = status::message_end;
    } else {
        r.status = zs.avail_out == 0 ? status::more_output : status::need_input;
    }
    return r;
}

bool inflater::release() noexcept {
    if (in_message_ || (history_ && !opt_.no_context_takeover)) return !z_;
    z_.reset();
    history_ = false;
    return true;
}

size_t inflater::memory() const noexcept { return z_ ? z_->bytes : 0; }

// ---- deflater ---------------------------------------------------------------------------------

deflater::deflater() noexcept = default;
deflater::deflater(options opt) noexcept : opt_(opt) {}
deflater::~deflater() = default;
deflater::deflater(deflater&&) noexcept = default;
deflater& deflater::operator=(deflater&&) noexcept = default;

bool deflater::create() noexcept {
    detail::zlib_stream_ptr z = new_stream(true);
    // zlib refuses windowBits 8 for a raw stream; 9 stays within a 256-byte window (deflate.hpp).
    const int bits = std::clamp<int>(opt_.window_bits, 9, 15);
    const int mem = std::clamp<int>(opt_.mem_level, 1, 9);
    const int level = std::clamp(opt_.level, 0, 9);
    if (deflateInit2(&z->zs, level, Z_DEFLATED, -bits, mem, Z_DEFAULT_STRATEGY) != Z_OK)
        return false;
    z_ = std::move(z);
    return true;
}

core::error deflater::fail(uint16_t code, std::string_view reason) noexcept {
    error_ = core::error{code, reason};
    return error_;
}

core::error deflater::compress(std::string_view in, bool last, std::string& out) {
    if (error_) return error_;
    if (!z_ && !create()) return fail(close_code::internal_error, "cannot allocate deflate state");
    in_message_ = true;
    z_stream& zs = z_->zs;
    zs.next_in = const_cast<Bytef*>(reinterpret_cast<const Bytef*>(in.data()));
    const size_t start = out.size();
    const int flush = last ? Z_SYNC_FLUSH : Z_NO_FLUSH;
    // Grow `out` by deflateBound's estimate (plus room for the flush marker) and loop until zlib
    // leaves output space unused: only then has it written everything the flush asked for.
    for (;;) {
        zs.avail_in = clamp_uint(in.size());
        const size_t at = out.size();
        const size_t grow = std::max<size_t>(deflateBound(&zs, zs.avail_in) + 16, 64);
        out.resize(at + grow);
        zs.next_out = reinterpret_cast<Bytef*>(out.data() + at);
        zs.avail_out = clamp_uint(grow);
        const uInt avail_before = zs.avail_in;
        const int rc = deflate(&zs, flush);
        in.remove_prefix(avail_before - zs.avail_in);
        out.resize(out.size() - zs.avail_out);
        if (rc == Z_MEM_ERROR) return fail(close_code::internal_error, "zlib could not allocate");
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            return fail(close_code::internal_error, "zlib deflate failed");
        if (zs.avail_out != 0 && in.empty()) break;
    }
    if (!last) {
        message_bytes_ += out.size() - start;
        return {};
    }
    // §7.2.1: remove the 00 00 ff ff the sync flush ended with. It is always the very end of what
    // this call produced, since the flush is what wrote it.
    if (out.size() - start >= 4 && std::memcmp(out.data() + out.size() - 4, k_tail, 4) == 0)
        out.resize(out.size() - 4);
    message_bytes_ += out.size() - start;
    // An empty message right after another one: zlib skips a second flush with no new input and
    // writes nothing. An empty payload would not do: the receiver appends 00 00 ff ff, which
    // alone is a stored block header followed by a broken length, and a zlib receiver then
    // misreads the next message ("invalid stored block lengths" in Python's websockets).
    // §7.2.3.6: send the header bits of an empty stored block instead, the byte 00.
    if (message_bytes_ == 0) out.push_back('\0');
    message_bytes_ = 0;
    in_message_ = false;
    history_ = true;
    if (opt_.no_context_takeover && deflateReset(&zs) != Z_OK)
        return fail(close_code::internal_error, "cannot reset the deflate state");
    return {};
}

bool deflater::release() noexcept {
    if (in_message_ || (history_ && !opt_.no_context_takeover)) return !z_;
    z_.reset();
    history_ = false;
    return true;
}

size_t deflater::memory() const noexcept { return z_ ? z_->bytes : 0; }

}  // namespace coachwhip::ws
