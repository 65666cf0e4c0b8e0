// The in-memory world fuzz_connection runs an http1::connection in: a client transport, an owner
// that plays the server's event loop, and an app that answers through http::exchange the way
// the ASGI bridge does. Modelled on tests/cpp/test_connection.cpp, but every choice the app
// and the client make comes from the fuzz input, and every callback checks its contract.
//
// WebSocket: an exchange marked `websocket` is answered by a ws_plan (accept with a subprotocol
// the client offered or none, after refused attempts with one it did not offer or with headers
// the handshake owns; accept then close or fail before the 101 is out; deny with an HTTP
// response; fail; ignore). After the accept the app waits for ev_drain, then takes messages,
// sends, closes, fails, and checks that HTTP calls answer closed. Every event is checked for
// coherence: nothing after the disconnect that detached the exchange, ev_message only after
// the accept's ev_drain, a disconnect while attached only from a client that half-closed.
#pragma once

#include <sys/uio.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_common.hpp"
#include "http/exchange.hpp"
#include "http1/connection.hpp"
#include "ws/frame.hpp"
#include "ws/utf8.hpp"

namespace coachwhip_fuzz {

namespace http = coachwhip::http;
namespace http1 = coachwhip::http1;
namespace core = coachwhip::core;

// ---- the client side of the socket -----------------------------------------------------------

// The client's bytes wait in `input` until the connection reads them; what the connection
// writes lands in `output`, up to `budget` bytes (the client's receive window; 0 = EAGAIN).
struct client_transport final : core::transport {
    std::string input;
    size_t pos = 0;
    bool eof = false;  // the client half-closed after `input`
    std::string output;
    size_t budget = SIZE_MAX;
    bool reset = false;  // the peer reset the connection: reads and writes fail from now on
    bool shut = false, closed = false, aborted = false;

    ssize_t read(char* buf, size_t len) override {
        FUZZ_CHECK(!closed);  // transport.hpp: after close no call is made
        FUZZ_CHECK(len > 0);
        if (reset) return -ECONNRESET;
        if (pos < input.size()) {
            const size_t n = std::min(len, input.size() - pos);
            std::memcpy(buf, input.data() + pos, n);
            pos += n;
            return static_cast<ssize_t>(n);
        }
        return eof ? 0 : -EAGAIN;
    }
    ssize_t writev(const iovec* iov, int n, bool /*fin_next*/) override {
        FUZZ_CHECK(!closed && !shut);  // nothing is written after FIN
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

// The http1::connection's view of the same socket. After the WebSocket hand-over the connection
// is dormant: any call it still makes to the transport is a bug (the socket is the WebSocket's).
struct guarded_transport final : core::transport {
    client_transport& t;
    bool dormant = false;
    explicit guarded_transport(client_transport& c) : t(c) {}
    ssize_t read(char* buf, size_t len) override {
        FUZZ_CHECK(!dormant);
        return t.read(buf, len);
    }
    ssize_t writev(const iovec* iov, int n, bool fin_next) override {
        FUZZ_CHECK(!dormant);
        return t.writev(iov, n, fin_next);
    }
    void shutdown_write() override {
        FUZZ_CHECK(!dormant);
        t.shutdown_write();
    }
    void close() override {
        FUZZ_CHECK(!dormant);
        t.close();
    }
    void abort() override {
        FUZZ_CHECK(!dormant);
        t.abort();
    }
};

// ---- the app -----------------------------------------------------------------------------------

// How the app answers one request. The deterministic ones wait for the whole body before they
// send anything, so their output cannot depend on how the client's bytes were segmented.
enum class plan : uint8_t {
    after_body,     // take the body, then answer in one send
    stream,         // take the body, then a head and pieces (chunked, or close-delimited on 1.0)
    stream_length,  // like stream, with a content-length header
    big,            // take the body, then more than write_high_water, honouring wait/drain
    no_content,     // take the body; 204 or 304, after a refused attempt to give it a body
    invalid_first,  // take the body; a head with a CRLF in a value (refused), then a 500
    respond_now,    // answer at once, never read the body
    want_only,      // ask for the body (100-continue) but never take it; answer when complete
    never,          // take the body, never answer
    abort_midway,   // a head and a piece, then abort (the connection must close)
    abort_early,    // abort before any head
    count
};
constexpr int k_deterministic_plans = 6;  // the first six

// How the app answers a WebSocket handshake (exchange::websocket).
enum class ws_plan : uint8_t {
    accept,             // a subprotocol the client offered (or none), sometimes extra headers
    accept_none,        // no subprotocol
    accept_unoffered,   // first one the client did not offer (refused), then a valid accept
    accept_bad_header,  // first a header the handshake owns or an invalid one (refused), then valid
    accept_close,       // accept, and close at once: before the 101 is written
    accept_abort,       // accept, and fail at once: before the 101 is written
    deny,               // an HTTP response (one of the plans above), after a refused 101
    fail,               // abort before answering
    ignore,             // never answer
    count
};
static_assert(int(ws_plan::count) == 9, "app_model::start draws the plans 1..8 by w - 7");

// What the app saw of one request, compared between runs in differential mode.
struct request_record {
    std::string method, target, version;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;         // what the app took
    bool whole_body = false;  // the app saw body_complete and took everything
    bool expect_continue = false;
    bool is_head = false;
    bool http10 = false;
    bool asked_close = false;  // the request said "Connection: close" (or 1.0 without keep-alive)
    bool app_read = false;     // the app asked for the body (want_body or body_taken)

    // WebSocket handshakes (exchange::websocket) and what followed.
    bool websocket = false;
    std::vector<std::string> subprotocols;       // offered, in order
    bool ws_accepted = false;                    // ws_accept answered wait: the 101 is queued
    std::string subprotocol;                     // ... with this one
    std::vector<http::ws_message> ws_delivered;  // taken from ws_inbox, in order
    std::vector<http::ws_message> ws_sent;       // ws_send answered proceed or wait
    size_t ws_largest_sent = 0;
    bool ws_app_closed = false;    // the app called ws_close (pending, or after the hand-over)
    int detached_disconnects = 0;  // ev_disconnect deliveries once the exchange was detached
    uint16_t ws_close_code = 0;    // exchange::ws_close_code at that delivery

    // The same request, read the same way. A body cut short by an error is compared only by
    // its absence of completion: how much of it the app took before the error depends on when
    // the app ran, not on how the bytes were read.
    bool same_reading(const request_record& o) const {
        return method == o.method && target == o.target && version == o.version &&
               headers == o.headers && whole_body == o.whole_body &&
               (!whole_body || body == o.body) && expect_continue == o.expect_continue &&
               websocket == o.websocket && subprotocols == o.subprotocols;
    }
    // The same WebSocket conversation: accepted alike, the same messages to the app, the same
    // close code (the deterministic app takes everything and never closes first).
    bool same_websocket(const request_record& o) const {
        if (ws_accepted != o.ws_accepted || subprotocol != o.subprotocol) return false;
        if (ws_delivered.size() != o.ws_delivered.size()) return false;
        for (size_t i = 0; i < ws_delivered.size(); ++i)
            if (ws_delivered[i].text != o.ws_delivered[i].text ||
                ws_delivered[i].data != o.ws_delivered[i].data)
                return false;
        return ws_close_code == o.ws_close_code;
    }
};

struct app_exchange {
    std::shared_ptr<http::exchange> ex;
    plan p = plan::after_body;
    rng r{0};
    bool asked = false;     // want_body() called once (more calls would only reschedule)
    bool started = false;   // a head was accepted
    bool finished = false;  // done with this exchange (complete, refused, closed or aborted)
    bool waiting = false;   // send returned wait: no send until ev_drain or ev_disconnect
    size_t pieces_left = 0;
    uint64_t declared = 0, sent = 0;  // stream_length: content-length and body bytes so far
    // WebSocket
    ws_plan wp = ws_plan::accept;
    bool ws_answered = false;  // the handshake got its answer (accept, deny, fail or ignore)
    bool ws_mode = false;      // accepted: from now on the WebSocket calls
    bool drained = false;      // the accept completed (ev_drain)
    bool ws_aborted = false;
    bool slow = false;  // takes messages only now and then
    bool gone = false;  // the disconnect that detached the exchange was delivered
    int budget = 0;     // voluntary WebSocket actions left in this I/O phase
    size_t ws_sends = 0, ws_bytes = 0;
    std::vector<http::ws_message> echo;  // deterministic app: messages to send back
};

class app_model {
  public:
    app_model(uint64_t seed, int fixed_plan, bool deterministic, size_t body_bound)
        : r_(seed),
          fixed_plan_(fixed_plan),
          deterministic_(deterministic),
          body_bound_(body_bound) {}

    std::vector<request_record> records;  // one per request delivered, in order
    size_t output_allowance = 0;          // the most output the app's sends can account for
    // The WebSocket limits the messages taken must respect (ws::connection_config).
    uint64_t ws_max_message = UINT64_MAX;
    size_t ws_max_queue = SIZE_MAX;
    // The exchange the owner handed to a ws::connection (its disconnect carries a close code).
    const http::exchange* handed_over = nullptr;

    // Delivers one exchange's events. Returns true when the app did something.
    bool on_events(const std::shared_ptr<http::exchange>& ex, uint8_t ev) {
        FUZZ_CHECK(ev != 0);
        if (ev & http::ev_request) start(ex);
        app_exchange* a = find(ex.get());
        FUZZ_CHECK(a != nullptr);  // every event belongs to a request the app was told about
        // Nothing follows the disconnect that detached the exchange.
        FUZZ_CHECK(!a->gone);
        request_record& rec = record(*a);
        if (ev & http::ev_message) {
            // Messages only on an accepted WebSocket, after (or with) the accept's ev_drain.
            FUZZ_CHECK(a->ws_mode && (a->drained || (ev & http::ev_drain)));
            FUZZ_CHECK(ex.get() == handed_over);
        }
        if (ev & http::ev_body) FUZZ_CHECK(!rec.websocket);  // a handshake has no body
        if ((ev & http::ev_drain) && a->ws_mode) {
            if (!a->drained) FUZZ_CHECK(ex.get() == handed_over);  // the accept completed
            a->drained = true;
        }
        if (ev & http::ev_disconnect) {
            if (ex->connected()) {
                // Still attached: only the half-close of a client whose request is read.
                FUZZ_CHECK(ex->client_closed);
            } else {
                a->gone = true;
                ++rec.detached_disconnects;
                rec.ws_close_code = ex->ws_close_code;
                if (ex.get() == handed_over) {
                    // The WebSocket's disconnect: a close code a client may send or 1005/1006
                    // (or the server's shutdown code).
                    const uint16_t c = ex->ws_close_code;
                    FUZZ_CHECK(c >= 1000 && c < 5000);
                    FUZZ_CHECK(coachwhip::ws::is_valid_close_code(c) || c == 1005 || c == 1006);
                }
            }
        }
        if (ev & (http::ev_drain | http::ev_disconnect)) a->waiting = false;
        advance(*a);
        return true;
    }

    // One app turn for the exchanges that can make progress without a new event.
    bool step() {
        bool busy = false;
        for (auto& a : live_)
            busy = advance(*a) || busy;
        return busy;
    }

    // A new I/O phase: each WebSocket app may act a few times on its own again.
    void new_phase() {
        for (auto& a : live_)
            a->budget = 3;
    }

    // The app's view of the WebSocket exchange at the end (the owner dropped every connection).
    const request_record* record_of_exchange(const http::exchange* ex) const {
        for (size_t i = 0; i < live_.size(); ++i)
            if (live_[i]->ex.get() == ex) return &records[i];
        return nullptr;
    }

    void check_all_detached() {
        for (auto& a : live_) {
            FUZZ_CHECK(!a->ex->connected());
            const http::response_sink::head h{200, {}};
            FUZZ_CHECK(a->ex->send(&h, "late", false).status == http::send_status::closed);
        }
    }

  private:
    void start(const std::shared_ptr<http::exchange>& ex) {
        FUZZ_CHECK(find(ex.get()) == nullptr);  // ev_request comes once per exchange
        auto a = std::make_unique<app_exchange>();
        a->ex = ex;
        a->r = rng(r_.next());
        int pick = fixed_plan_ >= 0 ? fixed_plan_ : int(a->r.next() % int(plan::count));
        if (deterministic_) pick %= k_deterministic_plans;
        a->p = static_cast<plan>(pick);
        records.push_back(record_of(*ex));  // records[i] belongs to live_[i]
        if (ex->websocket) {
            // Accepting is the common case; the rest are the app's other answers.
            // Half the time a plain accept, else one of the other eight answers.
            const uint64_t w = a->r.next() % 16;
            a->wp = w < 8 ? ws_plan::accept : static_cast<ws_plan>(w - 7);
            if (deterministic_) a->wp = (w % 4) ? ws_plan::accept : ws_plan::deny;
            a->slow = !deterministic_ && a->r.one_in(3);
        } else if (!deterministic_ && a->r.one_in(32)) {
            // Accepting a request that is no handshake is an app error the connection refuses.
            // (Closed when the connection is already done with it.)
            const auto res = ex->ws_accept({}, {});
            FUZZ_CHECK(res.status == http::send_status::error ||
                       res.status == http::send_status::closed);
        }
        live_.push_back(std::move(a));
    }

    static request_record record_of(const http::exchange& ex) {
        request_record rec;
        rec.method = ex.method;
        rec.target = ex.target;
        rec.version = ex.http_version;
        rec.expect_continue = ex.expect_continue;
        rec.is_head = ex.method == "HEAD";
        rec.http10 = ex.http_version == "1.0";
        bool close = false, keep_alive = false;
        for (const auto& f : ex.headers) {
            rec.headers.emplace_back(f.name, f.value);
            if (!http1::iequals(f.name, "connection")) continue;
            for_each_token(f.value, [&](std::string_view t) {
                close |= http1::iequals(t, "close");
                keep_alive |= http1::iequals(t, "keep-alive");
            });
        }
        rec.asked_close = close || (rec.http10 && !keep_alive);
        rec.websocket = ex.websocket;
        for (std::string_view p : ex.ws_subprotocols)
            rec.subprotocols.emplace_back(p);
        if (!ex.websocket) FUZZ_CHECK(ex.ws_subprotocols.empty());
        return rec;
    }

    template <class Fn>
    static void for_each_token(std::string_view v, Fn&& fn) {
        while (!v.empty()) {
            const size_t comma = v.find(',');
            std::string_view t = v.substr(0, comma);
            while (!t.empty() && (t.front() == ' ' || t.front() == '\t'))
                t.remove_prefix(1);
            while (!t.empty() && (t.back() == ' ' || t.back() == '\t'))
                t.remove_suffix(1);
            fn(t);
            if (comma == std::string_view::npos) break;
            v.remove_prefix(comma + 1);
        }
    }

    app_exchange* find(const http::exchange* ex) {
        for (auto& a : live_)
            if (a->ex.get() == ex) return a.get();
        return nullptr;
    }

    request_record& record(const app_exchange& a) {
        for (size_t i = 0; i < live_.size(); ++i)
            if (live_[i].get() == &a) return records[i];
        invariant_failed("app exchange without a record", __FILE__, __LINE__);
    }

    // Reads what the plan reads. Returns true when it took bytes or asked for them.
    bool read_body(app_exchange& a) {
        http::exchange& ex = *a.ex;
        // ATTACKS.md D: buffered request body is bounded by the connection's limits, not by
        // what the client sends or what the app fails to take.
        FUZZ_CHECK(ex.body.size() <= body_bound_);
        if (a.p == plan::respond_now || a.p == plan::abort_early) return false;
        if (a.p == plan::want_only) {
            if (a.asked || ex.body_complete) return false;
            a.asked = true;
            record(a).app_read = true;
            ex.want_body();
            return true;
        }
        if (!ex.body.empty()) {
            record(a).app_read = true;
            record(a).body += ex.body;
            record(a).whole_body = ex.body_complete;
            ex.body_taken();
            return true;
        }
        if (ex.body_complete) record(a).whole_body = true;
        if (!ex.body_complete && !a.asked) {
            a.asked = true;
            record(a).app_read = true;
            ex.want_body();
            return true;
        }
        return false;
    }

    // One turn of the app for `a`. Returns true when it called into the exchange.
    bool advance(app_exchange& a) {
        if (a.finished) return false;
        if (a.ws_mode) return ws_turn(a);
        if (!a.ex->connected()) {
            a.finished = true;
            return false;
        }
        if (a.ex->websocket && !a.ws_answered) {
            const bool busy = ws_answer(a);
            if (a.ws_mode || a.finished) return busy;
        }
        bool busy = read_body(a);
        if (a.waiting) return busy;
        switch (a.p) {
            case plan::respond_now: return respond_whole(a, 200) || busy;
            case plan::abort_early:
                a.ex->abort();
                a.finished = true;
                return true;
            case plan::never: return busy;
            default: break;
        }
        if (!a.ex->body_complete) return busy;  // the rest wait for the whole body
        switch (a.p) {
            case plan::after_body:
            case plan::want_only: return respond_whole(a, pick_status(a)) || busy;
            case plan::no_content: return respond_no_content(a);
            case plan::invalid_first: return respond_invalid_first(a);
            case plan::abort_midway: return abort_midway(a);
            default: return stream_turn(a);
        }
    }

    int pick_status(app_exchange& a) {
        constexpr int k_statuses[] = {200, 200, 200, 201, 301, 404, 418, 500};
        return k_statuses[a.r.next() % std::size(k_statuses)];
    }

    // Sends and accounts. `valid`: the message follows every rule, so the connection must not
    // refuse it; otherwise it must refuse it (or report the client gone).
    http::send_status send(app_exchange& a, const http::response_sink::head* h,
                           std::string_view body, bool more, bool valid = true) {
        const http::send_result r = a.ex->send(h, body, more);
        if (!valid) {
            FUZZ_CHECK(r.status == http::send_status::error ||
                       r.status == http::send_status::closed);
            return r.status;
        }
        FUZZ_CHECK(r.status != http::send_status::error);
        output_allowance += body.size() + 32 + (h ? 512 : 0);  // chunk framing; head fields
        if (h) a.started = true;
        if (r.status == http::send_status::closed || !more) a.finished = true;
        if (r.status == http::send_status::wait) a.waiting = true;
        return r.status;
    }

    // Optional app headers. The server owns framing: an app's transfer-encoding is dropped and
    // its connection field only ever turns keep-alive off.
    std::vector<http::field> extra_fields(app_exchange& a) {
        switch (a.r.next() % 8) {
            case 0: return {{"x-app", "fuzz"}};
            case 1: return {{"Connection", "close"}};
            case 2: return {{"Server", "app"}, {"date", "Thu, 01 Jan 1970 00:00:00 GMT"}};
            case 3: return {{"Transfer-Encoding", "gzip, chunked"}};
            case 4: return {{"connection", "keep-alive"}, {"X-Empty", ""}};
            default: return {};
        }
    }

    bool respond_whole(app_exchange& a, int status) {
        const auto fields = extra_fields(a);
        const http::response_sink::head h{status, fields};
        send(a, &h, std::string(a.r.between(0, 300), 'b'), false);
        // Sending after the last piece is an app error the connection refuses.
        if (a.r.one_in(4) && a.ex->connected()) send(a, nullptr, "x", false, /*valid=*/false);
        return true;
    }

    // 204/304: a body is refused (except for HEAD, where no body is ever written), whole or
    // streamed after the head.
    bool respond_no_content(app_exchange& a) {
        const int status = a.r.one_in(2) ? 204 : 304;
        const http::response_sink::head h{status, {}};
        const bool head = record(a).is_head;
        if (a.r.one_in(2)) {
            if (!head) send(a, &h, "body", false, /*valid=*/false);
            if (a.ex->connected()) send(a, &h, "", false);
            return true;
        }
        if (send(a, &h, "", true) == http::send_status::closed) return true;
        if (!head && a.ex->connected()) send(a, nullptr, "body", false, /*valid=*/false);
        if (a.ex->connected()) send(a, nullptr, "", false);
        return true;
    }

    // Refused heads first (a split header, a body before any head, two content-lengths that
    // disagree, a body longer than its content-length), then a valid 500.
    bool respond_invalid_first(app_exchange& a) {
        const http::field split[] = {{"x-split", "a\r\nset-cookie: injected"}};
        const http::field lengths[] = {{"content-length", "3"}, {"Content-Length", "4"}};
        const http::field short_length[] = {{"content-length", "2"}};
        const http::response_sink::head bad[] = {{200, split}, {200, lengths}, {200, short_length}};
        size_t i = a.r.next() % 4;
        if (i == 2 && record(a).is_head) i = 0;  // HEAD: the body is never written nor counted
        if (i < 3) {
            send(a, &bad[i], "abc", false, /*valid=*/false);
        } else {
            send(a, nullptr, "abc", false, /*valid=*/false);
        }
        const http::field same[] = {{"content-length", "3"}, {"Content-Length", "3"}};
        const http::response_sink::head h{500, a.r.one_in(2) ? std::span<const http::field>(same)
                                                             : std::span<const http::field>()};
        if (a.ex->connected()) send(a, &h, "abc", false);
        return true;
    }

    bool abort_midway(app_exchange& a) {
        const http::response_sink::head h{200, {}};
        if (send(a, &h, std::string(a.r.between(0, 64), 'p'), true) != http::send_status::closed)
            a.ex->abort();
        a.finished = true;
        return true;
    }

    // Streams: the head first, then up to three pieces a turn until the last one.
    bool stream_turn(app_exchange& a) {
        const bool big = a.p == plan::big;
        if (!a.started) {
            a.pieces_left = big ? a.r.between(4, 8) : a.r.between(0, 6);
            const size_t piece = big ? 64 * 1024 : 100;
            std::vector<http::field> fields;
            std::string length;
            if (a.p == plan::stream_length) {
                a.declared = (a.pieces_left + 2) * piece;  // the head's piece, then k + 1 more
                length = std::to_string(a.declared);
                fields.push_back({"Content-Length", length});
            }
            const http::response_sink::head h{200, fields};
            if (a.p == plan::stream_length && !record(a).is_head && a.r.one_in(4))
                send(a, &h, std::string(a.declared + 1, 's'), true, /*valid=*/false);
            if (!a.ex->connected()) return true;
            send(a, &h, std::string(piece, 's'), true);
            a.sent = piece;
            return true;
        }
        for (int i = 0, turns = 1 + int(a.r.next() % 3); i < turns && !a.finished && !a.waiting;
             ++i) {
            const bool fixed = a.p == plan::stream_length;
            const size_t piece = big ? 64 * 1024 : fixed ? 100 : a.r.between(0, 100);
            const bool more = a.pieces_left > 0;
            if (a.pieces_left > 0) --a.pieces_left;
            // With a content-length, a piece that overshoots it or a last piece that falls
            // short is refused (HEAD excepted: its body is never written, so never counted).
            if (fixed && !more && !record(a).is_head && a.r.one_in(4)) {
                send(a, nullptr, std::string(piece + 1, 's'), false, /*valid=*/false);
                if (a.ex->connected())
                    send(a, nullptr, std::string(piece - 1, 's'), false, /*valid=*/false);
                if (!a.ex->connected()) break;
            }
            send(a, nullptr, std::string(piece, 's'), more);
            a.sent += piece;
        }
        return true;
    }

    // ---- WebSocket ----------------------------------------------------------------------------

    // Answers a handshake as its plan says. Returns true when it called into the exchange. A
    // denial leaves ws_mode off: the HTTP plan answers it (and the connection closes after it).
    bool ws_answer(app_exchange& a) {
        http::exchange& ex = *a.ex;
        request_record& rec = record(a);
        a.ws_answered = true;
        switch (a.wp) {
            case ws_plan::deny: {
                // A 101 through send() is refused: only ws_accept switches protocols.
                const http::response_sink::head h{101, {}};
                if (a.r.one_in(2)) send(a, &h, "", false, /*valid=*/false);
                if (!deterministic_ && a.r.one_in(2)) a.p = plan::respond_now;
                if (deterministic_) a.p = plan::after_body;
                return true;
            }
            case ws_plan::fail:
                ex.abort();
                a.finished = true;
                return true;
            case ws_plan::ignore: a.finished = true; return false;
            default: break;
        }
        if (a.wp == ws_plan::accept_unoffered) {
            std::string other = "x-not-offered";
            for (const auto& p : rec.subprotocols)
                other += p;  // longer than any offered one: never among them
            const auto res = ex.ws_accept(other, {});
            FUZZ_CHECK(res.status == http::send_status::error);
        }
        if (a.wp == ws_plan::accept_bad_header) {
            static const http::field bad[][1] = {{{"Sec-WebSocket-Accept", "x"}},
                                                 {{"upgrade", "h2c"}},
                                                 {{"Connection", "close"}},
                                                 {{"content-length", "0"}},
                                                 {{"Transfer-Encoding", "chunked"}},
                                                 {{"sec-websocket-extensions", "x"}},
                                                 {{"x-split", "a\r\nset-cookie: b"}},
                                                 {{"bad name", "v"}},
                                                 {{"", "v"}}};
            const auto res = ex.ws_accept({}, bad[a.r.next() % std::size(bad)]);
            FUZZ_CHECK(res.status == http::send_status::error);
            if (!ex.connected()) return true;
        }
        std::string_view sub;
        if (a.wp != ws_plan::accept_none && !rec.subprotocols.empty())
            sub = deterministic_ ? ex.ws_subprotocols.front()
                                 : ex.ws_subprotocols[a.r.next() % ex.ws_subprotocols.size()];
        static const http::field extra[][2] = {{{"x-app", "ws"}, {"set-cookie", "a=b"}},
                                               {{"Server", "app"}, {"date", "today"}},
                                               {{"x-empty", ""}, {"x-b", "c"}}};
        std::span<const http::field> fields;
        if (!deterministic_ && a.r.one_in(3))
            fields = std::span<const http::field>(extra[a.r.next() % std::size(extra)]);
        const http::send_result res = ex.ws_accept(sub, fields);
        // wait (ev_drain once the WebSocket took over) or closed; never refused: it is valid.
        FUZZ_CHECK(res.status == http::send_status::wait ||
                   res.status == http::send_status::closed);
        size_t head = 512 + sub.size();
        for (const auto& f : fields)
            head += f.name.size() + f.value.size() + 4;
        output_allowance += head;
        if (res.status != http::send_status::wait) {
            a.finished = true;
            return true;
        }
        rec.ws_accepted = true;
        rec.subprotocol = sub;
        a.ws_mode = true;
        a.waiting = true;  // no message before ev_drain
        if (!deterministic_ && a.r.one_in(4)) {
            // The response is the 101 now: an HTTP answer is refused, so is a second accept.
            const http::response_sink::head h{200, {}};
            FUZZ_CHECK(ex.send(&h, "x", false).status == http::send_status::error);
            FUZZ_CHECK(ex.ws_accept({}, {}).status == http::send_status::error);
        }
        if (a.wp == ws_plan::accept_close) {
            static const uint16_t codes[] = {1000, 1001, 3000, 4999, 1005, 0};
            ex.ws_close(codes[a.r.next() % std::size(codes)],
                        std::string(a.r.between(0, 130), 'c'));
            rec.ws_app_closed = true;
        } else if (a.wp == ws_plan::accept_abort) {
            ex.abort();
            a.ws_aborted = true;
        }
        return true;
    }

    // Takes every waiting message (the bridge's receive()), checking what the engine promises.
    void ws_take(app_exchange& a) {
        http::exchange& ex = *a.ex;
        request_record& rec = record(a);
        FUZZ_CHECK(ex.ws_inbox.size() <= std::max<size_t>(ws_max_queue, 1));
        for (auto& m : ex.ws_inbox) {
            FUZZ_CHECK(m.data.size() <= ws_max_message);
            if (m.text) FUZZ_CHECK(coachwhip::ws::is_valid_utf8(m.data));
            if (deterministic_ && ex.connected()) a.echo.push_back(m);
            rec.ws_delivered.push_back(std::move(m));
        }
        ex.ws_inbox.clear();
        ex.ws_taken();
    }

    std::string ws_message(app_exchange& a, bool text) {
        size_t n = a.r.between(0, 200);
        if (a.r.one_in(8)) n = a.r.between(0, 100000);
        std::string s(n, 'x');
        for (auto& ch : s)
            ch = static_cast<char>(text ? 'a' + a.r.next() % 26 : a.r.next());
        if (a.r.one_in(2)) {  // compresses well too
            for (size_t i = 0; i < s.size(); ++i)
                s[i] = s[i % 7];
        }
        return s;
    }

    // Sends one message; true when the WebSocket accepted it.
    bool ws_send(app_exchange& a, bool text, std::string data) {
        request_record& rec = record(a);
        const http::send_result res = a.ex->ws_send(text, data);
        FUZZ_CHECK(res.status != http::send_status::error);
        ++a.ws_sends;
        a.ws_bytes += data.size();
        if (res.status == http::send_status::closed) return false;
        if (res.status == http::send_status::wait) a.waiting = true;
        output_allowance += data.size() + data.size() / 8 + 64;
        rec.ws_largest_sent = std::max(rec.ws_largest_sent, data.size());
        rec.ws_sent.push_back({text, std::move(data)});
        return true;
    }

    // One turn of an accepted WebSocket's app.
    bool ws_turn(app_exchange& a) {
        http::exchange& ex = *a.ex;
        request_record& rec = record(a);
        bool busy = false;
        // Messages that arrived before a disconnect are taken too (the bridge delivers them
        // before websocket.disconnect).
        if (!ex.ws_inbox.empty() && (!a.slow || !ex.connected() || a.r.one_in(3))) {
            ws_take(a);
            busy = true;
        }
        if (!ex.connected()) {
            if (ex.ws_inbox.empty()) a.finished = true;
            if (!deterministic_ && a.r.one_in(4))  // a send after the disconnect raises
                FUZZ_CHECK(ex.ws_send(true, "late").status == http::send_status::closed);
            return busy;
        }
        if (!a.drained || a.ws_aborted) return busy;
        if (deterministic_) {
            // Echo what arrived, honouring wait/drain; never close first.
            while (!a.echo.empty() && !a.waiting && ex.connected()) {
                http::ws_message m = std::move(a.echo.front());
                a.echo.erase(a.echo.begin());
                ws_send(a, m.text, std::move(m.data));
                busy = true;
            }
            return busy;
        }
        if (a.budget <= 0 || rec.ws_app_closed) return busy;
        --a.budget;
        const uint64_t pick = a.r.next() % 64;
        if (pick < 20) {
            if (a.waiting || a.ws_sends >= 64 || a.ws_bytes >= (size_t{2} << 20)) return busy;
            const bool text = a.r.one_in(2);
            ws_send(a, text, ws_message(a, text));
            return true;
        }
        switch (pick) {
            case 20: {
                static const uint16_t codes[] = {1000, 1001, 1011, 3000, 4999, 1005, 999, 0};
                std::string reason(a.r.between(0, 130), 'r');
                if (a.r.one_in(2)) reason += "\xe2\x82\xac";
                ex.ws_close(codes[a.r.next() % std::size(codes)], reason);
                rec.ws_app_closed = true;
                FUZZ_CHECK(ex.ws_send(true, "x").status == http::send_status::closed);
                return true;
            }
            case 21:
                if (!a.r.one_in(4)) return busy;
                ex.abort();
                a.ws_aborted = true;
                return true;
            case 22: {  // HTTP after the upgrade: nothing to send
                const http::response_sink::head h{200, {}};
                const auto res = ex.send(&h, "x", false);
                FUZZ_CHECK(res.status == http::send_status::closed ||
                           res.status == http::send_status::error);
                return true;
            }
            case 23: {
                const auto res = ex.ws_accept({}, {});
                FUZZ_CHECK(res.status == http::send_status::closed ||
                           res.status == http::send_status::error);
                ex.want_body();
                return true;
            }
            default: return busy;
        }
    }

    rng r_;
    int fixed_plan_;
    bool deterministic_;
    size_t body_bound_;
    std::vector<std::unique_ptr<app_exchange>> live_;
};

}  // namespace coachwhip_fuzz
