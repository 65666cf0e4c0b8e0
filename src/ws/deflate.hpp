// coachwhip::ws permessage-deflate (RFC 7692 §7) over zlib: one inflater (client -> server) and
// one deflater (server -> client) per connection that negotiated the extension.
//
// Both are raw DEFLATE streams (no zlib header, RFC 1951). A compressed message is DEFLATE data
// ending in a sync flush whose trailing empty stored block "00 00 ff ff" is removed by the
// sender and put back by the receiver (§7.2.1, §7.2.2). With context takeover (the default) the
// LZ77 window carries from one message to the next; with *_no_context_takeover each message
// starts from an empty window (§7.1.1).
//
// Contract
// - Pure: no I/O, no global state, engine thread; the only allocations are zlib's own state
//   (counted, see memory()) and, for the deflater, the caller's output string.
// - Lazy: the zlib state is created at the first message, not at construction. release() frees
//   it between messages when nothing needs to survive (no context takeover, or nothing
//   compressed yet); the next message creates it again. Idle connections can thus hold no zlib
//   memory at all.
// - Sticky errors: after one, every call returns it again. Errors are core::error values whose
//   `status` is a WebSocket close code: 1007 for data that is not valid DEFLATE, 1009 for a
//   message that inflates to more than the limit, 1011 when zlib cannot allocate.
//
// Memory per connection (zlib 1.2.13, measured by counting zlib's allocations, x86-64):
//   deflater: window 15, memLevel 8 (zlib's defaults): 262 KiB.  window 12, memLevel 5: 38 KiB.
//             window 9, memLevel 1: 9 KiB. Roughly 2^(w+2) + 2^(m+9) + 6 KiB.
//   inflater: 7 KiB at creation plus the window, 2^w bytes, allocated at the first output:
//             39 KiB with window 15, 11 KiB with window 12.
// Defaults: the deflater uses window 12 and memLevel 5 (38 KiB instead of 262 KiB). On a
// stream of small JSON messages (~150 bytes each, context takeover) that costs little: the
// compressed size is 17.1% of the input against 15.5% with 15/8; on one 14 KiB message the two
// give 14.0% both. What matters far more is context takeover itself: without it the same small
// messages only shrink to 87.8%. handshake.hpp negotiates window 12 for the client's direction
// too, when the client lets the server choose.
//
// zlib and windowBits 8: zlib's deflate refuses a raw stream with windowBits 8 (deflateInit2
// returns Z_STREAM_ERROR; see zlib.h, "windowBits 8 is not supported"). When a client asks for
// server_max_window_bits=8 the deflater uses 9 instead. That is still within the client's
// 256-byte window: zlib's deflate never emits a match distance above w_size - 262
// (MAX_DIST in deflate.h, kept clear of MIN_LOOKAHEAD), i.e. 250 with a 512-byte window.
// tests/cpp/test_ws_deflate.cpp checks it by inflating such output with windowBits 8. The
// inflater has no such limit and uses 8 when 8 is negotiated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace coachwhip::ws {

namespace detail {
// A z_stream and its allocation counter, defined in deflate.cpp: zlib.h stays out of this header.
// (The special members of inflater and deflater are defined there too, where it is complete.)
struct zlib_stream;
using zlib_stream_ptr = std::unique_ptr<zlib_stream>;
}  // namespace detail

// ---- inflater ---------------------------------------------------------------------------------

// Decompresses the messages a client sends with RSV1 set.
//
// Usage, for each payload chunk of a compressed message (last = this chunk ends the FIN frame):
//
//     for (;;) {
//         auto r = inf.inflate(chunk, out, last);      // out: a caller buffer, any size >= 1
//         chunk.remove_prefix(r.consumed);
//         if (r.status == inflater::status::error) fail(r.error);
//         deliver(out.first(r.produced));               // may be empty
//         if (r.status != inflater::status::more_output) break;   // need_input or message_end
//     }
//
// Bounded: the output of one message is capped at options.max_message. zlib never writes more
// than max_message + 1 bytes of one message (into the caller's buffer); the results hand out at
// most max_message bytes, then error 1009. A deflate bomb (a few KiB expanding to GiB) therefore
// costs at most the caller's buffer and max_message bytes of work.
//
// Errors come after the output that precedes them: when zlib stops on bad data (or the limit)
// after writing some output, that output is returned first (status more_output) and the error
// with the next call. The caller's checks on the output (UTF-8) thus see the same bytes before
// the error however the message was cut into reads.
class inflater {
  public:
    struct options {
        uint8_t window_bits = 15;                   // the negotiated client_max_window_bits, 8..15
        bool no_context_takeover = false;           // client_no_context_takeover was negotiated
        uint64_t max_message = uint64_t{16} << 20;  // output bytes of one message -> 1009
    };

    enum class status : uint8_t {
        more_output,  // `out` is full: call again (with the rest of the input, maybe none)
        need_input,   // all input used and all output produced: give the next chunk
        message_end,  // `last` was set and the message is complete; the next call starts the next
        error,        // `error` (1007, 1009 or 1011); sticky
    };

    struct result {
        inflater::status status = inflater::status::need_input;
        size_t consumed = 0;  // bytes of `in` used
        size_t produced = 0;  // bytes written at the start of `out`
        core::error error;
    };

    inflater() noexcept;
    explicit inflater(options opt) noexcept;
    ~inflater();
    inflater(inflater&&) noexcept;
    inflater& operator=(inflater&&) noexcept;

    // Inflates `in`, the next compressed bytes of the current message, into `out`. With `last`,
    // `in` ends the message: the 00 00 ff ff tail is added here (no copy) and the message must
    // end at a DEFLATE block boundary (else 1007). A message may also end the DEFLATE stream
    // with a final block (BFINAL, RFC 7692 §7.2.3.4); the bytes after it in the same message are
    // skipped (that example has one 0x00 there), and with context takeover the window carries
    // over into a fresh stream for the next message. A message with no compressed byte at all
    // is taken as an empty message (some senders produce it; the RFC's algorithm would read the
    // appended tail as a broken stored block). On error, ignore `out`.
    result inflate(std::string_view in, std::span<char> out, bool last) noexcept;

    // Frees the zlib state if no later message depends on it (between messages, and either no
    // context takeover or no message inflated yet). Returns whether the state is gone.
    bool release() noexcept;
    // Bytes zlib holds for this stream right now (0 after release()).
    size_t memory() const noexcept;
    const options& settings() const noexcept { return opt_; }

  private:
    result fail(result r, uint16_t code, std::string_view reason) noexcept;
    bool create() noexcept;
    bool finish_message() noexcept;

    options opt_{};
    detail::zlib_stream_ptr z_;
    uint64_t produced_ = 0;    // output bytes of the current message
    uint8_t tail_fed_ = 0;     // bytes of 00 00 ff ff given to zlib for the current message
    bool stream_end_ = false;  // the current message ended the DEFLATE stream (BFINAL)
    bool at_boundary_ = true;  // zlib's last progress stopped between two DEFLATE blocks
    bool saw_input_ = false;   // the current message has compressed bytes (not only the tail)
    bool in_message_ = false;  // some bytes of the current message were seen
    bool history_ = false;     // a message went through this stream (its window matters)
    core::error error_{};
};

// ---- deflater ---------------------------------------------------------------------------------

// Compresses the messages the server sends with RSV1 set.
class deflater {
  public:
    struct options {
        uint8_t window_bits = 12;          // <= the negotiated server_max_window_bits; 8 -> 9
        uint8_t mem_level = 5;             // zlib memLevel 1..9 (see the memory table above)
        int level = 6;                     // zlib compression level 0..9 (6: zlib's default)
        bool no_context_takeover = false;  // server_no_context_takeover was negotiated
    };

    deflater() noexcept;
    explicit deflater(options opt) noexcept;
    ~deflater();
    deflater(deflater&&) noexcept;
    deflater& operator=(deflater&&) noexcept;

    // Compresses `in`, the next bytes of the current message, and appends the output to `out`.
    // With `last` the message ends: the data is flushed with Z_SYNC_FLUSH and the trailing
    // 00 00 ff ff removed (§7.2.1), so `out` then holds everything to send for this message
    // (the payload of one frame, or of several if the caller fragments it). Without `last` the
    // output may be empty (zlib buffers). A message sent in several calls may be split into
    // frames by the caller at any byte. An empty message compresses to the single byte 00
    // (§7.2.3.6), never to nothing (see deflate.cpp). Errors: 1011 (zlib could not allocate).
    core::error compress(std::string_view in, bool last, std::string& out);

    // As for inflater: frees the state between messages when nothing depends on it.
    bool release() noexcept;
    size_t memory() const noexcept;
    const options& settings() const noexcept { return opt_; }

  private:
    bool create() noexcept;
    core::error fail(uint16_t code, std::string_view reason) noexcept;

    options opt_{};
    detail::zlib_stream_ptr z_;
    size_t message_bytes_ = 0;  // output of the current message so far
    bool in_message_ = false;
    bool history_ = false;
    core::error error_{};
};

}  // namespace coachwhip::ws
