// coachwhip::http2::connection — one HTTP/2 connection (RFC 9113) over an abstract transport:
// nghttp2 (libnghttp2 from Debian) does the framing, HPACK and flow-control bookkeeping; this
// class maps each request stream to an http::exchange, so the ASGI and WSGI bridges stay
// protocol-agnostic, and wires flow control to the exchange's backpressure contract.
//
// Where it sits. The owner (server::server) builds it when ALPN chose "h2" after a TLS handshake,
// or when an HTTP/1.1 connection on a plain port starts with the client preface (h2c with prior
// knowledge; http1::connection hands the bytes it read over). `start()` sends our SETTINGS and
// parses those bytes.
//
// Threading and phases, as http1::connection: the I/O entry points (`start`, `on_readable`,
// `on_writable`, `on_hangup`, `process`, `on_timer`, `begin_shutdown`) run in the engine's I/O
// phase with the GIL released and only post events on exchanges; the response_sink methods run
// on the app side with the GIL held and only buffer, submit to nghttp2 (which serialises nothing
// until the I/O phase asks it to) and ask the owner to schedule `process()`.
//
// Connection states:
//
//   open --begin_shutdown(): GOAWAY(2^31-1) now, GOAWAY(last stream) after `goaway` timer-->
//   closing
//     |                                                                                         |
//     |--protocol error (nghttp2 GOAWAY), rapid resets (ENHANCE_YOUR_CALM), idle timeout--------+
//     |     (GOAWAY queued; no new streams)                        all streams done, output out |
//     `--EOF, reset, write timeout, preface timeout--> closed <-------------------------------- '
//
// Streams (request side as nghttp2 tracks them; what the app sees):
//   HEADERS (+CONTINUATION) --END_HEADERS--> exchange built, ev_request (or the engine answers:
//   503 past --limit-concurrency, 431 over the header list limit, /-/ endpoints, 404 on an
//   internal listener) --DATA--> ex.body, ev_body --END_STREAM--> body_complete
//   Response: send() submits HEADERS and queues body bytes that a data source hands nghttp2 as
//   windows allow; `more` false ends the stream (or trailers do). RST_STREAM from the client, or
//   the connection closing: ev_disconnect, the exchange is detached.
//
// Backpressure (http/exchange.hpp's contract):
// - Response: send() answers wait while the stream holds more than stream_high_water unsent
//   bytes — they leave only as the stream's and the connection's windows allow — and ev_drain
//   comes when they fall to stream_low_water. Frames serialised for the socket are bounded by
//   write_high_water: nghttp2 is asked for more only as the socket takes them.
// - Request body: automatic WINDOW_UPDATE is off. A stream's window reopens only when the app
//   takes its body, so one stream buffers at most initial_stream_window. The connection window
//   reopens at once while the request body buffered over all streams is under body_budget, and
//   only as apps take it above that: a connection buffers at most body_budget plus one
//   connection window, whatever the number of streams.
//
// Hostile clients: nghttp2 validates frames, HPACK and the HTTP messaging rules (pseudo-headers,
// connection-specific fields, content-length) and answers with RST_STREAM or GOAWAY; its options
// bound SETTINGS entries, queued ACKs (SETTINGS/PING floods), CONTINUATION frames and reserved
// streams. On top of it: the decoded header list is limited (max_header_list: a 431, an HPACK
// bomb stops decoding at the limit), and streams the client cancels before their response is
// complete draw from a token bucket (reset_burst, refilled at reset_rate a second): when it is
// empty, GOAWAY ENHANCE_YOUR_CALM (Rapid Reset, CVE-2023-44487). A cancelled request whose app
// has not started yet is marked `cancelled`, and the bridge never starts it.
//
// Memory: an idle connection (no stream, nothing buffered) holds the nghttp2 session (its HPACK
// tables; ~5 KiB at the default table size) and no read or write buffer.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/buffer.hpp"
#include "core/transport.hpp"
#include "http/exchange.hpp"
#include "http/refusal.hpp"
#include "http1/response.hpp"
#include "proxy/forwarded.hpp"
#include "ws/connection.hpp"
#include "ws/handshake.hpp"

struct nghttp2_session;

namespace coachwhip::http2 {

struct connection_config {
    // Our SETTINGS (--http2-* flags).
    uint32_t max_concurrent_streams = 100;
    uint32_t initial_stream_window = 256 * 1024;
    uint32_t initial_connection_window = 1024 * 1024;
    uint32_t max_frame_size = 16384;
    uint32_t max_header_list = 64 * 1024;  // decoded header bytes per request (+32 per field)
    size_t read_chunk = 16 * 1024;
    size_t stream_high_water = 64 * 1024;
    size_t stream_low_water = 16 * 1024;
    size_t write_high_water = 64 * 1024;
    size_t body_budget = 1024 * 1024;
    uint32_t reset_burst = 200;  // see "Hostile clients" above
    uint32_t reset_rate = 100;
    bool server_header = true;
    bool date_header = true;
    // The operator's fields for every final response (--header) and the server's value, as
    // over HTTP/1.1 (http1::default_headers); their nghttp2_nv entries are views into these.
    http1::default_headers defaults{};
    // "https" on TLS connections.
    std::string_view scheme = "http";
    core::block_pool* read_blocks = nullptr;  // not owned
    // --proxy-headers: whose X-Forwarded-*/Forwarded fields count (nullptr: off). Not owned.
    const proxy::trusted_networks* forwarded_trust = nullptr;
    bool internal_only = false;  // the --metrics-bind listener: /-/ endpoints, else 404
    // WebSocket over HTTP/2 (RFC 8441, extended CONNECT): SETTINGS_ENABLE_CONNECT_PROTOCOL is
    // announced and `:protocol websocket` streams become WebSockets with these settings (not
    // owned; nullptr: --ws none, no extended CONNECT). The ws::connection runs over the stream
    // (see "WebSocket tunnels" in connection.cpp); its timers are deadlines checked on the tick
    // (ping_interval_ms, ping_timeout_ms, close_timeout_ms from `ws`, and ws_write_timeout_ms).
    const ws::connection_config* ws = nullptr;
    uint64_t ws_write_timeout_ms = 60000;
    const ws::deflate_config* ws_deflate = nullptr;
    size_t ws_max_subprotocols = 32;
};

class connection;

class connection_owner {
  public:
    virtual void schedule(connection& c) = 0;
    // Two slots, as http1: `write` has its own; the others share one (arming replaces).
    //   preface: the client preface and SETTINGS must arrive in time (--timeout-request-header)
    //   idle: no stream open (--timeout-keep-alive): GOAWAY and close
    //   goaway: graceful stop, between the two GOAWAYs (about a round trip)
    //   write: the client has read nothing of our pending output for this long
    //   tick: a slot of its own, about once a second while a WebSocket tunnel has a deadline
    //         (their keepalive, pong, close and write timers are deadlines checked on it)
    enum class timer_kind : uint8_t { none, preface, idle, goaway, write, tick };
    virtual void arm_timer(connection& c, timer_kind kind) = 0;
    virtual void disarm_timer(connection& c, timer_kind kind) = 0;
    virtual uint64_t now_ms() const noexcept = 0;
    // As http1::connection_owner: one request_finished() per admitted request.
    virtual bool admit_request(connection& c) = 0;
    virtual void request_finished(connection& c) = 0;
    // The transport is closed and every timer disarmed; destroy after the I/O phase.
    virtual void on_closed(connection& c) = 0;
    virtual void refused(connection& c, http::refusal why) { (void)c, (void)why; }
    virtual void request_done(connection& c, const http::exchange& ex, uint64_t started_ms) {
        (void)c, (void)ex, (void)started_ms;
    }
    virtual bool internal_response(connection& c, std::string_view target,
                                   http::internal_reply& out) {
        (void)c, (void)target, (void)out;
        return false;
    }

  protected:
    ~connection_owner() = default;
};

class connection final : public http::response_sink {
  public:
    enum class state : uint8_t { open, closing, closed };
    using timer_kind = connection_owner::timer_kind;

    // `leftover`: bytes already read from the transport (the preface and what followed it).
    connection(core::transport& t, connection_owner& owner, const connection_config& cfg,
               http::event_queue& events, http::endpoint client, http::endpoint server,
               std::shared_ptr<const tls::info> tls, std::string leftover = {});
    ~connection();
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    // h2c by `Upgrade: h2c` (before start()): `ex` is the upgraded HTTP/1.1 request, its body
    // complete; it becomes stream 1 (RFC 7540 §3.2). `settings`: the decoded HTTP2-Settings.
    void adopt(std::shared_ptr<http::exchange> ex, std::string settings) {
        adopted_ = std::move(ex);
        upgrade_settings_ = std::move(settings);
    }

    // ---- I/O phase ----
    void start();  // queues our SETTINGS, parses `leftover`, reads
    void on_readable(bool short_read_drains = false);
    void on_writable();
    void on_hangup();
    void process();
    void on_timer(timer_kind kind);
    void begin_shutdown();
    void release_memory() noexcept;

    state current_state() const noexcept { return state_; }
    bool write_blocked() const noexcept { return write_blocked_; }
    const http::endpoint& client() const noexcept { return client_; }
    const connection_config& config() const noexcept { return cfg_; }
    size_t open_streams() const noexcept { return streams_.size(); }
    bool scheduled = false;
    void* owner_ctx = nullptr;

    // ---- response_sink (app side) ----
    http::send_result send(http::exchange& ex, const head* h, std::string_view body,
                           bool more) override;
    http::send_result send_file(http::exchange& ex, const head* h, int fd, uint64_t offset,
                                uint64_t len, bool more) override;
    http::send_result send_trailers(http::exchange& ex, std::span<const http::field> fields,
                                    bool more) override;
    // RFC 8441: the app accepts a WebSocket stream: 200 (with the subprotocol and extension
    // answers); the stream carries a ws::connection from the next I/O phase on, which posts
    // ev_drain as it starts.
    http::send_result ws_accept(http::exchange& ex, std::string_view subprotocol,
                                std::span<const http::field> headers) override;
    void abort(http::exchange& ex) override;
    void want_body(http::exchange& ex) override;

    // nghttp2's callbacks (connection.cpp) reach the private parts through this.
    struct callbacks;

  private:
    struct stream;
    struct tunnel;

    void read_input();
    bool feed(std::string_view bytes);  // false: the connection fails (and is closing)
    void flush();
    bool window_stalled() const noexcept;
    void close_now(bool reset = false);
    void set_read_timer(timer_kind kind);
    void sync_idle_timer();
    stream* find(const http::exchange& ex) const noexcept;
    // Requests: the head is complete (build the exchange, or the engine answers it); the
    // client's END_STREAM; its RST_STREAM; the stream closed (either side).
    void start_stream(stream& s);
    bool admit(stream& s);  // false: answered 503
    http::exchange* make_exchange(stream& s);
    bool start_upgraded();
    void note_stream(uint32_t id);
    bool was_opened(uint32_t id) const noexcept;
    void request_ended(stream& s);
    void answer(stream& s, int status, std::string_view content_type, std::string body,
                std::span<const http::field> extra = {}, bool log = true);
    void on_client_reset(stream& s);
    void stream_closed(int32_t id, uint32_t code);
    void finish_stream(stream& s, bool gone);
    void repay_connection_window();
    // Responses.
    http::send_result submit_head(stream& s, const head& h, bool ends, uint64_t body_size);
    http::send_result queue_body(stream& s, std::string_view body, bool more);
    void materialize_file(stream& s);
    http::send_result resume(stream& s);
    void resume_data(stream& s);
    void post_drain_if_low(stream& s);
    // WebSocket tunnels (RFC 8441).
    void start_websocket(stream& s);
    void tunnel_input(stream& s, std::string_view bytes);
    void tunnel_due(tunnel& t);
    void run_tunnels();
    void bury(stream& s);
    void sync_tick();
    void on_tick();

    core::transport& t_;
    connection_owner& owner_;
    const connection_config& cfg_;
    http::event_queue& events_;
    http::endpoint client_;
    http::endpoint server_;
    std::shared_ptr<const tls::info> tls_;
    bool forwarded_peer_ = false;

    nghttp2_session* session_ = nullptr;
    std::unordered_map<int32_t, std::unique_ptr<stream>> streams_;
    std::string leftover_;
    std::shared_ptr<http::exchange> adopted_;  // see adopt()
    std::string upgrade_settings_;
    core::input_buffer in_;
    core::output_queue out_;

    state state_ = state::open;
    bool read_ready_ = true;
    bool short_read_drains_ = false;
    bool write_blocked_ = false;
    bool write_timer_ = false;
    bool preface_seen_ = false;  // the client's SETTINGS arrived
    bool goaway_final_ = false;  // the last GOAWAY (with the real last stream id) is queued
    timer_kind read_timer_ = timer_kind::none;
    size_t body_buffered_ = 0;  // request body bytes in exchanges, not yet taken by apps
    size_t conn_owed_ = 0;      // connection window we have not reopened yet (over budget)
    // Tunnels with work for the I/O phase (input, room to write, a start), and closed ones
    // freed once no ws::connection method is on the stack.
    std::vector<int32_t> tunnels_due_;
    std::vector<std::unique_ptr<tunnel>> dead_tunnels_;
    bool tick_armed_ = false;
    // The client's stream ids (see note_stream).
    static constexpr size_t k_max_ranges = 64;
    std::vector<std::pair<uint32_t, uint32_t>> opened_;
    uint32_t highest_stream_ = 0;
    bool untracked_ = false;
    // Rapid Reset bucket (see "Hostile clients").
    double reset_tokens_ = 0;
    uint64_t reset_refill_ms_ = 0;
};

}  // namespace coachwhip::http2
