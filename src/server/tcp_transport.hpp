// coachwhip::server::tcp_transport — core::transport over a connected, non-blocking socket
// (TCP or Unix domain). Owns the fd: closes it in close() or the destructor.
#pragma once

#include "core/transport.hpp"
#include "server/metrics.hpp"

namespace coachwhip::server {

class tcp_transport final : public core::transport {
  public:
    // `counters`: where bytes read and written are counted (the server's metrics block).
    tcp_transport(int fd, metrics::block* counters) noexcept : fd_(fd), m_(counters) {}
    ~tcp_transport();
    tcp_transport(const tcp_transport&) = delete;
    tcp_transport& operator=(const tcp_transport&) = delete;

    int fd() const noexcept { return fd_; }
    // A peer on this machine (loopback, Unix socket): file parts are copied, not sendfile'd.
    // Measured (bench/NOTES.md row 26): to a loopback peer, sendfile(2)'s page-referencing
    // segments cost the reader more than the copy saves the writer (10 MiB file, 64
    // connections: 116-167 req/s with sendfile, 185-283 copying 16-256 KiB blocks).
    void set_local_peer(bool local) noexcept { local_peer_ = local; }
    ssize_t read(char* buf, size_t len) override;
    ssize_t writev(const iovec* iov, int iovcnt, bool fin_next) override;
    ssize_t send_file(int fd, uint64_t offset, size_t len) override;
    void shutdown_write() override;
    void close() override;
    void abort() override;

  private:
    int fd_;
    metrics::block* m_;
    bool local_peer_ = false;
    bool socket_full_ = false;  // the last file block was written short
    bool lowat_set_ = false;    // TCP_NOTSENT_LOWAT is set (the first send_file; see there)
};

}  // namespace coachwhip::server
