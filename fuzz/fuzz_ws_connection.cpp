// fuzz_ws_connection — libFuzzer target: a whole ws::connection over an in-memory socket, with a
// client whose bytes come from the input and an app (take / send / close / abort) and an owner
// (timers, graceful stop, a client that reads slowly) whose choices come from the input too.
//
// Input layout: four control bytes, then the client's bytes (raw mode) or a program that builds
// them (builder mode).
//   byte 0  bit 0: builder mode: the rest is a program of well-formed, masked client traffic
//                  (text with valid UTF-8, binary, fragments with pings and pongs between them,
//                  compressed messages, a close frame) with an occasional deliberate fault; a
//                  reference decoding of it says which messages the app must get. Else raw mode:
//                  the rest is the client's bytes as they are.
//           bit 1: permessage-deflate negotiated; bit 2: client_no_context_takeover;
//           bit 3: server_no_context_takeover
//           bits 4-6: how the client's bytes are cut into segments (see segments())
//           bit 7: the client half-closes (EOF) after its last byte
//   byte 1: seed of the app's and the owner's choices
//   byte 2: limits: 0 = defaults; else small ones (max_message, max_queue, read_chunk, water
//           marks, linger) chosen by its bits; bit 7 turns the keepalive off
//   byte 3: how much of the client's stream comes as the HTTP/1.1 leftover (byte3/256 of it)
// Checks: no crash, UB or leak (ASan, UBSan, LSan); memory() stays within the configured bounds
// after every step; the output is a sequence of well-formed unmasked server frames (minimal
// lengths, no RSV2/3, RSV1 only with deflate and only on a message's first frame, control
// frames FIN and <= 125 bytes, our pings 4 bytes, pongs echo a ping the client sent), nothing
// after our close frame, at most one close frame; the data messages in the output, decompressed
// with zlib as a client would, are the app's accepted messages, in order (a prefix of them: a
// close may drop what was not yet written); ev_disconnect at most once, exactly once when the
// connection closed, and the exchange detached with it; sends after it answer closed; every
// delivered text message is UTF-8 and no message exceeds max_message; in builder mode the
// delivered messages are exactly the reference's (a prefix when the run was cut short by the app,
// a timer, a fault or a limit); a connection in a closing state has its close timer armed, one
// whose output is blocked has its write timer armed; the run settles (no livelock).
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "http/exchange.hpp"
#include "ws/connection.hpp"
#include "ws/utf8.hpp"

using namespace coachwhip_fuzz;
namespace core = coachwhip::core;
namespace http = coachwhip::http;
namespace ws = coachwhip::ws;

namespace {

using timer_kind = ws::connection_owner::timer_kind;
using wstate = ws::connection::state;

constexpr size_t k_control = 4;
constexpr int k_max_rounds = 20000;

struct controls {
    uint8_t flags = 0, seed = 0, limits = 0, leftover = 0;
    bool builder() const { return flags & 1; }
    bool deflate() const { return flags & 2; }
    bool client_no_takeover() const { return flags & 4; }
    bool server_no_takeover() const { return flags & 8; }
    int segment_mode() const { return (flags >> 4) & 7; }
    bool eof() const { return flags & 0x80; }
};

ws::connection_config make_config(const controls& c) {
    ws::connection_config cfg;
    if (c.limits == 0) return cfg;
    const uint8_t b = c.limits;
    const uint64_t messages[] = {64, 1000, 70000, 300};
    cfg.max_message = messages[b & 3];
    cfg.max_queue = 1 + ((b >> 2) & 3);
    cfg.read_chunk = (b & 0x10) ? 7 : 512;
    cfg.write_high_water = (b & 0x20) ? 256 : 4096;
    cfg.write_low_water = (b & 0x20) ? 64 : 1024;
    cfg.linger_max_bytes = (b & 0x40) ? 16 : 4096;
    if (b & 0x80) cfg.ping_interval_ms = 0;
    return cfg;
}

// ---- the client's socket
// --------------------------------------------------------------------------

struct client_transport final : core::transport {
    std::string input;
    size_t pos = 0;
    bool eof = false;
    std::string output;
    size_t budget = SIZE_MAX;  // the client's receive window
    bool reset = false;
    bool shut = false, closed = false, aborted = false;

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
        FUZZ_CHECK(!closed && !shut);  // nothing after FIN
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
    void shutdown_write() override {
        FUZZ_CHECK(!closed && !shut);
        shut = true;
    }
    void close() override {
        FUZZ_CHECK(!closed);
        closed = true;
    }
    void abort() override {
        aborted = true;
        close();
    }
};

// ---- zlib as the client uses it
// -------------------------------------------------------------------

struct zstreams {
    z_stream def{}, inf{};
    bool def_ok = false, inf_ok = false;
    zstreams(int client_bits, int server_bits) {
        def_ok = deflateInit2(&def, 6, Z_DEFLATED, -client_bits, 8, Z_DEFAULT_STRATEGY) == Z_OK;
        inf_ok = inflateInit2(&inf, -server_bits) == Z_OK;
        FUZZ_CHECK(def_ok && inf_ok);
    }
    ~zstreams() {
        deflateEnd(&def);
        inflateEnd(&inf);
    }
    zstreams(const zstreams&) = delete;
    zstreams& operator=(const zstreams&) = delete;

    std::string compress(std::string_view msg, bool reset) {
        std::string out;
        def.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(msg.data()));
        def.avail_in = static_cast<uInt>(msg.size());
        do {  // until zlib leaves output room: the flush is then complete
            const size_t at = out.size();
            out.resize(at + msg.size() + 256);
            def.next_out = reinterpret_cast<Bytef*>(out.data() + at);
            def.avail_out = static_cast<uInt>(out.size() - at);
            const int rc = deflate(&def, Z_SYNC_FLUSH);
            FUZZ_CHECK(rc == Z_OK || rc == Z_BUF_ERROR);
            out.resize(out.size() - def.avail_out);
        } while (def.avail_out == 0);
        FUZZ_CHECK(def.avail_in == 0);
        if (reset) deflateReset(&def);
        // An empty message right after another: zlib writes nothing for a flush without input.
        // §7.2.3.6: an empty stored block's header bits, the byte 00.
        if (out.empty()) return std::string(1, '\0');
        FUZZ_CHECK(out.size() >= 4 && out.compare(out.size() - 4, 4, "\0\0\xff\xff", 4) == 0);
        out.resize(out.size() - 4);  // RFC 7692 §7.2.1: 00 00 ff ff removed
        return out;
    }
    // A server message's payload; false when zlib rejects it.
    bool decompress(std::string payload, std::string& out, bool reset) {
        payload.append("\0\0\xff\xff", 4);
        inf.next_in = reinterpret_cast<Bytef*>(payload.data());
        inf.avail_in = static_cast<uInt>(payload.size());
        char buf[16384];
        for (;;) {
            inf.next_out = reinterpret_cast<Bytef*>(buf);
            inf.avail_out = sizeof buf;
            const int rc = inflate(&inf, Z_SYNC_FLUSH);
            if (rc != Z_OK && rc != Z_BUF_ERROR) return false;
            out.append(buf, sizeof buf - inf.avail_out);
            if (inf.avail_in == 0 && inf.avail_out != 0) break;
            if (rc == Z_BUF_ERROR) return false;
        }
        if (reset) inflateReset(&inf);
        return true;
    }
};

// ---- the builder: well-formed client traffic and its reference decoding
// ---------------------------

struct reader {
    std::string_view data;
    size_t pos = 0;
    bool done() const { return pos >= data.size(); }
    uint8_t byte() { return pos < data.size() ? static_cast<uint8_t>(data[pos++]) : 0; }
    std::string_view bytes(size_t n) {
        n = std::min(n, data.size() - std::min(pos, data.size()));
        const std::string_view v = data.substr(pos, n);
        pos += n;
        return v;
    }
};

constexpr std::array<uint8_t, 4> k_key = {0x5a, 0xc3, 0x0f, 0x81};

std::string client_frame(uint8_t b0, std::string_view payload) {
    std::string out(1, static_cast<char>(b0));
    const uint64_t len = payload.size();
    if (len <= 125) {
        out += static_cast<char>(0x80 | len);
    } else if (len <= 0xFFFF) {
        out += static_cast<char>(0x80 | 126);
        out += static_cast<char>(len >> 8);
        out += static_cast<char>(len);
    } else {
        out += static_cast<char>(0x80 | 127);
        for (int i = 7; i >= 0; --i)
            out += static_cast<char>(len >> (8 * i));
    }
    out.append(reinterpret_cast<const char*>(k_key.data()), 4);
    for (size_t i = 0; i < len; ++i)
        out += static_cast<char>(payload[i] ^ k_key[i % 4]);
    return out;
}

struct built {
    std::string bytes;
    std::vector<http::ws_message> messages;  // what the app must get, in order
    std::vector<std::string> pings;          // payloads of every ping sent
    bool clean = true;             // no fault, no limit crossed: every message is expected
    bool ends_with_close = false;  // the last frame is a valid close
    uint16_t close_code = 0;
};

// Valid UTF-8 from input bytes: ASCII and a few multi-byte code points.
std::string utf8_text(reader& r, size_t n) {
    static const char* const pieces[] = {
        "a", "Z",  " ", "\xc3\xa9",    "\xe2\x82\xac", "\xf0\x9f\x98\x80",
        "{", "\"", "0", "\xed\x9f\xbf"};
    std::string s;
    while (s.size() < n)
        s += pieces[r.byte() % std::size(pieces)];
    return s;
}

std::string control_payload(reader& r) { return std::string(r.bytes(r.byte() % 126)); }

// Splits `payload` into up to four fragments (the first carries `b0`'s opcode and RSV1).
void fragments(built& b, reader& r, uint8_t op, bool rsv1, std::string_view payload) {
    size_t parts = 1 + r.byte() % 4;
    size_t at = 0;
    for (size_t i = 0; i < parts; ++i) {
        const bool last = i + 1 == parts;
        const size_t n =
            last ? payload.size() - at : (payload.size() - at) * (r.byte() % 101) / 100;
        const uint8_t b0 = static_cast<uint8_t>((last ? 0x80 : 0) | (i == 0 ? op : 0) |
                                                (i == 0 && rsv1 ? 0x40 : 0));
        b.bytes += client_frame(b0, payload.substr(at, n));
        at += n;
        if (!last && r.byte() % 3 == 0) {  // §5.4: control frames between fragments
            std::string p = control_payload(r);
            if (r.byte() % 2) {
                b.bytes += client_frame(0x89, p);
                b.pings.push_back(std::move(p));
            } else {
                b.bytes += client_frame(0x8A, p);
            }
        }
    }
}

built build(std::string_view program, const controls& c, const ws::connection_config& cfg,
            zstreams* z) {
    built b;
    reader r{program};
    while (!r.done()) {
        const uint8_t op = r.byte();
        // Low nibble: what to build; high bits: text (0x10), large (0x20), compressed (0x40).
        const int kind = (op & 0x0F) % 10;
        switch (kind) {
            case 0:
            case 1:
            case 2: {  // a data message, maybe fragmented, maybe compressed
                const bool text = op & 0x10;
                size_t n = r.byte();
                if (op & 0x20) n = n * 300 + r.byte();  // up to ~76 KB
                std::string data = text ? utf8_text(r, n) : std::string(r.bytes(n));
                const bool compress = c.deflate() && (op & 0x40) && z;
                std::string payload = compress ? z->compress(data, c.client_no_takeover()) : data;
                const uint8_t opc = text ? 0x1 : 0x2;
                if (kind == 0) {
                    b.bytes += client_frame(
                        static_cast<uint8_t>(0x80 | opc | (compress ? 0x40 : 0)), payload);
                } else {
                    fragments(b, r, opc, compress, payload);
                }
                if (data.size() > cfg.max_message) {
                    b.clean = false;  // 1009: nothing after it is read
                    return b;
                }
                b.messages.push_back({text, std::move(data)});
                break;
            }
            case 3:
            case 4: {
                std::string p = control_payload(r);
                b.bytes += client_frame(0x89, p);
                b.pings.push_back(std::move(p));
                break;
            }
            case 5: {
                // Unsolicited, or answering our keepalive ping n (its payload is n, 4 bytes)
                if (op & 0x10) {
                    const char n = static_cast<char>(1 + r.byte() % 4);
                    b.bytes += client_frame(0x8A, std::string{0, 0, 0, n});
                } else {
                    b.bytes += client_frame(0x8A, control_payload(r));
                }
                break;
            }
            case 6: {  // a valid close ends the program
                static const uint16_t codes[] = {0,    1000, 1001, 1002, 1003, 1007,
                                                 1008, 1011, 1014, 3000, 4000, 4999};
                const uint16_t code = codes[r.byte() % std::size(codes)];
                std::string p;
                if (code) {
                    p = {static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)};
                    p += utf8_text(r, r.byte() % 40);
                    p.resize(ws::utf8_truncate(p.substr(2), 123) + 2);
                }
                b.bytes += client_frame(0x88, p);
                b.ends_with_close = true;
                b.close_code = code ? code : 1005;
                return b;
            }
            case 7: {  // a deliberate fault: raw bytes from here on
                b.clean = false;
                b.bytes += r.bytes(r.data.size());
                return b;
            }
            default: {  // a small message in one frame
                std::string data = utf8_text(r, r.byte() % 16);
                b.bytes += client_frame(0x81, data);
                if (data.size() > cfg.max_message) {
                    b.clean = false;
                    return b;
                }
                b.messages.push_back({true, std::move(data)});
            }
        }
    }
    return b;
}

// ---- the world: owner, app, client
// ----------------------------------------------------------------

struct world final : ws::connection_owner {
    controls ctl;
    ws::connection_config cfg;
    std::optional<ws::deflate_params> params;
    client_transport t;
    http::event_queue events;
    std::shared_ptr<http::exchange> ex;
    std::unique_ptr<ws::connection> conn;
    ws::connection* self = nullptr;
    std::vector<ws::connection*> scheduled;
    timer_kind keepalive = timer_kind::none;
    bool write_timer = false;
    uint64_t now = 0;
    int closed_calls = 0;
    rng r;
    // the app
    std::vector<http::ws_message> delivered;
    std::vector<http::ws_message> accepted;  // sends answered proceed or wait
    size_t largest_sent = 0;
    bool waiting = false;  // a send answered wait: no send until ev_drain
    bool app_closed = false, app_aborted = false, shutdown = false, timer_fired = false;
    bool slow_app = false;  // takes messages only now and then
    int disconnects = 0;
    uint16_t disconnect_code = 0;

    world(const controls& c) : ctl(c), cfg(make_config(c)), r(c.seed * 0x9E3779B97F4A7C15ull + 3) {
        if (c.deflate()) {
            ws::deflate_params p;
            p.client_no_context_takeover = c.client_no_takeover();
            p.server_no_context_takeover = c.server_no_takeover();
            p.client_max_window_bits = (c.seed & 1) ? 15 : 10;
            p.server_max_window_bits = (c.seed & 2) ? 12 : 9;
            params = p;
        }
        slow_app = r.one_in(3);
    }

    void open(std::string leftover) {
        ex = std::make_shared<http::exchange>(events, nullptr);
        ex->client = {"192.0.2.1", 40000, true};
        conn = std::make_unique<ws::connection>(t, *this, cfg, ex, std::move(leftover), params);
        self = conn.get();
        ex->rebind(self);
        conn->start();
        pump();
    }

    bool closed() const { return closed_calls > 0; }

    void schedule(ws::connection& c) override {
        FUZZ_CHECK(&c == self);
        if (!c.scheduled) scheduled.push_back(&c);
        c.scheduled = true;
    }
    void arm_timer(ws::connection& c, timer_kind k) override {
        FUZZ_CHECK(&c == self && k != timer_kind::none && !closed());
        if (k == timer_kind::write) {
            write_timer = true;
        } else {
            keepalive = k;
        }
    }
    void disarm_timer(ws::connection& c, timer_kind k) override {
        FUZZ_CHECK(&c == self && k != timer_kind::none);
        if (k == timer_kind::write) {
            write_timer = false;
        } else {
            keepalive = timer_kind::none;
        }
    }
    uint64_t now_ms() const noexcept override { return now; }
    void on_closed(ws::connection& c) override {
        FUZZ_CHECK(&c == self && t.closed);
        FUZZ_CHECK(keepalive == timer_kind::none && !write_timer);
        ++closed_calls;
        FUZZ_CHECK(closed_calls == 1);
    }

    // ---- the app ----
    void on_events(uint8_t ev) {
        if (ev & http::ev_drain) waiting = false;
        if (ev & http::ev_disconnect) {
            ++disconnects;
            FUZZ_CHECK(disconnects == 1);  // exactly once
            FUZZ_CHECK(!ex->connected());
            disconnect_code = ex->ws_close_code;
            FUZZ_CHECK(disconnect_code >= 1000 && disconnect_code < 5000);
            waiting = false;
        }
    }
    void take() {
        FUZZ_CHECK(ex->ws_inbox.size() <= std::max<size_t>(cfg.max_queue, 1));
        for (auto& m : ex->ws_inbox) {
            FUZZ_CHECK(m.data.size() <= cfg.max_message);
            if (m.text) FUZZ_CHECK(ws::is_valid_utf8(m.data));
            delivered.push_back(std::move(m));
        }
        ex->ws_inbox.clear();
        ex->ws_taken();
    }
    std::string app_message(bool text) {
        size_t n = r.between(0, 200);
        if (r.one_in(8)) n = r.between(0, 100000);
        std::string s(n, 'x');
        for (auto& ch : s)
            ch = static_cast<char>(text ? 'a' + r.next() % 26 : r.next());
        if (r.one_in(2)) {  // compresses well too
            for (size_t i = 0; i < s.size(); ++i)
                s[i] = s[i % 7];
        }
        return s;
    }
    // One app turn. Returns true when it called into the exchange.
    bool app_turn() {
        bool busy = false;
        if (!ex->ws_inbox.empty() && (!slow_app || r.one_in(3))) {
            take();
            busy = true;
        }
        if (!ex->connected()) {
            if (r.one_in(4))  // a send after the disconnect raises
                FUZZ_CHECK(ex->ws_send(true, "late").status == http::send_status::closed);
            return busy;
        }
        if (app_closed || app_aborted) return busy;
        const uint64_t pick = r.next() % 64;
        if (pick < 12 && !waiting) {
            const bool text = r.one_in(2);
            std::string m = app_message(text);
            const http::send_result res = ex->ws_send(text, m);
            FUZZ_CHECK(res.status != http::send_status::error);
            if (res.status != http::send_status::closed) {
                largest_sent = std::max(largest_sent, m.size());
                accepted.push_back({text, std::move(m)});
            }
            if (res.status == http::send_status::wait) waiting = true;
            return true;
        }
        if (pick == 12) {
            static const uint16_t codes[] = {1000, 1001, 1011, 3000, 4999, 1005, 999, 0};
            std::string reason(r.between(0, 130), 'r');
            if (r.one_in(2)) reason += "\xe2\x82\xac";
            ex->ws_close(codes[r.next() % std::size(codes)], reason);
            app_closed = true;
            FUZZ_CHECK(ex->ws_send(true, "x").status == http::send_status::closed);
            return true;
        }
        if (pick == 13 && r.one_in(4)) {
            ex->abort();
            app_aborted = true;
            return true;
        }
        return busy;
    }

    // ---- the loop ----
    void pump() {
        for (int round = 0; round < k_max_rounds; ++round) {
            bool busy = false;
            for (auto& e : events.take()) {
                busy = true;
                FUZZ_CHECK(e == ex);
                on_events(e->take_events());
            }
            if (round < 64) busy = app_turn() || busy;  // the app settles too
            for (auto* c : std::exchange(scheduled, {})) {
                busy = true;
                c->scheduled = false;
                if (!closed()) c->process();
            }
            check_step();
            if (!busy) return;
        }
        invariant_failed("connection and app did not settle (livelock)", __FILE__, __LINE__);
    }

    size_t memory_bound() const {
        const uint64_t in = std::max<size_t>(cfg.read_chunk, leftover_size);
        const uint64_t z = params ? 400 * 1024 : 0;
        return static_cast<size_t>(in + 2 * cfg.max_message + 3 * cfg.write_high_water +
                                   largest_sent + 8192 + z);
    }
    size_t leftover_size = 0;

    void check_step() {
        if (!conn) return;
        FUZZ_CHECK(conn->memory() <= memory_bound());
        if (closed()) return;
        // An idle connection holds nothing (no read buffer, no output, no message), and no zlib
        // state where no context is taken over.
        if (conn->idle() && !params) FUZZ_CHECK(conn->memory() == 0);
        if (conn->idle() && params && params->client_no_context_takeover &&
            params->server_no_context_takeover)
            FUZZ_CHECK(conn->memory() <= 256);
        const wstate s = conn->current_state();
        if (conn->write_blocked()) FUZZ_CHECK(write_timer);
        if (s == wstate::closing || s == wstate::draining || s == wstate::failing)
            FUZZ_CHECK(keepalive == timer_kind::close);
        if (s == wstate::open && cfg.ping_interval_ms &&
            ex->ws_inbox.size() < std::max<size_t>(cfg.max_queue, 1))
            FUZZ_CHECK(keepalive == timer_kind::ping || keepalive == timer_kind::pong);
    }

    void segment(std::string_view bytes) {
        now += 500;
        t.input.append(bytes);
        if (!closed()) conn->on_readable(r.one_in(2));
        pump();
        owner_turn();
    }

    // The owner's and the client's moves between segments.
    void owner_turn() {
        if (closed()) return;
        switch (r.next() % 16) {
            case 0:
            case 1:
                if (keepalive != timer_kind::none) {
                    const timer_kind k = std::exchange(keepalive, timer_kind::none);
                    timer_fired = true;
                    conn->on_timer(k);
                    pump();
                }
                break;
            case 2:
                if (write_timer && r.one_in(4)) {
                    write_timer = false;
                    timer_fired = true;
                    conn->on_timer(timer_kind::write);
                    pump();
                }
                break;
            case 3:
                if (r.one_in(4)) {
                    shutdown = true;
                    conn->begin_shutdown();
                    pump();
                }
                break;
            case 4: client_reads(r.between(0, 4096)); break;
            case 5: t.budget = 0; break;
            case 6:
                if (r.one_in(16)) {
                    t.reset = true;
                    if (r.one_in(2)) {
                        conn->on_hangup();
                    } else {
                        conn->on_readable();
                    }
                    pump();
                }
                break;
            default: break;
        }
    }

    void client_reads(size_t n) {
        t.budget = (n == SIZE_MAX || t.budget > SIZE_MAX - n) ? SIZE_MAX : t.budget + n;
        if (!closed() && conn->write_blocked()) conn->on_writable();
        pump();
    }

    // The end: the client reads everything, the app takes everything, the client leaves if it
    // said so; then the connection is destroyed as the server would.
    void finish(bool eof) {
        for (int i = 0; i < 64 && !closed(); ++i) {
            t.budget = SIZE_MAX;
            if (conn->write_blocked()) conn->on_writable();
            if (!ex->ws_inbox.empty()) take();
            pump();
            if (ex->ws_inbox.empty() && !conn->write_blocked()) break;
        }
        if (!ex->ws_inbox.empty()) take();
        pump();
        if (eof && !closed()) {
            t.eof = true;
            conn->on_readable();
            pump();
        }
        if (!ex->ws_inbox.empty()) take();
        if (closed()) {
            FUZZ_CHECK(disconnects == 1);
            conn->release_memory();
            FUZZ_CHECK(conn->memory() == 0);
        } else {
            FUZZ_CHECK(disconnects <= 1);
        }
    }
};

// ---- segmentation -------------------------------------------------------------------------------

std::vector<std::string_view> segments(std::string_view bytes, int mode, rng& r) {
    std::vector<std::string_view> out;
    if (mode == 1 && bytes.size() > 4096) mode = 2;
    while (!bytes.empty()) {
        size_t n = bytes.size();
        switch (mode) {
            case 1: n = 1; break;
            case 2: n = r.between(1, 8); break;
            case 3: n = r.between(1, 64); break;
            case 4: n = r.between(1, 1024); break;
            case 5: n = r.between(1, 16384); break;
            case 6: n = r.between(1, 200000); break;
            default: break;
        }
        n = std::min(n, bytes.size());
        out.push_back(bytes.substr(0, n));
        bytes.remove_prefix(n);
    }
    return out;
}

// ---- output checks ------------------------------------------------------------------------------

struct output_check {
    std::vector<http::ws_message> messages;
    bool close_frame = false;
    uint16_t close_code = 0;
};

output_check check_output(world& w, const built* b) {
    output_check oc;
    const std::string_view out = w.t.output;
    std::optional<zstreams> z;
    if (w.params)
        z.emplace(w.params->client_max_window_bits,
                  std::max<int>(9, w.params->server_max_window_bits));
    std::string data;
    bool open = false, text = false, compressed = false;
    size_t p = 0;
    const auto u = [&](size_t i) { return static_cast<unsigned char>(out[i]); };
    while (p < out.size()) {
        FUZZ_CHECK(!oc.close_frame);  // nothing after our close frame
        if (out.size() - p < 2) break;
        const bool fin = u(p) & 0x80, rsv1 = u(p) & 0x40;
        const uint8_t op = u(p) & 0x0F;
        FUZZ_CHECK((u(p) & 0x30) == 0);
        FUZZ_CHECK((u(p + 1) & 0x80) == 0);  // never masked
        FUZZ_CHECK(op <= 2 || (op >= 8 && op <= 10));
        uint64_t len = u(p + 1) & 0x7F;
        size_t at = p + 2;
        if (len == 126) {
            if (out.size() - p < 4) break;
            len = uint64_t{u(p + 2)} << 8 | u(p + 3);
            FUZZ_CHECK(len >= 126);
            at = p + 4;
        } else if (len == 127) {
            if (out.size() - p < 10) break;
            len = 0;
            for (int i = 0; i < 8; ++i)
                len = len << 8 | u(p + 2 + i);
            FUZZ_CHECK(len > 0xFFFF && len < (uint64_t{1} << 63));
            at = p + 10;
        }
        if (out.size() - at < len) break;  // cut short: a client that stopped reading, a reset
        const std::string_view payload = out.substr(at, len);
        p = at + len;
        if (op >= 8) {
            FUZZ_CHECK(fin && len <= 125 && !rsv1);
            if (op == 0x9) FUZZ_CHECK(len == 4);  // our keepalive pings
            if (op == 0xA && b && b->clean) {
                bool known = false;
                for (const auto& ping : b->pings)
                    known = known || ping == payload;
                FUZZ_CHECK(known);  // a pong echoes a ping the client sent
            }
            if (op == 0x8) {
                oc.close_frame = true;
                FUZZ_CHECK(len != 1);
                if (len >= 2) {
                    oc.close_code = static_cast<uint16_t>(u(at) << 8 | u(at + 1));
                    FUZZ_CHECK(ws::is_valid_close_code(oc.close_code));
                    FUZZ_CHECK(ws::is_valid_utf8(payload.substr(2)));
                } else {
                    oc.close_code = 1005;
                }
            }
            continue;
        }
        if (op != 0) {
            FUZZ_CHECK(!open);
            open = true;
            text = op == 1;
            compressed = rsv1;
            FUZZ_CHECK(!rsv1 || w.params);
            data.clear();
        } else {
            FUZZ_CHECK(open && !rsv1);
        }
        data += payload;
        if (!fin) continue;
        open = false;
        if (compressed) {
            std::string plain;
            FUZZ_CHECK(z->decompress(data, plain, w.params->server_no_context_takeover));
            data = std::move(plain);
        }
        oc.messages.push_back({text, data});
    }
    // The messages on the wire are the app's accepted ones, in order.
    FUZZ_CHECK(oc.messages.size() <= w.accepted.size());
    for (size_t i = 0; i < oc.messages.size(); ++i)
        FUZZ_CHECK(oc.messages[i].text == w.accepted[i].text &&
                   oc.messages[i].data == w.accepted[i].data);
    return oc;
}

void check_delivered(const world& w, const built& b) {
    // After a deliberate fault the raw bytes may hold more messages: only what precedes it is
    // known. Without one, nothing beyond the reference may arrive.
    if (b.clean) FUZZ_CHECK(w.delivered.size() <= b.messages.size());
    for (size_t i = 0; i < std::min(w.delivered.size(), b.messages.size()); ++i)
        FUZZ_CHECK(w.delivered[i].text == b.messages[i].text &&
                   w.delivered[i].data == b.messages[i].data);
    // Nothing got in the way: every message, and the client's close code for the app.
    const bool undisturbed = b.clean && b.ends_with_close && !w.app_closed && !w.app_aborted &&
                             !w.shutdown && !w.timer_fired && !w.t.reset;
    if (undisturbed) {
        FUZZ_CHECK(w.delivered.size() == b.messages.size());
        FUZZ_CHECK(w.disconnects == 1 && w.disconnect_code == b.close_code);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < k_control) return 0;
    controls ctl;
    ctl.flags = data[0];
    ctl.seed = data[1];
    ctl.limits = data[2];
    ctl.leftover = data[3];
    const std::string_view rest(reinterpret_cast<const char*>(data + k_control), size - k_control);

    world w(ctl);
    std::optional<built> b;
    std::string stream;
    if (ctl.builder()) {
        std::optional<zstreams> z;
        if (w.params) z.emplace(w.params->client_max_window_bits, w.params->server_max_window_bits);
        b = build(rest, ctl, w.cfg, z ? &*z : nullptr);
        stream = b->bytes;
    } else {
        stream = std::string(rest);
    }
    const size_t cut = stream.size() * ctl.leftover / 256;
    w.leftover_size = cut;
    w.open(stream.substr(0, cut));
    rng seg(ctl.seed + 0x51ull);
    for (const std::string_view piece :
         segments(std::string_view(stream).substr(cut), ctl.segment_mode(), seg)) {
        if (w.closed()) break;
        w.segment(piece);
    }
    w.finish(ctl.eof());
    const output_check oc = check_output(w, b ? &*b : nullptr);
    if (std::getenv("FUZZ_TRACE")) {
        std::fprintf(stderr,
                     "builder=%d clean=%d ends_with_close=%d reference=%zu delivered=%zu "
                     "accepted=%zu on_wire=%zu close_frame=%u disconnects=%d code=%u closed=%d "
                     "app_closed=%d aborted=%d shutdown=%d timer=%d reset=%d\n",
                     ctl.builder(), b ? b->clean : 0, b ? b->ends_with_close : 0,
                     b ? b->messages.size() : 0, w.delivered.size(), w.accepted.size(),
                     oc.messages.size(), oc.close_frame ? oc.close_code : 0, w.disconnects,
                     w.disconnect_code, w.closed(), w.app_closed, w.app_aborted, w.shutdown,
                     w.timer_fired, w.t.reset);
    }
    if (b) check_delivered(w, *b);
    return 0;
}
