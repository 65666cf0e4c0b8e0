// coachwhip::http1 chunked decoder. The contract and the state diagram are in chunked.hpp.
//
// Everything except chunk data goes through step(), one byte at a time: chunk-size lines and
// trailers are short and rare next to the data, and a byte machine needs no buffer, so a line
// split across reads costs nothing and the result cannot depend on where the reads were split.
// Chunk data is returned in place, as a view into the caller's input, as large as it comes.
#include "http1/chunked.hpp"

#include <algorithm>
#include <array>
#include <limits>

#include "http1/parser.hpp"

namespace coachwhip::http1 {
namespace {

constexpr uint64_t k_max_size = std::numeric_limits<int64_t>::max();

int hex_value(unsigned char b) {
    if (b >= '0' && b <= '9') return b - '0';
    if (b >= 'a' && b <= 'f') return b - 'a' + 10;
    if (b >= 'A' && b <= 'F') return b - 'A' + 10;
    return -1;
}

bool is_ws(unsigned char b) { return b == ' ' || b == '\t'; }

// RFC 9110 §5.5: field-vchar / obs-text / SP / HTAB.
bool is_value_byte(unsigned char b) { return (b >= 0x20 && b != 0x7F) || b == '\t'; }

// RFC 9110 §5.6.4 qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text.
bool is_qdtext(unsigned char b) { return is_value_byte(b) && b != '"' && b != '\\'; }

// Line endings inside the chunked framing are CRLF only (RFC 9112 §7.1, §2.2). A CR where a
// line cannot end keeps the caller's more precise reason.
std::string_view line_reason(unsigned char b, std::string_view otherwise) {
    if (b == '\n') return "bare LF in chunked body (RFC 9112 §7.1: lines end with CRLF)";
    return otherwise;
}

// RFC 9110 §6.5.1: a sender MUST NOT put in a trailer a field needed for framing, routing,
// request modifiers or connection management; we reject the ones that would change how this
// or the next message is read or routed, or how the content is decoded.
bool is_forbidden_trailer(std::string_view lowercase_name) {
    constexpr std::array<std::string_view, 14> k_forbidden = {
        "content-length",   "transfer-encoding", "host",         "trailer", "connection",
        "keep-alive",       "proxy-connection",  "te",           "upgrade", "expect",
        "content-encoding", "content-range",     "max-forwards", "range"};
    return std::find(k_forbidden.begin(), k_forbidden.end(), lowercase_name) != k_forbidden.end();
}

}  // namespace

chunked_decoder::result chunked_decoder::decode(std::string_view input) noexcept {
    result r;
    if (state_ == state::failed) {
        r.status = status::error;
        r.error = error_;
        return r;
    }
    size_t i = 0;
    while (i < input.size() && state_ != state::done) {
        if (state_ == state::data) {  // fast path: hand out as much data as we have
            const size_t n = static_cast<size_t>(std::min<uint64_t>(size_, input.size() - i));
            size_ -= n;
            if (size_ == 0) state_ = state::data_cr;
            r.status = status::data;
            r.data = input.substr(i, n);
            r.consumed = i + n;
            return r;
        }
        if (!step(static_cast<unsigned char>(input[i]))) {
            r.status = status::error;
            r.error = error_;
            r.consumed = i;
            return r;
        }
        ++i;
    }
    r.status = state_ == state::done ? status::done : status::need_more;
    r.consumed = i;
    return r;
}

bool chunked_decoder::fail(uint16_t status, std::string_view reason) noexcept {
    state_ = state::failed;
    error_ = core::error{status, reason};
    return false;
}

// Routes one byte to its part of the machine and enforces the two length limits. The ranges rely
// on the order of `state`: the size-line states come first, the trailer states together.
bool chunked_decoder::step(unsigned char b) noexcept {
    if (state_ <= state::ext_after_value) {
        if (b != '\r' && ++line_len_ > lim_.max_line)
            return fail(400, "chunk-size line longer than the configured limit (RFC 9112 §7.1)");
        return state_ == state::size ? step_size(b) : step_ext(b);
    }
    if (state_ >= state::trailer_start && state_ <= state::end_lf) {
        if (++trailer_len_ > lim_.max_trailers)
            return fail(431, "trailer section larger than the configured limit (RFC 9112 §7.1.2)");
        return step_trailer(b);
    }
    return step_line_end(b);
}

// chunk-size = 1*HEXDIG (RFC 9112 §7.1): no sign, no "0x", no whitespace before the digits.
bool chunked_decoder::step_size(unsigned char b) noexcept {
    const int v = hex_value(b);
    if (v < 0 && digits_ == 0)
        return fail(400, line_reason(b, "chunk-size is not 1*HEXDIG (RFC 9112 §7.1)"));
    if (v < 0) return step_after_value(b);
    // Checked before shifting so the value never wraps: anything above 2^63-1 (more than 16
    // significant digits, or 16 with the top bit set) is refused. Leading zeros are free.
    if (size_ > (k_max_size >> 4))
        return fail(400, "chunk-size larger than 2^63-1 (RFC 9112 §7.1)");
    size_ = (size_ << 4) | static_cast<uint64_t>(v);
    ++digits_;
    return true;
}

// After a chunk-size or a complete extension: chunk-ext = *( BWS ";" BWS ext-name
// [ BWS "=" BWS ext-val ] ) (RFC 9112 §7.1.1), so whitespace must lead to ';', then CRLF ends.
bool chunked_decoder::step_after_value(unsigned char b) noexcept {
    if (is_ws(b)) {
        state_ = state::ext_ws;
    } else if (b == ';') {
        state_ = state::ext_name_start;
    } else if (b == '\r') {
        state_ = state::size_lf;
    } else {
        return fail(400, line_reason(b, "invalid byte in chunk-size line (RFC 9112 §7.1.1)"));
    }
    return true;
}

// Extension names: ext-name = token (RFC 9112 §7.1.1). The extensions are discarded.
bool chunked_decoder::step_ext(unsigned char b) noexcept {
    switch (state_) {
        case state::ext_ws:
            if (is_ws(b)) return true;
            if (b == ';') return (state_ = state::ext_name_start), true;
            return fail(400, line_reason(b, "whitespace in chunk line not before ';' (§7.1.1)"));
        case state::ext_name_start:
            if (is_ws(b)) return true;
            if (is_token_char(b)) return (state_ = state::ext_name), true;
            return fail(400, line_reason(b, "chunk extension name is not a token (§7.1.1)"));
        case state::ext_name:
            if (is_token_char(b)) return true;
            if (b == '=') return (state_ = state::ext_value_start), true;
            if (is_ws(b)) return (state_ = state::ext_name_ws), true;
            return step_after_value(b);
        case state::ext_name_ws:
            if (is_ws(b)) return true;
            if (b == '=') return (state_ = state::ext_value_start), true;
            if (b == ';') return (state_ = state::ext_name_start), true;
            return fail(400, line_reason(b, "invalid chunk extension (RFC 9112 §7.1.1: BWS)"));
        default: return step_ext_value(b);
    }
}

// ext-val = token / quoted-string (RFC 9112 §7.1.1, RFC 9110 §5.6.4).
bool chunked_decoder::step_ext_value(unsigned char b) noexcept {
    switch (state_) {
        case state::ext_value_start:
            if (is_ws(b)) return true;
            if (b == '"') return (state_ = state::ext_quoted), true;
            if (is_token_char(b)) return (state_ = state::ext_value_token), true;
            return fail(400, line_reason(b, "chunk extension value is not a token or quoted"));
        case state::ext_value_token:
            if (is_token_char(b)) return true;
            return step_after_value(b);
        case state::ext_quoted:
            if (b == '"') return (state_ = state::ext_after_value), true;
            if (b == '\\') return (state_ = state::ext_quoted_pair), true;
            if (is_qdtext(b)) return true;
            return fail(400, line_reason(b, "control byte in quoted chunk extension (§5.6.4)"));
        case state::ext_quoted_pair:  // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
            if (is_value_byte(b)) return (state_ = state::ext_quoted), true;
            return fail(400, line_reason(b, "control byte in quoted-pair (RFC 9110 §5.6.4)"));
        default: return step_after_value(b);
    }
}

// The fixed bytes between lines: LF after a size line, CRLF after chunk data.
bool chunked_decoder::step_line_end(unsigned char b) noexcept {
    switch (state_) {
        case state::size_lf:
            if (b != '\n') return fail(400, "bare CR in chunk-size line (RFC 9112 §7.1)");
            state_ = size_ == 0 ? state::trailer_start : state::data;  // last-chunk = 1*"0"
            line_len_ = 0;
            digits_ = 0;
            return true;
        // RFC 9112 §7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
        case state::data_cr:
            if (b != '\r') return fail(400, "chunk data not followed by CRLF (RFC 9112 §7.1)");
            state_ = state::data_lf;
            return true;
        case state::data_lf:
            if (b != '\n') return fail(400, "chunk data not followed by CRLF (RFC 9112 §7.1)");
            state_ = state::size;
            return true;
        default: return fail(500, "chunked decoder in an impossible state");
    }
}

// trailer-section = *( field-line CRLF ), then CRLF (RFC 9112 §7.1.2); field lines follow the
// header rules (RFC 9112 §5): token name, no whitespace before ':', no obs-fold.
bool chunked_decoder::step_trailer(unsigned char b) noexcept {
    switch (state_) {
        case state::trailer_start:
            if (b == '\r') return (state_ = state::end_lf), true;
            if (is_ws(b)) return fail(400, "obs-fold in trailer section (RFC 9112 §5.2)");
            if (b == ':') return fail(400, "empty trailer field name (RFC 9110 §5.1)");
            trailer_name_len_ = 0;
            trailer_name_long_ = false;
            state_ = state::trailer_name;
            return step_trailer_name(b);
        case state::trailer_name: return step_trailer_name(b);
        case state::trailer_value:
            if (b == '\r') return (state_ = state::trailer_lf), true;
            if (is_value_byte(b)) return true;
            return fail(400, line_reason(b, "control byte in trailer field value (RFC 9110 §5.5)"));
        case state::trailer_lf:
            if (b != '\n') return fail(400, "bare CR in trailer section (RFC 9112 §7.1)");
            return (state_ = state::trailer_start), true;
        default:  // end_lf
            if (b != '\n') return fail(400, "bare CR after trailer section (RFC 9112 §7.1)");
            return (state_ = state::done), true;
    }
}

bool chunked_decoder::step_trailer_name(unsigned char b) noexcept {
    if (b == ':') return finish_trailer_name();
    if (is_ws(b)) return fail(400, "whitespace between trailer name and colon (RFC 9112 §5.1)");
    if (b == '\r') return fail(400, "trailer field line has no colon (RFC 9112 §5)");
    if (!is_token_char(b))
        return fail(400, line_reason(b, "trailer field name is not a token (RFC 9110 §5.1)"));
    if (trailer_name_len_ < sizeof trailer_name_) {  // remember it lowercased, as far as it fits
        trailer_name_[trailer_name_len_++] = static_cast<char>(b >= 'A' && b <= 'Z' ? b + 32 : b);
    } else {
        trailer_name_long_ = true;
    }
    return true;
}

bool chunked_decoder::finish_trailer_name() noexcept {
    const std::string_view name(trailer_name_, trailer_name_len_);
    if (!trailer_name_long_ && is_forbidden_trailer(name))
        return fail(400, "framing, routing or connection field in trailers (RFC 9110 §6.5.1)");
    state_ = state::trailer_value;
    return true;
}

}  // namespace coachwhip::http1
