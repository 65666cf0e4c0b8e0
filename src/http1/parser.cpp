// coachwhip::http1 request-head parser. The contract is in parser.hpp; this file says why.
//
// Shape: one forward pass over the bytes, a function per grammar element (method, target,
// version, field line). Each element runs a tight loop over a byte-class table and stops at the
// first byte outside its class; that byte decides what happens next. Because the parser keeps no
// state between calls, every decision depends only on the bytes before the stopping point, so an
// error reported for a prefix is the error the whole input gets, and a prefix of a valid head is
// always "incomplete" (the caller relies on that when it re-parses after each line).
//
// Decision (RFC 9112 §2.2): a server SHOULD ignore at least one empty line (CRLF) received
// before the request line. coachwhip rejects it with 400 instead: a client that sends a stray
// CRLF after a body is mis-framing, and ignoring it would let two parsers disagree on where the
// next request starts.
#include "http1/parser.hpp"

#include <algorithm>
#include <array>

namespace coachwhip::http1 {
namespace {

// ---- byte classes ---------------------------------------------------------------------------

enum byte_class : uint8_t {
    k_tchar = 1,   // RFC 9110 §5.6.2 tchar: a byte of a method or a field name
    k_target = 2,  // 0x21-0x7E: a byte of the request-target (RFC 9112 §3.2, VCHAR only)
    k_value = 4,   // RFC 9110 §5.5 field-vchar / obs-text / SP / HTAB: a byte of a field value
};

constexpr bool ascii_tchar(unsigned c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    constexpr std::string_view k_punct = "!#$%&'*+-.^_`|~";
    return k_punct.find(static_cast<char>(c)) != std::string_view::npos;
}

constexpr std::array<uint8_t, 256> make_class_table() {
    std::array<uint8_t, 256> t{};
    for (unsigned c = 0; c < 256; ++c) {
        uint8_t bits = 0;
        if (ascii_tchar(c)) bits |= k_tchar;
        if (c >= 0x21 && c <= 0x7E) bits |= k_target | k_value;
        if (c >= 0x80 || c == ' ' || c == '\t') bits |= k_value;  // obs-text, SP, HTAB
        t[c] = bits;
    }
    return t;
}

constexpr std::array<uint8_t, 256> k_class = make_class_table();

inline bool in_class(unsigned char c, byte_class cls) { return (k_class[c] & cls) != 0; }

// ---- cursor ---------------------------------------------------------------------------------

// Where the scan is, and the three bounds it must respect. Every loop stops at one of them;
// out_of_bytes() then tells "need more input" from "a limit was crossed".
struct cursor {
    const unsigned char* begin;
    const unsigned char* end;       // end of the input
    const unsigned char* head_end;  // begin + min(size, max_head): bytes a valid head may use
    const unsigned char* line_end;  // min(head_end, begin + max_request_line): request-line text
    const unsigned char* p;
    const limits* lim;
    parse_result result;  // filled when a step returns false
};

bool fail(cursor& c, uint16_t status, std::string_view reason) {
    c.result.status = parse_status::error;
    c.result.error = core::error{status, reason};
    return false;
}

// A loop stopped at a bound. If that bound is the end of the input, we simply need more bytes.
// Otherwise a byte exists past a limit, so the head is too long whatever comes next: report it
// now, on partial input, so an attacker cannot make us buffer past the limit.
bool out_of_bytes(cursor& c, bool in_request_line) {
    if (c.p == c.end) {
        c.result.status = parse_status::incomplete;
        return false;
    }
    const auto offset = static_cast<size_t>(c.p - c.begin);
    if (in_request_line && offset >= c.lim->max_request_line)
        return fail(c, 414, "request line longer than the configured limit (RFC 9112 §3)");
    return fail(c, 431, "request head larger than the configured limit (RFC 6585 §5)");
}

std::string_view view(const unsigned char* from, const unsigned char* to) {
    return {reinterpret_cast<const char*>(from), static_cast<size_t>(to - from)};
}

// Reason for a byte that cannot continue a line: CR and LF get their own words, because a
// line ending in the wrong place is the classic smuggling vector.
std::string_view line_byte_reason(unsigned char b, std::string_view otherwise) {
    if (b == '\n') return "bare LF in request head (RFC 9112 §2.2: lines end with CRLF)";
    if (b == '\r') return "CR not followed by LF in request head (RFC 9112 §2.2: bare CR)";
    return otherwise;
}

// Consumes the CRLF that must be at c.p. CRLF bytes are bounded by the head limit only: a
// request line of exactly max_request_line bytes has its CR just past line_end.
bool expect_crlf(cursor& c, std::string_view otherwise) {
    if (c.p == c.head_end) return out_of_bytes(c, false);
    if (*c.p != '\r') return fail(c, 400, line_byte_reason(*c.p, otherwise));
    ++c.p;
    if (c.p == c.head_end) return out_of_bytes(c, false);
    if (*c.p != '\n')
        return fail(c, 400, "CR not followed by LF in request head (RFC 9112 §2.2: bare CR)");
    ++c.p;
    return true;
}

// ---- request line (RFC 9112 §3: method SP request-target SP HTTP-version CRLF) -------------

bool parse_method(cursor& c, std::string_view& method) {
    const unsigned char* start = c.p;
    while (c.p < c.line_end && in_class(*c.p, k_tchar))
        ++c.p;
    if (c.p == c.line_end) return out_of_bytes(c, true);
    const unsigned char b = *c.p;
    if (c.p == start && (b == '\r' || b == '\n'))
        return fail(c, 400, "empty line before the request line (RFC 9112 §2.2; rejected)");
    if (b == '\r') return fail(c, 400, "request line ends after the method (RFC 9112 §3)");
    if (b != ' ') return fail(c, 400, line_byte_reason(b, "method is not a token (RFC 9110 §9.1)"));
    if (c.p == start)
        return fail(c, 400, "request line starts with whitespace (RFC 9112 §3: method first)");
    method = view(start, c.p);
    ++c.p;  // the single SP
    return true;
}

bool parse_target(cursor& c, std::string_view& target) {
    const unsigned char* start = c.p;
    while (c.p < c.line_end && in_class(*c.p, k_target))
        ++c.p;
    if (c.p == c.line_end) return out_of_bytes(c, true);
    const unsigned char b = *c.p;
    if (b == ' ' && c.p == start)
        return fail(c, 400, "empty request-target or double SP (RFC 9112 §3: single SP)");
    if (b == ' ') {
        target = view(start, c.p);
        ++c.p;
        return true;
    }
    if (b == '\t') return fail(c, 400, "HTAB in request line (RFC 9112 §3: single SP)");
    if (b == '\r') return fail(c, 400, "request line has no HTTP-version (RFC 9112 §3)");
    if (b >= 0x80)
        return fail(c, 400, "non-ASCII byte in request-target (RFC 9112 §3.2: URI characters)");
    return fail(c, 400, line_byte_reason(b, "invalid byte in request-target (RFC 9112 §3.2)"));
}

// HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3). The name is case-sensitive.
bool parse_version(cursor& c, int& minor) {
    constexpr std::string_view k_shape = "HTTP/#.#";
    const unsigned char* start = c.p;
    for (const char want : k_shape) {
        if (c.p == c.line_end) return out_of_bytes(c, true);
        const unsigned char b = *c.p;
        const bool ok =
            want == '#' ? (b >= '0' && b <= '9') : b == static_cast<unsigned char>(want);
        if (!ok) return fail(c, 400, line_byte_reason(b, "malformed HTTP-version (RFC 9112 §2.3)"));
        ++c.p;
    }
    if (!expect_crlf(c, "malformed HTTP-version (RFC 9112 §2.3: HTTP/DIGIT.DIGIT CRLF)"))
        return false;
    // Decided only after the CRLF, so "HTTP/2.0" followed by garbage stays a 400 for every split.
    const unsigned char major = start[5], minor_digit = start[7];
    if (major != '1' || (minor_digit != '0' && minor_digit != '1'))
        return fail(c, 505, "HTTP version not supported (RFC 9110 §15.6.6: only 1.0 and 1.1)");
    minor = minor_digit - '0';
    return true;
}

bool parse_request_line(cursor& c, request_head& out) {
    return parse_method(c, out.method) && parse_target(c, out.target) &&
           parse_version(c, out.minor_version);
}

// ---- header fields (RFC 9112 §5: field-name ":" OWS field-value OWS CRLF) ------------------

std::string_view trim_ows(const unsigned char* from, const unsigned char* to) {
    while (from < to && (*from == ' ' || *from == '\t'))
        ++from;
    while (to > from && (to[-1] == ' ' || to[-1] == '\t'))
        --to;
    return view(from, to);
}

bool parse_field_name(cursor& c, std::string_view& name) {
    const unsigned char* start = c.p;
    while (c.p < c.head_end && in_class(*c.p, k_tchar))
        ++c.p;
    if (c.p == c.head_end) return out_of_bytes(c, false);
    const unsigned char b = *c.p;
    if (b == ':' && c.p == start) return fail(c, 400, "empty field name (RFC 9110 §5.1)");
    if (b == ':') {
        name = view(start, c.p);
        ++c.p;
        return true;
    }
    if (b == ' ' || b == '\t')
        return fail(c, 400, "whitespace between field name and colon (RFC 9112 §5.1)");
    if (b == '\r' && c.p != start) return fail(c, 400, "field line has no colon (RFC 9112 §5)");
    return fail(c, 400, line_byte_reason(b, "field name is not a token (RFC 9110 §5.1)"));
}

bool parse_field_value(cursor& c, std::string_view& value) {
    const unsigned char* start = c.p;
    while (c.p < c.head_end && in_class(*c.p, k_value))
        ++c.p;
    if (c.p == c.head_end) return out_of_bytes(c, false);
    const unsigned char b = *c.p;
    if (b != '\r')
        return fail(c, 400, line_byte_reason(b, "control byte in field value (RFC 9110 §5.5)"));
    value = trim_ows(start, c.p);
    return expect_crlf(c, {});  // c.p is at the CR
}

// The first byte of a field line (or of the empty line that ends the head) says what it is.
bool check_line_start(cursor& c, size_t count) {
    const unsigned char b = *c.p;
    if ((b == ' ' || b == '\t') && count == 0)
        return fail(c, 400, "whitespace before the first header field (RFC 9112 §2.2)");
    if (b == ' ' || b == '\t') return fail(c, 400, "obs-fold in header field (RFC 9112 §5.2)");
    if (b == '\n') return fail(c, 400, line_byte_reason(b, {}));
    return true;
}

bool parse_fields(cursor& c, std::span<header_field> storage, request_head& out) {
    const size_t capacity = std::min(storage.size(), c.lim->max_headers);
    size_t count = 0;
    for (;;) {
        if (c.p == c.head_end) return out_of_bytes(c, false);
        if (*c.p == '\r') break;  // the empty line: end of the head
        if (!check_line_start(c, count)) return false;
        if (count == capacity)
            return fail(c, 431, "too many header fields (RFC 6585 §5: configured limit)");
        header_field field;
        if (!parse_field_name(c, field.name) || !parse_field_value(c, field.value)) return false;
        storage[count++] = field;
    }
    if (!expect_crlf(c, {})) return false;  // c.p is at the CR
    out.headers = storage.first(count);
    return true;
}

}  // namespace

bool is_token_char(unsigned char c) noexcept { return in_class(c, k_tchar); }

bool is_token(std::string_view s) noexcept {
    if (s.empty()) return false;
    return std::all_of(s.begin(), s.end(),
                       [](char ch) { return in_class(static_cast<unsigned char>(ch), k_tchar); });
}

parse_result parse_request_head(std::string_view input, request_head& out,
                                std::span<header_field> storage, const limits& lim) noexcept {
    const auto* begin = reinterpret_cast<const unsigned char*>(input.data());
    const size_t head_size = std::min(input.size(), lim.max_head);
    const size_t line_size = std::min(head_size, lim.max_request_line);
    cursor c{begin, begin + input.size(), begin + head_size, begin + line_size, begin, &lim, {}};
    if (!parse_request_line(c, out) || !parse_fields(c, storage, out)) return c.result;
    c.result.status = parse_status::complete;
    c.result.head_length = static_cast<size_t>(c.p - c.begin);
    return c.result;
}

}  // namespace coachwhip::http1
