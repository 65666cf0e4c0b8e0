// coachwhip::bridge — the engine on a thread of its own (WSGI).
//
// Why: under asyncio the engine runs on the loop's thread, which needs the GIL after every I/O
// phase (asyncio's own loop, then delivering events). With WSGI threads holding the GIL for
// whole requests, the engine then waited on them: hello world fell from 88k to 44k req/s with
// four threads. WSGI needs no asyncio on the request path, so the engine gets its own thread
// that never takes the GIL: it polls (blocking), runs the I/O phase, and hands events to the
// WSGI pool. Python's main thread keeps asyncio for signals, the heartbeat and the drain.
//
// Control from Python (add a listener, stop accepting, counters, ...) is marshalled: `run(f)`
// queues `f`, wakes the engine's poll through an eventfd, and waits until `f` ran on the engine
// thread, inside an I/O phase (so what it schedules is flushed at the phase's end). Before
// start() and after stop(), `run(f)` calls `f` directly.
//
// Threading: start/stop/run from one Python thread at a time (the GIL serialises them; the
// caller releases the GIL around run() and stop(), which wait). `after_phase` runs on the
// engine thread after each I/O phase, without the GIL.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "loop/loop.hpp"

namespace coachwhip::server {
class server;
}

namespace coachwhip::bridge {

class engine_thread final : private loop::io_handler {
  public:
    engine_thread(server::server& engine, std::function<void()> after_phase);
    ~engine_thread();  // stops the thread first
    engine_thread(const engine_thread&) = delete;
    engine_thread& operator=(const engine_thread&) = delete;

    // 0, or errno (the eventfd, its registration, or the thread could not be created).
    int start();
    void stop();  // waits for the thread to finish its phase and exit
    bool running() const noexcept { return thread_.joinable(); }
    void run(const std::function<void()>& f);

  private:
    void on_io(uint32_t events) override;  // the eventfd: run what was queued
    void main();

    server::server& engine_;
    std::function<void()> after_phase_;
    int efd_ = -1;
    std::thread thread_;
    std::mutex mu_;
    std::condition_variable done_cv_;
    std::vector<const std::function<void()>*> queued_;  // guarded
    uint64_t submitted_ = 0;                            // guarded
    uint64_t completed_ = 0;                            // guarded
    bool quit_ = false;                                 // guarded
};

}  // namespace coachwhip::bridge
