// fuzz_connection — libFuzzer target: a whole http1::connection over an in-memory socket, with
// an app answering through http::exchange (see connection_harness.hpp).
//
// Input layout: eight control bytes, then the bytes the client sends.
//   byte 0  bits 0-2: how the client segments its bytes (see segment_sizes)
//           bit 3: the client half-closes after its last byte
//           bit 4: the server begins a graceful shutdown after a segment chosen by byte 2
//           bit 5: the armed timers (write, then read) fire at the end
//           bit 6: the peer resets the connection after a segment chosen by byte 2: either the
//                  loop reports EPOLLERR (on_hangup) or reads and writes start failing
//                  (ECONNRESET, EPIPE) and the connection finds out by itself
//           bit 7: differential run: deterministic app, and the same bytes sent again in one
//                  segment must produce the same requests and the same responses
//   byte 1: app seed (which plan answers each request, sizes, statuses)
//   byte 2: segmentation seed
//   byte 3: client reading: 0 = reads everything; else reads (byte3 & 0x7f) * 64 bytes per
//           segment it sends, and with bit 7 never reads the rest (a zero-window client)
//   byte 4: connection_config: 0 = defaults; else tiny limits (see make_config)
//   byte 5: bits 0-6: plan for every request if below plan::count, else one drawn per request;
//           bit 7: no server header
//   byte 6: bits 0-3: max_body: 0 = no limit, else 1 << n bytes (413)
//           bits 4-5: admission (concurrency limit): admit all, refuse every 2nd, every 3rd, all
//           bit 6: the armed read timer (keep-alive, header, body, linger) fires after a
//                  segment chosen by byte 2, and so does the minimum-rate timer; bit 7: the
//                  same for the write timer (after the hand-over: the WebSocket's keepalive-slot
//                  timer, ping, pong or close, and its write timer)
//   byte 7: WebSocket (cfg.websocket): bit 7: off (--ws none: an upgrade is an ordinary request)
//           bit 0: permessage-deflate off; bits 1, 2: server_/client_no_context_takeover asked
//           for; bit 3: small windows (server 8, client 9) instead of 12 and 15
//           bits 4-5: ws::connection_config: defaults, small, tiny (keepalive off), mid (no
//                     close timer); bit 6: the owner has no WebSocket (upgrade() says false)
// WebSocket path: a valid handshake reaches the app (connection_harness.hpp: accept with a
// subprotocol offered or not, bad headers, deny, fail, ignore); once the 101 is written the
// owner's upgrade() builds a ws::connection over the same client socket, rebinds the exchange,
// posts ev_drain and starts it, as server::upgrade does; the rest of the client's bytes, the
// app's ws_send/ws_close/ws_taken/abort and the timers then drive that connection.
// Minimum data rates (240 bytes/s each way after a 5 s grace) are on except in differential
// runs; the owner's clock moves 700 ms per segment the client sends. Proxy headers are on, with
// every peer trusted.
// Checks (ATTACKS.md A-D): no crash, UB or leak; the output is a well-framed sequence of
// responses, each starting "HTTP/1.1 ", one per delivered request and in order; nothing after
// an error response, a "connection: close" response or a close-delimited body; no request is
// delivered after one that asked to close; buffered request body and total output stay
// bounded; the run settles (no livelock between app and connection); transport, owner and
// exchange contracts hold (no write after FIN, no call after close, admissions matched by
// request_finished, late sends answer closed); a connection left waiting on the client always
// has a deadline armed (ATTACKS.md D: no hang past the configured timeout).
// WebSocket checks: a 101 only for an accepted handshake, with the accept key of the request's
// Sec-WebSocket-Key, the app's subprotocol and the permessage-deflate parameters the
// ws::connection got; nothing read as a request after a handshake, and a denial closes; the
// bytes handed over are exactly those after the request head, within the http1 input bound;
// the dormant http1 connection never touches the socket, its timers or its owner again; after
// the 101 the output is well-formed unmasked server frames, nothing after our close frame, and
// its messages, inflated with the parameters the 101 announced, are the app's accepted sends in
// order; ws memory() within the configured bounds after every step; the exchange's events are
// coherent and ev_disconnect comes exactly once after the hand-over; closing or blocked
// WebSockets have their timers armed; in differential mode the same messages reach the app and
// the same close code, however the client's bytes were cut.
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "connection_harness.hpp"
#include "core/log.hpp"
#include "http1/chunked.hpp"
#include "http1/response.hpp"
#include "ws/connection.hpp"
#include "ws/handshake.hpp"

using namespace coachwhip_fuzz;
namespace core = coachwhip::core;
namespace ws = coachwhip::ws;

namespace {

using timer_kind = http1::connection_owner::timer_kind;
using ws_timer = ws::connection_owner::timer_kind;
using wstate = ws::connection::state;

constexpr size_t k_control = 8;
constexpr int k_max_rounds = 20000;  // pump rounds before we call it a livelock

struct controls {
    uint8_t flags = 0, app_seed = 0, split_seed = 0, reading = 0, config = 0, plans = 0;
    uint8_t limits = 0, ws = 0;

    int segment_mode() const { return flags & 7; }
    bool half_close() const { return flags & 0x08; }
    bool shutdown() const { return (flags & 0x10) && !differential(); }
    bool fire_timer() const { return (flags & 0x20) && !differential(); }
    bool reset() const { return (flags & 0x40) && !differential(); }
    bool differential() const { return flags & 0x80; }
    size_t read_per_segment() const {
        if (differential() || reading == 0) return SIZE_MAX;
        return (reading & 0x7f) * 64u;
    }
    bool never_catches_up() const { return !differential() && (reading & 0x80); }
    int fixed_plan() const { return (plans & 0x7f) < int(plan::count) ? plans & 0x7f : -1; }
    bool server_header() const { return !(plans & 0x80); }
    uint64_t max_body() const { return (limits & 0x0f) ? uint64_t{1} << (limits & 0x0f) : 0; }
    int refuse_every() const { return (limits >> 4) & 3; }  // 0 admits all; 3 refuses all
    bool read_timer_midway() const { return (limits & 0x40) && !differential(); }
    bool write_timer_midway() const { return (limits & 0x80) && !differential(); }
    bool websocket() const { return !(ws & 0x80); }
    bool refuse_upgrade() const { return ws & 0x40; }
};

ws::deflate_config make_deflate(const controls& c) {
    ws::deflate_config d;
    d.enabled = !(c.ws & 1);
    d.server_no_context_takeover = c.ws & 2;
    d.client_no_context_takeover = c.ws & 4;
    d.server_max_window_bits = (c.ws & 8) ? 8 : 12;
    d.client_max_window_bits = (c.ws & 8) ? 9 : 15;
    return d;
}

ws::connection_config make_ws_config(const controls& c) {
    ws::connection_config cfg;
    switch ((c.ws >> 4) & 3) {
        case 1:
            cfg.max_message = 1000;
            cfg.max_queue = 2;
            cfg.read_chunk = 512;
            cfg.write_high_water = 4096;
            cfg.write_low_water = 1024;
            cfg.linger_max_bytes = 4096;
            break;
        case 2:
            cfg.max_message = 64;
            cfg.max_queue = 1;
            cfg.read_chunk = 7;
            cfg.write_high_water = 256;
            cfg.write_low_water = 64;
            cfg.linger_max_bytes = 16;
            cfg.ping_interval_ms = 0;
            break;
        case 3:
            cfg.max_message = 70000;
            cfg.max_queue = 3;
            cfg.read_chunk = 512;
            cfg.write_high_water = 4096;
            cfg.write_low_water = 1024;
            cfg.close_timeout_ms = 0;
            break;
        default: break;
    }
    return cfg;
}

http1::connection_config make_config(const controls& c) {
    http1::connection_config cfg;
    cfg.date_header = false;  // deterministic bytes: error responses are compared exactly
    cfg.server_header = c.server_header();
    cfg.max_body = c.max_body();
    if (!c.differential()) cfg.min_body_rate = cfg.min_response_rate = 240;
    // Proxy headers from a trusted peer: every request's X-Forwarded-*/Forwarded fields are
    // resolved (the output bytes do not depend on them, so differential runs keep them too).
    static const coachwhip::proxy::trusted_networks everyone =
        coachwhip::proxy::parse_trusted_networks("*").networks;
    cfg.forwarded_trust = &everyone;
    if (c.config == 0) return cfg;
    const uint8_t b = c.config;
    cfg.head_limits.max_request_line = size_t{16} << (b & 3);
    cfg.head_limits.max_head = size_t{64} << ((b >> 2) & 3);
    cfg.head_limits.max_headers = 1 + ((b >> 4) & 3) * 3u;
    cfg.read_chunk = (b & 0x40) ? 7 : 512;
    cfg.body_high_water = (b & 0x80) ? 16 : 1024;
    cfg.write_high_water = 2048;
    cfg.write_low_water = 512;
    cfg.linger_max_bytes = 1024;
    cfg.ws_max_subprotocols = 1 + ((b >> 2) & 3);
    return cfg;
}

// ---- the owner: the server's loop, reduced to schedule lists and flags --------------------

struct world final : http1::connection_owner {
    // The WebSocket side of the owner (server::ws_owner): a separate object, since both owner
    // interfaces name their timer kinds alike.
    struct ws_owner final : ws::connection_owner {
        world& w;
        explicit ws_owner(world& o) : w(o) {}
        void schedule(ws::connection& c) override {
            FUZZ_CHECK(&c == w.ws_self);
            if (!c.scheduled) w.ws_scheduled.push_back(&c);
            c.scheduled = true;
        }
        void arm_timer(ws::connection& c, ws_timer k) override {
            FUZZ_CHECK(&c == w.ws_self && k != ws_timer::none && !w.ws_closed());
            if (k == ws_timer::write) {
                w.ws_write_timer = true;
            } else {
                w.ws_keepalive = k;
            }
        }
        void disarm_timer(ws::connection& c, ws_timer k) override {
            FUZZ_CHECK(&c == w.ws_self && k != ws_timer::none);
            if (k == ws_timer::write) {
                w.ws_write_timer = false;
            } else {
                w.ws_keepalive = ws_timer::none;
            }
        }
        uint64_t now_ms() const noexcept override { return w.now; }
        void on_closed(ws::connection& c) override {
            FUZZ_CHECK(&c == w.ws_self && w.t.closed);
            FUZZ_CHECK(w.ws_keepalive == ws_timer::none && !w.ws_write_timer);
            ++w.ws_closed_calls;
            FUZZ_CHECK(w.ws_closed_calls == 1);
        }
    };

    controls ctl;
    http1::connection_config cfg;
    ws::deflate_config deflate;
    ws::connection_config ws_cfg;
    client_transport t;
    guarded_transport ht{t};  // the http1 connection's view of `t`
    http::event_queue events;
    http::endpoint client{"192.0.2.1", 40000, true};
    http::endpoint server{"192.0.2.2", 8000, true};
    app_model app;
    std::unique_ptr<http1::connection> conn;
    // The connection the callbacks must come from. Not conn.get(): unique_ptr::reset() clears
    // that before the destructor runs, and the destructor still calls request_finished().
    http1::connection* self = nullptr;
    std::vector<http1::connection*> scheduled;
    timer_kind read_timer = timer_kind::none;  // the read slot: every kind but write and rate
    bool write_timer = false;
    bool rate_timer = false;
    uint64_t now = 0;  // the owner's clock (ms)
    size_t asked_admission = 0, admissions = 0, finished_requests = 0;
    int closed_calls = 0;
    bool shutting_down = false;
    // After the hand-over (server::conn_entry::ws).
    ws_owner wso{*this};
    bool upgraded = false;  // upgrade() said true: the http1 connection is dormant
    int upgrade_calls = 0;
    std::unique_ptr<ws::connection> wsc;
    ws::connection* ws_self = nullptr;
    std::vector<ws::connection*> ws_scheduled;
    ws_timer ws_keepalive = ws_timer::none;
    bool ws_write_timer = false;
    int ws_closed_calls = 0;
    std::shared_ptr<http::exchange> ws_ex;
    std::optional<ws::deflate_params> ws_params;
    size_t leftover_size = 0;
    size_t input_at_upgrade = 0;  // where the client's bytes after the head start
    int ws_timer_firings = 0;
    rng ws_rng;

    world(const controls& c, bool deterministic)
        : ctl(c),
          cfg(make_config(c)),
          deflate(make_deflate(c)),
          ws_cfg(make_ws_config(c)),
          app(c.app_seed * 0x9E3779B97F4A7C15ull + 1, c.fixed_plan(), deterministic,
              cfg.body_high_water + cfg.head_limits.max_head + cfg.read_chunk),
          ws_rng(c.ws * 0xA24BAED4963EE407ull + c.split_seed + 11) {
        if (c.websocket()) cfg.websocket = &deflate;
        app.ws_max_message = ws_cfg.max_message;
        app.ws_max_queue = ws_cfg.max_queue;
        conn = std::make_unique<http1::connection>(ht, *this, cfg, events, client, server);
        self = conn.get();
    }

    // The http1 connection's owner callbacks: never from a dormant connection.
    void schedule(http1::connection& c) override {
        FUZZ_CHECK(&c == self && !upgraded);
        if (!c.scheduled) scheduled.push_back(&c);
        c.scheduled = true;
    }
    void arm_timer(http1::connection& c, timer_kind k) override {
        // The constructor arms the keep-alive timer before `conn` holds the connection.
        FUZZ_CHECK((!self || &c == self) && k != timer_kind::none);
        FUZZ_CHECK(!closed() && !upgraded);
        if (k == timer_kind::write) {
            write_timer = true;
        } else if (k == timer_kind::rate) {
            rate_timer = true;
        } else {
            read_timer = k;
        }
    }
    void disarm_timer(http1::connection& c, timer_kind k) override {
        FUZZ_CHECK(&c == self && k != timer_kind::none && !upgraded);
        if (k == timer_kind::write) {
            write_timer = false;
        } else if (k == timer_kind::rate) {
            rate_timer = false;
        } else {
            read_timer = timer_kind::none;
        }
    }
    uint64_t now_ms() const noexcept override { return now; }
    bool admit_request(http1::connection& c) override {
        FUZZ_CHECK(&c == self && !closed() && !upgraded);
        FUZZ_CHECK(admissions == finished_requests);  // one request at a time per connection
        const int every = ctl.refuse_every();
        ++asked_admission;
        if (every == 3 || (every > 0 && asked_admission % (every + 1) == 0)) return false;
        ++admissions;
        return true;
    }
    void request_finished(http1::connection& c) override {
        FUZZ_CHECK(&c == self && !upgraded);
        ++finished_requests;
        FUZZ_CHECK(finished_requests == admissions);  // exactly once per admitted request
    }
    void on_closed(http1::connection& c) override {
        FUZZ_CHECK(&c == self && !upgraded);
        FUZZ_CHECK(t.closed);     // the transport is closed before the owner hears of it
        FUZZ_CHECK(!rate_timer);  // a closed connection leaves no timer behind
        ++closed_calls;
    }
    void refused(http1::connection& c, http::refusal) override {
        FUZZ_CHECK(&c == self && !upgraded);
    }
    void request_done(http1::connection& c, const http::exchange&, uint64_t) override {
        FUZZ_CHECK(&c == self && !upgraded);
    }

    // server::upgrade: the 101 is written; a ws::connection carries the socket on.
    bool upgrade(http1::connection& c, const std::shared_ptr<http::exchange>& ex,
                 std::string leftover, std::optional<ws::deflate_params> params) override {
        FUZZ_CHECK(&c == self && !closed() && !upgraded && ++upgrade_calls == 1);
        FUZZ_CHECK(ctl.websocket());  // no handshake without cfg.websocket
        FUZZ_CHECK(c.current_state() == http1::connection::state::upgraded);
        FUZZ_CHECK(ex && ex->websocket && ex->status == 101 && ex->connected());
        const request_record* rec = app.record_of_exchange(ex.get());
        FUZZ_CHECK(rec && rec->ws_accepted);  // only an exchange the app accepted
        FUZZ_CHECK(!t.shut && !t.closed);
        // The 101 is written in full, and is the last thing written.
        const std::string_view out = t.output;
        FUZZ_CHECK(out.size() >= 4 && out.substr(out.size() - 4) == "\r\n\r\n");
        FUZZ_CHECK(out.rfind("HTTP/1.1 101 ") != std::string_view::npos);
        // The hand-over keeps nothing: no timer, no admission.
        FUZZ_CHECK(read_timer == timer_kind::none && !write_timer && !rate_timer);
        FUZZ_CHECK(admissions == finished_requests);
        // `leftover` is exactly what the client sent after the request head (no byte lost,
        // none repeated), and no more than the http1 input buffer may hold.
        FUZZ_CHECK(leftover.size() <= cfg.head_limits.max_head + cfg.read_chunk);
        FUZZ_CHECK(leftover.size() <= t.pos);
        const size_t at = t.pos - leftover.size();
        FUZZ_CHECK(t.input.compare(at, leftover.size(), leftover) == 0);
        const std::string& head = ex->head_storage;
        FUZZ_CHECK(at >= head.size() && t.input.compare(at - head.size(), head.size(), head) == 0);
        if (params) {
            FUZZ_CHECK(deflate.enabled);
            FUZZ_CHECK(params->server_max_window_bits >= 8 &&
                       params->server_max_window_bits <= deflate.server_max_window_bits);
            FUZZ_CHECK(params->client_max_window_bits >= 8 && params->client_max_window_bits <= 15);
            if (deflate.server_no_context_takeover) FUZZ_CHECK(params->server_no_context_takeover);
        }
        if (ctl.refuse_upgrade()) return false;  // no WebSocket here: c closes
        upgraded = true;
        ht.dormant = true;
        ws_params = params;
        leftover_size = leftover.size();
        input_at_upgrade = at;
        ws_ex = ex;
        app.handed_over = ex.get();
        wsc = std::make_unique<ws::connection>(t, wso, ws_cfg, ex, std::move(leftover), params);
        ws_self = wsc.get();
        ex->rebind(ws_self);
        ex->post(http::ev_drain);  // the app's accept completes
        wsc->start();
        if (shutting_down) wsc->begin_shutdown();
        return true;
    }

    bool closed() const { return closed_calls > 0; }
    bool ws_closed() const { return ws_closed_calls > 0; }
    bool http_live() const { return conn && !closed() && !upgraded; }
    bool ws_live() const { return wsc && !ws_closed(); }
    bool live() const { return http_live() || ws_live(); }

    // The owner's timer list fires: the slot is no longer armed when the connection hears of it.
    // After the hand-over the read slot is the WebSocket's keepalive slot.
    void fire_read_timer() {
        if (ws_live()) {
            if (ws_keepalive == ws_timer::none) return;
            const ws_timer k = std::exchange(ws_keepalive, ws_timer::none);
            ++ws_timer_firings;
            now += 20000;
            wsc->on_timer(k);
            return pump();
        }
        if (!http_live() || read_timer == timer_kind::none) return;
        const timer_kind k = std::exchange(read_timer, timer_kind::none);
        conn->on_timer(k);
        pump();
    }
    void fire_write_timer() {
        if (ws_live()) {
            if (!ws_write_timer) return;
            ws_write_timer = false;
            ++ws_timer_firings;
            wsc->on_timer(ws_timer::write);
            return pump();
        }
        if (!http_live() || !write_timer) return;
        write_timer = false;
        conn->on_timer(timer_kind::write);
        pump();
    }
    void fire_rate_timer() {
        if (!http_live() || !rate_timer) return;
        rate_timer = false;
        conn->on_timer(timer_kind::rate);
        pump();
    }

    // The dormant http1 connection: every entry point is a no-op (the guarded transport and
    // the owner callbacks above fail on any call it would make).
    void poke_dormant() {
        if (!upgraded || !conn) return;
        conn->on_readable(ws_rng.one_in(2));
        conn->on_writable();
        conn->process();
        conn->on_timer(static_cast<timer_kind>(1 + ws_rng.next() % 7));
        if (ws_rng.one_in(4)) conn->on_hangup();
        if (ws_rng.one_in(4)) conn->begin_shutdown();
        conn->release_memory();
        FUZZ_CHECK(conn->current_state() == http1::connection::state::upgraded);
    }

    void begin_shutdown() {
        shutting_down = true;
        if (ws_live()) {
            wsc->begin_shutdown();
        } else if (http_live()) {
            conn->begin_shutdown();
        }
        pump();
    }

    // Every state that waits on the client has a deadline.
    void check_deadlines() const {
        if (upgraded) {
            // The dormant connection keeps no timer.
            FUZZ_CHECK(read_timer == timer_kind::none && !write_timer && !rate_timer);
            if (!ws_live()) return;
            if (wsc->write_blocked()) FUZZ_CHECK(ws_write_timer);
            const wstate s = wsc->current_state();
            if ((s == wstate::closing || s == wstate::draining || s == wstate::failing) &&
                ws_cfg.close_timeout_ms)
                FUZZ_CHECK(ws_keepalive == ws_timer::close);
            if (s == wstate::open && ws_cfg.ping_interval_ms &&
                ws_ex->ws_inbox.size() < std::max<size_t>(ws_cfg.max_queue, 1))
                FUZZ_CHECK(ws_keepalive == ws_timer::ping || ws_keepalive == ws_timer::pong);
            return;
        }
        if (!http_live()) return;
        using st = http1::connection::state;
        const st s = conn->current_state();
        if (s == st::read_head)
            FUZZ_CHECK(read_timer == timer_kind::keep_alive || read_timer == timer_kind::header ||
                       read_timer == timer_kind::shutdown_idle);
        if (s == st::lingering) FUZZ_CHECK(read_timer == timer_kind::linger);
        if (conn->write_blocked()) FUZZ_CHECK(write_timer);
    }

    size_t ws_memory_bound() const {
        const request_record* rec = app.record_of_exchange(ws_ex.get());
        const uint64_t in = std::max<size_t>(ws_cfg.read_chunk, leftover_size);
        const uint64_t z = ws_params ? 400 * 1024 : 0;
        const size_t largest = rec ? rec->ws_largest_sent : 0;
        return static_cast<size_t>(in + 2 * ws_cfg.max_message + 3 * ws_cfg.write_high_water +
                                   largest + 8192 + z);
    }

    void check_ws_step() const {
        if (!wsc) return;
        FUZZ_CHECK(wsc->memory() <= ws_memory_bound());
        if (ws_closed()) return;
        // An idle connection holds nothing (no read buffer, no output, no message), and no
        // zlib state where no context is taken over.
        if (wsc->idle() && !ws_params) FUZZ_CHECK(wsc->memory() == 0);
        if (wsc->idle() && ws_params && ws_params->client_no_context_takeover &&
            ws_params->server_no_context_takeover)
            FUZZ_CHECK(wsc->memory() <= 256);
    }

    // One loop iteration after an I/O event: deliver app events, run the app, run scheduled
    // connections (http1 first, then WebSockets, as server::process_scheduled); repeat until
    // nothing moves. A closed connection is destroyed at the end of the phase, as the server
    // does; after the hand-over the entry (dormant http1 and WebSocket) goes when the WebSocket
    // closes.
    void pump() {
        app.new_phase();
        for (int round = 0; round < k_max_rounds; ++round) {
            bool busy = false;
            for (auto& ex : events.take()) {
                busy = true;
                app.on_events(ex, ex->take_events());
            }
            busy = app.step() || busy;
            for (auto* c : std::exchange(scheduled, {})) {
                busy = true;
                c->scheduled = false;
                if (conn && !closed()) c->process();  // a no-op once dormant
            }
            for (auto* c : std::exchange(ws_scheduled, {})) {
                busy = true;
                c->scheduled = false;
                if (!ws_closed()) c->process();
            }
            check_ws_step();
            if (conn && closed()) {
                scheduled.clear();
                conn.reset();
            }
            if (wsc && ws_closed()) {
                wsc->release_memory();
                FUZZ_CHECK(wsc->memory() == 0);
                ws_scheduled.clear();
                wsc.reset();
                scheduled.clear();
                conn.reset();
            }
            if (!busy) return;
        }
        invariant_failed("connection and app did not settle (livelock)", __FILE__, __LINE__);
    }

    void send_segment(std::string_view bytes) {
        now += 700;
        t.input.append(bytes);
        if (ws_live()) {
            wsc->on_readable(ws_rng.one_in(2));  // a short read drains the (in-memory) socket
        } else if (http_live()) {
            conn->on_readable();
        }
        pump();
        poke_dormant();
    }
    void client_reads(size_t n) {
        if (n == 0) return;
        t.budget = (n == SIZE_MAX || t.budget > SIZE_MAX - n) ? SIZE_MAX : t.budget + n;
        // Edge-triggered: EPOLLOUT is reported only to a connection that hit EAGAIN.
        if (ws_live()) {
            if (wsc->write_blocked()) wsc->on_writable();
        } else if (http_live() && conn->write_blocked()) {
            conn->on_writable();
        }
        pump();
    }
    // The peer resets: half the time the loop reports it (EPOLLERR/EPOLLHUP), otherwise the
    // socket calls fail and the next readiness event lets the connection see it.
    void peer_reset(bool report_hangup) {
        if (!live()) return;
        t.reset = true;
        if (ws_live()) {
            if (report_hangup) {
                wsc->on_hangup();
            } else if (wsc->write_blocked()) {
                wsc->on_writable();
            } else {
                wsc->on_readable();
            }
        } else if (report_hangup) {
            conn->on_hangup();
        } else if (conn->write_blocked()) {
            conn->on_writable();
        } else {
            conn->on_readable();
        }
        pump();
    }
    void half_close() {
        t.eof = true;
        if (ws_live()) {
            wsc->on_readable();
        } else if (http_live()) {
            conn->on_readable();
        }
        pump();
    }
    bool write_blocked() const {
        return ws_live() ? wsc->write_blocked() : http_live() && conn->write_blocked();
    }
};

// ---- segmentation ----------------------------------------------------------------------------

std::vector<std::string_view> segment_sizes(std::string_view bytes, int mode, rng& r) {
    std::vector<std::string_view> out;
    if (mode == 1 && bytes.size() > 4096) mode = 2;  // one byte a time: only for short inputs
    size_t cut_at = mode == 7 ? r.between(0, bytes.size()) : 0;
    while (!bytes.empty()) {
        size_t n = bytes.size();
        switch (mode) {
            case 1: n = 1; break;
            case 2: n = r.between(1, 8); break;
            case 3: n = r.between(1, 64); break;
            case 4: n = r.between(1, 1024); break;
            case 5: n = r.between(1, 16384); break;
            case 6: {  // right after a CR or LF: where the parser's line logic changes state
                const size_t e = bytes.find_first_of("\r\n");
                n = e == std::string_view::npos ? bytes.size() : e + 1;
                break;
            }
            case 7:
                n = cut_at > 0 ? cut_at : bytes.size();
                cut_at = 0;
                break;
            default: break;
        }
        n = std::min(n, bytes.size());
        out.push_back(bytes.substr(0, n));
        bytes.remove_prefix(n);
    }
    return out;
}

// ---- output checks ---------------------------------------------------------------------------

struct parsed_output {
    size_t responses = 0;                 // final responses to delivered requests
    size_t error_at = std::string::npos;  // offset of the connection's own error response
    size_t ws_at = std::string::npos;     // where WebSocket frames start, after a 101
    // An error response or a "connection: close" response was written in full: the
    // connection must have sent FIN (and be lingering) or be closed.
    bool closing_response_complete = false;
    std::string error_response;
};

size_t header_value(std::string_view head, std::string_view name, std::string_view& value) {
    size_t count = 0;
    size_t p = head.find("\r\n") + 2;
    while (p < head.size()) {
        const size_t eol = head.find("\r\n", p);
        const std::string_view line = head.substr(p, eol - p);
        const size_t colon = line.find(':');
        FUZZ_CHECK(colon != std::string_view::npos && colon > 0);
        if (http1::iequals(line.substr(0, colon), name)) {
            ++count;
            value = line.substr(colon + 1);
            while (!value.empty() && value.front() == ' ')
                value.remove_prefix(1);
        }
        p = eol + 2;
    }
    return count;
}

// The connection's own error responses (reject()); with date_header off they are exact bytes.
bool match_error_response(std::string_view rest, bool server_header, std::string& matched) {
    // 426 names the WebSocket version we speak (RFC 6455 §4.2.2 item 4).
    static constexpr http::field ws_version[] = {{"sec-websocket-version", "13"}};
    for (int status : {400, 408, 413, 414, 417, 426, 431, 500, 501, 503, 505}) {
        std::string e =
            http1::encode_error_response(status, server_header, false,
                                         status == 426 ? std::span<const http::field>(ws_version)
                                                       : std::span<const http::field>());
        const size_t n = std::min(e.size(), rest.size());
        if (rest.substr(0, n) == std::string_view(e).substr(0, n)) {
            matched = std::move(e);
            return true;
        }
    }
    return false;
}

// ---- the WebSocket part of the output -------------------------------------------------------

std::string_view trim_ows(std::string_view v) {
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
        v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
        v.remove_suffix(1);
    return v;
}

// What a 101's Sec-WebSocket-Extensions told the client (RFC 7692 §7.1).
struct announced_deflate {
    bool on = false;
    bool server_no_context_takeover = false, client_no_context_takeover = false;
    int server_max_window_bits = 15, client_max_window_bits = 15;
};

announced_deflate parse_announced(std::string_view v) {
    announced_deflate a;
    a.on = true;
    size_t i = 0;
    while (true) {
        const size_t semi = v.find(';');
        const std::string_view item = trim_ows(v.substr(0, semi));
        if (i++ == 0) {
            FUZZ_CHECK(item == "permessage-deflate");
        } else {
            const size_t eq = item.find('=');
            const std::string_view name = item.substr(0, eq);
            const std::string_view value = eq == std::string_view::npos ? "" : item.substr(eq + 1);
            const auto bits = [&]() {
                FUZZ_CHECK(value.size() == 1 || value.size() == 2);
                const int n = std::stoi(std::string(value));
                FUZZ_CHECK(n >= 8 && n <= 15);
                return n;
            };
            if (name == "server_no_context_takeover") {
                a.server_no_context_takeover = true;
            } else if (name == "client_no_context_takeover") {
                a.client_no_context_takeover = true;
            } else if (name == "server_max_window_bits") {
                a.server_max_window_bits = bits();
            } else if (name == "client_max_window_bits") {
                a.client_max_window_bits = bits();
            } else {
                FUZZ_CHECK(!"unknown permessage-deflate parameter in the 101");
            }
        }
        if (semi == std::string_view::npos) break;
        v.remove_prefix(semi + 1);
    }
    return a;
}

// The client's inflater for the server's messages.
struct client_inflater {
    z_stream inf{};
    explicit client_inflater(int bits) {
        FUZZ_CHECK(inflateInit2(&inf, -std::max(9, bits)) == Z_OK);
    }
    ~client_inflater() { inflateEnd(&inf); }
    client_inflater(const client_inflater&) = delete;
    client_inflater& operator=(const client_inflater&) = delete;
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

// The bytes after the 101: unmasked server frames (RFC 6455 §5.2), possibly cut short at the
// end; nothing after our close frame; control frames FIN and <= 125 bytes, our pings 4 bytes;
// RSV1 only with permessage-deflate and on a message's first frame; the data messages,
// inflated as the 101 told the client to, are the app's accepted sends in order (a prefix).
void check_ws_frames(std::string_view out, const request_record& req, const announced_deflate& ad) {
    std::optional<client_inflater> z;
    if (ad.on) z.emplace(ad.server_max_window_bits);
    std::vector<http::ws_message> messages;
    bool close_frame = false;
    std::string data;
    bool open = false, text = false, compressed = false;
    size_t p = 0;
    const auto u = [&](size_t i) { return static_cast<unsigned char>(out[i]); };
    while (p < out.size()) {
        FUZZ_CHECK(!close_frame);  // nothing after our close frame
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
            if (op == 0x8) {
                close_frame = true;
                FUZZ_CHECK(len != 1);
                if (len >= 2) {
                    const auto code = static_cast<uint16_t>(u(at) << 8 | u(at + 1));
                    FUZZ_CHECK(ws::is_valid_close_code(code));
                    FUZZ_CHECK(ws::is_valid_utf8(payload.substr(2)));
                }
            }
            continue;
        }
        if (op != 0) {
            FUZZ_CHECK(!open);
            open = true;
            text = op == 1;
            compressed = rsv1;
            FUZZ_CHECK(!rsv1 || ad.on);
            data.clear();
        } else {
            FUZZ_CHECK(open && !rsv1);
        }
        data += payload;
        if (!fin) continue;
        open = false;
        if (compressed) {
            std::string plain;
            FUZZ_CHECK(z->decompress(data, plain, ad.server_no_context_takeover));
            data = std::move(plain);
        }
        messages.push_back({text, data});
    }
    FUZZ_CHECK(messages.size() <= req.ws_sent.size());
    for (size_t i = 0; i < messages.size(); ++i)
        FUZZ_CHECK(messages[i].text == req.ws_sent[i].text &&
                   messages[i].data == req.ws_sent[i].data);
}

// A 101: the answer to an accepted handshake, and the last HTTP on the connection.
void check_switching(const world& w, std::string_view head, const request_record& req) {
    FUZZ_CHECK(req.websocket && req.ws_accepted);
    FUZZ_CHECK(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    std::string_view v, key;
    FUZZ_CHECK(header_value(head, "upgrade", v) == 1 && v == "websocket");
    FUZZ_CHECK(header_value(head, "connection", v) == 1 && v == "Upgrade");
    FUZZ_CHECK(header_value(head, "content-length", v) == 0);
    FUZZ_CHECK(header_value(head, "transfer-encoding", v) == 0);
    size_t keys = 0;
    for (const auto& [name, value] : req.headers)
        if (http1::iequals(name, "sec-websocket-key")) ++keys, key = trim_ows(value);
    FUZZ_CHECK(keys == 1);
    const auto accept = ws::compute_accept(key);
    FUZZ_CHECK(header_value(head, "sec-websocket-accept", v) == 1 &&
               v == std::string_view(accept.data(), accept.size()));
    const size_t protocols = header_value(head, "sec-websocket-protocol", v);
    FUZZ_CHECK(protocols == (req.subprotocol.empty() ? 0u : 1u));
    if (protocols) FUZZ_CHECK(v == req.subprotocol);
    const size_t extensions = header_value(head, "sec-websocket-extensions", v);
    FUZZ_CHECK(extensions <= 1);
    if (extensions) FUZZ_CHECK(w.deflate.enabled);
    // The ws::connection runs with exactly what the client was told.
    if (w.upgraded) {
        FUZZ_CHECK(w.ws_params.has_value() == (extensions == 1));
        if (extensions) {
            const announced_deflate a = parse_announced(v);
            const ws::deflate_params& p = *w.ws_params;
            FUZZ_CHECK(a.server_no_context_takeover == p.server_no_context_takeover);
            FUZZ_CHECK(a.client_no_context_takeover == p.client_no_context_takeover);
            FUZZ_CHECK(a.server_max_window_bits == p.server_max_window_bits);
            FUZZ_CHECK(a.client_max_window_bits == p.client_max_window_bits);
        }
    }
}

// Walks the output as a client would. A response may be cut short at the very end (abort,
// a client that stopped reading, a connection closed mid-stream); everything before must be
// well-framed.
parsed_output check_output(const world& w) {
    const std::string_view out = w.t.output;
    const auto& recs = w.app.records;
    parsed_output po;
    size_t pos = 0;
    while (pos < out.size()) {
        const std::string_view rest = out.substr(pos);
        const size_t n = std::min<size_t>(rest.size(), 9);
        FUZZ_CHECK(rest.substr(0, n) == std::string_view("HTTP/1.1 ").substr(0, n));
        std::string err;
        if (match_error_response(rest, w.ctl.server_header(), err)) {
            FUZZ_CHECK(rest.size() <= err.size());  // nothing after an error response
            po.closing_response_complete = rest.size() == err.size();
            po.error_at = pos;
            po.error_response = std::move(err);
            return po;
        }
        const size_t head_end = rest.find("\r\n\r\n");
        if (head_end == std::string_view::npos) return po;  // cut short inside a head
        const std::string_view head = rest.substr(0, head_end + 2);
        FUZZ_CHECK(head.size() >= 14 && head[12] == ' ');
        const int status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
        pos += head_end + 4;
        if (status == 100) {  // interim: only when owed, before the final response
            FUZZ_CHECK(head == "HTTP/1.1 100 Continue\r\n");
            FUZZ_CHECK(po.responses < recs.size() && recs[po.responses].expect_continue);
            // ATTACKS.md C: no 100 to an app that never asked for the body.
            FUZZ_CHECK(recs[po.responses].app_read);
            continue;
        }
        FUZZ_CHECK(po.responses < recs.size());  // one final response per delivered request
        const request_record& req = recs[po.responses++];
        if (status == 101) {
            check_switching(w, head, req);
            FUZZ_CHECK(po.responses == recs.size());  // nothing was read as a request after it
            po.ws_at = pos;
            std::string_view ext;
            const bool ext_on = header_value(head, "sec-websocket-extensions", ext) == 1;
            check_ws_frames(out.substr(pos), req,
                            ext_on ? parse_announced(ext) : announced_deflate{});
            return po;
        }
        std::string_view cl, te, connection;
        const size_t cl_count = header_value(head, "content-length", cl);
        const size_t te_count = header_value(head, "transfer-encoding", te);
        header_value(head, "connection", connection);
        const bool close = http1::iequals(connection, "close");
        FUZZ_CHECK(cl_count <= 1 && te_count <= 1 && !(cl_count && te_count));
        if (te_count) FUZZ_CHECK(te == "chunked" && !req.http10);  // never chunked to 1.0
        if (req.asked_close) FUZZ_CHECK(close);
        if (req.websocket) FUZZ_CHECK(close);  // a denied handshake closes the connection
        const bool no_body = req.is_head || status < 200 || status == 204 || status == 304;
        if (no_body) {
            FUZZ_CHECK(te_count == 0);
        } else if (te_count) {
            coachwhip::http1::chunked_decoder dec;
            auto r = dec.decode(out.substr(pos));
            while (r.status == coachwhip::http1::chunked_decoder::status::data) {
                pos += r.consumed;
                r = dec.decode(out.substr(pos));
            }
            FUZZ_CHECK(r.status != coachwhip::http1::chunked_decoder::status::error);
            pos += r.consumed;
            if (r.status != coachwhip::http1::chunked_decoder::status::done) return po;
        } else if (cl_count) {
            FUZZ_CHECK(!cl.empty() && cl.size() <= 19 &&
                       cl.find_first_not_of("0123456789") == std::string_view::npos);
            const uint64_t len = std::stoull(std::string(cl));
            if (out.size() - pos < len) return po;  // cut short inside the body
            pos += len;
        } else {
            // Close-delimited (RFC 9112 §6.3 rule 8): only for HTTP/1.0, and the body runs to
            // the close, so no response may follow (app bodies never contain "HTTP/").
            FUZZ_CHECK(req.http10 && close);
            FUZZ_CHECK(out.substr(pos).find("HTTP/") == std::string_view::npos);
            return po;
        }
        if (close) {
            FUZZ_CHECK(pos == out.size());            // nothing after "connection: close"
            FUZZ_CHECK(po.responses == recs.size());  // and no later request was read
            po.closing_response_complete = true;
        }
    }
    return po;
}

void check_world(const world& w, const parsed_output& po) {
    const auto& recs = w.app.records;
    // Pipelining stops at a request that asked to close (ATTACKS.md A), and at a WebSocket
    // handshake: what follows it is the client's frames, never a request.
    for (size_t i = 0; i + 1 < recs.size(); ++i)
        FUZZ_CHECK(!recs[i].asked_close && !recs[i].websocket);
    // An error response ends the conversation: it answers the request after the last one
    // answered, and nothing more was read.
    if (po.error_at != std::string::npos) FUZZ_CHECK(po.responses + 1 >= recs.size());
    // After the hand-over the WebSocket adds at most: a pong per ping the client sent (each no
    // larger than the ping), our pings and our close frame.
    const size_t ws_extra =
        w.upgraded ? w.t.input.size() - w.input_at_upgrade + 16 * w.ws_timer_firings + 256 : 0;
    FUZZ_CHECK(w.t.output.size() <= w.app.output_allowance + 1024 + 64 * recs.size() + ws_extra);
    FUZZ_CHECK(w.closed_calls <= 1 && w.ws_closed_calls <= 1);
    if (po.closing_response_complete) FUZZ_CHECK(w.t.shut || w.t.closed);
    FUZZ_CHECK(w.t.closed == (w.closed() || w.ws_closed()));
    // A 101 written in full is handed over in the same I/O phase: an accepted WebSocket never
    // waits for an ev_drain that does not come.
    if (po.ws_at != std::string::npos) FUZZ_CHECK(!w.http_live());
    FUZZ_CHECK(!(w.closed() && w.upgraded));
}

// ---- one run -----------------------------------------------------------------------------------

struct run_result {
    std::string output;
    std::vector<request_record> records;
    parsed_output parsed;
    bool shut = false, closed = false;
    bool ws_records_checked = false;  // a hand-over happened
};

run_result run(const controls& ctl, std::string_view client_bytes, int segment_mode,
               bool deterministic) {
    world w(ctl, deterministic);
    rng r(ctl.split_seed * 0xD1B54A32D192ED03ull + 7);
    const auto segments = segment_sizes(client_bytes, segment_mode, r);
    const size_t shutdown_after = ctl.shutdown() ? r.between(0, segments.size()) : SIZE_MAX;
    const size_t read_timer_after =
        ctl.read_timer_midway() ? r.between(0, segments.size()) : SIZE_MAX;
    const size_t write_timer_after =
        ctl.write_timer_midway() ? r.between(0, segments.size()) : SIZE_MAX;
    const size_t reset_after = ctl.reset() ? r.between(0, segments.size()) : SIZE_MAX;
    const bool report_hangup = r.one_in(2);
    w.t.budget = ctl.read_per_segment() == SIZE_MAX ? SIZE_MAX : 0;
    w.pump();  // the app and the connection settle before the first byte
    for (size_t i = 0; i < segments.size() && w.conn; ++i) {
        w.send_segment(segments[i]);
        w.client_reads(ctl.read_per_segment());
        if (i == shutdown_after) w.begin_shutdown();
        if (i == read_timer_after) w.fire_read_timer(), w.fire_rate_timer();
        if (i == write_timer_after) w.fire_write_timer();
        if (i == reset_after) w.peer_reset(report_hangup);
        w.check_deadlines();
    }
    if (ctl.half_close()) w.half_close();
    if (!ctl.never_catches_up()) {
        for (int i = 0; i < 64 && w.live(); ++i) {
            w.client_reads(SIZE_MAX);
            if (!w.write_blocked()) break;
        }
    }
    w.check_deadlines();
    if (ctl.fire_timer()) {
        w.fire_write_timer();
        w.fire_read_timer();
        w.fire_rate_timer();
        // A WebSocket's keepalive slot: the ping goes out, its pong never comes, the closing
        // handshake times out.
        for (int i = 0; i < 3 && w.ws_live(); ++i) {
            w.check_deadlines();
            w.fire_read_timer();
        }
    }
    if (reset_after != SIZE_MAX) w.peer_reset(report_hangup);  // if no segment reached it
    w.check_deadlines();

    run_result res;
    res.parsed = check_output(w);
    check_world(w, res.parsed);
    // The server drops its connections (the process stops: server::close_all); afterwards
    // every exchange the app still holds answers "closed" and nothing is left behind
    // (LeakSanitizer). The WebSocket's exchange got exactly one disconnect.
    if (w.ws_live()) {
        w.wsc->on_hangup();
        w.pump();
    }
    FUZZ_CHECK(!w.wsc && (!w.upgraded || !w.conn));
    if (w.upgraded) {
        const request_record* rec = w.app.record_of_exchange(w.ws_ex.get());
        FUZZ_CHECK(rec && rec->detached_disconnects == 1);
    }
    res.ws_records_checked = w.upgraded;
    w.conn.reset();
    w.scheduled.clear();
    w.pump();
    w.app.check_all_detached();
    FUZZ_CHECK(w.admissions == w.finished_requests);  // nothing counted against the limit
    res.output = w.t.output;
    res.records = w.app.records;
    res.shut = w.t.shut;
    res.closed = w.t.closed;
    return res;
}

// The output with the connection's trailing error response removed.
std::string_view without_error(const run_result& r) {
    const size_t end = std::min({r.output.size(), r.parsed.error_at, r.parsed.ws_at});
    return std::string_view(r.output).substr(0, end);
}

void ignore_log(core::log_level, std::string_view, void*) {}

// FUZZ_TRACE=1 build/fuzz/fuzz_connection <file> prints what the app saw and what the client
// received: the quickest way to read a reproducer.
bool trace_enabled() {
    static const bool on = std::getenv("FUZZ_TRACE") != nullptr;
    return on;
}

void trace(const run_result& r) {
    for (const auto& rec : r.records)
        std::fprintf(stderr, "request: %s %s HTTP/%s body=%zu%s\n", rec.method.c_str(),
                     rec.target.c_str(), rec.version.c_str(), rec.body.size(),
                     rec.whole_body ? " (complete)" : "");
    for (const auto& rec : r.records) {
        if (!rec.websocket) continue;
        std::fprintf(stderr,
                     "websocket: accepted=%d subprotocol='%s' delivered=%zu sent=%zu "
                     "app_closed=%d disconnects=%d code=%u handed_over=%d\n",
                     rec.ws_accepted, rec.subprotocol.c_str(), rec.ws_delivered.size(),
                     rec.ws_sent.size(), rec.ws_app_closed, rec.detached_disconnects,
                     rec.ws_close_code, r.ws_records_checked);
    }
    std::fprintf(stderr, "output (%zu bytes, %s%s):\n%s\n", r.output.size(),
                 r.shut ? "FIN sent" : "no FIN", r.closed ? ", closed" : "", r.output.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    // Debug logging on, to a sink that drops it: the reject() path formats a message then.
    core::set_log_sink(ignore_log, nullptr, core::log_level::trace);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < k_control) return 0;
    const controls ctl{data[0], data[1], data[2], data[3], data[4], data[5], data[6], data[7]};
    const std::string_view bytes(reinterpret_cast<const char*>(data) + k_control, size - k_control);
    const run_result split = run(ctl, bytes, ctl.segment_mode(), ctl.differential());
    if (trace_enabled()) trace(split);
    if (!ctl.differential()) return 0;

    // One reading of the bytes whatever the segmentation (ATTACKS.md A, B): the same requests
    // reach the app and get the same responses. Only a final error response may be missing from
    // one run: the connection re-parses a pending head only when a line ends (or a control byte
    // arrives), so an invalid byte in an unfinished last line is answered at once when it comes
    // with the first bytes, and only at EOF or on a timeout when it comes later. When both runs
    // answer with an error, it must be the same one.
    const run_result whole = run(ctl, bytes, 0, true);
    FUZZ_CHECK(split.records.size() == whole.records.size());
    for (size_t i = 0; i < split.records.size(); ++i) {
        FUZZ_CHECK(split.records[i].same_reading(whole.records[i]));
        // The WebSocket conversation too, whether its first frames came with the handshake (the
        // http1 connection's leftover) or after the hand-over.
        FUZZ_CHECK(split.records[i].same_websocket(whole.records[i]));
    }
    FUZZ_CHECK(without_error(split) == without_error(whole));
    if (split.parsed.error_at != std::string::npos && whole.parsed.error_at != std::string::npos)
        FUZZ_CHECK(split.parsed.error_response == whole.parsed.error_response);
    return 0;
}
