// coachwhip::http::refusal — why the engine refused a request or cut a connection, whatever the
// protocol. The protocol side reports each one to its owner, which counts them
// (coachwhip_refused_total{reason} in /-/metrics).
#pragma once

#include <cstdint>

namespace coachwhip::http {

enum class refusal : uint8_t {
    bad_request,       // 400: a malformed request
    header_timeout,    // 408: --timeout-request-header
    body_timeout,      // 408: --timeout-request-body
    body_rate,         // 408: --min-request-body-rate
    response_rate,     // reset: --min-response-rate
    write_timeout,     // reset: --timeout-write
    body_too_large,    // 413: --limit-request-body
    line_too_long,     // 414: --limit-request-line
    header_too_large,  // 431: --limit-request-header-size / --limit-request-fields
    concurrency,       // 503: --limit-concurrency
    not_implemented,   // 501: CONNECT, transfer codings; 505: HTTP version; 417: expectation
    proxy_protocol,    // closed: --proxy-protocol header missing, invalid or untrusted
    tls_handshake,     // closed: the TLS handshake failed (alert, garbage, old version, no cert)
    tls_timeout,       // closed: --timeout-tls-handshake
    tls_plain_http,    // 400: plain HTTP sent to a TLS port
    h2_abuse,          // GOAWAY: HTTP/2 floods (SETTINGS, PING, rapid reset: ENHANCE_YOUR_CALM)
    count
};

// The refusal an error response's status stands for, when no more specific one is known.
constexpr refusal refusal_for_status(uint16_t status) noexcept {
    switch (status) {
        case 408: return refusal::header_timeout;
        case 413: return refusal::body_too_large;
        case 414: return refusal::line_too_long;
        case 431: return refusal::header_too_large;
        case 503: return refusal::concurrency;
        case 417:
        case 501:
        case 505: return refusal::not_implemented;
        default: return refusal::bad_request;
    }
}

}  // namespace coachwhip::http
