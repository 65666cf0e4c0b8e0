// coachwhip::http1 message semantics: what a parsed head means for framing and the connection
// (RFC 9112 §6, §9; RFC 9110 §7.2, §10.1.1).
//
// Contract: pure, no allocation. Looks at a complete `request_head` and decides how the body is
// framed, whether the connection may persist, and whether the request must be rejected. Every
// rule it enforces carries a comment naming its RFC clause in message.cpp.
#pragma once

#include <cstdint>
#include <string_view>

#include "core/error.hpp"
#include "http1/parser.hpp"

namespace coachwhip::http1 {

enum class body_framing : uint8_t {
    none,            // no body (no Content-Length, no Transfer-Encoding)
    content_length,  // exactly `content_length` bytes follow
    chunked,         // chunked transfer coding, ending with a last-chunk and trailer section
};

struct request_info {
    body_framing framing = body_framing::none;
    uint64_t content_length = 0;   // when framing == content_length
    bool keep_alive = true;        // false: close after the response (HTTP/1.0 default, "close")
    bool expect_continue = false;  // "Expect: 100-continue" (case-insensitive)
    bool upgrade = false;          // a "Connection: upgrade" + "Upgrade" pair was present
    bool upgrade_field = false;    // a non-empty Upgrade field was present (any version)
    bool forwarded = false;        // X-Forwarded-For, X-Forwarded-Proto or Forwarded present
    std::string_view host;         // the Host field value (may be empty on HTTP/1.0)
    core::error error;             // non-zero: reject with this status and close
};

// Rejected (400 unless noted): Content-Length with Transfer-Encoding; Content-Length that is not
// 1*DIGIT, overflows 64 bits, or repeats (even with the same value, and the list form "5, 5");
// Transfer-Encoding whose final coding is not exactly "chunked", any coding other than chunked
// (501), "chunked" twice, or Transfer-Encoding on HTTP/1.0; a missing Host on HTTP/1.1, two Host
// fields, or a Host that is not a valid uri-host[:port]; a method that is not a token; a target
// that is not valid for the method (asterisk-form only with OPTIONS, authority-form only with
// CONNECT, origin-form must start with '/', absolute-form must be http/https with a host that
// matches Host); a target with bytes outside VCHAR. 501: CONNECT itself (well-formed or not:
// after every 400 check), since an origin server has no tunnel to offer; the caller answers and
// closes, so no byte after it is ever read as a request.
request_info analyze_request(const request_head& head) noexcept;

// Case-insensitive ASCII comparison for field names and tokens.
bool iequals(std::string_view a, std::string_view b) noexcept;

}  // namespace coachwhip::http1
