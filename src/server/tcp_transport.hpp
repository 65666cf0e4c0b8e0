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
    ssize_t read(char* buf, size_t len) override;
    ssize_t writev(const iovec* iov, int iovcnt, bool fin_next) override;
    ssize_t send_file(int fd, uint64_t offset, size_t len) override;
    void shutdown_write() override;
    void close() override;
    void abort() override;

  private:
    int fd_;
    metrics::block* m_;
};

}  // namespace coachwhip::server
