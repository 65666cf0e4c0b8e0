// coachwhip::ws::connection. The contract, the states and the timers are in connection.hpp; this
// file says why.
#include "ws/connection.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/log.hpp"

namespace coachwhip::ws {

using http::send_result;
using http::send_status;
using timer_kind = connection_owner::timer_kind;

namespace {

// A compressed message up to this size is compressed at once, in ws_send (one zlib call, no copy
// of the app's bytes). Larger ones are copied and compressed in slices during the I/O phase:
// the GIL is not held for the compression of a large message, and the compressed output never
// exceeds a slice or two at a time.
constexpr size_t k_inline_compress = 16 * 1024;
constexpr size_t k_slice = 64 * 1024;
// Counted per queued message on top of its bytes, so that many tiny messages are bounded too.
constexpr size_t k_pending_overhead = 64;

// Output of the deflater, reused: one engine thread compresses one message at a time.
std::string& compress_scratch() {
    static thread_local std::string s;
    s.clear();
    return s;
}

// Frees a string's heap buffer. (Assigning std::string() would not: libstdc++ copies an empty
// short string into the existing buffer and keeps it.)
void free_string(std::string& s) noexcept { std::string().swap(s); }

uint64_t saturating_add(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

frame_parser::options parser_options(const connection_config& cfg, bool deflate) {
    frame_parser::options o;
    o.rsv1_allowed = deflate;
    // One frame never needs to be longer than the largest message, except compressed: DEFLATE's
    // stored blocks add 5 bytes per 64 KiB to data that does not compress. And never below 125:
    // the parser applies max_frame to control frames too, and a 100-byte ping is fine with
    // --ws-max-size 64 (the message size is the assembler's check).
    o.max_frame = deflate ? saturating_add(cfg.max_message, (cfg.max_message >> 10) + 1024)
                          : std::max<uint64_t>(cfg.max_message, 125);
    return o;
}

}  // namespace

connection::connection(core::transport& t, connection_owner& owner, const connection_config& cfg,
                       std::shared_ptr<http::exchange> ex, std::string leftover,
                       std::optional<deflate_params> deflate)
    : t_(t),
      owner_(owner),
      cfg_(cfg),
      ex_(std::move(ex)),
      parser_(parser_options(cfg, deflate.has_value())),
      assembler_(message_assembler::options{cfg.max_message}),
      in_(cfg.read_blocks) {
    if (deflate) {
        z_ = std::make_unique<compression>(
            inflater::options{deflate->client_max_window_bits, deflate->client_no_context_takeover,
                              cfg.max_message},
            deflater::options{deflate->server_max_window_bits, cfg.deflate_mem_level,
                              cfg.deflate_level, deflate->server_no_context_takeover});
    }
    if (!leftover.empty()) {
        auto [buf, room] = in_.reserve(leftover.size(), leftover.size());
        std::memcpy(buf, leftover.data(), std::min(room, leftover.size()));
        in_.commit(std::min(room, leftover.size()));
    }
}

connection::~connection() {
    if (ex_ && !disconnected_) ex_->detach();
}

void connection::start() {
    started_ = true;
    process();
}

bool connection::idle() const noexcept {
    return state_ == state::open && in_.empty() && !assembler_.in_message() && out_.empty() &&
           pending_head_ == pending_.size() && !pong_owed_;
}

size_t connection::memory() const noexcept {
    size_t n = in_.capacity() + out_.size() + pending_bytes_;
    if (message_.capacity() > std::string().capacity()) n += message_.capacity();
    if (pong_.capacity() > std::string().capacity()) n += pong_.capacity();
    n += pending_.capacity() * sizeof(outgoing);
    if (z_) n += sizeof(compression) + z_->in.memory() + z_->out.memory();
    return n;
}

// ---------------------------------------------------------------- reading

void connection::on_readable(bool short_read_drains) {
    read_ready_ = true;
    short_read_drains_ = short_read_drains;
    if (!started_ || state_ == state::closed) return;
    read_input();
    if (state_ != state::closed) sync_read_timer();
}

// Reading pauses while the app has max_queue messages waiting (backpressure: ATTACKS.md D, an
// app that never receives). Control frames wait too: they are behind the data in the stream.
bool connection::reading_paused() const noexcept {
    return state_ == state::open && ex_->ws_inbox.size() >= std::max<size_t>(cfg_.max_queue, 1);
}

void connection::read_input() {
    while (read_ready_ && state_ != state::closed) {
        if (state_ == state::failing || state_ == state::draining) {
            if (fin_sent_) linger_read();
            break;  // before our FIN, read_ready_ stays set
        }
        if (reading_paused()) break;  // read_ready_ stays set
        auto [buf, room] =
            in_.reserve(cfg_.read_chunk, std::max(cfg_.read_chunk, in_.size() + cfg_.read_chunk));
        if (room == 0) break;
        const ssize_t n = t_.read(buf, room);
        if (n > 0) {
            in_.commit(static_cast<size_t>(n));
            consume_input();
            // Everything was parsed (payload went into the message): the block goes back now,
            // so an idle connection holds no input memory.
            in_.release();
            if (short_read_drains_ && static_cast<size_t>(n) < room && state_ != state::closed)
                read_ready_ = false;  // the queue is empty: as if the next read said EAGAIN
        } else if (n == 0) {
            read_ready_ = false;
            return on_eof();
        } else if (n == -EAGAIN || n == -EWOULDBLOCK) {
            read_ready_ = false;
        } else if (n != -EINTR) {
            return close_now();  // ECONNRESET and friends: 1006
        }
    }
    in_.release();  // the last read may have said EAGAIN into a fresh block
    // Pongs, the echo of a close frame, an error's close frame: written once per batch of
    // reads, in one write.
    if (state_ != state::closed) flush();
}

// The frame loop of frame.hpp. Runs until the input is used up, reading pauses, or the
// connection stops reading (an error, the client's close).
void connection::consume_input() {
    while (state_ == state::open || state_ == state::closing) {
        if (reading_paused()) return;
        const std::string_view data = in_.readable();
        // The parser unmasks in place: the buffer is ours and its bytes are read only here.
        const frame_parser::result r =
            parser_.parse(std::span<char>(const_cast<char*>(data.data()), data.size()));
        // consume() only moves offsets: the payload view stays valid until the next read.
        in_.consume(r.consumed);
        switch (r.status) {
            case frame_parser::status::need_more: return;
            case frame_parser::status::error: return fail(r.error);
            case frame_parser::status::header: on_frame_header(r.header); break;
            case frame_parser::status::payload: on_payload(r.payload, r.frame_end); break;
        }
    }
}

void connection::on_frame_header(const frame_header& h) {
    if (core::error e = assembler_.begin_frame(h)) fail(e);
}

// After our close frame (closing) messages are still checked, and inflated to keep the
// inflater's window right, but no longer kept: the app has closed or been told of the close.
void connection::on_payload(std::string_view payload, bool frame_end) {
    if (assembler_.in_control_frame()) {
        assembler_.control_data(payload);
    } else if (assembler_.message_compressed()) {
        inflate_payload(payload, frame_end && parser_.current().fin);
    } else if (core::error e = assembler_.message_data(payload)) {
        return fail(e);
    } else {
        keep_message_bytes(payload);
    }
    if (frame_end && (state_ == state::open || state_ == state::closing)) finish_frame();
}

void connection::inflate_payload(std::string_view payload, bool last) {
    char out[16 * 1024];
    for (;;) {
        const inflater::result r = z_->in.inflate(payload, out, last);
        payload.remove_prefix(r.consumed);
        if (r.status == inflater::status::error) return fail(r.error);
        if (r.produced > 0) {
            const std::string_view bytes(out, r.produced);
            if (core::error e = assembler_.message_data(bytes)) return fail(e);
            keep_message_bytes(bytes);
        }
        if (r.status == inflater::status::more_output) continue;
        // With `last` the inflater ends the message or fails (deflate.hpp); anything else would
        // leave the next message to be read from the middle of this one.
        if (last && r.status != inflater::status::message_end)
            return fail({close_code::invalid_payload, "compressed message did not end"});
        return;
    }
}

// The assembler already bounded the message (max_message), so only the growth policy is here:
// never allocate from a declared length alone (a 14-byte header must not cost 16 MiB), grow
// geometrically, and stop exactly at the end of an uncompressed frame when it is in sight.
void connection::keep_message_bytes(std::string_view bytes) {
    if (state_ != state::open || bytes.empty()) return;
    const size_t need = message_.size() + bytes.size();
    if (need > message_.capacity()) {
        const uint64_t frame_end = assembler_.message_compressed()
                                       ? cfg_.max_message
                                       : saturating_add(need, parser_.remaining());
        const uint64_t grown = std::max<uint64_t>(uint64_t{2} * message_.capacity(), 4096);
        message_.reserve(std::max<uint64_t>(need, std::min(frame_end, grown)));
    }
    message_.append(bytes);
}

void connection::finish_frame() {
    const message_assembler::frame_end end = assembler_.end_frame();
    if (end.error) return fail(end.error);
    switch (end.what) {
        case message_assembler::completed::fragment: return;
        case message_assembler::completed::message: return deliver_message();
        case message_assembler::completed::ping: {
            const std::string_view p = assembler_.control_payload();
            // §5.5.2: every ping gets its pong while the client reads what we send (clients and
            // Autobahn 2.10 count them). A client that sends pings faster than it reads gets a
            // pong for the most recent one only (§5.5.3): it replaces one not yet written, so a
            // ping flood cannot grow our output.
            if (!close_sent_ && !pong_owed_ &&
                out_.size() < std::min(cfg_.write_low_water, cfg_.write_high_water)) {
                queue_control(opcode::pong, p);
                return;
            }
            pong_.assign(p);
            pong_owed_ = true;
            return;
        }
        case message_assembler::completed::pong: return on_pong(assembler_.control_payload());
        case message_assembler::completed::close: return on_client_close();
    }
}

void connection::deliver_message() {
    // Frees the zlib state between messages when no context is taken over (deflate.hpp).
    if (z_) z_->in.release();
    if (state_ != state::open) return;
    ex_->ws_inbox.push_back({assembler_.message_opcode() == opcode::text, std::move(message_)});
    free_string(message_);  // moved from: empty, but make sure
    ex_->post(http::ev_message);
}

// §5.5.1: answer a close frame with one (echoing its code and reason, as websockets does), tell
// the app the client's code, and close the TCP connection once ours is written (§7.1.1: the
// server closes first). Compressed messages still queued are dropped, a started one left
// unfinished (§5.5.1 lets the echo wait for the current message; it need not): the client has
// closed, and our close is what it waits for.
void connection::on_client_close() {
    const close_info& c = assembler_.received_close();
    if (state_ == state::open) {
        leave_open();
        queue_close(c.code, c.reason);
    }
    post_disconnect(c.code, c.reason);  // after our own close: the client's answer
    if (!close_sent_) drop_pending();
    state_ = state::draining;
}

void connection::on_pong(std::string_view payload) {
    // An unsolicited pong, or one for an older ping, is ignored (§5.5.3).
    if (!awaiting_pong_ || payload.size() != 4) return;
    const unsigned char expect[4] = {
        static_cast<unsigned char>(ping_seq_ >> 24), static_cast<unsigned char>(ping_seq_ >> 16),
        static_cast<unsigned char>(ping_seq_ >> 8), static_cast<unsigned char>(ping_seq_)};
    if (std::memcmp(payload.data(), expect, 4) != 0) return;
    awaiting_pong_ = false;
    ping_rtt_ms_ = std::max<uint64_t>(owner_.now_ms() - ping_sent_ms_, 1);
}

// Failing or draining, after our FIN: what the client still sends is read and dropped, so that
// closing does not reset the connection under our close frame (a reset discards data the client
// has not read yet). Ends at the client's EOF, the close timer, or linger_max_bytes.
void connection::linger_read() {
    char sink[4096];
    while (read_ready_ && state_ != state::closed) {
        const ssize_t n = t_.read(sink, sizeof sink);
        if (n > 0) {
            lingered_ += static_cast<size_t>(n);
            if (lingered_ > cfg_.linger_max_bytes) return close_now();
        } else if (n == -EAGAIN || n == -EWOULDBLOCK) {
            read_ready_ = false;
        } else if (n != -EINTR) {
            return close_now();  // EOF (or a reset): the client has seen our close
        }
    }
}

// The client closed the TCP connection without a close frame (or after ours, while we waited
// for its answer): 1006 for the app (RFC 6455 §7.1.5), and nothing more can be written usefully.
void connection::on_eof() { close_now(); }

// ---------------------------------------------------------------- transitions

void connection::leave_open() {
    if (state_ != state::open) return;
    free_string(message_);  // a partial message is never delivered now
    awaiting_pong_ = false;
}

// §7.1.7 "Fail the WebSocket Connection": our close frame with the codec's code (unless ours is
// already queued: one close frame only, §5.5.1), then FIN without waiting for the client's answer.
// The app sees 1006, as websockets reports it: the client sent no close frame.
void connection::fail(const core::error& err) {
    if (state_ == state::failing || state_ == state::closed) return;
    if (core::log_enabled(core::log_level::debug))
        core::log(core::log_level::debug, "websocket connection of " + ex_->client.host +
                                              " failed: " + std::to_string(err.status) + " " +
                                              std::string(err.reason));
    leave_open();
    if (!close_sent_) drop_pending();  // our close goes right after the frames in the output
    if (!close_queued_) queue_close(err.status, err.reason);
    pong_owed_ = false;
    post_disconnect(close_code::abnormal, {});
    state_ = state::failing;
    flush();
}

// Our close frame (the app's or the server's): it follows everything queued before it.
void connection::start_closing(uint16_t code, std::string_view reason) {
    leave_open();
    queue_close(code, reason);
    state_ = state::closing;
}

void connection::queue_close(uint16_t code, std::string_view reason) {
    close_code_out_ = code;
    close_reason_out_.assign(reason.substr(0, utf8_truncate(reason, 123)));
    close_queued_ = true;
}

void connection::drop_pending() noexcept {
    std::vector<outgoing>().swap(pending_);
    pending_head_ = pending_bytes_ = 0;
}

void connection::post_disconnect(uint16_t code, std::string_view reason) {
    if (disconnected_) return;
    disconnected_ = true;
    send_waiting_ = false;
    ex_->ws_close_code = code;
    ex_->ws_close_reason.assign(reason);
    ex_->detach();  // every later app call answers closed
    ex_->post(http::ev_disconnect);
}

void connection::close_now(bool reset) {
    if (state_ == state::closed) return;
    state_ = state::closed;
    set_read_timer(timer_kind::none);
    if (write_timer_) owner_.disarm_timer(*this, timer_kind::write);
    write_timer_ = false;
    post_disconnect(close_code::abnormal, {});
    out_.clear();
    drop_pending();
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
    free_string(message_);
    free_string(pong_);
    std::vector<outgoing>().swap(pending_);
    z_.reset();
}

void connection::begin_shutdown() {
    if (state_ != state::open) return;  // already closing: its close timer bounds it
    start_closing(cfg_.shutdown_code, {});
    post_disconnect(cfg_.shutdown_code, {});
    if (!started_) return;
    flush();
    if (state_ != state::closed) sync_read_timer();
}

// ---------------------------------------------------------------- timers

// The keepalive slot: ping or pong while open (suspended while the app holds reading paused:
// then we wait on the app, not on the client), close in every closing state.
void connection::sync_read_timer() {
    timer_kind want = timer_kind::none;
    if (state_ == state::open) {
        if (cfg_.ping_interval_ms && !reading_paused())
            want = awaiting_pong_ ? timer_kind::pong : timer_kind::ping;
    } else if (state_ != state::closed && cfg_.close_timeout_ms) {
        want = timer_kind::close;
    }
    set_read_timer(want);
}

// Keeps a running deadline when the kind is unchanged: the closing handshake's deadline is never
// pushed back by frames the client trickles in.
void connection::set_read_timer(timer_kind kind) {
    if (kind == read_timer_) return;
    read_timer_ = kind;
    if (kind == timer_kind::none) {
        owner_.disarm_timer(*this, timer_kind::ping);
    } else {
        owner_.arm_timer(*this, kind);
    }
}

void connection::on_timer(timer_kind kind) {
    if (state_ == state::closed) return;
    if (kind == timer_kind::write) {
        write_timer_ = false;
        owner_.refused(*this, http::refusal::write_timeout);
        return close_now(true);  // the client stopped reading; a waiting send learns it
    }
    read_timer_ = timer_kind::none;  // the owner's slot fired: it is no longer armed
    switch (kind) {
        case timer_kind::ping:
            if (state_ == state::open) send_ping();
            break;
        case timer_kind::pong:
            // websockets: "sent 1011 (internal error) keepalive ping timeout".
            if (state_ == state::open && awaiting_pong_)
                fail({close_code::internal_error, "keepalive ping timeout"});
            break;
        case timer_kind::close:
            if (state_ != state::open) return close_now(!out_.empty());
            break;
        default: break;
    }
    if (state_ != state::closed) sync_read_timer();
}

// ---------------------------------------------------------------- writing

// A keepalive ping (4 bytes: its sequence number). Skipped while our output waits on the client:
// the write timer watches that, and a ping stuck behind it would only time out for the same
// reason.
void connection::send_ping() {
    if (write_blocked_ || close_queued_) return;
    ++ping_seq_;
    const char p[4] = {static_cast<char>(ping_seq_ >> 24), static_cast<char>(ping_seq_ >> 16),
                       static_cast<char>(ping_seq_ >> 8), static_cast<char>(ping_seq_)};
    queue_control(opcode::ping, {p, 4});
    ping_sent_ms_ = owner_.now_ms();
    awaiting_pong_ = cfg_.ping_timeout_ms > 0;
    flush();
}

void connection::queue_frame(opcode op, bool fin, bool rsv1, std::string_view payload) {
    frame_header h;
    h.fin = fin;
    h.rsv1 = rsv1;
    h.op = op;
    h.length = payload.size();
    std::array<char, k_max_header_size> head;
    const size_t n = encode_frame_header(h, head);
    out_.append(std::string_view(head.data(), n));
    out_.append(payload);  // the one copy of the app's bytes (small ones land with the header)
}

void connection::queue_control(opcode op, std::string_view payload) {
    queue_frame(op, true, false, payload);
}

// Moves into the output what waits outside it: the owed pong (only below the high-water mark:
// a client that floods pings without reading gets one pong, late), slices of queued compressed
// messages (down to the low-water mark, so a large message is compressed as it is written), then
// our close frame once nothing is queued before it. Nothing follows our close frame.
core::error connection::fill_output() {
    if (close_sent_) return {};
    if (pong_owed_ && out_.size() < cfg_.write_high_water) {
        queue_control(opcode::pong, pong_);
        free_string(pong_);
        pong_owed_ = false;
    }
    while (pending_head_ < pending_.size() && out_.size() <= cfg_.write_low_water) {
        outgoing& m = pending_[pending_head_];
        const size_t n = std::min(k_slice, m.data.size() - m.offset);
        const bool last = m.offset + n == m.data.size();
        std::string& z = compress_scratch();
        if (core::error e = z_->out.compress(std::string_view(m.data).substr(m.offset, n), last, z))
            return e;
        m.offset += n;
        pending_bytes_ -= n;
        // zlib may hold a slice's output back; a frame goes out only when there is something.
        if (!z.empty() || last) {
            const opcode op = m.started ? opcode::continuation
                              : m.text  ? opcode::text
                                        : opcode::binary;
            queue_frame(op, last, !m.started, z);
            m.started = true;
        }
        if (!last) continue;
        pending_bytes_ -= k_pending_overhead;
        free_string(m.data);
        ++pending_head_;
        z_->out.release();
    }
    if (pending_head_ == pending_.size() && !pending_.empty()) drop_pending();
    if (close_queued_ && pending_.empty()) {
        queue_control(opcode::close,
                      encode_close_payload(close_code_out_, close_reason_out_).view());
        free_string(close_reason_out_);
        close_sent_ = true;
        pong_owed_ = false;
    }
    return {};
}

void connection::flush() {
    bool progressed = false;
    while (state_ != state::closed) {
        if (core::error e = fill_output()) return fail(e);
        if (out_.empty() || write_blocked_) break;
        iovec iov[64];
        const int cnt = out_.iov(iov, 64);
        size_t offered = 0;
        for (int i = 0; i < cnt; ++i)
            offered += iov[i].iov_len;
        // The last bytes before a close or a shutdown_write: the FIN may travel with them.
        const bool fin_next =
            offered == out_.size() && close_sent_ &&
            (state_ == state::draining || state_ == state::failing || !cfg_.close_timeout_ms);
        const ssize_t n = t_.writev(iov, cnt, fin_next);
        if (n >= 0) {
            out_.consume(static_cast<size_t>(n));
            progressed = progressed || n > 0;
            if (static_cast<size_t>(n) < offered) write_blocked_ = true;
        } else if (n == -EAGAIN || n == -EWOULDBLOCK) {
            write_blocked_ = true;
        } else if (n != -EINTR) {
            return close_now();  // EPIPE, ECONNRESET: the client is gone
        }
    }
    if (state_ == state::closed) return;
    // The write timeout measures how long the client has read nothing while we have output.
    if (out_.empty()) {
        if (write_timer_) owner_.disarm_timer(*this, timer_kind::write);
        write_timer_ = false;
    } else if (write_blocked_ && (progressed || !write_timer_)) {
        owner_.arm_timer(*this, timer_kind::write);
        write_timer_ = true;
    }
    if (send_waiting_ && buffered() <= cfg_.write_low_water && !disconnected_) {
        send_waiting_ = false;
        ex_->post(http::ev_drain);
    }
    if (!out_.empty() || !close_sent_) return;
    // Our close frame is out. No close timer to wait with: close the TCP connection now. Both
    // closes exchanged (draining), or failing: FIN, then read until the client's EOF
    // (linger_read), so that closing does not reset the connection under our last frames: the
    // client may still send a pong or a frame that crossed our close, and a close with unread
    // input makes Linux send RST and drop what the client has not read yet (§7.1.1: the server
    // closes the TCP connection first; the client closes on seeing our FIN).
    if (!cfg_.close_timeout_ms) return close_now();
    if ((state_ == state::failing || state_ == state::draining) && !fin_sent_) {
        t_.shutdown_write();
        fin_sent_ = true;
        read_ready_ = true;
        linger_read();
    }
}

void connection::process() {
    if (!started_ || state_ == state::closed) return;
    if (app_failure_) {
        app_failure_ = 0;
        fail({close_code::internal_error, "the application failed"});
    }
    consume_input();  // bytes a pause left in the buffer (and the leftover, at start)
    if (state_ != state::closed) flush();
    if (state_ != state::closed) read_input();
    if (state_ != state::closed) sync_read_timer();
}

void connection::on_writable() {
    write_blocked_ = false;
    process();
}

// ---------------------------------------------------------------- response_sink (GIL held)

send_result connection::ws_send(http::exchange& ex, bool text, std::string_view data) {
    if (&ex != ex_.get() || state_ != state::open || app_failure_) return {send_status::closed, {}};
    const opcode op = text ? opcode::text : opcode::binary;
    if (!z_) {
        queue_frame(op, true, false, data);
    } else if (pending_.empty() && data.size() <= k_inline_compress) {
        std::string& z = compress_scratch();
        if (z_->out.compress(data, true, z)) {
            app_failure_ = 1;  // zlib could not allocate: 1011 in the I/O phase
            owner_.schedule(*this);
            return {send_status::closed, {}};
        }
        queue_frame(op, true, true, z);
        z_->out.release();
    } else {
        pending_.push_back({std::string(data), 0, text, false});
        pending_bytes_ += data.size() + k_pending_overhead;
    }
    ex.bytes_sent += data.size();
    owner_.schedule(*this);
    if (buffered() >= cfg_.write_high_water) {
        send_waiting_ = true;
        return {send_status::wait, {}};
    }
    return {send_status::proceed, {}};
}

void connection::ws_close(http::exchange& ex, uint16_t code, std::string_view reason) {
    if (&ex != ex_.get() || state_ != state::open) return;
    start_closing(is_valid_close_code(code) ? code : close_code::no_status, reason);
    owner_.schedule(*this);  // the close timer is armed in the I/O phase
}

void connection::ws_taken(http::exchange& ex) {
    if (&ex == ex_.get() && state_ == state::open) owner_.schedule(*this);
}

send_result connection::send(http::exchange&, const head*, std::string_view, bool) {
    return {send_status::closed, {}};
}

void connection::abort(http::exchange& ex) {
    if (&ex != ex_.get() || state_ == state::closed) return;
    app_failure_ = 1;
    owner_.schedule(*this);
}

void connection::want_body(http::exchange&) {}

}  // namespace coachwhip::ws
