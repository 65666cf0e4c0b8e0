// coachwhip::tls::context — the server's TLS configuration, loaded once per worker: certificate
// chain and key, client-certificate verification, versions and cipher suites, ALPN, and the
// session-ticket keys.
//
// Built with OpenSSL (Debian's libssl3). A context is immutable after `load()` and shared by
// every TLS connection of the worker (tls::transport). All of it runs on the engine thread.
//
// Ticket keys: every worker derives the same key from a 32-byte secret the supervisor makes at
// startup (or the process itself, without a supervisor) and the current hour, so a ticket
// issued by one worker resumes on any other, and across rolling restarts. A ticket is accepted
// in the hour it was issued and the next one, then renewed with the current key.
#pragma once

#include <openssl/ssl.h>

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tls/info.hpp"

namespace coachwhip::tls {

// What the user configured (the --ssl-* flags). Paths as given; messages quote them.
struct settings {
    std::string certfile;  // PEM chain, leaf first (required)
    std::string keyfile;   // PEM private key; empty: the key is in `certfile`
    std::string password;  // of an encrypted key; empty: none
    std::string ca_certs;  // PEM CAs for client certificates; empty: none
    int cert_reqs = 0;     // 0 none, 1 optional, 2 required (uvicorn's / Python ssl's values)
    // TLS 1.2 suites, OpenSSL syntax: forward secrecy and AEAD only, AES-128 first (Mozilla's
    // "intermediate" order: as strong in practice, and 10 AES rounds instead of 14).
    std::string ciphers = "ECDHE+AES128+AESGCM:ECDHE+AES256+AESGCM:ECDHE+CHACHA20";
    int min_version = TLS1_2_VERSION;  // TLS1_2_VERSION or TLS1_3_VERSION
    // The ticket secret shared by the workers; empty: a random one for this process alone.
    std::string ticket_secret;
    // ALPN protocols offered, in the server's order of preference (wire names).
    std::vector<std::string> alpn = {"http/1.1"};
};

class context {
  public:
    // Loads and checks everything. On failure returns nullptr and sets `error` to one line that
    // names the flag and file and says what to do, e.g. "--ssl-keyfile key.pem: the private
    // key does not match the certificate in cert.pem".
    static std::unique_ptr<context> load(const settings& s, std::string& error);
    ~context();
    context(const context&) = delete;
    context& operator=(const context&) = delete;

    SSL_CTX* native() const noexcept { return ctx_; }
    // The leaf certificate in PEM (the ASGI TLS extension's `server_cert`).
    const std::string& server_cert_pem() const noexcept { return *leaf_pem_; }
    // What the app is told about a connection whose handshake just completed.
    std::shared_ptr<const info> connection_info(SSL* ssl) const;
    // One line for the log: subject, SANs, expiry, key type.
    const std::string& description() const noexcept { return description_; }
    // Problems worth a warning that do not stop the server (expired, not yet valid).
    const std::vector<std::string>& warnings() const noexcept { return warnings_; }
    bool verifies_clients() const noexcept { return cert_reqs_ != 0; }

    // Session-ticket key for `epoch` (hours since 1970), derived from the ticket secret.
    struct ticket_key {
        std::array<unsigned char, 16> name;
        std::array<unsigned char, 32> hmac;
        std::array<unsigned char, 32> aes;
    };
    ticket_key key_for(uint64_t epoch) const noexcept;  // cached: see key_cache_

  private:
    struct token {
        explicit token() = default;
    };

  public:
    explicit context(token) {}  // only load() makes one

  private:
    bool load_certificate(const settings& s, std::string& error);
    bool load_client_verification(const settings& s, std::string& error);
    void describe(X509* leaf);
    ticket_key derive_key(uint64_t epoch) const noexcept;

    SSL_CTX* ctx_ = nullptr;
    std::shared_ptr<const std::string> leaf_pem_;
    std::string description_;
    std::vector<std::string> warnings_;
    std::array<unsigned char, 32> ticket_secret_{};
    int cert_reqs_ = 0;
    std::vector<std::string> alpn_;  // the ALPN callback's argument
    struct key_slot {
        uint64_t epoch = 0;
        ticket_key key{};
        bool valid = false;
    };
    mutable std::mutex keys_mutex_;  // uncontended: one engine thread per worker today
    mutable key_slot key_cache_[2];
};

}  // namespace coachwhip::tls
