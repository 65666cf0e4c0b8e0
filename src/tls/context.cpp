#include "tls/context.hpp"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace coachwhip::tls {

namespace {

constexpr uint64_t k_ticket_epoch_s = 3600;  // ticket keys rotate every hour

// OpenSSL's own explanation of the last error, or "" (and the queue emptied either way).
std::string openssl_reason() {
    unsigned long code = ERR_peek_last_error();
    std::string out;
    if (code) {
        char buf[256];
        ERR_error_string_n(code, buf, sizeof buf);
        const char* reason = ERR_reason_error_string(code);
        out = reason ? reason : buf;
    }
    ERR_clear_error();
    return out;
}

// Reads a whole (small) PEM file; false with `error` naming `flag` and the path.
bool read_file(const std::string& flag, const std::string& path, std::string& out,
               std::string& error) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
        error = flag + " " + path + ": cannot read the file: it is a directory";
        return false;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        error = flag + " " + path + ": cannot read the file (" + std::strerror(errno) + ")";
        return false;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) {
        error = flag + " " + path + ": cannot read the file";
        return false;
    }
    out = ss.str();
    return true;
}

struct bio_deleter {
    void operator()(BIO* b) const noexcept { BIO_free(b); }
};
struct x509_deleter {
    void operator()(X509* x) const noexcept { X509_free(x); }
};
struct pkey_deleter {
    void operator()(EVP_PKEY* k) const noexcept { EVP_PKEY_free(k); }
};
using bio_ptr = std::unique_ptr<BIO, bio_deleter>;
using x509_ptr = std::unique_ptr<X509, x509_deleter>;
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_deleter>;

bio_ptr memory_bio(const std::string& text) {
    return bio_ptr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

std::vector<x509_ptr> read_certificates(const std::string& pem) {
    std::vector<x509_ptr> certs;
    bio_ptr bio = memory_bio(pem);
    while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr))
        certs.emplace_back(x);
    ERR_clear_error();  // the loop ends on "no start line"
    return certs;
}

// The password callback: the configured password, or none (then an encrypted key fails).
int give_password(char* buf, int size, int, void* user) {
    const auto* pw = static_cast<const std::string*>(user);
    if (pw->empty() || pw->size() > static_cast<size_t>(size)) return 0;
    std::memcpy(buf, pw->data(), pw->size());
    return static_cast<int>(pw->size());
}

std::string pem_of(X509* x) {
    bio_ptr bio(BIO_new(BIO_s_mem()));
    PEM_write_bio_X509(bio.get(), x);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<size_t>(n));
}

std::string name_of(const X509_NAME* name) {
    bio_ptr bio(BIO_new(BIO_s_mem()));
    X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio.get(), &data);
    return std::string(data, static_cast<size_t>(n));
}

std::string time_of(const ASN1_TIME* t) {
    std::tm tm{};
    if (!ASN1_TIME_to_tm(t, &tm)) return "?";
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
    return buf;
}

std::string alt_names_of(X509* x) {
    auto* names =
        static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
    if (!names) return "";
    std::string out;
    for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
        const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
        std::string item;
        if (g->type == GEN_DNS) {
            const ASN1_STRING* s = g->d.dNSName;
            item = "DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                        static_cast<size_t>(ASN1_STRING_length(s)));
        } else if (g->type == GEN_IPADD) {
            const ASN1_OCTET_STRING* ip = g->d.iPAddress;
            const int len = ASN1_STRING_length(ip);
            char text[INET6_ADDRSTRLEN] = {};
            if ((len == 4 || len == 16) && inet_ntop(len == 4 ? AF_INET : AF_INET6,
                                                     ASN1_STRING_get0_data(ip), text, sizeof text))
                item = std::string("IP:") + text;
        }
        if (item.empty()) continue;
        out += out.empty() ? item : ", " + item;
    }
    GENERAL_NAMES_free(names);
    return out;
}

std::string key_type_of(EVP_PKEY* key) {
    if (!key) return "";
    const int bits = EVP_PKEY_get_bits(key);
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_EC) {
        char group[64] = {};
        size_t len = 0;
        EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len);
        std::string g = group;
        if (g == "prime256v1") g = "P-256";
        if (g == "secp384r1") g = "P-384";
        if (g == "secp521r1") g = "P-521";
        return "ECDSA " + g;
    }
    if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) return "RSA " + std::to_string(bits);
    return std::string(OBJ_nid2sn(EVP_PKEY_get_base_id(key))) + " " + std::to_string(bits);
}

bool is_encrypted_pem(const std::string& pem) {
    return pem.find("ENCRYPTED PRIVATE KEY") != std::string::npos ||
           pem.find("Proc-Type: 4,ENCRYPTED") != std::string::npos;
}

// ALPN (RFC 7301): the first of the server's protocols the client offers; none in common:
// carry on without ALPN (the client then speaks HTTP/1.1 or gives up by itself).
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void* arg) {
    const auto* prefs = static_cast<const std::vector<std::string>*>(arg);
    for (const std::string& want : *prefs) {
        for (unsigned int i = 0; i < inlen;) {
            const unsigned int n = in[i];
            if (i + 1 + n > inlen) break;
            if (n == want.size() && std::memcmp(in + i + 1, want.data(), n) == 0) {
                *out = in + i + 1;
                *outlen = static_cast<unsigned char>(n);
                return SSL_TLSEXT_ERR_OK;
            }
            i += 1 + n;
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

int context_index() {
    static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return index;
}

// Session tickets (RFC 5077 / RFC 8446 §4.6.1), both versions: encrypt with the current hour's
// key; decrypt with the current or the previous hour's, and renew the ticket either way.
int ticket_callback(SSL* ssl, unsigned char name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher,
                    EVP_MAC_CTX* mac, int enc) {
    const auto* self =
        static_cast<const context*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), context_index()));
    const uint64_t epoch = static_cast<uint64_t>(std::time(nullptr)) / k_ticket_epoch_s;
    auto init_mac = [&](context::ticket_key& k) {
        char digest[] = "SHA256";
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac.data(), k.hmac.size()),
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
            OSSL_PARAM_construct_end()};
        return EVP_MAC_CTX_set_params(mac, params) == 1;
    };
    if (enc) {
        context::ticket_key k = self->key_for(epoch);
        std::memcpy(name, k.name.data(), k.name.size());
        if (RAND_bytes(iv, 16) != 1) return -1;
        if (EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, k.aes.data(), iv) != 1 ||
            !init_mac(k))
            return -1;
        return 1;
    }
    for (uint64_t e : {epoch, epoch - 1}) {
        context::ticket_key k = self->key_for(e);
        if (std::memcmp(name, k.name.data(), k.name.size()) != 0) continue;
        if (EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, k.aes.data(), iv) != 1 ||
            !init_mac(k))
            return -1;
        // 2: resume and issue a fresh ticket. Clients use a TLS 1.3 ticket once (RFC 8446
        // §C.4); with 1, OpenSSL sends none on a resumed connection, and every other
        // connection of such a client would need a full handshake again.
        return 2;
    }
    return 0;  // unknown or expired key: a full handshake
}

}  // namespace

std::unique_ptr<context> context::load(const settings& s, std::string& error) {
    auto c = std::make_unique<context>(token{});
    c->cert_reqs_ = s.cert_reqs;
    c->ctx_ = SSL_CTX_new(TLS_server_method());
    if (!c->ctx_) {
        error = "cannot create a TLS context: " + openssl_reason();
        return nullptr;
    }
    SSL_CTX* ctx = c->ctx_;
    // TLS 1.2 and 1.3 only. No renegotiation (a CPU sink and an old attack surface), no
    // compression (CRIME), the server's cipher order, and an EOF without close_notify read as
    // an EOF: HTTP's own framing tells a complete message from a truncated one.
    SSL_CTX_set_min_proto_version(ctx, s.min_version);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_IGNORE_UNEXPECTED_EOF);
    // Idle connections give their record buffers back; writes may complete record by record
    // and be retried from a moved buffer (the connection's output queue reallocates).
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    // Read records in as large a read as the socket gives (one system call for several).
    SSL_CTX_set_read_ahead(ctx, 1);
    if (SSL_CTX_set_cipher_list(ctx, s.ciphers.c_str()) != 1) {
        ERR_clear_error();
        error = "--ssl-ciphers '" + s.ciphers +
                "': no TLS 1.2 cipher suite matches it (OpenSSL's syntax, e.g. "
                "ECDHE+AESGCM:ECDHE+CHACHA20)";
        return nullptr;
    }
    // TLS 1.3 suites in the same order (OpenSSL's default puts AES-256 first).
    SSL_CTX_set_ciphersuites(
        ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
    if (!c->load_certificate(s, error) || !c->load_client_verification(s, error)) return nullptr;

    // Resumption by tickets only: a session cache would be private to one worker.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_timeout(ctx, static_cast<long>(k_ticket_epoch_s));
    static const unsigned char sid_ctx[] = "coachwhip";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    if (s.ticket_secret.size() >= c->ticket_secret_.size()) {
        std::memcpy(c->ticket_secret_.data(), s.ticket_secret.data(), c->ticket_secret_.size());
    } else if (RAND_bytes(c->ticket_secret_.data(), c->ticket_secret_.size()) != 1) {
        error = "cannot make a session-ticket key: " + openssl_reason();
        return nullptr;
    }
    SSL_CTX_set_ex_data(ctx, context_index(), c.get());
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_callback);
    c->alpn_ = s.alpn;
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, &c->alpn_);
    return c;
}

context::~context() {
    if (ctx_) SSL_CTX_free(ctx_);
}

bool context::load_certificate(const settings& s, std::string& error) {
    std::string chain_pem;
    if (!read_file("--ssl-certfile", s.certfile, chain_pem, error)) return false;
    std::vector<x509_ptr> chain = read_certificates(chain_pem);
    if (chain.empty()) {
        error = "--ssl-certfile " + s.certfile +
                ": no PEM certificate in the file (expected a -----BEGIN CERTIFICATE----- block)";
        return false;
    }
    const std::string& key_path = s.keyfile.empty() ? s.certfile : s.keyfile;
    const std::string key_flag = s.keyfile.empty() ? "--ssl-certfile" : "--ssl-keyfile";
    std::string key_pem;
    if (s.keyfile.empty()) {
        key_pem = chain_pem;
    } else if (!read_file(key_flag, key_path, key_pem, error)) {
        return false;
    }
    bio_ptr bio = memory_bio(key_pem);
    std::string password = s.password;
    pkey_ptr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, give_password, &password));
    ERR_clear_error();
    if (!key) {
        if (!is_encrypted_pem(key_pem))
            error = key_flag + " " + key_path +
                    (s.keyfile.empty() ? ": no private key in the certificate file; give the "
                                         "key with --ssl-keyfile"
                                       : ": no PEM private key in the file (expected a -----BEGIN "
                                         "PRIVATE KEY----- block)");
        else if (s.password.empty())
            error = key_flag + " " + key_path +
                    ": the private key is encrypted; give its password with "
                    "--ssl-keyfile-password";
        else
            error = key_flag + " " + key_path +
                    ": cannot decrypt the private key: wrong --ssl-keyfile-password";
        return false;
    }
    if (SSL_CTX_use_certificate(ctx_, chain.front().get()) != 1) {
        error = "--ssl-certfile " + s.certfile + ": OpenSSL refuses the certificate (" +
                openssl_reason() + ")";
        return false;
    }
    for (size_t i = 1; i < chain.size(); ++i) {
        if (SSL_CTX_add1_chain_cert(ctx_, chain[i].get()) != 1) {
            error = "--ssl-certfile " + s.certfile + ": OpenSSL refuses certificate " +
                    std::to_string(i + 1) + " of the chain (" + openssl_reason() + ")";
            return false;
        }
    }
    if (SSL_CTX_use_PrivateKey(ctx_, key.get()) != 1 || SSL_CTX_check_private_key(ctx_) != 1) {
        ERR_clear_error();
        error = key_flag + " " + key_path + ": the private key does not match the certificate in " +
                s.certfile;
        return false;
    }
    leaf_pem_ = std::make_shared<const std::string>(pem_of(chain.front().get()));
    describe(chain.front().get());
    return true;
}

bool context::load_client_verification(const settings& s, std::string& error) {
    if (s.cert_reqs == 0 && s.ca_certs.empty()) return true;
    if (s.ca_certs.empty()) {
        error = "--ssl-cert-reqs " + std::to_string(s.cert_reqs) +
                " needs --ssl-ca-certs: the CA certificates client certificates are checked "
                "against";
        return false;
    }
    std::string pem;
    if (!read_file("--ssl-ca-certs", s.ca_certs, pem, error)) return false;
    if (read_certificates(pem).empty()) {
        error = "--ssl-ca-certs " + s.ca_certs +
                ": no PEM certificate in the file (expected -----BEGIN CERTIFICATE----- blocks)";
        return false;
    }
    if (SSL_CTX_load_verify_locations(ctx_, s.ca_certs.c_str(), nullptr) != 1) {
        error =
            "--ssl-ca-certs " + s.ca_certs + ": OpenSSL cannot load it (" + openssl_reason() + ")";
        return false;
    }
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(s.ca_certs.c_str()))
        SSL_CTX_set_client_CA_list(ctx_, names);  // takes ownership
    ERR_clear_error();
    if (s.cert_reqs == 0) return true;  // CAs loaded, nothing asked of clients
    // 1 (optional): ask, let in whatever comes, and report the verification result to the app.
    // 2 (required): without a certificate that verifies, the handshake fails.
    const int mode =
        s.cert_reqs == 2 ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER;
    SSL_verify_cb accept_all = [](int, X509_STORE_CTX*) { return 1; };
    SSL_CTX_set_verify(ctx_, mode, s.cert_reqs == 2 ? nullptr : accept_all);
    return true;
}

void context::describe(X509* leaf) {
    std::string sans = alt_names_of(leaf);
    description_ = name_of(X509_get_subject_name(leaf));
    if (!sans.empty()) description_ += " (" + sans + ")";
    description_ += ", valid until " + time_of(X509_get0_notAfter(leaf));
    const std::string key = key_type_of(X509_get0_pubkey(leaf));
    if (!key.empty()) description_ += ", " + key;
    if (X509_cmp_current_time(X509_get0_notAfter(leaf)) < 0)
        warnings_.push_back("the TLS certificate " + name_of(X509_get_subject_name(leaf)) +
                            " expired on " + time_of(X509_get0_notAfter(leaf)) +
                            ": clients will refuse it");
    if (X509_cmp_current_time(X509_get0_notBefore(leaf)) > 0)
        warnings_.push_back("the TLS certificate " + name_of(X509_get_subject_name(leaf)) +
                            " is not valid before " + time_of(X509_get0_notBefore(leaf)) +
                            ": clients will refuse it until then");
}

std::shared_ptr<const info> context::connection_info(SSL* ssl) const {
    auto out = std::make_shared<info>();
    out->version = static_cast<uint16_t>(SSL_version(ssl));
    if (const SSL_CIPHER* c = SSL_get_current_cipher(ssl))
        out->cipher_suite = SSL_CIPHER_get_protocol_id(c);
    if (const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name))
        out->server_name = sni;
    const unsigned char* alpn = nullptr;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    if (alpn) out->alpn.assign(reinterpret_cast<const char*>(alpn), alpn_len);
    out->resumed = SSL_session_reused(ssl) == 1;
    out->server_cert = leaf_pem_;
    if (cert_reqs_ == 0) return out;
    // Server side, the peer's chain excludes its own certificate: that one comes first.
    if (X509* leaf = SSL_get0_peer_certificate(ssl)) {
        out->client_cert_chain.push_back(pem_of(leaf));
        out->client_cert_name = name_of(X509_get_subject_name(leaf));
        if (STACK_OF(X509)* rest = SSL_get_peer_cert_chain(ssl)) {
            for (int i = 0; i < sk_X509_num(rest); ++i) {
                X509* x = sk_X509_value(rest, i);
                if (X509_cmp(x, leaf) != 0) out->client_cert_chain.push_back(pem_of(x));
            }
        }
        const long verdict = SSL_get_verify_result(ssl);
        if (verdict != X509_V_OK) out->client_cert_error = X509_verify_cert_error_string(verdict);
    }
    return out;
}

context::ticket_key context::key_for(uint64_t epoch) const noexcept {
    // Deriving costs three HMACs (and OpenSSL 3 fetches the digest for each): done once per
    // hour, not per handshake. Two slots: the current hour and the previous one.
    std::lock_guard<std::mutex> lock(keys_mutex_);
    key_slot& slot = key_cache_[epoch % 2];
    if (!slot.valid || slot.epoch != epoch) {
        slot.key = derive_key(epoch);
        slot.epoch = epoch;
        slot.valid = true;
    }
    return slot.key;
}

context::ticket_key context::derive_key(uint64_t epoch) const noexcept {
    ticket_key k{};
    auto derive = [&](const char* label, unsigned char* out, size_t len) {
        unsigned char msg[32] = {};
        const size_t n = std::strlen(label);
        std::memcpy(msg, label, n);
        for (int i = 0; i < 8; ++i)
            msg[n + i] = static_cast<unsigned char>(epoch >> (56 - 8 * i));
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int md_len = 0;
        HMAC(EVP_sha256(), ticket_secret_.data(), static_cast<int>(ticket_secret_.size()), msg,
             n + 8, md, &md_len);
        std::memcpy(out, md, len);
    };
    derive("ticket name", k.name.data(), k.name.size());
    derive("ticket hmac", k.hmac.data(), k.hmac.size());
    derive("ticket aes", k.aes.data(), k.aes.size());
    return k;
}

}  // namespace coachwhip::tls
