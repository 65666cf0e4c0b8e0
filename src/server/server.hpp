// coachwhip::server::server — one worker's engine: the event loop, listeners, connections and
// timers, driven in phases by the bridge.
//
// Phases (all on one thread, the thread that runs the Python event loop):
// - `run_io()`: called when `fileno()` is readable. Polls the engine's epoll without blocking,
//   accepts, reads, parses, writes, fires timers, then runs scheduled connection work. The bridge
//   calls it with the GIL released.
// - `run_scheduled()`: called by the bridge soon after the app side has buffered output or taken
//   request body (the schedule hook fires once when the first connection is scheduled). Also
//   with the GIL released.
// After either phase, the bridge delivers `events()` to the app side with the GIL held.
//
// Graceful stop: `stop_accepting()`, then `shutdown_connections()` (idle connections close now,
// busy ones after their current response), then wait for `connection_count()` to reach 0, and
// `close_all()` when the grace period is over.
#pragma once

#include <sys/epoll.h>

#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "http/exchange.hpp"
#include "http1/connection.hpp"
#include "http2/connection.hpp"
#include "loop/loop.hpp"
#include "proxy/forwarded.hpp"
#include "server/listener.hpp"
#include "server/metrics.hpp"
#include "tls/context.hpp"
#include "ws/connection.hpp"

namespace coachwhip::server {

struct server_config {
    // conn.defaults (--header) and conn.server_header/date_header apply to HTTP/2 as well: the
    // server copies them into h2. A configured server field turns server_header on.
    http1::connection_config conn{};
    uint64_t keep_alive_ms = 5000;
    uint64_t header_timeout_ms = 20000;  // a request head must be complete within this
    uint64_t body_timeout_ms = 60000;    // request body: longest silence while we wait for it
    uint64_t write_timeout_ms = 60000;   // longest a client may read nothing of our output
    uint64_t linger_ms = 2000;
    // Graceful stop: an idle connection may still start a request for this long (capped by
    // keep_alive_ms) before it is closed; see http1::connection::begin_shutdown().
    uint64_t shutdown_idle_ms = 1000;
    size_t max_connections = 0;  // 0: no limit; at the limit, stop accepting (kernel queues)
    size_t max_concurrency = 0;  // 0: no limit; requests in flight beyond it get 503
    // Internal endpoints the engine answers without the app (GET/HEAD, off by default):
    // /-/health 200 while this worker's loop runs; /-/ready 200 while ready (set_ready), 503
    // otherwise; /-/metrics the Prometheus text from `metrics_text`.
    bool health_endpoint = false;
    bool ready_endpoint = false;
    bool metrics_endpoint = false;
    // --forwarded-allow-ips: who may name the client and scheme, in X-Forwarded-* / Forwarded
    // fields when proxy_headers is on, and in a PROXY header, which proxy_protocol requires.
    bool proxy_headers = false;
    bool proxy_protocol = false;
    proxy::trusted_networks forwarded_trust;
    // TLS on the app's listeners (not on an internal one); nullptr: plain TCP. A connection's
    // handshake must be over within tls_handshake_ms of its accept.
    std::shared_ptr<const tls::context> tls;
    uint64_t tls_handshake_ms = 5000;
    // WebSocket (--ws auto): HTTP/1.1 upgrades become ws::connections with these settings;
    // off (--ws none): an upgrade request is an ordinary request.
    bool websocket = true;
    ws::deflate_config ws_deflate{};  // --ws-per-message-deflate: ws_deflate.enabled
    ws::connection_config ws{};       // --ws-max-size, --ws-max-queue, --ws-ping-*
    // --http auto|1|2: which protocols the app's listeners speak. HTTP/2 is h2 by ALPN over
    // TLS (the TLS context's ALPN list must offer "h2") and h2c with prior knowledge on a plain
    // port; with http1 off, an HTTP/1.x request on a plain port gets 505.
    bool http1 = true;
    bool http2 = true;
    http2::connection_config h2{};  // --http2-* settings
    // Collect an access record (http::access_record) for every response, the engine's own
    // answers included; the bridge takes them from events() after each phase.
    bool access_log = false;
};

// The status an access record gives a request whose connection closed before any response
// started (nginx's convention: "client closed request").
inline constexpr int k_no_response_status = 499;

class server final : private http1::connection_owner {
    struct ws_owner;
    struct h2_owner;

  public:
    explicit server(const server_config& cfg);
    ~server();
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    int fileno() const noexcept { return loop_.fileno(); }
    core::error init_error() const noexcept { return loop_.init_error(); }

    // Starts accepting on a bound, listening, non-blocking socket (not owned). An `internal`
    // listener (--metrics-bind) answers /-/metrics (and /-/health, /-/ready when enabled) and
    // 404 to everything else; the app's listeners then do not answer /-/metrics.
    core::error add_listener(int fd, bool internal = false);
    // A reloaded certificate: connections accepted from now on use `ctx`, the open ones keep
    // theirs. Only on a server that has TLS (a plain server stays plain).
    void set_tls(std::shared_ptr<const tls::context> ctx);
    void stop_accepting();
    void shutdown_connections();
    void close_all();
    size_t connection_count() const noexcept { return conn_count_; }
    // Readiness as /-/ready reports it: false until the app's startup completed, false again from
    // the moment a graceful stop begins. Starts true (a server made without a lifespan is ready).
    void set_ready(bool ready) noexcept { ready_ = ready; }
    bool ready() const noexcept { return ready_; }
    // Counting into a supervisor's shared metrics region (fd from metrics::region::create) in
    // worker slot `slot`, instead of the private one every server starts with. Only before the
    // first add_listener().
    core::error use_shared_metrics(int fd, size_t slot);
    const metrics::region& metrics_region() const noexcept { return metrics_; }
    size_t requests_in_flight() const noexcept { return in_flight_; }

    // `timeout_ms`: how long the poll may block (-1: until something is ready). The bridge's
    // engine thread (WSGI) blocks; under asyncio the poll never does (0).
    void run_io(int timeout_ms = 0);
    void run_scheduled();
    bool has_scheduled() const noexcept {
        return !scheduled_.empty() || !ws_scheduled_.empty() || !h2_scheduled_.empty();
    }

    // Called (outside the I/O phases) when work is scheduled while none was pending.
    using schedule_hook = void (*)(void* ctx);
    void set_schedule_hook(schedule_hook hook, void* ctx) noexcept {
        hook_ = hook;
        hook_ctx_ = ctx;
    }

    http::event_queue& events() noexcept { return events_; }

    // Watches `fd` (edge-triggered, EPOLLIN) in the engine's loop: `h` runs inside run_io(),
    // before the scheduled connection work, so what it sends goes out in the same phase. For
    // the bridge's WSGI wake-up eventfd. Returns errno or 0; `remove_io` before closing `fd`.
    int add_io(int fd, loop::io_handler* h) noexcept { return loop_.add(fd, h, EPOLLIN); }
    void remove_io(int fd) noexcept { loop_.remove(fd); }
    // The engine's loop, for the bridge's own timers (engine thread only).
    loop::event_loop& event_loop() noexcept { return loop_; }

  private:
    struct conn_entry;
    struct listener_entry {
        std::unique_ptr<listener> l;
        http::endpoint local;   // used for every connection when the address is not a wildcard
        bool wildcard = false;  // bound to 0.0.0.0 / :: — ask getsockname per connection
        int family = 0;
        bool internal = false;  // see add_listener
    };

    void accept_one(listener_entry& le, int fd, const sockaddr_storage& peer);
    void tls_established(conn_entry& e);
    void tls_refused(conn_entry& e, http::refusal why, std::string_view detail);
    void process_scheduled();
    void reap();
    void enter_io();
    void leave_io();

    // connection_owner
    void schedule(http1::connection& c) override;
    void arm_timer(http1::connection& c, timer_kind kind) override;
    void disarm_timer(http1::connection& c, timer_kind kind) override;
    bool admit_request(http1::connection& c) override;
    void request_finished(http1::connection& c) override;
    void on_closed(http1::connection& c) override;
    bool internal_response(http1::connection& c, std::string_view target,
                           http1::internal_reply& out) override;
    void refused(http1::connection& c, http::refusal why) override;
    void request_done(http1::connection& c, const http::exchange& ex, uint64_t started) override;
    bool upgrade(http1::connection& c, const std::shared_ptr<http::exchange>& ex,
                 std::string leftover, std::optional<ws::deflate_params> deflate) override;
    bool upgrade_h2(http1::connection& c, std::string bytes) override;
    bool upgrade_h2c(http1::connection& c, const std::shared_ptr<http::exchange>& ex,
                     std::string settings, std::string leftover) override;
    void start_h2(conn_entry& e, std::string bytes, std::shared_ptr<const tls::info> info,
                  std::shared_ptr<http::exchange> adopted = nullptr, std::string settings = {});
    // Shared by the three protocols' owners: `c` goes on the schedule list `list` once (the
    // hook hears of the first work scheduled); `c` closed: the entry's timers stop, it is
    // counted out and reaped after this phase.
    template <class C>
    void enqueue(std::vector<C*>& list, C& c);
    template <class C>
    void retire(conn_entry& e, std::vector<C*>& list, C& c);
    // Shared by the HTTP/1.1 and HTTP/2 owners.
    bool admit();
    void finished();
    void count_request(const http::exchange& ex, uint64_t started_ms);
    void log_exchange(const http::exchange& ex, uint64_t started_ms);
    bool answer_internal(bool internal_listener, std::string_view target,
                         http::internal_reply& out);
    loop::timeout_list& list_for(timer_kind kind) noexcept;
    uint64_t now_ms() const noexcept override { return loop_.now_ms(); }
    bool may_accept() const noexcept;

    server_config cfg_;
    http1::connection_config internal_conn_;  // cfg_.conn for internal listeners
    http1::connection_config tls_conn_;       // cfg_.conn for TLS connections
    bool has_internal_ = false;
    // The counters (declared before conns_: connections report to them as they close).
    metrics::region metrics_;
    metrics::block* m_ = nullptr;
    // Input-buffer blocks for the connections (declared before conns_, so it outlives them).
    // A connection holds one only from a read until what it read is parsed, so a few spares
    // serve any number of connections.
    core::block_pool read_blocks_;
    loop::event_loop loop_;
    loop::timeout_list keep_alive_list_;
    loop::timeout_list header_list_;
    loop::timeout_list body_list_;
    loop::timeout_list write_list_;
    loop::timeout_list linger_list_;
    loop::timeout_list shutdown_idle_list_;
    loop::timeout_list rate_list_;
    loop::timeout_list tls_handshake_list_;
    loop::timeout_list ws_ping_list_;    // --ws-ping-interval
    loop::timeout_list ws_pong_list_;    // --ws-ping-timeout
    loop::timeout_list ws_close_list_;   // the closing handshake
    loop::timeout_list h2_goaway_list_;  // HTTP/2 graceful stop: between the two GOAWAYs
    loop::timeout_list h2_tick_list_;    // HTTP/2: WebSocket tunnels' deadlines (1 s)
    std::vector<std::unique_ptr<listener_entry>> listeners_;
    std::list<conn_entry> conns_;
    std::vector<std::list<conn_entry>::iterator> graveyard_;
    std::vector<http1::connection*> scheduled_;
    std::vector<ws::connection*> ws_scheduled_;
    std::vector<http2::connection*> h2_scheduled_;
    // HTTP/1.1 connections handed over to a WebSocket in this I/O phase (see upgrade()).
    std::vector<std::unique_ptr<http1::connection>> dormant_;
    std::unique_ptr<ws_owner> ws_owner_;    // the WebSocket connections' owner: forwards here
    std::unique_ptr<h2_owner> h2_owner_;    // the HTTP/2 connections' owner: forwards here
    http2::connection_config h2_conn_;      // cfg_.h2 for plain connections
    http2::connection_config h2_tls_conn_;  // ... and for TLS ones (scheme https)
    http2::connection_config h2_internal_;  // ... and for the internal listener
    http::event_queue events_;
    size_t conn_count_ = 0;
    size_t in_flight_ = 0;
    bool in_io_ = false;
    bool ready_ = true;
    bool shutting_down_ = false;  // shutdown_connections() ran: new TLS connections follow it
    schedule_hook hook_ = nullptr;
    void* hook_ctx_ = nullptr;
};

}  // namespace coachwhip::server
