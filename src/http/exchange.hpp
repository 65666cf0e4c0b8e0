// coachwhip::http — one request/response exchange, independent of the HTTP version.
//
// The protocol side (http1::connection today, an HTTP/2 stream later) creates an exchange when a
// request head is complete, fills in the request body as it arrives, and writes the response the
// app side gives it. The app side (the ASGI bridge) sees only this class: it never learns whether
// it talks to HTTP/1 or HTTP/2.
//
// Ownership: shared by the protocol side (while the request is current on its connection) and the
// app side (while the app runs). When the connection goes away first, it calls `detach()`; every
// later app call then returns send_status::closed.
//
// Threading: engine thread only. The protocol side runs with the GIL released; it never calls the
// app side directly. It posts events (`post()`), which the engine's owner delivers to the app side
// in a batch after the I/O phase, with the GIL held.
//
// Backpressure contract (the "proceed" contract):
// - `send()` returns proceed when the sender may send again at once; wait when the connection's
//   buffered output is over its high-water mark. After wait, the app side must not call `send()`
//   again until it receives event::drain (or event::disconnect). ASGI `await send()` completes at
//   that moment.
// - The request body is buffered in `body` up to a high-water mark; above it the protocol stops
//   reading. `take_body()` empties it and lets the protocol read again.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tls/info.hpp"

namespace coachwhip::http {

struct field {
    std::string_view name;
    std::string_view value;
};

// Where a connection comes from or arrives at, formatted once per connection.
struct endpoint {
    std::string host;  // "127.0.0.1", "::1", or the socket path for AF_UNIX
    int port = -1;     // -1 for AF_UNIX (ASGI: [path, None]) or unknown
    bool known = false;
};

enum class send_status : uint8_t {
    proceed,  // accepted; the sender may send again now
    wait,     // accepted; wait for event::drain before sending again
    closed,   // the client is gone; nothing was sent (ASGI: raise an OSError subclass)
    error,    // the message breaks a protocol rule; `reason` says which; nothing was sent
};

struct send_result {
    send_status status = send_status::proceed;
    std::string_view reason;  // static string when status == error
};

// The HTTP/2 client connection preface (RFC 9113 §3.4): what a plaintext connection starts with
// when its client speaks HTTP/2 with prior knowledge (h2c).
inline constexpr std::string_view h2_client_preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// An answer the engine gives itself, without the app (the internal endpoints under /-/).
struct internal_reply {
    int status = 200;
    std::string_view content_type = "text/plain; charset=utf-8";
    std::string body;
};

// Events the protocol side posts to the app side (bit flags, coalesced until delivered).
enum event : uint8_t {
    ev_request = 1,     // the request head is complete: start the app
    ev_body = 2,        // more request body arrived, or it is complete
    ev_drain = 4,       // output fell below the low-water mark: a waiting send may proceed
    ev_disconnect = 8,  // the client is gone (or the exchange was aborted)
    ev_message = 16,    // WebSocket: whole messages wait in exchange::ws_inbox
};

// A whole WebSocket message (reassembled, decompressed, UTF-8 checked when text).
struct ws_message {
    bool text = false;
    std::string data;
};

class exchange;

// What the protocol implements for the app side's calls (see the backpressure contract above).
class response_sink {
  public:
    struct head {
        int status;
        std::span<const field> headers;
        std::string_view reason = {};  // the app's reason phrase (WSGI); empty: the standard one
        // Trailers follow the body (ASGI http.response.trailers, HTTP/2 only): the body's last
        // send() does not end the response; send_trailers() with `more` false does.
        bool trailers = false;
    };
    // Sends the response head (first call only: `h` non-null) and/or body bytes. `more` false
    // completes the response. A head with `more` false and no content-length gets one from
    // `body.size()`; a head with `more` true and no content-length is sent chunked (HTTP/1.1).
    virtual send_result send(exchange& ex, const head* h, std::string_view body, bool more) = 0;
    // `len` bytes of the file `fd` from `offset` as response body (with the head when `h` is
    // non-null), sent zero-copy where the transport can (sendfile). Takes ownership of `fd`,
    // whatever the result. The same rules and answers as send(), with `len` as the body size;
    // the file must not shrink meanwhile (the connection is closed if it does).
    // (A protocol without a response body of its own, WebSocket, answers closed.)
    virtual send_result send_file(exchange& ex, const head* h, int fd, uint64_t offset,
                                  uint64_t len, bool more) {
        (void)ex, (void)h, (void)offset, (void)len, (void)more;
        ::close(fd);
        return {send_status::closed, {}};
    }
    // Trailer fields after the body (the head said `trailers`; HTTP/2). `more` false ends the
    // response. proceed / closed / error (an invalid field; nothing was sent).
    virtual send_result send_trailers(exchange& ex, std::span<const field> fields, bool more) {
        (void)ex, (void)fields, (void)more;
        return {send_status::closed, {}};
    }
    // The app failed: after a head was sent, close the connection; before, the caller sends a
    // 500 through send() instead.
    virtual void abort(exchange& ex) = 0;
    // The app took buffered body bytes, or wants some: send 100 Continue if it is owed, and read.
    virtual void want_body(exchange& ex) = 0;

    // ---- WebSocket ----
    // The app accepts a WebSocket handshake (exchange::websocket): the protocol answers 101 with
    // `subprotocol` (empty: none; else one the client offered) and the app's extra `headers`,
    // and once that is written hands the connection to the WebSocket protocol, rebinds the
    // exchange to it and posts ev_drain. So: wait (then ev_drain: send messages now, or
    // ev_disconnect: the client left first), error (a subprotocol the client did not offer, a
    // header the server sets itself or an invalid one; nothing was sent), or closed.
    virtual send_result ws_accept(exchange& ex, std::string_view subprotocol,
                                  std::span<const field> headers) {
        (void)ex, (void)subprotocol, (void)headers;
        return {send_status::closed, {}};
    }
    // Once the app accepted the upgrade and the owner rebound the exchange to the WebSocket
    // protocol (ws::connection; HTTP/2's extended CONNECT later):
    // One message (text: valid UTF-8, the caller checked). proceed / wait (wait for ev_drain) /
    // closed (the WebSocket is closing or gone: ASGI raises an OSError subclass).
    virtual send_result ws_send(exchange& ex, bool text, std::string_view data) {
        (void)ex, (void)text, (void)data;
        return {send_status::closed, {}};
    }
    // The app closes (code 1000 and up, reason at most 123 bytes of UTF-8: the sink truncates).
    virtual void ws_close(exchange& ex, uint16_t code, std::string_view reason) {
        (void)ex, (void)code, (void)reason;
    }
    // The app took messages out of ws_inbox: reading may resume below --ws-max-queue.
    virtual void ws_taken(exchange& ex) { (void)ex; }

  protected:
    ~response_sink() = default;
};

// One response for the access log, collected by the engine as it ends (answered, failed or cut
// short) and for every answer the engine gives itself. Either `ex` is set (a request that reached
// the app: its request line, client and headers are read from it, so nothing is copied), or the
// few fields known of the request are copied here (an engine answer: 400, 408, 413, 414, 431,
// 503, 505, the /-/ endpoints; the method and target are empty when the head never parsed).
struct access_record {
    std::shared_ptr<exchange> ex;
    endpoint client;                // without `ex`
    std::string method;             // without `ex`
    std::string target;             // without `ex`
    std::string user_agent;         // without `ex`
    std::string request_id;         // without `ex`: X-Request-ID
    std::string_view http_version;  // without `ex`: static text ("1.1"), empty if unknown
    int status = 0;                 // 0: the connection closed before a response started
    uint64_t bytes = 0;             // response body bytes that went out
    uint64_t duration_us = 0;       // from the complete head to the end of the response
    bool cut_short = false;         // the response did not complete
};

// Collects exchanges with undelivered events, and access records; drained by the engine's owner
// (the bridge) after each phase.
class event_queue {
  public:
    void push(std::shared_ptr<exchange> ex) { items_.push_back(std::move(ex)); }
    bool empty() const noexcept { return items_.empty(); }
    // Moves the queued exchanges out (the caller delivers their events).
    std::vector<std::shared_ptr<exchange>> take() { return std::exchange(items_, {}); }

    // ---- access log (off unless the owner turns it on: then nothing is collected) ----
    void set_access_log(bool on) noexcept { access_log_ = on; }
    bool access_log() const noexcept { return access_log_; }
    void log(access_record&& r) {
        if (access_log_) records_.push_back(std::move(r));
    }
    // An answer the engine gave without an app (the protocol calls this as it queues it): the
    // method, target and version are empty when the head never parsed; `user_agent` and
    // `request_id` are the request's User-Agent and X-Request-ID fields, if it had them.
    void log_answer(const endpoint& client, std::string_view method, std::string_view target,
                    std::string_view http_version, int status, uint64_t body_bytes,
                    std::string_view user_agent = {}, std::string_view request_id = {}) {
        if (!access_log_) return;
        access_record r;
        r.client = client;
        r.method.assign(method);
        r.target.assign(target);
        r.user_agent.assign(user_agent);
        r.request_id.assign(request_id);
        r.http_version = http_version;
        r.status = status;
        r.bytes = body_bytes;
        records_.push_back(std::move(r));
    }
    bool has_records() const noexcept { return !records_.empty(); }
    // Swaps the collected records into `out` (emptied first): both vectors keep their capacity,
    // so a steady stream of batches allocates nothing here.
    void take_records(std::vector<access_record>& out) {
        out.clear();
        out.swap(records_);
    }

  private:
    std::vector<std::shared_ptr<exchange>> items_;
    std::vector<access_record> records_;
    bool access_log_ = false;
};

class exchange : public std::enable_shared_from_this<exchange> {
  public:
    exchange(event_queue& queue, response_sink* sink) : queue_(&queue), sink_(sink) {}

    // ---- the request (immutable once ev_request is posted) ----
    std::string_view method;
    std::string_view target;        // raw request-target
    std::string_view http_version;  // "1.0", "1.1", "2"
    std::string_view scheme = "http";
    std::vector<field> headers;  // views into `head_storage`
    std::string head_storage;    // owns the bytes of the request head
    // Copies, not pointers into the connection: the app side may build the scope (or log the
    // access line) after the connection is gone.
    endpoint client;
    endpoint server;
    std::shared_ptr<const tls::info> tls;  // set on TLS connections only
    bool expect_continue = false;
    bool has_body = false;       // the request announced a body (CL > 0 or chunked)
    bool client_closed = false;  // the client half-closed: it will send nothing more
    // The client cancelled the request (HTTP/2 RST_STREAM) before the app side saw it: posted
    // with ev_disconnect; the app side never starts such a request.
    bool cancelled = false;
    uint32_t stream_id = 0;  // HTTP/2: the stream that carries it (the protocol's own use)

    // ---- request body (protocol appends, app takes) ----
    std::string body;  // decoded bytes not yet taken by the app
    bool body_complete = false;

    // ---- WebSocket ----
    // A valid WebSocket handshake (RFC 6455 §4.2.1, checked by the protocol): the app answers it
    // with ws_accept(), or with an HTTP response through send() (a denial; the connection then
    // closes after it).
    bool websocket = false;
    // Sec-WebSocket-Protocol: the client's subprotocols in its order (views into head_storage).
    std::vector<std::string_view> ws_subprotocols;
    // After the accept (protocol appends and posts ev_message; app takes, then ws_taken()):
    // A list, not a deque: libstdc++'s deque allocates ~600 bytes as it is constructed, for
    // every HTTP request too; a list allocates only per message.
    std::list<ws_message> ws_inbox;
    // With ev_disconnect after the accept: the client's close code (1005: its close frame had
    // none; 1006: the connection dropped without one; 1001: the server is shutting down) and
    // reason.
    uint16_t ws_close_code = 0;
    std::string ws_close_reason;

    // The app announced response trailers (http.response.start "trailers"; HTTP/2 only): the
    // app side's bookkeeping, its last body does not complete the response.
    bool trailers = false;

    // ---- response accounting (for the access log) ----
    int status = 0;
    uint64_t bytes_sent = 0;  // body bytes handed to the connection (less what never went out)
    bool response_complete = false;
    // The connection closed with part of a complete response still unwritten (HTTP/1.1).
    bool cut_short = false;
    // When the request head was complete (core::now_us()): set by the protocol, or by the app
    // side as the app starts when the protocol did not (0).
    uint64_t started_us = 0;
    // The response is a Server-Sent Events stream (content-type text/event-stream; the app side
    // notes it): a graceful shutdown tells its app at once that the client is gone.
    bool event_stream = false;
    // Response fields the access log format names (%({name}o)s), in its order; the app side
    // fills it as it sends the head (nullopt: the response had no such field).
    std::vector<std::optional<std::string>> logged_fields;

    // ---- events ----
    void post(uint8_t ev) {
        bool was_idle = events_ == 0;
        events_ |= ev;
        if (was_idle) queue_->push(shared_from_this());
    }
    uint8_t take_events() noexcept { return std::exchange(events_, 0); }

    // ---- app-side calls ----
    send_result send(const response_sink::head* h, std::string_view data, bool more) {
        if (!sink_) return {send_status::closed, {}};
        return sink_->send(*this, h, data, more);
    }
    send_result send_file(const response_sink::head* h, int fd, uint64_t offset, uint64_t len,
                          bool more);
    send_result send_trailers(std::span<const field> fields, bool more) {
        if (!sink_) return {send_status::closed, {}};
        return sink_->send_trailers(*this, fields, more);
    }
    void abort() {
        if (sink_) sink_->abort(*this);
    }
    // The app took everything in `body`: clear it and let the protocol read more.
    void body_taken() {
        body.clear();
        if (sink_) sink_->want_body(*this);
    }
    // The app waits for body bytes: send 100 Continue if it is owed, and read.
    void want_body() {
        if (sink_) sink_->want_body(*this);
    }
    bool connected() const noexcept { return sink_ != nullptr; }

    // ---- WebSocket app-side calls (see response_sink) ----
    send_result ws_accept(std::string_view subprotocol, std::span<const field> headers) {
        if (!sink_) return {send_status::closed, {}};
        return sink_->ws_accept(*this, subprotocol, headers);
    }
    send_result ws_send(bool text, std::string_view data) {
        if (!sink_) return {send_status::closed, {}};
        return sink_->ws_send(*this, text, data);
    }
    void ws_close(uint16_t code, std::string_view reason) {
        if (sink_) sink_->ws_close(*this, code, reason);
    }
    void ws_taken() {
        if (sink_) sink_->ws_taken(*this);
    }

    // ---- protocol-side ----
    void detach() noexcept { sink_ = nullptr; }
    // The owner hands the exchange to the protocol that carries on after an upgrade.
    void rebind(response_sink* sink) noexcept { sink_ = sink; }

    // An opaque handle the app side keeps here (the bridge's Python object, borrowed).
    void* app_handle = nullptr;

  private:
    event_queue* queue_;
    response_sink* sink_;
    uint8_t events_ = 0;
};

inline send_result exchange::send_file(const response_sink::head* h, int fd, uint64_t offset,
                                       uint64_t len, bool more) {
    if (!sink_) {
        ::close(fd);
        return {send_status::closed, {}};
    }
    return sink_->send_file(*this, h, fd, offset, len, more);
}

}  // namespace coachwhip::http
