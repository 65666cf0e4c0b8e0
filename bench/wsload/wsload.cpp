// wsload: a WebSocket (RFC 6455) load generator, and the trivial echo server that measures it.
//
//   wsload [--mode echo|large|idle] -c CONNECTIONS -d SECONDS [--size BYTES] [--text|--binary]
//          [--deflate] [--messages N] [--timeout S] [--parallel N] [--hold S]
//          ws://127.0.0.1:PORT/PATH
//   wsload --serve PORT [--fragment BYTES]     the reference echo server (no Python, no app)
//   wsload --self-test                         the frame parser split at every byte, and more
//
// One thread, one epoll loop, level-triggered, non-blocking sockets; OpenSSL only for the SHA-1
// and base64 of the Sec-WebSocket-Accept check. Masking keys come from xorshift64*.
//
// echo (default): C connections are opened (each handshake's Sec-WebSocket-Accept verified),
//   then the clock starts and each connection sends one message (--size, 32 bytes of text by
//   default), waits for the whole echo, checks it byte for byte against what it sent, and sends
//   the next, until -d seconds are over. A round trip's latency runs from the send to the
//   echo's last byte. The echo may come in any number of frames (continuations, with pings
//   between them, which are answered with pongs); a round trip still in flight at the end is
//   not counted.
// large: the same with one 1 MiB binary message per round trip (--size, --text to change).
// idle: N connections (-c) are opened, at most --parallel handshakes at a time, each optionally
//   offering permessage-deflate (--deflate) and exchanging --messages echoes (1 by default; a
//   compressed echo is counted, not inflated). When all are open it prints one
//   `BENCH_READY {...}` line, then holds them (answering pings) until its stdin is closed or
//   --hold seconds pass, and prints how many the server closed meanwhile.
//
// At the end it prints a human summary on stderr and one line on stdout that bench/load.py
// parses, shaped like wrk's (bench/lua/report.lua), a request being one round trip:
//   BENCH_RESULT {"requests": ..., "duration_us": ..., "p99_us": ..., "mib_per_s": ..., ...}
// Without deflate the echoed bytes are verified; deflate is only offered in idle mode.

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
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
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

// ------------------------------------------------------------------------------- utilities

double now_s() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return double(ts.tv_sec) + double(ts.tv_nsec) / 1e9;
}

[[noreturn]] void die(const std::string& why) {
    fprintf(stderr, "wsload: %s\n", why.c_str());
    exit(2);
}

uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

// xorshift64*: masking keys and handshake keys need to be unpredictable to a proxy, not secret.
inline uint64_t next_random() {
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

std::string base64(const uint8_t* p, size_t n) {
    std::string out(4 * ((n + 2) / 3) + 1, '\0');
    int k = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), p, int(n));
    out.resize(size_t(k));
    return out;
}

// Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 section 4.2.2).
std::string accept_for(std::string_view key) {
    std::string s(key);
    s += "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (EVP_Digest(s.data(), s.size(), md, &len, EVP_sha1(), nullptr) != 1) die("SHA-1 failed");
    return base64(md, len);
}

// dst[i] = src[i] ^ key[(offset + i) % 4], sixteen bytes at a time (GCC's vector extension:
// one SSE2 XOR; dst may be src). A 1 MiB message takes about 40 us.
typedef uint8_t Vec16 __attribute__((vector_size(16)));

void mask_copy(uint8_t* dst, const uint8_t* src, size_t n, const uint8_t key[4], uint64_t offset) {
    uint8_t k[16];
    for (int i = 0; i < 16; i++)
        k[i] = key[(offset + uint64_t(i)) & 3];
    Vec16 kv;
    memcpy(&kv, k, 16);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        Vec16 v;
        memcpy(&v, src + i, 16);
        v ^= kv;
        memcpy(dst + i, &v, 16);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ k[i & 3];
}

// A growable byte buffer that does not zero what it grows by (a 1 MiB message is written over
// at once); `off` is how much of it has been sent.
struct Buffer {
    uint8_t* data = nullptr;
    size_t size = 0, cap = 0, off = 0;

    Buffer() = default;
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    Buffer(Buffer&& o) noexcept
        : data(std::exchange(o.data, nullptr)),
          size(std::exchange(o.size, 0)),
          cap(std::exchange(o.cap, 0)),
          off(std::exchange(o.off, 0)) {}
    Buffer& operator=(Buffer&& o) noexcept {
        std::swap(data, o.data);
        std::swap(size, o.size);
        std::swap(cap, o.cap);
        std::swap(off, o.off);
        return *this;
    }
    ~Buffer() { free(data); }

    uint8_t* grow(size_t n) {
        if (size + n > cap) {
            cap = std::max(cap * 2, size + n);
            data = static_cast<uint8_t*>(realloc(data, cap));
            if (data == nullptr) die("out of memory");
        }
        uint8_t* p = data + size;
        size += n;
        return p;
    }
    void append(const void* p, size_t n) { memcpy(grow(n), p, n); }
    size_t pending() const { return size - off; }
    void sent(size_t n) {
        off += n;
        if (off == size) off = size = 0;
    }
    void clear() { off = size = 0; }
};

enum Opcode : uint8_t { kCont = 0, kText = 1, kBinary = 2, kClose = 8, kPing = 9, kPong = 10 };

size_t write_header(uint8_t* h, uint8_t b0, uint64_t len, const uint8_t* mask) {
    size_t i = 0;
    h[i++] = b0;
    uint8_t m = mask != nullptr ? 0x80 : 0;
    if (len < 126) {
        h[i++] = uint8_t(m | len);
    } else if (len <= 0xffff) {
        h[i++] = m | 126;
        h[i++] = uint8_t(len >> 8);
        h[i++] = uint8_t(len);
    } else {
        h[i++] = m | 127;
        for (int s = 56; s >= 0; s -= 8)
            h[i++] = uint8_t(len >> s);
    }
    if (mask != nullptr) {
        memcpy(h + i, mask, 4);
        i += 4;
    }
    return i;
}

// One frame appended to `out`: masked with a fresh key (a client's), or not (a server's).
void append_frame(Buffer& out, uint8_t b0, const uint8_t* payload, size_t n, bool masked) {
    uint8_t key[4];
    uint64_t r = next_random();
    memcpy(key, &r, 4);
    uint8_t h[14];
    size_t hl = write_header(h, b0, n, masked ? key : nullptr);
    uint8_t* p = out.grow(hl + n);
    memcpy(p, h, hl);
    if (masked) {
        mask_copy(p + hl, payload, n, key, 0);
    } else if (n > 0) {
        memcpy(p + hl, payload, n);
    }
}

// ------------------------------------------------------------------------------- frames

struct Header {
    bool fin = false;
    uint8_t rsv = 0;  // RSV1..3 as bits 2..0 (RSV1 = 4: permessage-deflate's "compressed")
    uint8_t opcode = 0;
    bool masked = false;
    uint8_t mask[4] = {0, 0, 0, 0};
    uint64_t length = 0;
};

// Splits a byte stream into frames, resumable at any byte: feed() calls sink.header(h), then
// sink.payload(p, n) as the payload arrives (still masked, if it is), then sink.end(). Each
// returns false to stop. feed() returns false if the sink stopped or a length was invalid.
class FrameReader {
  public:
    template <class Sink>
    bool feed(const uint8_t* p, size_t n, Sink& sink) {
        for (;;) {
            if (!in_payload_) {
                if (n == 0) return true;
                size_t need = have_ < 2 ? 2 : header_size();
                while (have_ < need) {
                    size_t k = std::min(need - have_, n);
                    memcpy(hdr_ + have_, p, k);
                    have_ += k;
                    p += k;
                    n -= k;
                    if (have_ < need) return true;
                    need = header_size();
                }
                Header h;
                if (!parse(h)) return false;
                have_ = 0;
                left_ = h.length;
                in_payload_ = true;
                if (!sink.header(h)) return false;
            }
            size_t take = size_t(std::min<uint64_t>(left_, n));
            if (take > 0) {
                left_ -= take;
                if (!sink.payload(p, take)) return false;
                p += take;
                n -= take;
            }
            if (left_ > 0) return true;
            in_payload_ = false;
            if (!sink.end()) return false;
        }
    }

  private:
    size_t header_size() const {
        uint8_t len7 = hdr_[1] & 0x7f;
        return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((hdr_[1] & 0x80) ? 4 : 0);
    }
    bool parse(Header& h) const {
        h.fin = (hdr_[0] & 0x80) != 0;
        h.rsv = (hdr_[0] >> 4) & 7;
        h.opcode = hdr_[0] & 0x0f;
        h.masked = (hdr_[1] & 0x80) != 0;
        uint8_t len7 = hdr_[1] & 0x7f;
        size_t i = 2;
        if (len7 == 126) {
            h.length = (uint64_t(hdr_[2]) << 8) | hdr_[3];
            i = 4;
        } else if (len7 == 127) {
            h.length = 0;
            for (int k = 0; k < 8; k++)
                h.length = (h.length << 8) | hdr_[2 + k];
            i = 10;
            if (h.length >> 63) return false;
        } else {
            h.length = len7;
        }
        if (h.masked) memcpy(h.mask, hdr_ + i, 4);
        return true;
    }

    uint8_t hdr_[14] = {};
    size_t have_ = 0;
    uint64_t left_ = 0;
    bool in_payload_ = false;
};

// What a Receiver reports: whole messages (with whether they matched what was expected) and
// control frames.
class MessageSink {
  public:
    virtual ~MessageSink() = default;
    virtual void on_message(uint8_t opcode, bool compressed, uint64_t size, uint32_t frames,
                            bool matched) = 0;
    virtual void on_control(uint8_t opcode, const uint8_t* payload, size_t n) = 0;
};

// A client's view of the server's frames: messages reassembled from their fragments (control
// frames allowed between them) and compared as they stream in with the expected payload,
// without being copied. Frames must be unmasked; RSV1 only with permessage-deflate agreed.
class Receiver {
  public:
    void expect(const uint8_t* data, size_t size) {
        expect_ = data;
        expect_size_ = size;
    }
    void reset(bool deflate) {
        reader_ = FrameReader();
        in_message_ = false;
        deflate_ = deflate;
        error_ = nullptr;
    }
    // False on a protocol error (error() says which).
    bool feed(const uint8_t* p, size_t n, MessageSink& sink) {
        sink_ = &sink;
        if (!reader_.feed(p, n, *this) && error_ == nullptr) error_ = "invalid frame length";
        return error_ == nullptr;
    }
    const char* error() const { return error_; }

    bool header(const Header& h) {
        cur_ = h;
        if (h.masked) return fail("masked frame from the server");
        bool control = h.opcode >= 8;
        if (control) {
            if (h.opcode > kPong) return fail("reserved opcode");
            if (!h.fin || h.length > 125) return fail("fragmented or long control frame");
            if (h.rsv != 0) return fail("RSV bit on a control frame");
            control_len_ = 0;
            return true;
        }
        if (h.opcode != kCont && h.opcode != kText && h.opcode != kBinary) {
            return fail("reserved opcode");
        }
        if ((h.rsv & 3) != 0 || ((h.rsv & 4) && (!deflate_ || h.opcode == kCont))) {
            return fail("unexpected RSV bit");
        }
        if (h.opcode == kCont) {
            if (!in_message_) return fail("continuation outside a message");
        } else {
            if (in_message_) return fail("new message inside a fragmented one");
            in_message_ = true;
            opcode_ = h.opcode;
            compressed_ = (h.rsv & 4) != 0;
            size_ = 0;
            frames_ = 0;
            mismatch_ = expect_ == nullptr;
        }
        frames_++;
        return true;
    }
    bool payload(const uint8_t* p, size_t n) {
        if (cur_.opcode >= 8) {
            memcpy(control_ + control_len_, p, n);
            control_len_ += n;
            return true;
        }
        if (!mismatch_ && !compressed_ &&
            (size_ + n > expect_size_ || memcmp(p, expect_ + size_, n) != 0)) {
            mismatch_ = true;
        }
        size_ += n;
        return true;
    }
    bool end() {
        if (cur_.opcode >= 8) {
            sink_->on_control(cur_.opcode, control_, control_len_);
            return true;
        }
        if (!cur_.fin) return true;
        in_message_ = false;
        // A compressed echo cannot be compared without inflating it: it counts as matched.
        bool matched = compressed_ || (!mismatch_ && size_ == expect_size_);
        sink_->on_message(opcode_, compressed_, size_, frames_, matched);
        return true;
    }

  private:
    bool fail(const char* why) {
        error_ = why;
        return false;
    }

    FrameReader reader_;
    MessageSink* sink_ = nullptr;
    const uint8_t* expect_ = nullptr;
    size_t expect_size_ = 0;
    Header cur_;
    bool deflate_ = false, in_message_ = false, compressed_ = false, mismatch_ = false;
    uint8_t opcode_ = 0;
    uint64_t size_ = 0;
    uint32_t frames_ = 0;
    uint8_t control_[125] = {};
    size_t control_len_ = 0;
    const char* error_ = nullptr;
};

// ------------------------------------------------------------------------------- the client

struct Options {
    std::string mode = "echo";
    int connections = 64;
    double duration_s = 5;
    double timeout_s = 10;
    size_t size = 0;  // 0: the mode's (32, or 1 MiB for large)
    int binary = -1;  // -1: the mode's (text, or binary for large)
    bool deflate = false;
    long messages = -1;  // per connection; -1: unlimited (idle: 1)
    int parallel = 64;   // idle: handshakes in flight at once
    double hold_s = 0;   // idle: 0 holds until stdin is closed
    double open_timeout_s = 300;
    std::string host = "127.0.0.1", path = "/";
    int port = 80;
};

struct Counters {
    uint64_t requests = 0, bytes = 0, handshakes = 0, refused = 0;
    uint64_t connect_errors = 0, read_errors = 0, write_errors = 0, timeouts = 0;
    uint64_t mismatches = 0, protocol_errors = 0, closed_by_server = 0, unsolicited = 0;
    uint64_t frames = 0, fragmented = 0, compressed = 0, pings = 0;
    int refused_status = 0;
    std::string server, extensions, refused_line, last_error;
    std::vector<uint32_t> latency_us;
};

enum class Phase : uint8_t { Idle, Connecting, Handshake, Open };

Options opt;
Counters counters;
int epfd = -1;
sockaddr_in target{};
std::vector<uint8_t> message;  // what every connection sends, and expects back
uint8_t message_opcode = kText;
bool measuring = false, holding = false;
double deadline = 0;

struct Conn final : MessageSink {
    int fd = -1;
    uint32_t gen = 0;
    uint32_t interest = 0;
    Phase phase = Phase::Idle;
    bool stopped = false;          // refused, or failed in idle mode: never restarted
    bool finished = false;         // its --messages are done
    bool settled = false;          // idle mode: counted as ready or failed
    bool waiting = false;          // a round trip is in flight
    bool closing = false;          // the server sent a close frame
    const char* broken = nullptr;  // set inside a callback, acted on after it
    long done = 0;
    double started = 0, sent_at = 0;
    std::string key, head;
    Buffer out;
    Receiver rx;

    void on_message(uint8_t opcode, bool compressed, uint64_t size, uint32_t frames,
                    bool matched) override;
    void on_control(uint8_t opcode, const uint8_t* payload, size_t n) override;
};

std::vector<Conn> conns;
std::vector<size_t> restart;  // lost connections, reconnected on the next loop turn
size_t next_idle = 0, in_flight = 0, ready = 0, failed = 0;

uint64_t tag(const Conn& c) { return (uint64_t(c.gen) << 32) | uint64_t(&c - conns.data()); }

void set_interest(Conn& c, uint32_t events) {
    if (c.interest == events) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = tag(c);
    if (epoll_ctl(epfd, c.interest == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c.fd, &ev) != 0)
        die(std::string("epoll_ctl: ") + strerror(errno));
    c.interest = events;
}

void send_message(Conn& c) {
    append_frame(c.out, uint8_t(0x80 | message_opcode), message.data(), message.size(), true);
    c.waiting = true;
    c.sent_at = now_s();
}

void Conn::on_message(uint8_t opcode, bool compressed, uint64_t size, uint32_t frames,
                      bool matched) {
    counters.frames += frames;
    if (frames > 1) counters.fragmented++;
    if (compressed) counters.compressed++;
    if (!waiting) {
        counters.unsolicited++;
        return;
    }
    waiting = false;
    double t = now_s();
    if (!matched || opcode != message_opcode) {
        counters.mismatches++;
        broken = "the echo differs from the message sent";
        return;
    }
    if (measuring && t < deadline) {
        counters.requests++;
        counters.bytes += size;
        counters.latency_us.push_back(uint32_t((t - sent_at) * 1e6));
    }
    done++;
    if (opt.messages >= 0 && done >= opt.messages) {
        finished = true;
    } else if (opt.mode != "idle") {
        send_message(*this);
    }
}

void Conn::on_control(uint8_t opcode, const uint8_t* payload, size_t n) {
    if (opcode == kPing) {
        counters.pings++;
        append_frame(out, 0x80 | kPong, payload, n, true);
    } else if (opcode == kClose) {
        // Answer with the same code, then drop the connection once that is written.
        append_frame(out, 0x80 | kClose, payload, std::min<size_t>(n, 2), true);
        closing = true;
    }
}

void flush(Conn& c);
void start(Conn& c);

void close_conn(Conn& c) {
    if (c.fd >= 0) close(c.fd);  // closing removes it from the epoll set
    c.fd = -1;
    c.interest = 0;
    c.gen++;
    c.phase = Phase::Idle;
    c.waiting = c.closing = false;
    c.broken = nullptr;
    c.out.clear();
}

// Idle mode: one more connection is settled (open with its messages done, or failed); start
// the next while there are any left.
void idle_settled() {
    in_flight--;
    while (next_idle < conns.size() && in_flight < size_t(opt.parallel)) {
        in_flight++;
        start(conns[next_idle++]);
    }
}

void lost(Conn& c, uint64_t& counter, const char* why) {
    counter++;
    counters.last_error = why;
    close_conn(c);
    if (opt.mode != "idle") {
        if (!c.stopped) restart.push_back(size_t(&c - conns.data()));
        return;
    }
    c.stopped = true;
    if (holding) return;  // counted as closed while idle
    if (c.settled) {
        ready--;  // it was ready, and failed after all
        failed++;
        return;
    }
    c.settled = true;
    failed++;
    idle_settled();
}

// Idle mode: the connection is open and its messages are done.
void settle_ready(Conn& c) {
    if (c.settled || c.fd < 0 || !c.finished) return;
    c.settled = true;
    ready++;
    idle_settled();
}

void start(Conn& c) {
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) die(std::string("socket: ") + strerror(errno));
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c.started = now_s();
    c.head.clear();
    c.finished = false;
    c.settled = false;
    c.done = 0;
    c.phase = Phase::Connecting;
    if (connect(c.fd, reinterpret_cast<sockaddr*>(&target), sizeof target) != 0 &&
        errno != EINPROGRESS) {
        return lost(c, counters.connect_errors, "connect failed");
    }
    set_interest(c, EPOLLOUT);
}

void send_request(Conn& c) {
    uint8_t raw[16];
    for (int i = 0; i < 16; i += 8) {
        uint64_t r = next_random();
        memcpy(raw + i, &r, 8);
    }
    c.key = base64(raw, 16);
    std::string req =
        "GET " + opt.path + " HTTP/1.1\r\nHost: " + opt.host + ":" + std::to_string(opt.port) +
        "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + c.key +
        "\r\nSec-WebSocket-Version: 13\r\n";
    // What browsers offer.
    if (opt.deflate)
        req += "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
    req += "\r\n";
    c.out.append(req.data(), req.size());
    c.phase = Phase::Handshake;
    flush(c);
}

void flush(Conn& c) {
    while (c.out.pending() > 0) {
        ssize_t n = send(c.fd, c.out.data + c.out.off, c.out.pending(), MSG_NOSIGNAL);
        if (n > 0) {
            c.out.sent(size_t(n));
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (errno == EINTR) continue;
            return set_interest(c, EPOLLIN | EPOLLOUT);
        }
        return lost(c, counters.write_errors, "send failed");
    }
    if (c.closing) {
        return lost(c, holding ? counters.closed_by_server : counters.read_errors,
                    "the server closed the WebSocket");
    }
    set_interest(c, EPOLLIN);
}

std::string header_value(const std::string& head, const char* name) {
    size_t len = strlen(name), line = head.find("\r\n");
    while (line != std::string::npos && line + 2 < head.size()) {
        size_t start = line + 2, end = head.find("\r\n", start);
        if (end == std::string::npos) end = head.size();
        if (end - start > len && head[start + len] == ':' &&
            strncasecmp(head.c_str() + start, name, len) == 0) {
            size_t v = start + len + 1;
            while (v < end && (head[v] == ' ' || head[v] == '\t'))
                v++;
            size_t e = end;
            while (e > v && (head[e - 1] == ' ' || head[e - 1] == '\t'))
                e--;
            return head.substr(v, e - v);
        }
        line = end;
    }
    return "";
}

// The connection is open: the first message, or (idle mode, no messages) settled.
void opened(Conn& c) {
    counters.handshakes++;
    c.phase = Phase::Open;
    if (opt.mode == "idle") {
        if (opt.messages != 0) {
            send_message(c);
        } else {
            c.finished = true;
        }
    } else if (measuring) {
        send_message(c);
    }
}

// The response head is complete: check it; returns false if the connection was dropped.
bool handshake_done(Conn& c, size_t head_end) {
    std::string head = c.head.substr(0, head_end);
    int status = 0;
    if (head.size() >= 12) sscanf(head.c_str() + 9, "%3d", &status);
    if (status != 101) {
        counters.refused++;
        counters.refused_status = status;
        counters.refused_line = head.substr(0, head.find("\r\n"));
        c.stopped = true;
        lost(c, counters.connect_errors, "the upgrade was refused");
        return false;
    }
    if (header_value(head, "Sec-WebSocket-Accept") != accept_for(c.key)) {
        lost(c, counters.protocol_errors, "wrong Sec-WebSocket-Accept");
        return false;
    }
    std::string ext = header_value(head, "Sec-WebSocket-Extensions");
    if (!ext.empty() && !opt.deflate) {
        lost(c, counters.protocol_errors, "an extension nobody offered");
        return false;
    }
    if (counters.handshakes == 0) {
        counters.server = header_value(head, "Server");
        counters.extensions = ext;
    }
    c.rx.reset(!ext.empty());
    c.rx.expect(message.data(), message.size());
    opened(c);
    return true;
}

// Feeds frames to the connection's receiver; false if the connection was dropped.
bool feed(Conn& c, const uint8_t* p, size_t n) {
    if (!c.rx.feed(p, n, c)) {
        lost(c, counters.protocol_errors, c.rx.error());
        return false;
    }
    if (c.broken != nullptr) {
        lost(c, counters.read_errors, c.broken);
        return false;
    }
    return true;
}

uint8_t rbuf[256 * 1024];

void on_readable(Conn& c) {
    for (int reads = 0; reads < 8; reads++) {
        ssize_t n = recv(c.fd, rbuf, sizeof rbuf, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            return lost(c, holding ? counters.closed_by_server : counters.read_errors,
                        "the server closed the connection");
        }
        if (n < 0) break;
        const uint8_t* p = rbuf;
        size_t len = size_t(n);
        if (c.phase == Phase::Handshake) {
            size_t before = c.head.size();
            c.head.append(reinterpret_cast<const char*>(p), len);
            size_t end = c.head.find("\r\n\r\n");
            if (end == std::string::npos) {
                if (c.head.size() > 16384) return lost(c, counters.protocol_errors, "huge head");
                continue;
            }
            size_t used = end + 4 - before;
            if (!handshake_done(c, end + 4)) return;
            p += used;
            len -= used;
        }
        if (c.phase == Phase::Open && len > 0 && !feed(c, p, len)) return;
        if (size_t(n) < sizeof rbuf) break;
    }
    flush(c);
}

void on_event(Conn& c, uint32_t events) {
    if (c.phase == Phase::Connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 || (events & (EPOLLERR | EPOLLHUP))) {
            return lost(c, counters.connect_errors, "connect failed");
        }
        return send_request(c);
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        on_readable(c);
    } else if (events & EPOLLOUT) {
        flush(c);
    }
    if (opt.mode == "idle" && !holding) settle_ready(c);
}

uint32_t percentile(const std::vector<uint32_t>& v, double p) {
    if (v.empty()) return 0;
    return v[std::min(v.size() - 1, size_t(p / 100.0 * double(v.size())))];
}

std::string json_string(const std::string& s) {
    std::string out = "\"";
    for (unsigned char ch : s) {
        if (ch == '"' || ch == '\\') {
            out += '\\';
            out += char(ch);
        } else if (ch < 0x20 || ch >= 0x7f) {
            char buf[8];
            snprintf(buf, sizeof buf, "\\u%04x", ch);
            out += buf;
        } else {
            out += char(ch);
        }
    }
    return out + "\"";
}

double cpu_seconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// The connections' events until `until` (monotonic seconds) or `stop()` says so; timeouts
// checked every 100 ms. Returns false if stdin was closed (idle hold).
template <class Stop>
bool loop(double until, Stop stop) {
    std::vector<epoll_event> events(1024);
    double last_scan = now_s();
    while (!stop()) {
        double t = now_s();
        if (t >= until) return true;
        if (!restart.empty()) {
            std::vector<size_t> todo;
            todo.swap(restart);
            for (size_t i : todo)
                start(conns[i]);
        }
        int wait_ms = restart.empty() ? int(std::min(100.0, (until - t) * 1000)) + 1 : 0;
        int n = epoll_wait(epfd, events.data(), int(events.size()), wait_ms);
        if (n < 0 && errno != EINTR) die(std::string("epoll_wait: ") + strerror(errno));
        for (int i = 0; i < n; i++) {
            uint64_t data = events[size_t(i)].data.u64;
            if (data == UINT64_MAX) {  // stdin: the harness is done measuring
                char b[64];
                if (read(0, b, sizeof b) <= 0) return false;
                continue;
            }
            Conn& c = conns[data & 0xffffffffu];
            if (uint32_t(data >> 32) != c.gen || c.fd < 0) continue;
            on_event(c, events[size_t(i)].events);
        }
        t = now_s();
        if (t - last_scan >= 0.1) {
            last_scan = t;
            for (auto& c : conns) {
                if (c.fd < 0) continue;
                bool opening = c.phase == Phase::Connecting || c.phase == Phase::Handshake;
                if ((opening && t - c.started > opt.timeout_s) ||
                    (c.waiting && t - c.sent_at > opt.timeout_s)) {
                    lost(c, counters.timeouts, "timed out");
                }
            }
        }
    }
    return true;
}

void print_summary(double elapsed, double cpu) {
    auto& lat = counters.latency_us;
    std::sort(lat.begin(), lat.end());
    double mean = 0;
    for (uint32_t v : lat)
        mean += v;
    mean = lat.empty() ? 0 : mean / double(lat.size());
    double mib = double(counters.bytes) / (1024.0 * 1024.0) / elapsed;
    uint64_t status_errors = counters.mismatches + counters.protocol_errors + counters.refused;
    fprintf(stderr,
            "wsload: %s, %d connections, %zu-byte %s messages, %.2f s: %llu round trips "
            "(%.0f/s, %.1f MiB/s each way), p50 %.3f ms, p99 %.3f ms; %llu handshakes, "
            "%llu fragmented echoes, %llu pings; errors connect %llu, read %llu, write %llu, "
            "mismatched %llu, protocol %llu, refused %llu, timeouts %llu%s%s; client CPU %.0f%%\n",
            opt.mode.c_str(), opt.connections, message.size(),
            message_opcode == kText ? "text" : "binary", elapsed,
            (unsigned long long)counters.requests, double(counters.requests) / elapsed, mib,
            percentile(lat, 50) / 1e3, percentile(lat, 99) / 1e3,
            (unsigned long long)counters.handshakes, (unsigned long long)counters.fragmented,
            (unsigned long long)counters.pings, (unsigned long long)counters.connect_errors,
            (unsigned long long)counters.read_errors, (unsigned long long)counters.write_errors,
            (unsigned long long)counters.mismatches, (unsigned long long)counters.protocol_errors,
            (unsigned long long)counters.refused, (unsigned long long)counters.timeouts,
            counters.last_error.empty() ? "" : "; last: ", counters.last_error.c_str(),
            cpu / elapsed * 100);
    printf(
        "BENCH_RESULT {\"requests\": %llu, \"duration_us\": %llu, \"bytes\": %llu, "
        "\"connect_errors\": %llu, \"read_errors\": %llu, \"write_errors\": %llu, "
        "\"status_errors\": %llu, \"timeouts\": %llu, \"p50_us\": %u, \"p90_us\": %u, "
        "\"p99_us\": %u, \"max_us\": %u, \"mean_us\": %.1f, \"mib_per_s\": %.2f, "
        "\"message_bytes\": %zu, \"ws_handshakes\": %llu, \"refused\": %llu, "
        "\"refused_status\": %d, \"refused_line\": %s, \"mismatches\": %llu, "
        "\"protocol_errors\": %llu, \"frames\": %llu, \"fragmented\": %llu, "
        "\"compressed\": %llu, \"pings\": %llu, \"unsolicited\": %llu, "
        "\"client_self_cpu_s\": %.3f, \"ws_server\": %s, \"ws_extensions\": %s, "
        "\"last_error\": %s}\n",
        (unsigned long long)counters.requests, (unsigned long long)(elapsed * 1e6),
        (unsigned long long)counters.bytes, (unsigned long long)counters.connect_errors,
        (unsigned long long)counters.read_errors, (unsigned long long)counters.write_errors,
        (unsigned long long)status_errors, (unsigned long long)counters.timeouts,
        percentile(lat, 50), percentile(lat, 90), percentile(lat, 99), lat.empty() ? 0 : lat.back(),
        mean, mib, message.size(), (unsigned long long)counters.handshakes,
        (unsigned long long)counters.refused, counters.refused_status,
        json_string(counters.refused_line).c_str(), (unsigned long long)counters.mismatches,
        (unsigned long long)counters.protocol_errors, (unsigned long long)counters.frames,
        (unsigned long long)counters.fragmented, (unsigned long long)counters.compressed,
        (unsigned long long)counters.pings, (unsigned long long)counters.unsolicited, cpu,
        json_string(counters.server).c_str(), json_string(counters.extensions).c_str(),
        json_string(counters.last_error).c_str());
    fflush(stdout);
}

int run_load() {
    bool idle = opt.mode == "idle";
    conns = std::vector<Conn>(size_t(opt.connections));
    counters.latency_us.reserve(1 << 20);
    double cpu0 = cpu_seconds(), t_open = now_s();
    if (idle) {
        in_flight = 1;  // idle_settled() starts the first --parallel
        idle_settled();
        loop(t_open + opt.open_timeout_s, [] { return ready + failed >= conns.size(); });
        double open_s = now_s() - t_open;
        // What both lines say: how the opening went, and what the servers' 101s said.
        auto common = [&] {
            char head[160];
            snprintf(head, sizeof head,
                     "\"opened\": %zu, \"failed\": %zu, \"open_seconds\": %.2f, "
                     "\"refused\": %llu, \"compressed\": %llu, ",
                     ready, conns.size() - ready, open_s, (unsigned long long)counters.refused,
                     (unsigned long long)counters.compressed);
            return head + std::string("\"refused_line\": ") + json_string(counters.refused_line) +
                   ", \"ws_server\": " + json_string(counters.server) +
                   ", \"ws_extensions\": " + json_string(counters.extensions) +
                   ", \"last_error\": " + json_string(counters.last_error);
        };
        printf("BENCH_READY {%s}\n", common().c_str());
        fflush(stdout);
        holding = true;
        uint64_t closed_before = counters.closed_by_server;
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.u64 = UINT64_MAX;
        bool watch_stdin = epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) == 0;
        double hold = opt.hold_s > 0 ? opt.hold_s : watch_stdin ? 86400.0 : 1.0;
        double t_hold = now_s();
        loop(t_hold + hold, [] { return false; });
        double held = now_s() - t_hold;
        printf(
            "BENCH_RESULT {%s, \"held_seconds\": %.2f, \"closed\": %llu, \"pings\": %llu, "
            "\"ws_handshakes\": %llu, \"client_self_cpu_s\": %.3f}\n",
            common().c_str(), held, (unsigned long long)(counters.closed_by_server - closed_before),
            (unsigned long long)counters.pings, (unsigned long long)counters.handshakes,
            cpu_seconds() - cpu0);
        fprintf(stderr, "wsload: idle, %zu of %zu open in %.2f s, %llu closed while held %.1f s\n",
                ready, conns.size(), open_s,
                (unsigned long long)(counters.closed_by_server - closed_before), held);
        return ready == conns.size() ? 0 : 1;
    }
    // Open every connection first; the clock starts when all are open (or have given up).
    for (auto& c : conns)
        start(c);
    loop(t_open + std::max(opt.timeout_s, 10.0), [] {
        for (auto& c : conns)
            if (c.phase != Phase::Open && !c.stopped) return false;
        return true;
    });
    cpu0 = cpu_seconds();
    double t0 = now_s();
    deadline = t0 + opt.duration_s;
    measuring = true;
    for (auto& c : conns) {
        if (c.phase == Phase::Open) {
            send_message(c);
            flush(c);
        }
    }
    loop(deadline, [] {
        for (auto& c : conns)
            if (!c.stopped && !c.finished) return false;
        return true;
    });
    double elapsed = std::min(now_s(), deadline) - t0;
    print_summary(elapsed > 0 ? elapsed : 1e-6, cpu_seconds() - cpu0);
    return 0;
}

// ------------------------------------------------------------------------------- the server

// bench/wsload --serve: a single-threaded epoll WebSocket echo server with no app and no
// Python, the reference the load generator is measured against. Every data frame is echoed as
// it arrives, unmasked (fragmentation preserved; --fragment N re-splits each into frames of at
// most N bytes with a ping after a message's first fragment, to exercise the client's
// reassembly). Pings get pongs, a close gets its close back. A request without an upgrade gets
// `Hello, world!` (the bench's readiness check), then the connection closes.
struct ServerConn {
    int fd = -1;
    uint32_t gen = 0, interest = 0;
    bool upgraded = false, closing = false;
    std::string head;
    Buffer out;
    FrameReader reader;
    Header cur;
    uint64_t pos = 0;         // payload bytes of the current frame seen so far
    uint64_t piece_left = 0;  // --fragment: bytes left in the outgoing piece
    bool first_piece = true, message_pinged = false;
    uint8_t control[125] = {};
    size_t control_len = 0;
};

struct Server {
    size_t fragment = 0;
    std::vector<ServerConn> conns;
    std::vector<size_t> free_slots;
    uint8_t scratch[256 * 1024];
    ServerConn* c = nullptr;  // the connection being fed

    bool header(const Header& h) {
        if (!h.masked) return false;  // clients must mask
        c->cur = h;
        c->pos = 0;
        c->control_len = 0;
        c->first_piece = true;
        c->piece_left = 0;
        if (h.opcode >= 8) return h.fin && h.length <= 125;
        if (h.opcode != kCont) c->message_pinged = false;
        if (fragment == 0 || h.length == 0) {
            uint8_t hd[14];
            c->out.append(hd,
                          write_header(hd, uint8_t((h.fin ? 0x80 : 0) | (h.rsv << 4) | h.opcode),
                                       h.length, nullptr));
        }
        return true;
    }
    bool payload(const uint8_t* p, size_t n) {
        if (c->cur.opcode >= 8) {
            mask_copy(c->control + c->control_len, p, n, c->cur.mask, c->pos);
            c->control_len += n;
            c->pos += n;
            return true;
        }
        while (n > 0) {
            if (fragment > 0 && c->piece_left == 0) start_piece();
            size_t take = fragment > 0 ? size_t(std::min<uint64_t>(n, c->piece_left)) : n;
            mask_copy(c->out.grow(take), p, take, c->cur.mask, c->pos);
            c->pos += take;
            p += take;
            n -= take;
            if (fragment > 0) {
                c->piece_left -= take;
                if (c->piece_left == 0 && c->pos < c->cur.length && !c->message_pinged) {
                    append_frame(c->out, 0x80 | kPing, reinterpret_cast<const uint8_t*>("wsload"),
                                 6, false);
                    c->message_pinged = true;
                }
            }
        }
        return true;
    }
    void start_piece() {
        uint64_t left = c->cur.length - c->pos;
        uint64_t size = std::min<uint64_t>(fragment, left);
        uint8_t op = c->first_piece ? c->cur.opcode : uint8_t(kCont);
        bool fin = c->cur.fin && size == left;
        uint8_t hd[14];
        uint8_t rsv = c->first_piece ? uint8_t(c->cur.rsv << 4) : 0;
        c->out.append(hd, write_header(hd, uint8_t((fin ? 0x80 : 0) | rsv | op), size, nullptr));
        c->first_piece = false;
        c->piece_left = size;
    }
    bool end() {
        if (c->cur.opcode == kPing)
            append_frame(c->out, 0x80 | kPong, c->control, c->control_len, false);
        if (c->cur.opcode == kClose) {
            append_frame(c->out, 0x80 | kClose, c->control, std::min<size_t>(c->control_len, 2),
                         false);
            c->closing = true;
            return false;
        }
        return true;
    }
};

int serve(int port, size_t fragment) {
    static Server srv;
    srv.fragment = fragment;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(uint16_t(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(lfd, 4096) != 0)
        die(std::string("bind/listen: ") + strerror(errno));
    epfd = epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = UINT64_MAX;
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    fprintf(stderr, "wsload: echo server on 127.0.0.1:%d%s\n", port,
            fragment ? " (echoes re-fragmented)" : "");
    auto set = [](ServerConn& s, uint32_t events) {
        if (s.interest == events) return;
        epoll_event e{};
        e.events = events;
        e.data.u64 = (uint64_t(s.gen) << 32) | uint64_t(&s - srv.conns.data());
        epoll_ctl(epfd, s.interest == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, s.fd, &e);
        s.interest = events;
    };
    auto drop = [](ServerConn& s) {
        close(s.fd);
        uint32_t gen = s.gen + 1;  // stale events of this slot are ignored
        s = ServerConn();
        s.gen = gen;
        srv.free_slots.push_back(size_t(&s - srv.conns.data()));
    };
    srv.conns.reserve(65536);  // slots are never moved: events carry their index
    std::vector<epoll_event> events(1024);
    for (;;) {
        int n = epoll_wait(epfd, events.data(), int(events.size()), -1);
        if (n < 0 && errno != EINTR) die(std::string("epoll_wait: ") + strerror(errno));
        for (int i = 0; i < n; i++) {
            uint64_t data = events[size_t(i)].data.u64;
            if (data == UINT64_MAX) {
                for (;;) {
                    int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    size_t slot;
                    if (!srv.free_slots.empty()) {
                        slot = srv.free_slots.back();
                        srv.free_slots.pop_back();
                    } else {
                        if (srv.conns.size() == srv.conns.capacity()) die("too many connections");
                        slot = srv.conns.size();
                        srv.conns.emplace_back();
                    }
                    srv.conns[slot].fd = fd;
                    set(srv.conns[slot], EPOLLIN);
                }
                continue;
            }
            ServerConn& s = srv.conns[data & 0xffffffffu];
            if (s.fd < 0 || uint32_t(data >> 32) != s.gen) continue;
            bool alive = true;
            if (events[size_t(i)].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t got = recv(s.fd, srv.scratch, sizeof srv.scratch, 0);
                if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
                    drop(s);
                    continue;
                }
                const uint8_t* p = srv.scratch;
                size_t len = got > 0 ? size_t(got) : 0;
                if (!s.upgraded && len > 0) {
                    size_t before = s.head.size();
                    s.head.append(reinterpret_cast<const char*>(p), len);
                    size_t end = s.head.find("\r\n\r\n");
                    if (end == std::string::npos) {
                        len = 0;
                    } else {
                        std::string key =
                            header_value(s.head.substr(0, end + 2), "Sec-WebSocket-Key");
                        std::string resp;
                        if (key.empty()) {
                            resp =
                                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                "Content-Length: 13\r\nConnection: close\r\n\r\nHello, world!";
                            s.closing = true;
                        } else {
                            resp =
                                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                "Connection: Upgrade\r\nSec-WebSocket-Accept: " +
                                accept_for(key) + "\r\nServer: wsload-echo\r\n\r\n";
                            s.upgraded = true;
                        }
                        s.out.append(resp.data(), resp.size());
                        p += end + 4 - before;
                        len -= end + 4 - before;
                    }
                }
                if (s.upgraded && len > 0 && !s.closing) {
                    srv.c = &s;
                    if (!s.reader.feed(p, len, srv) && !s.closing) alive = false;
                }
            }
            if (!alive) {
                drop(s);
                continue;
            }
            while (s.out.pending() > 0) {
                ssize_t w = send(s.fd, s.out.data + s.out.off, s.out.pending(), MSG_NOSIGNAL);
                if (w > 0) {
                    s.out.sent(size_t(w));
                } else if (w < 0 && errno == EINTR) {
                    continue;
                } else {
                    if (w < 0 && errno != EAGAIN) alive = false;
                    break;
                }
            }
            if (!alive || (s.closing && s.out.pending() == 0)) {
                drop(s);
                continue;
            }
            // Backpressure: with 8 MiB unsent, stop reading until the client catches up.
            uint32_t want = s.out.pending() > 0 ? uint32_t(EPOLLOUT) : 0u;
            if (s.out.pending() < (8u << 20) && !s.closing) want |= EPOLLIN;
            set(s, want);
        }
    }
}

// ------------------------------------------------------------------------------- self-test

struct Recorder final : MessageSink {
    std::string log;
    void on_message(uint8_t opcode, bool compressed, uint64_t size, uint32_t frames,
                    bool matched) override {
        log += "msg " + std::to_string(opcode) + (compressed ? "z" : "") + " " +
               std::to_string(size) + " in " + std::to_string(frames) +
               (matched ? " ok; " : " differs; ");
    }
    void on_control(uint8_t opcode, const uint8_t* payload, size_t n) override {
        log += "ctl " + std::to_string(opcode) + " " +
               std::string(reinterpret_cast<const char*>(payload), n) + "; ";
    }
};

void check(bool ok, const std::string& what) {
    if (!ok) die("self-test failed: " + what);
}

int self_test() {
    // RFC 6455 section 1.3's example.
    check(accept_for("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "accept key");
    // mask_copy against the byte-at-a-time definition, at every offset and length.
    const uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    for (size_t n = 0; n < 40; n++) {
        for (uint64_t off = 0; off < 8; off++) {
            uint8_t src[40], dst[40];
            for (size_t i = 0; i < n; i++)
                src[i] = uint8_t(i * 7 + 1);
            mask_copy(dst, src, n, key, off);
            for (size_t i = 0; i < n; i++)
                check(dst[i] == (src[i] ^ key[(off + i) & 3]), "mask_copy");
        }
    }
    // A stream as a server may send it: a text message in three fragments with a ping between
    // them, lengths in 7, 16 and 64 bits, an empty message, then a close.
    std::vector<uint8_t> expect(70000);
    for (size_t i = 0; i < expect.size(); i++)
        expect[i] = uint8_t('a' + i % 26);
    Buffer s;
    append_frame(s, kText, expect.data(), 3, false);
    append_frame(s, 0x80 | kPing, reinterpret_cast<const uint8_t*>("p1"), 2, false);
    append_frame(s, kCont, expect.data() + 3, 300, false);
    append_frame(s, 0x80 | kCont, expect.data() + 303, 69697, false);
    append_frame(s, 0x80 | kBinary, expect.data(), 70000, false);
    append_frame(s, 0x80 | kText, expect.data(), 0, false);
    append_frame(s, 0x80 | kText, expect.data(), 5, false);
    append_frame(s, 0x80 | kClose, reinterpret_cast<const uint8_t*>("\x03\xe8"), 2, false);
    auto run = [&](const std::vector<size_t>& cuts) {
        Receiver rx;
        rx.reset(false);
        rx.expect(expect.data(), expect.size());
        Recorder rec;
        size_t at = 0;
        for (size_t cut : cuts) {
            check(rx.feed(s.data + at, cut - at, rec), "feed at " + std::to_string(cut));
            at = cut;
        }
        check(rx.feed(s.data + at, s.size - at, rec), "feed the rest");
        return rec.log;
    };
    std::string whole = run({});
    const std::string want =
        "ctl 9 p1; msg 1 70000 in 3 ok; msg 2 70000 in 1 ok; msg 1 0 in 1 differs; "
        "msg 1 5 in 1 differs; ctl 8 \x03\xe8; ";
    check(whole == want, "the whole stream: " + whole);
    for (size_t cut = 1; cut < s.size; cut++)
        check(run({cut}) == want, "split at " + std::to_string(cut));
    std::vector<size_t> bytes;
    for (size_t i = 1; i < 400; i++)
        bytes.push_back(i);  // byte by byte through the first frames
    check(run(bytes) == want, "byte by byte");
    // What a client must refuse.
    auto refuses = [](std::vector<uint8_t> frame, bool deflate) {
        Receiver rx;
        rx.reset(deflate);
        Recorder rec;
        return !rx.feed(frame.data(), frame.size(), rec);
    };
    check(refuses({0x80 | kText, 0x81, 1, 2, 3, 4, 'x'}, false), "a masked frame");
    check(refuses({0x80 | kCont, 0}, false), "a lone continuation");
    check(refuses({0x00 | kText, 0, 0x80 | kBinary, 0}, false), "a message inside a message");
    check(refuses({0x00 | kPing, 0}, false), "a fragmented ping");
    check(refuses({0x80 | 0x40 | kText, 0}, false), "RSV1 without deflate");
    check(!refuses({0x80 | 0x40 | kText, 0}, true), "RSV1 with deflate");
    check(refuses({0x80 | 3, 0}, false), "a reserved opcode");
    fprintf(stderr, "wsload: self-test ok (%zu split points)\n", s.size);
    return 0;
}

// ------------------------------------------------------------------------------- main

void usage() {
    fprintf(stderr,
            "usage: wsload [--mode echo|large|idle] -c CONNECTIONS -d SECONDS [--size BYTES] "
            "[--text|--binary] [--deflate] [--messages N] [--timeout S] [--parallel N] "
            "[--hold S] ws://127.0.0.1:PORT/PATH\n"
            "       wsload --serve PORT [--fragment BYTES]\n"
            "       wsload --self-test\n");
}

int parse_and_run(int argc, char** argv) {
    std::string url;
    int serve_port = 0;
    size_t fragment = 0;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) die("missing value after " + a);
            return argv[++i];
        };
        if (a == "-c") {
            opt.connections = atoi(value().c_str());
        } else if (a == "-d") {
            opt.duration_s = atof(value().c_str());
        } else if (a == "--mode") {
            opt.mode = value();
        } else if (a == "--size") {
            opt.size = size_t(atol(value().c_str()));
        } else if (a == "--text") {
            opt.binary = 0;
        } else if (a == "--binary") {
            opt.binary = 1;
        } else if (a == "--deflate") {
            opt.deflate = true;
        } else if (a == "--messages") {
            opt.messages = atol(value().c_str());
        } else if (a == "--timeout") {
            opt.timeout_s = atof(value().c_str());
        } else if (a == "--parallel") {
            opt.parallel = atoi(value().c_str());
        } else if (a == "--hold") {
            opt.hold_s = atof(value().c_str());
        } else if (a == "--serve") {
            serve_port = atoi(value().c_str());
        } else if (a == "--fragment") {
            fragment = size_t(atol(value().c_str()));
        } else if (a == "--self-test") {
            return self_test();
        } else if (a == "-h" || a == "--help") {
            usage();
            return 0;
        } else if (a.rfind("ws://", 0) == 0) {
            url = a.substr(5);
        } else {
            usage();
            die("unknown argument " + a);
        }
    }
    if (serve_port > 0) return serve(serve_port, fragment);
    if (url.empty()) die("no ws:// URL given");
    size_t slash = url.find('/');
    std::string hostport = url.substr(0, slash);
    opt.path = slash == std::string::npos ? "/" : url.substr(slash);
    size_t colon = hostport.rfind(':');
    opt.host = hostport.substr(0, colon);
    if (colon != std::string::npos) opt.port = atoi(hostport.c_str() + colon + 1);
    if (opt.mode != "echo" && opt.mode != "large" && opt.mode != "idle") die("unknown --mode");
    if (opt.connections < 1 || opt.duration_s <= 0 || opt.parallel < 1)
        die("-c, -d and --parallel must be positive");
    if (opt.deflate && opt.mode != "idle") die("--deflate is for --mode idle only");
    if (opt.mode == "idle" && opt.messages < 0) opt.messages = 1;
    bool large = opt.mode == "large";
    size_t size = opt.size > 0 ? opt.size : large ? 1024 * 1024 : 32;
    message_opcode = (opt.binary < 0 ? large : opt.binary == 1) ? kBinary : kText;
    message.resize(size);
    for (size_t i = 0; i < size; i++)
        message[i] = uint8_t('a' + (i * 7) % 26);  // valid UTF-8

    rlimit nofile{};
    getrlimit(RLIMIT_NOFILE, &nofile);
    rlim_t want = rlim_t(opt.connections) + 64;
    if (nofile.rlim_cur < want) {
        nofile.rlim_cur = want;
        if (nofile.rlim_max < want) nofile.rlim_max = want;
        if (setrlimit(RLIMIT_NOFILE, &nofile) != 0) die("cannot raise RLIMIT_NOFILE");
    }
    target.sin_family = AF_INET;
    target.sin_port = htons(uint16_t(opt.port));
    if (inet_pton(AF_INET, opt.host.c_str(), &target.sin_addr) != 1)
        die("host must be an IPv4 address: " + opt.host);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    return run_load();
}

}  // namespace

int main(int argc, char** argv) {
    signal(SIGPIPE, SIG_IGN);
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    rng_state ^= uint64_t(ts.tv_nsec) * 0x9E3779B97F4A7C15ULL ^ uint64_t(getpid()) << 32;
    if (rng_state == 0) rng_state = 1;
    return parse_and_run(argc, argv);
}
