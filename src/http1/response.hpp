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

#include "core/error.hpp"
#include "http/exchange.hpp"

namespace coachwhip::http1 {

struct head_options {
    int minor_version = 1;              // the request's HTTP/1.x minor version
    bool head_request = false;          // the request method was HEAD
    bool keep_alive = true;             // the server wants to keep the connection
    bool server_header = true;          // add "server: coachwhip" unless the app sent one
    bool date_header = true;            // add "date" unless the app sent one
    std::optional<uint64_t> body_size;  // known total body size (the app sent it in one piece)
    // The app's reason phrase (WSGI status lines carry one); empty: the standard phrase.
    std::string_view reason;
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
// close, date/server as configured, the reason phrase as a text body). `extra`: fields the
// error needs (426 names the WebSocket version the server speaks); trusted, not validated.
std::string encode_error_response(int status, bool server_header, bool date_header,
                                  std::span<const http::field> extra = {});

// The 101 that accepts a WebSocket upgrade (RFC 6455 §4.2.2): upgrade, connection and
// sec-websocket-accept, then sec-websocket-protocol and sec-websocket-extensions when not empty,
// server and date as configured (unless the app sent them), and the app's `fields`, validated as
// for any response. Errors (nothing appended): an invalid name or value, or a field the
// handshake or the framing owns (upgrade, connection, content-length, transfer-encoding,
// sec-websocket-*): an app that means a subprotocol names it in websocket.accept.
core::error encode_websocket_accept(std::string& out, std::string_view accept,
                                    std::string_view subprotocol, std::string_view extensions,
                                    std::span<const http::field> fields, bool server_header,
                                    bool date_header);

}  // namespace coachwhip::http1
