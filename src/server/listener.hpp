// coachwhip::server::listener — accepts connections on one listening socket.
//
// The socket is created and bound by the Python side (which handles --host/--port, --uds, --fd
// and, later, sockets handed over by a supervisor); the listener only accepts. It does not own
// the fd unless told to: closing a listener stops accepting, and the Python side closes its
// socket object (and removes a Unix socket file).
#pragma once

#include <sys/socket.h>

#include <functional>

#include "loop/loop.hpp"

namespace coachwhip::server {

class listener final : public loop::io_handler {
  public:
    // `on_accept(fd, peer)` receives each accepted, non-blocking, close-on-exec socket and
    // the peer's address as accept4() reported it (no getpeername() call per connection).
    // While `may_accept()` is false (the connection limit), connections wait in the kernel's
    // queue.
    using accept_fn = std::function<void(int, const sockaddr_storage&)>;
    listener(loop::event_loop& loop, int fd, accept_fn on_accept, std::function<bool()> may_accept);
    ~listener();
    listener(const listener&) = delete;
    listener& operator=(const listener&) = delete;

    int start();  // registers with the loop; returns 0 or errno
    void stop();  // deregisters; pending connections stay in the kernel's queue
    void on_io(uint32_t events) override;
    void resume();  // try accepting again (after EMFILE back-off)
    bool paused() const noexcept { return paused_; }
    // Counted each time accept() fails for want of descriptors or memory (optional).
    uint64_t* accept_failures = nullptr;

  private:
    loop::event_loop& loop_;
    int fd_;
    bool registered_ = false;
    bool paused_ = false;
    accept_fn on_accept_;
    std::function<bool()> may_accept_;
};

}  // namespace coachwhip::server
