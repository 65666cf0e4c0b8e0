// coachwhip::core::transport — the byte stream a protocol runs over.
//
// TCP and Unix sockets (server::tcp_transport), TLS over any of them (tls::transport), and
// in-memory pipes in the unit tests and fuzzers implement it. It sits below every protocol:
// HTTP/1.1 runs over it without knowing whether TLS is there. The interface is pull-based to
// fit edge-triggered readiness: the owner tells the connection "readable"/"writable", and the
// connection reads and writes until the transport says it would block.
//
// Contract: non-blocking. `read` returns >0 bytes read, 0 at end of stream, or -errno (-EAGAIN:
// nothing now). `writev` returns bytes written (possibly fewer than offered) or -errno;
// `fin_next` says the caller will shut down or close right after this write if it completes,
// so a stream transport may hold the bytes back for that FIN to travel with them (one packet
// instead of two). `shutdown_write` sends FIN after everything written so far. After `close` no
// call is made. `abort` is a `close` that drops what is still unsent (TCP: a reset), for clients
// cut off for reading too slowly: the bytes they have not taken would otherwise stay in kernel
// buffers, at the pace they choose.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace coachwhip::core {

class transport {
  public:
    virtual ssize_t read(char* buf, size_t len) = 0;
    virtual ssize_t writev(const iovec* iov, int iovcnt, bool fin_next) = 0;
    virtual void shutdown_write() = 0;
    virtual void close() = 0;
    virtual void abort() { close(); }
    // Writes up to `len` bytes of the file `fd` from `offset` (not moving its position):
    // bytes written, or -errno (-EIO when the file ended early). A socket overrides it with
    // sendfile(2), zero copy; this default reads a block and writes it (TLS, in-memory pipes).
    virtual ssize_t send_file(int fd, uint64_t offset, size_t len) {
        if (len == 0) return 0;
        char buf[16384];
        const ssize_t r = ::pread(fd, buf, std::min(len, sizeof buf), static_cast<off_t>(offset));
        if (r < 0) return -errno;
        if (r == 0) return -EIO;
        const iovec v{buf, static_cast<size_t>(r)};
        return writev(&v, 1, false);
    }

  protected:
    ~transport() = default;
};

}  // namespace coachwhip::core
