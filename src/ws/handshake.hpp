// coachwhip::ws opening handshake, server side (RFC 6455 §4.2.1, §4.2.2; RFC 7692 §5, §7.1).
//
// Pure checks of an upgrade request that the HTTP/1.1 side has already parsed: the engine calls
// is_websocket_upgrade() on every request that has an Upgrade header, then check_upgrade() on
// those that ask for WebSocket, and answers 101 with the values in the result (or the error).
//
// Contract
// - Pure: no I/O, no global state, any thread; no allocation except the digest context OpenSSL
//   creates for SHA-1. The result's views point into the header values passed in (and the
//   result's own inline buffers); they live as long as those.
// - Header names are matched case-insensitively; values have OWS (SP / HTAB) trimmed at both ends
//   and around list commas, so values straight from nghttp2 (not trimmed) work too.
// - List headers (Upgrade, Connection, Sec-WebSocket-Protocol, Sec-WebSocket-Extensions) may
//   come on several lines: the lines are one comma-separated list (RFC 9110 §5.3), and empty
//   list elements are skipped (RFC 9110 §5.6.1). Sec-WebSocket-Key and Sec-WebSocket-Version
//   must appear exactly once.
//
// Errors (core::error with an HTTP status; the rest of the result is then unspecified):
//   400  method not GET; HTTP version not 1.1; Upgrade without the token "websocket"; Connection
//        without the token "upgrade"; Sec-WebSocket-Version missing or repeated;
//        Sec-WebSocket-Key missing, repeated, or not base64 of exactly 16 bytes;
//        Sec-WebSocket-Protocol with an element that is not a token (e.g. non-ASCII bytes) or
//        more elements than the caller's storage; Sec-WebSocket-Extensions that does not parse
//        (RFC 6455 §9.1 grammar).
//   426  Sec-WebSocket-Version present once but not "13": answer with the header
//        "Sec-WebSocket-Version: 13" (§4.2.2 item 4, §4.4).
//
// WebSocket over HTTP/2 (RFC 8441, extended CONNECT) has no key, no Upgrade and no Connection;
// its engine can still use parse_subprotocols() and negotiate_deflate() directly.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "core/error.hpp"
#include "http/exchange.hpp"

namespace coachwhip::ws {

inline constexpr std::string_view k_websocket_version = "13";

// ---- permessage-deflate negotiation (RFC 7692 §7.1) -------------------------------------------

// What the server is willing to do. Memory per connection is the reason for every knob; the
// figures are in deflate.hpp.
struct deflate_config {
    bool enabled = true;
    // The server's compressor window (8..15). Announced as server_max_window_bits when below 15;
    // a client's smaller server_max_window_bits wins. 12: 38 KiB of deflate state instead of
    // 262 KiB at 15, for a small loss of ratio (deflate.hpp).
    uint8_t server_max_window_bits = 12;
    // The client's compressor window we ask for (8..15), when the client's offer carries
    // client_max_window_bits (RFC 7692 §7.1.2.2: without it in the offer the server must not
    // send it, and the client may use 15). It sizes our inflater's window.
    uint8_t client_max_window_bits = 12;
    // Announce server_no_context_takeover even when not asked: the deflater can then be freed
    // between messages (deflater::release), at a large cost in ratio for small messages.
    bool server_no_context_takeover = false;
    // Ask for client_no_context_takeover even when the client did not offer it: the inflater can
    // then be freed between messages. (When the client offers it, it is always accepted.)
    bool client_no_context_takeover = false;
};

// The agreed parameters, as the inflater (client_*) and deflater (server_*) options need them.
// server_max_window_bits may be 8: deflater::options maps it to 9 (see deflate.hpp).
struct deflate_params {
    bool server_no_context_takeover = false;
    bool client_no_context_takeover = false;
    uint8_t server_max_window_bits = 15;
    uint8_t client_max_window_bits = 15;
};

// A short text kept inline (a response header value).
struct inline_text {
    std::array<char, 160> bytes{};
    size_t size = 0;
    std::string_view view() const noexcept { return {bytes.data(), size}; }
};

struct deflate_negotiation {
    core::error error;      // 400: a Sec-WebSocket-Extensions line does not parse
    bool accepted = false;  // a permessage-deflate offer was accepted
    deflate_params params;  // when accepted
    inline_text response;   // when accepted: the Sec-WebSocket-Extensions response value,
                            // e.g. "permessage-deflate; server_max_window_bits=12"
};

// Reads every Sec-WebSocket-Extensions line and accepts the first acceptable permessage-deflate
// offer (RFC 7692 §5.1: offers are in the client's order of preference). An offer is declined,
// not an error, when a parameter is unknown, repeated, has a value where none is allowed (the
// two *_no_context_takeover), lacks one where one is required (server_max_window_bits), or has
// a value other than 8..15 written without leading zeros (quoted values are unquoted first,
// RFC 6455 §9.1). Other extensions are ignored. With cfg.enabled false the header is ignored.
deflate_negotiation negotiate_deflate(std::span<const http::field> headers,
                                      const deflate_config& cfg) noexcept;

// ---- the whole request ------------------------------------------------------------------------

struct upgrade_request {
    std::string_view method;        // as received; must be "GET"
    std::string_view http_version;  // as http::exchange::http_version has it; must be "1.1"
    std::span<const http::field> headers;
};

struct upgrade_result {
    core::error error;  // 400 or 426, see above
    // Sec-WebSocket-Accept for the 101 response (§4.2.2 item 5.4).
    std::array<char, 28> accept_bytes{};
    std::string_view accept() const noexcept { return {accept_bytes.data(), accept_bytes.size()}; }
    // Sec-WebSocket-Protocol: the client's subprotocols in its order (the app picks one, or
    // none); the filled prefix of the caller's storage, views into the header values.
    std::span<std::string_view> subprotocols;
    deflate_negotiation deflate;
};

// Checks the request and computes everything the 101 response needs. `subprotocol_storage`
// bounds how many subprotocols a client may offer (more -> 400).
upgrade_result check_upgrade(const upgrade_request& req, const deflate_config& cfg,
                             std::span<std::string_view> subprotocol_storage) noexcept;

// True when some Upgrade line lists the token "websocket" (case-insensitive): the request is a
// WebSocket handshake attempt, to be answered by check_upgrade() rather than as plain HTTP.
bool is_websocket_upgrade(std::span<const http::field> headers) noexcept;

// True when the comma-separated list `value` has an element equal to `token`, ignoring case and
// OWS (e.g. "keep-alive, Upgrade" has "upgrade").
bool list_has_token(std::string_view value, std::string_view token) noexcept;

// Every Sec-WebSocket-Protocol element into `storage`; `count` receives how many. Errors: 400
// for an element that is not a token (RFC 6455 §4.1 item 10, §11.3.4) or too many elements.
core::error parse_subprotocols(std::span<const http::field> headers,
                               std::span<std::string_view> storage, size_t& count) noexcept;

// Sec-WebSocket-Accept = base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")), §4.2.2,
// for a key as received (OWS-trimmed). SHA-1 through OpenSSL's EVP interface.
std::array<char, 28> compute_accept(std::string_view key) noexcept;

// True when `key` is canonical-length base64 (24 characters, "==" padding) of 16 bytes (§4.1
// item 7). Bits left over in the last character are ignored, as common decoders do.
bool is_valid_key(std::string_view key) noexcept;

}  // namespace coachwhip::ws
