// fuzz_connection — libFuzzer target: a whole http1::connection over an in-memory socket, with
// an app answering through http::exchange (see connection_harness.hpp).
//
// Input layout: seven control bytes, then the bytes the client sends.
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
//                  same for the write timer
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

using namespace coachwhip_fuzz;
namespace core = coachwhip::core;

namespace {

using timer_kind = http1::connection_owner::timer_kind;

constexpr size_t k_control = 7;
constexpr int k_max_rounds = 20000;  // pump rounds before we call it a livelock

struct controls {
    uint8_t flags = 0, app_seed = 0, split_seed = 0, reading = 0, config = 0, plans = 0;
    uint8_t limits = 0;

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
};

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
    return cfg;
}

// ---- the owner: the server's loop, reduced to schedule lists and flags --------------------

struct world final : http1::connection_owner {
    controls ctl;
    http1::connection_config cfg;
    client_transport t;
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

    world(const controls& c, bool deterministic)
        : ctl(c),
          cfg(make_config(c)),
          app(c.app_seed * 0x9E3779B97F4A7C15ull + 1, c.fixed_plan(), deterministic,
              cfg.body_high_water + cfg.head_limits.max_head + cfg.read_chunk) {
        conn = std::make_unique<http1::connection>(t, *this, cfg, events, client, server);
        self = conn.get();
    }

    void schedule(http1::connection& c) override {
        FUZZ_CHECK(&c == self);
        if (!c.scheduled) scheduled.push_back(&c);
        c.scheduled = true;
    }
    void arm_timer(http1::connection& c, timer_kind k) override {
        // The constructor arms the keep-alive timer before `conn` holds the connection.
        FUZZ_CHECK((!self || &c == self) && k != timer_kind::none);
        FUZZ_CHECK(!closed());
        if (k == timer_kind::write) {
            write_timer = true;
        } else if (k == timer_kind::rate) {
            rate_timer = true;
        } else {
            read_timer = k;
        }
    }
    void disarm_timer(http1::connection& c, timer_kind k) override {
        FUZZ_CHECK(&c == self && k != timer_kind::none);
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
        FUZZ_CHECK(&c == self && !closed());
        FUZZ_CHECK(admissions == finished_requests);  // one request at a time per connection
        const int every = ctl.refuse_every();
        ++asked_admission;
        if (every == 3 || (every > 0 && asked_admission % (every + 1) == 0)) return false;
        ++admissions;
        return true;
    }
    void request_finished(http1::connection& c) override {
        FUZZ_CHECK(&c == self);
        ++finished_requests;
        FUZZ_CHECK(finished_requests == admissions);  // exactly once per admitted request
    }
    void on_closed(http1::connection& c) override {
        FUZZ_CHECK(&c == self);
        FUZZ_CHECK(t.closed);     // the transport is closed before the owner hears of it
        FUZZ_CHECK(!rate_timer);  // a closed connection leaves no timer behind
        ++closed_calls;
    }
    bool closed() const { return closed_calls > 0; }

    // The owner's timer list fires: the slot is no longer armed when the connection hears of it.
    void fire_read_timer() {
        if (!conn || closed() || read_timer == timer_kind::none) return;
        const timer_kind k = std::exchange(read_timer, timer_kind::none);
        conn->on_timer(k);
        pump();
    }
    void fire_write_timer() {
        if (!conn || closed() || !write_timer) return;
        write_timer = false;
        conn->on_timer(timer_kind::write);
        pump();
    }
    void fire_rate_timer() {
        if (!conn || closed() || !rate_timer) return;
        rate_timer = false;
        conn->on_timer(timer_kind::rate);
        pump();
    }

    // Every state that waits on the client has a deadline.
    void check_deadlines() const {
        if (!conn || closed()) return;
        using st = http1::connection::state;
        const st s = conn->current_state();
        if (s == st::read_head)
            FUZZ_CHECK(read_timer == timer_kind::keep_alive || read_timer == timer_kind::header ||
                       read_timer == timer_kind::shutdown_idle);
        if (s == st::lingering) FUZZ_CHECK(read_timer == timer_kind::linger);
        if (conn->write_blocked()) FUZZ_CHECK(write_timer);
    }

    // One loop iteration after an I/O event: deliver app events, run the app, run scheduled
    // connections; repeat until nothing moves. A closed connection is destroyed at the end of
    // the phase, as the server does.
    void pump() {
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
                if (conn && !closed()) c->process();
            }
            if (conn && closed()) {
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
        if (conn && !closed()) conn->on_readable();
        pump();
    }
    void client_reads(size_t n) {
        if (n == 0) return;
        t.budget = (n == SIZE_MAX || t.budget > SIZE_MAX - n) ? SIZE_MAX : t.budget + n;
        // Edge-triggered: EPOLLOUT is reported only to a connection that hit EAGAIN.
        if (conn && !closed() && conn->write_blocked()) conn->on_writable();
        pump();
    }
    // The peer resets: half the time the loop reports it (EPOLLERR/EPOLLHUP), otherwise the
    // socket calls fail and the next readiness event lets the connection see it.
    void peer_reset(bool report_hangup) {
        if (!conn || closed()) return;
        t.reset = true;
        if (report_hangup) {
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
        if (conn && !closed()) conn->on_readable();
        pump();
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
    for (int status : {400, 408, 413, 414, 417, 431, 500, 501, 503, 505}) {
        std::string e = http1::encode_error_response(status, server_header, false);
        const size_t n = std::min(e.size(), rest.size());
        if (rest.substr(0, n) == std::string_view(e).substr(0, n)) {
            matched = std::move(e);
            return true;
        }
    }
    return false;
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
        std::string_view cl, te, connection;
        const size_t cl_count = header_value(head, "content-length", cl);
        const size_t te_count = header_value(head, "transfer-encoding", te);
        header_value(head, "connection", connection);
        const bool close = http1::iequals(connection, "close");
        FUZZ_CHECK(cl_count <= 1 && te_count <= 1 && !(cl_count && te_count));
        if (te_count) FUZZ_CHECK(te == "chunked" && !req.http10);  // never chunked to 1.0
        if (req.asked_close) FUZZ_CHECK(close);
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
    // Pipelining stops at a request that asked to close (ATTACKS.md A).
    for (size_t i = 0; i + 1 < recs.size(); ++i)
        FUZZ_CHECK(!recs[i].asked_close);
    // An error response ends the conversation: it answers the request after the last one
    // answered, and nothing more was read.
    if (po.error_at != std::string::npos) FUZZ_CHECK(po.responses + 1 >= recs.size());
    FUZZ_CHECK(w.t.output.size() <= w.app.output_allowance + 1024 + 64 * recs.size());
    FUZZ_CHECK(w.closed_calls <= 1);
    if (po.closing_response_complete) FUZZ_CHECK(w.t.shut || w.t.closed);
    FUZZ_CHECK(w.t.closed == w.closed());
}

// ---- one run -----------------------------------------------------------------------------------

struct run_result {
    std::string output;
    std::vector<request_record> records;
    parsed_output parsed;
    bool shut = false, closed = false;
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
        if (i == shutdown_after && w.conn && !w.closed()) {
            w.conn->begin_shutdown();
            w.pump();
        }
        if (i == read_timer_after) w.fire_read_timer(), w.fire_rate_timer();
        if (i == write_timer_after) w.fire_write_timer();
        if (i == reset_after) w.peer_reset(report_hangup);
        w.check_deadlines();
    }
    if (ctl.half_close()) w.half_close();
    if (!ctl.never_catches_up()) {
        for (int i = 0; i < 64 && w.conn && !w.closed(); ++i) {
            w.client_reads(SIZE_MAX);
            if (!w.conn || !w.conn->write_blocked()) break;
        }
    }
    w.check_deadlines();
    if (ctl.fire_timer()) {
        w.fire_write_timer();
        w.fire_read_timer();
        w.fire_rate_timer();
    }
    if (reset_after != SIZE_MAX) w.peer_reset(report_hangup);  // if no segment reached it

    run_result res;
    res.parsed = check_output(w);
    check_world(w, res.parsed);
    // The server drops its connections (the process stops); afterwards every exchange the app
    // still holds answers "closed" and nothing is left behind (LeakSanitizer).
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
    return std::string_view(r.output).substr(0, std::min(r.output.size(), r.parsed.error_at));
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
    const controls ctl{data[0], data[1], data[2], data[3], data[4], data[5], data[6]};
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
    for (size_t i = 0; i < split.records.size(); ++i)
        FUZZ_CHECK(split.records[i].same_reading(whole.records[i]));
    FUZZ_CHECK(without_error(split) == without_error(whole));
    if (split.parsed.error_at != std::string::npos && whole.parsed.error_at != std::string::npos)
        FUZZ_CHECK(split.parsed.error_response == whole.parsed.error_response);
    return 0;
}
