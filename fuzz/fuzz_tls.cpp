// fuzz_tls — libFuzzer target: tls::transport (our BIO glue, handshake driving, read/write
// mapping, write retries, plain-HTTP detection) against hostile bytes and a real OpenSSL client.
//
// Input: byte 0 chooses the mode.
//   even: raw — the rest is what a client sends before any handshake (garbage, truncated or
//         forged records, plain HTTP), segmented by byte 1; the transport must settle on
//         again/failed/plain_http without crashing, and read/write must stay safe afterwards.
//   odd:  a real client completes a handshake (TLS 1.3 when bit 1 is set, else 1.2), then the
//         rest is a script of operations, three bytes each (op, a, b):
//         0 client sends a bytes of plaintext     1 the same, one ciphertext byte flipped
//         2 server writes a*512+b bytes (up to ~128 KiB: several records, so batches of
//           them), the socket taking at most b*8 bytes (b < 128) or (b-128)*1024 (0: would
//           block); a write that takes everything it was offered must leave nothing held
//         3 client reads                          4 client sends close_notify
//         5 the socket delivers only part of what is pending, then ends (truncation)
// Checks: no crash, UB or leak; the server reads exactly the plaintext the client sent, in
// order, until tampering or truncation (after which reads fail or end, and never return bytes
// the client did not send); the client reads a prefix of what the server offered (a write that
// would block may already have sent part of it: OpenSSL reports that with the retry), so a
// retry with more appended never loses or repeats bytes.
#include <openssl/rand.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "../tests/cpp/tls_fixture.hpp"
#include "fuzz_common.hpp"

using namespace coachwhip_test;

namespace {

struct world {
    temp_dir dir;
    cert leaf;
    std::shared_ptr<tls::context> ctx;
    world() {
        make_cert(leaf, "localhost", nullptr, false);
        tls::settings s;
        s.certfile = dir.file("cert.pem"), s.keyfile = dir.file("key.pem");
        write_cert(s.certfile, leaf.x509);
        write_key(s.keyfile, leaf.key);
        s.ticket_secret = std::string(32, 'f');
        std::string error;
        ctx = tls::context::load(s, error);
        if (!ctx) std::fprintf(stderr, "fuzz_tls: %s\n", error.c_str()), std::abort();
    }
};

const world& w() {
    static const world instance;
    return instance;
}

void raw(const uint8_t* data, size_t size) {
    memory_lower low;
    tls::transport t(w().ctx, low);
    const size_t step = size ? 1 + data[0] % 64 : 1;
    size_t at = 1;
    auto r = tls::transport::handshake_result::again;
    while (r == tls::transport::handshake_result::again) {
        if (at >= size) low.eof = true;
        const size_t n = std::min(step, size > at ? size - at : 0);
        low.in.append(reinterpret_cast<const char*>(data + at), n);
        at += n;
        r = t.handshake();
        if (low.eof && r == tls::transport::handshake_result::again) break;
    }
    FUZZ_CHECK(r != tls::transport::handshake_result::done);  // no client can finish this
    char buf[256];
    FUZZ_CHECK(t.read(buf, sizeof buf) <= 0);
    iovec iov{buf, sizeof buf};
    FUZZ_CHECK(t.writev(&iov, 1, false) < 0);
}

void scripted(const uint8_t* data, size_t size) {
    memory_lower low;
    tls::transport server(w().ctx, low);
    client c((data[0] & 2) ? TLS1_3_VERSION : TLS1_2_VERSION);
    FUZZ_CHECK(c.handshake(server, low) == tls::transport::handshake_result::done);
    std::string sent_by_client, read_by_server, written_by_server, read_by_client;
    std::string unsent;   // bytes the server offered and that await a retry
    bool broken = false;  // tampered or truncated: the server's reads may now fail
    char buf[8192];
    auto server_reads = [&] {
        ssize_t n;
        while ((n = server.read(buf, sizeof buf)) > 0)
            read_by_server.append(buf, static_cast<size_t>(n));
        if (!broken) FUZZ_CHECK(n == -EAGAIN || n == 0);
    };
    for (size_t at = 1; at + 3 <= size; at += 3) {
        const uint8_t op = data[at] % 6, a = data[at + 1], b = data[at + 2];
        if (op == 0 || op == 1) {
            std::string text(a, static_cast<char>('a' + at % 26));
            SSL_write(c.ssl, text.data(), static_cast<int>(text.size()));
            sent_by_client += text;
            const size_t before = low.in.size();
            c.pump(low);
            if (op == 1 && low.in.size() > before) {
                low.in[before + b % (low.in.size() - before)] ^= 0x5a;
                broken = true;
            }
            server_reads();
        } else if (op == 2) {
            if (unsent.size() + written_by_server.size() > (4u << 20)) continue;  // bounded
            // Varied bytes, so that a byte lost, repeated or reordered shows.
            for (size_t i = 0, add = static_cast<size_t>(a) * 512 + b; i < add; ++i)
                unsent.push_back(
                    static_cast<char>('A' + (written_by_server.size() + unsent.size()) % 53));
            low.budget = b < 128 ? static_cast<size_t>(b) * 8 : static_cast<size_t>(b - 128) * 1024;
            iovec iov[2] = {{unsent.data(), unsent.size() / 2},
                            {unsent.data() + unsent.size() / 2, unsent.size() - unsent.size() / 2}};
            const ssize_t n = server.writev(iov, 2, false);
            FUZZ_CHECK(n > 0 || n == -EAGAIN || (n == 0 && unsent.empty()) || (broken && n < 0));
            const bool all = n > 0 && static_cast<size_t>(n) == unsent.size();
            if (n > 0) written_by_server += unsent.substr(0, n), unsent.erase(0, n);
            low.budget = SIZE_MAX;
            // Everything taken: everything is on the socket (no ciphertext left held).
            if (all && !broken) {
                read_by_client += c.read_all(low);
                FUZZ_CHECK(read_by_client == written_by_server);
            }
        } else if (op == 3) {
            read_by_client += c.read_all(low);
        } else if (op == 4) {
            SSL_shutdown(c.ssl);
            c.pump(low);
            server_reads();
            break;
        } else {
            c.pump(low);
            low.in.resize(low.pos + (low.in.size() - low.pos) / 2);
            low.eof = true;
            broken = true;
            server_reads();
            break;
        }
    }
    // What was read is what was sent, up to the first damage.
    FUZZ_CHECK(sent_by_client.compare(0, read_by_server.size(), read_by_server) == 0);
    if (!broken) {
        server_reads();
        FUZZ_CHECK(read_by_server == sent_by_client);
    }
    // A write that would block may have sent part of what it was offered already (OpenSSL counts
    // it and reports it with the retry): the client reads a prefix of everything offered.
    read_by_client += c.read_all(low);
    const std::string offered = written_by_server + unsent;
    FUZZ_CHECK(read_by_client.size() <= offered.size());
    FUZZ_CHECK(offered.compare(0, read_by_client.size(), read_by_client) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    ERR_clear_error();
    if (data[0] & 1)
        scripted(data, size);
    else
        raw(data, size);
    ERR_clear_error();
    return 0;
}
