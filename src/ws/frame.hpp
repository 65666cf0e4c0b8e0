// coachwhip::ws WebSocket framing (RFC 6455 §5, §7.4; RFC 7692 §6 for RSV1).
//
// Four pieces, all pure (no I/O, no allocation, no global state; one instance per connection,
// engine thread):
// - frame_parser: bytes from a client in, frame events out (a header, then its payload in
//   chunks as the bytes arrive). Unmasks the payload in place, in the caller's buffer.
// - message_assembler: the rules above single frames: fragmentation (§5.4), UTF-8 of text
//   messages across fragments (§8.1), message size, close payloads (§5.5.1, §7.4).
// - encode_frame_header(): the header of a frame the server sends (unmasked, §5.1).
// - encode_close_payload() / decode_close_payload(): the body of a close frame.
//
// Errors are core::error values whose `status` is a WebSocket close code (§7.4.1), not an HTTP
// status: 1002 protocol error, 1007 invalid payload data, 1009 message too big. `reason` is a
// static string naming the rule. The engine sends a close frame with that code (§7.1.7 "Fail
// the WebSocket Connection") and stops reading: every codec here is sticky after an error.
//
// Typical read loop (the engine's; deflate.hpp has the inflater):
//
//     for (;;) {
//         auto r = parser.parse(input);               // input: std::span<char>, not yet parsed
//         input = input.subspan(r.consumed);
//         if (r.status == frame_parser::status::need_more) break;   // read more bytes
//         if (r.status == frame_parser::status::error) fail(r.error);
//         if (r.status == frame_parser::status::header) {
//             if (auto e = assembler.begin_frame(r.header)) fail(e);
//             continue;
//         }
//         // status::payload: r.payload is unmasked; r.frame_end marks the frame's last chunk
//         if (assembler.in_control_frame()) assembler.control_data(r.payload);
//         else if (assembler.message_compressed()) inflate r.payload, message_data(output)...
//         else if (auto e = assembler.message_data(r.payload)) fail(e); else deliver(r.payload);
//         if (r.frame_end) {
//             auto end = assembler.end_frame();  // after the inflater finished a FIN frame
//             ... end.what: fragment / message / ping / pong / close
//         }
//     }
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "core/error.hpp"
#include "ws/utf8.hpp"

namespace coachwhip::ws {

// RFC 6455 §5.2 / §11.8. Values 3-7 and 0xB-0xF are reserved and never produced by the parser.
enum class opcode : uint8_t {
    continuation = 0x0,
    text = 0x1,
    binary = 0x2,
    close = 0x8,
    ping = 0x9,
    pong = 0xA,
};

// Control frames (close, ping, pong) have the high opcode bit set (§5.5).
constexpr bool is_control(opcode op) noexcept { return (static_cast<uint8_t>(op) & 0x8) != 0; }

// Close codes (RFC 6455 §7.4.1, §11.7; IANA "WebSocket Close Code Number Registry").
namespace close_code {
inline constexpr uint16_t normal = 1000;
inline constexpr uint16_t going_away = 1001;
inline constexpr uint16_t protocol_error = 1002;
inline constexpr uint16_t unsupported_data = 1003;
inline constexpr uint16_t no_status = 1005;  // never on the wire: "the close frame had no code"
inline constexpr uint16_t abnormal = 1006;   // never on the wire: "no close frame at all"
inline constexpr uint16_t invalid_payload = 1007;
inline constexpr uint16_t policy_violation = 1008;
inline constexpr uint16_t message_too_big = 1009;
inline constexpr uint16_t mandatory_extension = 1010;
inline constexpr uint16_t internal_error = 1011;
}  // namespace close_code

struct frame_header {
    bool fin = true;
    bool rsv1 = false;  // RFC 7692 §6: "Per-Message Compressed" (only on a message's first frame)
    opcode op = opcode::binary;
    bool masked = false;  // frames from a client always are (the parser rejects the others)
    std::array<uint8_t, 4> mask{};
    uint64_t length = 0;  // payload length; the parser guarantees < 2^63 and <= max_frame
};

// ---- frame_parser -----------------------------------------------------------------------------

// Contract
// - Resumable: takes the stream in pieces of any size (down to one byte) and remembers where it
//   was; a header split across reads is collected internally (at most 14 bytes). The events
//   (headers, frame ends, errors) are the same however the stream is split; only the payload
//   chunk boundaries follow the reads.
// - Zero-copy: payload is unmasked in place in the caller's `input` and returned as a view of
//   it. `input` must be writable; each byte is unmasked exactly once, by the call that returns
//   it. The view is valid while the caller keeps those bytes where they are.
// - Events: every frame gives one `header` result, then one or more `payload` results whose
//   sizes add up to header.length, the last one with frame_end set. A frame with length 0 gives
//   exactly one, empty, payload result (with consumed 0): the caller must call again even when
//   no bytes were consumed, until need_more.
// - Checks (all close code 1002 unless noted), each made at the first byte that proves it:
//   reserved opcodes; RSV2/RSV3 set; RSV1 set when options.rsv1_allowed is false, or on a control
//   frame or a continuation (RFC 7692 §6.1); a control frame without FIN or longer than 125
//   (§5.5); an unmasked frame (§5.1: a server MUST close the connection); a 64-bit length with
//   its most significant bit set (§5.2); a declared length over options.max_frame -> 1009.
//   Non-minimal length encodings (e.g. 5 in the 16-bit form) are accepted: §5.2 says "the
//   minimal number of bytes MUST be used", but that binds senders, and rejecting them buys
//   nothing (Autobahn does not test it either way).
class frame_parser {
  public:
    struct options {
        bool rsv1_allowed = false;                // permessage-deflate was negotiated
        uint64_t max_frame = uint64_t{16} << 20;  // declared payload length of one frame -> 1009
    };

    enum class status : uint8_t {
        header,     // `header` holds a complete frame header; payload results follow
        payload,    // `payload` holds unmasked payload bytes; `frame_end` on the frame's last
        need_more,  // every byte of `input` was consumed; call again with more
        error,      // `error` says why (a close code); every later call returns it again
    };

    struct result {
        // Qualified: an unqualified `status status` is ill-formed ("changes meaning", g++ 12).
        frame_parser::status status = frame_parser::status::need_more;
        size_t consumed = 0;       // bytes of `input` used by this call
        frame_header header;       // status::header
        std::string_view payload;  // status::payload: a view into `input`
        bool frame_end = false;    // status::payload: the last payload of this frame
        core::error error;         // status::error
    };

    frame_parser() = default;
    explicit frame_parser(options opt) noexcept : opt_(opt) {}

    result parse(std::span<char> input) noexcept;

    // The header of the frame whose payload is being read (valid after a `header` result).
    const frame_header& current() const noexcept { return header_; }
    // Bytes of the current frame's payload not delivered yet.
    uint64_t remaining() const noexcept { return remaining_; }

  private:
    // Transition diagram:
    //   header --2 bytes: checks of byte 0 and byte 1, then 0/2/8 length bytes, then the 4-byte
    //            masking key (one byte at a time, so any split works)--> payload
    //            (returns status::header)
    //   payload --remaining bytes, in as many results as reads (unmasked in place)--> header
    //            (the result carrying the last byte has frame_end; a 0-length frame gives one
    //            empty result)
    //   header --a check fails--> failed (sticky)
    enum class state : uint8_t { header, payload, failed };

    bool take_header_byte(unsigned char b) noexcept;
    bool check_first_byte(unsigned char b) noexcept;
    bool check_second_byte(unsigned char b) noexcept;
    bool finish_length() noexcept;
    bool fail(uint16_t code, std::string_view reason) noexcept;
    result payload_result(std::span<char> input) noexcept;

    options opt_{};
    state state_ = state::header;
    std::array<uint8_t, 14> bytes_{};  // the header being collected
    uint8_t have_ = 0;                 // bytes of it collected so far
    uint8_t need_ = 2;                 // its full size, known once byte 1 is in
    frame_header header_{};
    uint64_t remaining_ = 0;  // payload bytes still to come
    uint8_t mask_pos_ = 0;    // position in the masking key of the next payload byte
    core::error error_{};
};

// XORs `data` with the masking key, the first byte with key[offset % 4] (RFC 6455 §5.3).
// Masking and unmasking are the same operation. Returns the key position after `data`, to pass
// as `offset` for the bytes that follow. Eight bytes at a time.
size_t apply_mask(std::span<char> data, const std::array<uint8_t, 4>& key, size_t offset) noexcept;

// ---- serializer -------------------------------------------------------------------------------

inline constexpr size_t k_max_header_size = 14;  // 2 + 8 (64-bit length) + 4 (masking key)

// Writes the header of `h` (§5.2) into `out`, the length in its minimal encoding (7-bit, 16-bit
// or 64-bit), and returns its size: 2, 4 or 10 bytes, plus 4 when h.masked (a server never masks,
// §5.1; masking is there for tests and fuzzers that play the client). The payload is the
// caller's: for a masked frame it masks it with apply_mask(payload, h.mask, 0). The caller
// keeps h.length < 2^63 and a control frame's length <= 125 with fin set.
size_t encode_frame_header(const frame_header& h, std::span<char, k_max_header_size> out) noexcept;

// ---- close payloads (§5.5.1, §7.4) ------------------------------------------------------------

// True for the codes that may appear in a close frame: 1000-1003, 1007-1014 and 3000-4999.
// 1004 is reserved, 1005/1006/1015 are never sent (§7.4.1), 1016-2999 are unassigned or for
// extensions we do not have, 0-999 are unused. 1012-1014 (service restart, try again later, bad
// gateway) are registered with IANA and accepted, as Autobahn's cases 7.7.x expect.
bool is_valid_close_code(uint16_t code) noexcept;

struct close_info {
    core::error error;  // 1002 (1-byte payload, invalid code) or 1007 (reason not UTF-8)
    uint16_t code = close_code::no_status;  // no_status when the payload is empty
    std::string_view reason;  // view into the payload; valid UTF-8 when there is no error
};

// Parses a received close frame's payload (§5.5.1: empty, or a 2-byte code and a UTF-8 reason).
close_info decode_close_payload(std::string_view payload) noexcept;

struct close_payload {
    std::array<char, 125> bytes{};
    size_t size = 0;
    std::string_view view() const noexcept { return {bytes.data(), size}; }
};

// The payload of a close frame to send: the code in network order, then `reason` cut to 123
// bytes at a code-point boundary (a control frame carries at most 125, §5.5). `reason` should
// be valid UTF-8 (an ASGI app's str always is). close_code::no_status gives an empty payload
// (§7.4.1: 1005 means "no code" and is never sent). The code is not checked: the engine decides
// what to do with an app's invalid code (see is_valid_close_code).
close_payload encode_close_payload(uint16_t code, std::string_view reason) noexcept;

// ---- message_assembler ------------------------------------------------------------------------

// Tracks the frames of one connection above the frame level. Feed it the parser's events in
// order (see the loop at the top of this file).
// - Fragmentation (§5.4): a continuation frame without a message open -> 1002; a text or binary
//   frame while a fragmented message is open -> 1002; control frames may come between
//   fragments (§5.4: "control frames MAY be injected in the middle of a fragmented message").
// - Text messages: UTF-8 is checked on message_data() as it arrives, across fragments, and
//   fails at the first impossible byte (1007); a message ending inside a code point -> 1007.
// - Size: a data message's payload (after decompression) above options.max_message -> 1009;
//   for an uncompressed message the check is made on the frame header, before any payload.
//   The compressed bytes of a message are not counted (each frame is bounded by max_frame and
//   streamed through the inflater, nothing is buffered): a peer trickling compressed data that
//   inflates to nothing is the engine's idle and rate timeouts' business.
// - Control frames: their payload (<= 125 bytes) is copied here; at the frame's end a close
//   payload is decoded (decode_close_payload: 1002 / 1007). After a close frame the
//   connection is closing (§5.5.1): any further frame -> 1002.
// - After an error every call returns it again.
class message_assembler {
  public:
    struct options {
        uint64_t max_message = uint64_t{16} << 20;  // bytes of one message's payload -> 1009
    };

    enum class completed : uint8_t {
        fragment,  // a data frame without FIN ended: the message continues
        message,   // a data frame with FIN ended: the message is complete
        ping,      // control frames: control_payload() holds the payload
        pong,
        close,  // received_close() holds the decoded payload; the connection is closing
    };

    struct frame_end {
        core::error error;
        completed what = completed::fragment;
    };

    message_assembler() = default;
    explicit message_assembler(options opt) noexcept : opt_(opt) {}

    // A header from frame_parser (which already checked the single-frame rules).
    core::error begin_frame(const frame_header& h) noexcept;
    // Payload bytes of the current control frame, as the parser delivers them.
    void control_data(std::string_view bytes) noexcept;
    // Payload bytes of the current data message: the frame payload as delivered when the message
    // is not compressed, the inflater's output when it is.
    core::error message_data(std::string_view bytes) noexcept;
    // The current frame's payload is complete (the parser's frame_end). For a FIN data frame of a
    // compressed message, call this after the inflater finished the message and its output went
    // through message_data(): the end-of-message UTF-8 check needs all of it.
    frame_end end_frame() noexcept;

    bool in_control_frame() const noexcept { return frame_ == frame_state::control; }
    bool in_message() const noexcept { return message_ == message_state::open; }
    // The open (or just completed) message: text or binary, compressed (RSV1 on its first frame).
    opcode message_opcode() const noexcept { return message_op_; }
    bool message_compressed() const noexcept { return compressed_; }
    uint64_t message_size() const noexcept { return message_size_; }
    // After a ping / pong / close frame ended.
    std::string_view control_payload() const noexcept { return {control_.data(), control_size_}; }
    const close_info& received_close() const noexcept { return close_; }

  private:
    // Message state (§5.4), changed by begin_frame() and end_frame():
    //   idle --text/binary--> open --continuation--> open
    //   open --end_frame() of a FIN frame--> idle            (end.what == message)
    //   idle/open --control frame--> unchanged               (control frames between fragments)
    //   idle/open --end_frame() of a close frame--> closed
    //   idle --continuation--> failed (1002)      open --text/binary--> failed (1002)
    //   closed --any frame--> failed (1002)       any --other error--> failed (sticky)
    // Frame state: none --begin_frame--> data | control --end_frame--> none.
    enum class message_state : uint8_t { idle, open, closed, failed };
    enum class frame_state : uint8_t { none, data, control };

    core::error fail(uint16_t code, std::string_view reason) noexcept;

    options opt_{};
    message_state message_ = message_state::idle;
    frame_state frame_ = frame_state::none;
    bool fin_ = false;  // the current data frame ends its message
    bool compressed_ = false;
    opcode message_op_ = opcode::binary;
    opcode control_op_ = opcode::ping;
    uint64_t message_size_ = 0;
    utf8_validator utf8_;
    std::array<char, 125> control_{};
    size_t control_size_ = 0;
    close_info close_{};
    core::error error_{};
};

}  // namespace coachwhip::ws
