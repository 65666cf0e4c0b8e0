#include "server/listener.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "core/log.hpp"

namespace coachwhip::server {

listener::listener(loop::event_loop& loop, int fd, accept_fn on_accept,
                   std::function<bool()> may_accept)
    : loop_(loop), fd_(fd), on_accept_(std::move(on_accept)), may_accept_(std::move(may_accept)) {}

listener::~listener() { stop(); }

int listener::start() {
    int err = loop_.add(fd_, this, EPOLLIN);
    registered_ = err == 0;
    return err;
}

void listener::stop() {
    if (registered_) loop_.remove(fd_);
    registered_ = false;
}

void listener::on_io(uint32_t) { resume(); }

void listener::resume() {
    paused_ = false;
    // Edge-triggered: accept until the queue is empty, or we would lose the edge.
    for (int i = 0; i < 1024 && registered_; ++i) {
        if (!may_accept_()) {
            paused_ = true;  // at the connection limit: retried after a connection closes
            return;
        }
        sockaddr_storage peer{};
        socklen_t len = sizeof peer;
        int fd =
            ::accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            on_accept_(fd, peer);
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            // Out of descriptors or memory: stop for now; the server retries on its next tick
            // instead of spinning on a queue it cannot drain.
            core::log(core::log_level::error,
                      std::string("accept() failed: ") + std::strerror(errno) +
                          " (raise the open-files limit with ulimit -n); pausing accepts");
            paused_ = true;
            if (accept_failures) ++*accept_failures;
            return;
        }
        core::log(core::log_level::error, std::string("accept() failed: ") + std::strerror(errno));
        return;
    }
    paused_ = registered_;  // hit the batch bound: more are queued, come back next phase
}

}  // namespace coachwhip::server
