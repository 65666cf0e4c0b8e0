// coachwhip::loop — the engine's event loop: epoll (edge-triggered) plus timeout lists.
//
// The engine's loop is nested inside the Python side's asyncio loop: its epoll fd (`fileno()`)
// becomes readable when any engine socket or timer is ready, asyncio calls the bridge, and the
// bridge calls `run_once(0)` with the GIL released. So the engine never blocks, and Python never
// waits on engine sockets one by one.
//
// Timers: every timeout kind has one fixed duration (keep-alive, header read, lingering close),
// so each kind is one `timeout_list` where appending keeps entries sorted by deadline: arming,
// re-arming and disarming are O(1), and expiry looks at list heads only. One timerfd in the epoll
// set is armed for the earliest head.
//
// Threading: one thread owns a loop; nothing here is thread-safe, and nothing here touches Python.
#pragma once

#include <cstdint>
#include <vector>

#include "core/error.hpp"

namespace coachwhip::loop {

// Receives readiness for one fd. `events` is an EPOLL* mask. Called from run_once() only.
class io_handler {
  public:
    virtual void on_io(uint32_t events) = 0;

  protected:
    ~io_handler() = default;
};

// A timer belongs to at most one timeout_list at a time. The owner embeds it and must disarm it
// before it is destroyed (the destructor does so).
struct timer {
    using callback = void (*)(void* ctx);

    timer(callback cb, void* ctx) : cb_(cb), ctx_(ctx) {}
    ~timer();
    timer(const timer&) = delete;
    timer& operator=(const timer&) = delete;

    bool armed() const noexcept { return list_ != nullptr; }
    void disarm() noexcept;

  private:
    friend class timeout_list;
    friend class event_loop;
    callback cb_;
    void* ctx_;
    class timeout_list* list_ = nullptr;
    timer* prev_ = nullptr;
    timer* next_ = nullptr;
    uint64_t deadline_ = 0;
};

class timeout_list {
  public:
    explicit timeout_list(uint64_t duration_ms) : duration_ms_(duration_ms) {}
    timeout_list(const timeout_list&) = delete;
    timeout_list& operator=(const timeout_list&) = delete;

    // (Re)arms `t` to fire `duration_ms` from `now_ms`; moves it to this list's tail.
    void arm(timer& t, uint64_t now_ms) noexcept;
    uint64_t duration_ms() const noexcept { return duration_ms_; }
    void set_duration(uint64_t ms) noexcept { duration_ms_ = ms; }
    // Deadline of the head, or UINT64_MAX when empty.
    uint64_t next_deadline() const noexcept { return head_ ? head_->deadline_ : UINT64_MAX; }

  private:
    friend struct timer;
    friend class event_loop;
    void unlink(timer& t) noexcept;
    uint64_t duration_ms_;
    timer* head_ = nullptr;
    timer* tail_ = nullptr;
};

class event_loop {
  public:
    event_loop();
    ~event_loop();
    event_loop(const event_loop&) = delete;
    event_loop& operator=(const event_loop&) = delete;

    // The epoll fd, or -1 if creation failed (then `init_error()` says why).
    int fileno() const noexcept { return epfd_; }
    core::error init_error() const noexcept { return init_error_; }

    // Registers `fd` edge-triggered for `events` (EPOLLIN|EPOLLOUT|EPOLLRDHUP...). Returns errno
    // on failure, 0 on success. `remove` must be called before the fd is closed.
    int add(int fd, io_handler* h, uint32_t events) noexcept;
    int modify(int fd, io_handler* h, uint32_t events) noexcept;
    void remove(int fd) noexcept;

    // Registers a timeout list (owned by the caller, which must outlive the loop's use of it).
    void add_list(timeout_list* list) { lists_.push_back(list); }
    // Unregisters a list (its timers must be disarmed) before its owner is destroyed.
    void remove_list(timeout_list* list) noexcept { std::erase(lists_, list); }
    void arm(timer& t, timeout_list& list) noexcept;

    // Waits at most `timeout_ms` (0: poll), dispatches ready fds and expired timers.
    // Returns the number of events handled, or -errno.
    int run_once(int timeout_ms) noexcept;

    // Runs expired timers now (also called by run_once when the timerfd fires).
    void expire_timers() noexcept;

    uint64_t now_ms() const noexcept { return now_ms_; }
    uint64_t update_now() noexcept;

  private:
    struct timerfd_handler final : io_handler {
        event_loop* loop = nullptr;
        void on_io(uint32_t) override;
    };
    void rearm_timerfd() noexcept;

    int epfd_ = -1;
    int tfd_ = -1;
    core::error init_error_;
    timerfd_handler tfd_handler_;
    uint64_t tfd_deadline_ = UINT64_MAX;  // what the timerfd is armed for
    uint64_t now_ms_ = 0;
    std::vector<timeout_list*> lists_;
};

}  // namespace coachwhip::loop
