#include "loop/loop.hpp"

#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>

#include "core/clock.hpp"

namespace coachwhip::loop {

timer::~timer() { disarm(); }

void timer::disarm() noexcept {
    if (list_) list_->unlink(*this);
}

void timeout_list::unlink(timer& t) noexcept {
    (t.prev_ ? t.prev_->next_ : head_) = t.next_;
    (t.next_ ? t.next_->prev_ : tail_) = t.prev_;
    t.prev_ = t.next_ = nullptr;
    t.list_ = nullptr;
}

void timeout_list::arm(timer& t, uint64_t now_ms) noexcept {
    if (t.list_) t.list_->unlink(t);
    // Same duration for every entry: the new deadline is the latest, so the tail keeps order.
    t.deadline_ = now_ms + duration_ms_;
    t.list_ = this;
    t.prev_ = tail_;
    (tail_ ? tail_->next_ : head_) = &t;
    tail_ = &t;
}

event_loop::event_loop() {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    tfd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (epfd_ < 0 || tfd_ < 0) {
        init_error_ = {500, "epoll_create1/timerfd_create failed (out of file descriptors?)"};
        return;
    }
    tfd_handler_.loop = this;
    add(tfd_, &tfd_handler_, EPOLLIN);
    update_now();
}

event_loop::~event_loop() {
    if (tfd_ >= 0) close(tfd_);
    if (epfd_ >= 0) close(epfd_);
}

int event_loop::add(int fd, io_handler* h, uint32_t events) noexcept {
    epoll_event ev{};
    ev.events = events | EPOLLET;
    ev.data.ptr = h;
    return epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : errno;
}

int event_loop::modify(int fd, io_handler* h, uint32_t events) noexcept {
    epoll_event ev{};
    ev.events = events | EPOLLET;
    ev.data.ptr = h;
    return epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) == 0 ? 0 : errno;
}

void event_loop::remove(int fd) noexcept { epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr); }

uint64_t event_loop::update_now() noexcept { return now_ms_ = core::now_ms(); }

void event_loop::arm(timer& t, timeout_list& list) noexcept {
    list.arm(t, now_ms_);
    if (t.deadline_ < tfd_deadline_) rearm_timerfd();
}

int event_loop::run_once(int timeout_ms) noexcept {
    epoll_event events[256];
    int n = epoll_wait(epfd_, events, 256, timeout_ms);
    if (n < 0) return errno == EINTR ? 0 : -errno;
    update_now();
    for (int i = 0; i < n; ++i)
        static_cast<io_handler*>(events[i].data.ptr)->on_io(events[i].events);
    return n;
}

void event_loop::timerfd_handler::on_io(uint32_t) {
    uint64_t expirations;
    while (read(loop->tfd_, &expirations, sizeof expirations) > 0) {
    }
    loop->tfd_deadline_ = UINT64_MAX;
    loop->expire_timers();
}

void event_loop::expire_timers() noexcept {
    update_now();
    for (timeout_list* list : lists_) {
        // A callback may disarm or re-arm other timers in this list: always re-read the head.
        while (list->head_ && list->head_->deadline_ <= now_ms_) {
            timer* t = list->head_;
            list->unlink(*t);
            t->cb_(t->ctx_);
        }
    }
    rearm_timerfd();
}

void event_loop::rearm_timerfd() noexcept {
    uint64_t next = UINT64_MAX;
    for (timeout_list* list : lists_)
        next = std::min(next, list->next_deadline());
    if (next == tfd_deadline_ || next == UINT64_MAX) return;  // a stale earlier alarm is harmless
    tfd_deadline_ = next;
    uint64_t delay = next > now_ms_ ? next - now_ms_ : 1;
    itimerspec its{};
    its.it_value.tv_sec = static_cast<time_t>(delay / 1000);
    its.it_value.tv_nsec = static_cast<long>((delay % 1000) * 1000000);
    timerfd_settime(tfd_, 0, &its, nullptr);
}

}  // namespace coachwhip::loop
