// tlsload: a TLS load generator for a new connection per request.
//
//   tlsload -c CONNECTIONS -d SECONDS [--resume] [--timeout S] [--sni NAME] https://127.0.0.1:PORT/PATH
//
// N connection slots, one epoll loop, one thread. Each slot, over and over: a non-blocking
// connect(), a TLS handshake, one `GET PATH` with `Connection: close`, the whole response read,
// close; then the next connection at once. Without --resume every handshake is a full one (no
// session is ever offered). With --resume a slot offers the session it got on its previous
// connection (SSL_set_session with the newest ticket or session the server sent), so every
// connection but a slot's first may resume; how many really did is counted
// (SSL_session_reused), since a server may decline.
//
// Latency is measured from connect() to the last byte of the response: the handshake included.
// At the end it prints a human summary on stderr and, on stdout, one line that bench/load.py
// parses, shaped like wrk's (bench/lua/report.lua) plus TLS fields:
//   BENCH_RESULT {"requests": ..., "duration_us": ..., ..., "resumed": ..., "cipher": "..."}
// The certificate is not verified (like curl -k and wrk), but the handshake's signature is.

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace {

struct Options {
    int connections = 64;
    double duration_s = 5;
    double timeout_s = 10;
    bool resume = false;
    std::string host = "127.0.0.1";
    int port = 443;
    std::string path = "/";
    std::string sni = "localhost";  // empty: none sent
};

struct Counters {
    uint64_t requests = 0, bytes = 0, resumed = 0;
    uint64_t connect_errors = 0, handshake_errors = 0, read_errors = 0, write_errors = 0;
    uint64_t status_errors = 0, timeouts = 0;
    std::vector<uint32_t> latency_us, handshake_us;
    std::map<std::string, uint64_t> suites;  // "TLSv1.3 TLS_AES_256_GCM_SHA384 X25519" -> count
};

enum class State { Handshake, Write, Read };

struct Slot {
    int fd = -1;
    SSL* ssl = nullptr;
    State state = State::Handshake;
    uint32_t generation = 0;  // in epoll's data: events of a closed connection are ignored
    uint32_t interest = 0;
    double started = 0, handshake_done = 0;
    size_t written = 0;
    std::string in;
    SSL_SESSION* session = nullptr;  // offered on the next connection (--resume)
    SSL_SESSION* fresh = nullptr;    // the newest the server sent on this one
};

Options opt;
Counters counters;
std::vector<Slot> slots;
int epfd = -1;
SSL_CTX* ctx = nullptr;
std::string request;
sockaddr_in target{};
std::vector<size_t> restart;  // slots whose connection failed: reconnected on the next loop turn

double now_s() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

[[noreturn]] void die(const std::string& why) {
    fprintf(stderr, "tlsload: %s\n", why.c_str());
    exit(2);
}

// The server sent a session (TLS 1.2) or a ticket (TLS 1.3; possibly several): keep the newest.
int on_new_session(SSL* ssl, SSL_SESSION* session) {
    auto* slot = static_cast<Slot*>(SSL_get_app_data(ssl));
    if (!opt.resume || slot == nullptr) return 0;
    if (slot->fresh != nullptr) SSL_SESSION_free(slot->fresh);
    slot->fresh = session;
    return 1;  // we own the reference now
}

void set_interest(Slot& s, uint32_t events) {
    if (s.interest == events) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = (uint64_t(s.generation) << 32) | uint64_t(&s - slots.data());
    if (epoll_ctl(epfd, s.interest == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, s.fd, &ev) != 0)
        die(std::string("epoll_ctl: ") + strerror(errno));
    s.interest = events;
}

void finish(Slot& s) {
    if (s.ssl != nullptr) {
        // A quiet shutdown: no close_notify is sent, but the session stays resumable (SSL_free
        // without a shutdown marks it bad).
        SSL_set_shutdown(s.ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(s.ssl);
        s.ssl = nullptr;
    }
    if (s.fd >= 0) close(s.fd);
    s.fd = -1;
    s.interest = 0;
    s.generation++;
    if (s.fresh != nullptr) {
        if (s.session != nullptr) SSL_SESSION_free(s.session);
        s.session = s.fresh;
        s.fresh = nullptr;
    }
}

void drive(Slot& s);

void start(Slot& s) {
    s.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s.fd < 0) die(std::string("socket: ") + strerror(errno));
    int one = 1;
    setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s.started = now_s();
    s.state = State::Handshake;
    s.written = 0;
    s.in.clear();
    if (connect(s.fd, reinterpret_cast<sockaddr*>(&target), sizeof target) != 0 &&
        errno != EINPROGRESS) {
        counters.connect_errors++;
        finish(s);
        restart.push_back(size_t(&s - slots.data()));
        return;
    }
    s.ssl = SSL_new(ctx);
    SSL_set_app_data(s.ssl, &s);
    SSL_set_fd(s.ssl, s.fd);
    if (!opt.sni.empty()) SSL_set_tlsext_host_name(s.ssl, opt.sni.c_str());
    if (opt.resume && s.session != nullptr) SSL_set_session(s.ssl, s.session);
    drive(s);
}

// What to wait for after an SSL call failed with `err`; 0 if the connection is lost.
uint32_t wanted(int err) {
    if (err == SSL_ERROR_WANT_READ) return EPOLLIN;
    if (err == SSL_ERROR_WANT_WRITE) return EPOLLOUT;
    return 0;
}

// The response is complete: a head and its Content-Length body, or a chunked body's last chunk.
// Returns -1 while incomplete, else the status code.
int complete(const std::string& in, bool eof) {
    size_t head_end = in.find("\r\n\r\n");
    if (head_end == std::string::npos) return -1;
    int status = 0;
    if (in.size() < 12 || sscanf(in.c_str() + 9, "%3d", &status) != 1) return 0;
    size_t body = head_end + 4;
    long length = -1;
    bool chunked = false;
    size_t line = in.find("\r\n") + 2;
    while (line < head_end) {
        size_t end = in.find("\r\n", line);
        const char* p = in.c_str() + line;
        if (strncasecmp(p, "content-length:", 15) == 0) length = strtol(p + 15, nullptr, 10);
        if (strncasecmp(p, "transfer-encoding:", 18) == 0 &&
            in.substr(line, end - line).find("chunked") != std::string::npos)
            chunked = true;
        line = end + 2;
    }
    if (length >= 0) return in.size() - body >= size_t(length) ? status : -1;
    if (chunked) return in.compare(in.size() - 5, 5, "0\r\n\r\n") == 0 ? status : -1;
    return eof ? status : -1;
}

void done(Slot& s, int status) {
    double end = now_s();
    counters.requests++;
    counters.bytes += s.in.size();
    counters.latency_us.push_back(uint32_t((end - s.started) * 1e6));
    if (status < 200 || status > 399) counters.status_errors++;
    finish(s);
    start(s);
}

// Not reconnected at once: with the server gone that would recurse (connect, fail, connect...).
void lost(Slot& s, uint64_t& counter) {
    counter++;
    finish(s);
    restart.push_back(size_t(&s - slots.data()));
}

void drive(Slot& s) {
    for (;;) {
        if (s.state == State::Handshake) {
            ERR_clear_error();
            int rc = SSL_connect(s.ssl);
            if (rc != 1) {
                uint32_t ev = wanted(SSL_get_error(s.ssl, rc));
                if (ev == 0) {
                    counters.handshake_errors++;
                    return lost(s, counters.connect_errors);
                }
                return set_interest(s, ev);
            }
            s.handshake_done = now_s();
            counters.handshake_us.push_back(uint32_t((s.handshake_done - s.started) * 1e6));
            if (SSL_session_reused(s.ssl)) counters.resumed++;
            if (counters.suites.size() < 16) {
                char group[64] = "";
                int nid = SSL_get_negotiated_group(s.ssl);
                if (nid != 0) snprintf(group, sizeof group, " %s", SSL_group_to_name(s.ssl, nid));
                counters.suites[std::string(SSL_get_version(s.ssl)) + " " +
                                SSL_get_cipher_name(s.ssl) + group]++;
            }
            s.state = State::Write;
        }
        if (s.state == State::Write) {
            ERR_clear_error();
            size_t n = 0;
            int rc = SSL_write_ex(s.ssl, request.data() + s.written, request.size() - s.written, &n);
            if (rc != 1) {
                uint32_t ev = wanted(SSL_get_error(s.ssl, rc));
                if (ev == 0) return lost(s, counters.write_errors);
                return set_interest(s, ev);
            }
            s.written += n;
            if (s.written < request.size()) continue;
            s.state = State::Read;
        }
        // State::Read
        char buf[16384];
        ERR_clear_error();
        size_t n = 0;
        int rc = SSL_read_ex(s.ssl, buf, sizeof buf, &n);
        if (rc == 1) {
            s.in.append(buf, n);
            int status = complete(s.in, false);
            if (status >= 0) return done(s, status);
            continue;
        }
        int err = SSL_get_error(s.ssl, rc);
        if (uint32_t ev = wanted(err)) return set_interest(s, ev);
        // EOF (close_notify, or a bare FIN): complete only if the response had no length.
        int status = complete(s.in, true);
        if (status >= 0 && (err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL))
            return done(s, status);
        return lost(s, counters.read_errors);
    }
}

uint32_t percentile(std::vector<uint32_t>& v, double p) {
    if (v.empty()) return 0;
    size_t i = std::min(v.size() - 1, size_t(p / 100.0 * v.size()));
    return v[i];
}

void parse_args(int argc, char** argv) {
    std::string url;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) die("missing value after " + a);
            return argv[++i];
        };
        if (a == "-c") opt.connections = atoi(value().c_str());
        else if (a == "-d") opt.duration_s = atof(value().c_str());
        else if (a == "--timeout") opt.timeout_s = atof(value().c_str());
        else if (a == "--resume") opt.resume = true;
        else if (a == "--sni") opt.sni = value();
        else if (a == "-h" || a == "--help") {
            fprintf(stderr,
                    "usage: tlsload -c CONNECTIONS -d SECONDS [--resume] [--timeout S] "
                    "[--sni NAME] https://127.0.0.1:PORT/PATH\n");
            exit(0);
        } else if (a.rfind("https://", 0) == 0) url = a.substr(8);
        else die("unknown argument " + a);
    }
    if (url.empty()) die("no https:// URL given");
    size_t slash = url.find('/');
    std::string hostport = url.substr(0, slash);
    opt.path = slash == std::string::npos ? "/" : url.substr(slash);
    size_t colon = hostport.rfind(':');
    opt.host = hostport.substr(0, colon);
    if (colon != std::string::npos) opt.port = atoi(hostport.c_str() + colon + 1);
    if (opt.connections < 1 || opt.duration_s <= 0) die("-c and -d must be positive");
}

}  // namespace

int main(int argc, char** argv) {
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    rlimit nofile{};
    getrlimit(RLIMIT_NOFILE, &nofile);
    rlim_t want = rlim_t(opt.connections) + 64;
    if (nofile.rlim_cur < want) {
        nofile.rlim_cur = std::max(want, nofile.rlim_cur);
        if (nofile.rlim_max < want) nofile.rlim_max = want;
        if (setrlimit(RLIMIT_NOFILE, &nofile) != 0) die("cannot raise RLIMIT_NOFILE");
    }
    target.sin_family = AF_INET;
    target.sin_port = htons(uint16_t(opt.port));
    if (inet_pton(AF_INET, opt.host.c_str(), &target.sin_addr) != 1)
        die("host must be an IPv4 address: " + opt.host);
    request = "GET " + opt.path + " HTTP/1.1\r\nHost: " + (opt.sni.empty() ? opt.host : opt.sni) +
              "\r\nConnection: close\r\n\r\n";

    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == nullptr) die("SSL_CTX_new failed");
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    // Not even a chain is built (with SSL_VERIFY_NONE OpenSSL still runs X509_verify_cert and
    // ignores its verdict); the handshake's own signature (CertificateVerify) is still checked.
    SSL_CTX_set_cert_verify_callback(
        ctx, [](X509_STORE_CTX*, void*) { return 1; }, nullptr);
    static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn);
    // No internal cache: only a slot's own session is ever offered, and only with --resume.
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    slots.resize(size_t(opt.connections));
    counters.latency_us.reserve(1 << 20);
    counters.handshake_us.reserve(1 << 20);
    rusage ru0{};
    getrusage(RUSAGE_SELF, &ru0);
    double t0 = now_s(), deadline = t0 + opt.duration_s;
    for (auto& s : slots) start(s);

    std::vector<epoll_event> events(size_t(opt.connections));
    double last_scan = t0;
    while (true) {
        double t = now_s();
        if (t >= deadline) break;
        if (!restart.empty()) {
            std::vector<size_t> now;
            now.swap(restart);
            for (size_t i : now) start(slots[i]);
        }
        int wait_ms = restart.empty() ? int(std::min(100.0, (deadline - t) * 1000)) + 1 : 0;
        int n = epoll_wait(epfd, events.data(), int(events.size()), wait_ms);
        if (n < 0 && errno != EINTR) die(std::string("epoll_wait: ") + strerror(errno));
        for (int i = 0; i < n; i++) {
            Slot& s = slots[events[i].data.u64 & 0xffffffffu];
            if (uint32_t(events[i].data.u64 >> 32) != s.generation || s.fd < 0) continue;
            drive(s);
        }
        t = now_s();
        if (t - last_scan >= 0.1) {
            last_scan = t;
            for (auto& s : slots)
                if (s.fd >= 0 && t - s.started > opt.timeout_s) lost(s, counters.timeouts);
        }
    }
    double elapsed = now_s() - t0;
    rusage ru1{};
    getrusage(RUSAGE_SELF, &ru1);
    auto secs = [](const timeval& a, const timeval& b) {
        return (b.tv_sec - a.tv_sec) + (b.tv_usec - a.tv_usec) / 1e6;
    };
    double cpu = secs(ru0.ru_utime, ru1.ru_utime) + secs(ru0.ru_stime, ru1.ru_stime);

    auto& lat = counters.latency_us;
    std::sort(lat.begin(), lat.end());
    std::sort(counters.handshake_us.begin(), counters.handshake_us.end());
    double mean = 0;
    for (uint32_t v : lat) mean += v;
    mean = lat.empty() ? 0 : mean / lat.size();
    std::string suite, suites;
    uint64_t most = 0;
    for (auto& [name, count] : counters.suites) {
        if (count > most) most = count, suite = name;
        suites += (suites.empty() ? "" : "; ") + name;
    }
    fprintf(stderr,
            "tlsload: %d connections, %.2f s, %s: %llu requests (%.0f/s), %llu resumed, "
            "p50 %.2f ms, p99 %.2f ms; handshake p50 %.2f ms; errors connect %llu (handshake "
            "%llu), read %llu, write %llu, status %llu, timeouts %llu; client CPU %.0f%%; %s\n",
            opt.connections, elapsed, opt.resume ? "resume" : "full handshakes",
            (unsigned long long)counters.requests, counters.requests / elapsed,
            (unsigned long long)counters.resumed, percentile(lat, 50) / 1e3,
            percentile(lat, 99) / 1e3, percentile(counters.handshake_us, 50) / 1e3,
            (unsigned long long)counters.connect_errors,
            (unsigned long long)counters.handshake_errors,
            (unsigned long long)counters.read_errors, (unsigned long long)counters.write_errors,
            (unsigned long long)counters.status_errors, (unsigned long long)counters.timeouts,
            cpu / elapsed * 100, suites.c_str());
    printf("BENCH_RESULT {\"requests\": %llu, \"duration_us\": %llu, \"bytes\": %llu, "
           "\"connect_errors\": %llu, \"read_errors\": %llu, \"write_errors\": %llu, "
           "\"status_errors\": %llu, \"timeouts\": %llu, \"p50_us\": %u, \"p90_us\": %u, "
           "\"p99_us\": %u, \"max_us\": %u, \"mean_us\": %.1f, \"handshakes\": %llu, "
           "\"resumed\": %llu, \"handshake_errors\": %llu, \"handshake_p50_us\": %u, "
           "\"handshake_p99_us\": %u, \"client_self_cpu_s\": %.3f, \"tls\": \"%s\"}\n",
           (unsigned long long)counters.requests, (unsigned long long)(elapsed * 1e6),
           (unsigned long long)counters.bytes, (unsigned long long)counters.connect_errors,
           (unsigned long long)counters.read_errors, (unsigned long long)counters.write_errors,
           (unsigned long long)counters.status_errors, (unsigned long long)counters.timeouts,
           percentile(lat, 50), percentile(lat, 90), percentile(lat, 99),
           lat.empty() ? 0 : lat.back(), mean, (unsigned long long)counters.handshake_us.size(),
           (unsigned long long)counters.resumed, (unsigned long long)counters.handshake_errors,
           percentile(counters.handshake_us, 50), percentile(counters.handshake_us, 99), cpu,
           suite.c_str());
    return 0;
}
