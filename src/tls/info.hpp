// coachwhip::tls::info — what a TLS connection tells the app (the ASGI TLS extension), built
// once when its handshake completes and shared by every request on the connection.
//
// A plain struct without OpenSSL types, so that the protocol-agnostic request model
// (http::exchange) and the bridges can carry it without knowing how TLS is done.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace coachwhip::tls {

struct info {
    uint16_t version = 0;       // 0x0303 TLS 1.2, 0x0304 TLS 1.3
    uint16_t cipher_suite = 0;  // the IANA number, e.g. 0x1301 TLS_AES_128_GCM_SHA256
    std::string server_name;    // SNI as the client sent it ("" when it sent none)
    std::string alpn;           // the protocol ALPN selected ("" when none)
    bool resumed = false;       // the session was resumed from a ticket
    std::shared_ptr<const std::string> server_cert;  // the leaf we serve, PEM
    std::vector<std::string> client_cert_chain;      // PEM, the client's own first
    std::optional<std::string> client_cert_name;     // RFC 4514 subject of chain[0]
    std::optional<std::string> client_cert_error;    // why it did not verify
};

}  // namespace coachwhip::tls
