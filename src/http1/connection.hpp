// coachwhip::http1::connection — one HTTP/1.x connection: parsing, body framing, response
// serialisation, keep-alive and pipelining, over an abstract transport.
//
// Threading and phases. All methods run on the engine thread. The I/O entry points
// (`on_readable`, `on_writable`, `on_hangup`, `process`, `on_timer`) run in the engine's I/O
// phase, with the GIL released; they never call the app side, they post events on exchanges.
// The response_sink methods (`send`, `abort`, `want_body`) are called by the app side with the
// GIL held; they only buffer and ask the owner to schedule `process()` for the next I/O phase,
// so no socket I/O happens under the GIL.
//
// States (one request at a time; pipelined requests wait in the input buffer). With
// --proxy-protocol, read_head first consumes the PROXY header (or closes: untrusted peer,
// invalid header); the first request head follows it.
//
//   read_head --head parsed--> in_request --response done, body done, keep-alive--> read_head
//       |                          |  |
//       |                          |  `--WebSocket accepted, 101 written--> upgraded
//       |--parse error------------>|--> draining --all output written--> lingering --> closed
//       |                          |    (error response, connection: close, or not keep-alive)
//       `--EOF, idle timeout-------+--EOF in a body, reset, app abort------------------> closed
//
// WebSocket (cfg.websocket set): a request whose Upgrade lists "websocket" is checked as a
// handshake (ws::check_upgrade): 400 or 426 without calling the app, else it reaches the app as
// an exchange marked `websocket`. An HTTP answer (a denial) closes the connection after it. An
// accept (ws_accept) queues the 101; once it is written, the connection hands the transport,
// the exchange and the bytes read after the request to the owner (connection_owner::upgrade)
// and stays `upgraded`: dormant, every entry point a no-op, until the owner destroys it.
//
// Lingering close (draining -> lingering): after the last response is written we send FIN and
// read-and-discard for a short while, so the client receives the response instead of a reset
// caused by request bytes we never read.
//
// Memory bounds: the input buffer holds at most `limits.max_head` + one read chunk; a request
// body is buffered up to `body_high_water` (reading pauses above it); buffered output above
// `write_high_water` makes `send` return wait. An idle keep-alive connection frees its buffers.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "core/buffer.hpp"
#include "core/transport.hpp"
#include "http/exchange.hpp"
#include "http/refusal.hpp"
#include "http1/chunked.hpp"
#include "http1/message.hpp"
#include "http1/parser.hpp"
#include "http1/response.hpp"
#include "proxy/forwarded.hpp"
#include "ws/handshake.hpp"

namespace coachwhip::http1 {

struct connection_config {
    limits head_limits{};
    uint64_t max_body = 0;  // request body bytes allowed; 0 = no limit (413 above it)
    size_t read_chunk = 16 * 1024;
    size_t body_high_water = 64 * 1024;
    size_t write_high_water = 256 * 1024;
    size_t write_low_water = 64 * 1024;
    size_t linger_max_bytes = 256 * 1024;  // discard at most this much while lingering
    bool server_header = true;
    bool date_header = true;
    // The operator's fields for every response (--header) and the server line; see
    // default_headers in response.hpp.
    default_headers defaults{};
    // Where input buffers of `read_chunk` bytes come from and go back to (optional; not owned,
    // outlives the connections).
    core::block_pool* read_blocks = nullptr;
    // Minimum data rates in bytes/s (0: off), the slow-POST and slow-reader defences. Each is
    // an average over the time the server spends waiting on the client (for request body bytes
    // while the app wants them; with output the client is not taking), judged once that time
    // reaches `min_rate_grace_ms`. Request body too slow: 408, the app sees http.disconnect.
    // Response too slow: the connection closes (a waiting send() raises).
    uint64_t min_body_rate = 0;
    uint64_t min_response_rate = 0;
    uint64_t min_rate_grace_ms = 5000;
    // Proxy headers (--proxy-headers): the peers whose X-Forwarded-For/-Proto and Forwarded
    // fields name the client and scheme (not owned; nullptr: proxy headers are off).
    const proxy::trusted_networks* forwarded_trust = nullptr;
    // --proxy-protocol: every connection must start with a PROXY header (v1 or v2), accepted
    // only from these peers (not owned; nullptr: no PROXY header is expected).
    const proxy::trusted_networks* proxy_protocol_from = nullptr;
    // The listener serves only the internal endpoints (--metrics-bind): anything the owner
    // does not answer itself gets 404, and no app ever runs.
    bool internal_only = false;
    // WebSocket upgrades and what permessage-deflate may agree to (not owned; nullptr: --ws
    // none, an upgrade request is an ordinary request).
    const ws::deflate_config* websocket = nullptr;
    // HTTP/2 with prior knowledge (--http auto|2 on a plain port): a connection that starts with
    // the client preface goes to the owner (connection_owner::upgrade_h2).
    bool h2_prior_knowledge = false;
    // An `Upgrade: h2c` request is switched only once its body is read: bodies up to this size
    // are buffered for it (larger ones, and chunked ones, stay HTTP/1.1).
    size_t h2c_max_body = 1 << 20;
    // --http 2: HTTP/2 only; an HTTP/1.x request gets 505.
    bool http1_refused = false;
    // Sec-WebSocket-Protocol: how many subprotocols a client may offer (more: 400).
    size_t ws_max_subprotocols = 32;
};

// The time over which a data rate is measured: it runs only while the server waits on the client.
struct rate_clock {
    uint64_t total_ms = 0;  // measured time before `since_ms`
    uint64_t since_ms = 0;  // when it last started running
    bool running = false;
    void run(uint64_t now) noexcept {
        if (!running) running = true, since_ms = now;
    }
    void pause(uint64_t now) noexcept {
        if (running) running = false, total_ms += now - since_ms;
    }
    uint64_t elapsed(uint64_t now) const noexcept {
        return total_ms + (running ? now - since_ms : 0);
    }
    // Running, past the grace, and below `rate` bytes/s on average (0: never too slow).
    bool too_slow(uint64_t bytes, uint64_t rate, uint64_t grace_ms, uint64_t now) const noexcept {
        const uint64_t ms = elapsed(now);
        return rate && running && ms >= grace_ms && bytes * 1000 < rate * ms;
    }
};

class connection;

using http::internal_reply;

// What the connection needs from whoever owns it (server::server, or a unit test).
class connection_owner {
  public:
    // `c` has work for the next I/O phase (buffered output, reading to resume, next request).
    virtual void schedule(connection& c) = 0;
    // Timers; the owner maps each kind to its duration. A connection has two slots: `write` has
    // its own, every other kind shares the read slot (arming one replaces the one before).
    //   keep_alive: idle between requests            header: a request head must be complete
    //   body: no request body bytes for this long    linger: after our FIN, before close
    //   write: the client has not read anything for this long
    //   shutdown_idle: during a graceful stop, how long an idle connection may still start a
    //                  request before it is closed
    //   rate: has a slot of its own too; armed while a minimum data rate is being measured, it
    //         fires every so often (the owner's choice, well under the grace) to check it
    enum class timer_kind : uint8_t {
        none,
        keep_alive,
        header,
        body,
        linger,
        write,
        shutdown_idle,
        rate
    };
    virtual void arm_timer(connection& c, timer_kind kind) = 0;
    virtual void disarm_timer(connection& c, timer_kind kind) = 0;  // the slot `kind` uses
    // The engine's monotonic clock in milliseconds (for the minimum data rates).
    virtual uint64_t now_ms() const noexcept = 0;
    // Admission (concurrency limit): false answers the request with 503 instead of starting it.
    // Every admitted request is matched by exactly one request_finished().
    virtual bool admit_request(connection& c) = 0;
    virtual void request_finished(connection& c) = 0;
    // The connection is closed; the owner destroys it after the current I/O phase.
    virtual void on_closed(connection& c) = 0;
    // A request was refused or a connection cut by a limit or timeout (for the metrics).
    virtual void refused(connection& c, http::refusal why) { (void)c, (void)why; }
    // The app's part of a request is over (answered, failed or abandoned): `ex` holds its
    // method and final status (0: nothing was sent); `started_ms` is now_ms() at its head.
    virtual void request_done(connection& c, const http::exchange& ex, uint64_t started_ms) {
        (void)c, (void)ex, (void)started_ms;
    }
    // A GET or HEAD without a body whose target starts with "/-/": true and `out` filled if the
    // owner answers it itself (health, readiness, metrics); false hands it to the app as usual.
    // Such answers take no concurrency slot and start no app.
    virtual bool internal_response(connection& c, std::string_view target, internal_reply& out) {
        (void)c, (void)target, (void)out;
        return false;
    }
    // The app accepted the WebSocket upgrade of `ex` and the 101 is written: carry the transport
    // on with the WebSocket protocol (rebind `ex` to it; post ev_drain, which completes the
    // app's accept). `leftover`: what the client sent after its request; `deflate`: the
    // permessage-deflate parameters the 101 announced. `c` is `upgraded` from now on and must
    // not be called again. False (no WebSocket here): `c` closes, the app sees a disconnect.
    virtual bool upgrade(connection& c, const std::shared_ptr<http::exchange>& ex,
                         std::string leftover, std::optional<ws::deflate_params> deflate) {
        (void)c, (void)ex, (void)leftover, (void)deflate;
        return false;
    }

    // An `Upgrade: h2c` request (RFC 7540 §3.2) was answered 101 once its body was read: carry
    // the transport on with HTTP/2, `ex` (its request, body complete) becoming stream 1.
    // `settings`: the decoded HTTP2-Settings payload; `leftover`: what the client sent after
    // the request (its preface). `c` is `upgraded` from now on. False: `c` closes.
    virtual bool upgrade_h2c(connection& c, const std::shared_ptr<http::exchange>& ex,
                             std::string settings, std::string leftover) {
        (void)c, (void)ex, (void)settings, (void)leftover;
        return false;
    }
    // The connection starts with the HTTP/2 client preface (cfg.h2_prior_knowledge): carry the
    // transport on with HTTP/2 from `bytes` (everything read so far, the preface included).
    // `c` is `upgraded` from now on. False (no HTTP/2 here): `c` closes.
    virtual bool upgrade_h2(connection& c, std::string bytes) {
        (void)c, (void)bytes;
        return false;
    }

  protected:
    ~connection_owner() = default;
};

class connection final : public http::response_sink {
  public:
    enum class state : uint8_t { read_head, in_request, draining, lingering, closed, upgraded };

    connection(core::transport& t, connection_owner& owner, const connection_config& cfg,
               http::event_queue& events, http::endpoint client, http::endpoint server);
    ~connection();
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    // ---- I/O phase ----
    // `short_read_drains`: the transport is a stream socket whose readiness is edge-triggered
    // and no EOF is pending (no EPOLLRDHUP in this event), so a read that returns less than
    // asked has emptied the receive queue and the next arrival raises a new event: reading
    // stops there instead of spending a syscall on the EAGAIN. With EOF pending we read on to
    // see it, since no further edge would report it.
    void on_readable(bool short_read_drains = false);
    void on_writable();
    void on_hangup();  // EPOLLERR/EPOLLHUP: the peer reset the connection
    void process();    // scheduled work: flush, resume reading, next pipelined request
    void on_timer(connection_owner::timer_kind kind);

    // Graceful stop: every response from now on says "connection: close" and ends its
    // connection. A connection in the middle of a request or a head finishes it. An idle one is
    // not closed at once: a request may already sit in the socket unread (TCP_DEFER_ACCEPT hands
    // a connection over with its first bytes) or be on its way from a client that has just read
    // our last response, and closing would reset it. It reads what is there and gets the
    // shutdown_idle timer to start a request; if none starts, it closes then.
    void begin_shutdown();

    // The peer's addresses as a PROXY header read before TLS named them (the owner calls this
    // before the first read): the proxy-header trust is judged again for the new client.
    void set_peer(http::endpoint client, http::endpoint server);

    // The connection runs over TLS (the owner calls this once the handshake is done, before
    // the first read): the scheme is https and every request carries `info`.
    void set_tls(std::shared_ptr<const tls::info> info) noexcept {
        tls_ = std::move(info);
        scheme_ = "https";
    }

    // A closed connection frees its buffers here rather than when the owner destroys it after
    // the I/O phase: a batch of 256 resets would otherwise hold 256 read buffers (4 MiB) at
    // once. Call only on a closed connection and from outside its own methods (views into the
    // read buffer may be live while they run).
    void release_memory() noexcept;

    state current_state() const noexcept { return state_; }
    const connection_config& config() const noexcept { return cfg_; }
    const http::endpoint& client() const noexcept { return client_; }
    const http::endpoint& local() const noexcept { return server_; }
    bool idle() const noexcept { return state_ == state::read_head && in_.empty() && !ex_; }
    bool write_blocked() const noexcept { return write_blocked_; }
    bool scheduled = false;     // owner's bookkeeping: already in the schedule list
    void* owner_ctx = nullptr;  // owner's bookkeeping: its record of this connection

    // ---- response_sink (app side) ----
    http::send_result send(http::exchange& ex, const head* h, std::string_view body,
                           bool more) override;
    http::send_result send_file(http::exchange& ex, const head* h, int fd, uint64_t offset,
                                uint64_t len, bool more) override;
    void abort(http::exchange& ex) override;
    void want_body(http::exchange& ex) override;
    http::send_result ws_accept(http::exchange& ex, std::string_view subprotocol,
                                std::span<const http::field> headers) override;
    // Between the accept and the hand-over (the 101 not yet written), an app that returns
    // closes: the close is passed on to the WebSocket once it takes over.
    void ws_close(http::exchange& ex, uint16_t code, std::string_view reason) override;

  private:
    // A WebSocket handshake the app has not answered yet (allocated for those requests only).
    struct ws_handshake {
        ws::upgrade_result result;
        bool accepted = false;  // the 101 is queued: hand over once it is written
        bool close_pending = false;
        uint16_t close_code = 0;  // the app's close before the hand-over
        std::string close_reason;
    };
    bool check_websocket(const request_head& head, const request_info& info);
    void hand_over();
    // The first bytes of the connection against the HTTP/2 preface: true when they were handled
    // (handed over to HTTP/2, or a partial preface that waits for more).
    bool check_h2_preface();
    // Request body buffered before reading pauses (more for an h2c upgrade, see h2c_settings).
    size_t body_limit() const noexcept { return h2c_ ? cfg_.h2c_max_body : cfg_.body_high_water; }
    // An `Upgrade: h2c` request this connection can honour: its decoded HTTP2-Settings.
    std::optional<std::string> h2c_settings(const request_head& head, const request_info& info);
    void switch_h2c();
    void hand_over_h2c();
    void read_input();
    bool reading_paused() const noexcept;
    void consume_input();
    void try_parse_head();
    void start_request(const request_head& head, const request_info& info, size_t head_len);
    bool answer_internal(const request_head& head, const request_info& info, size_t head_len);
    bool consume_proxy_header();
    void decode_body();
    void finish_request();
    // The connection closes once the current response is out: the response or the client said
    // so, the server is shutting down, or the app left request body unread.
    bool closes_after_response() const noexcept {
        return !keep_alive_ || shutting_down_ || !body_done_;
    }
    // Answers `err` and closes; `why` is reported to the owner (count: derived from the status).
    // `head`: the request's parsed head, when there is one (for the access log).
    void reject(const core::error& err, http::refusal why = http::refusal::count,
                std::span<const http::field> extra = {}, const request_head* head = nullptr);
    // An answer the engine gives itself, for the access log (a no-op when it is off).
    void log_answer(const request_head* head, int status, uint64_t body_bytes);
    void flush();
    void start_draining();
    void close_now(bool reset = false);  // reset: transport::abort(), see there
    void linger_read();
    void detach_exchange(bool notify);
    void set_read_timer(connection_owner::timer_kind kind);
    void update_body_timer();
    bool waiting_for_body() const noexcept;
    void update_rate_clocks();
    void check_rates();
    // `file_len`: the body's first part is a file part of that length (queued by the caller
    // after the head), not `body`.
    http::send_result queue_head(const head& h, std::string_view body, bool more,
                                 std::optional<uint64_t> file_len = std::nullopt);
    http::send_result queue_file(int fd, uint64_t offset, uint64_t len, bool more);
    http::send_result queue_body(std::string_view body, bool more);

    core::transport& t_;
    connection_owner& owner_;
    const connection_config& cfg_;
    http::event_queue& events_;
    // The peer and our end, as the socket (or, with --proxy-protocol, the PROXY header) says.
    http::endpoint client_;
    http::endpoint server_;
    // "https" over TLS, or when a PROXY v2 SSL TLV says the client used TLS
    std::string_view scheme_ = "http";
    std::shared_ptr<const tls::info> tls_;

    state state_ = state::read_head;
    core::input_buffer in_;
    core::output_queue out_;
    size_t scanned_ = 0;               // bytes of the pending head already searched for a line end
    bool read_ready_ = true;           // the transport may have unread bytes (edge-triggered)
    bool short_read_drains_ = false;   // see on_readable()
    bool close_when_written_ = false;  // draining without lingering: see finish_request()
    bool write_blocked_ = false;       // the last write hit EAGAIN: wait for on_writable
    bool peer_eof_ = false;            // the client half-closed (or closed) its side
    bool shutting_down_ = false;
    bool keep_alive_ = true;  // for the current request
    size_t lingered_ = 0;
    connection_owner::timer_kind read_timer_ = connection_owner::timer_kind::none;
    bool write_timer_ = false;    // the write slot is armed
    bool admitted_ = false;       // the current request counts against the concurrency limit
    uint64_t body_received_ = 0;  // decoded request body bytes (for max_body and its rate)
    rate_clock body_clock_;       // reset per request; see connection_config::min_body_rate
    rate_clock response_clock_;
    uint64_t response_taken_ = 0;      // bytes the client took while response_clock_ ran
    uint64_t request_started_ms_ = 0;  // owner's clock at the current request's head
    bool rate_timer_ = false;          // the rate slot is armed
    bool forwarded_peer_ = false;      // the peer is a trusted proxy (see apply_forwarded)
    bool proxy_pending_ = false;       // --proxy-protocol: the PROXY header is still to come
    bool first_request_ = true;        // no request head parsed yet (the HTTP/2 preface check)

    // Current exchange (in_request).
    std::shared_ptr<http::exchange> ex_;
    std::unique_ptr<ws_handshake> ws_;  // the current request is a WebSocket handshake
    // The current request upgrades to HTTP/2 (h2c): the HTTP2-Settings payload, until the 101
    // is written and HTTP/2 takes over (the app has not seen the request yet).
    std::optional<std::string> h2c_;
    bool h2c_switching_ = false;  // the 101 is queued
    request_info info_{};
    int minor_version_ = 1;
    bool head_request_ = false;
    uint64_t body_left_ = 0;  // content-length framing: bytes still to read
    std::optional<chunked_decoder> chunked_;
    bool body_done_ = true;
    bool continue_owed_ = false;   // Expect: 100-continue not answered yet
    bool app_wants_body_ = false;  // the app asked for the body (100 may be sent)
    bool response_started_ = false;
    bool response_done_ = false;
    bool send_waiting_ = false;  // send returned wait; post ev_drain on low water
    bool aborted_ = false;       // the app failed after the head: close in the next I/O phase
    response_framing framing_{};
    uint64_t body_sent_ = 0;
};

}  // namespace coachwhip::http1
