// coachwhip::http1 request-head parser (RFC 9112 §2, §3, §5).
//
// Contract
// - Pure: bytes in, a result out. No I/O, no allocation, no global state; safe to call from any
//   thread on distinct inputs.
// - Stateless and restartable: call it again with a longer prefix of the same stream after more
//   bytes arrive. It validates as far as the input goes and reports an error as soon as any byte
//   seen so far is invalid, so garbage (a TLS ClientHello, binary noise) is rejected on the first
//   read instead of waiting for a timeout. The caller decides when re-parsing is worth it (see
//   http1::connection: once per completed line, so total work stays O(head size x lines)).
// - Zero-copy: every string_view in `request_head` points into `input`; they stay valid for as
//   long as the caller keeps those bytes where they are.
// - Strict: line endings are exactly CRLF. A bare LF or a bare CR anywhere in the head is an
//   error (RFC 9112 §2.2 lets a recipient accept bare LF; we do not, so that no front end and
//   coachwhip can ever disagree on where a line ends). obs-fold is an error (§5.2). Whitespace
//   between a field name and the colon is an error (§5.1).
//
// Results
// - complete:   `head_length` = bytes up to and including the empty line's CRLF; `out` filled.
// - incomplete: every byte so far is valid; more input is needed. `out` is unspecified.
// - error:      `error.status` is 400 (syntax), 414 (request line longer than
//               limits.max_request_line), 431 (head longer than limits.max_head or more than
//               limits.max_headers fields) or 505 (a well-formed HTTP version other than 1.0 and
//               1.1, e.g. HTTP/2.0). `error.reason` names the rule.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "core/error.hpp"

namespace coachwhip::http1 {

struct header_field {
    std::string_view name;   // as received (case preserved), a non-empty token
    std::string_view value;  // leading and trailing SP/HTAB removed; may be empty
};

struct request_head {
    std::string_view method;  // a non-empty token, case-sensitive (RFC 9110 §9.1)
    std::string_view target;  // the request-target, verbatim (origin-, absolute-, authority- or
                              // asterisk-form; see validate rules in parser.cpp)
    int minor_version = 1;    // 0 or 1: "HTTP/1.0" or "HTTP/1.1"
    std::span<header_field> headers;  // the filled prefix of the caller's storage
};

struct limits {
    size_t max_request_line = 8190;  // bytes before the CRLF        -> 414
    size_t max_head = 65536;         // request line + fields + CRLFs -> 431
    size_t max_headers = 100;        // number of header fields       -> 431
};

enum class parse_status : uint8_t { complete, incomplete, error };

struct parse_result {
    parse_status status = parse_status::incomplete;
    size_t head_length = 0;  // set when complete
    core::error error;       // set when error
};

// Parses one request head at the start of `input`. `storage` receives the header fields; when
// it is smaller than limits.max_headers, more fields than fit are an error 431 as well.
parse_result parse_request_head(std::string_view input, request_head& out,
                                std::span<header_field> storage, const limits& lim) noexcept;

// RFC 9110 §5.6.2 tchar. Exposed for the message checks and the response-side validators.
bool is_token_char(unsigned char c) noexcept;
bool is_token(std::string_view s) noexcept;

}  // namespace coachwhip::http1
