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

#include <cstddef>

namespace coachwhip::core {

class transport {
  public:
    virtual ssize_t read(char* buf, size_t len) = 0;
    virtual ssize_t writev(const iovec* iov, int iovcnt, bool fin_next) = 0;
    virtual void shutdown_write() = 0;
    virtual void close() = 0;
    virtual void abort() { close(); }

  protected:
    ~transport() = default;
};

}  // namespace coachwhip::core
