#include "http1/connection.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>
#include <vector>

#include "core/clock.hpp"
#include "core/log.hpp"
#include "http/forwarded.hpp"
#include "proxy/proxy_protocol.hpp"

namespace coachwhip::http1 {

using http::send_result;
using http::send_status;
using timer_kind = connection_owner::timer_kind;

namespace {
constexpr std::string_view continue_response = "HTTP/1.1 100 Continue\r\n\r\n";

bool has_control_byte(std::string_view bytes) {
    for (unsigned char c : bytes)
        if ((c < 0x20 && c != '\t') || c == 0x7f) return true;
    return false;
}

// Header storage for the parser. One engine thread parses one head at a time and copies the
// result out before parsing another, so one buffer per thread serves every connection.
std::span<header_field> header_storage(size_t n) {
    static thread_local std::vector<header_field> storage;
    if (storage.size() < n) storage.resize(n);
    return {storage.data(), n};
}

// The same, for a WebSocket handshake's fields as ws::check_upgrade takes them, and its
// subprotocols (views into the input buffer until start_request copies the head out).
std::span<const http::field> handshake_fields(std::span<const header_field> headers) {
    static thread_local std::vector<http::field> fields;
    fields.clear();
    for (const auto& f : headers)
        fields.push_back({f.name, f.value});
    return fields;
}
std::span<std::string_view> subprotocol_storage(size_t n) {
    static thread_local std::vector<std::string_view> storage;
    if (storage.size() < n) storage.resize(n);
    return {storage.data(), n};
}

// A connection that opens with a TLS record (handshake, version 3.x): an https:// client on a
// plain port, which the parser can only answer 400.
bool looks_like_tls(std::string_view data) {
    return data.size() >= 3 && data[0] == 0x16 && data[1] == 0x03 &&
           static_cast<unsigned char>(data[2]) <= 0x04;
}

// Other protocols a client may mistakenly speak here: said at INFO with what to do, as they
// are a setup mistake (a wrong URL scheme or server flag), not traffic. At most once every ten
// seconds, so that a scanner cannot flood the log through it (each still gets its access line).
void note_foreign_protocol(const http::endpoint& client, const http::endpoint& local,
                           std::string_view what, int status) {
    static thread_local uint64_t last_ms = 0;
    const uint64_t now = core::now_ms();
    if (last_ms != 0 && now - last_ms < 10000) return;
    last_ms = now;
    if (!core::log_enabled(core::log_level::info)) return;
    const std::string port = local.port >= 0 ? " " + std::to_string(local.port) : "";
    core::log(core::log_level::info,
              std::string(what) + " from " + client.host + " on the plain HTTP port" + port +
                  " (answered " + std::to_string(status) + "): " +
                  (what.starts_with("a TLS")
                       ? "the client uses https:// while this port serves http://; use http:// "
                         "URLs here, or serve HTTPS with --ssl-certfile and --ssl-keyfile"
                       : "HTTP/2 is off (--http 1); use --http auto to serve it"));
}
}  // namespace

connection::connection(core::transport& t, connection_owner& owner, const connection_config& cfg,
                       http::event_queue& events, http::endpoint client, http::endpoint server)
    : t_(t),
      owner_(owner),
      cfg_(cfg),
      events_(events),
      client_(std::move(client)),
      server_(std::move(server)),
      in_(cfg.read_blocks) {
    set_read_timer(timer_kind::keep_alive);
    if (cfg.forwarded_trust)
        forwarded_peer_ = http::trusts_peer(client_, server_, *cfg.forwarded_trust);
    proxy_pending_ = cfg.proxy_protocol_from != nullptr;
}

void connection::set_peer(http::endpoint client, http::endpoint server) {
    client_ = std::move(client);
    server_ = std::move(server);
    if (cfg_.forwarded_trust)
        forwarded_peer_ = http::trusts_peer(client_, server_, *cfg_.forwarded_trust);
}

// --proxy-protocol (HAProxy's spec, v1 and v2): the header's addresses replace the socket's,
// and the proxy-header trust is judged again for the client it names. Returns true once the
// header is consumed; false while it is incomplete, or after closing: an untrusted peer (its
// bytes are not even parsed) or an invalid header (spec §2.1: abort at once, no HTTP answer).
bool connection::consume_proxy_header() {
    set_read_timer(timer_kind::header);  // the header counts toward the head's deadline
    std::string_view why;
    if (!http::trusts_peer(client_, server_, *cfg_.proxy_protocol_from)) {
        why = "its address is not in --forwarded-allow-ips";
    } else {
        const proxy::proxy_result r = proxy::decode_proxy_header(in_.readable(), {});
        if (r.status == proxy::proxy_status::incomplete && !peer_eof_) return false;
        if (r.status == proxy::proxy_status::complete) {
            const auto endpoint = [](const proxy::proxy_endpoint& e) {
                return http::endpoint{std::string(e.host.view()), e.port, true};
            };
            const auto fam = r.source.family;
            if (fam == proxy::address_family::inet || fam == proxy::address_family::inet6) {
                client_ = endpoint(r.source);
                server_ = endpoint(r.destination);
            }
            if (r.tlvs.ssl.present && (r.tlvs.ssl.client & 0x01)) scheme_ = "https";
            if (cfg_.forwarded_trust)
                forwarded_peer_ = http::trusts_peer(client_, server_, *cfg_.forwarded_trust);
            in_.consume(r.length);
            scanned_ = 0;
            proxy_pending_ = false;
            return true;
        }
        why = r.status == proxy::proxy_status::error ? r.error : "the connection ended";
    }
    owner_.refused(*this, http::refusal::proxy_protocol);
    if (core::log_enabled(core::log_level::debug))
        core::log(core::log_level::debug, "closing a --proxy-protocol connection from " +
                                              client_.host + ": " + std::string(why));
    close_now();
    return false;
}

// Arms the read slot for `kind`; keeps a running deadline when the kind is unchanged, so a
// client trickling bytes cannot push its header deadline back (the slowloris defence).
void connection::set_read_timer(timer_kind kind) {
    if (kind == read_timer_ && kind != timer_kind::body) return;
    read_timer_ = kind;
    if (kind == timer_kind::none) {
        owner_.disarm_timer(*this, timer_kind::keep_alive);
    } else {
        owner_.arm_timer(*this, kind);
    }
}

// We wait on the client for request body bytes: the app has not paused us by leaving what is
// buffered untaken, and no 100 Continue is owed (a client that asked for one waits on us).
bool connection::waiting_for_body() const noexcept {
    return state_ == state::in_request && !body_done_ && !reading_paused() && !continue_owed_;
}

// The body timeout is an idle timeout: it runs only while we wait for the client, and restarts
// whenever body bytes arrive.
void connection::update_body_timer() {
    if (waiting_for_body()) {
        set_read_timer(timer_kind::body);
    } else if (read_timer_ == timer_kind::body) {
        set_read_timer(timer_kind::none);
    }
    update_rate_clocks();
}

// ---------------------------------------------------------------- minimum data rates
//
// Slow POST (R.U.D.Y.) and slow readers: a client that sends a byte just inside the body
// timeout, or reads one just inside the write timeout, holds a connection and an app for as
// long as it likes. So each direction also has a minimum average rate (Kestrel's
// MinRequestBodyDataRate and MinResponseDataRate are the model: 240 bytes/s after a 5 s grace).
// The average is over all the time we have waited on this client in this request, not a short
// window, so a mobile upload that stalls for a few seconds between bursts is not cut; holding a
// connection for T seconds still costs the client rate * T bytes.

void connection::update_rate_clocks() {
    if (!cfg_.min_body_rate && !cfg_.min_response_rate) return;
    const uint64_t now = owner_.now_ms();
    if (cfg_.min_body_rate && waiting_for_body()) {
        body_clock_.run(now);
    } else {
        body_clock_.pause(now);
    }
    // Only while the socket refuses our output: a client that keeps up is never measured.
    if (cfg_.min_response_rate && write_blocked_ && !out_.empty() && state_ != state::closed) {
        response_clock_.run(now);
    } else {
        response_clock_.pause(now);
    }
    const bool measuring = body_clock_.running || response_clock_.running;
    if (measuring != rate_timer_) {
        rate_timer_ = measuring;
        if (measuring) {
            owner_.arm_timer(*this, timer_kind::rate);
        } else {
            owner_.disarm_timer(*this, timer_kind::rate);
        }
    }
}

void connection::check_rates() {
    const uint64_t now = owner_.now_ms();
    const uint64_t grace = cfg_.min_rate_grace_ms;
    if (body_clock_.too_slow(body_received_, cfg_.min_body_rate, grace, now))
        return reject({408, "request body slower than --min-request-body-rate"},
                      http::refusal::body_rate);
    if (response_clock_.too_slow(response_taken_, cfg_.min_response_rate, grace, now)) {
        if (core::log_enabled(core::log_level::debug))
            core::log(core::log_level::debug,
                      "closing the connection of " + client_.host +
                          ": it reads the response slower than --min-response-rate");
        owner_.refused(*this, http::refusal::response_rate);
        return close_now(true);
    }
    update_rate_clocks();  // arms the next check while a clock still runs
}

connection::~connection() { detach_exchange(false); }

// ---------------------------------------------------------------- reading

void connection::on_readable(bool short_read_drains) {
    if (state_ == state::upgraded) return;
    read_ready_ = true;
    short_read_drains_ = short_read_drains;
    read_input();
}

bool connection::reading_paused() const noexcept {
    switch (state_) {
        case state::read_head: return false;
        case state::in_request:
            // Body: pause while the app has not taken what is buffered (backpressure). After the
            // body: keep reading (to see a disconnect) while pipelined bytes stay within a head.
            if (!body_done_) return ex_ && ex_->body.size() >= body_limit();
            return in_.size() >= cfg_.head_limits.max_head;
        case state::lingering: return false;
        default: return true;
    }
}

void connection::read_input() {
    while (read_ready_ && state_ != state::closed) {
        if (state_ == state::lingering) return linger_read();
        if (reading_paused()) {  // read_ready_ stays set: resume without a new edge
            if (state_ == state::in_request) update_body_timer();
            return;
        }
        auto [buf, room] =
            in_.reserve(cfg_.read_chunk, cfg_.head_limits.max_head + cfg_.read_chunk);
        if (room == 0) return;
        ssize_t n = t_.read(buf, room);
        if (n > 0) {
            in_.commit(static_cast<size_t>(n));
            consume_input();
            // Everything read was parsed (a GET, or body bytes handed to the exchange): the
            // block goes back to the pool now, not when the response is done, so connections
            // waiting on their app hold no input memory and the next read anywhere reuses it.
            in_.release();
            if (short_read_drains_ && static_cast<size_t>(n) < room && read_ready_ &&
                state_ != state::closed) {
                read_ready_ = false;  // the queue is empty: as if the next read said EAGAIN
                update_body_timer();
            }
        } else if (n == 0) {
            read_ready_ = false;
            peer_eof_ = true;
            if (proxy_pending_) return close_now();  // not even a PROXY header: no HTTP answer
            if (state_ == state::read_head && in_.empty()) return close_now();  // between requests
            if (state_ == state::read_head || (state_ == state::in_request && !body_done_)) {
                // The request ends in the middle (RFC 9112 §8: incomplete). The client may have
                // only half-closed and still be reading: tell it why (400) before closing.
                return reject({400, "request ended before it was complete"});
            }
            if (ex_) {
                ex_->client_closed = true;
                ex_->post(http::ev_disconnect);  // a waiting receive() learns the client left
            }
            return;
        } else if (n == -EAGAIN || n == -EWOULDBLOCK) {
            read_ready_ = false;
            update_body_timer();  // now waiting on the client: (re)start its idle deadline
        } else if (n != -EINTR) {
            return close_now();  // ECONNRESET and friends
        }
    }
}

void connection::consume_input() {
    if (state_ == state::read_head) {
        try_parse_head();
    } else if (state_ == state::in_request && !body_done_) {
        decode_body();
    }
}

void connection::try_parse_head() {
    // Loops only after a request the engine answered itself (answer_internal): the next
    // pipelined one is parsed here, not by recursion.
    for (;;) {
        if (proxy_pending_ && (in_.empty() || !consume_proxy_header())) return;
        std::string_view data = in_.readable();
        if (data.empty()) return;
        const bool opening = first_request_;  // (the preface check below clears it)
        if (first_request_ && cfg_.h2_prior_knowledge && check_h2_preface()) return;
        set_read_timer(timer_kind::header);  // from the first byte; trickling does not extend it
        // Re-parse only when it can change the answer: the first bytes (garbage is rejected at
        // once), a newly completed line, or a head past its limits (414/431). So a client trickling
        // one byte at a time costs O(lines x head size), not O(bytes x head size).
        bool first = scanned_ == 0;
        // A line end, or any control byte (a bare CR, NUL...), can change the answer: each such
        // byte either ends the head with an error or is the CR of a CRLF, so the cost stays one
        // parse per line, and garbage is rejected however TCP splits it.
        // The last byte of the previous read is included: a CR there is decided by whatever byte
        // comes next (LF or not).
        bool new_line = has_control_byte(data.substr(scanned_ ? scanned_ - 1 : 0));
        bool over = data.size() > cfg_.head_limits.max_head ||
                    (!std::memchr(data.data(), '\n', data.size()) &&
                     data.size() > cfg_.head_limits.max_request_line);
        scanned_ = data.size();
        if (!first && !new_line && !over) return;

        request_head head;
        auto storage = header_storage(cfg_.head_limits.max_headers);
        parse_result r = parse_request_head(data, head, storage, cfg_.head_limits);
        if (r.status == parse_status::incomplete) {
            if (peer_eof_) reject({400, "request ended before it was complete"});
            return;
        }
        if (r.status == parse_status::error) {
            if (opening && looks_like_tls(data))
                note_foreign_protocol(client_, server_, "a TLS handshake (an https:// client)",
                                      r.error.status);
            else if (opening && scheme_ == "http" && data.starts_with("PRI * HTTP/2.0"))
                note_foreign_protocol(client_, server_, "an HTTP/2 client (h2c prior knowledge)",
                                      r.error.status);
            return reject(r.error);
        }
        first_request_ = false;
        if (cfg_.http1_refused)
            return reject({505, "this server speaks HTTP/2 only (--http 2): use an HTTP/2 client"},
                          http::refusal::count, {}, &head);
        request_info info = analyze_request(head);
        if (info.error) return reject(info.error, http::refusal::count, {}, &head);
        if (!answer_internal(head, info, r.head_length))
            return start_request(head, info, r.head_length);
        if (state_ != state::read_head) return;
    }
}

// The internal endpoints: only GET and HEAD without a body, only "/-/..." targets (one compare
// for every other request), and only what the owner enables.
bool connection::answer_internal(const request_head& head, const request_info& info,
                                 size_t head_len) {
    const std::string_view t = head.target;
    if (t.size() < 3 || t[1] != '-' || t[0] != '/' || t[2] != '/') return false;
    const bool is_head = head.method == "HEAD";
    if ((!is_head && head.method != "GET") || info.framing != body_framing::none) return false;
    internal_reply reply;
    if (!owner_.internal_response(*this, t, reply)) return false;
    const bool keep_alive =
        info.keep_alive && !shutting_down_ && !(peer_eof_ && in_.size() == head_len);
    const http::field fields[] = {{"content-type", reply.content_type},
                                  {"cache-control", "no-store"}};
    head_options opt;
    opt.minor_version = head.minor_version;
    opt.head_request = is_head;
    opt.keep_alive = keep_alive;
    opt.server_header = cfg_.server_header;
    opt.date_header = cfg_.date_header;
    opt.defaults = &cfg_.defaults;
    opt.body_size = reply.body.size();
    std::string bytes;
    response_framing framing;
    if (encode_response_head(bytes, reply.status, fields, opt, framing)) return false;
    if (!is_head) bytes += reply.body;
    out_.append(std::move(bytes));  // (no access line: probes would flood the log; README)
    in_.consume(head_len);
    scanned_ = 0;
    if (!keep_alive || !framing.keep_alive) {
        keep_alive_ = false;
        info_ = info;
        info_.host = {};  // a view into the input buffer, consumed above
        close_when_written_ = !info.keep_alive && in_.empty() && (!read_ready_ || peer_eof_);
        start_draining();
        return true;
    }
    set_read_timer(timer_kind::keep_alive);
    owner_.schedule(*this);  // flush the answer
    return true;
}

void connection::start_request(const request_head& head, const request_info& info,
                               size_t head_len) {
    set_read_timer(timer_kind::none);
    if (cfg_.internal_only)
        return reject({404, "this listener serves only /-/ endpoints"}, http::refusal::count, {},
                      &head);
    if (cfg_.max_body && info.framing == body_framing::content_length &&
        info.content_length > cfg_.max_body)
        return reject({413, "request body larger than --limit-request-body"}, http::refusal::count,
                      {}, &head);
    ws_.reset();
    if (cfg_.websocket && info.upgrade_field && !check_websocket(head, info)) return;
    h2c_.reset();
    h2c_switching_ = false;
    if (cfg_.h2_prior_knowledge && info.upgrade_field && !ws_) h2c_ = h2c_settings(head, info);
    if (!owner_.admit_request(*this))
        return reject({503, "too many requests in flight (--limit-concurrency)"},
                      http::refusal::count, {}, &head);
    admitted_ = true;
    ex_ = std::make_shared<http::exchange>(events_, this);
    request_started_ms_ = owner_.now_ms();
    http::exchange& ex = *ex_;
    if (events_.access_log()) ex.started_us = core::now_us();
    // Copy the head out of the read buffer (a few hundred bytes) so the app side can keep views
    // into it while the buffer is reused for the body and the next request.
    const char* base = in_.readable().data();
    ex.head_storage.assign(base, head_len);
    auto rebase = [&](std::string_view v) {
        return std::string_view(ex.head_storage.data() + (v.data() - base), v.size());
    };
    ex.method = rebase(head.method);
    ex.target = rebase(head.target);
    ex.http_version = head.minor_version == 1 ? "1.1" : "1.0";
    ex.headers.reserve(head.headers.size());
    for (const auto& f : head.headers)
        ex.headers.push_back({rebase(f.name), rebase(f.value)});
    ex.client = client_;
    ex.server = server_;
    ex.scheme = scheme_;
    ex.tls = tls_;
    if (ws_) {
        ex.websocket = true;
        for (std::string_view p : ws_->result.subprotocols)
            ex.ws_subprotocols.push_back(rebase(p));
        ws_->result.subprotocols = {};  // views into a buffer the next request reuses
    }
    if (forwarded_peer_ && info.forwarded)
        http::apply_forwarded(ex, client_, server_, *cfg_.forwarded_trust);
    in_.consume(head_len);
    scanned_ = 0;

    info_ = info;
    info_.host = {};  // a view into the input buffer, which is reused from here on
    minor_version_ = head.minor_version;
    head_request_ = head.method == "HEAD";
    // A WebSocket handshake answered in HTTP (a denial) closes: the client may already be
    // sending frames, which must never be read as requests.
    keep_alive_ = info.keep_alive && !shutting_down_ && !ws_;
    body_left_ = info.framing == body_framing::content_length ? info.content_length : 0;
    if (info.framing == body_framing::chunked) {
        chunked_.emplace();
    } else {
        chunked_.reset();
    }
    body_done_ = info.framing == body_framing::none ||
                 (info.framing == body_framing::content_length && body_left_ == 0);
    ex.has_body = !body_done_;
    ex.body_complete = body_done_;
    ex.expect_continue = info.expect_continue && !body_done_ && minor_version_ >= 1;
    continue_owed_ = ex.expect_continue;
    app_wants_body_ = response_started_ = response_done_ = send_waiting_ = aborted_ = false;
    body_sent_ = 0;
    body_received_ = 0;
    body_clock_ = {};
    response_clock_ = {};
    response_taken_ = 0;
    state_ = state::in_request;
    // An h2c upgrade reaches the app over HTTP/2, once its body is in: see decode_body().
    if (!h2c_) ex.post(http::ev_request);
    if (!body_done_) decode_body();
    if (h2c_) switch_h2c();
    update_body_timer();
}

// RFC 7540 §3.2 (deprecated by RFC 9113 but what curl --http2 sends on plain HTTP): Upgrade lists
// h2c, Connection lists Upgrade and HTTP2-Settings, and exactly one HTTP2-Settings carries the
// client's SETTINGS payload in base64url. The whole body must be read before the switch, so the
// upgrade is honoured only for a body the buffer may hold (content-length up to h2c_max_body, no
// chunked coding); otherwise, as RFC 9110 §7.8 allows, it is ignored and the request is served
// over HTTP/1.1.
std::optional<std::string> connection::h2c_settings(const request_head& head,
                                                    const request_info& info) {
    if (info.framing == body_framing::chunked ||
        (info.framing == body_framing::content_length && info.content_length > cfg_.h2c_max_body))
        return std::nullopt;
    bool h2c = false, conn_upgrade = false, conn_settings = false;
    int settings_fields = 0;
    std::string_view settings;
    for (const auto& f : head.headers) {
        if (iequals(f.name, "upgrade")) {
            h2c = h2c || ws::list_has_token(f.value, "h2c");
        } else if (iequals(f.name, "connection")) {
            conn_upgrade = conn_upgrade || ws::list_has_token(f.value, "upgrade");
            conn_settings = conn_settings || ws::list_has_token(f.value, "http2-settings");
        } else if (iequals(f.name, "http2-settings")) {
            ++settings_fields;
            settings = f.value;
        }
    }
    if (!h2c || !conn_upgrade || !conn_settings || settings_fields != 1) return std::nullopt;
    // base64url without padding (RFC 4648 §5), SETTINGS entries of 6 bytes each.
    std::string out;
    uint32_t acc = 0;
    int bits = 0;
    for (char ch : settings) {
        int v;
        if (ch >= 'A' && ch <= 'Z')
            v = ch - 'A';
        else if (ch >= 'a' && ch <= 'z')
            v = ch - 'a' + 26;
        else if (ch >= '0' && ch <= '9')
            v = ch - '0' + 52;
        else if (ch == '-')
            v = 62;
        else if (ch == '_')
            v = 63;
        else if (ch == '=')
            break;
        else
            return std::nullopt;
        acc = (acc << 6) | static_cast<uint32_t>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    if (out.size() % 6 != 0 || out.size() > 6 * 32) return std::nullopt;
    return out;
}

// The 101 is written: HTTP/2 takes the connection, the request and what followed it over.
void connection::hand_over_h2c() {
    set_read_timer(timer_kind::none);
    if (write_timer_) owner_.disarm_timer(*this, timer_kind::write);
    write_timer_ = false;
    if (rate_timer_) owner_.disarm_timer(*this, timer_kind::rate);
    rate_timer_ = false;
    const std::shared_ptr<http::exchange> ex = std::move(ex_);
    if (admitted_) {
        admitted_ = false;
        owner_.request_finished(*this);  // the stream is admitted again over there
    }
    std::string settings = std::move(*h2c_);
    h2c_.reset();
    std::string leftover(in_.readable());
    in_.discard();
    out_.release();
    state_ = state::upgraded;
    if (!owner_.upgrade_h2c(*this, ex, std::move(settings), std::move(leftover))) {
        ex->detach();
        state_ = state::in_request;  // so that close_now() closes
        return close_now();
    }
}

// A request whose Upgrade lists "websocket" is a handshake: checked here, before the app or the
// concurrency limit sees it. True: go on (an ordinary request, or a valid handshake: ws_ set);
// false: answered (400, or 426 naming the version we speak) and closing.
bool connection::check_websocket(const request_head& head, const request_info& info) {
    const std::span<const http::field> fields = handshake_fields(head.headers);
    if (!ws::is_websocket_upgrade(fields)) return true;
    // Bytes after the head are the client's first frames; a body would make them ambiguous.
    if (info.framing != body_framing::none) {
        reject({400, "a WebSocket handshake cannot have a body"}, http::refusal::count, {}, &head);
        return false;
    }
    auto hs = std::make_unique<ws_handshake>();
    const ws::upgrade_request req{head.method, head.minor_version == 1 ? "1.1" : "1.0", fields};
    hs->result =
        ws::check_upgrade(req, *cfg_.websocket, subprotocol_storage(cfg_.ws_max_subprotocols));
    if (const core::error& err = hs->result.error) {
        static constexpr http::field version[] = {
            {"sec-websocket-version", ws::k_websocket_version}};
        reject(err, http::refusal::count,
               err.status == 426 ? std::span<const http::field>(version)
                                 : std::span<const http::field>(),
               &head);
        return false;
    }
    ws_ = std::move(hs);
    return true;
}

void connection::decode_body() {
    bool progressed = false;
    const size_t limit = body_limit();
    while (!body_done_ && !in_.empty() && ex_->body.size() < limit) {
        std::string_view data = in_.readable();
        size_t before = ex_->body.size();
        if (chunked_) {
            auto r = chunked_->decode(data);
            if (r.status == chunked_decoder::status::data) ex_->body.append(r.data);
            in_.consume(r.consumed);
            if (r.status == chunked_decoder::status::error) return reject(r.error);
            if (r.status == chunked_decoder::status::done) body_done_ = true;
            progressed = progressed || r.consumed > 0;
            if (r.status == chunked_decoder::status::need_more) break;
        } else {
            size_t n = std::min<uint64_t>(body_left_, data.size());
            n = std::min(n, limit - ex_->body.size());
            ex_->body.append(data.substr(0, n));
            in_.consume(n);
            body_left_ -= n;
            body_done_ = body_left_ == 0;
            progressed = true;
        }
        // Chunked bodies announce no length, so the limit is checked as each run of bytes is
        // decoded - not once per read, or the answer (413 or a later framing 400) would depend
        // on how TCP split the bytes. (A content-length body was checked before the app ran.)
        body_received_ += ex_->body.size() - before;
        if (cfg_.max_body && body_received_ > cfg_.max_body)
            return reject({413, "request body larger than --limit-request-body"});
    }
    if (!progressed) return;
    ex_->body_complete = body_done_;
    if (!h2c_) return ex_->post(http::ev_body);
    switch_h2c();
}

// An h2c upgrade whose body is all in: the 101 goes out, then process() hands over.
void connection::switch_h2c() {
    if (!body_done_ || h2c_switching_) return;
    h2c_switching_ = true;
    out_.append(std::string_view(
        "HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\r\n"));
    owner_.schedule(*this);
}

void connection::linger_read() {
    char sink[4096];
    while (read_ready_) {
        ssize_t n = t_.read(sink, sizeof sink);
        if (n > 0) {
            lingered_ += static_cast<size_t>(n);
            if (lingered_ > cfg_.linger_max_bytes) return close_now();
        } else if (n == -EAGAIN || n == -EWOULDBLOCK) {
            read_ready_ = false;
        } else if (n != -EINTR) {
            return close_now();  // EOF: the client has read our response and closed
        }
    }
}

// ---------------------------------------------------------------- request/response lifecycle

void connection::finish_request() {
    // The response is complete. A body the app did not read to the end leaves the stream
    // position unknown to us only if we stop reading it; we do not drain it, we close.
    bool closing = closes_after_response();
    if (!body_done_) keep_alive_ = false;
    detach_exchange(true);  // receive() now answers http.disconnect (ASGI: response sent)
    if (closing) {
        // Lingering protects a response from the reset that closing with unread input causes.
        // When the client itself said it sends nothing more (Connection: close, or HTTP/1.0
        // without keep-alive), all of its request was read and the last read emptied the
        // socket, there is nothing to protect against: close as soon as the response is out,
        // and save the shutdown, the wait for the client's FIN and the read that sees it.
        close_when_written_ =
            !info_.keep_alive && body_done_ && in_.empty() && (!read_ready_ || peer_eof_);
        return start_draining();
    }
    state_ = state::read_head;
    set_read_timer(timer_kind::keep_alive);
    if (!in_.empty()) return try_parse_head();  // a pipelined request is already here
    if (peer_eof_) return close_now();
    in_.release();   // idle keep-alive connections hold no buffer memory
    out_.release();  // (only if everything was written; otherwise flush needs it)
}

void connection::reject(const core::error& err, http::refusal why,
                        std::span<const http::field> extra, const request_head* head) {
    owner_.refused(*this, why == http::refusal::count ? http::refusal_for_status(err.status) : why);
    if (core::log_enabled(core::log_level::debug)) {
        std::string msg = "rejected request from " + client_.host + ": " +
                          std::to_string(err.status) + " " + std::string(err.reason);
        core::log(core::log_level::debug, msg);
    }
    if (state_ == state::in_request && response_started_) return close_now();
    // The error response is the request's answer: in the access log, as the exchange's when the
    // app already has the request (a body too large or too slow), else as an engine answer.
    const uint64_t body_bytes = reason_phrase(err.status).size() + 1;  // encode_error_response
    if (ex_ && state_ == state::in_request) {
        ex_->status = err.status;
        ex_->bytes_sent = body_bytes;
        ex_->response_complete = true;
    } else {
        log_answer(head, err.status, body_bytes);
    }
    detach_exchange(true);
    out_.append(encode_error_response(err.status, cfg_.server_header, cfg_.date_header, extra,
                                      &cfg_.defaults));
    start_draining();
}

void connection::log_answer(const request_head* head, int status, uint64_t body_bytes) {
    if (!events_.access_log()) return;
    if (!head) return events_.log_answer(client_, {}, {}, {}, status, body_bytes);
    std::string_view user_agent, request_id;
    for (const header_field& f : head->headers) {
        if (iequals(f.name, "user-agent")) user_agent = f.value;
        if (iequals(f.name, "x-request-id")) request_id = f.value;
    }
    events_.log_answer(client_, head->method, head->target,
                       head->minor_version == 1 ? "1.1" : "1.0", status, body_bytes, user_agent,
                       request_id);
}

void connection::start_draining() {
    state_ = state::draining;
    set_read_timer(timer_kind::none);
    flush();
}

void connection::detach_exchange(bool notify) {
    if (admitted_) {
        admitted_ = false;
        owner_.request_finished(*this);
    }
    if (!ex_) return;
    owner_.request_done(*this, *ex_, request_started_ms_);
    ex_->detach();
    if (notify) ex_->post(http::ev_disconnect);
    ex_.reset();
}

void connection::close_now(bool reset) {
    // Upgraded: the transport belongs to the WebSocket now.
    if (state_ == state::closed || state_ == state::upgraded) return;
    state_ = state::closed;
    set_read_timer(timer_kind::none);
    if (write_timer_) owner_.disarm_timer(*this, timer_kind::write);
    write_timer_ = false;
    if (rate_timer_) owner_.disarm_timer(*this, timer_kind::rate);
    rate_timer_ = false;
    if (ex_ && !out_.empty()) {
        // For the access log: what never left was not sent (the unwritten output may include
        // the head and chunk framing, so this counts body bytes low rather than high).
        ex_->cut_short = true;
        ex_->bytes_sent -= std::min<uint64_t>(ex_->bytes_sent, out_.size());
    }
    detach_exchange(true);
    out_.clear();
    if (reset) {
        t_.abort();
    } else {
        t_.close();
    }
    owner_.on_closed(*this);
}

void connection::on_hangup() { close_now(); }

void connection::release_memory() noexcept {
    if (state_ != state::closed) return;
    in_.discard();
    out_.clear();
    out_.release();
}

void connection::on_timer(timer_kind kind) {
    if (state_ == state::upgraded) return;
    if (kind == timer_kind::write) {
        write_timer_ = false;
        owner_.refused(*this, http::refusal::write_timeout);
        return close_now(true);  // the client stopped reading; a waiting send() raises
    }
    if (kind == timer_kind::rate) {
        rate_timer_ = false;
        return check_rates();
    }
    read_timer_ = timer_kind::none;
    switch (kind) {
        case timer_kind::keep_alive: return close_now();
        case timer_kind::shutdown_idle:
            if (state_ == state::read_head && in_.empty()) return close_now();
            return;
        case timer_kind::header:
            if (state_ == state::read_head)
                return reject({408, "request head not complete within --timeout-request-header"});
            return;
        case timer_kind::body:
            if (state_ == state::in_request && !body_done_)
                return reject({408, "no request body bytes within --timeout-request-body"},
                              http::refusal::body_timeout);
            return;
        default: return close_now();  // linger
    }
}

void connection::begin_shutdown() {
    if (shutting_down_ || state_ == state::closed) return;
    shutting_down_ = true;
    if (state_ != state::read_head) {
        keep_alive_ = false;  // responses not yet started say "connection: close"
        return;
    }
    if (!in_.empty()) return;  // a head is arriving: its header deadline still bounds it
    // Idle as far as we have read: see the header. Closing here is what lost a request per
    // SIGHUP for clients that open a connection per request (issue 9).
    set_read_timer(timer_kind::shutdown_idle);
    read_ready_ = true;
    owner_.schedule(*this);
}

// ---------------------------------------------------------------- writing

void connection::on_writable() {
    if (state_ == state::upgraded) return;
    write_blocked_ = false;
    process();
}

void connection::flush() {
    bool progressed = false;
    // File parts are bounded per call: a reader that keeps up would otherwise take a whole
    // large file in one go while every other connection waits (wsgi-file, 64 connections: p99
    // 3.1 s against a p50 of 115 ms). The rest goes out in the next round of scheduled work.
    size_t file_budget = 256 << 10;
    while (!out_.empty() && !write_blocked_ && state_ != state::closed) {
        iovec iov[64];
        int cnt = out_.iov(iov, 64);
        size_t offered = 0;
        for (int i = 0; i < cnt; ++i)
            offered += iov[i].iov_len;
        if (cnt == 0) {
            // A file part (wsgi.file_wrapper): zero copy, a bounded slice per call.
            if (file_budget == 0) {
                owner_.schedule(*this);
                break;
            }
            const core::output_queue::file_part f = out_.front_file();
            offered = std::min<size_t>(f.len, file_budget);
            ssize_t n = t_.send_file(f.fd, f.offset, offered);
            if (n > 0) {
                // A short count is no sign of a full socket here (a transport may send a file
                // a block at a time): only EAGAIN is.
                file_budget -= std::min(file_budget, static_cast<size_t>(n));
                out_.consume(static_cast<size_t>(n));
                if (response_clock_.running) response_taken_ += static_cast<size_t>(n);
                progressed = true;
            } else if (n == 0 || n == -EAGAIN || n == -EWOULDBLOCK) {
                write_blocked_ = true;  // (0: a transport that took nothing and said no more)
            } else if (n != -EINTR) {
                return close_now();  // the client is gone, or the file ended early
            }
            continue;
        }
        // The FIN follows at once when this write empties the output of a connection that
        // closes after its response: start_draining() shuts down or closes right after a
        // complete write, and process() goes from here to finish_request() to start_draining().
        bool fin_next = offered == out_.size() &&
                        (state_ == state::draining || (state_ == state::in_request &&
                                                       response_done_ && closes_after_response()));
        ssize_t n = t_.writev(iov, cnt, fin_next);
        if (n >= 0) {
            out_.consume(static_cast<size_t>(n));
            // Bytes count toward the response rate only once it is measured (we were blocked
            // before this write): the burst the socket buffer swallowed at first says nothing
            // about how fast the client reads.
            if (response_clock_.running) response_taken_ += static_cast<size_t>(n);
            progressed = progressed || n > 0;
            // A short write means the socket buffer is full: wait for the EPOLLOUT edge rather
            // than spend a syscall on the EAGAIN we would get now.
            if (static_cast<size_t>(n) < offered) write_blocked_ = true;
        } else if (n == -EAGAIN || n == -EWOULDBLOCK) {
            write_blocked_ = true;
        } else if (n != -EINTR) {
            return close_now();  // EPIPE, ECONNRESET: the client is gone
        }
    }
    if (state_ == state::closed) return;
    // The write timeout measures how long the client has read nothing while we have output:
    // armed when a write blocks, restarted by progress, cleared when everything is out.
    if (out_.empty()) {
        if (write_timer_) owner_.disarm_timer(*this, timer_kind::write);
        write_timer_ = false;
    } else if (write_blocked_ && (progressed || !write_timer_)) {
        owner_.arm_timer(*this, timer_kind::write);
        write_timer_ = true;
    }
    update_rate_clocks();
    if (send_waiting_ && out_.size() <= cfg_.write_low_water && ex_) {
        send_waiting_ = false;
        ex_->post(http::ev_drain);
    }
    if (state_ == state::draining && out_.empty()) {
        if (close_when_written_) return close_now();  // see finish_request()
        t_.shutdown_write();
        state_ = state::lingering;
        read_ready_ = true;
        set_read_timer(timer_kind::linger);
        linger_read();
    }
}

void connection::process() {
    if (state_ == state::upgraded) return;
    flush();
    // An app that failed after its head: what it had sent goes out first, then we close.
    if (aborted_) return close_now();
    if (ws_ && ws_->accepted && state_ == state::in_request) {
        if (out_.empty()) hand_over();  // else on_writable comes back here
        return;
    }
    if (h2c_switching_ && state_ == state::in_request) {
        if (out_.empty()) hand_over_h2c();  // else on_writable comes back here
        return;
    }
    if (state_ == state::in_request && response_done_ && out_.size() < cfg_.write_high_water)
        finish_request();
    // Body bytes read before the app paused us are still in the buffer: decode them first. The
    // socket may have nothing more to say, so waiting for it would stall the upload for good.
    if (state_ == state::in_request && !body_done_ && !in_.empty() && !reading_paused())
        decode_body();
    if (read_ready_ && !reading_paused()) read_input();
}

// ---------------------------------------------------------------- response_sink (GIL held)

send_result connection::send(http::exchange& ex, const head* h, std::string_view body, bool more) {
    if (&ex != ex_.get() || state_ != state::in_request) return {send_status::closed, {}};
    if (ws_ && ws_->accepted) return {send_status::error, "the WebSocket was accepted"};
    if (response_done_) return {send_status::error, "response already complete"};
    send_result r = response_started_ ? queue_body(body, more)
                    : h               ? queue_head(*h, body, more)
                        : send_result{send_status::error, "body before response head"};
    if (r.status != send_status::error) owner_.schedule(*this);
    return r;
}

send_result connection::send_file(http::exchange& ex, const head* h, int fd, uint64_t offset,
                                  uint64_t len, bool more) {
    send_result r{send_status::error, {}};
    if (&ex != ex_.get() || state_ != state::in_request) {
        r = {send_status::closed, {}};
    } else if (ws_ && ws_->accepted) {
        r.reason = "the WebSocket was accepted";
    } else if (response_done_) {
        r.reason = "response already complete";
    } else if (!response_started_ && !h) {
        r.reason = "body before response head";
    } else if (!response_started_) {
        r = queue_head(*h, {}, more, len);  // checked against the part, nothing queued on error
    } else {
        r = {send_status::proceed, {}};
    }
    if (r.status != send_status::proceed && r.status != send_status::wait) {
        ::close(fd);
        return r;
    }
    r = queue_file(fd, offset, len, more);
    if (r.status != send_status::error) owner_.schedule(*this);
    return r;
}

send_result connection::queue_file(int fd, uint64_t offset, uint64_t len, bool more) {
    if (framing_.no_body) {
        ::close(fd);  // HEAD (or 204/304): the head says the length, no byte follows
        if (!head_request_ && len > 0)
            return {send_status::error, "a 1xx, 204 or 304 response cannot have a body"};
    } else {
        if (framing_.content_length) {
            const uint64_t total = body_sent_ + len;
            if (total > *framing_.content_length || (!more && total < *framing_.content_length)) {
                ::close(fd);
                return {send_status::error, "response body does not match its content-length"};
            }
        }
        if (framing_.chunked && len > 0) {
            std::string size_line;
            char digits[20];
            auto [end, ec] = std::to_chars(digits, digits + sizeof digits, len, 16);
            (void)ec;
            size_line.append(digits, end).append("\r\n");
            out_.append(std::move(size_line));
            out_.append_file(fd, offset, static_cast<size_t>(len));
            out_.append(std::string_view("\r\n"));
        } else {
            out_.append_file(fd, offset, static_cast<size_t>(len));
        }
        body_sent_ += len;
        ex_->bytes_sent += len;
    }
    return queue_body({}, more);  // ends the response when it is the last part
}

send_result connection::queue_head(const head& h, std::string_view body, bool more,
                                   std::optional<uint64_t> file_len) {
    // The first part of the body: `body`, or a file part the caller queues next.
    const uint64_t first = file_len ? *file_len : body.size();
    // Answering without the body the client was told to wait for (no 100 sent): the client may
    // or may not send it now, so the connection cannot be reused (RFC 9110 §10.1.1).
    if (continue_owed_) keep_alive_ = false;
    head_options opt;
    opt.minor_version = minor_version_;
    opt.head_request = head_request_;
    opt.keep_alive = keep_alive_ && !shutting_down_;
    opt.server_header = cfg_.server_header;
    opt.date_header = cfg_.date_header;
    opt.defaults = &cfg_.defaults;
    opt.reason = h.reason;
    if (!more) opt.body_size = first;
    std::string bytes;
    if (body.size() < core::output_queue::coalesce_limit) {
        // Room for the head and the body that queue_body() appends to it: one allocation and
        // one iovec per response. 184 covers the status line, the fields we add and the
        // framing of a first chunk; the operator's fields (--header) come on top.
        size_t need =
            184 + body.size() + cfg_.defaults.lines.size() + cfg_.defaults.server_line.size();
        for (const auto& f : h.headers)
            need += f.name.size() + f.value.size() + 4;
        bytes.reserve(need);
    }
    core::error err = encode_response_head(bytes, h.status, h.headers, opt, framing_);
    // A refused head closes the connection after whatever the app answers instead, so that a
    // 101 to an Upgrade we do not implement (or a 2xx to CONNECT, had it got this far) can
    // never leave a front end tunnelling while we read the bytes behind it as requests.
    if (err) keep_alive_ = false;
    if (err) return {send_status::error, err.reason};
    if (framing_.no_body && !head_request_ && first > 0)
        return {send_status::error, "a 1xx, 204 or 304 response cannot have a body"};
    if (framing_.content_length && !framing_.no_body &&
        (first > *framing_.content_length || (!more && first < *framing_.content_length)))
        return {send_status::error, "response body does not match its content-length"};
    response_started_ = true;
    continue_owed_ = false;
    keep_alive_ = framing_.keep_alive;
    ex_->status = h.status;
    out_.append(std::move(bytes));
    if (file_len) return {send_status::proceed, {}};  // the caller queues the file part
    return queue_body(body, more);
}

send_result connection::queue_body(std::string_view body, bool more) {
    if (framing_.no_body) {
        if (!head_request_ && !body.empty())
            return {send_status::error, "a 1xx, 204 or 304 response cannot have a body"};
    } else {
        if (framing_.content_length) {
            uint64_t total = body_sent_ + body.size();
            if (total > *framing_.content_length)
                return {send_status::error, "response body longer than its content-length"};
            if (!more && total < *framing_.content_length)
                return {send_status::error, "response body shorter than its content-length"};
        }
        if (framing_.chunked) {
            std::string chunk = out_.take_buffer(body.size() + 24);
            encode_chunk(chunk, body);
            out_.append(std::move(chunk));
        } else {
            out_.append(body);
        }
        body_sent_ += body.size();
        ex_->bytes_sent += body.size();
    }
    if (!more) {
        if (framing_.chunked) out_.append(last_chunk);
        response_done_ = true;
        ex_->response_complete = true;
    }
    if (out_.size() >= cfg_.write_high_water) {
        send_waiting_ = true;
        return {send_status::wait, {}};
    }
    return {send_status::proceed, {}};
}

void connection::abort(http::exchange& ex) {
    if (&ex != ex_.get()) return;
    // Closing is socket I/O: leave it to the next I/O phase.
    aborted_ = true;
    owner_.schedule(*this);
}

void connection::want_body(http::exchange& ex) {
    if (&ex != ex_.get()) return;
    app_wants_body_ = true;
    if (continue_owed_ && !response_started_) {
        out_.append(continue_response);
        continue_owed_ = false;
    }
    owner_.schedule(*this);
}

// ---------------------------------------------------------------- WebSocket upgrade

send_result connection::ws_accept(http::exchange& ex, std::string_view subprotocol,
                                  std::span<const http::field> headers) {
    if (&ex != ex_.get() || state_ != state::in_request) return {send_status::closed, {}};
    if (!ws_) return {send_status::error, "the request is not a WebSocket handshake"};
    if (response_started_) return {send_status::error, "a response was already started"};
    // RFC 6455 §4.2.2 item 5.4: the subprotocol must be one the client offered (clients fail
    // the connection otherwise).
    if (!subprotocol.empty() && std::find(ex.ws_subprotocols.begin(), ex.ws_subprotocols.end(),
                                          subprotocol) == ex.ws_subprotocols.end())
        return {send_status::error,
                "websocket.accept names a subprotocol the client did not offer (RFC 6455 "
                "§4.2.2); pick one of scope['subprotocols'] or none"};
    const ws::deflate_negotiation& d = ws_->result.deflate;
    std::string bytes;
    core::error err =
        encode_websocket_accept(bytes, ws_->result.accept(), subprotocol,
                                d.accepted ? d.response.view() : std::string_view(), headers,
                                cfg_.server_header, cfg_.date_header, &cfg_.defaults);
    if (err) return {send_status::error, err.reason};
    response_started_ = true;
    ws_->accepted = true;
    ex.status = 101;
    out_.append(std::move(bytes));
    owner_.schedule(*this);
    return {send_status::wait, {}};  // ev_drain once the WebSocket has taken over
}

void connection::ws_close(http::exchange& ex, uint16_t code, std::string_view reason) {
    if (&ex != ex_.get() || !ws_ || !ws_->accepted) return;
    ws_->close_pending = true;
    ws_->close_code = code;
    ws_->close_reason.assign(reason);
}

// The 101 is written: the transport, the exchange and what the client sent after its request
// go to the owner's WebSocket. This connection keeps no timer, buffer or exchange.
bool connection::check_h2_preface() {
    const std::string_view data = in_.readable();
    const std::string_view preface = http::h2_client_preface;
    const size_t n = std::min(data.size(), preface.size());
    if (data.substr(0, n) != preface.substr(0, n)) {
        first_request_ = false;  // HTTP/1.x after all
        return false;
    }
    if (n < preface.size()) {
        if (peer_eof_) return false;  // the parser answers the fragment
        set_read_timer(timer_kind::header);
        return true;  // wait for the rest
    }
    set_read_timer(timer_kind::none);
    std::string bytes(data);
    in_.discard();
    out_.release();
    state_ = state::upgraded;
    if (!owner_.upgrade_h2(*this, std::move(bytes))) {
        state_ = state::read_head;
        close_now();
    }
    return true;
}

void connection::hand_over() {
    set_read_timer(timer_kind::none);
    if (write_timer_) owner_.disarm_timer(*this, timer_kind::write);
    write_timer_ = false;
    if (rate_timer_) owner_.disarm_timer(*this, timer_kind::rate);
    rate_timer_ = false;
    const std::unique_ptr<ws_handshake> hs = std::move(ws_);
    const std::shared_ptr<http::exchange> ex = std::move(ex_);
    if (admitted_) {
        admitted_ = false;
        owner_.request_finished(*this);
    }
    owner_.request_done(*this, *ex, request_started_ms_);
    // Nothing reads the request head again (the app's scope was built from it before it could
    // accept): an idle WebSocket keeps none of it. With the access log on, its record reads the
    // head after this phase, and the bridge frees it then.
    if (!events_.access_log()) {
        ex->method = ex->target = {};
        std::vector<http::field>().swap(ex->headers);
        std::vector<std::string_view>().swap(ex->ws_subprotocols);
        std::string().swap(ex->head_storage);
    }
    std::string leftover(in_.readable());
    in_.discard();
    out_.release();
    std::optional<ws::deflate_params> deflate;
    if (hs->result.deflate.accepted) deflate = hs->result.deflate.params;
    state_ = state::upgraded;
    if (!owner_.upgrade(*this, ex, std::move(leftover), deflate)) {
        ex->detach();
        ex->post(http::ev_disconnect);
        state_ = state::in_request;  // so that close_now() closes
        return close_now();
    }
    if (hs->close_pending) ex->ws_close(hs->close_code, hs->close_reason);
}

}  // namespace coachwhip::http1
