// src/tls: the context's checks and messages, and tls::transport driven in memory against a real
// OpenSSL client — handshakes, plain HTTP and garbage, backpressure and write retries, EOF,
// session tickets shared through the secret, client certificates.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "tls_fixture.hpp"

namespace {

using namespace coachwhip_test;
using result = tls::transport::handshake_result;

struct files {
    temp_dir dir;
    cert ca, leaf, rsa_leaf, client_good, other_ca, client_bad;
    std::string ca_pem, chain_pem, key_pem, rsa_chain, rsa_key, enc_key, other_key, empty,
        client_cert, client_key, bad_cert, bad_key;
    files() {
        make_cert(ca, "Test CA", nullptr, true);
        make_cert(leaf, "localhost", &ca, false);
        make_cert(rsa_leaf, "localhost", &ca, false, true);
        make_cert(client_good, "client one", &ca, false);
        make_cert(other_ca, "Other CA", nullptr, true);
        make_cert(client_bad, "client two", &other_ca, false);
        ca_pem = dir.file("ca.pem"), write_cert(ca_pem, ca.x509);
        chain_pem = dir.file("chain.pem"), write_cert(chain_pem, leaf.x509);
        write_cert(chain_pem, ca.x509, true);
        key_pem = dir.file("key.pem"), write_key(key_pem, leaf.key);
        rsa_chain = dir.file("rsa.pem"), write_cert(rsa_chain, rsa_leaf.x509);
        rsa_key = dir.file("rsa-key.pem"), write_key(rsa_key, rsa_leaf.key);
        enc_key = dir.file("enc-key.pem"), write_key(enc_key, leaf.key, "s3cret");
        other_key = dir.file("other-key.pem"), write_key(other_key, rsa_leaf.key);
        empty = dir.file("empty.pem"), write_text(empty, "not a certificate\n");
        client_cert = dir.file("client.pem"), write_cert(client_cert, client_good.x509);
        client_key = dir.file("client-key.pem"), write_key(client_key, client_good.key);
        bad_cert = dir.file("bad.pem"), write_cert(bad_cert, client_bad.x509);
        bad_key = dir.file("bad-key.pem"), write_key(bad_key, client_bad.key);
    }
};

const files& f() {
    static const files instance;
    return instance;
}

tls::settings basic() {
    tls::settings s;
    s.certfile = f().chain_pem;
    s.keyfile = f().key_pem;
    return s;
}

std::unique_ptr<tls::context> load(const tls::settings& s) {
    std::string error;
    auto ctx = tls::context::load(s, error);
    EXPECT_TRUE(ctx) << error;
    return ctx;
}

std::string load_error(const tls::settings& s) {
    std::string error;
    EXPECT_FALSE(tls::context::load(s, error));
    return error;
}

// ---- the context's checks --------------------------------------------------------------------

TEST(TlsContext, LoadsAChainAndDescribesTheLeaf) {
    auto ctx = load(basic());
    EXPECT_NE(ctx->description().find("CN=localhost (DNS:localhost, IP:127.0.0.1)"),
              std::string::npos)
        << ctx->description();
    EXPECT_NE(ctx->description().find("ECDSA P-256"), std::string::npos);
    EXPECT_TRUE(ctx->warnings().empty());
    EXPECT_EQ(ctx->server_cert_pem().rfind("-----BEGIN CERTIFICATE-----", 0), 0u);
}

TEST(TlsContext, RsaKeys) {
    tls::settings s = basic();
    s.certfile = f().rsa_chain;
    s.keyfile = f().rsa_key;
    EXPECT_NE(load(s)->description().find("RSA 2048"), std::string::npos);
}

TEST(TlsContext, EncryptedKeyWithItsPassword) {
    tls::settings s = basic();
    s.keyfile = f().enc_key;
    s.password = "s3cret";
    load(s);
}

TEST(TlsContext, EachMistakeIsOneLineNamingTheFile) {
    struct {
        void (*edit)(tls::settings&);
        std::string expect;
    } cases[] = {
        {[](tls::settings& s) { s.certfile = "/nonexistent/cert.pem"; },
         "--ssl-certfile /nonexistent/cert.pem: cannot read the file"},
        {[](tls::settings& s) { s.certfile = "/tmp"; }, "--ssl-certfile /tmp: cannot read"},
        {[](tls::settings& s) { s.certfile = f().empty; }, "no PEM certificate in the file"},
        {[](tls::settings& s) { s.keyfile = "/nonexistent/key.pem"; },
         "--ssl-keyfile /nonexistent/key.pem: cannot read the file"},
        {[](tls::settings& s) { s.keyfile = f().empty; }, "no PEM private key in the file"},
        {[](tls::settings& s) { s.keyfile = f().other_key; },
         "the private key does not match the certificate in " + f().chain_pem},
        {[](tls::settings& s) { s.keyfile = f().enc_key; },
         "the private key is encrypted; give its password with --ssl-keyfile-password"},
        {[](tls::settings& s) { s.keyfile = f().enc_key, s.password = "wrong"; },
         "wrong --ssl-keyfile-password"},
        {[](tls::settings& s) { s.keyfile.clear(); }, "no private key in the certificate file"},
        {[](tls::settings& s) { s.cert_reqs = 2; }, "--ssl-cert-reqs 2 needs --ssl-ca-certs"},
        {[](tls::settings& s) { s.ca_certs = f().empty, s.cert_reqs = 1; },
         "--ssl-ca-certs " + f().empty + ": no PEM certificate"},
        {[](tls::settings& s) { s.ciphers = "NOTHING-MATCHES"; },
         "--ssl-ciphers 'NOTHING-MATCHES': no TLS 1.2 cipher suite matches it"},
    };
    for (const auto& c : cases) {
        tls::settings s = basic();
        c.edit(s);
        const std::string error = load_error(s);
        EXPECT_NE(error.find(c.expect), std::string::npos) << error;
        EXPECT_EQ(error.find('\n'), std::string::npos) << error;
    }
}

TEST(TlsContext, ExpiredAndNotYetValidCertificatesWarn) {
    temp_dir dir;
    cert old, future;
    make_cert(old, "old", nullptr, false, false, -7200, -3600);
    make_cert(future, "future", nullptr, false, false, 3600, 7200);
    for (cert* c : {&old, &future}) {
        tls::settings s;
        s.certfile = dir.file("c.pem"), s.keyfile = dir.file("k.pem");
        write_cert(s.certfile, c->x509);
        write_key(s.keyfile, c->key);
        auto ctx = load(s);
        ASSERT_EQ(ctx->warnings().size(), 1u);
        EXPECT_NE(ctx->warnings()[0].find(c == &old ? "expired" : "not valid before"),
                  std::string::npos);
    }
}

TEST(TlsContext, TicketKeysFollowTheSecretAndTheHour) {
    tls::settings s = basic();
    s.ticket_secret = std::string(32, 'k');
    auto a = load(s), b = load(s);
    s.ticket_secret = std::string(32, 'j');
    auto other = load(s);
    EXPECT_EQ(a->key_for(7).aes, b->key_for(7).aes);
    EXPECT_EQ(a->key_for(7).name, b->key_for(7).name);
    EXPECT_NE(a->key_for(7).aes, a->key_for(8).aes);
    EXPECT_NE(a->key_for(7).name, other->key_for(7).name);
}

// ---- the transport ---------------------------------------------------------------------------

struct pair {
    std::shared_ptr<tls::context> ctx;
    memory_lower low;
    std::unique_ptr<tls::transport> server;
    explicit pair(const tls::settings& s = basic()) : ctx(load(s)) {
        server = std::make_unique<tls::transport>(ctx, low);
    }
};

std::string read_plain(tls::transport& t) {
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = t.read(buf, sizeof buf)) > 0)
        out.append(buf, static_cast<size_t>(n));
    return out;
}

ssize_t write_plain(tls::transport& t, std::string_view data) {
    iovec iov{const_cast<char*>(data.data()), data.size()};
    return t.writev(&iov, 1, false);
}

TEST(TlsTransport, HandshakeThenBytesBothWays) {
    for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
        pair p;
        client c(version);
        SSL_set_tlsext_host_name(c.ssl, "localhost");
        const unsigned char alpn[] = "\x02h2\x08http/1.1";
        SSL_set_alpn_protos(c.ssl, alpn, sizeof alpn - 1);
        ASSERT_EQ(c.handshake(*p.server, p.low), result::done);
        c.write(p.low, "GET / HTTP/1.1\r\n\r\n");
        EXPECT_EQ(read_plain(*p.server), "GET / HTTP/1.1\r\n\r\n");
        EXPECT_EQ(write_plain(*p.server, "HTTP/1.1 200 OK\r\n\r\n"), 19);
        EXPECT_EQ(c.read_all(p.low), "HTTP/1.1 200 OK\r\n\r\n");
        auto info = p.server->connection_info();
        EXPECT_EQ(info->version, version);
        EXPECT_NE(info->cipher_suite, 0);
        EXPECT_EQ(info->server_name, "localhost");
        EXPECT_EQ(info->alpn, "http/1.1");
        EXPECT_FALSE(info->resumed);
        EXPECT_TRUE(info->client_cert_chain.empty());
    }
}

TEST(TlsTransport, ClientHelloOneByteAtATime) {
    pair p;
    client c;
    SSL_do_handshake(c.ssl);
    std::string hello;
    char buf[4096];
    int n;
    while ((n = BIO_read(c.wbio, buf, sizeof buf)) > 0)
        hello.append(buf, static_cast<size_t>(n));
    for (size_t i = 0; i + 1 < hello.size(); ++i) {
        p.low.in.push_back(hello[i]);
        ASSERT_EQ(p.server->handshake(), result::again) << i;
    }
    p.low.in.push_back(hello.back());
    p.server->handshake();
    c.pump(p.low);
    EXPECT_EQ(c.handshake(*p.server, p.low), result::done);
}

// What followed a PROXY header, read before TLS began, is handed to TLS first.
TEST(TlsTransport, PreloadedBytesComeBeforeTheSocket) {
    pair p;
    client c;
    SSL_do_handshake(c.ssl);
    c.pump(p.low);
    const std::string hello = p.low.in;
    p.low.in.clear();
    p.server->preload(std::string_view(hello).substr(0, 40));
    p.low.in = hello.substr(40);
    EXPECT_EQ(c.handshake(*p.server, p.low), result::done);
}

TEST(TlsTransport, PlainHttpIsRecognised) {
    pair p;
    p.low.in = "GET / HTTP/1.1\r\nhost: x\r\n\r\n";
    EXPECT_EQ(p.server->handshake(), result::plain_http);
    EXPECT_TRUE(p.low.out.empty());  // nothing written: the owner answers in plain HTTP
}

// The error queue is emptied once per I/O phase (transport.hpp): every failure must leave it
// empty, or the next connection served in the same phase reads a stale error as its own.
TEST(TlsTransport, AFailureLeavesNoErrorForTheNextConnection) {
    for (int bad = 0; bad < 3; ++bad) {
        pair good;
        client c;
        ASSERT_EQ(c.handshake(*good.server, good.low), result::done);
        pair other;
        other.low.in = bad == 0   ? std::string("GET / HTTP/1.1\r\n\r\n")
                       : bad == 1 ? std::string("\x16\x03\x01\xff\xffxxxxxxxx", 13)
                                  : std::string();
        other.low.eof = bad == 2;
        EXPECT_NE(other.server->handshake(), result::done);
        EXPECT_EQ(ERR_peek_error(), 0u) << bad;
        char buf[64];
        EXPECT_EQ(good.server->read(buf, sizeof buf), -EAGAIN) << bad;  // not -EPROTO
        EXPECT_EQ(other.server->read(buf, sizeof buf), -ECONNRESET);
        EXPECT_EQ(ERR_peek_error(), 0u) << bad;
    }
}

TEST(TlsTransport, GarbageAndTruncationFail) {
    const std::string cases[] = {
        std::string("\x16\x03\x01\xff\xff", 5) + std::string(300, 'x'),  // absurd record length
        std::string("\x00\x01\x02\x03garbage", 11),
        std::string("\x80\x2e\x01\x00\x02", 5) + std::string(41, '\0'),  // SSL 2.0 hello
    };
    for (const auto& bytes : cases) {
        pair p;
        p.low.in = bytes;
        p.low.eof = true;
        EXPECT_EQ(p.server->handshake(), result::failed);
        EXPECT_FALSE(p.server->failure().empty());
    }
    // A ClientHello cut half-way, then EOF.
    pair p;
    client c;
    SSL_do_handshake(c.ssl);
    c.pump(p.low);
    p.low.in.resize(p.low.in.size() / 2);
    EXPECT_EQ(p.server->handshake(), result::again);
    p.low.eof = true;
    EXPECT_EQ(p.server->handshake(), result::failed);
}

TEST(TlsTransport, OldVersionsAreRefused) {
    for (int version : {TLS1_VERSION, TLS1_1_VERSION}) {
        pair p;
        client c(version, version);
        EXPECT_EQ(c.handshake(*p.server, p.low), result::failed);
    }
    tls::settings s = basic();
    s.min_version = TLS1_3_VERSION;
    pair p(s);
    client c(TLS1_2_VERSION);
    EXPECT_EQ(c.handshake(*p.server, p.low), result::failed);
}

TEST(TlsTransport, SmallWritesGoOutAsOneRecord) {
    pair p;
    client c;
    ASSERT_EQ(c.handshake(*p.server, p.low), result::done);
    const int before = p.low.writes;
    std::string head = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", body = "hello";
    iovec iov[2] = {{head.data(), head.size()}, {body.data(), body.size()}};
    EXPECT_EQ(p.server->writev(iov, 2, false), static_cast<ssize_t>(head.size() + body.size()));
    EXPECT_EQ(p.low.writes - before, 1);
    EXPECT_EQ(c.read_all(p.low), head + body);
}

// A write larger than a record goes out whole while the socket takes it: a partial count
// would read as a full socket, and the caller would wait for an EPOLLOUT that never comes.
TEST(TlsTransport, LargeWritesAreNotCutAtARecord) {
    pair p;
    client c;
    ASSERT_EQ(c.handshake(*p.server, p.low), result::done);
    std::string head(100, 'h'), body(100 * 1024, 'b');
    iovec iov[2] = {{head.data(), head.size()}, {body.data(), body.size()}};
    EXPECT_EQ(p.server->writev(iov, 2, false), static_cast<ssize_t>(head.size() + body.size()));
    EXPECT_EQ(c.read_all(p.low), head + body);
}

// OpenSSL's retry rule (see transport.hpp): after -EAGAIN the caller offers the same bytes again,
// possibly with more after them, and everything arrives once and in order.
TEST(TlsTransport, BlockedWritesRetryWithMoreAppended) {
    pair p;
    client c;
    ASSERT_EQ(c.handshake(*p.server, p.low), result::done);
    std::string pending;
    for (int i = 0; i < 3000; ++i)
        pending += "line " + std::to_string(i) + "\n";
    std::string received, sent;
    size_t offered = 4000;
    for (int round = 0; round < 10000 && (!pending.empty() || offered < pending.size()); ++round) {
        p.low.budget = round % 3 == 0 ? 0 : 700;  // the socket takes little, sometimes nothing
        const std::string_view view(pending.data(), std::min(offered, pending.size()));
        // Offer the unsent bytes as two iovecs, split at a point that moves.
        const size_t cut = view.size() / 3;
        iovec iov[2] = {{const_cast<char*>(view.data()), cut},
                        {const_cast<char*>(view.data()) + cut, view.size() - cut}};
        const ssize_t n = p.server->writev(iov, 2, false);
        ASSERT_TRUE(n > 0 || n == -EAGAIN) << n;
        if (n > 0) sent += pending.substr(0, static_cast<size_t>(n)), pending.erase(0, n);
        offered = std::min(offered + 500, pending.size());
        received += c.read_all(p.low);
        if (pending.empty()) break;
    }
    p.low.budget = SIZE_MAX;
    received += c.read_all(p.low);
    EXPECT_TRUE(pending.empty());
    EXPECT_EQ(received, sent);
}

// Records leave in batches (transport.hpp): a write of many records is a few system calls,
// and when it returns everything it was offered, everything is on the socket.
TEST(TlsTransport, LargeWritesGoOutInBatches) {
    pair p;
    client c;
    ASSERT_EQ(c.handshake(*p.server, p.low), result::done);
    const int before = p.low.writes;
    std::string body(200 * 1024, 'b');
    for (size_t i = 0; i < body.size(); i += 7)
        body[i] = static_cast<char>('a' + i % 26);
    iovec iov{body.data(), body.size()};
    EXPECT_EQ(p.server->writev(&iov, 1, false), static_cast<ssize_t>(body.size()));
    // 13 records; at most five (~80 KiB) per system call, where there was one per record.
    EXPECT_LE(p.low.writes - before, 3);
    EXPECT_GE(p.low.writes - before, 2);
    EXPECT_EQ(c.read_all(p.low), body);
}

// The socket takes part of a batch: the rest stays held, the write says it was blocked, and
// the next write sends the held bytes first, and reports -EAGAIN (taking nothing) while the
// socket refuses them.
TEST(TlsTransport, HeldBytesGoFirstAndBlockTheNextWrite) {
    pair p;
    client c;
    ASSERT_EQ(c.handshake(*p.server, p.low), result::done);
    std::string body(100 * 1024, 'x');
    for (size_t i = 0; i < body.size(); i += 5)
        body[i] = static_cast<char>('A' + i % 26);
    iovec iov{body.data(), body.size()};
    p.low.budget = 20000;  // part of the first batch of four records and the fifth
    const ssize_t first = p.server->writev(&iov, 1, false);
    ASSERT_GT(first, 0);
    ASSERT_LT(first, static_cast<ssize_t>(body.size()));
    EXPECT_EQ(p.low.out.size(), 20000u);
    // Still blocked: nothing more is written, nothing is taken.
    const size_t out_before = p.low.out.size();
    iovec rest{body.data() + first, body.size() - static_cast<size_t>(first)};
    EXPECT_EQ(p.server->writev(&rest, 1, false), -EAGAIN);
    EXPECT_EQ(p.low.out.size(), out_before);
    // A little room: the held bytes advance, the write still takes nothing.
    p.low.budget = 1000;
    EXPECT_EQ(p.server->writev(&rest, 1, false), -EAGAIN);
    EXPECT_EQ(p.low.out.size(), out_before + 1000);
    // Room: the rest of the batch, then the rest of the body.
    p.low.budget = SIZE_MAX;
    EXPECT_EQ(p.server->writev(&rest, 1, false), static_cast<ssize_t>(rest.iov_len));
    EXPECT_EQ(c.read_all(p.low), body);
}

// The write retry test above, with large writes: offers of up to ~200 KiB, cut into iovecs at
// moving points, against a socket that takes nothing, a little, a batch's worth or all.
TEST(TlsTransport, LargeBlockedWritesRetryWithMoreAppended) {
    pair p;
    client c;
    ASSERT_EQ(c.handshake(*p.server, p.low), result::done);
    std::string pending;
    for (int i = 0; pending.size() < (3u << 20); ++i)
        pending += "line " + std::to_string(i) + "\n";
    std::string received, sent;
    size_t offered = 50000;
    uint32_t rng = 12345;
    auto next = [&rng] { return rng = rng * 1103515245u + 12345u, (rng >> 8) & 0xffff; };
    int blocked = 0, partial = 0;
    for (int round = 0; round < 100000 && !pending.empty(); ++round) {
        const size_t budgets[] = {0, 700, 16000, 40000, 70000, 100000, SIZE_MAX};
        p.low.budget = budgets[next() % 7];
        const std::string_view view(pending.data(), std::min(offered, pending.size()));
        const size_t cut1 = next() % (view.size() + 1),
                     cut2 = cut1 + next() % (view.size() - cut1 + 1);
        iovec iov[3] = {{const_cast<char*>(view.data()), cut1},
                        {const_cast<char*>(view.data()) + cut1, cut2 - cut1},
                        {const_cast<char*>(view.data()) + cut2, view.size() - cut2}};
        const ssize_t n = p.server->writev(iov, 3, false);
        ASSERT_TRUE(n > 0 || n == -EAGAIN) << n;
        blocked += n == -EAGAIN;
        partial += n > 0 && static_cast<size_t>(n) < view.size();
        if (n > 0) sent += pending.substr(0, static_cast<size_t>(n)), pending.erase(0, n);
        // A write that took everything left nothing held: the client has it all.
        if (static_cast<size_t>(n) == view.size()) {
            received += c.read_all(p.low);
            ASSERT_EQ(received.size(), sent.size()) << round;
        }
        offered = std::min(offered + next() % 30000, pending.size());
        if (next() % 2) received += c.read_all(p.low);
    }
    p.low.budget = SIZE_MAX;
    received += c.read_all(p.low);
    EXPECT_TRUE(pending.empty());
    EXPECT_GT(blocked, 10);
    EXPECT_GT(partial, 10);
    EXPECT_EQ(received, sent);
}

// A file goes out a batch at a time, encrypted, and in order, through the same retries.
TEST(TlsTransport, SendFileInBatches) {
    pair p;
    client c;
    ASSERT_EQ(c.handshake(*p.server, p.low), result::done);
    temp_dir dir;
    std::string content(300 * 1024, 'f');
    for (size_t i = 0; i < content.size(); i += 3)
        content[i] = static_cast<char>('0' + i % 10);
    write_text(dir.file("body"), content);
    FILE* file = std::fopen(dir.file("body").c_str(), "rb");
    ASSERT_TRUE(file);
    const int fd = fileno(file);
    size_t at = 0;
    int calls = 0;
    std::string received;
    for (int round = 0; round < 1000 && at < content.size(); ++round) {
        p.low.budget = round % 3 == 0 ? 30000 : SIZE_MAX;
        const ssize_t n = p.server->send_file(fd, at, content.size() - at);
        ASSERT_TRUE(n > 0 || n == -EAGAIN) << n;
        if (n > 0) at += static_cast<size_t>(n), ++calls;
        received += c.read_all(p.low);
    }
    std::fclose(file);
    EXPECT_EQ(at, content.size());
    EXPECT_LE(calls, 10);  // ~80 KiB per call, where the default takes 16 KiB
    EXPECT_EQ(p.server->send_file(0, 0, 0), 0);
    p.low.budget = SIZE_MAX;
    received += c.read_all(p.low);
    EXPECT_EQ(received, content);
}

// Closing with bytes held after a blocked write sends them (best effort) before closing: the
// client reads a prefix of what was accepted, never corrupt records. After a complete write,
// shutdown sends close_notify after everything.
TEST(TlsTransport, ShutdownAndCloseWithHeldBytes) {
    for (bool blocked : {false, true}) {
        pair p;
        client c;
        ASSERT_EQ(c.handshake(*p.server, p.low), result::done);
        std::string body(150 * 1024, 's');
        iovec iov{body.data(), body.size()};
        p.low.budget = blocked ? 30000 : SIZE_MAX;
        const ssize_t n = p.server->writev(&iov, 1, false);
        ASSERT_GT(n, 0);
        EXPECT_EQ(n == static_cast<ssize_t>(body.size()), !blocked);
        p.low.budget = SIZE_MAX;
        if (blocked)
            p.server->close();
        else
            p.server->shutdown_write();
        const std::string got = c.read_all(p.low);
        if (blocked) {
            EXPECT_GT(got.size(), 30000u);  // the held part of the batch went out
            EXPECT_LE(got.size(), static_cast<size_t>(n));
            EXPECT_EQ(got, body.substr(0, got.size()));
            EXPECT_TRUE(p.low.closed);
        } else {
            EXPECT_EQ(got, body);
            EXPECT_TRUE(p.low.shut);
            EXPECT_TRUE(SSL_get_shutdown(c.ssl) & SSL_RECEIVED_SHUTDOWN);
        }
    }
}

TEST(TlsTransport, EndOfStreamWithAndWithoutCloseNotify) {
    for (bool notify : {true, false}) {
        pair p;
        client c;
        ASSERT_EQ(c.handshake(*p.server, p.low), result::done);
        c.write(p.low, "abc");
        if (notify) SSL_shutdown(c.ssl), c.pump(p.low);
        p.low.eof = true;
        char buf[16];
        EXPECT_EQ(p.server->read(buf, sizeof buf), 3);
        EXPECT_EQ(p.server->read(buf, sizeof buf), 0) << notify;
    }
}

TEST(TlsTransport, ShutdownAndCloseSendCloseNotifyAbortDoesNot) {
    for (int how = 0; how < 3; ++how) {
        pair p;
        client c;
        ASSERT_EQ(c.handshake(*p.server, p.low), result::done);
        if (how == 0) p.server->shutdown_write();
        if (how == 1) p.server->close();
        if (how == 2) p.server->abort();
        EXPECT_EQ(p.low.shut, how == 0);
        EXPECT_EQ(p.low.closed, how == 1);
        EXPECT_EQ(p.low.aborted, how == 2);
        c.read_all(p.low);
        EXPECT_EQ((SSL_get_shutdown(c.ssl) & SSL_RECEIVED_SHUTDOWN) != 0, how != 2) << how;
    }
}

// Two workers with the same secret: a ticket from one resumes on the other; another secret
// means a full handshake.
TEST(TlsTransport, TicketsResumeAcrossContextsWithTheSameSecret) {
    for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
        tls::settings s = basic();
        s.ticket_secret = std::string(32, 's');
        SSL_SESSION* session = nullptr;
        {
            pair p(s);
            client c(version);
            ASSERT_EQ(c.handshake(*p.server, p.low), result::done);
            session = SSL_get1_session(c.ssl);
            ASSERT_TRUE(session);
            ASSERT_EQ(SSL_SESSION_has_ticket(session), 1) << version;
            SSL_shutdown(c.ssl);  // freed without it, OpenSSL marks the session not resumable
        }
        for (char secret : {'s', 't'}) {
            s.ticket_secret = std::string(32, secret);
            pair p(s);
            client c(version);
            SSL_set_session(c.ssl, session);
            ASSERT_EQ(c.handshake(*p.server, p.low), result::done);
            EXPECT_EQ(p.server->connection_info()->resumed, secret == 's') << version;
            EXPECT_EQ(SSL_session_reused(c.ssl) == 1, secret == 's') << version;
            // A resumed connection gets a fresh ticket (TLS 1.3 clients use each one once).
            SSL_SESSION* fresh = SSL_get1_session(c.ssl);
            const unsigned char *old_ticket, *new_ticket;
            size_t old_len, new_len;
            SSL_SESSION_get0_ticket(session, &old_ticket, &old_len);
            SSL_SESSION_get0_ticket(fresh, &new_ticket, &new_len);
            EXPECT_TRUE(new_len > 0 &&
                        (new_len != old_len || std::memcmp(old_ticket, new_ticket, new_len) != 0))
                << version;
            SSL_SESSION_free(fresh);
        }
        SSL_SESSION_free(session);
    }
}

void use_client_cert(client& c, const std::string& cert_file, const std::string& key_file) {
    ASSERT_EQ(SSL_use_certificate_file(c.ssl, cert_file.c_str(), SSL_FILETYPE_PEM), 1);
    ASSERT_EQ(SSL_use_PrivateKey_file(c.ssl, key_file.c_str(), SSL_FILETYPE_PEM), 1);
}

TEST(TlsTransport, ClientCertificatesRequired) {
    tls::settings s = basic();
    s.ca_certs = f().ca_pem;
    s.cert_reqs = 2;
    {
        pair p(s);
        client c;
        EXPECT_EQ(c.handshake(*p.server, p.low), result::failed);  // no certificate
    }
    {
        pair p(s);
        client c(TLS1_2_VERSION, TLS1_2_VERSION);
        use_client_cert(c, f().bad_cert, f().bad_key);
        EXPECT_EQ(c.handshake(*p.server, p.low), result::failed);  // another CA
    }
    pair p(s);
    client c;
    use_client_cert(c, f().client_cert, f().client_key);
    ASSERT_EQ(c.handshake(*p.server, p.low), result::done);
    auto info = p.server->connection_info();
    ASSERT_EQ(info->client_cert_chain.size(), 1u);
    EXPECT_EQ(info->client_cert_name, "CN=client one");
    EXPECT_FALSE(info->client_cert_error);
}

TEST(TlsTransport, ClientCertificatesOptional) {
    tls::settings s = basic();
    s.ca_certs = f().ca_pem;
    s.cert_reqs = 1;
    {
        pair p(s);
        client c;
        ASSERT_EQ(c.handshake(*p.server, p.low), result::done);
        EXPECT_TRUE(p.server->connection_info()->client_cert_chain.empty());
        EXPECT_FALSE(p.server->connection_info()->client_cert_error);
    }
    pair p(s);
    client c;
    use_client_cert(c, f().bad_cert, f().bad_key);
    ASSERT_EQ(c.handshake(*p.server, p.low), result::done);
    auto info = p.server->connection_info();
    EXPECT_EQ(info->client_cert_name, "CN=client two");
    ASSERT_TRUE(info->client_cert_error);
    EXPECT_NE(info->client_cert_error->find("unable to verify"), std::string::npos)
        << *info->client_cert_error;
}

}  // namespace
