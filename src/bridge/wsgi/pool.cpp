#include "bridge/wsgi/pool.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "bridge/access_log.hpp"
#include "core/clock.hpp"
#include "core/log.hpp"
#include "server/server.hpp"

namespace coachwhip::bridge::wsgi {

namespace {

// The plain 500 for an app that failed before any output (as the ASGI bridge answers it).
void send_500(http::exchange& ex) {
    static constexpr http::field fields[] = {{"content-type", "text/plain; charset=utf-8"},
                                             {"connection", "close"}};
    http::response_sink::head h{500, fields};
    http::send_result r = ex.send(&h, "Internal Server Error", false);
    if (r.status != http::send_status::proceed && r.status != http::send_status::wait) ex.abort();
}

}  // namespace

void owned_fd::reset(int fd) noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

pool::pool(server::server& engine, size_t high_water) : engine_(engine), high_water_(high_water) {
    efd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd_ < 0) {
        init_errno_ = errno;
        return;
    }
    init_errno_ = engine_.add_io(efd_, this);
    engine_.event_loop().add_list(&wake_list_);
}

pool::~pool() {
    wake_timer_.disarm();
    engine_.event_loop().remove_list(&wake_list_);
    if (efd_ >= 0) {
        engine_.remove_io(efd_);
        ::close(efd_);
    }
    std::lock_guard lk(mu_);
    stopping_ = true;
    for (auto& [_, e] : live_) {
        e.c->gone = true;
        e.c->cv.notify_all();
        e.ex->app_handle = nullptr;
    }
    jobs_cv_.notify_all();
}

// ---------------------------------------------------------------- engine thread

void pool::submit(const std::shared_ptr<http::exchange>& ex) {
    auto c = std::make_shared<call>();
    c->request = ex.get();
    if (ex->started_us == 0) ex->started_us = core::now_us();  // (HTTP/2: for the access log)
    c->queued_us = core::now_us();
    ex->app_handle = c.get();
    // Body bytes that came with the head go with the call: a small POST is read without a
    // round trip to this thread (bench wsgi-upload, 16 KiB: one hand-over instead of two).
    // Nothing is asked for here, so 100 Continue still waits for the app's first read.
    if (ex->has_body && (!ex->body.empty() || ex->body_complete)) {
        c->body.swap(ex->body);
        c->body_complete = ex->body_complete;
        ex->body_taken();  // empty now: the protocol reads on
    }
    live_.emplace(c.get(), entry{c, ex});
    bool signal = false;
    {
        std::lock_guard lk(mu_);
        jobs_.push_back(std::move(c));
        // Nobody awake to take it: a thread is woken, but only once this delivery pass is over
        // (on_io, through our own eventfd). Woken here, it would take the core from the engine
        // at once, run this one call, find the queue empty and sleep, once per request of the
        // pass (bench wsgi-hello: 0.6 switches per request and 67k req/s, against 130k).
        if (idle_ - waking_ == threads_) {
            wake_pending_ = true;
            if (!signalled_) signal = signalled_ = true;
        }
        arm_wake_timer();
    }
    if (signal) wake_engine();
}

void pool::wake_one() {
    if (idle_ <= waking_) return;
    ++waking_;
    jobs_cv_.notify_one();
}

// Armed whenever calls are queued, idle threads or not: post() holds finished responses back
// only while calls are queued, and this timer is what bounds how long they wait (a thread that
// took the next call may block in it).
void pool::arm_wake_timer() {
    if ((!jobs_.empty() || (!access_.empty() && idle_ > waking_)) && !wake_timer_.armed())
        engine_.event_loop().arm(wake_timer_, wake_list_);
}

// The queue has not moved for wake_after_ms while threads sleep: the awake ones are blocked
// in the app, so one more thread starts on the queue (or writes the access records waiting).
// Also sends the responses post() held back (see there), if the engine was not woken since.
void pool::on_wake_timer(void* self) {
    auto* p = static_cast<pool*>(self);
    bool held = false;
    {
        std::lock_guard lk(p->mu_);
        held = !p->ready_.empty() && !p->signalled_;
        p->check_stalled();
    }
    if (held) p->run_ready();
}

void pool::check_stalled() {
    if (jobs_.empty() && access_.empty()) return;
    // Microseconds: the timer itself is coarse (it may fire just after a millisecond boundary),
    // and a millisecond clock here woke a second thread behind one that had taken a call a few
    // microseconds before, so a busy thread and a woken one then traded the GIL.
    const uint64_t now = core::now_us();
    if ((!jobs_.empty() && now - last_take_us_ >= wake_after_us) ||
        (!access_.empty() && now - access_since_us_ >= wake_after_us))
        wake_one();
    arm_wake_timer();
}

// The access records of a batch: a thread writes them between calls. As for a new call, one is
// woken only when none is awake (an awake thread takes them after its current call; the wake
// timer covers one stuck in the app): waking another per batch would hand the GIL around.
void pool::post_access(std::vector<http::access_record>& records) {
    if (records.empty()) return;
    std::lock_guard lk(mu_);
    if (access_.empty()) {
        access_.swap(records);
        access_since_us_ = core::now_us();
    } else {
        for (auto& r : records)
            access_.push_back(std::move(r));
        records.clear();
    }
    if (idle_ - waking_ == threads_) wake_one();
    arm_wake_timer();
}

void pool::deliver(http::exchange& ex, uint8_t events) {
    auto it = live_.find(static_cast<const call*>(ex.app_handle));
    if (it != live_.end()) service(*it->second.c, ex, events);
}

void pool::on_io(uint32_t) {
    uint64_t n;
    while (::read(efd_, &n, sizeof n) > 0) {
    }
    run_ready();
    std::lock_guard lk(mu_);
    if (std::exchange(wake_pending_, false) && idle_ - waking_ == threads_ && !jobs_.empty())
        wake_one();
}

void pool::run_ready() {
    std::vector<std::shared_ptr<call>> batch;
    {
        std::lock_guard lk(mu_);
        batch.swap(ready_);
        signalled_ = false;
        for (auto& c : batch)
            c->in_ready = false;
    }
    for (auto& c : batch) {
        auto it = live_.find(c.get());
        if (it != live_.end()) service(*c, *it->second.ex, 0);
    }
}

// Runs the call's commands until one must wait for ev_drain, and hands over request body when
// the thread asked for it. The exchange is touched (and anything logged) with mu_ released: the
// protocol may log, and logging takes the GIL, which a WSGI thread may hold while it waits for
// mu_. `events`: the engine's events for this exchange (0: the thread posted something).
void pool::service(call& c, http::exchange& ex, uint8_t events) {
    std::deque<command> todo;
    bool give = false;
    {
        std::lock_guard lk(mu_);
        if (c.ended) return;
        if ((events & http::ev_disconnect) && !ex.connected() && !ex.response_complete) {
            c.gone = true;
            c.send_waiting = false;  // what is still queued runs now, and answers closed
        }
        if (events & http::ev_drain) c.send_waiting = false;
        if (!c.send_waiting) todo.swap(c.commands);
        give =
            std::exchange(c.want_body, false) || ((events & http::ev_body) && c.engine_body_asked);
    }
    bool waiting = false, gone = false, ended = false;
    size_t ran_bytes = 0;
    std::string refused;
    while (!todo.empty() && !waiting && !ended) {
        command cmd = std::move(todo.front());
        todo.pop_front();
        ran_bytes += cmd.data.size();
        ended = cmd.final();
        http::send_result r{http::send_status::proceed, {}};
        switch (cmd.what) {
            case command::body:
                if (cmd.status != 0) {
                    // Views into the command's strings: the sink copies what it keeps.
                    std::vector<http::field> fields(cmd.hv.size() / 2);
                    for (size_t i = 0; i < fields.size(); ++i)
                        fields[i] = {cmd.hv[2 * i], cmd.hv[2 * i + 1]};
                    http::response_sink::head h{cmd.status, fields, cmd.reason};
                    if (!logged_fields_.empty()) inspect_response_head(logged_fields_, ex, fields);
                    r = cmd.file.get() >= 0 ? ex.send_file(&h, cmd.file.release(), cmd.file_offset,
                                                           cmd.file_length, cmd.more)
                                            : ex.send(&h, cmd.data, cmd.more);
                } else {
                    r = cmd.file.get() >= 0
                            ? ex.send_file(nullptr, cmd.file.release(), cmd.file_offset,
                                           cmd.file_length, cmd.more)
                            : ex.send(nullptr, cmd.data, cmd.more);
                }
                break;
            case command::abort: ex.abort(); break;
            case command::error_500: send_500(ex); break;
            case command::done: break;
        }
        if (r.status == http::send_status::wait) {
            waiting = true;
        } else if (r.status == http::send_status::closed) {
            gone = true;
        } else if (r.status == http::send_status::error) {
            // The thread checked the head and the length; what the protocol still refuses is
            // logged, and the client gets a 500 or a closed connection.
            refused = std::string(r.reason);
            if (cmd.status != 0)
                send_500(ex);
            else
                ex.abort();
            gone = true;
        }
    }
    std::string body;
    bool have_body = false, body_complete = false, body_cut = false;
    if (give) {
        if (ex.body.empty() && !ex.body_complete && ex.connected()) {
            ex.want_body();  // 100 Continue if owed, and read; handed over on ev_body
            c.engine_body_asked = true;
        } else {
            body.swap(ex.body);
            body_complete = ex.body_complete;
            body_cut = !ex.connected() && !ex.body_complete;
            c.engine_body_asked = false;
            ex.body_taken();  // empty now: the protocol reads on
            have_body = true;
        }
    }
    {
        std::lock_guard lk(mu_);
        while (!todo.empty()) {  // older than anything posted meanwhile: back at the front
            c.commands.push_front(std::move(todo.back()));
            todo.pop_back();
        }
        c.queued_bytes -= ran_bytes;
        if (waiting) c.send_waiting = true;
        if (gone || body_cut) c.gone = true;
        if (ended) c.ended = true;
        if (have_body) {
            if (c.body.empty())
                c.body.swap(body);
            else
                c.body.append(body);
            c.body_complete = body_complete;
        }
        c.cv.notify_all();
    }
    if (!refused.empty()) core::log(core::log_level::error, "WSGI response refused: " + refused);
    if (ended) finish(c);
}

void pool::finish(call& c) {
    auto it = live_.find(&c);
    if (it == live_.end()) return;
    it->second.ex->app_handle = nullptr;
    live_.erase(it);  // may destroy the exchange: engine thread, as it must be
}

// ---------------------------------------------------------------- WSGI threads

void pool::wake_engine() {
    const uint64_t one = 1;
    if (efd_ >= 0) {
        ssize_t w = ::write(efd_, &one, sizeof one);
        (void)w;  // EAGAIN: the counter is saturated, so the engine will wake anyway
    }
}

std::shared_ptr<call> pool::take() {
    std::unique_lock lk(mu_);
    // Asleep until woken on purpose (wake_one hands out one token per wake-up), so that a new
    // call wakes one thread, not every sleeping one. A woken thread may find the queue empty (an
    // awake thread took the call first): it gives its token back and sleeps again; a token
    // left behind would make the pool believe a thread is awake and wake nobody.
    if (jobs_.empty() && !stopping_ && access_.empty() && !ready_.empty() && !signalled_) {
        signalled_ = true;  // about to sleep: what post() held back goes now
        lk.unlock();
        wake_engine();
        lk.lock();
    }
    while (jobs_.empty() && !stopping_ && access_.empty()) {
        ++idle_;
        jobs_cv_.wait(lk, [&] { return waking_ > 0 || stopping_; });
        --idle_;
        if (waking_ > 0) --waking_;
    }
    if (jobs_.empty()) return nullptr;  // stopping, or access records to write
    std::shared_ptr<call> c = std::move(jobs_.front());
    jobs_.pop_front();
    ++running_;
    last_take_us_ = core::now_us();
    return c;
}

std::shared_ptr<call> pool::try_take() {
    std::lock_guard lk(mu_);
    if (jobs_.empty()) return nullptr;
    std::shared_ptr<call> c = std::move(jobs_.front());
    jobs_.pop_front();
    ++running_;
    last_take_us_ = core::now_us();
    return c;
}

uint64_t pool::stalled_ms() const {
    std::lock_guard lk(mu_);
    if (jobs_.empty() || idle_ > 0 || threads_ == 0) return 0;
    const uint64_t since = std::max(last_take_us_, jobs_.front()->queued_us);
    const uint64_t now = core::now_us();
    return now > since ? (now - since) / 1000 : 0;
}

void pool::thread_started() {
    std::lock_guard lk(mu_);
    ++threads_;
}

void pool::thread_ended() {
    std::lock_guard lk(mu_);
    --threads_;
}

// While calls are queued, output does not wake the engine: the thread goes on (with the rest of
// its call, then the next call), and what the threads posted leaves together when the queue
// runs dry, when batch_max calls have output waiting, when a thread is about to wait (for send
// credit, for body, for a call), or at the latest on the wake timer (armed while calls are
// queued), whichever comes first. Waking the engine per response cost two context switches per
// request on a shared core (bench wsgi-flask: the engine preempted the WSGI thread at each
// eventfd write). Output with nothing queued behind it wakes the engine at once, as before.
bool pool::post(const std::shared_ptr<call>& cp, command&& cmd) {
    call& c = *cp;
    bool wake = false;
    {
        std::unique_lock lk(mu_);
        const bool fin = cmd.final();
        if (!fin) {
            auto can_post = [&] {
                return c.gone || (!c.send_waiting && c.queued_bytes < high_water_);
            };
            if (!can_post() && !signalled_ && !ready_.empty()) {
                signalled_ = true;  // about to wait: what is held back goes now
                lk.unlock();
                wake_engine();
                lk.lock();
            }
            c.cv.wait(lk, can_post);
            if (c.gone) return false;
        } else {
            --running_;
        }
        c.queued_bytes += cmd.data.size();
        c.commands.push_back(std::move(cmd));
        if (!c.in_ready) {
            c.in_ready = true;
            ready_.push_back(cp);
        }
        if (!signalled_ && (jobs_.empty() || ready_.size() >= batch_max)) wake = signalled_ = true;
    }
    // After unlocking: the engine, woken, would otherwise preempt this thread only to wait for
    // mu_ (a second switch per response).
    if (wake) wake_engine();
    return true;
}

bool pool::read_body(const std::shared_ptr<call>& cp, std::string& out, bool& complete) {
    call& c = *cp;
    std::unique_lock lk(mu_);
    if (c.body.empty() && !c.body_complete && !c.gone) {
        c.want_body = true;
        if (!c.in_ready) {
            c.in_ready = true;
            ready_.push_back(cp);
        }
        if (!signalled_) {
            signalled_ = true;
            lk.unlock();
            wake_engine();
            lk.lock();
        }
        c.cv.wait(lk, [&] { return !c.body.empty() || c.body_complete || c.gone; });
    }
    const bool got = !c.body.empty();
    if (got) {
        if (out.empty())
            out.swap(c.body);
        else
            out.append(c.body);
        c.body.clear();
    }
    complete = c.body_complete;
    return got || complete || !c.gone;
}

bool pool::stopping() const {
    std::lock_guard lk(mu_);
    return stopping_;
}

bool pool::access_pending() const {
    std::lock_guard lk(mu_);
    return !access_.empty();
}

void pool::take_access(std::vector<http::access_record>& out) {
    out.clear();
    std::lock_guard lk(mu_);
    out.swap(access_);
}

void pool::stop() {
    std::lock_guard lk(mu_);
    stopping_ = true;
    jobs_cv_.notify_all();
}

size_t pool::running() const {
    std::lock_guard lk(mu_);
    return running_;
}

}  // namespace coachwhip::bridge::wsgi
