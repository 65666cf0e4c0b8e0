// ws::connection driven entirely in memory: a fake transport, a fake owner with a fake clock and
// timer slots, and an "app" that takes messages through http::exchange as the ASGI bridge will.
// Client frames come from a tiny masking encoder written here; the server's output is read back
// by a strict decoder written here (unmasked frames, minimal lengths, nothing after the close
// frame) and compressed traffic is checked against zlib used directly as the client would.
// Every conversation in the table is also fed split at every byte, one byte at a time, and with
// its first part as the HTTP/1.1 leftover.
#include <gtest/gtest.h>
#include <zlib.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "http/exchange.hpp"
#include "ws/connection.hpp"

using namespace coachwhip;
using timer_kind = ws::connection_owner::timer_kind;
using state = ws::connection::state;

namespace {

// ---- the client's encoder -----------------------------------------------------------------------

constexpr std::array<uint8_t, 4> k_key = {0x9c, 0x01, 0x7e, 0x55};

// A masked client frame; `declared` lies about the length (the payload is then what is given).
std::string frame(uint8_t b0, std::string_view payload, bool masked = true,
                  std::optional<uint64_t> declared = std::nullopt) {
    const uint64_t len = declared.value_or(payload.size());
    std::string out(1, static_cast<char>(b0));
    const unsigned char m = masked ? 0x80 : 0;
    if (len <= 125) {
        out += static_cast<char>(m | len);
    } else if (len <= 0xFFFF) {
        out += static_cast<char>(m | 126);
        out += static_cast<char>(len >> 8);
        out += static_cast<char>(len);
    } else {
        out += static_cast<char>(m | 127);
        for (int i = 7; i >= 0; --i)
            out += static_cast<char>(len >> (8 * i));
    }
    if (!masked) return out + std::string(payload);
    out.append(reinterpret_cast<const char*>(k_key.data()), 4);
    for (size_t i = 0; i < payload.size(); ++i)
        out += static_cast<char>(payload[i] ^ k_key[i % 4]);
    return out;
}
std::string text(std::string_view p, bool fin = true) { return frame(fin ? 0x81 : 0x01, p); }
std::string binary(std::string_view p, bool fin = true) { return frame(fin ? 0x82 : 0x02, p); }
std::string cont(std::string_view p, bool fin = true) { return frame(fin ? 0x80 : 0x00, p); }
std::string ping(std::string_view p) { return frame(0x89, p); }
std::string pong(std::string_view p) { return frame(0x8A, p); }
std::string code_bytes(uint16_t code) {
    return {static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)};
}
std::string close(uint16_t code, std::string_view reason = {}) {
    return frame(0x88, code_bytes(code) + std::string(reason));
}
std::string close_raw(std::string_view payload) { return frame(0x88, payload); }

// ---- the server's output, read strictly ---------------------------------------------------------

struct server_frame {
    bool fin = true, rsv1 = false;
    uint8_t op = 0;
    std::string payload;
};

// Every frame of `out`; fails the test on a malformed one (masked, RSV2/3, non-minimal length,
// a control frame fragmented or over 125) or on anything after a close frame. `partial` says
// whether a cut-off last frame is acceptable (a client that stopped reading).
std::vector<server_frame> frames_of(std::string_view out, bool partial = false) {
    std::vector<server_frame> frames;
    size_t p = 0;
    while (p < out.size()) {
        EXPECT_FALSE(!frames.empty() && frames.back().op == 0x8) << "bytes after our close frame";
        const auto u = [&](size_t i) { return static_cast<unsigned char>(out[i]); };
        if (out.size() - p < 2) break;
        server_frame f;
        f.fin = u(p) & 0x80;
        f.rsv1 = u(p) & 0x40;
        f.op = u(p) & 0x0F;
        EXPECT_EQ(u(p) & 0x30, 0) << "RSV2/RSV3";
        EXPECT_EQ(u(p + 1) & 0x80, 0) << "a server frame is never masked (§5.1)";
        uint64_t len = u(p + 1) & 0x7F;
        size_t at = p + 2;
        if (len == 126) {
            if (out.size() - p < 4) break;
            len = uint64_t{u(p + 2)} << 8 | u(p + 3);
            EXPECT_GE(len, 126u) << "non-minimal length";
            at = p + 4;
        } else if (len == 127) {
            if (out.size() - p < 10) break;
            len = 0;
            for (int i = 0; i < 8; ++i)
                len = len << 8 | u(p + 2 + i);
            EXPECT_GT(len, 0xFFFFu) << "non-minimal length";
            at = p + 10;
        }
        EXPECT_TRUE(f.op < 0x8 || (f.fin && len <= 125)) << "control frame rules (§5.5)";
        if (out.size() - at < len) break;
        f.payload = std::string(out.substr(at, len));
        frames.push_back(std::move(f));
        p = at + len;
    }
    EXPECT_TRUE(partial || p == out.size()) << "the output ends inside a frame";
    return frames;
}

uint16_t close_code_of(const server_frame& f) {
    if (f.payload.size() < 2) return 1005;
    return static_cast<uint16_t>(static_cast<unsigned char>(f.payload[0]) << 8 |
                                 static_cast<unsigned char>(f.payload[1]));
}

// A readable summary: "text:hi", "pong:x", "close:1000:bye", "close:1007" (our error reasons are
// left out of the summary: they are for humans).
std::string describe(const std::vector<server_frame>& frames, bool with_reason = false) {
    std::string s;
    for (const auto& f : frames) {
        if (!s.empty()) s += " | ";
        switch (f.op) {
            case 0x1: s += "text:" + f.payload; break;
            case 0x2: s += "binary:" + f.payload; break;
            case 0x9: s += "ping:" + f.payload; break;
            case 0xA: s += "pong:" + f.payload; break;
            case 0x8:
                s += "close:" + std::to_string(close_code_of(f));
                if (with_reason && f.payload.size() > 2) s += ":" + f.payload.substr(2);
                break;
            default: s += "op" + std::to_string(f.op) + ":" + f.payload;
        }
    }
    return s;
}

// ---- zlib as the client uses it (RFC 7692 §7.2.1) -----------------------------------------------

struct zclient {
    z_stream def{}, inf{};
    explicit zclient(int client_bits = 15, int server_bits = 15) {
        EXPECT_EQ(deflateInit2(&def, 6, Z_DEFLATED, -client_bits, 8, Z_DEFAULT_STRATEGY), Z_OK);
        EXPECT_EQ(inflateInit2(&inf, -server_bits), Z_OK);
    }
    ~zclient() {
        deflateEnd(&def);
        inflateEnd(&inf);
    }
    std::string compress(std::string_view msg) {
        std::string out(msg.size() + 64, '\0');
        def.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(msg.data()));
        def.avail_in = static_cast<uInt>(msg.size());
        def.next_out = reinterpret_cast<Bytef*>(out.data());
        def.avail_out = static_cast<uInt>(out.size());
        EXPECT_EQ(deflate(&def, Z_SYNC_FLUSH), Z_OK);
        out.resize(out.size() - def.avail_out);
        EXPECT_EQ(out.substr(out.size() - 4), std::string("\0\0\xff\xff", 4));
        out.resize(out.size() - 4);
        return out;
    }
    std::string decompress(std::string payload) {
        payload.append("\0\0\xff\xff", 4);
        std::string out;
        inf.next_in = reinterpret_cast<Bytef*>(payload.data());
        inf.avail_in = static_cast<uInt>(payload.size());
        char buf[4096];
        do {
            inf.next_out = reinterpret_cast<Bytef*>(buf);
            inf.avail_out = sizeof buf;
            const int rc = inflate(&inf, Z_SYNC_FLUSH);
            EXPECT_TRUE(rc == Z_OK || rc == Z_BUF_ERROR) << rc;
            out.append(buf, sizeof buf - inf.avail_out);
            if (rc == Z_BUF_ERROR) break;
        } while (inf.avail_in > 0 || inf.avail_out == 0);
        return out;
    }
};

// Whole messages out of the server's frames (decompressed with `z` when RSV1 is set).
std::vector<http::ws_message> messages_of(const std::vector<server_frame>& frames, zclient* z) {
    std::vector<http::ws_message> out;
    std::string data;
    bool compressed = false, text = false, open = false;
    for (const auto& f : frames) {
        if (f.op >= 0x8) continue;
        if (f.op != 0) {
            EXPECT_FALSE(open) << "new message inside a fragmented one";
            open = true;
            text = f.op == 1;
            compressed = f.rsv1;
            data.clear();
        } else {
            EXPECT_TRUE(open) << "continuation without a message";
            EXPECT_FALSE(f.rsv1) << "RSV1 on a continuation";
        }
        data += f.payload;
        if (!f.fin) continue;
        open = false;
        if (compressed) {
            EXPECT_NE(z, nullptr);
            if (z) data = z->decompress(data);
        }
        out.push_back({text, data});
    }
    return out;
}

// ---- the world ----------------------------------------------------------------------------------

struct mem_transport final : core::transport {
    std::string input;
    size_t pos = 0;
    bool eof = false;
    int read_error = 0;   // e.g. ECONNRESET: every read fails with it
    int write_error = 0;  // e.g. EPIPE: every write fails with it
    std::string output;
    size_t write_budget = SIZE_MAX;  // bytes the client takes before its window is full
    bool shut = false, closed = false, aborted = false;
    bool fin_owed = false;  // a complete fin_next write: the next call must be shutdown or close
    int reads = 0;

    ssize_t read(char* buf, size_t len) override {
        EXPECT_FALSE(closed) << "read after close";
        EXPECT_FALSE(fin_owed) << "read() between a fin_next write and the FIN";
        EXPECT_GT(len, 0u);
        ++reads;
        if (read_error) return -read_error;
        if (pos < input.size()) {
            const size_t n = std::min(len, input.size() - pos);
            std::memcpy(buf, input.data() + pos, n);
            pos += n;
            return static_cast<ssize_t>(n);
        }
        return eof ? 0 : -EAGAIN;
    }
    ssize_t writev(const iovec* iov, int n, bool fin_next) override {
        EXPECT_FALSE(closed || shut) << "write after FIN or close";
        EXPECT_FALSE(fin_owed) << "writev() between a fin_next write and the FIN";
        if (write_error) return -write_error;
        if (write_budget == 0) return -EAGAIN;
        size_t written = 0, offered = 0;
        for (int i = 0; i < n; ++i) {
            offered += iov[i].iov_len;
            const size_t take = std::min(iov[i].iov_len, write_budget);
            output.append(static_cast<const char*>(iov[i].iov_base), take);
            if (write_budget != SIZE_MAX) write_budget -= take;
            written += take;
        }
        if (fin_next && written == offered) fin_owed = true;
        return static_cast<ssize_t>(written);
    }
    void shutdown_write() override {
        EXPECT_FALSE(closed || shut);
        shut = true;
        fin_owed = false;
    }
    void close() override {
        EXPECT_FALSE(closed);
        closed = true;
        fin_owed = false;
    }
    void abort() override {
        aborted = true;
        close();
    }
};

struct harness final : ws::connection_owner {
    mem_transport t;
    ws::connection_config cfg;
    http::event_queue events;
    std::shared_ptr<http::exchange> ex;
    std::unique_ptr<ws::connection> conn;
    std::vector<ws::connection*> scheduled;
    timer_kind keepalive = timer_kind::none;  // the keepalive slot: ping, pong or close
    bool write_armed = false;
    uint64_t now = 1000;
    int closed_calls = 0;
    std::vector<http::refusal> refusals;
    // the app
    bool auto_take = true;
    std::vector<http::ws_message> received;
    int disconnects = 0, drains = 0;
    uint16_t code = 0;
    std::string reason;

    harness() { cfg.ping_interval_ms = 0; }  // keepalive tests turn it on

    void open(std::string leftover = {}, std::optional<ws::deflate_params> d = std::nullopt) {
        ex = std::make_shared<http::exchange>(events, nullptr);
        ex->client = {"127.0.0.1", 5555, true};
        conn = std::make_unique<ws::connection>(t, *this, cfg, ex, std::move(leftover), d);
        ex->rebind(conn.get());
        conn->start();
        pump();
    }

    void schedule(ws::connection& c) override {
        EXPECT_EQ(&c, conn.get());
        if (!c.scheduled) scheduled.push_back(&c);
        c.scheduled = true;
    }
    void arm_timer(ws::connection&, timer_kind k) override {
        EXPECT_NE(k, timer_kind::none);
        EXPECT_EQ(closed_calls, 0) << "timer armed on a closed connection";
        if (k == timer_kind::write) {
            write_armed = true;
        } else {
            keepalive = k;
        }
    }
    void disarm_timer(ws::connection&, timer_kind k) override {
        if (k == timer_kind::write) {
            write_armed = false;
        } else {
            keepalive = timer_kind::none;
        }
    }
    uint64_t now_ms() const noexcept override { return now; }
    void on_closed(ws::connection& c) override {
        EXPECT_EQ(&c, conn.get());
        EXPECT_TRUE(t.closed) << "on_closed before the transport is closed";
        EXPECT_EQ(keepalive, timer_kind::none);
        EXPECT_FALSE(write_armed);
        ++closed_calls;
    }
    void refused(ws::connection&, http::refusal why) override { refusals.push_back(why); }
    bool closed() const { return closed_calls > 0; }

    void take() {
        for (auto& m : ex->ws_inbox)
            received.push_back(std::move(m));
        ex->ws_inbox.clear();
        ex->ws_taken();
    }
    void pump() {
        for (int round = 0; round < 1000; ++round) {
            bool busy = false;
            for (auto& e : events.take()) {
                busy = true;
                const uint8_t ev = e->take_events();
                if (auto_take && !ex->ws_inbox.empty()) take();
                if (ev & http::ev_drain) ++drains;
                if (ev & http::ev_disconnect) {
                    ++disconnects;
                    code = ex->ws_close_code;
                    reason = ex->ws_close_reason;
                }
            }
            for (auto* c : std::exchange(scheduled, {})) {
                busy = true;
                c->scheduled = false;
                if (!closed()) c->process();
            }
            if (!busy) break;
        }
        if (closed()) conn->release_memory();
    }
    void feed(std::string_view bytes) {
        t.input.append(bytes);
        if (!closed()) conn->on_readable();
        pump();
    }
    void end_input() {
        t.eof = true;
        if (!closed()) conn->on_readable();
        pump();
    }
    void client_reads(size_t n) {
        t.write_budget = n;
        if (!closed() && conn->write_blocked()) conn->on_writable();
        pump();
    }
    void fire(timer_kind k) {
        if (k == timer_kind::write) {
            ASSERT_TRUE(write_armed);
            write_armed = false;
        } else {
            ASSERT_EQ(keepalive, k);
            keepalive = timer_kind::none;
        }
        conn->on_timer(k);
        pump();
    }
    std::vector<server_frame> out(bool partial = false) const {
        return frames_of(t.output, partial);
    }
    std::string texts() const {
        std::string s;
        for (const auto& m : received)
            s += (s.empty() ? "" : "|") + std::string(m.text ? "t:" : "b:") + m.data;
        return s;
    }
};

// ---- conversations: whole, split at every byte, one byte at a time, as leftover ---------------

struct conversation {
    const char* name;
    std::string input;
    std::string messages;  // harness::texts()
    std::string output;    // describe() of the server's frames, pongs left out
    uint16_t disconnect;   // 0: none
    bool ends;             // the server closed or sent FIN
};

std::string bytes_of(std::initializer_list<int> v) {
    std::string s;
    for (int c : v)
        s += static_cast<char>(c);
    return s;
}

std::vector<conversation> conversations() {
    const std::string big(70000, 'B');
    return {
        {"text and binary", text("hello") + binary(bytes_of({0, 1, 2})),
         "t:hello|b:" + bytes_of({0, 1, 2}), "", 0, false},
        {"fragments with pings between them",
         text("Hel", false) + ping("a") + cont("lo ", false) + ping("b") + cont("world"),
         "t:Hello world", "", 0, false},
        {"zero-length frames", text("", false) + cont("", false) + cont("x") + binary(""),
         "t:x|b:", "", 0, false},
        {"UTF-8 code point split across fragments", text("\xe2\x82", false) + cont("\xac"),
         "t:\xe2\x82\xac", "", 0, false},
        {"16-bit and 64-bit lengths", binary(std::string(300, 'm')) + binary(big),
         "b:" + std::string(300, 'm') + "|b:" + big, "", 0, false},
        {"close with code and reason", text("x") + close(1000, "bye"), "t:x", "close:1000", 1000,
         true},
        {"close without payload", close_raw(""), "", "close:1005", 1005, true},
        {"application close codes", close(4999, "\xc3\xa9"), "", "close:4999", 4999, true},
        {"nothing after the client's close is read", close(1001) + text("late") + "garbage", "",
         "close:1001", 1001, true},
        {"invalid UTF-8 in the middle of a fragmented text",
         text("ab", false) + cont("\xff", false) + cont("c"), "", "close:1007", 1006, true},
        {"text ending inside a code point", text("\xe2\x82"), "", "close:1007", 1006, true},
        {"close payload of one byte", close_raw("\x03"), "", "close:1002", 1006, true},
        {"close code 1005 on the wire", close(1005), "", "close:1002", 1006, true},
        {"close code 999", close(999), "", "close:1002", 1006, true},
        {"close code 5000", close(5000), "", "close:1002", 1006, true},
        {"close reason not UTF-8", close(1000, "\xc0\xaf"), "", "close:1007", 1006, true},
        {"unmasked frame", frame(0x81, "hi", false), "", "close:1002", 1006, true},
        {"reserved opcode", frame(0x83, "x"), "", "close:1002", 1006, true},
        {"RSV1 without deflate", frame(0xC1, "x"), "", "close:1002", 1006, true},
        {"continuation without a start", cont("x"), "", "close:1002", 1006, true},
        {"new message inside a fragmented one", text("a", false) + text("b"), "", "close:1002",
         1006, true},
        {"ping over 125 bytes", ping(std::string(126, 'p')), "", "close:1002", 1006, true},
        {"fragmented ping", frame(0x09, "p"), "", "close:1002", 1006, true},
        {"2^63 length", frame(0x82, "", true, uint64_t{1} << 63), "", "close:1002", 1006, true},
        {"100 MiB declared", frame(0x82, "abc", true, uint64_t{100} << 20), "", "close:1009", 1006,
         true},
        {"messages before an error are delivered", text("one") + text("two") + frame(0x8B, ""),
         "t:one|t:two", "close:1002", 1006, true},
    };
}

struct run_result {
    std::string messages, output, pongs;
    uint16_t disconnect = 0;
    int disconnects = 0;
    bool ends = false;
};

run_result finish(harness& h) {
    run_result r;
    r.messages = h.texts();
    std::vector<server_frame> frames, pongs;
    for (auto& f : h.out())
        (f.op == 0xA ? pongs : frames).push_back(f);
    r.output = describe(frames);
    r.pongs = describe(pongs);
    r.disconnect = h.disconnects ? h.code : 0;
    r.disconnects = h.disconnects;
    r.ends = h.t.shut || h.t.closed;
    return r;
}

void check(const conversation& c, const run_result& r, const std::string& how) {
    EXPECT_EQ(r.messages, c.messages) << c.name << " " << how;
    EXPECT_EQ(r.output, c.output) << c.name << " " << how;
    EXPECT_EQ(r.disconnect, c.disconnect) << c.name << " " << how;
    EXPECT_LE(r.disconnects, 1) << c.name << " " << how;
    EXPECT_EQ(r.ends, c.ends) << c.name << " " << how;
}

TEST(WsConversation, WholeSplitAtEveryByteAndAsLeftover) {
    for (const auto& c : conversations()) {
        const size_t step = c.input.size() > 2000 ? 997 : 1;
        for (size_t k = 0; k <= c.input.size(); k += step) {
            harness h;
            h.open();
            h.feed(c.input.substr(0, k));
            h.feed(c.input.substr(k));
            check(c, finish(h), "split at " + std::to_string(k));
            harness l;  // the first k bytes came with the upgrade request
            l.open(c.input.substr(0, k));
            l.feed(c.input.substr(k));
            check(c, finish(l), "leftover " + std::to_string(k));
        }
    }
}

TEST(WsConversation, OneByteAtATime) {
    for (const auto& c : conversations()) {
        harness h;
        h.cfg.read_chunk = 1;
        h.open();
        for (char ch : c.input)
            h.feed(std::string_view(&ch, 1));
        check(c, finish(h), "one byte at a time");
    }
}

// §5.5.2: every ping gets its pong, in order, while the client reads what we send (Autobahn
// 2.10 and 2.11 count them), however the bytes are split.
TEST(WsConversation, EveryPingGetsItsPongWhileTheClientReads) {
    const std::string input = ping("1") + ping("2") + text("x") + ping("3");
    for (size_t k = 0; k <= input.size(); ++k) {
        harness h;
        h.open();
        h.feed(input.substr(0, k));
        h.feed(input.substr(k));
        const run_result r = finish(h);
        EXPECT_EQ(r.messages, "t:x");
        EXPECT_EQ(r.pongs, "pong:1 | pong:2 | pong:3") << "split at " << k;
    }
}

// ---- the leftover -------------------------------------------------------------------------------

TEST(WsLeftover, ParsedBeforeTheSocketAndNothingLost) {
    // The leftover ends inside a frame header; the header continues with the socket's bytes.
    const std::string all = text("first") + text("sec", false) + cont("ond");
    for (size_t k = 0; k <= all.size(); ++k) {
        harness h;
        h.t.input = all.substr(k);
        h.open(all.substr(0, k));
        EXPECT_EQ(h.texts(), "t:first|t:second") << k;
        EXPECT_TRUE(h.conn->idle());
    }
}

TEST(WsLeftover, ErrorInTheLeftoverClosesAtStart) {
    harness h;
    h.open(frame(0x81, "x", false));
    EXPECT_EQ(describe(h.out()), "close:1002");
    EXPECT_EQ(h.disconnects, 1);
    EXPECT_EQ(h.code, 1006);
}

TEST(WsLeftover, NothingHappensBeforeStart) {
    harness h;
    h.ex = std::make_shared<http::exchange>(h.events, nullptr);
    h.conn = std::make_unique<ws::connection>(h.t, h, h.cfg, h.ex, text("early"));
    h.ex->rebind(h.conn.get());
    h.conn->on_readable();
    EXPECT_TRUE(h.ex->ws_inbox.empty());
    EXPECT_EQ(h.t.reads, 0);
    h.conn->start();
    h.pump();
    EXPECT_EQ(h.texts(), "t:early");
}

// ---- sending ------------------------------------------------------------------------------------

TEST(WsSend, MessagesGoOutAsSingleUnmaskedFrames) {
    harness h;
    h.open();
    EXPECT_EQ(h.ex->ws_send(true, "hi").status, http::send_status::proceed);
    EXPECT_EQ(h.ex->ws_send(false, std::string(70000, 'z')).status, http::send_status::proceed);
    EXPECT_EQ(h.ex->ws_send(false, "").status, http::send_status::proceed);
    h.pump();
    const auto f = h.out();
    ASSERT_EQ(f.size(), 3u);
    EXPECT_EQ(h.t.output.substr(0, 4), "\x81\x02hi");
    EXPECT_EQ(f[1].op, 2);
    EXPECT_EQ(f[1].payload, std::string(70000, 'z'));
    EXPECT_EQ(f[2].payload, "");
    EXPECT_EQ(h.ex->bytes_sent, 70002u);
}

TEST(WsSend, AfterTheAppClosedOrTheClientLeftAnswersClosed) {
    harness h;
    h.open();
    h.ex->ws_close(1000, "done");
    EXPECT_EQ(h.ex->ws_send(true, "late").status, http::send_status::closed);
    h.pump();
    EXPECT_EQ(describe(h.out(), true), "close:1000:done");

    harness g;
    g.open();
    g.end_input();
    EXPECT_EQ(g.code, 1006);
    EXPECT_FALSE(g.ex->connected());
    EXPECT_EQ(g.ex->ws_send(true, "late").status, http::send_status::closed);
}

TEST(WsSend, BackpressureWaitThenDrainBelowLowWater) {
    harness h;
    h.cfg.write_high_water = 1000;
    h.cfg.write_low_water = 100;
    h.t.write_budget = 0;  // the client reads nothing yet
    h.open();
    EXPECT_EQ(h.ex->ws_send(false, std::string(600, 'a')).status, http::send_status::proceed);
    EXPECT_EQ(h.ex->ws_send(false, std::string(600, 'b')).status, http::send_status::wait);
    h.pump();
    EXPECT_TRUE(h.conn->write_blocked());
    EXPECT_TRUE(h.write_armed);
    EXPECT_EQ(h.drains, 0);
    h.client_reads(700);  // ~500 left: above the low water
    EXPECT_EQ(h.drains, 0);
    h.client_reads(SIZE_MAX);
    EXPECT_EQ(h.drains, 1);
    EXPECT_FALSE(h.write_armed);
    EXPECT_EQ(h.out().size(), 2u);
}

TEST(WsSend, ClientThatStopsReadingIsCutByTheWriteTimer) {
    harness h;
    h.t.write_budget = 10;
    h.open();
    EXPECT_EQ(h.ex->ws_send(false, std::string(100000, 'w')).status, http::send_status::proceed);
    h.pump();
    h.fire(timer_kind::write);
    EXPECT_TRUE(h.closed());
    EXPECT_TRUE(h.t.aborted);
    EXPECT_EQ(h.code, 1006);
    ASSERT_EQ(h.refusals.size(), 1u);
    EXPECT_EQ(h.refusals[0], http::refusal::write_timeout);
    EXPECT_EQ(h.conn->memory(), 0u);
}

TEST(WsSend, CloseReasonIsCutAtACodePointWithin123Bytes) {
    harness h;
    h.open();
    std::string reason(122, 'r');
    reason += "\xe2\x82\xac";  // 125 bytes: the euro sign does not fit
    h.ex->ws_close(4000, reason);
    h.pump();
    const auto f = h.out();
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].payload, code_bytes(4000) + std::string(122, 'r'));
}

TEST(WsSend, InvalidAppCloseCodeSendsACloseWithoutCode) {
    for (uint16_t bad : {0, 999, 1005, 1006, 1015, 5000}) {
        harness h;
        h.open();
        h.ex->ws_close(bad, "x");
        h.pump();
        const auto f = h.out();
        ASSERT_EQ(f.size(), 1u);
        EXPECT_EQ(f[0].payload, "") << bad;
    }
}

// ---- the closing handshake ----------------------------------------------------------------------

TEST(WsClose, ClientCloseIsEchoedAndTheServerClosesFirst) {
    harness h;
    h.open();
    h.feed(close(1000, "bye"));
    EXPECT_EQ(h.t.output, std::string("\x88\x05", 2) + code_bytes(1000) + "bye");
    // Our FIN first (§7.1.1); what crosses it is read and dropped until the client's EOF, so
    // the close never becomes a reset that discards our close frame.
    EXPECT_TRUE(h.t.shut);
    EXPECT_FALSE(h.t.closed);
    h.feed(pong("crossed our close"));
    EXPECT_FALSE(h.t.closed);
    h.end_input();
    EXPECT_TRUE(h.t.closed);
    EXPECT_FALSE(h.t.aborted);
    EXPECT_EQ(h.disconnects, 1);
    EXPECT_EQ(h.code, 1000);
    EXPECT_EQ(h.reason, "bye");
}

TEST(WsClose, AppCloseWaitsForTheClientsCloseAndReportsItsCode) {
    harness h;
    h.open();
    h.ex->ws_close(1000, "");
    h.pump();
    EXPECT_EQ(h.conn->current_state(), state::closing);
    EXPECT_EQ(h.keepalive, timer_kind::close);
    EXPECT_EQ(h.disconnects, 0);
    h.feed(text("dropped"));  // data after our close is read but not delivered
    EXPECT_TRUE(h.received.empty());
    h.feed(close(4001, "ok"));
    EXPECT_EQ(h.disconnects, 1);
    EXPECT_EQ(h.code, 4001);
    EXPECT_EQ(h.reason, "ok");
    EXPECT_TRUE(h.t.shut);
    h.end_input();
    EXPECT_TRUE(h.closed());
    EXPECT_EQ(describe(h.out()), "close:1000");  // one close frame: ours, no echo
}

TEST(WsClose, CloseTimerEndsTheWaitForTheClientsEof) {
    harness h;
    h.open();
    h.feed(close(1000));
    EXPECT_TRUE(h.t.shut);
    EXPECT_EQ(h.keepalive, timer_kind::close);  // the client never closes its side
    h.fire(timer_kind::close);
    EXPECT_TRUE(h.closed());
    EXPECT_FALSE(h.t.aborted);  // everything was written: a plain close
}

TEST(WsClose, CloseTimerEndsAnUnansweredClose) {
    harness h;
    h.open();
    h.ex->ws_close(1000, "");
    h.pump();
    h.feed(ping("still"));  // a trickling client does not push the deadline back
    EXPECT_EQ(h.keepalive, timer_kind::close);
    h.fire(timer_kind::close);
    EXPECT_TRUE(h.closed());
    EXPECT_EQ(h.code, 1006);
    EXPECT_EQ(describe(h.out()), "close:1000");  // no pong after our close
}

TEST(WsClose, EofAndResetWithoutCloseFrameAre1006) {
    harness h;
    h.open();
    h.feed(text("a"));
    h.end_input();
    EXPECT_EQ(h.texts(), "t:a");
    EXPECT_EQ(h.code, 1006);
    EXPECT_TRUE(h.closed());
    EXPECT_TRUE(h.t.output.empty());

    harness r;
    r.open();
    r.t.read_error = ECONNRESET;
    r.conn->on_readable();
    r.pump();
    EXPECT_EQ(r.code, 1006);
    EXPECT_TRUE(r.closed());

    harness u;
    u.open();
    u.conn->on_hangup();
    u.pump();
    EXPECT_EQ(u.disconnects, 1);
    EXPECT_EQ(u.code, 1006);
}

TEST(WsClose, ProtocolErrorSendsCloseThenFinThenLingersUntilEof) {
    harness h;
    h.open();
    h.feed(text("ok") + cont("x") + text("never"));
    EXPECT_EQ(h.texts(), "t:ok");
    const auto f = h.out();
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(close_code_of(f[0]), 1002);
    EXPECT_GT(f[0].payload.size(), 2u);  // the rule that was broken, for the client's logs
    EXPECT_TRUE(h.t.shut);
    EXPECT_FALSE(h.t.closed);
    EXPECT_EQ(h.code, 1006);
    EXPECT_EQ(h.keepalive, timer_kind::close);
    h.feed(std::string(1000, 'g'));  // read and dropped
    EXPECT_FALSE(h.closed());
    h.end_input();
    EXPECT_TRUE(h.closed());
    EXPECT_EQ(h.disconnects, 1);
}

TEST(WsClose, LingeringIsBoundedByBytesAndTheCloseTimer) {
    harness h;
    h.cfg.linger_max_bytes = 100;
    h.open();
    h.feed(cont("x"));
    h.feed(std::string(101, 'g'));
    EXPECT_TRUE(h.closed());

    harness t;
    t.open();
    t.feed(cont("x"));
    t.fire(timer_kind::close);
    EXPECT_TRUE(t.closed());
}

TEST(WsClose, AppAbortFailsWith1011) {
    harness h;
    h.open();
    h.ex->abort();
    h.pump();
    EXPECT_EQ(describe(h.out()), "close:1011");
    EXPECT_EQ(h.code, 1006);
    EXPECT_EQ(h.conn->current_state(), state::failing);
}

TEST(WsClose, HttpCallsAfterTheUpgradeAnswerClosed) {
    harness h;
    h.open();
    const http::response_sink::head head{200, {}};
    EXPECT_EQ(h.ex->send(&head, "x", false).status, http::send_status::closed);
    h.ex->want_body();
    h.pump();
    EXPECT_TRUE(h.t.output.empty());
}

TEST(WsClose, MessagesQueuedBeforeTheAppsCloseGoFirst) {
    harness h;
    h.t.write_budget = 0;
    h.open();
    h.ex->ws_send(true, "a");
    h.ex->ws_send(true, "b");
    h.ex->ws_close(1000, "");
    h.pump();
    h.client_reads(SIZE_MAX);
    EXPECT_EQ(describe(h.out()), "text:a | text:b | close:1000");
}

TEST(WsClose, ClientCloseWaitsForBlockedOutputThenCloses) {
    harness h;
    h.t.write_budget = 0;
    h.open();
    h.ex->ws_send(false, std::string(5000, 'o'));
    h.pump();
    h.feed(close(1000));
    EXPECT_EQ(h.conn->current_state(), state::draining);
    EXPECT_EQ(h.code, 1000);
    EXPECT_TRUE(h.write_armed);
    EXPECT_EQ(h.keepalive, timer_kind::close);
    h.client_reads(SIZE_MAX);
    EXPECT_TRUE(h.t.shut);
    h.end_input();
    EXPECT_TRUE(h.closed());
    EXPECT_FALSE(h.t.aborted);
    EXPECT_EQ(describe(h.out()), "binary:" + std::string(5000, 'o') + " | close:1000");
}

TEST(WsClose, AppCloseResumesReadingPausedByTheQueue) {
    harness h;
    h.cfg.max_queue = 1;
    h.auto_take = false;
    h.open();
    h.feed(text("a") + text("b") + close(1000));
    EXPECT_EQ(h.ex->ws_inbox.size(), 1u);
    h.ex->ws_close(1000, "");
    h.pump();
    EXPECT_TRUE(h.t.shut);  // "b" dropped, the client's close read, the handshake done
    h.end_input();
    EXPECT_TRUE(h.closed());
    EXPECT_EQ(h.code, 1000);
    EXPECT_EQ(h.ex->ws_inbox.size(), 1u);  // what was delivered stays for the app
}

TEST(WsClose, NoCloseTimeoutClosesOnceOurCloseIsOut) {
    harness h;
    h.cfg.close_timeout_ms = 0;
    h.open();
    h.ex->ws_close(1000, "");
    h.pump();
    EXPECT_TRUE(h.closed());
    EXPECT_EQ(h.code, 1006);
    harness f;
    f.cfg.close_timeout_ms = 0;
    f.open();
    f.feed(cont("x"));
    EXPECT_TRUE(f.closed());  // no lingering without a deadline
}

TEST(WsClose, WriteErrorIs1006) {
    harness h;
    h.open();
    h.t.write_error = EPIPE;
    h.ex->ws_send(true, "x");
    h.pump();
    EXPECT_TRUE(h.closed());
    EXPECT_EQ(h.disconnects, 1);
    EXPECT_EQ(h.code, 1006);
}

TEST(WsLeftover, LargerThanAReadChunk) {
    harness h;
    h.cfg.read_chunk = 16;
    std::string all;
    for (int i = 0; i < 50; ++i)
        all += text("m" + std::to_string(i));
    h.open(all);
    EXPECT_EQ(h.received.size(), 50u);
    EXPECT_EQ(h.conn->memory(), 0u);
}

// ---- graceful shutdown --------------------------------------------------------------------------

TEST(WsShutdown, GoingAwayToTheClientAndTheAppThenTheHandshake) {
    harness h;
    h.open();
    h.conn->begin_shutdown();
    h.pump();
    EXPECT_EQ(describe(h.out()), "close:1001");
    EXPECT_EQ(h.disconnects, 1);
    EXPECT_EQ(h.code, 1001);
    EXPECT_EQ(h.keepalive, timer_kind::close);
    EXPECT_EQ(h.ex->ws_send(true, "x").status, http::send_status::closed);
    h.feed(close(1001));
    h.end_input();
    EXPECT_TRUE(h.closed());
    EXPECT_EQ(h.disconnects, 1);  // exactly once
    EXPECT_EQ(h.code, 1001);

    harness silent;  // a client that never answers: the close timer
    silent.open();
    silent.conn->begin_shutdown();
    silent.pump();
    silent.fire(timer_kind::close);
    EXPECT_TRUE(silent.closed());
    EXPECT_EQ(silent.disconnects, 1);
}

TEST(WsShutdown, ShutdownCodeIsConfigurableAndQueuedMessagesGoFirst) {
    harness h;
    h.cfg.shutdown_code = 1012;
    h.open();
    h.ex->ws_send(true, "last words");
    h.conn->begin_shutdown();
    h.pump();
    EXPECT_EQ(describe(h.out()), "text:last words | close:1012");
    EXPECT_EQ(h.code, 1012);
}

// ---- keepalive ----------------------------------------------------------------------------------

TEST(WsKeepalive, PingThenPongRearmsThePing) {
    harness h;
    h.cfg.ping_interval_ms = 20000;
    h.open();
    EXPECT_EQ(h.keepalive, timer_kind::ping);
    h.fire(timer_kind::ping);
    auto f = h.out();
    ASSERT_EQ(f.size(), 1u);
    EXPECT_EQ(f[0].op, 0x9);
    EXPECT_EQ(f[0].payload.size(), 4u);
    EXPECT_EQ(h.keepalive, timer_kind::pong);
    h.feed(pong("nope"));  // not our payload: ignored
    EXPECT_EQ(h.keepalive, timer_kind::pong);
    h.now += 35;
    h.feed(pong(f[0].payload));
    EXPECT_EQ(h.keepalive, timer_kind::ping);
    EXPECT_EQ(h.conn->ping_rtt_ms(), 35u);
    h.fire(timer_kind::ping);
    f = h.out();
    ASSERT_EQ(f.size(), 2u);
    EXPECT_NE(f[1].payload, f[0].payload);
}

TEST(WsKeepalive, MissingPongCloses1011) {
    harness h;
    h.cfg.ping_interval_ms = 20000;
    h.open();
    h.fire(timer_kind::ping);
    h.feed(text("traffic is not a pong"));
    h.fire(timer_kind::pong);
    const auto f = h.out();
    ASSERT_EQ(f.size(), 2u);
    EXPECT_EQ(close_code_of(f[1]), 1011);
    EXPECT_EQ(f[1].payload.substr(2), "keepalive ping timeout");
    EXPECT_EQ(h.code, 1006);
    EXPECT_TRUE(h.t.shut);
}

TEST(WsKeepalive, PingTimeoutZeroNeverWaitsForPongs) {
    harness h;
    h.cfg.ping_interval_ms = 20000;
    h.cfg.ping_timeout_ms = 0;
    h.open();
    h.fire(timer_kind::ping);
    EXPECT_EQ(h.keepalive, timer_kind::ping);
    h.fire(timer_kind::ping);
    EXPECT_EQ(h.out().size(), 2u);
}

TEST(WsKeepalive, NoPingWhileOutputWaitsOnTheClient) {
    harness h;
    h.cfg.ping_interval_ms = 20000;
    h.t.write_budget = 0;
    h.open();
    h.ex->ws_send(true, "stuck");
    h.pump();
    h.fire(timer_kind::ping);
    EXPECT_EQ(h.keepalive, timer_kind::ping);  // skipped, re-armed
    h.client_reads(SIZE_MAX);
    EXPECT_EQ(describe(h.out()), "text:stuck");
}

TEST(WsKeepalive, SuspendedWhileTheAppHoldsReadingPaused) {
    harness h;
    h.cfg.ping_interval_ms = 20000;
    h.cfg.max_queue = 1;
    h.auto_take = false;
    h.open();
    h.feed(text("a") + text("b"));
    EXPECT_EQ(h.keepalive, timer_kind::none);
    h.take();  // "b" comes in and fills the queue again
    h.pump();
    EXPECT_EQ(h.keepalive, timer_kind::none);
    h.take();
    h.pump();
    EXPECT_EQ(h.keepalive, timer_kind::ping);
    EXPECT_EQ(h.texts(), "t:a|t:b");
}

// ---- backpressure and bounds on input -----------------------------------------------------------

TEST(WsLimits, ReadingPausesAtMaxQueueAndResumesWhenTaken) {
    harness h;
    h.cfg.max_queue = 2;
    h.cfg.read_chunk = 64;
    h.auto_take = false;
    h.open();
    std::string input;
    for (int i = 0; i < 10; ++i)
        input += text("message " + std::to_string(i));
    h.feed(input);
    EXPECT_EQ(h.ex->ws_inbox.size(), 2u);
    EXPECT_LT(h.t.pos, input.size());  // the rest waits in the socket
    for (int i = 0; i < 5 && h.t.pos < input.size(); ++i) {
        h.take();
        h.pump();
    }
    h.take();
    h.pump();
    h.take();
    EXPECT_EQ(h.received.size(), 10u);
    EXPECT_EQ(h.received[9].data, "message 9");
}

TEST(WsLimits, DeclaredHugeMessageIs1009WithoutAllocatingIt) {
    harness h;
    h.cfg.max_message = 1 << 20;
    h.open();
    h.feed(frame(0x82, std::string(1000, 'x'), true, uint64_t{100} << 20));
    EXPECT_EQ(describe(h.out()), "close:1009");
    EXPECT_LE(h.conn->memory(), h.cfg.read_chunk);
    // Fragments adding up past the limit: 1009 at the frame that crosses it.
    harness f;
    f.cfg.max_message = 1000;
    f.open();
    f.feed(binary(std::string(600, 'a'), false) + cont(std::string(600, 'b')));
    EXPECT_EQ(describe(f.out()), "close:1009");
    EXPECT_TRUE(f.received.empty());
}

TEST(WsLimits, MessageAtTheLimitIsDelivered) {
    harness h;
    h.cfg.max_message = 1000;
    h.open();
    h.feed(binary(std::string(400, 'a'), false) + cont(std::string(600, 'b')));
    ASSERT_EQ(h.received.size(), 1u);
    EXPECT_EQ(h.received[0].data.size(), 1000u);
}

// Regression (fuzz_ws_connection): with --ws-max-size below 125 a longer ping was refused as a
// frame over the limit (1009); control frames may always carry 125 bytes (§5.5).
TEST(WsLimits, SmallMaxMessageStillTakesFullSizeControlFrames) {
    harness h;
    h.cfg.max_message = 64;
    h.open();
    h.feed(ping(std::string(125, 'p')) + text(std::string(64, 't')) +
           close(1000, std::string(100, 'r')));
    EXPECT_EQ(describe(h.out()), "pong:" + std::string(125, 'p') + " | close:1000");
    EXPECT_EQ(h.received.size(), 1u);
    EXPECT_EQ(h.code, 1000);
    harness over;
    over.cfg.max_message = 64;
    over.open();
    over.feed(text(std::string(65, 't')));
    EXPECT_EQ(describe(over.out()), "close:1009");
}

TEST(WsLimits, PingFloodFromAClientThatDoesNotReadStaysBounded) {
    harness h;
    h.cfg.write_high_water = 4096;
    h.t.write_budget = 0;
    h.open();
    std::string flood;
    for (int i = 0; i < 20000; ++i)
        flood += ping(std::string(100, static_cast<char>('a' + i % 26)));
    for (size_t at = 0; at < flood.size(); at += 7000) {
        h.feed(flood.substr(at, 7000));
        EXPECT_LE(h.conn->memory(), h.cfg.write_high_water + h.cfg.read_chunk + 256);
    }
    EXPECT_EQ(h.t.pos, flood.size());
    h.client_reads(SIZE_MAX);
    const auto f = h.out();
    EXPECT_LE(f.size(), h.cfg.write_high_water / 102 + 3);  // pongs stop at the high water
    EXPECT_EQ(f.back().payload, std::string(100, static_cast<char>('a' + 19999 % 26)));
}

// ---- permessage-deflate -------------------------------------------------------------------------

ws::deflate_params takeover(uint8_t client_bits = 15, uint8_t server_bits = 12) {
    ws::deflate_params p;
    p.client_max_window_bits = client_bits;
    p.server_max_window_bits = server_bits;
    return p;
}

TEST(WsDeflate, CompressedMessagesFromTheClientWithContextTakeover) {
    zclient z;
    const std::string m1 = "{\"type\":\"hello\",\"payload\":\"aaaaaaaaaaaaaaaaaaaaaaaa\"}";
    const std::string m2 = m1;  // mostly back-references into the first
    const std::string c1 = z.compress(m1), c2 = z.compress(m2);
    const std::string input = frame(0xC1, c1) + frame(0x42, c2.substr(0, 3)) + ping("p") +
                              cont(c2.substr(3)) + text("plain");
    for (size_t k = 0; k <= input.size(); ++k) {
        harness h;
        h.open({}, takeover());
        h.feed(input.substr(0, k));
        h.feed(input.substr(k));
        EXPECT_EQ(h.texts(), "t:" + m1 + "|b:" + m2 + "|t:plain") << k;
    }
}

TEST(WsDeflate, ServerMessagesDecompressWithTheClientsZlib) {
    harness h;
    h.open({}, takeover(15, 12));
    zclient z(15, 12);
    std::string noise(300000, '\0');
    uint32_t x = 7;
    for (auto& c : noise) {  // compresses poorly: every 64 KiB slice has output of its own
        x = x * 1103515245 + 12345;
        c = static_cast<char>('a' + (x >> 24) % 16);
    }
    std::vector<std::string> sent = {"hello", "hello", "", std::string(20000, 'q'), noise, "after"};
    for (const auto& m : sent) {
        EXPECT_NE(h.ex->ws_send(m.size() % 2 == 0, m).status, http::send_status::closed);
        h.pump();
    }
    const auto f = h.out();
    const auto msgs = messages_of(f, &z);
    ASSERT_EQ(msgs.size(), sent.size());
    for (size_t i = 0; i < sent.size(); ++i) {
        EXPECT_EQ(msgs[i].data, sent[i]) << i;
        EXPECT_EQ(msgs[i].text, sent[i].size() % 2 == 0) << i;
    }
    size_t frames_of_large = 0;
    for (const auto& fr : f)
        frames_of_large += fr.op == 0;
    EXPECT_GE(frames_of_large, 3u);  // the 300 KB message went in slices
    EXPECT_LT(h.t.output.size(), 200000u);
}

TEST(WsDeflate, LargeMessageIsCompressedAsTheClientReads) {
    harness h;
    h.cfg.write_high_water = 64 * 1024;
    h.cfg.write_low_water = 16 * 1024;
    h.t.write_budget = 0;
    h.open({}, takeover());
    std::string big(4 << 20, '\0');
    uint32_t x = 1;
    for (auto& c : big) {  // incompressible-ish
        x = x * 1103515245 + 12345;
        c = static_cast<char>(x >> 24);
    }
    EXPECT_EQ(h.ex->ws_send(false, big).status, http::send_status::wait);
    h.pump();
    // Compressed output so far stays near the low-water mark, not the whole message.
    EXPECT_LE(h.conn->memory(), big.size() + 2 * 64 * 1024 + 4096);
    EXPECT_TRUE(h.t.output.empty());
    for (int i = 0; i < 1000 && h.drains == 0; ++i)
        h.client_reads(32 * 1024);
    h.client_reads(SIZE_MAX);
    EXPECT_EQ(h.drains, 1);
    zclient z(15, 12);
    const auto msgs = messages_of(h.out(), &z);
    ASSERT_EQ(msgs.size(), 1u);
    EXPECT_TRUE(msgs[0].data == big);
}

TEST(WsDeflate, DeflateBombStopsAt1009WithBoundedMemory) {
    zclient z;
    const std::string zeros(8 << 20, '\0');
    const std::string bomb = z.compress(zeros);  // ~8 KiB for 8 MiB
    harness h;
    h.cfg.max_message = 1 << 20;
    h.open({}, takeover());
    h.feed(frame(0xC2, bomb));
    EXPECT_EQ(describe(h.out()), "close:1009");
    EXPECT_TRUE(h.received.empty());
    EXPECT_LE(h.conn->memory(), 64u * 1024);  // the partial message is dropped
}

TEST(WsDeflate, InvalidCompressedDataIs1007) {
    harness h;
    h.open({}, takeover());
    h.feed(frame(0xC1, "\xff\xff\xff\xff"));
    EXPECT_EQ(describe(h.out()), "close:1007");
}

TEST(WsDeflate, CompressedTextThatIsNotUtf8Is1007) {
    zclient z;
    harness h;
    h.open({}, takeover());
    h.feed(frame(0xC1, z.compress("ok \xff not utf-8")));
    EXPECT_EQ(describe(h.out()), "close:1007");
}

TEST(WsDeflate, NoContextTakeoverReleasesZlibStateWhenIdle) {
    ws::deflate_params p = takeover(12, 12);
    p.client_no_context_takeover = p.server_no_context_takeover = true;
    harness h;
    h.open({}, p);
    zclient z(12, 12);
    for (int i = 0; i < 3; ++i) {
        h.feed(frame(0xC1, z.compress("message")));
        deflateReset(&z.def);
        h.ex->ws_send(true, "reply reply reply");
        h.pump();
        EXPECT_LE(h.conn->memory(), 256u) << i;  // the zlib streams' holder, no zlib state
        EXPECT_TRUE(h.conn->idle());
    }
    EXPECT_EQ(h.texts(), "t:message|t:message|t:message");
    // Each server message decompresses alone (no context taken over).
    for (const auto& fr : h.out()) {
        zclient fresh(12, 12);
        EXPECT_EQ(fresh.decompress(fr.payload), "reply reply reply");
    }
}

TEST(WsDeflate, ContextTakeoverKeepsBoundedZlibState) {
    harness h;
    h.open({}, takeover(12, 12));
    zclient z(12, 12);
    h.feed(frame(0xC1, z.compress("message")));
    h.ex->ws_send(true, "reply");
    h.pump();
    EXPECT_GT(h.conn->memory(), 0u);
    EXPECT_LE(h.conn->memory(), 64u * 1024);  // inflater 11 KiB + deflater 38 KiB at window 12
}

// ---- memory -------------------------------------------------------------------------------------

TEST(WsMemory, IdleConnectionHoldsNoMemory) {
    core::block_pool pool(16 * 1024, 4);
    harness h;
    h.cfg.read_blocks = &pool;
    h.open(text("leftover"));
    h.feed(text("a") + ping("p"));
    h.ex->ws_send(true, "b");
    h.pump();
    EXPECT_TRUE(h.conn->idle());
    EXPECT_EQ(h.conn->memory(), 0u);
    EXPECT_LE(sizeof(ws::connection), 832u);
    std::printf("sizeof(ws::connection) = %zu, sizeof(http::exchange) = %zu\n",
                sizeof(ws::connection), sizeof(http::exchange));
}

TEST(WsMemory, ShortReadEndsReadingWhenTheTransportSaysItDrains) {
    for (bool drains : {false, true}) {
        harness h;
        h.open();
        h.t.input = text("x");
        h.conn->on_readable(drains);
        h.pump();
        EXPECT_EQ(h.texts(), "t:x");
        EXPECT_EQ(h.t.reads, drains ? 2 : 3) << drains;  // start() read once (EAGAIN)
    }
}

}  // namespace
