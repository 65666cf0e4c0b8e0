#include "server/tcp_transport.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <utility>

namespace coachwhip::server {

tcp_transport::~tcp_transport() { close(); }

ssize_t tcp_transport::read(char* buf, size_t len) {
    ssize_t n = ::recv(fd_, buf, len, 0);
    if (n < 0) return -errno;
    if (m_) metrics::add(m_->bytes_received, static_cast<uint64_t>(n));
    return n;
}

ssize_t tcp_transport::writev(const iovec* iov, int iovcnt, bool fin_next) {
    // sendmsg rather than writev: MSG_NOSIGNAL turns a write to a closed peer into EPIPE instead
    // of SIGPIPE, without touching the process's signal dispositions. MSG_MORE when the FIN
    // follows: Linux keeps the last segment unsent (corked) and the shutdown()/close() that
    // comes next tacks the FIN onto it and pushes it (tcp_send_fin), so a Connection: close
    // response costs the client one packet less. Every caller that passes fin_next closes or
    // shuts down right after a complete write, which is what uncorks.
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov);
    msg.msg_iovlen = static_cast<size_t>(iovcnt);
    ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL | (fin_next ? MSG_MORE : 0));
    if (n < 0) return -errno;
    if (m_) metrics::add(m_->bytes_sent, static_cast<uint64_t>(n));
    return n;
}

ssize_t tcp_transport::send_file(int fd, uint64_t offset, size_t len) {
    if (!std::exchange(lowat_set_, true)) {
        // At most `lowat` bytes wait unsent in the socket: the next part of the file is written
        // once the client has taken the last. Without it each socket's send buffer (autotuned
        // up to 4 MiB) refilled the client's receive buffer the moment it read, so a client
        // reading 64 connections at once (wrk; a proxy's upstream pool) spent long rounds on
        // the few whose receive windows had grown to 32 MiB, and those whose windows stayed at
        // 128 KiB got 1.2 MB/s against 45 (bench wsgi-file, 64 connections: a p99 of 0.6-3 s
        // against a p50 of 0.2 s). With it every connection got 36-51 MB/s and the p99 fell to
        // 0.4-0.5 s. Bytes in flight are not limited by it, only those not yet sent. Best effort
        // (a Unix socket has no such option).
        const int lowat = 128 * 1024;
        (void)::setsockopt(fd_, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
    }
    if (local_peer_) {
        // One 64 KiB block per call through a buffer of the engine thread's own (row 26). A
        // short write means the socket is full: the next call says so without reading the
        // block again (the EPOLLOUT edge comes once there is room).
        if (std::exchange(socket_full_, false)) return -EAGAIN;
        constexpr size_t block = 64 * 1024;
        static thread_local std::unique_ptr<char[]> buf;
        if (!buf) buf = std::make_unique<char[]>(block);
        const ssize_t r = ::pread(fd, buf.get(), std::min(len, block), static_cast<off_t>(offset));
        if (r < 0) return -errno;
        if (r == 0) return len == 0 ? 0 : -EIO;
        const iovec v{buf.get(), static_cast<size_t>(r)};
        const ssize_t n = writev(&v, 1, false);
        socket_full_ = n >= 0 && n < r;
        return n;
    }
    auto off = static_cast<off_t>(offset);
    ssize_t n = ::sendfile(fd_, fd, &off, len);
    if (n < 0) return -errno;
    if (n == 0 && len > 0) return -EIO;  // the file is shorter than it was said to be
    if (m_) metrics::add(m_->bytes_sent, static_cast<uint64_t>(n));
    return n;
}

void tcp_transport::shutdown_write() {
    if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

void tcp_transport::abort() {
    if (fd_ < 0) return;
    const linger reset{1, 0};  // close() then drops the send queue and sends RST
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    close();
}

void tcp_transport::close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

}  // namespace coachwhip::server
