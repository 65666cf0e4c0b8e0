#include "http2/connection.hpp"

#include <nghttp2/nghttp2.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>
#include <vector>

#include "core/clock.hpp"
#include "core/log.hpp"
#include "http/forwarded.hpp"

namespace coachwhip::http2 {

using http::send_result;
using http::send_status;

namespace {

constexpr uint32_t k_max_window = (1u << 31) - 1;
constexpr uint64_t k_frame_payload = 16384 - 9;  // a DATA frame and its header: 16 KiB

bool is_tchar_lower(unsigned char c) noexcept {
    // RFC 9110 token characters, uppercase excluded (HTTP/2 field names are lowercase).
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
    switch (c) {
        case '!':
        case '#':
        case '$':
        case '%':
        case '&':
        case '\'':
        case '*':
        case '+':
        case '-':
        case '.':
        case '^':
        case '_':
        case '`':
        case '|':
        case '~': return true;
        default: return false;
    }
}

// A field value may hold no NUL, CR, LF or other control byte but HTAB (RFC 9110 §5.5).
bool valid_value(std::string_view v) noexcept {
    for (unsigned char c : v)
        if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
    return true;
}

// Fields that only make sense for one HTTP/1.1 connection (RFC 9113 §8.2.2): never sent.
bool connection_specific(std::string_view lower) noexcept {
    return lower == "connection" || lower == "keep-alive" || lower == "proxy-connection" ||
           lower == "transfer-encoding" || lower == "upgrade";
}

bool status_has_no_body(int status) noexcept {
    return status < 200 || status == 204 || status == 304;
}

nghttp2_nv make_nv(std::string_view name, std::string_view value) {
    return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
            reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
            NGHTTP2_NV_FLAG_NONE};
}

// Fields the app gave, lowercased and checked, in `storage` (reserved up front: views stay put).
struct field_list {
    std::string storage;
    std::vector<std::pair<size_t, size_t>> spans;  // name, value offsets (lengths follow)
    std::vector<nghttp2_nv> nv;
};

// Appends `f` to `fl` as HTTP/2 wants a field: the name lowercased (it must be a token), the
// value without the leading and trailing whitespace RFC 9113 §8.2.1 forbids (and no CR, LF,
// NUL or other control byte). A connection-specific field (§8.2.2) is dropped: `dropped`.
enum class field_error { none, name, value };
field_error append_field(field_list& fl, const http::field& f, bool& dropped) {
    dropped = false;
    if (f.name.empty()) return field_error::name;
    if (!valid_value(f.value)) return field_error::value;
    const size_t off = fl.storage.size();
    for (unsigned char c : f.name) {
        const unsigned char lc = (c >= 'A' && c <= 'Z') ? static_cast<unsigned char>(c + 32) : c;
        if (!is_tchar_lower(lc)) {
            fl.storage.resize(off);
            return field_error::name;
        }
        fl.storage.push_back(static_cast<char>(lc));
    }
    if (connection_specific(std::string_view(fl.storage).substr(off))) {
        fl.storage.resize(off);
        dropped = true;
        return field_error::none;
    }
    std::string_view v = f.value;
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
        v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t'))
        v.remove_suffix(1);
    fl.spans.emplace_back(off, f.name.size());
    fl.storage.append(v);
    return field_error::none;
}

// The name and value of field `i` of `fl` (valid until the storage grows).
std::pair<std::string_view, std::string_view> field_at(const field_list& fl, size_t i) {
    const auto [off, len] = fl.spans[i];
    const size_t end = i + 1 < fl.spans.size() ? fl.spans[i + 1].first : fl.storage.size();
    const std::string_view all(fl.storage);
    return {all.substr(off, len), all.substr(off + len, end - off - len)};
}

}  // namespace

// One request stream: the request head as it is decoded, then its exchange and the response.
struct connection::stream {
    struct span {
        uint32_t off = 0, len = 0;
    };
    explicit stream(int32_t i) : id(i) {}

    int32_t id;
    std::shared_ptr<http::exchange>
        ex;  // null while the head is decoded or when the engine answered
    // ---- the request head while it is decoded ----
    std::string storage;
    std::vector<std::pair<span, span>> fields;
    span method, path, authority, protocol;
    std::string cookie;  // every cookie field, joined with "; " (RFC 9113 §8.2.3)
    size_t header_bytes = 0;
    bool too_large = false;
    bool has_host = false;
    bool head_request = false;  // :method HEAD
    bool request_done = false;  // END_STREAM from the client
    // ---- the response ----
    std::string out;  // body bytes not yet framed (from out_off)
    size_t out_off = 0;
    int file_fd = -1;  // a file part after `out` (owned)
    uint64_t file_off = 0, file_left = 0;
    std::optional<uint64_t> declared;  // the response's content-length
    uint64_t body_queued = 0;
    field_list trailers;
    bool started = false;         // HEADERS submitted
    bool body_done = false;       // the app sent its last body bytes
    bool want_trailers = false;   // the head said trailers
    bool trailers_ready = false;  // send_trailers(more = false) came
    bool no_body = false;         // HEAD, 204, 304: no DATA at all
    bool deferred = false;        // the data source said DEFERRED: resume on new bytes
    bool send_waiting = false;    // send() answered wait: post ev_drain at low water
    bool complete = false;        // our END_STREAM is submitted (or the stream was reset)
    bool reset = false;           // RST_STREAM from the client
    bool admitted = false;
    uint64_t started_ms = 0;
    size_t unconsumed = 0;  // request body in ex->body whose stream window is still closed
    // RFC 8441: the WebSocket this stream carries once the app accepted it, and what was agreed.
    std::unique_ptr<tunnel> ws;
    bool websocket = false;        // it carries (or carried) a WebSocket
    bool end_sent = false;         // our END_STREAM went out
    bool reset_after_end = false;  // the WebSocket is done: RST_STREAM(NO_ERROR) after it
    std::optional<ws::deflate_params> deflate;
    std::string extensions;  // the sec-websocket-extensions answer

    ~stream() {
        if (file_fd >= 0) ::close(file_fd);
    }
    std::string_view view(span s) const { return {storage.data() + s.off, s.len}; }
    uint64_t pending() const noexcept { return out.size() - out_off + file_left; }
};

// ---- WebSocket tunnels (RFC 8441) ----
//
// A WebSocket accepted on an extended CONNECT stream runs the same ws::connection as over
// HTTP/1.1, with the stream as its transport: read() takes the stream's DATA (and reopens its
// window by what it took), writev() appends to the stream's response bytes up to the WebSocket's
// high-water mark (-EAGAIN above it; `writable` comes back when the stream has sent them down to
// its low water), shutdown_write() and close() end the stream (END_STREAM after what is queued),
// abort() resets it (CANCEL). It is also the ws::connection's owner: schedule() puts the tunnel
// on the connection's due list, which run_tunnels() works through in the I/O phase; its timers
// are deadlines (the read slot: ping, pong or close; the write slot), checked on the
// connection's tick about once a second, which is fine for timeouts of seconds.
struct connection::tunnel final : core::transport, ws::connection_owner {
    tunnel(connection& c, int32_t id) : h2(c), stream_id(id) {}

    connection& h2;
    int32_t stream_id;
    std::string in;  // DATA received, not read yet (bounded by the stream window)
    size_t in_off = 0;
    std::shared_ptr<http::exchange> accepted;  // until start(): ev_drain completes the accept
    bool eof = false;                          // END_STREAM from the client
    bool gone = false;                         // the stream is closed
    bool started = false;
    bool closed = false;         // the ws::connection closed (on_closed)
    bool due = false;            // on the connection's due list
    bool blocked = false;        // writev() refused bytes: on_writable() once there is room
    bool writable = false;       // ... and there is now
    bool input = false;          // DATA (or END_STREAM) arrived since the last read
    uint64_t read_deadline = 0;  // 0: none (see arm_timer)
    timer_kind read_kind = timer_kind::none;
    uint64_t write_deadline = 0;
    std::unique_ptr<ws::connection> conn;  // declared last: destroyed first

    stream* s() const noexcept {
        if (gone) return nullptr;
        auto it = h2.streams_.find(stream_id);
        return it == h2.streams_.end() ? nullptr : it->second.get();
    }

    // ---- core::transport ----
    ssize_t read(char* buf, size_t len) override {
        const size_t avail = in.size() - in_off;
        if (!avail) return eof || gone ? 0 : -EAGAIN;
        const size_t n = std::min(len, avail);
        std::memcpy(buf, in.data() + in_off, n);
        in_off += n;
        if (in_off == in.size()) in.clear(), in_off = 0;
        if (!gone) {  // the connection's share was repaid as it arrived (tunnel_input)
            nghttp2_session_consume_stream(h2.session_, stream_id, n);
            h2.owner_.schedule(h2);  // the WINDOW_UPDATE
        }
        h2.body_buffered_ -= std::min(h2.body_buffered_, n);
        h2.repay_connection_window();
        return static_cast<ssize_t>(n);
    }
    ssize_t writev(const iovec* iov, int iovcnt, bool) override {
        stream* st = s();
        if (!st || st->body_done) return -EPIPE;
        const size_t high = h2.cfg_.ws->write_high_water;
        const uint64_t pending = st->pending();
        if (pending >= high) {
            blocked = true;
            return -EAGAIN;
        }
        size_t room = high - static_cast<size_t>(pending), n = 0, offered = 0;
        for (int i = 0; i < iovcnt; ++i) {
            offered += iov[i].iov_len;
            const size_t k = std::min(room, iov[i].iov_len);
            st->out.append(static_cast<const char*>(iov[i].iov_base), k);
            n += k;
            room -= k;
        }
        blocked = n < offered;
        h2.resume_data(*st);
        return static_cast<ssize_t>(n);
    }
    void shutdown_write() override {
        end_stream();
        // Both close frames were exchanged (draining): nothing the client still sends matters,
        // and over a stream no unread byte can turn our close into a reset that loses what we
        // sent (TCP's reason to linger). Read as ended, so the WebSocket closes now and close()
        // ends the client's side too. After a close we started for an error (failing), it still
        // reads the client's close frame, bounded by the close timer.
        if (conn && conn->current_state() == ws::connection::state::draining) eof = true;
    }
    void close() override {
        end_stream();
        // The WebSocket is done (both closes exchanged, or its close timer ran out): a client
        // that has not ended its side of the stream is told to stop (RST_STREAM NO_ERROR, after
        // our END_STREAM), else the stream would stay half open.
        if (stream* st = s(); st && !st->request_done) {
            if (st->end_sent) {
                nghttp2_submit_rst_stream(h2.session_, NGHTTP2_FLAG_NONE, stream_id,
                                          NGHTTP2_NO_ERROR);
                h2.owner_.schedule(h2);
            } else {
                st->reset_after_end = true;  // after our last bytes: see callbacks::frame_send
            }
        }
        eof = true;
    }
    void abort() override {
        if (s())
            nghttp2_submit_rst_stream(h2.session_, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
        eof = true;
        h2.owner_.schedule(h2);
    }
    void end_stream() {
        stream* st = s();
        if (!st || st->body_done) return;
        st->body_done = true;
        h2.resume_data(*st);
    }

    // ---- ws::connection_owner ----
    void schedule(ws::connection&) override { h2.tunnel_due(*this); }
    void arm_timer(ws::connection&, timer_kind kind) override {
        const ws::connection_config& c = *h2.cfg_.ws;
        const uint64_t now = h2.owner_.now_ms();
        switch (kind) {
            case timer_kind::write: write_deadline = now + h2.cfg_.ws_write_timeout_ms; break;
            case timer_kind::ping: read_deadline = now + c.ping_interval_ms; break;
            case timer_kind::pong: read_deadline = now + c.ping_timeout_ms; break;
            case timer_kind::close: read_deadline = now + c.close_timeout_ms; break;
            case timer_kind::none: return;
        }
        if (kind != timer_kind::write) read_kind = kind;
        h2.sync_tick();
    }
    void disarm_timer(ws::connection&, timer_kind kind) override {
        (kind == timer_kind::write ? write_deadline : read_deadline) = 0;
    }
    uint64_t now_ms() const noexcept override { return h2.owner_.now_ms(); }
    void on_closed(ws::connection&) override { closed = true; }
    void refused(ws::connection&, http::refusal why) override { h2.owner_.refused(h2, why); }
};

// The nghttp2 callbacks: static functions that find the connection in user_data.
struct connection::callbacks {
    static connection& self(void* user_data) { return *static_cast<connection*>(user_data); }
    static stream* find(nghttp2_session* session, int32_t id) {
        return static_cast<stream*>(nghttp2_session_get_stream_user_data(session, id));
    }

    static ssize_t send(nghttp2_session*, const uint8_t* data, size_t length, int,
                        void* user_data) {
        connection& c = self(user_data);
        if (c.out_.size() >= c.cfg_.write_high_water) return NGHTTP2_ERR_WOULDBLOCK;
        c.out_.append(std::string_view(reinterpret_cast<const char*>(data), length));
        return static_cast<ssize_t>(length);
    }

    // DATA with NGHTTP2_DATA_FLAG_NO_COPY: the frame header, then the stream's own bytes, copied
    // once into the output queue (and a file part read straight into it).
    static int send_data(nghttp2_session* session, nghttp2_frame* frame, const uint8_t* framehd,
                         size_t length, nghttp2_data_source*, void* user_data) {
        connection& c = self(user_data);
        if (c.out_.size() >= c.cfg_.write_high_water) return NGHTTP2_ERR_WOULDBLOCK;
        stream* s = find(session, frame->hd.stream_id);
        if (!s) return NGHTTP2_ERR_CALLBACK_FAILURE;
        // The frame header and payload as one segment: one copy of the payload, and a TLS
        // transport gets whole records (read_data caps payloads at one record less the header).
        std::string buf = c.out_.take_buffer(9 + length);
        buf.append(reinterpret_cast<const char*>(framehd), 9);
        size_t left = length;
        const size_t from_out = std::min(left, s->out.size() - s->out_off);
        if (from_out) {
            buf.append(s->out, s->out_off, from_out);
            s->out_off += from_out;
            left -= from_out;
            if (s->out_off == s->out.size()) s->out.clear(), s->out_off = 0;
        }
        if (left) {
            const size_t at = buf.size();
            buf.resize(at + left);
            size_t got = 0;
            while (got < left) {
                const ssize_t r = ::pread(s->file_fd, buf.data() + at + got, left - got,
                                          static_cast<off_t>(s->file_off + got));
                if (r <= 0) return NGHTTP2_ERR_CALLBACK_FAILURE;  // the file shrank: close
                got += static_cast<size_t>(r);
            }
            s->file_off += left;
            s->file_left -= left;
            if (s->file_left == 0) ::close(s->file_fd), s->file_fd = -1;
        }
        c.out_.append(std::move(buf));
        if (s->ex) s->ex->bytes_sent += length;
        c.post_drain_if_low(*s);
        return 0;
    }

    static ssize_t read_data(nghttp2_session* session, int32_t id, uint8_t*, size_t length,
                             uint32_t* flags, nghttp2_data_source*, void* user_data) {
        connection& c = self(user_data);
        stream* s = find(session, id);
        if (!s) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        const uint64_t avail = s->pending();
        if (avail == 0 && !s->body_done) {
            s->deferred = true;
            return NGHTTP2_ERR_DEFERRED;
        }
        // At most a TLS record's worth with the frame header (16 KiB), so that a TLS transport
        // encrypts each frame as one record without gathering it across segments.
        const size_t n = static_cast<size_t>(std::min<uint64_t>({length, avail, k_frame_payload}));
        if (n) *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
        if (n == avail && s->body_done) {
            if (s->want_trailers && !s->trailers_ready) {
                if (n) return static_cast<ssize_t>(n);  // the trailers come later
                s->deferred = true;
                return NGHTTP2_ERR_DEFERRED;
            }
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            if (s->want_trailers) {
                *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
                auto& t = s->trailers;
                if (nghttp2_submit_trailer(c.session_, id, t.nv.data(), t.nv.size()) != 0)
                    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
            }
            s->complete = true;
        }
        return static_cast<ssize_t>(n);
    }

    // RFC 9113 §5.1.1: a new stream's id must be higher than every id the client used; a
    // HEADERS on a lower id the client never opened is a connection error (nghttp2 ignores it,
    // not knowing which closed streams it forgot: it may be trailers on one we reset).
    static int begin_frame(nghttp2_session* session, const nghttp2_frame_hd* hd, void* user_data) {
        connection& c = self(user_data);
        if (hd->type != NGHTTP2_HEADERS || hd->stream_id <= 0 || !(hd->stream_id & 1)) return 0;
        const auto id = static_cast<uint32_t>(hd->stream_id);
        if (id > c.highest_stream_) return c.note_stream(id), 0;
        if (nghttp2_session_find_stream(session, hd->stream_id) || c.was_opened(id)) return 0;
        nghttp2_session_terminate_session(session, NGHTTP2_PROTOCOL_ERROR);
        return 0;
    }

    static int begin_headers(nghttp2_session* session, const nghttp2_frame* frame,
                             void* user_data) {
        connection& c = self(user_data);
        if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
            return 0;
        auto s = std::make_unique<stream>(frame->hd.stream_id);
        nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s.get());
        c.streams_.emplace(frame->hd.stream_id, std::move(s));
        c.sync_idle_timer();
        return 0;
    }

    static int header(nghttp2_session* session, const nghttp2_frame* frame, const uint8_t* name,
                      size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
                      void* user_data) {
        connection& c = self(user_data);
        stream* s = find(session, frame->hd.stream_id);
        if (!s) return 0;
        // The decoded size counts as SETTINGS_MAX_HEADER_LIST_SIZE does (RFC 9113 §6.5.2): an
        // HPACK bomb stops being stored at the limit (decoding goes on: the table must stay in
        // step with the client's), and the request gets a 431.
        s->header_bytes += namelen + valuelen + 32;
        if (s->header_bytes > c.cfg_.max_header_list) s->too_large = true;
        if (s->too_large || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
            return 0;  // trailers: read, dropped
        const std::string_view n(reinterpret_cast<const char*>(name), namelen);
        const std::string_view v(reinterpret_cast<const char*>(value), valuelen);
        auto keep = [&](std::string_view bytes) {
            const stream::span sp{static_cast<uint32_t>(s->storage.size()),
                                  static_cast<uint32_t>(bytes.size())};
            s->storage.append(bytes);
            return sp;
        };
        if (!n.empty() && n[0] == ':') {
            if (n == ":method")
                s->method = keep(v);
            else if (n == ":path")
                s->path = keep(v);
            else if (n == ":authority")
                s->authority = keep(v);
            else if (n == ":protocol")
                s->protocol = keep(v);
            return 0;  // :scheme is the connection's
        }
        if (n == "cookie") {
            if (!s->cookie.empty()) s->cookie += "; ";
            s->cookie.append(v);
            return 0;
        }
        if (n == "host") s->has_host = true;
        const stream::span ns = keep(n);
        s->fields.emplace_back(ns, keep(v));
        return 0;
    }

    static int frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
        connection& c = self(user_data);
        switch (frame->hd.type) {
            case NGHTTP2_SETTINGS:
                if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) && !c.preface_seen_) {
                    c.preface_seen_ = true;
                    c.sync_idle_timer();
                }
                return 0;
            case NGHTTP2_HEADERS: {
                stream* s = find(session, frame->hd.stream_id);
                if (!s) return 0;
                const bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
                if (frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
                    s->request_done = end;
                    c.start_stream(*s);
                } else if (end) {
                    c.request_ended(*s);  // trailers
                }
                return 0;
            }
            case NGHTTP2_DATA:
                if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
                    if (stream* s = find(session, frame->hd.stream_id)) c.request_ended(*s);
                }
                return 0;
            case NGHTTP2_RST_STREAM:
                if (stream* s = find(session, frame->hd.stream_id)) c.on_client_reset(*s);
                return 0;
            default: return 0;
        }
    }

    static int data_chunk(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data,
                          size_t len, void* user_data) {
        connection& c = self(user_data);
        stream* s = find(session, id);
        if (s && s->ws) return c.tunnel_input(*s, {reinterpret_cast<const char*>(data), len}), 0;
        if (!s || !s->ex || !s->ex->connected() || s->ex->response_complete) {
            // Nobody reads it: the windows reopen at once.
            nghttp2_session_consume(session, id, len);
            return 0;
        }
        s->ex->body.append(reinterpret_cast<const char*>(data), len);
        s->unconsumed += len;
        c.body_buffered_ += len;
        if (c.body_buffered_ <= c.cfg_.body_budget) {
            nghttp2_session_consume_connection(session, len);
        } else {
            c.conn_owed_ += len;
        }
        s->ex->post(http::ev_body);
        return 0;
    }

    static int frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
        // Our response is complete while the client still sends its body: tell it to stop
        // (RFC 9113 §8.1: RST_STREAM NO_ERROR after a complete response).
        if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
            (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            // (A WebSocket's stream only once the WebSocket is done, tunnel::close(): it may
            // still read the client's close frame after ours.)
            stream* s = find(session, frame->hd.stream_id);
            if (s) s->end_sent = true;
            if (s && !s->request_done && (!s->websocket || s->reset_after_end))
                nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                          NGHTTP2_NO_ERROR);
        }
        (void)user_data;
        return 0;
    }

    static int stream_close(nghttp2_session*, int32_t id, uint32_t code, void* user_data) {
        self(user_data).stream_closed(id, code);
        return 0;
    }
};

connection::connection(core::transport& t, connection_owner& owner, const connection_config& cfg,
                       http::event_queue& events, http::endpoint client, http::endpoint server,
                       std::shared_ptr<const tls::info> tls, std::string leftover)
    : t_(t),
      owner_(owner),
      cfg_(cfg),
      events_(events),
      client_(std::move(client)),
      server_(std::move(server)),
      tls_(std::move(tls)),
      leftover_(std::move(leftover)),
      in_(cfg.read_blocks) {
    if (cfg_.forwarded_trust)
        forwarded_peer_ = http::trusts_peer(client_, server_, *cfg_.forwarded_trust);
    reset_tokens_ = cfg_.reset_burst;
}

connection::~connection() {
    for (auto& [id, s] : streams_)
        if (s->ex) s->ex->detach();
    if (session_) nghttp2_session_del(session_);
}

void connection::start() {
    // The callbacks and options are the same for every connection: made once per thread.
    struct setup {
        nghttp2_session_callbacks* cbs = nullptr;
        nghttp2_option* opt = nullptr;
        setup() {
            nghttp2_session_callbacks_new(&cbs);
            nghttp2_session_callbacks_set_send_callback(cbs, callbacks::send);
            nghttp2_session_callbacks_set_send_data_callback(cbs, callbacks::send_data);
            nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, callbacks::begin_headers);
            nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, callbacks::begin_frame);
            nghttp2_session_callbacks_set_on_header_callback(cbs, callbacks::header);
            nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, callbacks::frame_recv);
            nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, callbacks::data_chunk);
            nghttp2_session_callbacks_set_on_frame_send_callback(cbs, callbacks::frame_send);
            nghttp2_session_callbacks_set_on_stream_close_callback(cbs, callbacks::stream_close);
            nghttp2_option_new(&opt);
            // Windows reopen as apps take the body (see "Backpressure" in the header).
            nghttp2_option_set_no_auto_window_update(opt, 1);
            // Bounded work for hostile clients: SETTINGS entries, queued ACKs (SETTINGS and
            // PING floods: GOAWAY ENHANCE_YOUR_CALM), CONTINUATION frames per header block,
            // closed streams kept for their late frames.
            nghttp2_option_set_max_settings(opt, 32);
            nghttp2_option_set_max_outbound_ack(opt, 1000);
            nghttp2_option_set_max_continuations(opt, 8);
            nghttp2_option_set_max_reserved_remote_streams(opt, 0);
            nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
        }
        ~setup() {
            nghttp2_session_callbacks_del(cbs);
            nghttp2_option_del(opt);
        }
    };
    static thread_local setup s;
    if (nghttp2_session_server_new2(&session_, s.cbs, this, s.opt) != 0) return close_now();
    const nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cfg_.max_concurrent_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, std::min(cfg_.initial_stream_window, k_max_window)},
        {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, cfg_.max_frame_size},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, cfg_.max_header_list},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1},  // RFC 8441 (dropped below without ws)
    };
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings,
                            std::size(settings) - (cfg_.ws ? 0 : 1));
    const uint32_t conn_window = std::min(cfg_.initial_connection_window, k_max_window);
    if (conn_window > 65535)
        nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                              static_cast<int32_t>(conn_window));
    if (adopted_ && !start_upgraded()) return close_now();
    set_read_timer(timer_kind::preface);
    if (!leftover_.empty()) {
        const std::string bytes = std::exchange(leftover_, {});
        if (!feed(bytes)) return;
    }
    read_input();
}

void connection::set_read_timer(timer_kind kind) {
    if (read_timer_ == kind) return;
    read_timer_ = kind;
    if (kind == timer_kind::none) return owner_.disarm_timer(*this, timer_kind::idle);
    owner_.arm_timer(*this, kind);
}

// The idle timer runs while no stream is open on an open connection (the preface timer, until
// the client's SETTINGS came; the goaway timer, during a graceful stop, are not replaced).
void connection::sync_idle_timer() {
    if (state_ != state::open || !preface_seen_) return;
    set_read_timer(streams_.empty() ? timer_kind::idle : timer_kind::none);
}

void connection::on_readable(bool short_read_drains) {
    short_read_drains_ = short_read_drains;
    read_ready_ = true;
    read_input();
}

void connection::read_input() {
    while (read_ready_ && state_ != state::closed) {
        // A client that does not read what we owe it (a PING or SETTINGS flood's ACKs, the
        // responses) is not read from either: our output stays bounded.
        if (write_blocked_ && out_.size() >= cfg_.write_high_water) break;
        auto [buf, room] = in_.reserve(cfg_.read_chunk, cfg_.read_chunk);
        if (room == 0) break;
        const ssize_t n = t_.read(buf, room);
        if (n > 0) {
            in_.commit(static_cast<size_t>(n));
            const std::string_view data = in_.readable();
            const bool ok = feed(data);
            if (state_ == state::closed) return;
            in_.consume(data.size());
            in_.release();
            if (!ok) break;
            if (short_read_drains_ && static_cast<size_t>(n) < room) read_ready_ = false;
        } else if (n == 0) {
            read_ready_ = false;
            return close_now();  // EOF: the client is gone (HTTP/2 has no half-close of its own)
        } else if (n == -EAGAIN || n == -EWOULDBLOCK) {
            read_ready_ = false;
        } else if (n != -EINTR) {
            return close_now(true);
        }
    }
    in_.release();
    if (state_ != state::closed) flush();
    if (state_ != state::closed && !tunnels_due_.empty()) run_tunnels();
}

bool connection::feed(std::string_view bytes) {
    const ssize_t rv = nghttp2_session_mem_recv(
        session_, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    if (rv >= 0) return true;
    // nghttp2 queued a GOAWAY where the error allows one (a flood, a protocol error); the bad
    // client magic (not HTTP/2 at all) gets none. Send what is queued, then close.
    if (core::log_enabled(core::log_level::debug))
        core::log(core::log_level::debug, "HTTP/2 connection from " + client_.host +
                                              " closed: " + nghttp2_strerror(static_cast<int>(rv)));
    if (rv == NGHTTP2_ERR_FLOODED) owner_.refused(*this, http::refusal::h2_abuse);
    state_ = state::closing;
    flush();
    if (state_ != state::closed) close_now(rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC);
    return false;
}

void connection::flush() {
    bool progressed = false;
    while (state_ != state::closed) {
        if (out_.size() < cfg_.write_high_water && nghttp2_session_send(session_) != 0)
            return close_now(true);
        if (out_.empty() || write_blocked_) break;  // nothing to write, or the socket is full
        iovec iov[64];
        const int cnt = out_.iov(iov, 64);
        size_t offered = 0;
        for (int i = 0; i < cnt; ++i)
            offered += iov[i].iov_len;
        const ssize_t n = t_.writev(iov, cnt, false);
        if (n >= 0) {
            out_.consume(static_cast<size_t>(n));
            progressed = progressed || n > 0;
            if (static_cast<size_t>(n) < offered) write_blocked_ = true;
        } else if (n == -EAGAIN || n == -EWOULDBLOCK) {
            write_blocked_ = true;
        } else if (n != -EINTR) {
            return close_now(true);
        }
        if (out_.empty() && !nghttp2_session_want_write(session_)) break;
    }
    if (state_ == state::closed) return;
    // The write timeout measures how long the client has taken nothing we have for it: bytes
    // the socket will not take, or response bytes its flow-control windows hold back (a client
    // that never opens its window, RFC 9113 §6.9: the zero-window stall).
    const bool waiting = write_blocked_ ? !out_.empty() : window_stalled();
    if (!waiting) {
        if (write_timer_) owner_.disarm_timer(*this, timer_kind::write);
        write_timer_ = false;
    } else if (progressed || !write_timer_) {
        owner_.arm_timer(*this, timer_kind::write);
        write_timer_ = true;
    }
    // An idle connection keeps no output buffers (their spares go back to the heap).
    if (out_.empty() && streams_.empty()) out_.release();
    // Done: GOAWAY sent (or received) and no stream left, everything written.
    if (out_.empty() && !nghttp2_session_want_read(session_) &&
        !nghttp2_session_want_write(session_))
        close_now();
}

// Response bytes wait while nothing goes out: the client's windows are closed to them.
bool connection::window_stalled() const noexcept {
    if (!out_.empty()) return false;
    for (const auto& [id, s] : streams_)
        if (s->pending() > 0 && !s->reset) return true;
    return false;
}

void connection::process() {
    if (state_ == state::closed || !session_) return;
    flush();
    if (state_ != state::closed) read_input();
    if (state_ != state::closed) run_tunnels();
}

void connection::on_writable() {
    write_blocked_ = false;
    process();
}

void connection::on_hangup() { close_now(true); }

void connection::on_timer(timer_kind kind) {
    if (state_ == state::closed) return;
    switch (kind) {
        case timer_kind::write:
            write_timer_ = false;
            owner_.refused(*this, http::refusal::write_timeout);
            return close_now(true);
        case timer_kind::preface:
            read_timer_ = timer_kind::none;
            owner_.refused(*this, http::refusal::header_timeout);
            return close_now();
        case timer_kind::idle:
            read_timer_ = timer_kind::none;
            state_ = state::closing;
            nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
            return flush();
        case timer_kind::goaway:
            read_timer_ = timer_kind::none;
            if (!goaway_final_) {
                goaway_final_ = true;
                nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                                      nghttp2_session_get_last_proc_stream_id(session_),
                                      NGHTTP2_NO_ERROR, nullptr, 0);
            }
            return flush();
        case timer_kind::tick: tick_armed_ = false; return on_tick();
        case timer_kind::none: return;
    }
}

// The tunnels' deadlines that have passed fire (each WebSocket's on_timer); the tick stays armed
// while any is left.
void connection::on_tick() {
    const uint64_t now = owner_.now_ms();
    for (auto& [id, st] : streams_) {
        if (!st->ws || st->ws->closed || !st->ws->started) continue;
        tunnel& t = *st->ws;
        if (t.write_deadline && t.write_deadline <= now) {
            t.write_deadline = 0;
            t.conn->on_timer(ws::connection::timer_kind::write);
        }
        if (t.read_deadline && t.read_deadline <= now && !t.closed) {
            t.read_deadline = 0;
            t.conn->on_timer(t.read_kind);
        }
        if (t.closed) tunnel_due(t);  // run_tunnels() buries it
    }
    if (state_ == state::closed) return;
    flush();
    if (state_ != state::closed) run_tunnels();
    sync_tick();
}

void connection::sync_tick() {
    if (tick_armed_ || state_ == state::closed) return;
    for (const auto& [id, st] : streams_) {
        if (st->ws && (st->ws->read_deadline || st->ws->write_deadline)) {
            tick_armed_ = true;
            return owner_.arm_timer(*this, timer_kind::tick);
        }
    }
}

// Graceful stop, RFC 9113 §6.8: a GOAWAY with the highest stream id now (streams the client is
// opening meanwhile still count), the real last stream id about a round trip later (the goaway
// timer); streams under it finish, and the connection closes once they have.
void connection::begin_shutdown() {
    if (state_ != state::open || !session_) return;
    state_ = state::closing;
    nghttp2_submit_shutdown_notice(session_);
    for (auto& [id, st] : streams_)  // open WebSockets close with 1001 (the streams then end)
        if (st->ws && st->ws->started && !st->ws->closed) st->ws->conn->begin_shutdown();
    read_timer_ = timer_kind::none;
    set_read_timer(timer_kind::goaway);
    flush();
}

void connection::close_now(bool reset) {
    if (state_ == state::closed) return;
    state_ = state::closed;
    for (auto& [id, s] : streams_) {
        if (s->ws) bury(*s);
        if (s->ex) finish_stream(*s, true);
    }
    streams_.clear();
    if (read_timer_ != timer_kind::none) owner_.disarm_timer(*this, timer_kind::idle);
    if (write_timer_) owner_.disarm_timer(*this, timer_kind::write);
    if (tick_armed_) owner_.disarm_timer(*this, timer_kind::tick);
    read_timer_ = timer_kind::none;
    write_timer_ = tick_armed_ = false;
    out_.clear();
    reset ? t_.abort() : t_.close();
    owner_.on_closed(*this);
}

void connection::release_memory() noexcept {
    if (state_ != state::closed) return;
    in_.discard();
    out_.release();
}

connection::stream* connection::find(const http::exchange& ex) const noexcept {
    if (state_ == state::closed || !session_) return nullptr;
    auto* s = static_cast<stream*>(
        nghttp2_session_get_stream_user_data(session_, static_cast<int32_t>(ex.stream_id)));
    return s && s->ex.get() == &ex ? s : nullptr;
}

// ---- requests ----

void connection::start_stream(stream& s) {
    if (s.too_large) {
        s.head_request = s.view(s.method) == "HEAD";
        owner_.refused(*this, http::refusal::header_too_large);
        return answer(s, 431, "text/plain; charset=utf-8", "Request Header Fields Too Large\n");
    }
    const std::string_view method = s.view(s.method), path = s.view(s.path);
    s.head_request = method == "HEAD";
    if (method == "CONNECT") {
        if (cfg_.ws && s.view(s.protocol) == "websocket") return start_websocket(s);
        owner_.refused(*this, http::refusal::not_implemented);  // no tunnels
        return answer(s, 501, "text/plain; charset=utf-8", "Not Implemented\n");
    }
    const bool get_or_head = method == "GET" || method == "HEAD";
    if (get_or_head && s.request_done && path.size() >= 3 && path.compare(0, 3, "/-/") == 0) {
        http::internal_reply reply;
        if (owner_.internal_response(*this, path, reply)) {
            return answer(s, reply.status, reply.content_type,
                          method == "HEAD" ? std::string() : std::move(reply.body), {}, false);
        }
    }
    if (cfg_.internal_only) return answer(s, 404, "text/plain; charset=utf-8", "Not Found\n");
    if (admit(s)) make_exchange(s)->post(http::ev_request);
}

bool connection::admit(stream& s) {
    if (!owner_.admit_request(*this)) {
        owner_.refused(*this, http::refusal::concurrency);
        answer(s, 503, "text/plain; charset=utf-8", "Service Unavailable\n");
        return false;
    }
    s.admitted = true;
    s.started_ms = owner_.now_ms();
    return true;
}

// The exchange of a complete request head (s.ex; the caller posts ev_request).
http::exchange* connection::make_exchange(stream& s) {
    auto ex = std::make_shared<http::exchange>(events_, this);
    // The head's bytes move into the exchange; the cookie and the host from :authority join
    // them first, so that nothing reallocates once the views are made.
    const stream::span cookie{static_cast<uint32_t>(s.storage.size()),
                              static_cast<uint32_t>(s.cookie.size())};
    s.storage.append(s.cookie);
    ex->head_storage = std::move(s.storage);
    const auto view = [&](stream::span sp) {
        return std::string_view(ex->head_storage.data() + sp.off, sp.len);
    };
    ex->method = view(s.method);
    ex->target = view(s.path);
    ex->http_version = "2";
    ex->scheme = cfg_.scheme;
    ex->headers.reserve(s.fields.size() + 2);
    if (!s.has_host && s.authority.len) ex->headers.push_back({"host", view(s.authority)});
    for (const auto& [n, v] : s.fields)
        ex->headers.push_back({view(n), view(v)});
    if (cookie.len) ex->headers.push_back({"cookie", view(cookie)});
    ex->client = client_;
    ex->server = server_;
    ex->tls = tls_;
    ex->stream_id = static_cast<uint32_t>(s.id);
    ex->has_body = !s.request_done;
    ex->body_complete = s.request_done;
    ex->client_closed = s.request_done;
    if (forwarded_peer_) http::apply_forwarded(*ex, client_, server_, *cfg_.forwarded_trust);
    s.fields = {};
    s.cookie = std::string();
    s.storage = std::string();
    s.ex = std::move(ex);
    return s.ex.get();
}

// ---- WebSocket over HTTP/2 (RFC 8441) ----

// An extended CONNECT with :protocol websocket: checked as RFC 8441 §5 says (version 13; the
// subprotocols and permessage-deflate offer as over HTTP/1.1), then handed to the app as a
// websocket exchange; ws_accept() answers it.
void connection::start_websocket(stream& s) {
    std::vector<http::field> fields;
    fields.reserve(s.fields.size());
    std::string_view version;
    int versions = 0;
    for (const auto& [n, v] : s.fields) {
        fields.push_back({s.view(n), s.view(v)});
        if (s.view(n) == "sec-websocket-version") version = s.view(v), ++versions;
    }
    if (versions != 1 || version != ws::k_websocket_version) {
        static constexpr http::field want[] = {{"sec-websocket-version", ws::k_websocket_version}};
        return answer(s, 426, "text/plain; charset=utf-8", "Upgrade Required\n", want);
    }
    const ws::deflate_negotiation deflate = ws::negotiate_deflate(fields, *cfg_.ws_deflate);
    if (deflate.error) return answer(s, 400, "text/plain; charset=utf-8", "Bad Request\n");
    static thread_local std::vector<std::string_view> storage;
    storage.resize(cfg_.ws_max_subprotocols);
    size_t count = 0;
    if (ws::parse_subprotocols(fields, storage, count))
        return answer(s, 400, "text/plain; charset=utf-8", "Bad Request\n");
    if (deflate.accepted) {
        s.deflate = deflate.params;
        s.extensions = std::string(deflate.response.view());
    }
    // The subprotocols are views into the stream's storage, which moves into the exchange.
    std::vector<stream::span> offered(count);
    for (size_t i = 0; i < count; ++i)
        offered[i] = {static_cast<uint32_t>(storage[i].data() - s.storage.data()),
                      static_cast<uint32_t>(storage[i].size())};
    if (!admit(s)) return;
    http::exchange& ex = *make_exchange(s);
    ex.websocket = true;
    ex.has_body = ex.body_complete = false;  // the stream's DATA is the WebSocket's
    for (const stream::span sp : offered)
        ex.ws_subprotocols.emplace_back(ex.head_storage.data() + sp.off, sp.len);
    ex.post(http::ev_request);
}

send_result connection::ws_accept(http::exchange& ex, std::string_view subprotocol,
                                  std::span<const http::field> headers) {
    stream* s = find(ex);
    if (!s || s->reset) return {send_status::closed, {}};
    if (!ex.websocket) return {send_status::error, "the request is not a WebSocket handshake"};
    if (s->started) return {send_status::error, "a response was already started"};
    if (!subprotocol.empty() && std::find(ex.ws_subprotocols.begin(), ex.ws_subprotocols.end(),
                                          subprotocol) == ex.ws_subprotocols.end())
        return {send_status::error,
                "websocket.accept names a subprotocol the client did not offer (RFC 6455 "
                "§4.2.2); pick one of scope['subprotocols'] or none"};
    std::vector<http::field> fields;
    fields.reserve(headers.size() + 2);
    for (const http::field& f : headers) {
        std::string lower(f.name);
        for (char& c : lower)
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
        if (lower == "content-length" || lower.starts_with("sec-websocket-"))
            return {send_status::error,
                    "websocket.accept headers cannot set content-length or sec-websocket-* (the "
                    "server sets them; name a subprotocol with the 'subprotocol' key)"};
        fields.push_back(f);
    }
    if (!subprotocol.empty()) fields.push_back({"sec-websocket-protocol", subprotocol});
    if (!s->extensions.empty()) fields.push_back({"sec-websocket-extensions", s->extensions});
    const head h{200, fields};
    if (send_result r = submit_head(*s, h, false, 0); r.status != send_status::proceed) return r;
    // As over HTTP/1.1 (its hand-over): an open WebSocket is no longer a request in flight.
    if (s->admitted) {
        owner_.request_done(*this, ex, s->started_ms);
        owner_.request_finished(*this);
        s->admitted = false;
    }
    auto t = std::make_unique<tunnel>(*this, s->id);
    t->conn = std::make_unique<ws::connection>(*t, *t, *cfg_.ws, s->ex, std::string(), s->deflate);
    t->accepted = std::move(s->ex);
    ex.rebind(t->conn.get());
    s->ws = std::move(t);
    s->websocket = true;
    tunnel_due(*s->ws);  // started in the I/O phase (run_tunnels), which completes the accept
    return {send_status::wait, {}};
}

// DATA for a tunnel: kept until its WebSocket reads it (which reopens the stream's window).
// The connection's window reopens at once under the body budget, as for request bodies: a
// WebSocket whose app does not receive holds one stream window, not the connection's.
void connection::tunnel_input(stream& s, std::string_view bytes) {
    s.ws->in.append(bytes);
    body_buffered_ += bytes.size();
    if (body_buffered_ <= cfg_.body_budget) {
        nghttp2_session_consume_connection(session_, bytes.size());
    } else {
        conn_owed_ += bytes.size();
    }
    s.ws->input = true;
    tunnel_due(*s.ws);
}

void connection::tunnel_due(tunnel& t) {
    if (t.due) return;
    t.due = true;
    tunnels_due_.push_back(t.stream_id);
    owner_.schedule(*this);
}

// The tunnels' work for this I/O phase: start them (ev_drain completes the app's accept), hand
// them input, room to write, their own scheduled work; then send what they wrote.
void connection::run_tunnels() {
    dead_tunnels_.clear();  // closed in an earlier round: none of their methods is running
    for (int round = 0; round < 4 && !tunnels_due_.empty() && state_ != state::closed; ++round) {
        for (const int32_t id : std::exchange(tunnels_due_, {})) {
            auto it = streams_.find(id);
            if (it == streams_.end() || !it->second->ws) continue;
            stream& s = *it->second;
            tunnel& t = *s.ws;
            t.due = false;
            if (t.closed) {
                dead_tunnels_.push_back(std::move(s.ws));
                continue;
            }
            if (!t.started) {
                t.started = true;
                t.accepted->post(http::ev_drain);
                t.accepted.reset();
                t.conn->start();
            } else if (t.writable) {
                t.writable = false;
                t.conn->on_writable();  // and its scheduled work (process)
            } else {
                // Its scheduled work: the app's failure (1011), frames left by a full queue
                // once the app took messages, output to flush.
                t.conn->process();
            }
            if (t.input && !t.closed) {
                t.input = false;
                t.conn->on_readable(false);
            }
            if (t.closed) dead_tunnels_.push_back(std::move(s.ws));
        }
        flush();
    }
}

// The h2c upgrade's request becomes stream 1, half-closed from the client's side (its body is
// complete). Connection-specific fields of the HTTP/1.1 request are not the app's business here.
bool connection::start_upgraded() {
    std::shared_ptr<http::exchange> ex = std::move(adopted_);
    const std::string settings = std::exchange(upgrade_settings_, {});
    if (nghttp2_session_upgrade2(session_, reinterpret_cast<const uint8_t*>(settings.data()),
                                 settings.size(), ex->method == "HEAD", nullptr) != 0) {
        ex->detach();
        return false;
    }
    auto owned = std::make_unique<stream>(1);
    stream& s = *owned;
    s.head_request = ex->method == "HEAD";
    nghttp2_session_set_stream_user_data(session_, 1, owned.get());
    streams_.emplace(1, std::move(owned));
    s.request_done = true;
    note_stream(1);
    std::erase_if(ex->headers, [](const http::field& f) {
        const auto is = [&](std::string_view name) {
            if (f.name.size() != name.size()) return false;
            for (size_t i = 0; i < name.size(); ++i)
                if ((f.name[i] | 0x20) != name[i]) return false;
            return true;
        };
        return is("connection") || is("upgrade") || is("http2-settings") || is("keep-alive");
    });
    ex->rebind(this);
    ex->stream_id = 1;
    ex->http_version = "2";
    if (!owner_.admit_request(*this)) {
        ex->detach();
        owner_.refused(*this, http::refusal::concurrency);
        answer(s, 503, "text/plain; charset=utf-8", "Service Unavailable\n");
        return true;
    }
    s.admitted = true;
    s.started_ms = owner_.now_ms();
    s.ex = std::move(ex);
    s.ex->post(http::ev_request);
    return true;
}

// Stream ids the client opened, as ranges of consecutive odd ids (one range for a client that
// counts up by two, as clients do). Bounded: past k_max_ranges a client that skips ids is not
// tracked further (its lower ids are then ignored, as nghttp2 does).
void connection::note_stream(uint32_t id) {
    highest_stream_ = id;
    if (!opened_.empty() && opened_.back().second + 2 == id) {
        opened_.back().second = id;
    } else if (opened_.size() < k_max_ranges) {
        opened_.emplace_back(id, id);
    } else {
        untracked_ = true;
    }
}

bool connection::was_opened(uint32_t id) const noexcept {
    if (untracked_) return true;
    for (const auto& [lo, hi] : opened_)
        if (id >= lo && id <= hi) return true;
    return false;
}

void connection::request_ended(stream& s) {
    s.request_done = true;
    if (s.ws) {
        s.ws->eof = s.ws->input = true;
        return tunnel_due(*s.ws);
    }
    if (!s.ex) return;
    s.ex->body_complete = true;
    s.ex->client_closed = true;
    s.ex->post(http::ev_body);
}

// An answer from the engine itself: no exchange, no app.
void connection::answer(stream& s, int status, std::string_view content_type, std::string body,
                        std::span<const http::field> extra, bool log) {
    s.out = std::move(body);
    s.out_off = 0;
    s.body_done = true;
    const std::string st = std::to_string(status);
    const std::string len = std::to_string(s.out.size());
    std::vector<nghttp2_nv> nv = {make_nv(":status", st)};
    for (const auto& [name, value] : cfg_.defaults.fields)  // the operator's first, as in send_head
        nv.push_back(make_nv(name, value));
    nv.push_back(make_nv("content-type", content_type));
    nv.push_back(make_nv("content-length", len));
    nv.push_back(make_nv("cache-control", "no-store"));
    if (cfg_.server_header) nv.push_back(make_nv("server", cfg_.defaults.server));
    const std::string_view date = core::http_date();
    if (cfg_.date_header) nv.push_back(make_nv("date", date));
    for (const http::field& f : extra)
        nv.push_back(make_nv(f.name, f.value));
    nghttp2_data_provider prd{};
    prd.read_callback = callbacks::read_data;
    s.started = true;
    s.no_body = s.out.empty() || s.head_request;  // HEAD: the length GET would have, no body
    if (s.no_body) s.out.clear();
    // The engine's own answers get an access line too (the /-/ probes do not, as over HTTP/1.1).
    if (log)
        events_.log_answer(client_, s.view(s.method), s.view(s.path), "2", status, s.out.size());
    nghttp2_submit_response(session_, s.id, nv.data(), nv.size(), s.no_body ? nullptr : &prd);
    if (s.no_body) s.complete = true;
}

void connection::on_client_reset(stream& s) {
    s.reset = true;
    if (s.complete) return;
    // Rapid Reset: a token per stream the client cancels before its response is complete.
    const uint64_t now = owner_.now_ms();
    reset_tokens_ = std::min<double>(
        cfg_.reset_burst,
        reset_tokens_ + static_cast<double>(now - reset_refill_ms_) * cfg_.reset_rate / 1000.0);
    reset_refill_ms_ = now;
    if (reset_tokens_ >= 1) {
        reset_tokens_ -= 1;
        return;
    }
    if (state_ == state::open || !goaway_final_) {
        owner_.refused(*this, http::refusal::h2_abuse);
        if (core::log_enabled(core::log_level::debug))
            core::log(core::log_level::debug, "HTTP/2 connection from " + client_.host +
                                                  " closed: too many streams reset (rapid reset)");
        state_ = state::closing;
        goaway_final_ = true;
        nghttp2_session_terminate_session(session_, NGHTTP2_ENHANCE_YOUR_CALM);
    }
}

// The stream is over for us: its app (if any) learns it, the exchange lets go.
void connection::finish_stream(stream& s, bool gone) {
    http::exchange& ex = *s.ex;
    // The app may still wait: on its response's progress, or on body that will never come (the
    // stream ended, by our RST_STREAM(NO_ERROR) after a complete response, before it did).
    if (gone || !ex.response_complete || !s.request_done) {
        // Reset (by either side: a malformed request is reset by nghttp2 after its head may
        // already have been posted) or cut off before any response: if its app has not started
        // yet, it never does.
        if (!s.started) ex.cancelled = true;
        ex.post(http::ev_disconnect);
    }
    ex.detach();
    if (s.admitted) {
        owner_.request_done(*this, ex, s.started_ms);
        owner_.request_finished(*this);
        s.admitted = false;
    }
    if (s.unconsumed) {
        body_buffered_ -= s.unconsumed;
        s.unconsumed = 0;
    }
}

void connection::stream_closed(int32_t id, uint32_t code) {
    auto it = streams_.find(id);
    if (it == streams_.end()) return;
    stream& s = *it->second;
    nghttp2_session_set_stream_user_data(session_, id, nullptr);
    if (s.ws) bury(s);
    if (s.ex) {
        s.ex->response_complete = s.ex->response_complete || (s.complete && code == 0);
        finish_stream(s, false);
    }
    streams_.erase(it);
    repay_connection_window();
    sync_idle_timer();
}

// The tunnel's stream is gone (or the connection): its WebSocket learns it (1006, unless it
// closed already), and is freed after this phase.
void connection::bury(stream& s) {
    tunnel& t = *s.ws;
    t.gone = true;
    body_buffered_ -= std::min(body_buffered_, t.in.size() - t.in_off);  // never read now
    if (!t.closed) t.conn->on_hangup();
    if (t.accepted) {  // accepted, never started: the app still waits for the accept
        t.accepted->post(http::ev_disconnect);
        t.accepted.reset();
    }
    dead_tunnels_.push_back(std::move(s.ws));
}

void connection::repay_connection_window() {
    if (conn_owed_ && body_buffered_ < cfg_.body_budget) {
        nghttp2_session_consume_connection(session_, conn_owed_);
        conn_owed_ = 0;
    }
}

// ---- responses (app side) ----

send_result connection::submit_head(stream& s, const head& h, bool ends, uint64_t body_size) {
    if (h.status < 200 || h.status > 599)
        return {send_status::error, "response status must be within 200-599"};
    field_list fl;
    size_t room = 0;
    for (const auto& f : h.headers)
        room += f.name.size() + f.value.size();
    fl.storage.reserve(room + 64);
    bool app_server = false, app_date = false;
    std::optional<uint64_t> declared;  // kept only if the whole head is valid
    for (const auto& f : h.headers) {
        bool dropped = false;
        switch (append_field(fl, f, dropped)) {
            case field_error::name:
                return {send_status::error, "response header name is not a valid token"};
            case field_error::value:
                return {send_status::error,
                        "response header value contains CR, LF, NUL or another control byte"};
            case field_error::none: break;
        }
        if (dropped) continue;
        const auto [lower, value] = field_at(fl, fl.spans.size() - 1);
        if (lower == "content-length") {
            uint64_t n = 0;
            const auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
            if (ec != std::errc() || p != value.data() + value.size() || value.empty())
                return {send_status::error, "response content-length is not a number"};
            if (declared && *declared != n)
                return {send_status::error, "response has two different content-length values"};
            declared = n;
        }
        app_server = app_server || lower == "server";
        app_date = app_date || lower == "date";
    }
    s.declared = declared;
    const std::string status = std::to_string(h.status);
    const bool head_request = s.ex && s.ex->method == "HEAD";
    s.no_body = status_has_no_body(h.status) || head_request;
    std::string length;
    if (!s.declared && !status_has_no_body(h.status) && ends) length = std::to_string(body_size);
    fl.nv.reserve(fl.spans.size() + 4 + cfg_.defaults.fields.size());
    fl.nv.push_back(make_nv(":status", status));
    // The operator's fields before the app's, as over HTTP/1.1 (names lower-cased at startup).
    for (const auto& [name, value] : cfg_.defaults.fields)
        fl.nv.push_back(make_nv(name, value));
    for (size_t i = 0; i < fl.spans.size(); ++i) {
        const auto [name, value] = field_at(fl, i);
        fl.nv.push_back(make_nv(name, value));
    }
    if (!length.empty()) fl.nv.push_back(make_nv("content-length", length));
    if (cfg_.server_header && !app_server) fl.nv.push_back(make_nv("server", cfg_.defaults.server));
    const std::string_view date = core::http_date();
    if (cfg_.date_header && !app_date) fl.nv.push_back(make_nv("date", date));
    s.want_trailers = h.trailers && !s.no_body;
    nghttp2_data_provider prd{};
    prd.read_callback = callbacks::read_data;
    const bool data = !s.no_body && (!ends || body_size > 0 || s.want_trailers);
    if (nghttp2_submit_response(session_, s.id, fl.nv.data(), fl.nv.size(),
                                data ? &prd : nullptr) != 0)
        return {send_status::closed, {}};
    s.started = true;
    if (!data) s.complete = true;
    if (s.ex) s.ex->status = h.status;
    return {};
}

send_result connection::queue_body(stream& s, std::string_view body, bool more) {
    if (s.no_body) {
        body = {};
    } else if (s.declared && s.body_queued + body.size() > *s.declared) {
        abort(*s.ex);
        return {send_status::error, "response body longer than its content-length"};
    }
    if (!body.empty()) {
        materialize_file(s);
        if (s.out_off && s.out_off == s.out.size()) s.out.clear(), s.out_off = 0;
        s.out.append(body);
        s.body_queued += body.size();
    }
    if (!more) {
        if (!s.no_body && s.declared && s.body_queued < *s.declared) {
            abort(*s.ex);
            return {send_status::error, "response body shorter than its content-length"};
        }
        s.body_done = true;
        if (!s.want_trailers && s.ex) s.ex->response_complete = true;
    }
    return resume(s);
}

// Bytes after a file part must follow it: the part's rest is read into `out` first (at most a
// high-water's worth: send_file answered wait above it).
void connection::materialize_file(stream& s) {
    if (s.file_fd < 0) return;
    std::string buf(static_cast<size_t>(s.file_left), '\0');
    size_t got = 0;
    while (got < buf.size()) {
        const ssize_t r = ::pread(s.file_fd, buf.data() + got, buf.size() - got,
                                  static_cast<off_t>(s.file_off + got));
        if (r <= 0) break;
        got += static_cast<size_t>(r);
    }
    buf.resize(got);
    s.out.append(buf);
    ::close(s.file_fd);
    s.file_fd = -1;
    s.file_left = 0;
}

void connection::resume_data(stream& s) {
    if (s.deferred) {
        s.deferred = false;
        nghttp2_session_resume_data(session_, s.id);
    }
    owner_.schedule(*this);
}

send_result connection::resume(stream& s) {
    resume_data(s);
    if (s.pending() > cfg_.stream_high_water) {
        s.send_waiting = true;
        return {send_status::wait, {}};
    }
    return {};
}

void connection::post_drain_if_low(stream& s) {
    if (s.ws && s.ws->blocked && s.pending() <= cfg_.stream_low_water) {
        s.ws->blocked = false;
        s.ws->writable = true;
        tunnel_due(*s.ws);
    }
    if (s.send_waiting && s.file_fd < 0 && s.pending() <= cfg_.stream_low_water && s.ex) {
        s.send_waiting = false;
        s.ex->post(http::ev_drain);
    }
}

send_result connection::send(http::exchange& ex, const head* h, std::string_view body, bool more) {
    stream* s = find(ex);
    if (!s || s->reset) return {send_status::closed, {}};
    if (h) {
        if (s->started) return {send_status::error, "the response has already started"};
        if (send_result r = submit_head(*s, *h, !more, body.size());
            r.status != send_status::proceed)
            return r;
    } else if (!s->started) {
        return {send_status::error, "the response has not started"};
    }
    return queue_body(*s, body, more);
}

send_result connection::send_file(http::exchange& ex, const head* h, int fd, uint64_t offset,
                                  uint64_t len, bool more) {
    stream* s = find(ex);
    if (!s || s->reset) {
        ::close(fd);
        return {send_status::closed, {}};
    }
    if (h) {
        if (s->started) {
            ::close(fd);
            return {send_status::error, "the response has already started"};
        }
        if (send_result r = submit_head(*s, *h, !more, len); r.status != send_status::proceed) {
            ::close(fd);
            return r;
        }
    }
    if (s->no_body || len == 0) {
        ::close(fd);
        return queue_body(*s, {}, more);
    }
    if (s->declared && s->body_queued + len > *s->declared) {
        ::close(fd);
        abort(ex);
        return {send_status::error, "response body longer than its content-length"};
    }
    materialize_file(*s);
    s->file_fd = fd;
    s->file_off = offset;
    s->file_left = len;
    s->body_queued += len;
    return queue_body(*s, {}, more);
}

send_result connection::send_trailers(http::exchange& ex, std::span<const http::field> fields,
                                      bool more) {
    stream* s = find(ex);
    if (!s || s->reset) return {send_status::closed, {}};
    if (!s->want_trailers || s->trailers_ready)
        return {send_status::error, "trailers were not announced in the response head"};
    // All or nothing: the call's fields are checked before any joins the trailers.
    field_list add;
    for (const auto& f : fields) {
        bool dropped = false;
        switch (append_field(add, f, dropped)) {
            case field_error::name:
                return {send_status::error, "trailer name is not a valid token"};
            case field_error::value:
                return {send_status::error,
                        "trailer value contains CR, LF, NUL or another control byte"};
            case field_error::none: break;
        }
    }
    field_list& fl = s->trailers;
    const size_t base = fl.storage.size();
    fl.storage.append(add.storage);
    for (const auto& [off, len] : add.spans)
        fl.spans.emplace_back(base + off, len);
    if (more) return {};
    // The views are made once the storage no longer grows.
    for (size_t i = 0; i < fl.spans.size(); ++i) {
        const auto [name, value] = field_at(fl, i);
        fl.nv.push_back(make_nv(name, value));
    }
    s->trailers_ready = true;
    ex.response_complete = true;
    return resume(*s);
}

void connection::abort(http::exchange& ex) {
    stream* s = find(ex);
    if (!s) return;
    s->complete = true;
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    owner_.schedule(*this);
}

// The app took body bytes (or waits for some): the stream's window reopens by what it took.
void connection::want_body(http::exchange& ex) {
    stream* s = find(ex);
    if (!s) return;
    const size_t taken = s->unconsumed - std::min(s->unconsumed, ex.body.size());
    if (!taken) return;
    s->unconsumed -= taken;
    body_buffered_ -= taken;
    nghttp2_session_consume_stream(session_, s->id, taken);
    repay_connection_window();
    owner_.schedule(*this);
}

}  // namespace coachwhip::http2
