// coachwhip::tls::transport — TLS as a layer between a byte-stream transport (the socket) and the
// protocol above it: a core::transport over another core::transport.
//
// The protocol above reads and writes plaintext through the same non-blocking contract as over
// TCP (see core/transport.hpp) and never learns that TLS is there. Records go to and come from
// the lower transport through a BIO of our own, so TLS runs over a socket in the server and over
// an in-memory pipe in the unit tests and fuzzers alike.
//
// States:
//
//   handshaking --handshake() done--> established --shutdown_write()--> close_notify sent
//        |  `--first bytes are plain HTTP--> plain_http (the owner answers 400 and closes)
//        `--alert, garbage, EOF--> failed (the owner closes)
//
// The owner drives the handshake with handshake() on every readiness event until it is done,
// then hands the connection to the protocol. A read or write made while still handshaking
// drives the handshake too (it returns -EAGAIN until it is done).
//
// Readiness: TLS may need the other direction. A read can need to write (a post-handshake
// message to answer while our output is blocked) and report -EAGAIN with read_wants_write():
// the owner calls read again when the socket becomes writable; write_wants_read() likewise.
// SSL holds decrypted bytes the socket no longer shows: a short read does not mean the socket
// is drained, so the protocol must read until -EAGAIN.
//
// OpenSSL's error queue is per thread and must be empty before each SSL call whose result is
// checked with SSL_get_error. Clearing it before every read and write costs more than the
// record layer itself on a small request, so the owner calls begin_io_phase() before a batch of
// TLS work on the thread (nothing else runs on it in between), and every failure path here
// leaves the queue empty again.
//
// Write retries (OpenSSL's rule): after -EAGAIN, the next writev must offer at least the bytes
// it offered before, starting with the same ones; the http1 output queue does exactly that.
//
// Records leave in batches: OpenSSL hands the BIO one record (16 KiB at most) at a time, and a
// system call per record cost more CPU than the cipher (each send on loopback is a TCP push
// and a wake-up of the reader; 1 MiB over HTTP/2: 73 sendmsg, 709 µs of server CPU, against
// 24 and 486 batched). So within one writev the records are held in a buffer (up to four) and
// the call's last record goes out with them in one writev(2), straight from OpenSSL's buffer. When
// the socket takes only part, the rest stays held (OpenSSL counts it as written) and writev reports
// a short count or -EAGAIN as the socket would; the next writev sends the held bytes before
// anything else, and returns -EAGAIN while the socket refuses them. A writev that returns
// everything it was offered leaves nothing held, so a caller that stops writing strands no bytes.
// The buffer belongs to the connection only while it holds bytes; an idle connection keeps none
// (one spare per thread is reused).
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>

#include "core/transport.hpp"
#include "tls/context.hpp"

namespace coachwhip::tls {

class transport final : public core::transport {
  public:
    enum class handshake_result { done, again, failed, plain_http };

    // `lower` (not owned) must outlive this transport. The context is shared: a certificate
    // reload gives new connections a new one while this one keeps its own.
    transport(std::shared_ptr<const context> ctx, core::transport& lower);
    ~transport();
    transport(const transport&) = delete;
    transport& operator=(const transport&) = delete;

    // Empties the thread's OpenSSL error queue (see above). Call before a batch of I/O.
    static void begin_io_phase() noexcept;
    // For this readiness event, a short read from the socket means it is drained (an
    // edge-triggered stream socket with no EOF pending); reads then stop at what the TLS layer
    // holds instead of asking the socket again. Call before handing a readiness event over.
    void set_short_read_drains(bool drains) noexcept {
        short_read_drains_ = drains;
        drained_ = false;
    }

    // Bytes already read from the socket that belong to TLS (what followed a PROXY header):
    // the handshake reads them first. Before the first handshake().
    void preload(std::string_view bytes) { preload_.assign(bytes); }

    handshake_result handshake();
    bool handshaking() const noexcept { return !established_; }
    // Why the handshake failed (for the debug log), once handshake() said failed.
    const std::string& failure() const noexcept { return failure_; }
    bool read_wants_write() const noexcept { return read_wants_write_; }
    bool write_wants_read() const noexcept { return write_wants_read_; }
    // What the app is told about this connection (after the handshake).
    std::shared_ptr<const info> connection_info() const { return ctx_->connection_info(ssl_); }

    ssize_t read(char* buf, size_t len) override;
    ssize_t writev(const iovec* iov, int iovcnt, bool fin_next) override;
    // Reads up to a batch of the file and writes it as above (the default reads 16 KiB: one
    // record, one system call).
    ssize_t send_file(int fd, uint64_t offset, size_t len) override;
    void shutdown_write() override;
    void close() override;
    void abort() override { lower_.abort(); }  // a reset: no close_notify

  private:
    static int bio_read(BIO* b, char* buf, int len);
    static int bio_write(BIO* b, const char* buf, int len);
    static long bio_ctrl(BIO* b, int cmd, long num, void* ptr);
    static BIO_METHOD* bio_method();
    void send_close_notify();
    // The batch (see the header comment): bytes held, holding a record, and writing the held
    // bytes (then `record`, if any) to the lower transport: the bytes of `record` written
    // (held ones first, so 0 while they are not all gone), or -errno.
    size_t held() const noexcept { return out_.size() - out_off_; }
    void hold(const char* record, size_t len);
    ssize_t send_held(const char* record, size_t len);
    void release_held() noexcept;

    std::shared_ptr<const context> ctx_;
    core::transport& lower_;
    SSL* ssl_ = nullptr;
    std::string failure_;
    std::string preload_;    // see preload()
    size_t pending_ = 0;     // bytes the last SSL_write that would block was offered
    std::string out_;        // ciphertext held: OpenSSL counts it as written, the socket has not
    size_t out_off_ = 0;     // taken it from here on
    bool batching_ = false;  // records may be held (inside writev, but for its last record)
    int lower_errno_ = 0;    // the lower transport's last error, for the log
    bool established_ = false;
    bool short_read_drains_ = false;
    bool drained_ = false;  // the last read from the socket was short or would block
    bool first_read_ = true;
    bool plain_http_ = false;
    bool read_wants_write_ = false;
    bool write_wants_read_ = false;
};

}  // namespace coachwhip::tls
