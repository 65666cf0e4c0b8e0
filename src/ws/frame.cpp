// coachwhip::ws framing. The contracts and state diagrams are in frame.hpp; this file says why.
//
// The parser collects a header one byte at a time (it is at most 14 bytes, and a byte machine
// needs no re-parse when a read ends inside it) and checks each byte as soon as it is in, so an
// error shows at the same byte whatever the split. Payload goes out as large as it comes: the
// only work per payload byte is the XOR of unmasking, done in place.
#include "ws/frame.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

namespace coachwhip::ws {
namespace {

constexpr uint8_t k_fin = 0x80;
constexpr uint8_t k_rsv1 = 0x40;
constexpr uint8_t k_rsv23 = 0x30;
constexpr uint8_t k_opcode = 0x0F;
constexpr uint8_t k_mask_bit = 0x80;
constexpr uint8_t k_len7 = 0x7F;

constexpr size_t k_max_control_payload = 125;  // §5.5

bool is_known_opcode(uint8_t op) {
    return op <= 0x2 || (op >= 0x8 && op <= 0xA);  // §5.2: 3-7 and B-F are reserved
}

}  // namespace

// ---- frame_parser -----------------------------------------------------------------------------

bool frame_parser::fail(uint16_t code, std::string_view reason) noexcept {
    state_ = state::failed;
    error_ = core::error{code, reason};
    return false;
}

// Byte 0: FIN, RSV1-3, opcode.
bool frame_parser::check_first_byte(unsigned char b) noexcept {
    const uint8_t op = b & k_opcode;
    if (!is_known_opcode(op))
        return fail(close_code::protocol_error, "reserved opcode (RFC 6455 §5.2)");
    if ((b & k_rsv23) != 0)
        return fail(close_code::protocol_error,
                    "RSV2 or RSV3 set without a negotiated extension (RFC 6455 §5.2)");
    const bool control = (op & 0x8) != 0;
    if ((b & k_rsv1) != 0) {
        if (!opt_.rsv1_allowed)
            return fail(close_code::protocol_error,
                        "RSV1 set without a negotiated extension (RFC 6455 §5.2)");
        // RFC 7692 §6.1: only the first frame of a data message carries "compressed"; on a
        // control frame or a continuation the bit has no meaning and the frame is invalid.
        if (control || op == 0)
            return fail(close_code::protocol_error,
                        "RSV1 set on a control frame or a continuation (RFC 7692 §6.1)");
    }
    if (control && (b & k_fin) == 0)
        return fail(close_code::protocol_error, "fragmented control frame (RFC 6455 §5.5)");
    header_.fin = (b & k_fin) != 0;
    header_.rsv1 = (b & k_rsv1) != 0;
    header_.op = static_cast<opcode>(op);
    return true;
}

// Byte 1: MASK, 7-bit length. Decides how many header bytes follow.
bool frame_parser::check_second_byte(unsigned char b) noexcept {
    // §5.1: "The server MUST close the connection upon receiving a frame that is not masked."
    if ((b & k_mask_bit) == 0)
        return fail(close_code::protocol_error, "unmasked frame from a client (RFC 6455 §5.1)");
    const uint8_t len7 = b & k_len7;
    header_.masked = true;
    const uint8_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    need_ = static_cast<uint8_t>(2 + ext + 4);
    if (ext == 0) {
        header_.length = len7;
        return finish_length();
    }
    return true;
}

bool frame_parser::finish_length() noexcept {
    // Checked on the length, not on the 7-bit field: a ping of 5 bytes in the 16-bit form is
    // non-minimal but not too long.
    if (is_control(header_.op) && header_.length > k_max_control_payload)
        return fail(close_code::protocol_error,
                    "control frame payload longer than 125 bytes (RFC 6455 §5.5)");
    if (header_.length > opt_.max_frame)
        return fail(close_code::message_too_big, "frame longer than the configured limit");
    return true;
}

bool frame_parser::take_header_byte(unsigned char b) noexcept {
    const uint8_t at = have_;
    bytes_[have_++] = b;
    if (at == 0) return check_first_byte(b);
    if (at == 1) return check_second_byte(b);
    const uint8_t ext = static_cast<uint8_t>(need_ - 6);
    if (at < 2 + ext) {
        // §5.2: "the most significant bit MUST be 0". Known at the first of the 8 bytes.
        if (ext == 8 && at == 2 && (b & 0x80) != 0)
            return fail(close_code::protocol_error,
                        "64-bit payload length with the high bit set (RFC 6455 §5.2)");
        if (at + 1 < 2 + ext) return true;
        uint64_t len = 0;
        for (uint8_t i = 2; i < 2 + ext; ++i)
            len = len << 8 | bytes_[i];
        header_.length = len;
        return finish_length();
    }
    return true;  // a masking key byte
}

frame_parser::result frame_parser::payload_result(std::span<char> input) noexcept {
    result r;
    r.status = status::payload;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, input.size()));
    const std::span<char> data = input.first(n);
    mask_pos_ = static_cast<uint8_t>(apply_mask(data, header_.mask, mask_pos_));
    remaining_ -= n;
    r.consumed = n;
    r.payload = std::string_view(data.data(), n);
    r.frame_end = remaining_ == 0;
    if (r.frame_end) state_ = state::header;
    return r;
}

frame_parser::result frame_parser::parse(std::span<char> input) noexcept {
    result r;
    if (state_ == state::failed) {
        r.status = status::error;
        r.error = error_;
        return r;
    }
    if (state_ == state::payload) {
        // A 0-length frame still gets its one (empty) payload result, even with no input.
        if (input.empty() && remaining_ > 0) return r;
        return payload_result(input);
    }
    for (size_t i = 0; i < input.size(); ++i) {
        if (!take_header_byte(static_cast<unsigned char>(input[i]))) {
            r.status = status::error;
            r.error = error_;
            r.consumed = i;
            return r;
        }
        if (have_ == need_) {
            std::copy_n(bytes_.begin() + need_ - 4, 4, header_.mask.begin());
            remaining_ = header_.length;
            mask_pos_ = 0;
            have_ = 0;
            need_ = 2;
            state_ = state::payload;
            r.status = status::header;
            r.header = header_;
            r.consumed = i + 1;
            return r;
        }
    }
    r.consumed = input.size();
    return r;
}

size_t apply_mask(std::span<char> data, const std::array<uint8_t, 4>& key, size_t offset) noexcept {
    // The key rotated so that k[j % 4] masks data[j], twice over: one 8-byte XOR pattern. A
    // pattern of bytes (not a uint64_t built with shifts) keeps this independent of endianness.
    unsigned char k[8];
    for (size_t j = 0; j < 8; ++j)
        k[j] = key[(offset + j) & 3];
    uint64_t pattern;
    std::memcpy(&pattern, k, 8);
    char* p = data.data();
    const size_t n = data.size();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        std::memcpy(&word, p + i, 8);
        word ^= pattern;
        std::memcpy(p + i, &word, 8);
    }
    for (; i < n; ++i)
        p[i] = static_cast<char>(p[i] ^ k[i & 3]);
    return (offset + n) & 3;
}

// ---- serializer -------------------------------------------------------------------------------

size_t encode_frame_header(const frame_header& h, std::span<char, k_max_header_size> out) noexcept {
    auto* o = reinterpret_cast<unsigned char*>(out.data());
    o[0] = static_cast<unsigned char>((h.fin ? k_fin : 0) | (h.rsv1 ? k_rsv1 : 0) |
                                      static_cast<uint8_t>(h.op));
    const unsigned char mask = h.masked ? k_mask_bit : 0;
    size_t n;
    if (h.length <= 125) {
        o[1] = static_cast<unsigned char>(mask | h.length);
        n = 2;
    } else if (h.length <= 0xFFFF) {
        o[1] = static_cast<unsigned char>(mask | 126);
        o[2] = static_cast<unsigned char>(h.length >> 8);
        o[3] = static_cast<unsigned char>(h.length);
        n = 4;
    } else {
        o[1] = static_cast<unsigned char>(mask | 127);
        for (int i = 0; i < 8; ++i)
            o[2 + i] = static_cast<unsigned char>(h.length >> (56 - 8 * i));
        n = 10;
    }
    if (h.masked) {
        std::copy_n(h.mask.begin(), 4, o + n);
        n += 4;
    }
    return n;
}

// ---- close payloads ---------------------------------------------------------------------------

bool is_valid_close_code(uint16_t code) noexcept {
    if (code >= 1000 && code <= 1003) return true;
    if (code >= 1007 && code <= 1014) return true;
    return code >= 3000 && code <= 4999;
}

close_info decode_close_payload(std::string_view payload) noexcept {
    close_info c;
    if (payload.empty()) return c;  // §5.5.1: a close frame MAY have no body
    if (payload.size() == 1) {
        c.error = {close_code::protocol_error,
                   "close frame with a 1-byte payload (RFC 6455 §5.5.1)"};
        return c;
    }
    const auto* u = reinterpret_cast<const unsigned char*>(payload.data());
    c.code = static_cast<uint16_t>(u[0] << 8 | u[1]);
    c.reason = payload.substr(2);
    if (!is_valid_close_code(c.code)) {
        c.error = {close_code::protocol_error, "invalid close code (RFC 6455 §7.4.1)"};
    } else if (!is_valid_utf8(c.reason)) {
        c.error = {close_code::invalid_payload, "close reason is not UTF-8 (RFC 6455 §5.5.1)"};
    }
    return c;
}

close_payload encode_close_payload(uint16_t code, std::string_view reason) noexcept {
    close_payload p;
    if (code == close_code::no_status) return p;
    p.bytes[0] = static_cast<char>(code >> 8);
    p.bytes[1] = static_cast<char>(code & 0xFF);
    const size_t n = utf8_truncate(reason, p.bytes.size() - 2);
    std::copy_n(reason.data(), n, p.bytes.begin() + 2);
    p.size = 2 + n;
    return p;
}

// ---- message_assembler ------------------------------------------------------------------------

core::error message_assembler::fail(uint16_t code, std::string_view reason) noexcept {
    message_ = message_state::failed;
    error_ = core::error{code, reason};
    return error_;
}

core::error message_assembler::begin_frame(const frame_header& h) noexcept {
    if (message_ == message_state::failed) return error_;
    if (message_ == message_state::closed)
        return fail(close_code::protocol_error, "frame after a close frame (RFC 6455 §5.5.1)");
    if (is_control(h.op)) {
        frame_ = frame_state::control;
        control_op_ = h.op;
        control_size_ = 0;
        return {};
    }
    if (h.op == opcode::continuation) {
        if (message_ != message_state::open)
            return fail(close_code::protocol_error,
                        "continuation frame without a message to continue (RFC 6455 §5.4)");
    } else {
        if (message_ == message_state::open)
            return fail(close_code::protocol_error,
                        "new data frame while a fragmented message is open (RFC 6455 §5.4)");
        message_ = message_state::open;
        message_op_ = h.op;
        compressed_ = h.rsv1;
        message_size_ = 0;
        utf8_.reset();
    }
    // Uncompressed, the payload is the message: refuse an oversized one before reading it.
    // (message_size_ <= max_message always holds here, so the subtraction cannot wrap.)
    if (!compressed_ && h.length > opt_.max_message - message_size_)
        return fail(close_code::message_too_big, "message longer than the configured limit");
    frame_ = frame_state::data;
    fin_ = h.fin;
    return {};
}

void message_assembler::control_data(std::string_view bytes) noexcept {
    // The parser caps control payloads at 125 bytes; the min() keeps a misuse from overflowing.
    const size_t n = std::min(bytes.size(), control_.size() - control_size_);
    std::copy_n(bytes.data(), n, control_.begin() + control_size_);
    control_size_ += n;
}

core::error message_assembler::message_data(std::string_view bytes) noexcept {
    if (message_ == message_state::failed) return error_;
    if (bytes.size() > opt_.max_message - message_size_)
        return fail(close_code::message_too_big, "message longer than the configured limit");
    message_size_ += bytes.size();
    // §8.1: a text message that is not UTF-8 fails the connection (1007), and Autobahn 6.x
    // expects it at the first bad byte, not at the end of the message.
    if (message_op_ == opcode::text && utf8_.feed(bytes) == utf8_status::invalid)
        return fail(close_code::invalid_payload, "text message is not UTF-8 (RFC 6455 §8.1)");
    return {};
}

message_assembler::frame_end message_assembler::end_frame() noexcept {
    frame_end end;
    if (message_ == message_state::failed) {
        end.error = error_;
        return end;
    }
    const frame_state f = std::exchange(frame_, frame_state::none);
    if (f == frame_state::none) return end;  // no frame open: nothing to finish
    if (f == frame_state::control) {
        const std::string_view payload = control_payload();
        if (control_op_ == opcode::ping) end.what = completed::ping;
        if (control_op_ == opcode::pong) end.what = completed::pong;
        if (control_op_ != opcode::close) return end;
        end.what = completed::close;
        close_ = decode_close_payload(payload);
        if (close_.error) {
            end.error = fail(close_.error.status, close_.error.reason);
            return end;
        }
        message_ = message_state::closed;
        return end;
    }
    if (!fin_) return end;
    if (message_op_ == opcode::text && !utf8_.complete()) {
        end.error =
            fail(close_code::invalid_payload, "text message ends inside a UTF-8 sequence (§8.1)");
        return end;
    }
    message_ = message_state::idle;
    end.what = completed::message;
    return end;
}

}  // namespace coachwhip::ws
