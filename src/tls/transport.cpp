#include "tls/transport.hpp"

#include <openssl/err.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <memory>

namespace coachwhip::tls {

namespace {

// One TLS record's worth of plaintext: smaller writes are gathered into one record (a response
// head and a small body go out as one record, one system call).
constexpr size_t k_record = 16 * 1024;
// Ciphertext held back within one writev to go out with its last record: four full records
// (with room for any suite's record overhead), so a write goes to the socket in pieces of up
// to 80 KiB, one system call where there were five. (HTTP/2 offers ~64-80 KiB per writev.)
// Larger is not better: with sixteen, HTTP/1.1 1 MiB downloads cost us 13% less CPU but wrk
// 39% more, and fewer got through (bench/NOTES.md, "TLS records batched").
constexpr size_t k_batch = 4 * (k_record + 512);

// The thread's spare batch buffer: a connection takes it when it starts holding bytes and gives
// it back once they are all written, so idle connections hold none and no call allocates.
std::string& spare_batch() {
    thread_local std::string spare;
    return spare;
}

std::string last_reason() {
    const unsigned long code = ERR_peek_last_error();
    const char* reason = code ? ERR_reason_error_string(code) : nullptr;
    ERR_clear_error();
    return reason ? reason : "";
}

}  // namespace

void transport::begin_io_phase() noexcept { ERR_clear_error(); }

BIO_METHOD* transport::bio_method() {
    // Made once and never changed after: shared by every connection of the process.
    static BIO_METHOD* const method = [] {
        BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "coachwhip");
        BIO_meth_set_read(m, bio_read);
        BIO_meth_set_write(m, bio_write);
        BIO_meth_set_ctrl(m, bio_ctrl);
        return m;
    }();
    return method;
}

transport::transport(std::shared_ptr<const context> ctx, core::transport& lower)
    : ctx_(std::move(ctx)), lower_(lower) {
    ssl_ = SSL_new(ctx_->native());
    BIO* bio = BIO_new(bio_method());
    BIO_set_data(bio, this);
    BIO_set_init(bio, 1);
    SSL_set_bio(ssl_, bio, bio);  // the SSL owns the BIO (one reference for both directions)
    SSL_set_accept_state(ssl_);
}

transport::~transport() { SSL_free(ssl_); }

int transport::bio_read(BIO* b, char* buf, int len) {
    auto* self = static_cast<transport*>(BIO_get_data(b));
    BIO_clear_retry_flags(b);
    ssize_t n;
    if (!self->preload_.empty()) {
        n = static_cast<ssize_t>(std::min(self->preload_.size(), static_cast<size_t>(len)));
        std::memcpy(buf, self->preload_.data(), static_cast<size_t>(n));
        self->preload_.erase(0, static_cast<size_t>(n));
    } else {
        n = self->lower_.read(buf, static_cast<size_t>(len));
        self->drained_ = n == -EAGAIN || (n > 0 && n < len);
    }
    if (n > 0 && self->first_read_) {
        self->first_read_ = false;
        // A TLS connection starts with a handshake record (0x16); an HTTP request with a method
        // in capitals. Tell the owner, who answers in plain HTTP, as nginx does.
        if (buf[0] >= 'A' && buf[0] <= 'Z') {
            self->plain_http_ = true;
            return -1;
        }
    }
    if (n >= 0) return static_cast<int>(n);
    if (n == -EAGAIN || n == -EWOULDBLOCK || n == -EINTR) {
        BIO_set_retry_read(b);
    } else {
        self->lower_errno_ = static_cast<int>(-n);
    }
    return -1;
}

int transport::bio_write(BIO* b, const char* buf, int len) {
    auto* self = static_cast<transport*>(BIO_get_data(b));
    BIO_clear_retry_flags(b);
    const auto size = static_cast<size_t>(len);
    if (self->batching_ && self->held() + size <= k_batch) {
        self->hold(buf, size);
        return len;
    }
    // The last record of a writev, a full batch, or a record from outside writev (an alert, a
    // handshake message): it goes out now, after what is held.
    const ssize_t n = self->send_held(buf, size);
    if (n > 0) return static_cast<int>(n);
    if (n == 0 || n == -EAGAIN || n == -EWOULDBLOCK || n == -EINTR) {
        BIO_set_retry_write(b);
    } else {
        self->lower_errno_ = static_cast<int>(-n);
    }
    return -1;
}

long transport::bio_ctrl(BIO* b, int cmd, long, void*) {
    if (cmd != BIO_CTRL_FLUSH) return 0;
    // Held bytes exist only after a blocked write, which OpenSSL has already been told about;
    // a flush after a post-handshake message still must not claim they are out.
    auto* self = static_cast<transport*>(BIO_get_data(b));
    if (self->held() == 0) return 1;
    BIO_clear_retry_flags(b);
    const ssize_t n = self->send_held(nullptr, 0);
    if (self->held() == 0) return 1;
    if (n >= 0 || n == -EAGAIN || n == -EWOULDBLOCK || n == -EINTR)
        BIO_set_retry_write(b);
    else
        self->lower_errno_ = static_cast<int>(-n);
    return 0;
}

void transport::hold(const char* record, size_t len) {
    if (out_.capacity() < k_batch) {
        out_.swap(spare_batch());
        out_.reserve(k_batch);
    }
    out_.append(record, len);
}

ssize_t transport::send_held(const char* record, size_t len) {
    iovec iov[2];
    int cnt = 0;
    const size_t held_before = held();
    if (held_before) iov[cnt++] = {out_.data() + out_off_, held_before};
    if (len) iov[cnt++] = {const_cast<char*>(record), len};
    if (cnt == 0) return 0;
    const ssize_t n = lower_.writev(iov, cnt, false);
    if (n < 0) return n;
    const auto sent = static_cast<size_t>(n);
    if (sent < held_before) {
        out_off_ += sent;
        return 0;
    }
    if (held_before) release_held();
    return static_cast<ssize_t>(sent - held_before);
}

void transport::release_held() noexcept {
    out_.clear();
    out_off_ = 0;
    std::string& spare = spare_batch();
    if (spare.capacity() < out_.capacity()) spare.swap(out_);
    std::string().swap(out_);  // an idle connection keeps no buffer
}

transport::handshake_result transport::handshake() {
    if (established_) return handshake_result::done;
    ERR_clear_error();
    const int r = SSL_do_handshake(ssl_);
    if (r == 1) {
        established_ = true;
        return handshake_result::done;
    }
    const int err = SSL_get_error(ssl_, r);
    if (plain_http_) {
        ERR_clear_error();  // see the header: nothing may stay in the queue after a failure
        return handshake_result::plain_http;
    }
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return handshake_result::again;
    failure_ = last_reason();
    if (failure_.empty())
        failure_ = lower_errno_ ? std::strerror(lower_errno_) : "the client closed the connection";
    return handshake_result::failed;
}

ssize_t transport::read(char* buf, size_t len) {
    read_wants_write_ = false;
    if (!established_) {
        const handshake_result h = handshake();
        if (h == handshake_result::again) return -EAGAIN;
        if (h != handshake_result::done) return -ECONNRESET;
    }
    // The socket had no more bytes at the last read of this readiness event and the TLS layer
    // holds none: the read would end in an EAGAIN from recv(); skip the system call.
    if (drained_ && short_read_drains_ && !SSL_has_pending(ssl_)) return -EAGAIN;
    const int n = SSL_read(ssl_, buf, static_cast<int>(std::min<size_t>(len, INT_MAX)));
    if (n > 0) return n;
    switch (SSL_get_error(ssl_, n)) {
        case SSL_ERROR_ZERO_RETURN:  // close_notify, or EOF (IGNORE_UNEXPECTED_EOF)
            ERR_clear_error();
            return 0;
        case SSL_ERROR_WANT_READ: return -EAGAIN;
        case SSL_ERROR_WANT_WRITE: read_wants_write_ = true; return -EAGAIN;
        case SSL_ERROR_SYSCALL: ERR_clear_error(); return lower_errno_ ? -lower_errno_ : 0;
        default: ERR_clear_error(); return -EPROTO;  // a bad record or an alert
    }
}

ssize_t transport::writev(const iovec* iov, int iovcnt, bool) {
    write_wants_read_ = false;
    if (!established_) return -EAGAIN;  // the protocol answers only after reading a request
    // Held ciphertext goes first; while the socket refuses it, encrypting more would only
    // grow what waits (and the caller offers these bytes again: nothing of them was taken).
    if (held()) {
        const ssize_t n = send_held(nullptr, 0);
        if (n < 0 && n != -EAGAIN && n != -EWOULDBLOCK && n != -EINTR) return n;
        if (held()) return -EAGAIN;
    }
    size_t total = 0;
    for (int i = 0; i < iovcnt; ++i)
        total += iov[i].iov_len;
    // SSL_write takes one buffer and, in partial-write mode, returns after each record: loop
    // until everything offered is written or the socket is full. (Returning after one record
    // would look like a full socket to the caller, who would then wait for an EPOLLOUT that
    // never comes.)
    size_t done = 0;
    int i = 0;       // the cursor: iov[i], `off` bytes in
    size_t off = 0;  // (iovecs of length 0 are skipped as the cursor advances)
    while (done < total) {
        while (off == iov[i].iov_len)
            ++i, off = 0;
        // Offer one record's worth at least, and never less than a retry must (see the header).
        const size_t want = std::max(std::min(total - done, k_record), pending_);
        const char* data = static_cast<const char*>(iov[i].iov_base) + off;
        size_t len = std::min(iov[i].iov_len - off, want);
        if (len < want) {
            // One scratch buffer per thread, not per connection: an idle connection keeps no
            // 16 KiB around, and SSL_write has copied the bytes into a record when it returns
            // (a retry may come from another buffer: SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER).
            thread_local std::string gather;
            gather.assign(data, len);
            for (int j = i + 1; j < iovcnt && gather.size() < want; ++j)
                gather.append(static_cast<const char*>(iov[j].iov_base),
                              std::min(iov[j].iov_len, want - gather.size()));
            data = gather.data();
            len = gather.size();
        }
        // The record that ends the offered bytes goes out with the held ones; the others may
        // be held. (A record can only be shorter than `len`, with a smaller negotiated record
        // size: then the last one is sent early, never held.)
        batching_ = done + len < total;
        const int n = SSL_write(ssl_, data, static_cast<int>(std::min<size_t>(len, INT_MAX)));
        batching_ = false;
        if (n <= 0) {
            switch (SSL_get_error(ssl_, n)) {
                case SSL_ERROR_WANT_WRITE: pending_ = len; break;
                case SSL_ERROR_WANT_READ: pending_ = len, write_wants_read_ = true; break;
                case SSL_ERROR_SYSCALL:
                    ERR_clear_error();
                    return done           ? static_cast<ssize_t>(done)
                           : lower_errno_ ? -lower_errno_
                                          : -EPIPE;
                default: ERR_clear_error(); return done ? static_cast<ssize_t>(done) : -EPROTO;
            }
            return done ? static_cast<ssize_t>(done) : -EAGAIN;
        }
        pending_ = 0;
        done += static_cast<size_t>(n);
        // Advance the cursor by n bytes.
        for (size_t skip = static_cast<size_t>(n); skip > 0;) {
            const size_t step = std::min(skip, iov[i].iov_len - off);
            off += step, skip -= step;
            if (off == iov[i].iov_len && skip > 0) ++i, off = 0;
        }
    }
    return static_cast<ssize_t>(done);
}

ssize_t transport::send_file(int fd, uint64_t offset, size_t len) {
    if (len == 0) return 0;
    // Held bytes the socket still refuses: say so before reading the file.
    if (held()) {
        const ssize_t n = send_held(nullptr, 0);
        if (n < 0 && n != -EAGAIN && n != -EWOULDBLOCK && n != -EINTR) return n;
        if (held()) return -EAGAIN;
    }
    // A batch and the record that goes with it (one system call); a thread's buffer, as the
    // bytes are encrypted (copied) before writev returns.
    constexpr size_t block = k_batch + k_record;
    thread_local std::unique_ptr<char[]> buf;
    if (!buf) buf = std::make_unique<char[]>(block);
    const ssize_t r = ::pread(fd, buf.get(), std::min(len, block), static_cast<off_t>(offset));
    if (r < 0) return -errno;
    if (r == 0) return -EIO;
    const iovec v{buf.get(), static_cast<size_t>(r)};
    return writev(&v, 1, false);
}

void transport::send_close_notify() {
    // Bytes held after a blocked write first, best effort: they are whole records the client
    // can still read. (After such a write OpenSSL keeps its close_notify until its own pending
    // record is out, which it never will be: the client sees the end as a cut, as before.)
    if (held()) send_held(nullptr, 0);
    if (!established_ || (SSL_get_shutdown(ssl_) & SSL_SENT_SHUTDOWN)) return;
    ERR_clear_error();
    SSL_shutdown(ssl_);  // non-blocking, best effort; the client's close_notify is not waited for
    ERR_clear_error();
}

void transport::shutdown_write() {
    send_close_notify();
    lower_.shutdown_write();
}

void transport::close() {
    // RFC 8446 §6.1: close_notify before closing, so the client can tell the end from a cut.
    send_close_notify();
    lower_.close();
}

}  // namespace coachwhip::tls
