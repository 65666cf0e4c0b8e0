#include "server/server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <unistd.h>
#include <algorithm>

#include <cerrno>
#include <cstring>

#include "core/clock.hpp"
#include "core/log.hpp"
#include "proxy/proxy_protocol.hpp"
#include "server/tcp_transport.hpp"
#include "tls/transport.hpp"

namespace coachwhip::server {

namespace {

http::endpoint to_endpoint(const sockaddr_storage& ss) {
    http::endpoint ep;
    char buf[INET6_ADDRSTRLEN];
    if (ss.ss_family == AF_INET) {
        const auto& a = reinterpret_cast<const sockaddr_in&>(ss);
        ep.host = inet_ntop(AF_INET, &a.sin_addr, buf, sizeof buf);
        ep.port = ntohs(a.sin_port);
        ep.known = true;
    } else if (ss.ss_family == AF_INET6) {
        const auto& a = reinterpret_cast<const sockaddr_in6&>(ss);
        ep.host = inet_ntop(AF_INET6, &a.sin6_addr, buf, sizeof buf);
        ep.port = ntohs(a.sin6_port);
        ep.known = true;
    } else if (ss.ss_family == AF_UNIX) {
        const auto& a = reinterpret_cast<const sockaddr_un&>(ss);
        ep.host = a.sun_path;  // empty for an unnamed peer socket
        ep.known = !ep.host.empty();
    }
    return ep;
}

bool is_wildcard(const sockaddr_storage& ss) {
    if (ss.ss_family == AF_INET)
        return reinterpret_cast<const sockaddr_in&>(ss).sin_addr.s_addr == htonl(INADDR_ANY);
    if (ss.ss_family == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr);
    return false;
}

}  // namespace

// One accepted connection: its socket, TLS above it when the listener has TLS, its addresses,
// the protocol state and its timers. Lives in server::conns_ (a std::list, so addresses are
// stable) until it is reaped after closing.
//
// Over TLS the handshake comes first: until it is done, readiness drives tls::transport
// (handshake()) and the read slot holds the handshake deadline; the HTTP connection sees
// nothing. Once it is done, the connection gets the keep-alive timer and the TLS facts, and
// reads whatever came along with the client's Finished message.
//
// After a WebSocket upgrade, `ws` carries the connection on over the same transport (TLS
// included) and the same timers; the HTTP connection stays, dormant, until the entry is reaped.
struct server::conn_entry final : loop::io_handler {
    conn_entry(server& s, const http1::connection_config& cfg, int fd, http::endpoint c,
               http::endpoint l, const std::shared_ptr<const tls::context>& tls_ctx)
        : srv(s),
          transport(fd, s.m_),
          tls(tls_ctx ? std::make_unique<tls::transport>(tls_ctx, transport) : nullptr),
          http(std::make_unique<http1::connection>(
              tls ? static_cast<core::transport&>(*tls) : transport,
              static_cast<http1::connection_owner&>(s), cfg, s.events_, std::move(c),
              std::move(l))),
          read_timer(&on_read_timer, this),
          write_timer(&on_write_timer, this),
          rate_timer(&on_rate_timer, this) {}

    void on_io(uint32_t ev) override {
        if (tls) {
            if (proxy_pending && !read_proxy_header()) return conn().release_memory();
            if (tls->handshaking()) {
                if (!handshake()) return conn().release_memory();
                ev |= EPOLLIN;  // the first request may already sit decrypted in the TLS layer
            }
            // TLS may need the other direction than the one the protocol waits on.
            if ((ev & EPOLLOUT) && tls->read_wants_write()) ev |= EPOLLIN;
            const bool blocked = h2   ? h2->write_blocked()
                                 : ws ? ws->write_blocked()
                                      : conn().write_blocked();
            if ((ev & EPOLLIN) && tls->write_wants_read() && blocked) ev |= EPOLLOUT;
        }
        // A short read drains an edge-triggered socket; with TLS the transport judges that
        // from its reads of the socket (SSL_read returns a record at a time).
        const bool drains = !(ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR));
        if (tls) tls->set_short_read_drains(drains);
        if (h2) return h2_io(ev, drains && !tls);
        if (ws) return ws_io(ev, drains && !tls);
        if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) conn().on_readable(drains && !tls);
        if (ws) return ws_rest(ev);  // upgraded just now: the WebSocket takes the rest
        if (h2) return h2_rest(ev);  // the HTTP/2 preface: HTTP/2 takes the rest
        // HUP/ERR: reset, or both directions shut. Nothing more can be written, so close now,
        // even while reading is paused (else the fd and buffers stay until the app finishes).
        if ((ev & (EPOLLHUP | EPOLLERR)) &&
            conn().current_state() != http1::connection::state::closed)
            conn().on_hangup();
        else if ((ev & EPOLLOUT) && conn().write_blocked())
            conn().on_writable();
        if (http) http->release_memory();  // no-op unless it closed; the entry is reaped later
    }
    // The same for the WebSocket that took over after an upgrade.
    void ws_io(uint32_t ev, bool drains) {
        if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) ws->on_readable(drains);
        ws_rest(ev);
    }
    void ws_rest(uint32_t ev) {
        if ((ev & (EPOLLHUP | EPOLLERR)) && ws->current_state() != ws::connection::state::closed)
            ws->on_hangup();
        else if ((ev & EPOLLOUT) && ws->write_blocked())
            ws->on_writable();
        ws->release_memory();
    }
    // The same for HTTP/2 (ALPN h2, or the preface on a plain port).
    void h2_io(uint32_t ev, bool drains) {
        if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) h2->on_readable(drains);
        h2_rest(ev);
    }
    void h2_rest(uint32_t ev) {
        if ((ev & (EPOLLHUP | EPOLLERR)) && h2->current_state() != http2::connection::state::closed)
            h2->on_hangup();
        else if ((ev & EPOLLOUT) && h2->write_blocked())
            h2->on_writable();
        h2->release_memory();
    }
    // Drives the TLS handshake; true once it is done and the connection may read.
    bool handshake() {
        switch (tls->handshake()) {
            case tls::transport::handshake_result::again: return false;
            case tls::transport::handshake_result::done: srv.tls_established(*this); return true;
            case tls::transport::handshake_result::plain_http:
                answer_plain_http();
                srv.tls_refused(*this, http::refusal::tls_plain_http, "plain HTTP on a TLS port");
                return false;
            case tls::transport::handshake_result::failed:
                srv.tls_refused(*this, http::refusal::tls_handshake, tls->failure());
                return false;
        }
        return false;
    }
    // --proxy-protocol over TLS: the PROXY header comes before the ClientHello, so it is read
    // here from the socket (the HTTP connection's own PROXY reading is off for TLS listeners);
    // what follows it goes to TLS. True once it is consumed; false while it is incomplete, or
    // after closing (an untrusted peer, an invalid header: no answer, as over plain TCP).
    bool read_proxy_header() {
        std::string_view why;
        const http::endpoint& peer = conn().client();
        const bool unix_peer = !peer.known;
        const auto& trust = srv.cfg_.forwarded_trust;
        if (unix_peer ? !trust.contains_unix() : !trust.contains(peer.host)) {
            why = "its address is not in --forwarded-allow-ips";
        } else {
            char buf[1024];
            ssize_t n = 0;
            while (proxy_head.size() < k_proxy_read_max &&
                   (n = transport.read(buf, sizeof buf)) > 0) {
                proxy_head.append(buf, static_cast<size_t>(n));
                const proxy::proxy_result r = proxy::decode_proxy_header(proxy_head, {});
                if (r.status == proxy::proxy_status::incomplete) continue;
                if (r.status == proxy::proxy_status::complete) return apply_proxy_header(r);
                why = r.error;
                break;
            }
            if (why.empty() && n == -EAGAIN) return false;  // wait for more (handshake timer)
            if (why.empty()) why = "the connection ended before a complete PROXY header";
        }
        srv.tls_refused(*this, http::refusal::proxy_protocol, why);
        return false;
    }
    bool apply_proxy_header(const proxy::proxy_result& r) {
        const auto endpoint = [](const proxy::proxy_endpoint& e) {
            return http::endpoint{std::string(e.host.view()), e.port, true};
        };
        const auto fam = r.source.family;
        if (fam == proxy::address_family::inet || fam == proxy::address_family::inet6)
            conn().set_peer(endpoint(r.source), endpoint(r.destination));
        tls->preload(std::string_view(proxy_head).substr(r.length));
        proxy_head = std::string();
        proxy_pending = false;
        return true;
    }
    static constexpr size_t k_proxy_read_max = 8192;  // more than any valid header (4 KiB)

    // Plain HTTP on the TLS port: a 400 in plain HTTP (as nginx answers), then FIN. The rest of
    // the request is read and dropped first (bounded), so that closing does not reset the
    // connection under the answer.
    void answer_plain_http() {
        static constexpr std::string_view body = "The plain HTTP request was sent to HTTPS port\n";
        static const std::string reply =
            "HTTP/1.1 400 Bad Request\r\n"
            "content-type: text/plain; charset=utf-8\r\n"
            "content-length: " +
            std::to_string(body.size()) + "\r\nconnection: close\r\n\r\n" + std::string(body);
        char sink[4096];
        for (int i = 0; i < 16 && transport.read(sink, sizeof sink) > 0; ++i) {
        }
        const iovec iov{const_cast<char*>(reply.data()), reply.size()};
        transport.writev(&iov, 1, true);
        transport.shutdown_write();
        srv.events_.log_answer(conn().client(), {}, {}, {}, 400, body.size());
        // A setup mistake (a wrong URL scheme), not traffic: said at INFO with what to do, at
        // most once every ten seconds so that a scanner cannot flood the log through it.
        static uint64_t last_ms = 0;
        const uint64_t now = srv.loop_.now_ms();
        if ((last_ms == 0 || now - last_ms >= 10000) && core::log_enabled(core::log_level::info)) {
            last_ms = now;
            core::log(core::log_level::info,
                      "plain HTTP (an http:// client) from " + conn().client().host +
                          " on the TLS port " + std::to_string(conn().local().port) +
                          " (answered 400): use https:// URLs for this port");
        }
    }
    static void on_read_timer(void* ctx) {
        auto* e = static_cast<conn_entry*>(ctx);
        if (e->h2) {
            e->h2->on_timer(e->h2_kind);
            return e->h2->release_memory();
        }
        if (e->ws) {
            e->ws->on_timer(e->ws_kind);
            return e->ws->release_memory();
        }
        if (e->tls && e->tls->handshaking()) {
            e->srv.tls_refused(*e, http::refusal::tls_timeout, "no TLS handshake in time");
        } else {
            e->conn().on_timer(e->read_kind);
        }
        if (e->http) e->http->release_memory();
    }
    static void on_write_timer(void* ctx) {
        auto* e = static_cast<conn_entry*>(ctx);
        if (e->h2) {
            e->h2->on_timer(http2::connection::timer_kind::write);
            return e->h2->release_memory();
        }
        if (e->ws) {
            e->ws->on_timer(ws::connection::timer_kind::write);
            return e->ws->release_memory();
        }
        e->conn().on_timer(timer_kind::write);
        if (e->http) e->http->release_memory();
    }
    static void on_rate_timer(void* ctx) {
        auto* e = static_cast<conn_entry*>(ctx);
        if (e->h2) {  // HTTP/2 uses the rate slot for its tick (WebSocket tunnels' deadlines)
            e->h2->on_timer(http2::connection::timer_kind::tick);
            return e->h2->release_memory();
        }
        if (!e->http) return;  // upgraded (the rate slot is disarmed then)
        e->conn().on_timer(timer_kind::rate);
        if (e->http) e->http->release_memory();
    }

    server& srv;
    tcp_transport transport;
    std::unique_ptr<tls::transport> tls;  // between the socket and the protocol, when TLS is on
    std::string proxy_head;               // --proxy-protocol over TLS: the bytes read so far
    bool proxy_pending = false;           // ... and the header is still to come
    // The HTTP/1.1 side (on the heap so that, after a WebSocket upgrade, the server frees it:
    // server::upgrade hands it to dormant_, destroyed after the I/O phase). conn(): before that.
    std::unique_ptr<http1::connection> http;
    http1::connection& conn() noexcept { return *http; }
    loop::timer read_timer;  // TLS handshake, keep-alive, header, body or linger: one at a time
    loop::timer write_timer;
    loop::timer rate_timer;  // minimum data rates
    timer_kind read_kind = timer_kind::none;
    ws::connection::timer_kind ws_kind = ws::connection::timer_kind::none;
    // After a WebSocket upgrade (declared last: destroyed first, while the transport lives).
    std::unique_ptr<ws::connection> ws;
    // HTTP/2, when ALPN or the preface chose it (as `ws`: destroyed before the transport).
    std::unique_ptr<http2::connection> h2;
    http2::connection::timer_kind h2_kind = http2::connection::timer_kind::none;
    std::list<conn_entry>::iterator self;
};

template <class C>
void server::enqueue(std::vector<C*>& list, C& c) {
    if (c.scheduled) return;
    c.scheduled = true;
    const bool first = !has_scheduled();
    list.push_back(&c);
    if (first && !in_io_ && hook_) hook_(hook_ctx_);
}

template <class C>
void server::retire(conn_entry& e, std::vector<C*>& list, C& c) {
    if (m_) metrics::sub(m_->connections_open);
    e.read_timer.disarm();
    e.write_timer.disarm();
    e.rate_timer.disarm();
    --conn_count_;
    // Scheduled entries and epoll events of this batch may still point here: free it later.
    graveyard_.push_back(e.self);
    if (c.scheduled) {
        std::erase(list, &c);
        c.scheduled = false;
    }
}

// The owner of the WebSocket connections: the same timers, schedule and bookkeeping as the
// HTTP/1.1 ones (a separate object, since both owner interfaces name their timer kinds alike).
struct server::ws_owner final : ws::connection_owner {
    explicit ws_owner(server& s) : srv(s) {}
    static conn_entry& entry(ws::connection& c) { return *static_cast<conn_entry*>(c.owner_ctx); }

    void schedule(ws::connection& c) override { srv.enqueue(srv.ws_scheduled_, c); }
    void arm_timer(ws::connection& c, timer_kind kind) override {
        conn_entry& e = entry(c);
        switch (kind) {
            case timer_kind::write: return srv.loop_.arm(e.write_timer, srv.write_list_);
            case timer_kind::ping:
                e.ws_kind = kind;
                return srv.loop_.arm(e.read_timer, srv.ws_ping_list_);
            case timer_kind::pong:
                e.ws_kind = kind;
                return srv.loop_.arm(e.read_timer, srv.ws_pong_list_);
            case timer_kind::close:
                e.ws_kind = kind;
                return srv.loop_.arm(e.read_timer, srv.ws_close_list_);
            case timer_kind::none: return;
        }
    }
    void disarm_timer(ws::connection& c, timer_kind kind) override {
        conn_entry& e = entry(c);
        (kind == timer_kind::write ? e.write_timer : e.read_timer).disarm();
    }
    uint64_t now_ms() const noexcept override { return srv.loop_.now_ms(); }
    void on_closed(ws::connection& c) override {
        if (srv.m_) metrics::sub(srv.m_->websockets_open);
        srv.retire(entry(c), srv.ws_scheduled_, c);
    }
    void refused(ws::connection&, http::refusal why) override {
        if (srv.m_) metrics::add(srv.m_->refused[static_cast<size_t>(why)]);
    }

    server& srv;
};

// The owner of the HTTP/2 connections: the entry's timers, the schedule, admission and the
// metrics, as for HTTP/1.1.
struct server::h2_owner final : http2::connection_owner {
    explicit h2_owner(server& s) : srv(s) {}
    static conn_entry& entry(http2::connection& c) {
        return *static_cast<conn_entry*>(c.owner_ctx);
    }

    void schedule(http2::connection& c) override { srv.enqueue(srv.h2_scheduled_, c); }
    void arm_timer(http2::connection& c, timer_kind kind) override {
        conn_entry& e = entry(c);
        switch (kind) {
            case timer_kind::write: return srv.loop_.arm(e.write_timer, srv.write_list_);
            case timer_kind::preface:
                e.h2_kind = kind;
                return srv.loop_.arm(e.read_timer, srv.header_list_);
            case timer_kind::idle:
                e.h2_kind = kind;
                return srv.loop_.arm(e.read_timer, srv.keep_alive_list_);
            case timer_kind::goaway:
                e.h2_kind = kind;
                return srv.loop_.arm(e.read_timer, srv.h2_goaway_list_);
            case timer_kind::tick: return srv.loop_.arm(e.rate_timer, srv.h2_tick_list_);
            case timer_kind::none: return;
        }
    }
    void disarm_timer(http2::connection& c, timer_kind kind) override {
        conn_entry& e = entry(c);
        if (kind == timer_kind::tick) return e.rate_timer.disarm();
        (kind == timer_kind::write ? e.write_timer : e.read_timer).disarm();
    }
    uint64_t now_ms() const noexcept override { return srv.loop_.now_ms(); }
    bool admit_request(http2::connection&) override { return srv.admit(); }
    void request_finished(http2::connection&) override { srv.finished(); }
    void on_closed(http2::connection& c) override { srv.retire(entry(c), srv.h2_scheduled_, c); }
    void refused(http2::connection&, http::refusal why) override {
        if (srv.m_) metrics::add(srv.m_->refused[static_cast<size_t>(why)]);
    }
    void request_done(http2::connection&, const http::exchange& ex, uint64_t started) override {
        srv.count_request(ex, started);
    }
    bool internal_response(http2::connection& c, std::string_view target,
                           http::internal_reply& out) override {
        return srv.answer_internal(&c.config() == &srv.h2_internal_, target, out);
    }

    server& srv;
};

server::server(const server_config& cfg)
    : cfg_(cfg),
      read_blocks_(cfg.conn.read_chunk, 8),
      keep_alive_list_(cfg.keep_alive_ms),
      header_list_(cfg.header_timeout_ms),
      body_list_(cfg.body_timeout_ms),
      write_list_(cfg.write_timeout_ms),
      linger_list_(cfg.linger_ms),
      shutdown_idle_list_(std::min(cfg.shutdown_idle_ms, cfg.keep_alive_ms)),
      // Minimum data rates: checked twice per grace period, at most once a second.
      rate_list_(std::clamp<uint64_t>(cfg.conn.min_rate_grace_ms / 2, 50, 1000)),
      tls_handshake_list_(cfg.tls_handshake_ms),
      ws_ping_list_(std::max<uint64_t>(cfg.ws.ping_interval_ms, 1)),
      ws_pong_list_(std::max<uint64_t>(cfg.ws.ping_timeout_ms, 1)),
      ws_close_list_(std::max<uint64_t>(cfg.ws.close_timeout_ms, 1)),
      // About a round trip, and well under any grace period.
      h2_goaway_list_(std::clamp<uint64_t>(cfg.shutdown_idle_ms, 1, 1000)),
      h2_tick_list_(1000),
      ws_owner_(std::make_unique<ws_owner>(*this)),
      h2_owner_(std::make_unique<h2_owner>(*this)) {
    if (!metrics::region::make_private(metrics_)) {
        m_ = &metrics_.slot(0);
        metrics::set(m_->pid, static_cast<uint64_t>(::getpid()));
    }
    events_.set_access_log(cfg_.access_log);
    // uvicorn: a configured server field is sent even with --no-server-header.
    if (cfg_.conn.defaults.server_configured) cfg_.conn.server_header = true;
    cfg_.conn.read_blocks = &read_blocks_;
    cfg_.conn.forwarded_trust = cfg_.proxy_headers ? &cfg_.forwarded_trust : nullptr;
    cfg_.conn.proxy_protocol_from = cfg_.proxy_protocol ? &cfg_.forwarded_trust : nullptr;
    cfg_.conn.websocket = cfg_.websocket ? &cfg_.ws_deflate : nullptr;
    cfg_.ws.read_blocks = &read_blocks_;
    cfg_.ws.read_chunk = cfg_.conn.read_chunk;
    internal_conn_ = cfg_.conn;
    internal_conn_.internal_only = true;
    internal_conn_.websocket = nullptr;
    internal_conn_.proxy_protocol_from = nullptr;  // scrapers connect directly
    cfg_.conn.h2_prior_knowledge = cfg_.http2;
    cfg_.conn.http1_refused = !cfg_.http1;
    internal_conn_.h2_prior_knowledge = cfg_.http2;
    tls_conn_ = cfg_.conn;
    tls_conn_.proxy_protocol_from = nullptr;  // read before TLS: conn_entry::read_proxy_header
    tls_conn_.h2_prior_knowledge = false;     // over TLS, ALPN chooses (tls_established)
    cfg_.h2.read_blocks = &read_blocks_;
    cfg_.h2.read_chunk = cfg_.conn.read_chunk;
    cfg_.h2.server_header = cfg_.conn.server_header;
    cfg_.h2.date_header = cfg_.conn.date_header;
    cfg_.h2.defaults = cfg_.conn.defaults;
    cfg_.h2.forwarded_trust = cfg_.conn.forwarded_trust;
    // WebSocket over HTTP/2: the stream is the transport (timers: http2::connection_config).
    cfg_.h2.ws = cfg_.websocket ? &cfg_.ws : nullptr;
    cfg_.h2.ws_write_timeout_ms = cfg_.write_timeout_ms;
    cfg_.h2.ws_deflate = &cfg_.ws_deflate;
    cfg_.h2.ws_max_subprotocols = cfg_.conn.ws_max_subprotocols;
    h2_conn_ = cfg_.h2;
    h2_tls_conn_ = cfg_.h2;
    h2_tls_conn_.scheme = "https";
    h2_internal_ = cfg_.h2;
    h2_internal_.internal_only = true;
    h2_internal_.forwarded_trust = nullptr;
    h2_internal_.ws = nullptr;
    for (auto* list : {&keep_alive_list_, &header_list_, &body_list_, &write_list_, &linger_list_,
                       &shutdown_idle_list_, &rate_list_, &tls_handshake_list_, &ws_ping_list_,
                       &ws_pong_list_, &ws_close_list_, &h2_goaway_list_, &h2_tick_list_})
        loop_.add_list(list);
}

server::~server() {
    listeners_.clear();
    conns_.clear();  // closes sockets; exchanges still held by Python are detached
}

core::error server::add_listener(int fd, bool internal) {
    auto le = std::make_unique<listener_entry>();
    le->internal = internal;
    has_internal_ = has_internal_ || internal;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0)
        return {500, "getsockname() failed on the listening socket"};
    le->local = to_endpoint(ss);
    le->wildcard = is_wildcard(ss);
    le->family = ss.ss_family;
    listener_entry* raw = le.get();
    le->l = std::make_unique<listener>(
        loop_, fd,
        [this, raw](int cfd, const sockaddr_storage& peer) { accept_one(*raw, cfd, peer); },
        [this] { return may_accept(); });
    if (m_) le->l->accept_failures = &m_->connections_rejected;
    if (le->l->start() != 0) return {500, "cannot register the listening socket with epoll"};
    listeners_.push_back(std::move(le));
    return {};
}

namespace {

// 127.0.0.0/8, ::1, or an IPv4-mapped loopback address.
bool is_loopback(const sockaddr_storage& ss) {
    if (ss.ss_family == AF_INET) {
        const auto& a = reinterpret_cast<const sockaddr_in&>(ss).sin_addr;
        return (ntohl(a.s_addr) >> 24) == 127;
    }
    if (ss.ss_family == AF_INET6) {
        const in6_addr& a = reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(&a)) return true;
        return IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127;
    }
    return false;
}

}  // namespace

void server::accept_one(listener_entry& le, int fd, const sockaddr_storage& peer) {
    http::endpoint local = le.local;
    if (le.family != AF_UNIX) {
        int one = 1;  // responses go out in one writev; do not let Nagle hold back the last bytes
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (le.wildcard) {
            sockaddr_storage ss{};
            socklen_t sl = sizeof ss;
            if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &sl) == 0)
                local = to_endpoint(ss);
        }
    }
    http::endpoint client = le.family == AF_UNIX ? http::endpoint{} : to_endpoint(peer);
    static const std::shared_ptr<const tls::context> no_tls;
    const std::shared_ptr<const tls::context>& tls_ctx = le.internal ? no_tls : cfg_.tls;
    const http1::connection_config& conn_cfg =
        le.internal ? internal_conn_ : (tls_ctx ? tls_conn_ : cfg_.conn);
    conns_.emplace_back(*this, conn_cfg, fd, std::move(client), std::move(local), tls_ctx);
    conn_entry& e = conns_.back();
    e.self = std::prev(conns_.end());
    e.conn().owner_ctx = &e;
    e.transport.set_local_peer(le.family == AF_UNIX || is_loopback(peer));
    ++conn_count_;
    if (tls_ctx) {
        e.proxy_pending = cfg_.proxy_protocol;
        e.read_kind = timer_kind::none;
        loop_.arm(e.read_timer, tls_handshake_list_);  // see conn_entry::on_read_timer
    } else {
        arm_timer(e.conn(), timer_kind::keep_alive);  // until the first request byte arrives
    }
    if (m_) metrics::add(m_->connections_accepted), metrics::add(m_->connections_open);
    if (loop_.add(fd, &e, EPOLLIN | EPOLLOUT | EPOLLRDHUP) != 0) e.conn().on_hangup();
}

void server::tls_established(conn_entry& e) {
    std::shared_ptr<const tls::info> info = e.tls->connection_info();
    if (m_) metrics::add(m_->tls_handshakes[info->resumed ? 1 : 0]);
    if (cfg_.http2 && info->alpn == "h2") return start_h2(e, {}, std::move(info));
    e.conn().set_tls(std::move(info));
    e.read_timer.disarm();
    arm_timer(e.conn(), timer_kind::keep_alive);
    if (shutting_down_) e.conn().begin_shutdown();
}

void server::tls_refused(conn_entry& e, http::refusal why, std::string_view detail) {
    refused(e.conn(), why);
    if (core::log_enabled(core::log_level::debug))
        core::log(core::log_level::debug, "TLS connection from " + e.conn().client().host +
                                              " closed: " + std::string(detail));
    e.conn().on_hangup();
}

void server::set_tls(std::shared_ptr<const tls::context> ctx) {
    if (cfg_.tls && ctx) cfg_.tls = std::move(ctx);
}

void server::stop_accepting() {
    for (auto& le : listeners_)
        le->l->stop();
}

void server::shutdown_connections() {
    // Inside an I/O phase, so that the connections it schedules run now (leave_io) and the
    // schedule hook, which calls Python, is not called from here with the GIL released.
    const bool outer = !in_io_;
    if (outer) enter_io(), loop_.update_now();
    shutting_down_ = true;
    for (auto& e : conns_) {
        // A TLS handshake under way finishes first (bounded by its deadline): its client is
        // about to send a request, which the connection then gets the usual chance to start.
        if (e.tls && e.tls->handshaking()) continue;
        if (e.h2) {
            e.h2->begin_shutdown();
            e.h2->release_memory();
        } else if (e.ws) {
            e.ws->begin_shutdown();
            e.ws->release_memory();
        } else {
            e.conn().begin_shutdown();
        }
    }
    if (outer) leave_io();
}

void server::close_all() {
    for (auto& e : conns_) {
        if (e.h2) {
            if (e.h2->current_state() != http2::connection::state::closed) e.h2->on_hangup();
        } else if (e.ws) {
            if (e.ws->current_state() != ws::connection::state::closed) e.ws->on_hangup();
        } else if (e.conn().current_state() != http1::connection::state::closed) {
            e.conn().on_hangup();
        }
    }
    reap();
}

void server::enter_io() {
    in_io_ = true;
    if (cfg_.tls) tls::transport::begin_io_phase();
}

void server::leave_io() {
    process_scheduled();
    dormant_.clear();  // HTTP/1.1 connections a WebSocket took over in this phase
    for (auto& le : listeners_)
        if (le->l->paused()) le->l->resume();
    reap();
    in_io_ = false;
}

void server::run_io(int timeout_ms) {
    enter_io();
    loop_.run_once(timeout_ms);
    leave_io();
}

void server::run_scheduled() {
    enter_io();
    loop_.update_now();
    leave_io();
}

void server::process_scheduled() {
    // Processing can schedule more work (a pipelined request's response is queued at once only by
    // the app, so this settles quickly); bound the rounds anyway.
    for (int round = 0; round < 8 && has_scheduled(); ++round) {
        auto batch = std::exchange(scheduled_, {});
        for (http1::connection* c : batch) {
            c->scheduled = false;
            if (c->current_state() == http1::connection::state::closed) continue;
            c->process();
            c->release_memory();
        }
        auto ws_batch = std::exchange(ws_scheduled_, {});
        for (ws::connection* c : ws_batch) {
            c->scheduled = false;
            if (c->current_state() == ws::connection::state::closed) continue;
            c->process();
            c->release_memory();
        }
        auto h2_batch = std::exchange(h2_scheduled_, {});
        for (http2::connection* c : h2_batch) {
            c->scheduled = false;
            if (c->current_state() == http2::connection::state::closed) continue;
            c->process();
            c->release_memory();
        }
    }
}

void server::reap() {
    for (auto it : graveyard_)
        conns_.erase(it);
    graveyard_.clear();
}

void server::schedule(http1::connection& c) { enqueue(scheduled_, c); }

bool server::may_accept() const noexcept {
    return cfg_.max_connections == 0 || conn_count_ < cfg_.max_connections;
}

loop::timeout_list& server::list_for(timer_kind kind) noexcept {
    switch (kind) {
        case timer_kind::header: return header_list_;
        case timer_kind::body: return body_list_;
        case timer_kind::write: return write_list_;
        case timer_kind::linger: return linger_list_;
        case timer_kind::shutdown_idle: return shutdown_idle_list_;
        default: return keep_alive_list_;
    }
}

void server::arm_timer(http1::connection& c, timer_kind kind) {
    auto* e = static_cast<conn_entry*>(c.owner_ctx);
    if (!e) return;  // during construction: accept_one arms the first timer itself
    if (kind == timer_kind::write) return loop_.arm(e->write_timer, write_list_);
    if (kind == timer_kind::rate) return loop_.arm(e->rate_timer, rate_list_);
    e->read_kind = kind;
    loop_.arm(e->read_timer, list_for(kind));
}

void server::disarm_timer(http1::connection& c, timer_kind kind) {
    auto* e = static_cast<conn_entry*>(c.owner_ctx);
    if (!e) return;
    if (kind == timer_kind::rate) return e->rate_timer.disarm();
    (kind == timer_kind::write ? e->write_timer : e->read_timer).disarm();
}

bool server::admit() {
    if (cfg_.max_concurrency && in_flight_ >= cfg_.max_concurrency) return false;
    ++in_flight_;
    if (m_) metrics::add(m_->in_flight);
    return true;
}

void server::finished() {
    --in_flight_;
    if (m_) metrics::sub(m_->in_flight);
}

bool server::admit_request(http1::connection&) { return admit(); }
void server::request_finished(http1::connection&) { finished(); }

bool server::internal_response(http1::connection& c, std::string_view target,
                               http1::internal_reply& out) {
    return answer_internal(&c.config() == &internal_conn_, target, out);
}

bool server::answer_internal(bool internal, std::string_view target, http::internal_reply& out) {
    const std::string_view path = target.substr(0, target.find('?'));
    if (path == "/-/health" && cfg_.health_endpoint) {
        // Answered from the engine on the worker's own thread, which also runs the app's event
        // loop: a worker stuck in blocking code answers nothing at all, never 200.
        out.body = "ok\n";
        return true;
    }
    if (path == "/-/ready" && cfg_.ready_endpoint) {
        out.status = ready_ ? 200 : 503;
        out.body = ready_ ? "ready\n" : "not ready\n";
        return true;
    }
    const bool metrics_here = internal || (cfg_.metrics_endpoint && !has_internal_);
    if (path == "/-/metrics" && metrics_here && metrics_.valid()) {
        out.content_type = "text/plain; version=0.0.4; charset=utf-8";
        out.body = metrics_.render();
        return true;
    }
    return false;
}

core::error server::use_shared_metrics(int fd, size_t slot) {
    // Listeners and connections keep pointers into the block: switch before there are any.
    if (!listeners_.empty() || !conns_.empty())
        return {500, "use_shared_metrics() must come before the first listener"};
    metrics::region shared;
    if (core::error e = metrics::region::attach(fd, shared)) return e;
    if (slot >= shared.slots()) return {500, "metrics slot out of range"};
    metrics::block& to = shared.slot(slot);
    metrics_ = std::move(shared);
    m_ = &to;
    metrics::set(m_->pid, static_cast<uint64_t>(::getpid()));
    return {};
}

void server::refused(http1::connection&, http::refusal why) {
    if (!m_) return;
    metrics::add(m_->refused[static_cast<size_t>(why)]);
    if (why == http::refusal::proxy_protocol) metrics::add(m_->connections_rejected);
}

void server::request_done(http1::connection&, const http::exchange& ex, uint64_t started) {
    count_request(ex, started);
}

void server::count_request(const http::exchange& ex, uint64_t started) {
    if (events_.access_log()) log_exchange(ex, started);
    if (!m_) return;
    const size_t cls = ex.status >= 100 && ex.status < 600 ? ex.status / 100 : 0;
    metrics::add(m_->requests[metrics::method_of(ex.method)][cls]);
    const uint64_t ms = loop_.now_ms() - started;
    size_t bucket = 0;
    while (bucket < metrics::k_buckets && ms > metrics::k_bucket_bounds[bucket] * 1000.0)
        ++bucket;
    if (bucket < metrics::k_buckets) metrics::add(m_->duration_buckets[bucket]);
    metrics::add(m_->duration_count);
    metrics::add(m_->duration_sum_us, ms * 1000);
}

// The access record of a request that reached the app (or was meant to), as its protocol lets
// go of it: answered, failed, or cut short.
void server::log_exchange(const http::exchange& ex, uint64_t started_ms) {
    // An HTTP/2 stream the client reset before its app started never had a response.
    if (ex.cancelled) return;
    http::access_record r;
    // The record keeps the exchange (not const: the bridge frees a WebSocket's head once logged).
    r.ex = std::const_pointer_cast<http::exchange>(ex.shared_from_this());
    // An accepted WebSocket's answer is its 101 (HTTP/2: 200), complete once sent.
    const bool websocket = ex.websocket && (ex.status == 101 || ex.status == 200);
    r.status = ex.status != 0 ? ex.status : k_no_response_status;
    r.bytes = ex.bytes_sent;
    r.cut_short = ex.cut_short || (!ex.response_complete && !websocket);
    // started_us is the precise clock; an exchange without it has the coarse one in ms (the same
    // monotonic clock, read less often: it may lag by a few ms, hence the clamp).
    const uint64_t start = ex.started_us != 0 ? ex.started_us : started_ms * 1000;
    const uint64_t now = core::now_us();
    r.duration_us = now > start ? now - start : 0;
    events_.log(std::move(r));
}

void server::on_closed(http1::connection& c) {
    retire(*static_cast<conn_entry*>(c.owner_ctx), scheduled_, c);
}

// The app accepted a WebSocket upgrade and its 101 is out: a ws::connection takes the entry's
// transport and timers over (see conn_entry).
bool server::upgrade(http1::connection& c, const std::shared_ptr<http::exchange>& ex,
                     std::string leftover, std::optional<ws::deflate_params> deflate) {
    auto* e = static_cast<conn_entry*>(c.owner_ctx);
    if (!e || !cfg_.websocket) return false;
    core::transport& t = e->tls ? static_cast<core::transport&>(*e->tls) : e->transport;
    e->ws =
        std::make_unique<ws::connection>(t, *ws_owner_, cfg_.ws, ex, std::move(leftover), deflate);
    e->ws->owner_ctx = e;
    if (m_) metrics::add(m_->websockets_open), metrics::add(m_->websockets_total);
    ex->rebind(e->ws.get());
    ex->post(http::ev_drain);  // the app's accept completes
    // The HTTP/1.1 connection is dormant now and we are inside one of its methods: it is freed
    // after this I/O phase (leave_io), not here.
    if (c.scheduled) {
        std::erase(scheduled_, &c);
        c.scheduled = false;
    }
    dormant_.push_back(std::move(e->http));
    e->ws->start();
    if (shutting_down_) e->ws->begin_shutdown();
    return true;
}

}  // namespace coachwhip::server

namespace coachwhip::server {

// The connection starts with the HTTP/2 preface (h2c with prior knowledge).
bool server::upgrade_h2(http1::connection& c, std::string bytes) {
    auto* e = static_cast<conn_entry*>(c.owner_ctx);
    if (!e || !cfg_.http2) return false;
    start_h2(*e, std::move(bytes), nullptr);
    return true;
}

// `Upgrade: h2c`: the 101 is written; the request becomes stream 1.
bool server::upgrade_h2c(http1::connection& c, const std::shared_ptr<http::exchange>& ex,
                         std::string settings, std::string leftover) {
    auto* e = static_cast<conn_entry*>(c.owner_ctx);
    if (!e || !cfg_.http2) return false;
    start_h2(*e, std::move(leftover), nullptr, ex, std::move(settings));
    return true;
}

// HTTP/2 takes the entry's transport and timers over. The HTTP/1.1 connection may be on the
// stack (the preface was read by it): it is freed after this I/O phase.
void server::start_h2(conn_entry& e, std::string bytes, std::shared_ptr<const tls::info> info,
                      std::shared_ptr<http::exchange> adopted, std::string settings) {
    http1::connection& c = e.conn();
    const bool internal = &c.config() == &internal_conn_;
    const http2::connection_config& cfg =
        internal ? h2_internal_ : (e.tls ? h2_tls_conn_ : h2_conn_);
    core::transport& t = e.tls ? static_cast<core::transport&>(*e.tls) : e.transport;
    e.read_timer.disarm();
    e.write_timer.disarm();
    e.rate_timer.disarm();
    e.h2 = std::make_unique<http2::connection>(t, *h2_owner_, cfg, events_, c.client(), c.local(),
                                               std::move(info), std::move(bytes));
    e.h2->owner_ctx = &e;
    if (adopted) e.h2->adopt(std::move(adopted), std::move(settings));
    if (c.scheduled) {
        std::erase(scheduled_, &c);
        c.scheduled = false;
    }
    dormant_.push_back(std::move(e.http));
    e.h2->start();
    if (shutting_down_ && e.h2->current_state() == http2::connection::state::open)
        e.h2->begin_shutdown();
}

}  // namespace coachwhip::server
