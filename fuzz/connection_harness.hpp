// The in-memory world fuzz_connection runs an http1::connection in: a client transport, an owner
// that plays the server's event loop, and an app that answers through http::exchange the way
// the ASGI bridge does. Modelled on tests/cpp/test_connection.cpp, but every choice the app
// and the client make comes from the fuzz input, and every callback checks its contract.
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
    bool shut = false, closed = false;

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

    // The same request, read the same way. A body cut short by an error is compared only by
    // its absence of completion: how much of it the app took before the error depends on when
    // the app ran, not on how the bytes were read.
    bool same_reading(const request_record& o) const {
        return method == o.method && target == o.target && version == o.version &&
               headers == o.headers && whole_body == o.whole_body &&
               (!whole_body || body == o.body) && expect_continue == o.expect_continue;
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

    // Delivers one exchange's events. Returns true when the app did something.
    bool on_events(const std::shared_ptr<http::exchange>& ex, uint8_t ev) {
        if (ev & http::ev_request) start(ex);
        app_exchange* a = find(ex.get());
        FUZZ_CHECK(a != nullptr);  // every event belongs to a request the app was told about
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
        if (!a.ex->connected()) {
            a.finished = true;
            return false;
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

    rng r_;
    int fixed_plan_;
    bool deterministic_;
    size_t body_bound_;
    std::vector<std::unique_ptr<app_exchange>> live_;
};

}  // namespace coachwhip_fuzz
