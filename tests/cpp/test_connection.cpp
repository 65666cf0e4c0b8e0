// http1::connection driven entirely in memory: a fake transport, a fake owner and a small echo
// "app" that answers through the same http::exchange interface the Python bridge uses.
// Every conversation in the table is also fed split at every byte boundary.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "http1/connection.hpp"
#include "proxy/forwarded.hpp"

using namespace coachwhip;
using timer_kind = http1::connection_owner::timer_kind;

namespace {

struct mem_transport final : core::transport {
    std::string input;
    size_t pos = 0;
    bool eof = false;
    std::string output;
    size_t write_budget = SIZE_MAX;  // bytes the "client" accepts before its window is full
    bool shut = false, closed = false;

    int reads = 0;  // read() calls, EAGAIN and EOF included
    // writev(fin_next = true) that wrote everything: the kernel holds those bytes for the FIN,
    // so the very next call must be shutdown_write() or close(); checked on every call.
    bool fin_owed = false;
    int fin_writes = 0;  // complete writes made with fin_next

    ssize_t read(char* buf, size_t len) override {
        EXPECT_FALSE(fin_owed) << "read() between a fin_next write and the FIN";
        ++reads;
        if (pos < input.size()) {
            size_t n = std::min(len, input.size() - pos);
            std::memcpy(buf, input.data() + pos, n);
            pos += n;
            return static_cast<ssize_t>(n);
        }
        return eof ? 0 : -EAGAIN;
    }
    ssize_t writev(const iovec* iov, int n, bool fin_next) override {
        EXPECT_FALSE(fin_owed) << "writev() between a fin_next write and the FIN";
        if (write_budget == 0) return -EAGAIN;
        size_t written = 0;
        for (int i = 0; i < n && write_budget > 0; ++i) {
            size_t take = std::min(iov[i].iov_len, write_budget);
            output.append(static_cast<const char*>(iov[i].iov_base), take);
            write_budget -= take;
            written += take;
        }
        size_t offered = 0;
        for (int i = 0; i < n; ++i)
            offered += iov[i].iov_len;
        if (fin_next && written == offered) {
            fin_owed = true;
            ++fin_writes;
        }
        return static_cast<ssize_t>(written);
    }
    void shutdown_write() override {
        shut = true;
        fin_owed = false;
    }
    void close() override {
        closed = true;
        fin_owed = false;
    }
};

// The echo app: once the whole body is in, answers 200 with "<method> <target> <body>".
struct harness final : http1::connection_owner {
    mem_transport t;
    http1::connection_config cfg;
    http::event_queue events;
    http::endpoint client{"127.0.0.1", 5555, true};
    http::endpoint server{"127.0.0.1", 8000, true};
    std::unique_ptr<http1::connection> conn;
    std::vector<http1::connection*> scheduled;
    timer_kind armed = timer_kind::none;
    timer_kind write_armed = timer_kind::none;
    bool rate_armed = false;
    uint64_t now = 1000;  // the owner's clock, in ms; tests move it
    size_t in_flight = 0;
    int arm_count = 0;
    size_t max_in_flight = SIZE_MAX;
    bool closed = false;
    bool auto_respond = true;
    std::vector<std::shared_ptr<http::exchange>> exchanges;
    std::vector<std::string> bodies;  // per exchange, what the app has taken so far

    explicit harness(uint64_t max_body = 0, uint64_t min_body_rate = 0,
                     uint64_t min_response_rate = 0) {
        cfg.date_header = false;
        cfg.max_body = max_body;
        cfg.min_body_rate = min_body_rate;
        cfg.min_response_rate = min_response_rate;
        conn = std::make_unique<http1::connection>(t, *this, cfg, events, client, server);
    }

    void schedule(http1::connection& c) override {
        if (!c.scheduled) scheduled.push_back(&c);
        c.scheduled = true;
    }
    void arm_timer(http1::connection&, timer_kind k) override {
        if (k == timer_kind::rate) {
            rate_armed = true;
            return;
        }
        (k == timer_kind::write ? write_armed : armed) = k;
        ++arm_count;
    }
    void disarm_timer(http1::connection&, timer_kind k) override {
        if (k == timer_kind::rate) {
            rate_armed = false;
            return;
        }
        (k == timer_kind::write ? write_armed : armed) = timer_kind::none;
    }
    uint64_t now_ms() const noexcept override { return now; }
    // The owner's rate timer fires `ms` from now (its slot is no longer armed when it does).
    void fire_rate_timer_after(uint64_t ms) {
        now += ms;
        ASSERT_TRUE(rate_armed);
        rate_armed = false;
        conn->on_timer(timer_kind::rate);
        pump();
    }
    bool admit_request(http1::connection&) override {
        if (in_flight >= max_in_flight) return false;
        ++in_flight;
        return true;
    }
    void request_finished(http1::connection&) override { --in_flight; }
    void on_closed(http1::connection&) override { closed = true; }
    int internal_answers = 0;
    bool internal_response(http1::connection&, std::string_view target,
                           http1::internal_reply& out) override {
        if (target != "/-/ping") return false;
        ++internal_answers;
        out.body = "pong";
        return true;
    }

    void feed(std::string_view bytes) {
        t.input.append(bytes);
        if (!closed) conn->on_readable();
        pump();
    }
    void end_input() {
        t.eof = true;
        if (!closed) conn->on_readable();
        pump();
    }
    void pump() {
        for (int round = 0; round < 1000; ++round) {
            bool busy = false;
            for (auto& ex : events.take()) {
                busy = true;
                uint8_t ev = ex->take_events();
                if (ev & http::ev_request) {
                    exchanges.push_back(ex);
                    bodies.emplace_back();
                }
                if (auto_respond) respond_if_ready(*ex);
            }
            for (auto* c : std::exchange(scheduled, {})) {
                busy = true;
                c->scheduled = false;
                if (!closed) c->process();
            }
            if (!busy) return;
        }
        FAIL() << "pump did not settle";
    }
    size_t index_of(const http::exchange& ex) {
        for (size_t i = 0; i < exchanges.size(); ++i)
            if (exchanges[i].get() == &ex) return i;
        return SIZE_MAX;
    }
    void respond_if_ready(http::exchange& ex) {
        size_t i = index_of(ex);
        if (i == SIZE_MAX || ex.response_complete || !ex.connected()) return;
        bodies[i] += ex.body;
        ex.body_taken();
        if (!ex.body_complete) return;
        std::string body = std::string(ex.method) + " " + std::string(ex.target) + " " + bodies[i];
        http::response_sink::head h{200, {}};
        ex.send(&h, body, false);
    }
};

std::string ok(std::string_view body, std::string_view extra = "") {
    return "HTTP/1.1 200 OK\r\nserver: coachwhip\r\ncontent-length: " +
           std::to_string(body.size()) + "\r\n" + std::string(extra) + "\r\n" + std::string(body);
}

std::string error_response(int status, std::string_view reason) {
    std::string body = std::string(reason) + "\n";
    return "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
           "\r\nserver: coachwhip\r\ncontent-type: text/plain; charset=utf-8\r\n"
           "connection: close\r\ncontent-length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
}

struct conversation {
    const char* name;
    std::string input;
    std::string output;
    bool closes;  // the server ends the connection (FIN) after the output
};

std::vector<conversation> conversations() {
    return {
        {"simple GET", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", ok("GET / "), false},
        {"pipelined three",
         "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
         "\r\nhelloGET /3?q=1 HTTP/1.1\r\nHost: a\r\n\r\n",
         ok("GET /1 ") + ok("POST /2 hello") + ok("GET /3?q=1 "), false},
        {"chunked body with trailer",
         "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n"
         "6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n",
         ok("POST /c hello world"), false},
        {"HTTP/1.0 closes", "GET /old HTTP/1.0\r\n\r\n", ok("GET /old ", "connection: close\r\n"),
         true},
        {"HTTP/1.0 keep-alive", "GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
         ok("GET /ka ", "connection: keep-alive\r\n"), false},
        {"connection close stops the pipeline",
         "GET /a HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: "
         "a\r\n\r\n",
         ok("GET /a ", "connection: close\r\n"), true},
        {"HEAD has no body", "HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n",
         "HTTP/1.1 200 OK\r\nserver: coachwhip\r\ncontent-length: 8\r\n\r\n", false},
        {"bare LF is rejected", "GET / HTTP/1.1\nHost: a\n\n", error_response(400, "Bad Request"),
         true},
        {"valid then garbage", "GET /v HTTP/1.1\r\nHost: a\r\n\r\n\x16\x03\x01\x02\x00",
         ok("GET /v ") + error_response(400, "Bad Request"), true},
        {"CL and TE together",
         "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
         "0\r\n\r\n",
         error_response(400, "Bad Request"), true},
        {"bad chunk framing",
         "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n",
         error_response(400, "Bad Request"), true},
        {"missing host", "GET / HTTP/1.1\r\n\r\n", error_response(400, "Bad Request"), true},
        {"unsupported version", "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
         error_response(505, "HTTP Version Not Supported"), true},
        // ATTACKS B: CONNECT never reaches the app, and nothing after it is read as a request
        // (a front end that saw a 2xx would be tunnelling those bytes past its rules).
        {"CONNECT is refused and ends the connection",
         "CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\n"
         "GET /admin/secret HTTP/1.1\r\nHost: localhost\r\n\r\n",
         error_response(501, "Not Implemented"), true},
        {"asterisk GET ends the connection",
         "GET * HTTP/1.1\r\nHost: a\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
         error_response(400, "Bad Request"), true},
        {"authority-form GET ends the connection",
         "GET a:80 HTTP/1.1\r\nHost: a\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
         error_response(400, "Bad Request"), true},
    };
}

void run_conversation(const conversation& c, size_t split) {
    harness h;
    if (split == 0 || split >= c.input.size()) {
        h.feed(c.input);
    } else {
        h.feed(c.input.substr(0, split));
        h.feed(c.input.substr(split));
    }
    EXPECT_EQ(h.t.output, c.output) << c.name << " split at " << split;
    EXPECT_EQ(h.t.shut || h.closed, c.closes) << c.name << " split at " << split;
}

TEST(Connection, ConversationsWholeAndSplitAtEveryByte) {
    for (const auto& c : conversations()) {
        run_conversation(c, 0);
        for (size_t k = 1; k < c.input.size(); ++k)
            run_conversation(c, k);
    }
}

TEST(Connection, ConversationsOneByteAtATime) {
    for (const auto& c : conversations()) {
        harness h;
        for (char ch : c.input)
            h.feed(std::string_view(&ch, 1));
        EXPECT_EQ(h.t.output, c.output) << c.name;
    }
}

TEST(Connection, KeepAliveTimerArmedWhenIdleAndClosesOnExpiry) {
    harness h;
    EXPECT_EQ(h.armed, timer_kind::keep_alive);
    h.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_EQ(h.armed, timer_kind::keep_alive);
    h.conn->on_timer(timer_kind::keep_alive);
    EXPECT_TRUE(h.closed);
}

TEST(Connection, ErrorResponseLingersThenCloses) {
    harness h;
    h.feed("BAD\x01 / HTTP/1.1\r\n\r\n");
    EXPECT_TRUE(h.t.shut);
    EXPECT_FALSE(h.closed);
    EXPECT_EQ(h.armed, timer_kind::linger);
    h.end_input();  // the client read the 400 and closed
    EXPECT_TRUE(h.closed);
}

// The client said it sends nothing more and everything it sent was read: no reset can hit the
// response, so the connection closes once it is written, without shutdown and lingering.
TEST(Connection, ClientRequestedCloseClosesWithoutLingering) {
    for (const char* req :
         {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "GET / HTTP/1.0\r\n\r\n"}) {
        harness h;
        h.feed(req);
        EXPECT_EQ(h.t.output.substr(0, 13).substr(9), "200 ") << req;
        EXPECT_TRUE(h.closed) << req;
        EXPECT_FALSE(h.t.shut) << req;
    }
}

// The last write of a response that ends the connection says the FIN follows (so the kernel
// can send both in one packet); a keep-alive response never does. mem_transport checks that
// the FIN really comes next.
TEST(Connection, FinalWriteBeforeCloseAnnouncesTheFin) {
    harness keep;
    keep.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_EQ(keep.t.fin_writes, 0);
    for (const char* req :
         {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "BAD\x01 / HTTP/1.1\r\n\r\n"}) {
        harness h;
        h.feed(req);
        EXPECT_EQ(h.t.fin_writes, 1) << req;
        EXPECT_TRUE(h.closed || h.t.shut) << req;
    }
    // Written in pieces: only the piece that completes the output announces it.
    harness slow;
    slow.t.write_budget = 10;
    slow.feed("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(slow.t.fin_writes, 0);
    EXPECT_FALSE(slow.closed);
    slow.t.write_budget = SIZE_MAX;
    slow.conn->on_writable();
    slow.pump();
    EXPECT_EQ(slow.t.fin_writes, 1);
    EXPECT_TRUE(slow.closed);
}

// Bytes after a Connection: close request are unread input: closing now could reset the
// connection before the client has the response, so it lingers as before.
TEST(Connection, InputAfterAConnectionCloseRequestStillLingers) {
    harness h;
    h.feed("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\n");
    EXPECT_TRUE(h.t.shut);
    EXPECT_FALSE(h.closed);
    EXPECT_EQ(h.armed, timer_kind::linger);
}

// A server-side reason to close (here a request body the app never read) keeps lingering.
TEST(Connection, ServerDecidedCloseStillLingers) {
    harness h;
    h.auto_respond = false;
    h.feed("POST / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 10\r\n\r\nab");
    http::response_sink::head head{200, {}};
    h.exchanges.at(0)->send(&head, "early", false);
    h.pump();
    EXPECT_TRUE(h.t.shut);
    EXPECT_FALSE(h.closed);
    EXPECT_EQ(h.armed, timer_kind::linger);
}

// An app that answers 101 to an Upgrade the engine does not implement: the head is refused, and
// whatever the app sends instead closes the connection, so the pipelined request behind the
// upgrade (bytes a front end would now be tunnelling) is never read (ATTACKS B).
TEST(Connection, RefusedHeadClosesTheConnection) {
    harness h;
    h.auto_respond = false;
    h.feed(
        "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n"
        "GET /admin/secret HTTP/1.1\r\nHost: a\r\n\r\n");
    ASSERT_EQ(h.exchanges.size(), 1u);
    http::response_sink::head switching{101, {}};
    EXPECT_EQ(h.exchanges[0]->send(&switching, "", false).status, http::send_status::error);
    http::response_sink::head fallback{500, {}};
    EXPECT_EQ(h.exchanges[0]->send(&fallback, "x", false).status, http::send_status::proceed);
    h.pump();
    EXPECT_EQ(h.exchanges.size(), 1u);
    EXPECT_EQ(h.t.output,
              "HTTP/1.1 500 Internal Server Error\r\nserver: coachwhip\r\n"
              "content-length: 1\r\nconnection: close\r\n\r\nx");
    EXPECT_TRUE(h.t.shut || h.closed);
}

TEST(Connection, EofBetweenRequestsCloses) {
    harness h;
    h.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    h.end_input();
    EXPECT_TRUE(h.closed);
    EXPECT_EQ(h.t.output, ok("GET / "));
}

TEST(Connection, HalfCloseAfterRequestStillGetsResponse) {
    harness h;
    h.auto_respond = false;
    h.feed("GET /late HTTP/1.1\r\nHost: a\r\n\r\n");
    h.end_input();
    ASSERT_EQ(h.exchanges.size(), 1u);
    EXPECT_TRUE(h.exchanges[0]->client_closed);
    EXPECT_TRUE(h.exchanges[0]->connected());
    h.respond_if_ready(*h.exchanges[0]);
    h.pump();
    EXPECT_EQ(h.t.output, ok("GET /late "));
    EXPECT_TRUE(h.closed);
}

TEST(Connection, EofInsideBodyDisconnectsTheApp) {
    harness h;
    h.auto_respond = false;
    h.feed("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc");
    h.end_input();
    ASSERT_EQ(h.exchanges.size(), 1u);
    EXPECT_FALSE(h.exchanges[0]->connected());
    EXPECT_TRUE(h.closed);
    http::response_sink::head head{200, {}};
    EXPECT_EQ(h.exchanges[0]->send(&head, "x", false).status, http::send_status::closed);
}

TEST(Connection, ExpectContinueOnlyWhenTheAppAsksForTheBody) {
    harness h;
    h.auto_respond = false;
    h.feed("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    ASSERT_EQ(h.exchanges.size(), 1u);
    EXPECT_EQ(h.t.output, "");
    h.exchanges[0]->want_body();
    h.pump();
    EXPECT_EQ(h.t.output, "HTTP/1.1 100 Continue\r\n\r\n");
    h.feed("hello");
    EXPECT_EQ(h.exchanges[0]->body, "hello");
    EXPECT_TRUE(h.exchanges[0]->body_complete);
}

TEST(Connection, ExpectContinueNeverReadMeansNo100AndClose) {
    harness h;
    h.auto_respond = false;
    h.feed("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    http::response_sink::head head{413, {}};
    h.exchanges[0]->send(&head, "", false);
    h.pump();
    EXPECT_EQ(h.t.output.find("100 Continue"), std::string::npos);
    EXPECT_NE(h.t.output.find("connection: close"), std::string::npos);
    EXPECT_TRUE(h.t.shut);
}

TEST(Connection, StreamedResponseIsChunked) {
    harness h;
    h.auto_respond = false;
    h.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    auto& ex = *h.exchanges[0];
    http::response_sink::head head{200, {}};
    EXPECT_EQ(ex.send(&head, "abc", true).status, http::send_status::proceed);
    EXPECT_EQ(ex.send(nullptr, "", true).status, http::send_status::proceed);
    EXPECT_EQ(ex.send(nullptr, "defgh", false).status, http::send_status::proceed);
    h.pump();
    EXPECT_EQ(h.t.output,
              "HTTP/1.1 200 OK\r\nserver: coachwhip\r\ntransfer-encoding: chunked\r\n\r\n"
              "3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n");
    EXPECT_EQ(ex.send(nullptr, "more", false).status, http::send_status::closed);
}

TEST(Connection, SlowReaderGetsBackpressureAndDrain) {
    harness h;
    h.auto_respond = false;
    h.t.write_budget = 0;
    h.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    auto& ex = *h.exchanges[0];
    http::response_sink::head head{200, {}};
    std::string chunk(64 * 1024, 'x');
    EXPECT_EQ(ex.send(&head, chunk, true).status, http::send_status::proceed);
    http::send_status st = http::send_status::proceed;
    int sends = 1;
    while (st == http::send_status::proceed && sends < 100) {
        st = ex.send(nullptr, chunk, true).status;
        ++sends;
    }
    EXPECT_EQ(st, http::send_status::wait);
    EXPECT_LE(sends * chunk.size(), h.cfg.write_high_water + chunk.size());
    h.pump();
    EXPECT_EQ(ex.take_events() & http::ev_drain, 0);
    h.t.write_budget = SIZE_MAX;  // the client reads again
    h.conn->on_writable();
    auto queued = h.events.take();
    ASSERT_EQ(queued.size(), 1u);
    EXPECT_TRUE(queued[0]->take_events() & http::ev_drain);
}

TEST(Connection, BodyBackpressurePausesReading) {
    harness h;
    h.auto_respond = false;
    std::string head = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n";
    h.feed(head + std::string(300 * 1024, 'b'));
    auto& ex = *h.exchanges[0];
    EXPECT_EQ(ex.body.size(), h.cfg.body_high_water);
    // Unread input stays in the transport: the connection stopped reading.
    EXPECT_LT(h.t.pos, head.size() + 200 * 1024);
    size_t got = ex.body.size();
    ex.body_taken();
    h.pump();
    EXPECT_GT(h.t.pos, head.size() + got);
}

// Regression: after the body pause, bytes already read (but not decoded) must be decoded when
// the app takes the body, even if the socket has nothing more to deliver.
TEST(Connection, BufferedBodyIsDecodedWhenReadingResumes) {
    // Sizes just past the 64 KiB pause leave the transport empty with undecoded bytes buffered.
    for (size_t size : {64 * 1024 + 1000, 70 * 1024, 100 * 1024, 200 * 1024})
        for (bool chunked : {false, true}) {
            harness h;
            h.auto_respond = false;
            std::string body(size, 'z');
            std::string req = "POST / HTTP/1.1\r\nHost: a\r\n";
            if (chunked) {
                req += "Transfer-Encoding: chunked\r\n\r\n";
                for (size_t i = 0; i < body.size(); i += 10000) {
                    std::string piece = body.substr(i, 10000);
                    char size[16];
                    std::snprintf(size, sizeof size, "%zx\r\n", piece.size());
                    req += size + piece + "\r\n";
                }
                req += "0\r\n\r\n";
            } else {
                req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
            }
            h.feed(req);
            ASSERT_EQ(h.exchanges.size(), 1u);
            auto& ex = *h.exchanges[0];
            std::string got;
            for (int i = 0; i < 100 && !(ex.body_complete && ex.body.empty()); ++i) {
                got += ex.body;
                ex.body_taken();
                h.pump();
            }
            EXPECT_EQ(got.size(), body.size())
                << (chunked ? "chunked " : "content-length ") << size;
            EXPECT_TRUE(ex.body_complete);
        }
}

TEST(Connection, InvalidResponseIsRefusedAndNothingWritten) {
    harness h;
    h.auto_respond = false;
    h.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    auto& ex = *h.exchanges[0];
    http::field bad[] = {{"x", "a\r\nset-cookie: x"}};
    http::response_sink::head head{200, bad};
    EXPECT_EQ(ex.send(&head, "", false).status, http::send_status::error);
    http::response_sink::head no_content{204, {}};
    EXPECT_EQ(ex.send(&no_content, "body", false).status, http::send_status::error);
    http::field cl[] = {{"content-length", "10"}};
    http::response_sink::head short_body{200, cl};
    EXPECT_EQ(ex.send(&short_body, "abc", false).status, http::send_status::error);
    h.pump();
    EXPECT_EQ(h.t.output, "");
    http::response_sink::head fine{200, cl};
    EXPECT_EQ(ex.send(&fine, "0123456789", false).status, http::send_status::proceed);
}

TEST(Connection, AbortAfterHeadClosesInTheIoPhase) {
    harness h;
    h.auto_respond = false;
    h.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    auto& ex = *h.exchanges[0];
    http::response_sink::head head{200, {}};
    ex.send(&head, "partial", true);
    ex.abort();
    EXPECT_FALSE(h.closed);  // no socket I/O from the app side
    h.pump();
    EXPECT_TRUE(h.closed);
}

TEST(Connection, ShutdownClosesIdleAfterItsGraceAndFinishesBusy) {
    harness idle;
    idle.conn->begin_shutdown();
    idle.pump();
    EXPECT_FALSE(idle.closed);  // a request may be on its way: it gets shutdown_idle to start
    EXPECT_EQ(idle.armed, timer_kind::shutdown_idle);
    idle.conn->on_timer(timer_kind::shutdown_idle);
    EXPECT_TRUE(idle.closed);
    EXPECT_EQ(idle.t.output, "");

    harness busy;
    busy.auto_respond = false;
    busy.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    busy.conn->begin_shutdown();
    EXPECT_FALSE(busy.closed);
    busy.respond_if_ready(*busy.exchanges[0]);
    busy.pump();
    EXPECT_NE(busy.t.output.find("connection: close"), std::string::npos);
    EXPECT_TRUE(busy.t.shut);
}

// Issue 9: a connection accepted just before a graceful stop, its request already in the socket
// but not yet read (TCP_DEFER_ACCEPT), is answered - with "connection: close" - not reset.
TEST(Connection, ShutdownReadsARequestAlreadyInTheSocket) {
    harness h;
    h.t.input = "GET /late HTTP/1.1\r\nHost: a\r\n\r\n";  // arrived, no readiness event yet
    h.conn->begin_shutdown();
    h.pump();
    EXPECT_EQ(h.t.output, ok("GET /late ", "connection: close\r\n"));
    EXPECT_TRUE(h.t.shut || h.closed);
}

// A request that starts within the grace is served and closes its connection; the grace timer
// firing after the head began changes nothing.
TEST(Connection, ShutdownServesARequestStartedInTheGrace) {
    harness h;
    h.feed("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n");
    h.conn->begin_shutdown();
    h.pump();
    h.feed("GET /2 HTT");
    h.conn->on_timer(timer_kind::shutdown_idle);
    EXPECT_FALSE(h.closed);
    h.feed("P/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_EQ(h.t.output, ok("GET /1 ") + ok("GET /2 ", "connection: close\r\n"));
    EXPECT_TRUE(h.t.shut || h.closed);
}

// ---- --proxy-protocol: the PROXY header comes first and names the client

const proxy::trusted_networks& trust(std::string_view spec) {
    static std::vector<std::unique_ptr<proxy::trusted_networks>> kept;
    kept.push_back(
        std::make_unique<proxy::trusted_networks>(proxy::parse_trusted_networks(spec).networks));
    return *kept.back();
}

std::string v2_local() {
    return std::string("\r\n\r\n\0\r\nQUIT\n", 12) + std::string("\x20\x00\x00\x00", 4);
}

TEST(ProxyProtocol, V1HeaderNamesTheClientAndServerSplitAtEveryByte) {
    const std::string input =
        "PROXY TCP4 203.0.113.1 192.0.2.1 56324 443\r\nGET /p HTTP/1.1\r\nHost: a\r\n\r\n";
    for (size_t split = 0; split < input.size(); ++split) {
        harness h;
        h.cfg.proxy_protocol_from = &trust("127.0.0.1");
        h.conn = std::make_unique<http1::connection>(h.t, h, h.cfg, h.events, h.client, h.server);
        h.auto_respond = false;
        if (split) h.feed(input.substr(0, split));
        h.feed(input.substr(split));
        ASSERT_EQ(h.exchanges.size(), 1u) << split;
        EXPECT_EQ(h.exchanges[0]->client.host, "203.0.113.1");
        EXPECT_EQ(h.exchanges[0]->client.port, 56324);
        EXPECT_EQ(h.exchanges[0]->server.host, "192.0.2.1");
        EXPECT_EQ(h.exchanges[0]->target, "/p");
    }
}

TEST(ProxyProtocol, V2LocalKeepsTheSocketAddresses) {
    harness h;
    h.cfg.proxy_protocol_from = &trust("127.0.0.1");
    h.conn = std::make_unique<http1::connection>(h.t, h, h.cfg, h.events, h.client, h.server);
    h.feed(v2_local() + "GET /l HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_EQ(h.t.output, ok("GET /l "));
}

TEST(ProxyProtocol, MissingInvalidOrUntrustedHeaderClosesWithoutAnswer) {
    for (const auto& [input, allow] : std::vector<std::pair<std::string, std::string>>{
             {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "127.0.0.1"},
             {"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\nGET / HTTP/1.1\r\n\r\n", "127.0.0.1"},
             {"PROXY TCP4 203.0.113.1 192.0.2.1 1 2\r\nGET / HTTP/1.1\r\n\r\n", "10.0.0.1"},
         }) {
        harness h;
        h.cfg.proxy_protocol_from = &trust(allow);
        h.conn = std::make_unique<http1::connection>(h.t, h, h.cfg, h.events, h.client, h.server);
        h.feed(input);
        EXPECT_TRUE(h.closed) << input;
        EXPECT_EQ(h.t.output, "") << input;
        EXPECT_TRUE(h.exchanges.empty()) << input;
    }
    harness cut;  // the connection ends inside the header: closed, no 400
    cut.cfg.proxy_protocol_from = &trust("*");
    cut.conn = std::make_unique<http1::connection>(cut.t, cut, cut.cfg, cut.events, cut.client,
                                                   cut.server);
    cut.feed("PROXY TCP4 1.2");
    cut.end_input();
    EXPECT_TRUE(cut.closed);
    EXPECT_EQ(cut.t.output, "");
}

// ---- proxy headers: applied only for a trusted peer (the rules: tests/cpp/test_forwarded.cpp)

TEST(ProxyHeaders, TrustedPeerNamesClientAndSchemeUntrustedDoesNot) {
    for (const auto& [allow, expect_host] : std::vector<std::pair<std::string, std::string>>{
             {"127.0.0.1", "198.51.100.7"}, {"10.0.0.0/8", "127.0.0.1"}}) {
        harness h;
        h.cfg.forwarded_trust = &trust(allow);
        h.conn = std::make_unique<http1::connection>(h.t, h, h.cfg, h.events, h.client, h.server);
        h.feed(
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.7\r\n"
            "x-forwarded-proto: https\r\n\r\n");
        ASSERT_EQ(h.exchanges.size(), 1u);
        EXPECT_EQ(h.exchanges[0]->client.host, expect_host);
        EXPECT_EQ(h.exchanges[0]->scheme, expect_host == "127.0.0.1" ? "http" : "https");
    }
}

// ---- internal endpoints (/-/...): answered by the owner, in order with the app's responses

std::string pong(std::string_view extra = "") {
    return "HTTP/1.1 200 OK\r\nserver: coachwhip\r\ncontent-type: text/plain; "
           "charset=utf-8\r\ncache-control: no-store\r\ncontent-length: 4\r\n" +
           std::string(extra) + "\r\npong";
}

TEST(Internal, AnsweredWithoutTheAppAndInOrder) {
    harness h;
    h.feed(
        "GET /-/ping HTTP/1.1\r\nHost: a\r\n\r\nGET /a HTTP/1.1\r\nHost: a\r\n\r\n"
        "GET /-/ping HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_EQ(h.t.output, pong() + ok("GET /a ") + pong());
    EXPECT_EQ(h.exchanges.size(), 1u);
    EXPECT_EQ(h.in_flight, 0u);
    EXPECT_EQ(h.armed, timer_kind::keep_alive);
    EXPECT_FALSE(h.closed);
}

TEST(Internal, ManyPipelinedProbesNeedNoRecursion) {
    harness h;
    std::string many;
    for (int i = 0; i < 2000; ++i)
        many += "GET /-/ping HTTP/1.1\r\nHost: a\r\n\r\n";
    h.feed(many);
    EXPECT_EQ(h.internal_answers, 2000);
}

TEST(Internal, OtherMethodsBodiesAndPathsGoToTheApp) {
    harness h;
    h.feed(
        "POST /-/ping HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx"
        "GET /-/other HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_EQ(h.t.output, ok("POST /-/ping x") + ok("GET /-/other "));
    EXPECT_EQ(h.internal_answers, 0);
}

TEST(Internal, HeadAndCloseAreHonoured) {
    harness h;
    h.feed(
        "HEAD /-/ping HTTP/1.1\r\nHost: a\r\n\r\n"
        "GET /-/ping HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        "GET /never HTTP/1.1\r\nHost: a\r\n\r\n");
    std::string head_only = pong();
    head_only.resize(head_only.size() - 4);
    EXPECT_EQ(h.t.output, head_only + pong("connection: close\r\n"));
    EXPECT_TRUE(h.t.shut || h.closed);
    EXPECT_TRUE(h.exchanges.empty());
}

// ---- minimum data rates (issue 9): 240 bytes/s after a 5 s grace, as Kestrel's defaults

TEST(Limits, SlowBodyBelowTheMinimumRateGets408AfterTheGrace) {
    harness h(0, 240);
    h.auto_respond = false;
    h.feed("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nabc");
    ASSERT_TRUE(h.rate_armed);
    h.fire_rate_timer_after(1000);  // 3 bytes in 1 s, but inside the grace
    EXPECT_FALSE(h.closed);
    EXPECT_TRUE(h.rate_armed);
    h.feed(std::string(900, 'x'));  // 903 bytes
    h.fire_rate_timer_after(3000);  // 4 s: still inside the grace
    EXPECT_EQ(h.t.output, "");
    h.fire_rate_timer_after(1000);  // 5 s: 903 < 240 * 5
    EXPECT_EQ(h.t.output, error_response(408, "Request Timeout"));
    EXPECT_FALSE(h.exchanges[0]->connected());  // the app's receive() now says disconnect
}

TEST(Limits, BodyAtTheMinimumRateIsKeptAndStallsWithinTheAverageAreForgiven) {
    harness h(0, 240);
    h.auto_respond = false;
    h.feed("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n");
    h.feed(std::string(2400, 'x'));                // a burst, then a stall
    h.fire_rate_timer_after(9000);                 // 2400 bytes in 9 s: 267 bytes/s on average
    for (int second = 0; second < 20; ++second) {  // then exactly the minimum
        h.feed(std::string(240, 'x'));
        h.fire_rate_timer_after(1000);
    }
    EXPECT_EQ(h.t.output, "");
    EXPECT_FALSE(h.closed);
}

// The clock stops while the app leaves the body untaken (backpressure) or a 100 Continue is
// owed: the client is then waiting on us, not we on it.
TEST(Limits, BodyRateClockStopsWhileTheAppIsNotReading) {
    harness h(0, 240);
    h.auto_respond = false;
    h.feed("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n\r\n");
    h.feed(std::string(h.cfg.body_high_water, 'x'));  // buffered up to the mark: paused
    EXPECT_FALSE(h.rate_armed);
    h.now += 60000;
    h.exchanges[0]->body_taken();
    h.pump();
    ASSERT_TRUE(h.rate_armed);
    h.fire_rate_timer_after(1000);
    EXPECT_FALSE(h.closed);

    harness c(0, 240);
    c.auto_respond = false;
    c.feed("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    EXPECT_FALSE(c.rate_armed);
    EXPECT_NE(c.armed, timer_kind::body);  // nor does the body deadline run before the 100
}

TEST(Limits, ReaderBelowTheMinimumResponseRateIsCutOff) {
    harness h(0, 0, 240);
    h.auto_respond = false;
    h.t.write_budget = 1000;
    h.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    http::response_sink::head head{200, {}};
    h.exchanges[0]->send(&head, std::string(100000, 'y'), false);
    h.pump();
    ASSERT_TRUE(h.conn->write_blocked());
    ASSERT_TRUE(h.rate_armed);
    h.fire_rate_timer_after(4000);
    EXPECT_FALSE(h.closed);
    h.t.write_budget = 100;  // the client takes 100 more bytes: 1100 in 5 s < 240 * 5
    h.conn->on_writable();
    h.fire_rate_timer_after(1000);
    EXPECT_TRUE(h.closed);
}

TEST(Limits, ReaderAtTheMinimumResponseRateIsKept) {
    harness h(0, 0, 240);
    h.auto_respond = false;
    h.t.write_budget = 0;
    h.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    http::response_sink::head head{200, {}};
    h.exchanges[0]->send(&head, std::string(20000, 'y'), false);
    h.pump();
    for (int second = 0; second < 30; ++second) {
        h.t.write_budget = 300;
        h.conn->on_writable();
        h.fire_rate_timer_after(1000);
    }
    EXPECT_FALSE(h.closed);
    h.t.write_budget = SIZE_MAX;
    h.conn->on_writable();
    h.pump();
    EXPECT_FALSE(h.rate_armed);  // nothing left to measure once the client has it all
}

TEST(Limits, HeaderDeadlineIsNotExtendedByTrickling) {
    harness h;
    h.feed("GET / HT");
    EXPECT_EQ(h.armed, timer_kind::header);
    int arms = h.arm_count;
    for (char c : std::string("TP/1.1\r\nHost: a\r\nX-Slow: 1"))  // slowloris: a byte at a time
        h.feed(std::string_view(&c, 1));
    EXPECT_EQ(h.arm_count, arms) << "a trickling client pushed its deadline back";
    h.conn->on_timer(timer_kind::header);
    h.pump();
    EXPECT_EQ(h.t.output, error_response(408, "Request Timeout"));
    EXPECT_TRUE(h.t.shut);
    EXPECT_TRUE(h.exchanges.empty());
}

TEST(Limits, SlowBodyGets408AndTheAppIsDisconnected) {
    harness h;
    h.auto_respond = false;
    h.feed("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc");
    EXPECT_EQ(h.armed, timer_kind::body);
    h.conn->on_timer(timer_kind::body);
    h.pump();
    EXPECT_EQ(h.t.output, error_response(408, "Request Timeout"));
    ASSERT_EQ(h.exchanges.size(), 1u);
    EXPECT_FALSE(h.exchanges[0]->connected());
}

TEST(Limits, BodyTimerStopsWhileTheAppHasNotTakenTheBody) {
    harness h;
    h.auto_respond = false;
    h.feed("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n" +
           std::string(100 * 1024, 'x'));
    EXPECT_EQ(h.armed, timer_kind::none) << "the client is not at fault while we are paused";
    h.exchanges[0]->body_taken();
    h.pump();
    EXPECT_EQ(h.armed, timer_kind::body);
}

TEST(Limits, ClientThatStopsReadingIsClosedByTheWriteTimeout) {
    harness h;
    h.auto_respond = false;
    h.t.write_budget = 1000;
    h.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    auto& ex = *h.exchanges[0];
    http::response_sink::head head{200, {}};
    ex.send(&head, std::string(100000, 'y'), true);
    h.pump();
    EXPECT_EQ(h.write_armed, timer_kind::write);
    h.conn->on_timer(timer_kind::write);
    EXPECT_TRUE(h.closed);
    EXPECT_EQ(ex.send(nullptr, "more", true).status, http::send_status::closed);
}

TEST(Limits, WriteTimerClearedOnceEverythingIsWritten) {
    harness h;
    h.auto_respond = false;
    h.t.write_budget = 10;
    h.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    http::response_sink::head head{200, {}};
    h.exchanges[0]->send(&head, "hello world", false);
    h.pump();
    EXPECT_EQ(h.write_armed, timer_kind::write);
    h.t.write_budget = SIZE_MAX;
    h.conn->on_writable();
    EXPECT_EQ(h.write_armed, timer_kind::none);
}

TEST(Limits, ContentLengthOverTheBodyLimitIs413WithoutTheApp) {
    harness h(100);
    h.feed("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n");
    EXPECT_TRUE(h.exchanges.empty());
    EXPECT_EQ(h.t.output, error_response(413, "Content Too Large"));
    harness at_limit(100);
    at_limit.feed("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n" +
                  std::string(100, 'k'));
    EXPECT_EQ(at_limit.exchanges.size(), 1u);
    EXPECT_EQ(at_limit.t.output.substr(0, 15), "HTTP/1.1 200 OK");
}

TEST(Limits, ChunkedBodyOverTheLimitIs413AndDisconnectsTheApp) {
    harness h(10);
    h.auto_respond = false;
    h.feed(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n");
    ASSERT_EQ(h.exchanges.size(), 1u);
    EXPECT_FALSE(h.exchanges[0]->connected());
    EXPECT_EQ(h.t.output, error_response(413, "Content Too Large"));
}

TEST(Limits, ConcurrencyLimitAnswers503AndCountsEveryRequestOnce) {
    harness h;
    h.max_in_flight = 0;
    h.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_EQ(h.t.output, error_response(503, "Service Unavailable"));
    EXPECT_TRUE(h.exchanges.empty());

    harness ok_then_done;
    ok_then_done.max_in_flight = 1;
    ok_then_done.feed("GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_EQ(ok_then_done.exchanges.size(), 2u);  // sequential on one connection: both fit
    EXPECT_EQ(ok_then_done.in_flight, 0u);
    ok_then_done.end_input();
    EXPECT_EQ(ok_then_done.in_flight, 0u);
}

// An edge-triggered stream socket with no EOF pending: a read shorter than asked emptied the
// queue, so the connection stops without the read that would say EAGAIN.
TEST(Connection, ShortReadEndsReadingWhenTheTransportSaysItDrains) {
    for (bool drains : {false, true}) {
        harness h;
        h.t.input = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        h.conn->on_readable(drains);
        h.pump();
        EXPECT_EQ(h.t.reads, drains ? 1 : 2) << "drains=" << drains;
        EXPECT_EQ(h.t.output.substr(0, 15), "HTTP/1.1 200 OK");
        // The next request arrives with its own event and is served.
        h.t.input += "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
        h.conn->on_readable(drains);
        h.pump();
        EXPECT_NE(h.t.output.find("GET /2"), std::string::npos);
    }
}

// A read that fills the buffer says nothing about what is left: reading goes on.
TEST(Connection, FullReadKeepsReadingEvenWhenShortReadsDrain) {
    harness h;
    std::string body(h.cfg.read_chunk * 3, 'x');
    h.t.input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: " + std::to_string(body.size()) +
                "\r\n\r\n" + body;
    h.conn->on_readable(true);
    h.pump();
    EXPECT_EQ(h.t.output.substr(0, 15), "HTTP/1.1 200 OK");
    EXPECT_NE(h.t.output.find(body), std::string::npos);
}

TEST(Connection, IdleConnectionReleasesItsBuffer) {
    harness h;
    h.feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    EXPECT_TRUE(h.conn->idle());
}

}  // namespace

namespace {
// Regression (fuzz_connection): a chunked body that crosses --limit-request-body and then
// breaks its framing must get the same answer however the bytes are split.
TEST(Limits, ChunkedLimitIsCheckedPerChunkNotPerRead) {
    const std::string req =
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n6\r\nworld\rXX\r\n0\r\n\r\n";
    for (size_t k = 0; k <= req.size(); ++k) {
        harness h(8);
        h.auto_respond = false;
        if (k == 0) {
            h.feed(req);
        } else {
            h.feed(req.substr(0, k));
            h.feed(req.substr(k));
        }
        EXPECT_EQ(h.t.output.substr(0, 12), "HTTP/1.1 413") << "split at " << k;
    }
}
}  // namespace
