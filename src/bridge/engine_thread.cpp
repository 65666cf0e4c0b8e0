#include "bridge/engine_thread.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <utility>

#include "server/server.hpp"

namespace coachwhip::bridge {

engine_thread::engine_thread(server::server& engine, std::function<void()> after_phase)
    : engine_(engine), after_phase_(std::move(after_phase)) {}

engine_thread::~engine_thread() {
    stop();
    if (efd_ >= 0) {
        engine_.remove_io(efd_);
        ::close(efd_);
    }
}

int engine_thread::start() {
    if (thread_.joinable()) return 0;
    if (efd_ < 0) {
        efd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (efd_ < 0) return errno;
        if (int e = engine_.add_io(efd_, this)) return e;
    }
    {
        std::lock_guard lk(mu_);
        quit_ = false;
    }
    try {
        thread_ = std::thread([this] { main(); });
    } catch (const std::system_error& e) {
        return e.code().value();
    }
    return 0;
}

void engine_thread::stop() {
    if (!thread_.joinable()) return;
    {
        std::lock_guard lk(mu_);
        quit_ = true;
    }
    const uint64_t one = 1;
    ssize_t w = ::write(efd_, &one, sizeof one);
    (void)w;
    thread_.join();
}

void engine_thread::run(const std::function<void()>& f) {
    if (!thread_.joinable()) return f();
    std::unique_lock lk(mu_);
    queued_.push_back(&f);
    const uint64_t ticket = ++submitted_;
    const uint64_t one = 1;
    ssize_t w = ::write(efd_, &one, sizeof one);
    (void)w;  // EAGAIN: the counter is saturated, so the poll wakes anyway
    done_cv_.wait(lk, [&] { return completed_ >= ticket; });
}

void engine_thread::on_io(uint32_t) {
    uint64_t n;
    while (::read(efd_, &n, sizeof n) > 0) {
    }
    std::vector<const std::function<void()>*> batch;
    {
        std::lock_guard lk(mu_);
        batch.swap(queued_);
    }
    for (const auto* f : batch)
        (*f)();
    std::lock_guard lk(mu_);
    completed_ += batch.size();
    done_cv_.notify_all();
}

void engine_thread::main() {
    while (true) {
        {
            std::lock_guard lk(mu_);
            if (quit_) break;
        }
        engine_.run_io(engine_.has_scheduled() ? 0 : -1);  // leftover work: poll, do not wait
        after_phase_();
        // Delivering can schedule connection work (a response the pool handed over on ev_drain,
        // say); with no asyncio to call run_scheduled soon, run it here.
        for (int round = 0; round < 8 && engine_.has_scheduled(); ++round) {
            engine_.run_scheduled();
            after_phase_();
        }
    }
}

}  // namespace coachwhip::bridge
