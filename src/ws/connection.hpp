// coachwhip::ws::connection — one WebSocket connection after the opening handshake (RFC 6455
// §5-§7, permessage-deflate RFC 7692), over an abstract transport: frames in, whole messages to
// the app; messages from the app, frames out; pings, pongs and the closing handshake.
//
// Where it sits. HTTP/1.1 answers the upgrade with 101; the owner (server::server) then builds
// this connection on the same transport, hands it the bytes the client sent after its request
// (`leftover`, already read by HTTP/1.1), rebinds the request's exchange to it
// (`ex->rebind(&conn)`) and calls `start()`. From then on the app side sees the exchange's
// WebSocket part (http/exchange.hpp): ws_inbox + ev_message, ws_send/ws_close/ws_taken, ev_drain,
// ev_disconnect with ws_close_code/ws_close_reason.
//
// Threading and phases, as http1::connection. The I/O entry points (`start`, `on_readable`,
// `on_writable`, `on_hangup`, `process`, `on_timer`, `begin_shutdown`) run in the engine's I/O
// phase, GIL released; they post events on the exchange and never call the app. The sink methods
// (`ws_send`, `ws_close`, `ws_taken`) run on the app side with the GIL held: they only buffer
// (and compress a small message) and ask the owner to schedule `process()`; no socket I/O and no
// timer change happens under the GIL.
//
// States:
//
//   open --client close frame: echo it, ev_disconnect(its code)--------------> draining
//     |  --app ws_close / begin_shutdown: our close frame queued--> closing --client close--^
//     |                                                               |  (ev_disconnect with
//     |                                                               |   the client's code,
//     |                                                               |   unless already posted)
//     |--protocol error (1002/1007/1009), keepalive ping timeout, app abort,---> failing
//     |  zlib failure (1011): our close frame, ev_disconnect(1006)       ^ (a protocol error in
//     |                                                     closing -----'  closing: no 2nd close)
//     `--EOF, reset, write timeout: ev_disconnect(1006)---------------------------------> closed
//   draining, failing --our close frame written: FIN; read and discard until EOF--> closed
//                        (we close the TCP first, §7.1.1; reading on until the client's EOF
//                        keeps a frame that crossed our close from turning the close into RST)
//   closing, draining, failing --close timer (--ws-close-timeout)--> closed (reset if output
//                                                                    is still unwritten)
//   (close_timeout_ms 0: no waiting at all; the connection closes once our close frame is out)
//
// What the app sees (the bridge's ASGI mapping):
// - ev_message: whole messages wait in ex.ws_inbox (text: valid UTF-8; decompressed). The app
//   pops them and calls ws_taken(). With max_queue messages waiting, reading from the socket
//   pauses (control frames included; the keepalive ping is suspended meanwhile: the client is
//   not the one late) and resumes on ws_taken().
// - ev_disconnect, exactly once, after which the exchange is detached (every app call answers
//   closed). Messages still in ws_inbox stay there: deliver them first, then the disconnect.
//   ws_close_code: the client's close code (1005: its close frame had none), 1006 when the
//   connection ended without the client's close frame (EOF, reset, timeouts, and after a protocol
//   error we detected: the client sent no close frame — as websockets/uvicorn report them), or
//   config.shutdown_code (1001) at once on begin_shutdown().
// - ws_send(text, data): proceed / wait (buffered output >= write_high_water: wait for ev_drain)
//   / closed (the app closed, or the connection is closing or gone). Each message is one frame
//   (its bytes copied once, into the output), except a compressed message above 16 KiB: it is
//   copied once into a queue and compressed during the I/O phase, GIL released, in 64 KiB
//   slices as the client reads, a frame per slice that produced output (control frames may go
//   between them, §5.4). Smaller ones are compressed in ws_send straight from the app's bytes.
// - abort() (the app failed): close 1011 and ev_disconnect(1006), as websockets does for a
//   handler that raises. An app that returns without closing: the bridge calls ws_close(1000).
// - ws_close(code, reason): our close frame goes after everything already sent; ws_send answers
//   closed from now on; the disconnect comes when the client's close frame arrives (its code), or
//   1006 when the close timer expires first. Codes outside ws::is_valid_close_code (1005, 1006,
//   1015, < 1000, ...) go out as a close frame without a code (the bridge should raise first, as
//   websockets does); the reason is cut to 123 bytes at a code point.
//
// Timers (the owner maps each kind to its duration; two slots, like http1: `write` has its own,
// the others share the keepalive slot and arming one replaces the one before):
//   ping: --ws-ping-interval: time to send a ping (skipped, and re-armed, while output waits on
//         the client: the write timer already watches that)
//   pong: --ws-ping-timeout: the pong to our ping must be back (else close 1011)
//   close: --ws-close-timeout: the whole closing handshake, from our close frame (or the
//          client's) to the end; a running close deadline is never extended
//   write: the client has read nothing of our pending output for this long: reset
//
// Memory bounds: input buffer <= max(read_chunk, leftover); the message being assembled <=
// max_message (decompressed: the inflater stops at the limit; its capacity grows with what
// arrived, never from a declared length, and stays under twice the limit); ws_inbox <= max_queue
// messages; one coalesced pong (the latest ping's, §5.5.3: a ping flood cannot grow our output);
// output: ws_send answers wait above write_high_water. An idle connection (nothing buffered) holds
// no read buffer, no output and no zlib state unless context takeover needs it. Measured (x86-64,
// g++ 12 -O2, glibc mallinfo2, 2000 connections after a message each way): sizeof(connection) = 800
// bytes and 873 bytes of heap each, object included, without deflate; 1005 with deflate and no
// context takeover either way; ~40 KiB with context takeover (the deflater at window 12; the
// inflater adds 11 KiB once the client compresses). Test WsMemory.IdleConnectionHoldsNoMemory
// checks memory() == 0 at idle, and the fuzz target checks it after every step.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/buffer.hpp"
#include "core/transport.hpp"
#include "http/exchange.hpp"
#include "http/refusal.hpp"
#include "ws/deflate.hpp"
#include "ws/frame.hpp"
#include "ws/handshake.hpp"

namespace coachwhip::ws {

struct connection_config {
    // --ws-max-size: bytes of one message after decompression (1009 above it).
    uint64_t max_message = uint64_t{16} << 20;
    // --ws-max-queue: whole messages waiting in ws_inbox before reading pauses (0 counts as 1).
    size_t max_queue = 32;
    size_t read_chunk = 16 * 1024;
    size_t write_high_water = 256 * 1024;
    size_t write_low_water = 64 * 1024;
    // Keepalive (--ws-ping-interval / --ws-ping-timeout); 0 turns each off. The durations are the
    // owner's timer lists; these only say whether the timers are used.
    uint64_t ping_interval_ms = 20000;
    uint64_t ping_timeout_ms = 20000;
    uint64_t close_timeout_ms = 10000;  // 0: no close timer (the write timer still bounds)
    // Bytes a failing connection reads and drops after its FIN before it closes anyway.
    size_t linger_max_bytes = 64 * 1024;
    // The close code of a graceful server stop, to the client and to the app (1001 "going
    // away"; uvicorn uses 1012 "service restart").
    uint16_t shutdown_code = close_code::going_away;
    // Our compressor, when permessage-deflate was negotiated (deflate.hpp has the memory table).
    int deflate_level = 6;
    uint8_t deflate_mem_level = 5;
    // Where input buffers of `read_chunk` bytes come from and go back to (optional; not owned).
    core::block_pool* read_blocks = nullptr;
};

class connection;

// What the connection needs from whoever owns it (server::server, or a unit test).
class connection_owner {
  public:
    // `c` has work for the next I/O phase (output to write, reading to resume).
    virtual void schedule(connection& c) = 0;
    // See "Timers" above. disarm_timer() disarms the slot `kind` uses.
    enum class timer_kind : uint8_t { none, ping, pong, close, write };
    virtual void arm_timer(connection& c, timer_kind kind) = 0;
    virtual void disarm_timer(connection& c, timer_kind kind) = 0;
    // The engine's monotonic clock in milliseconds (for the ping round-trip time).
    virtual uint64_t now_ms() const noexcept = 0;
    // The transport is closed and every timer disarmed; the owner destroys the connection after
    // the current I/O phase (call release_memory() first, as for http1).
    virtual void on_closed(connection& c) = 0;
    // A connection cut by a limit (write_timeout), for the metrics.
    virtual void refused(connection& c, http::refusal why) { (void)c, (void)why; }

  protected:
    ~connection_owner() = default;
};

class connection final : public http::response_sink {
  public:
    enum class state : uint8_t { open, closing, draining, failing, closed };
    using timer_kind = connection_owner::timer_kind;

    // `ex`: the upgraded request's exchange (the owner rebinds it to this connection).
    // `leftover`: bytes the client sent after its upgrade request, parsed before anything read
    // from the transport. `deflate`: the permessage-deflate parameters the 101 announced, if any.
    // Nothing happens until start().
    connection(core::transport& t, connection_owner& owner, const connection_config& cfg,
               std::shared_ptr<http::exchange> ex, std::string leftover,
               std::optional<deflate_params> deflate = std::nullopt);
    ~connection();
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    // ---- I/O phase ----
    // First call, after ex->rebind(this): parses `leftover`, arms the keepalive timer, reads.
    void start();
    // As http1::connection::on_readable (see there for `short_read_drains`).
    void on_readable(bool short_read_drains = false);
    void on_writable();
    void on_hangup();  // EPOLLERR/EPOLLHUP: the peer reset the connection
    void process();    // scheduled work: flush, resume reading, apply the app's close
    void on_timer(timer_kind kind);
    // Graceful stop: a shutdown_code close frame after what is already queued, ev_disconnect
    // (shutdown_code) now, then the closing handshake bounded by the close timer.
    void begin_shutdown();
    // Frees the buffers of a closed connection (call from outside its methods, as for http1).
    void release_memory() noexcept;

    state current_state() const noexcept { return state_; }
    const connection_config& config() const noexcept { return cfg_; }
    bool write_blocked() const noexcept { return write_blocked_; }
    // Nothing buffered either way and no message in progress.
    bool idle() const noexcept;
    // Heap bytes this connection holds now (buffers, the partial message, queued output, zlib).
    size_t memory() const noexcept;
    // Round trip of the last answered keepalive ping, in ms (0: none yet).
    uint64_t ping_rtt_ms() const noexcept { return ping_rtt_ms_; }
    bool scheduled = false;     // owner's bookkeeping: already in the schedule list
    void* owner_ctx = nullptr;  // owner's bookkeeping: its record of this connection

    // ---- response_sink (app side, GIL held) ----
    http::send_result ws_send(http::exchange& ex, bool text, std::string_view data) override;
    void ws_close(http::exchange& ex, uint16_t code, std::string_view reason) override;
    void ws_taken(http::exchange& ex) override;
    // HTTP after the upgrade: nothing to send (closed); abort fails the connection (1011).
    http::send_result send(http::exchange& ex, const head* h, std::string_view body,
                           bool more) override;
    void abort(http::exchange& ex) override;
    void want_body(http::exchange& ex) override;

  private:
    // A compressed message waiting to be compressed in slices during the I/O phase.
    struct outgoing {
        std::string data;
        size_t offset = 0;  // bytes already compressed
        bool text = false;
        bool started = false;  // its first frame went out (the next are continuations)
    };

    // reading
    void read_input();
    bool reading_paused() const noexcept;
    void consume_input();
    void on_frame_header(const frame_header& h);
    void on_payload(std::string_view payload, bool frame_end);
    void inflate_payload(std::string_view payload, bool last);
    void keep_message_bytes(std::string_view bytes);
    void finish_frame();
    void deliver_message();
    void on_client_close();
    void on_pong(std::string_view payload);
    void linger_read();
    void on_eof();
    // transitions
    void leave_open();
    void fail(const core::error& err);
    void queue_close(uint16_t code, std::string_view reason);
    void start_closing(uint16_t code, std::string_view reason);
    void post_disconnect(uint16_t code, std::string_view reason);
    void drop_pending() noexcept;
    void close_now(bool reset = false);
    // writing
    void send_ping();
    void queue_frame(opcode op, bool fin, bool rsv1, std::string_view payload);
    void queue_control(opcode op, std::string_view payload);
    core::error fill_output();
    void flush();
    size_t buffered() const noexcept { return out_.size() + pending_bytes_; }
    // timers
    void sync_read_timer();
    void set_read_timer(timer_kind kind);

    core::transport& t_;
    connection_owner& owner_;
    const connection_config& cfg_;
    std::shared_ptr<http::exchange> ex_;

    state state_ = state::open;
    frame_parser parser_;
    message_assembler assembler_;
    // permessage-deflate, when negotiated (on the heap: a connection without it saves the room)
    struct compression {
        compression(inflater::options i, deflater::options o) noexcept : in(i), out(o) {}
        inflater in;
        deflater out;
    };
    std::unique_ptr<compression> z_;

    core::input_buffer in_;
    std::string message_;  // the data message being assembled (kept only while open)
    core::output_queue out_;
    std::vector<outgoing> pending_;  // compressed in slices, in order, from pending_head_
    size_t pending_head_ = 0;
    size_t pending_bytes_ = 0;  // uncompressed bytes in pending_ (counted as buffered output)

    // The coalesced pong (the latest ping's payload, at most 125 bytes) while one is owed,
    // which is only while our output is backed up (finish_frame); freed once written. A string
    // rather than a 125-byte array: sizeof(connection) drops by 96 bytes, which every idle
    // WebSocket pays; payloads up to 15 bytes (the usual keepalive) do not even allocate.
    std::string pong_;
    bool pong_owed_ = false;
    uint16_t close_code_out_ = 0;   // our close frame (valid once close_queued_): its code
    std::string close_reason_out_;  // ... and its reason (cut to 123 bytes when encoded)
    bool close_queued_ = false;     // our close frame goes out once pending_ is empty
    bool close_sent_ = false;       // ... and is in out_: nothing may follow it
    bool fin_sent_ = false;         // draining/failing: shutdown_write() done, discarding input
    bool disconnected_ = false;     // ev_disconnect posted (exactly once)
    bool read_ready_ = true;        // the transport may have unread bytes (edge-triggered)
    bool short_read_drains_ = false;
    bool write_blocked_ = false;  // the last write hit EAGAIN: wait for on_writable
    bool send_waiting_ = false;   // ws_send answered wait: post ev_drain at low water
    bool started_ = false;
    bool awaiting_pong_ = false;
    uint8_t app_failure_ = 0;  // the app side asked to fail the connection (1011) or close
    uint32_t ping_seq_ = 0;
    uint64_t ping_sent_ms_ = 0;
    uint64_t ping_rtt_ms_ = 0;
    size_t lingered_ = 0;
    timer_kind read_timer_ = timer_kind::none;
    bool write_timer_ = false;
};

}  // namespace coachwhip::ws
