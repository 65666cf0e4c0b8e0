// coachwhip::http1 response head serialisation (RFC 9112 §4, §6; RFC 9110 §6.4.1, §8.6).
//
// Contract: pure apart from appending to `out`; no I/O. Validates every field the app gives so
// that no app can make the server emit a malformed or split response: names must be tokens,
// values must not contain CR, LF, NUL or other CTLs (HTAB allowed). On error nothing is appended.
//
// Framing is decided here, not by the app: a `transfer-encoding` field from the app is dropped
// (ASGI: the server owns framing); an app `content-length` must be 1*DIGIT and is kept; without
// one, a complete body gets `content-length: <len>`; a streamed body is chunked for HTTP/1.1
// clients and close-delimited for HTTP/1.0. 1xx, 204 and 304 responses carry no body and no
// framing fields (§6.3), and HEAD responses carry no body.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "http/exchange.hpp"

namespace coachwhip::http1 {

// The server field every response carries unless --no-server-header or the app sent its own.
inline constexpr std::string_view k_server_line = "server: coachwhip\r\n";

// The fields the operator adds to every response: --header NAME:VALUE, uvicorn's
// headers=[(name, value), ...]. Checked and encoded once at startup (add_default_header), so
// that over HTTP/1.1 a response pays one append for all of them and nothing when there are none.
// They go on every final response: the app's, the engine's own answers (400, 408, 413, 414,
// 431, 503, 505, the /-/ probes) and the WebSocket handshake's 101 (over HTTP/2: its 200), as
// uvicorn's httptools and websockets protocols do; not on interim ones (100, the h2c 101).
// Placed before the app's fields (over HTTP/1.1 after server and date); a name the app also
// sends appears twice, the operator's first (uvicorn's order and behaviour), except `server`,
// where the app's wins.
struct default_headers {
    // The operator's `server` replaces coachwhip's (as uvicorn's replaces "uvicorn").
    std::string server = "coachwhip";
    std::string server_line{k_server_line};
    bool server_configured = false;  // a `server` was given: sent even with --no-server-header
    // The others, names lower-cased and values OWS-trimmed, in the order given.
    std::vector<std::pair<std::string, std::string>> fields;
    std::string lines;  // `fields` as "name: value\r\n" lines, in order
    // Nothing configured: responses are encoded exactly as without defaults.
    bool empty() const noexcept { return !server_configured && fields.empty(); }
};

// Checks one operator field and adds it to `d` (the name lower-cased, OWS trimmed around both).
// Errors (static text; nothing added): an empty name or one that is not a token (RFC 9110
// §5.1); a value with CR, LF, NUL or another control byte (HTAB allowed, RFC 9110 §5.5); a field
// the engine writes itself or that would break framing or a protocol switch: content-length,
// transfer-encoding, connection, keep-alive, proxy-connection, upgrade, te, trailer, date,
// sec-websocket-*; `server` given twice or empty.
core::error add_default_header(default_headers& d, std::string_view name, std::string_view value);

struct head_options {
    int minor_version = 1;              // the request's HTTP/1.x minor version
    bool head_request = false;          // the request method was HEAD
    bool keep_alive = true;             // the server wants to keep the connection
    bool server_header = true;          // add "server: coachwhip" unless the app sent one
    bool date_header = true;            // add "date" unless the app sent one
    std::optional<uint64_t> body_size;  // known total body size (the app sent it in one piece)
    // The app's reason phrase (WSGI status lines carry one); empty: the standard phrase.
    std::string_view reason;
    // The operator's fields and server line (not owned); nullptr: none, and "server: coachwhip".
    const default_headers* defaults = nullptr;
};

struct response_framing {
    bool chunked = false;                    // body is sent with chunked coding
    bool no_body = false;                    // 1xx/204/304 or HEAD: body bytes are never written
    bool close_delimited = false;            // HTTP/1.0 stream: the end of the body is the close
    bool keep_alive = true;                  // the connection may persist after this response
    std::optional<uint64_t> content_length;  // the declared length, when there is one
};

// Appends the status line and header section. Returns an error (status 500) naming the rule the
// app broke, e.g. "response header value contains CR, LF or NUL".
core::error encode_response_head(std::string& out, int status, std::span<const http::field> fields,
                                 const head_options& opt, response_framing& framing);

// Appends one chunk (size line, data, CRLF); empty data appends nothing.
void encode_chunk(std::string& out, std::string_view data);
// The last-chunk and an empty trailer section.
inline constexpr std::string_view last_chunk = "0\r\n\r\n";

// The reason phrase for a status code ("OK", "Not Found"), or "" when none is registered.
std::string_view reason_phrase(int status) noexcept;

// A complete, minimal error response (status line, content-type, content-length, connection:
// close, date/server and the operator's `defaults` as configured, the reason phrase as a text
// body). `extra`: fields the error needs (426 names the WebSocket version the server speaks);
// trusted, not validated.
std::string encode_error_response(int status, bool server_header, bool date_header,
                                  std::span<const http::field> extra = {},
                                  const default_headers* defaults = nullptr);

// The 101 that accepts a WebSocket upgrade (RFC 6455 §4.2.2): upgrade, connection and
// sec-websocket-accept, then sec-websocket-protocol and sec-websocket-extensions when not empty,
// server and date as configured (unless the app sent them), the operator's `defaults`, and the
// app's `fields`, validated as for any response. Errors (nothing appended): an invalid name or
// value, or a field the handshake or the framing owns (upgrade, connection, content-length,
// transfer-encoding, sec-websocket-*): an app that means a subprotocol names it in
// websocket.accept.
core::error encode_websocket_accept(std::string& out, std::string_view accept,
                                    std::string_view subprotocol, std::string_view extensions,
                                    std::span<const http::field> fields, bool server_header,
                                    bool date_header, const default_headers* defaults = nullptr);

}  // namespace coachwhip::http1
