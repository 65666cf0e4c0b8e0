// Test helpers for src/tls: certificates made with OpenSSL at test time, an in-memory lower
// transport for tls::transport, and an OpenSSL client over memory BIOs. Shared by the unit
// tests (test_tls.cpp) and the TLS fuzz target.
#pragma once

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/uio.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

#include "core/transport.hpp"
#include "tls/context.hpp"
#include "tls/transport.hpp"

namespace coachwhip_test {

namespace tls = coachwhip::tls;
namespace core = coachwhip::core;

// A key and a certificate for it, signed by `issuer` (itself when null).
struct cert {
    EVP_PKEY* key = nullptr;
    X509* x509 = nullptr;
    cert() = default;
    cert(const cert&) = delete;
    cert& operator=(const cert&) = delete;
    ~cert() {
        X509_free(x509);
        EVP_PKEY_free(key);
    }
};

inline void make_cert(cert& out, const char* cn, const cert* issuer, bool ca, bool rsa = false,
                      long not_before_s = -3600, long not_after_s = 86400) {
    out.key = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
    out.x509 = X509_new();
    X509* x = out.x509;
    X509_set_version(x, 2);
    static long serial = 1;
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), not_before_s);
    X509_gmtime_adj(X509_getm_notAfter(x), not_after_s);
    X509_set_pubkey(x, out.key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer->x509 : x));
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer ? issuer->x509 : x, x, nullptr, nullptr, 0);
    const char* ext[][2] = {{"basicConstraints", ca ? "critical,CA:TRUE" : "CA:FALSE"},
                            {"subjectAltName", ca ? "" : "DNS:localhost,IP:127.0.0.1"}};
    for (auto& [name, value] : ext) {
        if (!*value) continue;
        X509_EXTENSION* e = X509V3_EXT_conf(nullptr, &v3, name, value);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    X509_sign(x, issuer ? issuer->key : out.key, EVP_sha256());
}

// A scratch directory removed with the object.
struct temp_dir {
    std::filesystem::path path;
    temp_dir() {
        char tmpl[] = "/tmp/coachwhip-tls-XXXXXX";
        path = mkdtemp(tmpl);
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string file(const char* name) const { return (path / name).string(); }
};

inline void write_text(const std::string& path, std::string_view text) {
    FILE* f = std::fopen(path.c_str(), "wb");
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
}

inline void write_cert(const std::string& path, X509* x, bool append = false) {
    FILE* f = std::fopen(path.c_str(), append ? "ab" : "wb");
    PEM_write_X509(f, x);
    std::fclose(f);
}

inline void write_key(const std::string& path, EVP_PKEY* k, const char* password = nullptr) {
    FILE* f = std::fopen(path.c_str(), "wb");
    PEM_write_PrivateKey(f, k, password ? EVP_aes_256_cbc() : nullptr, nullptr, 0, nullptr,
                         const_cast<char*>(password));
    std::fclose(f);
}

// The socket below tls::transport: bytes from the client wait in `in`; what TLS writes lands in
// `out`, up to `budget` bytes at a time (0: the socket would block).
struct memory_lower final : core::transport {
    std::string in;
    size_t pos = 0;
    bool eof = false;
    std::string out;
    size_t budget = SIZE_MAX;
    int writes = 0;  // writev calls that wrote something
    bool shut = false, closed = false, aborted = false;

    ssize_t read(char* buf, size_t len) override {
        if (pos < in.size()) {
            const size_t n = std::min(len, in.size() - pos);
            std::memcpy(buf, in.data() + pos, n);
            pos += n;
            return static_cast<ssize_t>(n);
        }
        return eof ? 0 : -EAGAIN;
    }
    ssize_t writev(const iovec* iov, int n, bool) override {
        if (budget == 0) return -EAGAIN;
        size_t written = 0;
        for (int i = 0; i < n && written < budget; ++i) {
            const size_t take = std::min(iov[i].iov_len, budget - written);
            out.append(static_cast<const char*>(iov[i].iov_base), take);
            written += take;
        }
        if (budget != SIZE_MAX) budget -= written;
        writes += written > 0;
        return static_cast<ssize_t>(written);
    }
    void shutdown_write() override { shut = true; }
    void close() override { closed = true; }
    void abort() override { aborted = true; }
};

// An OpenSSL client over memory BIOs, wired to a memory_lower by pump().
struct client {
    SSL_CTX* ctx = nullptr;
    SSL* ssl = nullptr;
    BIO* rbio = nullptr;  // server -> client
    BIO* wbio = nullptr;  // client -> server

    explicit client(int max_version = TLS1_3_VERSION, int min_version = TLS1_2_VERSION) {
        ctx = SSL_CTX_new(TLS_client_method());
        SSL_CTX_set_min_proto_version(ctx, min_version);
        SSL_CTX_set_max_proto_version(ctx, max_version);
        SSL_CTX_set_security_level(ctx, 0);  // so that TLS 1.0/1.1 clients can be tried
        ssl = SSL_new(ctx);
        rbio = BIO_new(BIO_s_mem());
        wbio = BIO_new(BIO_s_mem());
        SSL_set_bio(ssl, rbio, wbio);
        SSL_set_connect_state(ssl);
    }
    ~client() {
        SSL_free(ssl);
        SSL_CTX_free(ctx);
    }
    client(const client&) = delete;
    client& operator=(const client&) = delete;

    // Moves the bytes each side wrote to the other.
    void pump(memory_lower& low) {
        char buf[16384];
        int n;
        while ((n = BIO_read(wbio, buf, sizeof buf)) > 0)
            low.in.append(buf, static_cast<size_t>(n));
        if (!low.out.empty()) {
            BIO_write(rbio, low.out.data(), static_cast<int>(low.out.size()));
            low.out.clear();
        }
        // What the client's calls left in the thread's error queue is not the server's: the
        // server's owner empties it before each batch of I/O (tls::transport::begin_io_phase).
        tls::transport::begin_io_phase();
    }
    // Runs both handshakes to the end; the server's last result.
    tls::transport::handshake_result handshake(tls::transport& server, memory_lower& low) {
        auto result = tls::transport::handshake_result::again;
        for (int round = 0; round < 20; ++round) {
            ERR_clear_error();
            const int c = SSL_do_handshake(ssl);
            pump(low);
            result = server.handshake();
            pump(low);
            if (result == tls::transport::handshake_result::failed ||
                result == tls::transport::handshake_result::plain_http)
                return result;
            if (c == 1 && result == tls::transport::handshake_result::done) {
                // TLS 1.3 tickets come after the handshake: let the client read them.
                char none[1];
                ERR_clear_error();
                SSL_read(ssl, none, 0);
                return result;
            }
        }
        return result;
    }
    // Everything the client can read now.
    std::string read_all(memory_lower& low) {
        pump(low);
        std::string out;
        char buf[16384];
        for (;;) {
            ERR_clear_error();
            const int n = SSL_read(ssl, buf, sizeof buf);
            if (n <= 0) break;
            out.append(buf, static_cast<size_t>(n));
        }
        return out;
    }
    void write(memory_lower& low, std::string_view data) {
        SSL_write(ssl, data.data(), static_cast<int>(data.size()));
        pump(low);
    }
};

}  // namespace coachwhip_test
