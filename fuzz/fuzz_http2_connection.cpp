// fuzz_http2_connection — libFuzzer target: a whole http2::connection over an in-memory socket,
// with a client whose bytes come from the input, an app that answers through http::exchange the
// way the bridges do, and an owner (timers, admission, graceful stop, a client that reads slowly)
// whose moves come from the input too. The client connection preface (the 24-byte magic) is always
// sent first by the target, so the fuzzer explores frames, not the magic.
//
// Input layout: two control bytes, then steps.
//   byte 0: limits. bit 0: small flow-control windows and body budget; bit 1: a small header
//           list limit; bit 2: max_concurrent_streams 3; bit 3: reset_burst 4; bit 4: small water
//           marks; bit 5: the magic comes as the HTTP/1.1 leftover; bit 6: an internal-only
//           listener; bit 7: read_chunk 7 bytes
//   byte 1: seed of the owner's and the app's own choices (admission refusals, auto-take);
//           bit 7: WebSocket over HTTP/2 on (RFC 8441; bits 3-6 pick its limits and keepalive)
//   steps: an op byte (kind = op & 0x1f, p = op >> 5), then the op's arguments:
//     client bytes: 0 raw (n byte, bytes), 1 raw (n u16, bytes), 2 any frame (type, flags,
//       stream, length, payload), 3 a request HEADERS built with HPACK (optionally split over
//       CONTINUATION), 4 DATA, 5 RST_STREAM, 6 WINDOW_UPDATE, 7 SETTINGS, 8 PING, 9 PRIORITY,
//       10 GOAWAY, 11 CONTINUATION, 24 DATA carrying masked WebSocket frames; `p` says how the
//       bytes are cut into reads (request HEADERS may be extended CONNECTs for a WebSocket)
//     app: 12 respond (head and body; a WebSocket is accepted or denied), 13 more body, 14 take
//       the body, 15 trailers, 16 abort, 17 send_file, 23 want_body, 25 ws_send, 26 ws_close,
//       27 take messages
//     owner: 18 fire a timer (the tick too), 19 the client's receive window (blocked, some bytes,
//     all), 20
//       begin_shutdown, 21 the clock moves, 22 EOF / hangup / reset
// After the input: the client reads everything, the app completes what it can, and the client
// leaves (EOF); the connection is destroyed as the server would.
//
// Checks, after every step (FUZZ_CHECK aborts; ASan/UBSan/LSan beyond):
// - the server's output is well-formed HTTP/2: SETTINGS first; known frame types only, no
//   PUSH_PROMISE or PRIORITY; no padding; DATA within 16384; header blocks contiguous (HEADERS,
//   then CONTINUATION on the same stream until END_HEADERS), and they decode with an HPACK
//   decoder kept in step; a response block starts with one valid :status and has no other
//   pseudo-header, lowercase token names, no connection-specific field, values without CTL or
//   surrounding whitespace; at most a response and a trailer block (with END_STREAM, no
//   pseudo-header) per stream; no DATA before the response or after END_STREAM or RST_STREAM;
//   GOAWAY's last stream id never increases, and no response starts on a stream above it;
// - the body bytes on each app stream are a prefix of what the app sent (send, send_file),
//   exactly it at END_STREAM, and nothing for HEAD, 204 and 304;
// - bounded: the output grows at most 16 bytes per client byte plus twice what the app gave it;
//   the request body held in live exchanges stays within body_budget plus one connection
//   window, and within one stream window per exchange; open streams within
//   max_concurrent_streams;
// - owner contract: admissions and request_finished matched (one finish per admitted request,
//   never more); one on_closed, after the transport closed and with every timer disarmed; a
//   write-blocked connection has its write timer armed; an open connection's read timer is the
//   preface one before the client's SETTINGS, then idle exactly when no stream is open;
// - exchange contract: ev_request first and once, with a method, a target and version "2";
//   nothing after the ev_disconnect that detached it; `cancelled` only with ev_disconnect; send
//   answers error only for the app's deliberate mistakes, closed once detached; when the
//   connection has closed, every exchange is detached, and one whose response did not complete
//   (or that became a WebSocket) got exactly one ev_disconnect;
// - WebSocket: only an extended CONNECT the engine checked becomes a websocket exchange; accept
//   answers wait and ev_drain completes it; ev_message only after that, within max_queue
//   messages of at most max_message bytes; ws_send answers closed after ws_close;
// - the run settles (no livelock).
#include <nghttp2/nghttp2.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "http/exchange.hpp"
#include "http2/connection.hpp"
#include "ws/connection.hpp"
#include "ws/handshake.hpp"

using namespace coachwhip_fuzz;
namespace core = coachwhip::core;
namespace http = coachwhip::http;
namespace http2 = coachwhip::http2;

namespace {

using timer_kind = http2::connection_owner::timer_kind;
using h2state = http2::connection::state;
using http::send_status;

constexpr int k_max_rounds = 20000;
constexpr size_t k_app_budget = 4 << 20;  // app bytes per run (keeps a run fast)
constexpr size_t k_file_size = 256 * 1024;

struct reader {
    std::string_view data;
    size_t pos = 0;
    bool done() const { return pos >= data.size(); }
    uint8_t byte() { return pos < data.size() ? static_cast<uint8_t>(data[pos++]) : 0; }
    uint16_t u16() {
        const uint16_t hi = byte();
        return static_cast<uint16_t>(hi << 8 | byte());
    }
    uint32_t u32() {
        const uint32_t hi = u16();
        return hi << 16 | u16();
    }
    std::string_view bytes(size_t n) {
        n = std::min(n, data.size() - std::min(pos, data.size()));
        const std::string_view v = data.substr(pos, n);
        pos += n;
        return v;
    }
};

// ---- the client's socket ----------------------------------------------------------------------

struct client_transport final : core::transport {
    std::string input;
    size_t pos = 0;
    bool eof = false;
    std::string output;
    size_t budget = SIZE_MAX;  // the client's receive window
    bool reset = false;
    bool closed = false, aborted = false;

    ssize_t read(char* buf, size_t len) override {
        FUZZ_CHECK(!closed && len > 0);
        if (reset) return -ECONNRESET;
        if (pos < input.size()) {
            const size_t n = std::min(len, input.size() - pos);
            std::memcpy(buf, input.data() + pos, n);
            pos += n;
            return static_cast<ssize_t>(n);
        }
        return eof ? 0 : -EAGAIN;
    }
    ssize_t writev(const iovec* iov, int n, bool) override {
        FUZZ_CHECK(!closed);
        FUZZ_CHECK(n > 0 && n <= IOV_MAX);
        if (reset) return -EPIPE;
        if (budget == 0) return -EAGAIN;
        size_t written = 0;
        for (int i = 0; i < n && budget > 0; ++i) {
            const size_t take = std::min(iov[i].iov_len, budget);
            output.append(static_cast<const char*>(iov[i].iov_base), take);
            if (budget != SIZE_MAX) budget -= take;
            written += take;
        }
        return static_cast<ssize_t>(written);
    }
    void shutdown_write() override { FUZZ_CHECK(!"HTTP/2 never half-closes"); }
    void close() override {
        FUZZ_CHECK(!closed);
        closed = true;
    }
    void abort() override {
        aborted = true;
        close();
    }
};

// ---- the client's frames ----------------------------------------------------------------------

std::string frame_header(size_t len, uint8_t type, uint8_t flags, uint32_t stream) {
    std::string h(9, '\0');
    h[0] = static_cast<char>(len >> 16);
    h[1] = static_cast<char>(len >> 8);
    h[2] = static_cast<char>(len);
    h[3] = static_cast<char>(type);
    h[4] = static_cast<char>(flags);
    for (int i = 0; i < 4; ++i)
        h[5 + i] = static_cast<char>(stream >> (24 - 8 * i));
    return h;
}
std::string frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
    return frame_header(payload.size(), type, flags, stream) + std::string(payload);
}
std::string be32(uint32_t v) {
    return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
            static_cast<char>(v)};
}

// HPACK (RFC 7541 §5.1) integer with an N-bit prefix.
void hpack_int(std::string& out, uint32_t v, int bits, uint8_t first) {
    const uint32_t max = (1u << bits) - 1;
    if (v < max) {
        out += static_cast<char>(first | v);
        return;
    }
    out += static_cast<char>(first | max);
    v -= max;
    while (v >= 128) {
        out += static_cast<char>(0x80 | (v & 0x7f));
        v >>= 7;
    }
    out += static_cast<char>(v);
}
void hpack_string(std::string& out, std::string_view s) {
    hpack_int(out, static_cast<uint32_t>(s.size()), 7, 0);
    out.append(s);
}
// A literal field: `index` (incremental indexing, 0x40) or not (0x00; 0x10 never indexed).
void hpack_literal(std::string& out, std::string_view name, std::string_view value, uint8_t kind) {
    out += static_cast<char>(kind);
    hpack_string(out, name);
    hpack_string(out, value);
}

// ---- the server's output, checked as a client reads it ----------------------------------------

bool tchar_lower(unsigned char c) {
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
    return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != 0;
}
bool valid_value(std::string_view v) {
    for (unsigned char c : v)
        if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
    return v.empty() ||
           (v.front() != ' ' && v.front() != '\t' && v.back() != ' ' && v.back() != '\t');
}
bool connection_specific(std::string_view n) {
    return n == "connection" || n == "keep-alive" || n == "proxy-connection" ||
           n == "transfer-encoding" || n == "upgrade";
}

bool trace_on() {
    static const bool on = std::getenv("FUZZ_TRACE") != nullptr;
    return on;
}

struct output_checker {
    struct stream_out {
        int blocks = 0;  // header blocks: the response, then trailers
        int status = 0;
        bool ended = false, reset = false;
        std::string data;
    };
    size_t pos = 0;
    bool first = true;
    nghttp2_hd_inflater* inf = nullptr;
    std::string block;
    uint32_t block_stream = 0;
    bool in_block = false, block_end_stream = false;
    std::map<uint32_t, stream_out> streams;
    uint32_t goaway_last = 0x7fffffff;
    int goaways = 0;
    std::string trace;  // FUZZ_TRACE: the frames read, "type/stream/flags[/error]"

    output_checker() { FUZZ_CHECK(nghttp2_hd_inflate_new(&inf) == 0); }
    ~output_checker() { nghttp2_hd_inflate_del(inf); }
    output_checker(const output_checker&) = delete;
    output_checker& operator=(const output_checker&) = delete;

    void decode_block(uint32_t id) {
        stream_out& s = streams[id];
        const bool response = s.blocks == 0;
        ++s.blocks;
        FUZZ_CHECK(s.blocks <= 2);  // a response and trailers
        FUZZ_CHECK(!s.ended && !s.reset);
        if (response) FUZZ_CHECK(id <= goaway_last);
        if (!response) FUZZ_CHECK(block_end_stream);  // trailers end the stream
        const auto* in = reinterpret_cast<const uint8_t*>(block.data());
        size_t left = block.size();
        int fields = 0;
        for (;;) {
            nghttp2_nv nv;
            int flags = 0;
            const ssize_t rv = nghttp2_hd_inflate_hd2(inf, &nv, &flags, in, left, 1);
            FUZZ_CHECK(rv >= 0);  // our HPACK encoder's output decodes
            in += rv;
            left -= static_cast<size_t>(rv);
            if (flags & NGHTTP2_HD_INFLATE_EMIT) {
                const std::string_view n(reinterpret_cast<const char*>(nv.name), nv.namelen);
                const std::string_view v(reinterpret_cast<const char*>(nv.value), nv.valuelen);
                if (response && fields == 0) {
                    FUZZ_CHECK(n == ":status" && v.size() == 3);
                    FUZZ_CHECK(v[0] >= '2' && v[0] <= '5' && v[1] >= '0' && v[1] <= '9' &&
                               v[2] >= '0' && v[2] <= '9');
                    s.status = (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0');
                } else {
                    FUZZ_CHECK(!n.empty());
                    for (unsigned char c : n)
                        FUZZ_CHECK(tchar_lower(c));  // no pseudo-header, lowercase
                    FUZZ_CHECK(!connection_specific(n));
                    FUZZ_CHECK(valid_value(v));
                }
                ++fields;
            }
            if (flags & NGHTTP2_HD_INFLATE_FINAL) {
                nghttp2_hd_inflate_end_headers(inf);
                break;
            }
            if (!(flags & NGHTTP2_HD_INFLATE_EMIT) && left == 0) break;
        }
        FUZZ_CHECK(left == 0);
        if (response) FUZZ_CHECK(fields > 0);
        if (block_end_stream) s.ended = true;
        block.clear();
    }

    // Reads the complete frames appended to `out` since the last call.
    void feed(std::string_view out) {
        const auto u = [&](size_t i) { return static_cast<unsigned char>(out[i]); };
        while (out.size() - pos >= 9) {
            const size_t len = size_t{u(pos)} << 16 | size_t{u(pos + 1)} << 8 | u(pos + 2);
            if (out.size() - pos - 9 < len) break;
            const uint8_t type = u(pos + 3), flags = u(pos + 4);
            FUZZ_CHECK(!(u(pos + 5) & 0x80));  // the reserved bit
            const uint32_t id = static_cast<uint32_t>(u(pos + 5)) << 24 |
                                static_cast<uint32_t>(u(pos + 6)) << 16 |
                                static_cast<uint32_t>(u(pos + 7)) << 8 | u(pos + 8);
            const std::string_view payload = out.substr(pos + 9, len);
            pos += 9 + len;
            if (first) FUZZ_CHECK(type == NGHTTP2_SETTINGS && !(flags & NGHTTP2_FLAG_ACK));
            first = false;
            if (in_block) FUZZ_CHECK(type == NGHTTP2_CONTINUATION && id == block_stream);
            if (trace_on()) {
                trace += ' ' + std::to_string(type) + '/' + std::to_string(id) + '/' +
                         std::to_string(flags);
                if ((type == NGHTTP2_RST_STREAM && len == 4) ||
                    (type == NGHTTP2_GOAWAY && len >= 8))
                    trace += "/err" + std::to_string(static_cast<unsigned char>(
                                          payload[type == NGHTTP2_GOAWAY ? 7 : 3]));
            }
            switch (type) {
                case NGHTTP2_DATA: {
                    FUZZ_CHECK(id & 1);
                    FUZZ_CHECK(!(flags & NGHTTP2_FLAG_PADDED) && len <= 16384);
                    stream_out& s = streams[id];
                    FUZZ_CHECK(s.blocks == 1 && !s.ended && !s.reset);
                    s.data.append(payload);
                    if (flags & NGHTTP2_FLAG_END_STREAM) s.ended = true;
                    break;
                }
                case NGHTTP2_HEADERS:
                    FUZZ_CHECK(id & 1);
                    FUZZ_CHECK(!(flags & (NGHTTP2_FLAG_PADDED | NGHTTP2_FLAG_PRIORITY)));
                    block.assign(payload);
                    block_stream = id;
                    block_end_stream = flags & NGHTTP2_FLAG_END_STREAM;
                    in_block = !(flags & NGHTTP2_FLAG_END_HEADERS);
                    if (!in_block) decode_block(id);
                    break;
                case NGHTTP2_CONTINUATION:
                    FUZZ_CHECK(in_block);
                    block.append(payload);
                    in_block = !(flags & NGHTTP2_FLAG_END_HEADERS);
                    if (!in_block) decode_block(id);
                    break;
                case NGHTTP2_RST_STREAM:
                    FUZZ_CHECK(id != 0 && len == 4);
                    streams[id].reset = true;
                    break;
                case NGHTTP2_SETTINGS:
                    FUZZ_CHECK(id == 0 && len % 6 == 0);
                    if (flags & NGHTTP2_FLAG_ACK) FUZZ_CHECK(len == 0);
                    break;
                case NGHTTP2_PING: FUZZ_CHECK(id == 0 && len == 8); break;
                case NGHTTP2_GOAWAY: {
                    FUZZ_CHECK(id == 0 && len >= 8);
                    const uint32_t last =
                        static_cast<uint32_t>(static_cast<unsigned char>(payload[0]) & 0x7f) << 24 |
                        static_cast<uint32_t>(static_cast<unsigned char>(payload[1])) << 16 |
                        static_cast<uint32_t>(static_cast<unsigned char>(payload[2])) << 8 |
                        static_cast<unsigned char>(payload[3]);
                    FUZZ_CHECK(last <= goaway_last);  // RFC 9113 §6.8: never increases
                    goaway_last = last;
                    ++goaways;
                    break;
                }
                case NGHTTP2_WINDOW_UPDATE: FUZZ_CHECK(len == 4); break;
                default: FUZZ_CHECK(!"a frame type the server never sends");
            }
        }
    }
};

// The file send_file() parts come from (a memfd; each call gets a dup, which it owns).
struct shared_file {
    int fd = -1;
    std::string bytes;
    shared_file() {
        bytes.resize(k_file_size);
        for (size_t i = 0; i < bytes.size(); ++i)
            bytes[i] = static_cast<char>('A' + (i * 13 + i / 4093) % 26);
        fd = ::memfd_create("fuzz_http2_file", 0);
        FUZZ_CHECK(fd >= 0);
        FUZZ_CHECK(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
    }
};
const shared_file& file() {
    static const shared_file f;
    return f;
}

// ---- the world: owner, app, client -------------------------------------------------------------

struct app_exchange {
    std::shared_ptr<http::exchange> ex;
    bool started = false, body_done = false, trailers = false, trailers_done = false;
    bool waiting = false, aborted = false, no_body = false, head_request = false;
    int disconnects = 0;
    bool disconnected = false;  // ev_disconnect delivered
    std::string expected;       // the body bytes the client must get
    size_t taken = 0;
    // WebSocket over HTTP/2 (an extended CONNECT the engine checked)
    bool websocket = false, ws_accepting = false, ws_open = false, ws_closed = false;
    size_t messages = 0;
};

struct world final : http2::connection_owner {
    uint8_t limits = 0;
    coachwhip::ws::connection_config ws_cfg;
    coachwhip::ws::deflate_config ws_deflate;
    http2::connection_config cfg;
    client_transport t;
    http::event_queue events;
    std::unique_ptr<http2::connection> conn;
    http2::connection* self = nullptr;
    std::vector<http2::connection*> scheduled;
    timer_kind read_timer = timer_kind::none;
    bool write_timer = false;
    bool tick_timer = false;  // WebSocket tunnels' deadlines
    uint64_t now = 1000;
    int closed_calls = 0;
    int admitted = 0, finished = 0, done = 0;
    rng r;
    bool auto_take = false;
    std::vector<app_exchange> app;
    std::map<http::exchange*, size_t> index;
    output_checker out;
    size_t client_bytes = 0, app_bytes = 0;
    uint32_t next_stream = 1;
    std::vector<uint32_t> opened;  // client stream ids, for DATA/RST/... to pick from

    world(uint8_t lim, uint8_t seed) : limits(lim), r(seed * 0x9E3779B97F4A7C15ull + 7) {
        if (lim & 1) {
            cfg.initial_stream_window = 4096;
            cfg.initial_connection_window = 65535;
            cfg.body_budget = 8192;
        }
        if (lim & 2) cfg.max_header_list = 600;
        if (lim & 4) cfg.max_concurrent_streams = 3;
        if (lim & 8) {
            cfg.reset_burst = 4;
            cfg.reset_rate = 1;
        }
        if (lim & 16) {
            cfg.stream_high_water = 2048;
            cfg.stream_low_water = 512;
            cfg.write_high_water = 1024;
        }
        if (lim & 64) cfg.internal_only = true;
        if (lim & 128) cfg.read_chunk = 7;
        if (seed & 0x80) {  // WebSocket over HTTP/2 (RFC 8441) on
            ws_cfg.max_message = (seed & 0x40) ? 1000 : 70000;
            ws_cfg.max_queue = 1 + (seed & 3);
            ws_cfg.write_high_water = (seed & 0x20) ? 512 : 8192;
            ws_cfg.write_low_water = (seed & 0x20) ? 128 : 2048;
            ws_cfg.read_chunk = (seed & 0x10) ? 9 : 4096;
            ws_cfg.ping_interval_ms = (seed & 8) ? 0 : 1000;
            ws_cfg.ping_timeout_ms = 1000;
            ws_cfg.close_timeout_ms = 1000;
            cfg.ws = &ws_cfg;
            cfg.ws_deflate = &ws_deflate;
            cfg.ws_write_timeout_ms = 2000;
            cfg.ws_max_subprotocols = 4;
        }
        auto_take = r.one_in(2);
    }

    bool closed() const { return closed_calls > 0; }

    // ---- connection_owner ----
    void schedule(http2::connection& c) override {
        FUZZ_CHECK(&c == self);
        if (!c.scheduled) scheduled.push_back(&c);
        c.scheduled = true;
    }
    void arm_timer(http2::connection& c, timer_kind k) override {
        FUZZ_CHECK(&c == self && k != timer_kind::none && !closed());
        if (k == timer_kind::write) {
            write_timer = true;
        } else if (k == timer_kind::tick) {
            FUZZ_CHECK(cfg.ws);
            tick_timer = true;
        } else {
            read_timer = k;
        }
    }
    void disarm_timer(http2::connection& c, timer_kind k) override {
        FUZZ_CHECK(&c == self && k != timer_kind::none);
        if (k == timer_kind::write) {
            write_timer = false;
        } else if (k == timer_kind::tick) {
            tick_timer = false;
        } else {
            read_timer = timer_kind::none;
        }
    }
    uint64_t now_ms() const noexcept override { return now; }
    bool admit_request(http2::connection& c) override {
        FUZZ_CHECK(&c == self && !closed());
        const bool yes = !r.one_in(16);
        admitted += yes;
        return yes;
    }
    void request_finished(http2::connection& c) override {
        FUZZ_CHECK(&c == self);
        ++finished;
        FUZZ_CHECK(finished <= admitted);
    }
    void request_done(http2::connection&, const http::exchange& ex, uint64_t started) override {
        // Detached first; or a WebSocket handed over (no longer a request in flight).
        FUZZ_CHECK(started <= now && (!ex.connected() || ex.websocket));
        ++done;
    }
    void on_closed(http2::connection& c) override {
        FUZZ_CHECK(&c == self && t.closed);
        FUZZ_CHECK(read_timer == timer_kind::none && !write_timer && !tick_timer);
        ++closed_calls;
        FUZZ_CHECK(closed_calls == 1);
    }
    bool internal_response(http2::connection&, std::string_view target,
                           http::internal_reply& reply) override {
        if (target != "/-/health") return false;
        reply.body = "ok\n";
        return true;
    }

    void open(bool as_leftover) {
        const std::string magic(http::h2_client_preface);
        client_bytes += magic.size();
        conn = std::make_unique<http2::connection>(
            t, *this, cfg, events, http::endpoint{"192.0.2.9", 50000, true},
            http::endpoint{"192.0.2.1", 443, true}, nullptr, as_leftover ? magic : std::string());
        self = conn.get();
        if (!as_leftover) t.input = magic;
        conn->start();
        pump();
    }

    // ---- the app ----
    void on_events(const std::shared_ptr<http::exchange>& e, uint8_t ev) {
        if (ev & http::ev_request) {
            FUZZ_CHECK(!index.count(e.get()));
            FUZZ_CHECK(!e->method.empty() && !e->target.empty() && e->http_version == "2");
            FUZZ_CHECK(e->stream_id & 1);
            index[e.get()] = app.size();
            app_exchange a;
            a.ex = e;
            a.head_request = e->method == "HEAD";
            a.websocket = e->websocket;
            if (e->websocket) FUZZ_CHECK(cfg.ws && e->method == "CONNECT");
            app.push_back(std::move(a));
        }
        FUZZ_CHECK(index.count(e.get()));  // ev_request came first
        app_exchange& a = app[index[e.get()]];
        FUZZ_CHECK(!a.disconnected);  // nothing after the detaching disconnect
        if (e->cancelled) FUZZ_CHECK(ev & http::ev_disconnect);
        if (ev & http::ev_drain) {
            a.waiting = false;
            if (a.ws_accepting) a.ws_open = true, a.ws_accepting = false;
        }
        if (ev & http::ev_message) {
            FUZZ_CHECK(a.ws_open && !e->ws_inbox.empty());  // only after the accept's ev_drain
            FUZZ_CHECK(e->ws_inbox.size() <= std::max<size_t>(ws_cfg.max_queue, 1));
            for (const auto& m : e->ws_inbox)
                FUZZ_CHECK(m.data.size() <= ws_cfg.max_message);
        }
        if (ev & http::ev_disconnect) {
            ++a.disconnects;
            a.disconnected = true;
            a.waiting = false;
            FUZZ_CHECK(!e->connected());
        }
        // Per stream, at most one window of body (it reopens only as the app takes).
        FUZZ_CHECK(e->body.size() <= std::max<size_t>(cfg.initial_stream_window, 65535));
        if (auto_take && !e->body.empty() && e->connected()) take(a);
        if (auto_take && !e->ws_inbox.empty() && e->connected()) ws_take(a);
    }
    void ws_take(app_exchange& a) {
        a.messages += a.ex->ws_inbox.size();
        a.ex->ws_inbox.clear();
        a.ex->ws_taken();
    }
    void take(app_exchange& a) {
        a.taken += a.ex->body.size();
        a.ex->body_taken();
    }

    app_exchange* pick(reader& in, bool connected_only = true) {
        std::vector<size_t> live;
        for (size_t i = 0; i < app.size(); ++i)
            if (!connected_only || app[i].ex->connected()) live.push_back(i);
        if (live.empty()) return nullptr;
        return &app[live[in.byte() % live.size()]];
    }

    std::string body_bytes(reader& in, uint8_t p) {
        size_t n = in.byte();
        if (p & 4) n = n * 257 + in.byte();  // up to ~64 KiB
        if (app_bytes + n > k_app_budget) n = 0;
        std::string s(n, '\0');
        const uint8_t salt = in.byte();
        for (size_t i = 0; i < n; ++i)
            s[i] = static_cast<char>('a' + (i + salt) % 23);
        return s;
    }

    // The result of an app call that broke no rule: anything but error.
    static void ok(const http::send_result& res) {
        if (res.status == send_status::error)
            std::fprintf(stderr, "==fuzz== error: %.*s\n", static_cast<int>(res.reason.size()),
                         res.reason.data());
        FUZZ_CHECK(res.status != send_status::error);
    }
    void accepted(app_exchange& a, const http::send_result& res, std::string_view body, bool more) {
        if (res.status == send_status::closed) return;
        if (!a.no_body) a.expected.append(body);
        if (!more) a.body_done = true;
        if (res.status == send_status::wait) a.waiting = true;
    }

    void respond(reader& in, uint8_t p) {
        app_exchange* a = pick(in);
        if (!a || a->started) return;
        if (a->websocket && !(p & 4)) return ws_accept(*a, in.byte());
        static const int statuses[] = {200, 200, 201, 204, 304, 404, 500, 599, 206, 302};
        const int status = statuses[in.byte() % std::size(statuses)];
        const uint8_t shape = in.byte();
        std::vector<http::field> fields;
        if (shape & 1) fields.push_back({"Content-Type", "text/plain; charset=utf-8"});
        if (shape & 2) fields.push_back({"X-Mixed-Case", "Value"});
        if (shape & 4) fields.push_back({"Connection", "keep-alive"});  // dropped
        if (shape & 8) fields.push_back({"server", "app"});
        std::string body = body_bytes(in, p);
        const bool more = p & 1;
        const bool trailers = p & 2;
        std::string cl;
        const uint8_t mistake = in.byte() % 16;
        // An invalid field comes before content-length: a rejected head that declared a
        // content-length keeps it (test_http2's FindingRejectedHeadKeepsContentLength).
        if (mistake == 1) fields.push_back({"bad name", "x"});
        if (mistake == 2) fields.push_back({"x-bad", "a\r\nb"});
        if (mistake == 3) fields.push_back({"content-length", "12a"});
        if (!more && (shape & 16) && mistake != 3) {
            cl = std::to_string(body.size() + (mistake == 0 ? 1 : 0));
            fields.push_back({"content-length", cl});
        }
        app_bytes += body.size() + 128;
        const http::response_sink::head h{mistake == 4 ? 103 : status, fields, {}, trailers};
        const http::send_result res = a->ex->send(&h, body, more);
        if (mistake >= 1 && mistake <= 4) {
            FUZZ_CHECK(res.status == send_status::error || res.status == send_status::closed);
            return;  // nothing was sent: the app may answer again
        }
        if (mistake == 0 && !cl.empty() && !(status == 204 || status == 304 || a->head_request)) {
            // content-length one more than the body: the response is aborted (its body may
            // be framed before the RST_STREAM).
            FUZZ_CHECK(res.status == send_status::error || res.status == send_status::closed);
            a->started = a->body_done = a->aborted = true;
            a->expected.append(body);
            return;
        }
        ok(res);
        if (res.status == send_status::closed) return;
        a->started = true;
        a->no_body = status == 204 || status == 304 || a->head_request;
        a->trailers = trailers && !a->no_body;
        accepted(*a, res, body, more);
    }

    // The app accepts a WebSocket: a subprotocol the client offered or none (or, by mistake, one
    // it did not offer, or a header the handshake owns: error, nothing sent).
    void ws_accept(app_exchange& a, uint8_t how) {
        std::string_view sub;
        if ((how & 1) && !a.ex->ws_subprotocols.empty())
            sub = a.ex->ws_subprotocols[how % a.ex->ws_subprotocols.size()];
        const http::field extra[] = {{"x-ws", "1"}, {"Sec-WebSocket-Accept", "x"}};
        const size_t n = (how & 2) ? 1 : 0;
        const bool mistake = (how & 0x0c) == 0x0c;
        http::send_result res;
        if (mistake && (how & 0x10)) {
            res = a.ex->ws_accept("not-offered-protocol", {});
        } else if (mistake) {
            res = a.ex->ws_accept(sub, std::span<const http::field>(extra + 1, 1));
        } else {
            res = a.ex->ws_accept(sub, std::span<const http::field>(extra, n));
        }
        app_bytes += 128;
        if (mistake) {
            FUZZ_CHECK(res.status == send_status::error || res.status == send_status::closed);
            return;
        }
        ok(res);
        if (res.status == send_status::closed) return;
        FUZZ_CHECK(res.status == send_status::wait);  // ev_drain completes the accept
        a.started = a.body_done = true;
        a.ws_accepting = a.waiting = true;
    }

    void ws_app(uint8_t kind, uint8_t p, reader& in) {
        app_exchange* a = pick(in);
        if (!a || !a->ws_open) return;
        switch (kind) {
            case 25: {
                if (a->waiting || a->ws_closed) return;
                size_t n = in.byte();
                if (p & 4) n = n * 257 + in.byte();
                if (app_bytes + n > k_app_budget) n = 0;
                const bool text = p & 1;
                std::string m(n, 'm');
                for (size_t i = 0; i < n; ++i)
                    m[i] = static_cast<char>('a' + (i * 5 + n) % 26);
                app_bytes += n + 16;
                const http::send_result res = a->ex->ws_send(text, m);
                ok(res);
                if (res.status == send_status::wait) a->waiting = true;
                break;
            }
            case 26: {
                static const uint16_t codes[] = {1000, 1001, 1011, 3000, 4999};
                const uint16_t code = codes[in.byte() % std::size(codes)];
                std::string reason(in.byte() % 130, 'r');
                app_bytes += 160;
                a->ex->ws_close(code, reason);
                a->ws_closed = true;
                FUZZ_CHECK(a->ex->ws_send(true, "x").status == send_status::closed);
                break;
            }
            default: ws_take(*a); break;
        }
    }

    void more_body(reader& in, uint8_t p) {
        app_exchange* a = pick(in);
        if (!a || !a->started || a->body_done || a->waiting || a->aborted) return;
        std::string body = body_bytes(in, p);
        app_bytes += body.size() + 32;
        const bool more = p & 1;
        const http::send_result res = a->ex->send(nullptr, body, more);
        ok(res);
        accepted(*a, res, body, more);
    }

    void send_file(reader& in, uint8_t p) {
        app_exchange* a = pick(in);
        if (!a || a->body_done || a->waiting || a->aborted) return;
        const uint64_t off = in.u16() % k_file_size;
        uint64_t len = in.byte();
        if (p & 4) len = len * 257 + in.byte();
        len = std::min<uint64_t>(len, k_file_size - off);
        if (app_bytes + len > k_app_budget) len = 0;
        const bool more = p & 1;
        app_bytes += len + 128;
        const int fd = ::dup(file().fd);
        FUZZ_CHECK(fd >= 0);
        const bool start = !a->started;
        const http::response_sink::head h{200, {}, {}, (p & 2) != 0};
        const http::send_result res = a->ex->send_file(start ? &h : nullptr, fd, off, len, more);
        ok(res);
        if (res.status == send_status::closed) return;
        if (start) {
            a->started = true;
            a->no_body = a->head_request;
            a->trailers = (p & 2) && !a->no_body;
        }
        accepted(*a, res, std::string_view(file().bytes).substr(off, len), more);
    }

    void trailers(reader& in, uint8_t p) {
        app_exchange* a = pick(in);
        if (!a || !a->trailers || !a->body_done || a->trailers_done || a->aborted) return;
        static const http::field fields[] = {{"grpc-status", "0"},
                                             {"Grpc-Message", "fine"},
                                             {"x-checksum", "abc"},
                                             {"server-timing", "db;dur=53"}};
        const size_t n = in.byte() % (std::size(fields) + 1);
        app_bytes += 128;
        if (p & 4) {  // an invalid value: error, nothing kept
            const http::field bad[] = {{"x-bad", "a\nb"}};
            const http::send_result res = a->ex->send_trailers(bad, false);
            FUZZ_CHECK(res.status == send_status::error || res.status == send_status::closed);
            return;
        }
        const bool more = p & 1;
        const http::send_result res =
            a->ex->send_trailers(std::span<const http::field>(fields, n), more);
        ok(res);
        if (res.status != send_status::closed && !more) a->trailers_done = true;
    }

    void abort_one(reader& in) {
        app_exchange* a = pick(in);
        if (!a) return;
        a->aborted = true;
        a->ex->abort();
    }

    // ---- the loop ----
    void pump() {
        for (int round = 0; round < k_max_rounds; ++round) {
            bool busy = false;
            for (auto& e : events.take()) {
                busy = true;
                on_events(e, e->take_events());
            }
            for (auto* c : std::exchange(scheduled, {})) {
                busy = true;
                c->scheduled = false;
                if (!closed()) c->process();
            }
            if (!busy) {
                check_step();
                return;
            }
        }
        invariant_failed("connection and app did not settle (livelock)", __FILE__, __LINE__);
    }

    void check_step() {
        out.feed(t.output);
        // Bodies on the wire: a prefix of what the app gave, all of it at END_STREAM.
        for (const app_exchange& a : app) {
            if (a.websocket && !a.started) continue;
            if (a.ws_accepting || a.ws_open) continue;  // DATA is WebSocket frames
            auto it = out.streams.find(a.ex->stream_id);
            if (it == out.streams.end()) continue;
            const auto& s = it->second;
            if (a.no_body) FUZZ_CHECK(s.data.empty());
            FUZZ_CHECK(s.data.size() <= a.expected.size() &&
                       a.expected.compare(0, s.data.size(), s.data) == 0);
            if (s.ended && !a.aborted) FUZZ_CHECK(s.data.size() == a.expected.size());
        }
        FUZZ_CHECK(t.output.size() <= 16 * client_bytes + 2 * app_bytes + 4096);
        size_t held = 0;
        for (const app_exchange& a : app)
            if (a.ex->connected()) held += a.ex->body.size();
        FUZZ_CHECK(held <=
                   cfg.body_budget + std::max<size_t>(cfg.initial_connection_window, 65535));
        FUZZ_CHECK(static_cast<int>(app.size()) == admitted);
        if (closed()) {
            for (const app_exchange& a : app)
                FUZZ_CHECK(!a.ex->connected());
            FUZZ_CHECK(finished == admitted && done == finished);
            return;
        }
        FUZZ_CHECK(conn->open_streams() <= cfg.max_concurrent_streams);
        if (conn->write_blocked()) FUZZ_CHECK(write_timer);
        if (conn->current_state() == h2state::open) {
            if (conn->open_streams() > 0)
                FUZZ_CHECK(read_timer == timer_kind::none);
            else
                FUZZ_CHECK(read_timer == timer_kind::idle || read_timer == timer_kind::preface);
        }
    }

    // Client bytes, cut into reads as `p` says.
    void send(std::string_view bytes, uint8_t p) {
        if (closed() || bytes.empty()) return;
        client_bytes += bytes.size();
        size_t piece = bytes.size();
        if (p == 1) piece = 1;
        if (p == 2) piece = 5;
        if (p == 3) piece = 9;
        if (p >= 4) piece = 1 + r.next() % 64;
        while (!bytes.empty() && !closed()) {
            const size_t n = std::min(piece, bytes.size());
            t.input.append(bytes.substr(0, n));
            bytes.remove_prefix(n);
            conn->on_readable(r.one_in(4));
            pump();
        }
    }

    uint32_t pick_stream(reader& in) {
        const uint8_t b = in.byte();
        if (b >= 0xf0 || opened.empty()) return b & 0x0f;  // 0, idle or even ids
        return opened[b % opened.size()];
    }

    // An extended CONNECT (RFC 8441 §4): :protocol websocket, the version, maybe subprotocols and a
    // permessage-deflate offer; the bits of `shape` leave out or break one part or another.
    std::string ws_block(reader& in, uint8_t shape) {
        std::string blk;
        hpack_literal(blk, ":method", "CONNECT", 0x00);
        if (!(shape & 1)) hpack_literal(blk, ":protocol", (shape & 2) ? "websocket" : "h2c", 0x00);
        if (!(shape & 4)) blk += static_cast<char>(0x87);  // :scheme https
        if (!(shape & 8)) hpack_literal(blk, ":path", "/ws", 0x00);
        hpack_literal(blk, ":authority", "example.com", 0x40);
        const uint8_t more = in.byte();
        if (!(more & 1)) hpack_literal(blk, "sec-websocket-version", (more & 2) ? "8" : "13", 0x00);
        if (more & 4) hpack_literal(blk, "sec-websocket-protocol", "chat, superchat", 0x00);
        if (more & 8) {
            static const char* const offers[] = {
                "permessage-deflate", "permessage-deflate; client_max_window_bits",
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
                "permessage-deflate; server_max_window_bits=7"};
            hpack_literal(blk, "sec-websocket-extensions", offers[(more >> 4) & 3], 0x00);
        }
        return blk;
    }

    std::string request_block(reader& in, bool& end_stream) {
        const uint8_t shape = in.byte();
        if (shape & 0x80) {
            end_stream = false;
            return ws_block(in, shape);
        }
        std::string blk;
        static const uint8_t methods[] = {0x82, 0x83, 0x82, 0x83};  // GET, POST (static table)
        const int m = shape & 7;
        if (m < 4) {
            blk += static_cast<char>(methods[m]);
        } else {
            static const char* const names[] = {"HEAD", "CONNECT", "PUT", "OPTIONS"};
            hpack_literal(blk, ":method", names[m - 4], 0x00);
        }
        if (!(shape & 8)) blk += static_cast<char>((shape & 16) ? 0x87 : 0x86);  // :scheme
        const uint8_t path = in.byte();
        if (path % 4 == 0) {
            blk += static_cast<char>(0x84);  // :path /
        } else if (path % 4 == 1) {
            hpack_literal(blk, ":path", "/-/health", 0x00);
        } else {
            hpack_literal(blk, ":path", "/p/" + std::to_string(path), path & 0x80 ? 0x40 : 0x00);
        }
        if (!(shape & 32)) hpack_literal(blk, ":authority", "example.com", 0x40);
        const int extra = in.byte() % 8;
        for (int i = 0; i < extra; ++i) {
            const uint8_t k = in.byte();
            switch (k % 8) {
                case 0: hpack_literal(blk, "cookie", "c=" + std::to_string(k), 0x40); break;
                case 1: hpack_literal(blk, "host", "example.com", 0x00); break;
                case 2: blk += static_cast<char>(0xbe); break;  // dynamic table, index 62
                case 3:
                    hpack_literal(blk, "x-big", std::string(size_t{in.byte()} * 16, 'v'), 0x00);
                    break;
                case 4:
                    hpack_literal(blk, "content-length", std::to_string(in.byte()), 0x00);
                    break;
                case 5: hpack_literal(blk, "te", "trailers", 0x00); break;
                case 6: blk += static_cast<char>(0x20 | (in.byte() & 0x1f)); break;  // table size
                default: {
                    const std::string_view raw = in.bytes(in.byte() % 16);
                    blk.append(raw);
                }
            }
        }
        end_stream = shape & 64;
        return blk;
    }

    // Masked client WebSocket frames (RFC 6455 §5.2) in one DATA frame.
    std::string ws_frames(reader& in) {
        std::string out;
        const int count = 1 + in.byte() % 4;
        for (int i = 0; i < count; ++i) {
            const uint8_t b0 = in.byte();
            static const uint8_t ops[] = {0x81, 0x82, 0x01, 0x80, 0x89, 0x8a, 0x88, 0xc1};
            size_t n = in.byte();
            if (b0 & 0x80) n = n * 64;
            std::string payload(n, '\0');
            for (size_t k = 0; k < n; ++k)
                payload[k] = static_cast<char>('a' + k % 26);
            const uint8_t op = ops[b0 % std::size(ops)];
            if (op == 0x88 && n >= 2) payload[0] = 0x03, payload[1] = static_cast<char>(0xe8);
            if (op >= 0x88) payload.resize(std::min<size_t>(payload.size(), 125));
            out += static_cast<char>(op);
            const size_t len = payload.size();
            if (len <= 125) {
                out += static_cast<char>(0x80 | len);
            } else {
                out += static_cast<char>(0x80 | 126);
                out += static_cast<char>(len >> 8);
                out += static_cast<char>(len);
            }
            static const char key[4] = {0x11, 0x22, 0x33, 0x44};
            out.append(key, 4);
            for (size_t k = 0; k < len; ++k)
                out += static_cast<char>(payload[k] ^ key[k % 4]);
        }
        return out;
    }

    void client_op(uint8_t kind, uint8_t p, reader& in) {
        std::string bytes;
        switch (kind) {
            case 24: {
                const uint32_t id = pick_stream(in);
                const bool end = in.byte() == 0xff;
                std::string payload = ws_frames(in);
                if (payload.size() > 16384) payload.resize(16384);
                bytes = frame(NGHTTP2_DATA, end ? NGHTTP2_FLAG_END_STREAM : 0, id, payload);
                break;
            }
            case 0: bytes = in.bytes(in.byte()); break;
            case 1: bytes = in.bytes(in.u16()); break;
            case 2: {
                const uint8_t type = in.byte() % 12;
                const uint8_t flags = in.byte();
                const uint32_t id = pick_stream(in);
                bytes = frame(type, flags, id, in.bytes(in.byte()));
                break;
            }
            case 3: {
                bool end = false;
                const std::string blk = request_block(in, end);
                const uint8_t how = in.byte();
                uint32_t id = next_stream;
                if (how == 0xff) id = pick_stream(in);  // reuse or go backwards
                next_stream = std::max(next_stream, id + 2);
                opened.push_back(id);
                if (opened.size() > 16) opened.erase(opened.begin());
                uint8_t flags = end ? NGHTTP2_FLAG_END_STREAM : 0;
                std::string prio;
                if (how & 0x40) {  // the priority fields (deprecated; nghttp2 still parses them)
                    flags |= NGHTTP2_FLAG_PRIORITY;
                    const uint32_t dep = in.byte() % 8;
                    prio = be32(dep) + std::string(1, static_cast<char>(in.byte()));
                }
                const size_t cut = (how & 0x80) ? blk.size() * (how & 0x3f) / 64 : blk.size();
                if (cut == blk.size()) {
                    bytes =
                        frame(NGHTTP2_HEADERS, flags | NGHTTP2_FLAG_END_HEADERS, id, prio + blk);
                } else {
                    bytes = frame(NGHTTP2_HEADERS, flags, id, prio + blk.substr(0, cut));
                    bytes +=
                        frame(NGHTTP2_CONTINUATION, NGHTTP2_FLAG_END_HEADERS, id, blk.substr(cut));
                }
                break;
            }
            case 4: {
                const uint32_t id = pick_stream(in);
                size_t n = in.byte();
                if (p & 4) n = n * 64;
                n = std::min<size_t>(n, 16384);
                const bool end = in.byte() & 1;
                bytes =
                    frame(NGHTTP2_DATA, end ? NGHTTP2_FLAG_END_STREAM : 0, id, std::string(n, 'd'));
                p &= 3;
                break;
            }
            case 5: {
                const uint32_t id = pick_stream(in);
                bytes = frame(NGHTTP2_RST_STREAM, 0, id, be32(in.byte() % 14));
                break;
            }
            case 6: {
                const uint8_t b = in.byte();
                const uint32_t id = (b & 1) ? pick_stream(in) : 0;
                uint32_t inc = in.u16();
                if (b & 2) inc = inc << 15;
                bytes = frame(NGHTTP2_WINDOW_UPDATE, 0, id, be32(inc));
                break;
            }
            case 7: {
                const uint8_t n = in.byte();
                if (n == 0xff) {
                    bytes = frame(NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, {});
                    break;
                }
                std::string payload;
                for (int i = 0; i < n % 8; ++i) {
                    const uint16_t id = 1 + in.byte() % 8;
                    payload += static_cast<char>(id >> 8);
                    payload += static_cast<char>(id);
                    payload += be32(in.u32());
                }
                bytes = frame(NGHTTP2_SETTINGS, 0, 0, payload);
                break;
            }
            case 8: {
                const uint8_t flags = (in.byte() & 1) ? NGHTTP2_FLAG_ACK : 0;
                bytes = frame(NGHTTP2_PING, flags, 0, std::string(8, static_cast<char>(in.byte())));
                break;
            }
            case 9: {
                const uint32_t id = pick_stream(in);
                const uint32_t dep = pick_stream(in);
                const char weight = static_cast<char>(in.byte());
                bytes = frame(NGHTTP2_PRIORITY, 0, id, be32(dep) + std::string(1, weight));
                break;
            }
            case 10: {
                const uint32_t last = in.u32() & 0x7fffffff;
                bytes = frame(NGHTTP2_GOAWAY, 0, 0, be32(last) + be32(in.byte() % 14));
                break;
            }
            case 11: {
                const uint32_t id = pick_stream(in);
                const uint8_t flags = in.byte();
                bytes = frame(NGHTTP2_CONTINUATION, flags, id, in.bytes(in.byte()));
                break;
            }
            default: return;
        }
        send(bytes, p);
    }

    void owner_op(uint8_t kind, uint8_t p, reader& in) {
        if (closed()) return;
        switch (kind) {
            case 18:
                if ((p & 1) && write_timer) {
                    write_timer = false;
                    conn->on_timer(timer_kind::write);
                } else if ((p & 2) && tick_timer) {
                    tick_timer = false;
                    now += 1000;
                    conn->on_timer(timer_kind::tick);
                } else if (read_timer != timer_kind::none) {
                    const timer_kind k = std::exchange(read_timer, timer_kind::none);
                    conn->on_timer(k);
                }
                break;
            case 19:
                if (p == 0) {
                    t.budget = 0;
                } else {
                    const size_t n = p == 7 ? SIZE_MAX : size_t{in.byte()} << (p * 2);
                    t.budget = (n == SIZE_MAX || t.budget > SIZE_MAX - n) ? SIZE_MAX : t.budget + n;
                    if (conn->write_blocked()) conn->on_writable();
                }
                break;
            case 20: conn->begin_shutdown(); break;
            case 21: now += size_t{in.byte()} * (p + 1) * 10; break;
            case 22:
                if (p == 0) {
                    t.eof = true;
                    conn->on_readable();
                } else if (p == 1) {
                    conn->on_hangup();
                } else if (p == 2) {
                    t.reset = true;
                    conn->on_readable();
                }
                break;
            default: return;
        }
        pump();
    }

    void step(reader& in) {
        const uint8_t op = in.byte();
        const uint8_t kind = op & 0x1f, p = op >> 5;
        if (kind <= 11) return client_op(kind, p, in);
        if (kind >= 18 && kind <= 22) return owner_op(kind, p, in);
        switch (kind) {
            case 12: respond(in, p); break;
            case 13: more_body(in, p); break;
            case 14:
                if (app_exchange* a = pick(in)) take(*a);
                break;
            case 15: trailers(in, p); break;
            case 16: abort_one(in); break;
            case 17: send_file(in, p); break;
            case 23:
                if (app_exchange* a = pick(in)) a->ex->want_body();
                break;
            case 24: client_op(kind, p, in); return;
            case 25:
            case 26:
            case 27: ws_app(kind, p, in); break;
            default: client_op(static_cast<uint8_t>(kind % 12), p, in); return;
        }
        pump();
    }

    // The end: the client reads everything, the app finishes what it can, the client leaves.
    void finish() {
        if (!closed()) {
            t.budget = SIZE_MAX;
            if (conn->write_blocked()) conn->on_writable();
            pump();
        }
        for (app_exchange& a : app) {
            if (!a.ex->connected() || a.waiting || a.aborted || a.ws_accepting || a.ws_open)
                continue;
            if (!a.started) {
                const http::response_sink::head h{200, {}};
                const http::send_result res = a.ex->send(&h, "end", false);
                ok(res);
                if (res.status != send_status::closed) {
                    a.started = true;
                    a.no_body = a.head_request;
                    accepted(a, res, "end", false);
                }
            } else if (!a.body_done) {
                accepted(a, a.ex->send(nullptr, "", false), "", false);
            } else if (a.trailers && !a.trailers_done) {
                ok(a.ex->send_trailers({}, false));
                a.trailers_done = true;
            }
            pump();
        }
        if (!closed()) {
            t.eof = true;
            conn->on_readable();
            pump();
        }
        if (!closed()) {  // a client that never reads (windows shut): the owner gives up
            conn->on_hangup();
            pump();
        }
        FUZZ_CHECK(closed());
        for (app_exchange& a : app) {
            FUZZ_CHECK(!a.ex->connected() && a.disconnects <= 1);
            if (!a.ex->response_complete || a.ws_open || a.ws_accepting)
                FUZZ_CHECK(a.disconnects == 1);
            FUZZ_CHECK(a.ex->send(nullptr, "x", false).status == send_status::closed);
        }
        FUZZ_CHECK(finished == admitted && done == finished);
        conn->release_memory();
        conn.reset();
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    world w(data[0], data[1]);
    reader in{std::string_view(reinterpret_cast<const char*>(data + 2), size - 2)};
    w.open(data[0] & 32);
    while (!in.done() && !w.closed())
        w.step(in);
    w.finish();
    if (trace_on())
        std::fprintf(stderr,
                     "client bytes %zu, output %zu, exchanges %zu, admitted %d, goaways %d\n"
                     "server frames (type/stream/flags):%s\n",
                     w.client_bytes, w.t.output.size(), w.app.size(), w.admitted, w.out.goaways,
                     w.out.trace.c_str());
    return 0;
}
