// coachwhip::bridge::wsgi — the hand-over between the engine thread and the WSGI threads.
//
// Why: a WSGI app blocks (it reads its body, it sleeps, it queries a database), so it cannot
// run on the engine's thread. Each request becomes a `call` that one of N Python threads runs
// (call.cpp); the engine thread never waits on them, and they never touch the engine.
//
// The two sides meet only here, under one mutex:
//
//   engine thread                                   WSGI thread (one per running call)
//   -------------                                   ----------------------------------
//   submit(ex): a new call, queued -------------->  take(): the next call (blocks, GIL released)
//   ev_body/ev_drain/ev_disconnect: deliver()   -->  body, send credit, `gone` (cv wakes it)
//   on_io() (the eventfd): run the commands     <--  post(): head/body/final/abort/500 commands,
//     against the exchange; drop the call once          want_body; the eventfd is written once
//     its final command has run                         per batch (see "Batches" below)
//
// Lifetimes: the engine side owns each live call together with its http::exchange (`live_`),
// until the call's final command has run; the thread reads the exchange's request fields
// (immutable once ev_request was posted) only before it posts that command. A call object is
// shared (shared_ptr) because the Python request object that holds it may outlive both.
//
// Backpressure: the thread posts body commands while fewer than `high_water` bytes wait in
// its call and the sink has not answered `wait`; otherwise it blocks until ev_drain (or the
// client leaves). The request body reaches the thread one engine batch at a time, when it asks
// (a read on wsgi.input), so 100-continue is sent only then and reading stops while it does not.
//
// Waking threads: a thread that finishes a call takes the next one without giving up the GIL
// (try_take), so under load one thread runs hot while the others sleep; handing the GIL from
// thread to thread per request cost more than the request (hello world: 88k req/s with one
// thread, 44k with four, before this rule). A new call wakes a sleeping thread only when no
// thread is awake, and only at the end of the engine's delivery pass (through the eventfd, so
// one wake-up serves every request of the pass); and when the queue has not moved for
// `wake_after_ms` (the awake threads are blocked in the app: a sleep, a query), a 1 ms timer on
// the engine's loop wakes one more.
//
// Batches: while calls are queued, what the threads post does not wake the engine; it leaves
// when the queue runs dry, when `batch_max` calls have output waiting, when a thread is about to
// wait (send credit, body, the next call), or on that timer (armed while calls are queued, so
// at most ~2 ms later). On one core each wake-up of the engine took the core from the WSGI
// thread: twice per request before this (bench wsgi-flask, bench/NOTES.md). Nothing queued:
// the engine is woken at once, so a lone request waits for nothing.
//
// Threading: every member of `call` marked "guarded" is read and written under pool::mu_;
// `engine_*` members belong to the engine thread; `request` is set before the call is queued.
// Nothing in this file touches Python.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "http/exchange.hpp"
#include "loop/loop.hpp"

namespace coachwhip::server {
class server;
}

namespace coachwhip::bridge::wsgi {

// A file descriptor that is closed unless released (a command's file part).
class owned_fd {
  public:
    owned_fd() noexcept = default;
    explicit owned_fd(int fd) noexcept : fd_(fd) {}
    owned_fd(owned_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
    owned_fd& operator=(owned_fd&& o) noexcept {
        if (this != &o) reset(std::exchange(o.fd_, -1));
        return *this;
    }
    ~owned_fd() { reset(); }
    int get() const noexcept { return fd_; }
    int release() noexcept { return std::exchange(fd_, -1); }
    void reset(int fd = -1) noexcept;

  private:
    int fd_ = -1;
};

// What a WSGI thread asks the engine to do with its exchange, in order.
struct command {
    enum kind : uint8_t {
        body,       // (with the head if `status` != 0) `data`; `more` false ends the response
        abort,      // the app failed after the head went out: close the connection (final)
        error_500,  // the app failed before any output: a plain 500 (final)
        done,       // nothing more (the client left; the thread is finished) (final)
    };
    kind what = body;
    bool more = true;
    int status = 0;               // != 0: the head goes with this command
    std::string reason;           // head: the app's reason phrase
    std::vector<std::string> hv;  // head: name0, value0, name1, value1, ...
    std::string data;
    // A file part instead of `data` (wsgi.file_wrapper over a regular file): sent zero-copy.
    owned_fd file;
    uint64_t file_offset = 0;
    uint64_t file_length = 0;
    bool final() const noexcept { return what != body || !more; }
};

struct call {
    // The request, read-only for the thread until it posts its final command.
    const http::exchange* request = nullptr;

    // ---- guarded by pool::mu_ ----
    std::string body;            // request body handed to the thread, not yet taken
    bool body_complete = false;  // nothing follows `body`
    bool gone = false;           // the client left (or the response failed): stop sending
    bool send_waiting = false;   // the sink answered wait; commands stay queued until ev_drain
    bool want_body = false;      // the thread waits for body (engine: ask the exchange)
    bool in_ready = false;       // in pool::ready_
    bool ended = false;          // the final command ran: the engine is done with the call
    std::deque<command> commands;
    size_t queued_bytes = 0;  // body bytes in `commands`
    std::condition_variable cv;

    uint64_t queued_us = 0;  // when it was submitted (core::now_us)

    // ---- engine thread only ----
    bool engine_body_asked = false;  // want_body() was called; hand over on ev_body
};

class pool final : private loop::io_handler {
  public:
    // `high_water`: body bytes a call may queue before its thread waits (the connection's
    // write_high_water). The engine must outlive the pool.
    pool(server::server& engine, size_t high_water);
    ~pool();
    pool(const pool&) = delete;
    pool& operator=(const pool&) = delete;
    // errno from creating or registering the wake-up eventfd, or 0.
    int init_error() const noexcept { return init_errno_; }

    // ---- engine thread ----
    // A new request (its ev_request): queued for the next free thread.
    void submit(const std::shared_ptr<http::exchange>& ex);
    // Engine events for an exchange submitted here (no-op for one whose call has ended).
    void deliver(http::exchange& ex, uint8_t events);
    // Calls submitted and not finished (queued or running).
    size_t live() const noexcept { return live_.size(); }
    // Access records for a WSGI thread to write (moved out; `records` is left empty).
    void post_access(std::vector<http::access_record>& records);
    // The response fields the access log format names (noted as each head is sent). Before
    // the engine thread starts.
    void log_response_fields(std::vector<std::string> names) { logged_fields_ = std::move(names); }

    // ---- WSGI threads (all block with the caller's GIL released by the caller) ----
    // The next call to run; nullptr once stop() was called and the queue is empty, or when
    // access records wait (access_pending()) and no call does.
    std::shared_ptr<call> take();
    // The next call if one is queued now, without waiting (so without giving up the GIL).
    std::shared_ptr<call> try_take();
    // Queues `cmd` for the engine. Waits first while the call's output is over the high-water
    // mark or the sink answered wait. Returns false (nothing queued) when the client is gone,
    // except for a final command, which is always queued.
    bool post(const std::shared_ptr<call>& c, command&& cmd);
    // Waits until body bytes, the end of the body, or the client's departure; moves what
    // arrived into `out` (appended). Returns false when the client left before the body ended.
    bool read_body(const std::shared_ptr<call>& c, std::string& out, bool& complete);
    // Access records are waiting for a thread to write them.
    bool access_pending() const;
    // stop() was called (take() returning nullptr otherwise means access records wait).
    bool stopping() const;
    // Swaps the waiting access records into `out` (emptied first).
    void take_access(std::vector<http::access_record>& out);
    // Wakes every thread waiting in take(); they return nullptr once the queue is empty.
    void stop();
    size_t running() const;  // calls taken by a thread and not finished (for the heartbeat)
    void thread_started();   // a WSGI thread enters its loop / leaves it
    void thread_ended();
    // How long calls have waited with every thread busy and none taken (0: not stalled): for
    // the heartbeat, which stops beating when the threads are all stuck in the app.
    uint64_t stalled_ms() const;

  private:
    void on_io(uint32_t events) override;  // the eventfd: run what the threads posted
    void run_ready();                      // engine thread: the calls in ready_
    void wake_engine();                    // mu_ released: write the eventfd (see signalled_)
    void check_stalled();                  // under mu_: the wake timer's check (on_wake_timer)
    void service(call& c, http::exchange& ex, uint8_t events);
    void finish(call& c);   // engine thread, after mu_ is released
    void wake_one();        // under mu_: a sleeping thread, if any
    void arm_wake_timer();  // engine thread, under mu_
    static void on_wake_timer(void* self);

    server::server& engine_;
    size_t high_water_;
    int efd_ = -1;
    int init_errno_ = 0;
    mutable std::mutex mu_;
    std::condition_variable jobs_cv_;
    std::deque<std::shared_ptr<call>> jobs_;    // guarded
    std::vector<std::shared_ptr<call>> ready_;  // guarded: calls with commands or want_body
    bool signalled_ = false;                    // guarded: eventfd written, ready_ not yet taken
    bool wake_pending_ = false;                 // guarded: submit() owes a wake_one (on_io)
    static constexpr size_t batch_max = 16;     // finished responses held back at most (post)
    bool stopping_ = false;                     // guarded
    size_t running_ = 0;                        // guarded
    size_t threads_ = 0;                        // guarded: threads in their loop
    size_t idle_ = 0;                           // guarded: threads waiting in take()
    size_t waking_ = 0;                         // guarded: notified, not yet out of take()
    uint64_t last_take_us_ = 0;                 // guarded: when a thread last took a call
    std::vector<http::access_record> access_;   // guarded: records for a thread to write
    uint64_t access_since_us_ = 0;              // guarded: when access_ became non-empty
    std::vector<std::string> logged_fields_;    // see log_response_fields (then read-only)
    static constexpr uint64_t wake_after_ms = 1;
    static constexpr uint64_t wake_after_us = 1000 * wake_after_ms;
    loop::timeout_list wake_list_{wake_after_ms};  // engine thread
    loop::timer wake_timer_{on_wake_timer, this};  // engine thread
    struct entry {
        std::shared_ptr<call> c;
        std::shared_ptr<http::exchange> ex;
    };
    std::unordered_map<const call*, entry> live_;  // engine thread only
};

}  // namespace coachwhip::bridge::wsgi
