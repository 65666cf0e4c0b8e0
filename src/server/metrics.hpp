// coachwhip::server::metrics — the counters /-/metrics reports, one set per worker, summed over
// every worker of the server when rendered.
//
// Memory. A `region` is one mapping: a header, a `retired` block (what workers that have exited
// counted), and one block per worker slot. Under the supervisor the region is a memfd the
// supervisor creates (`region::create`), sizes and passes to every worker, which maps it
// (`region::attach`) and writes only its own slot's block: so any worker renders the whole
// server in one scrape. A single process uses a private region of one slot.
//
// Concurrency. Every word has one writer at a time: the worker's engine thread for its slot
// (single-threaded, so `add` is a relaxed load and store, no locked instruction), or the
// supervisor while it folds the block of a worker that has exited into `retired`. Readers load
// words with relaxed atomics (no tearing). Folding is bracketed by a sequence counter (odd while
// it runs); `render` retries when it saw one change, so a counter never appears twice (once in
// the dead slot and once in `retired`) nor goes backwards.
//
// Costs: a handful of relaxed stores per request, no allocation, no system call.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "http/refusal.hpp"

namespace coachwhip::server::metrics {

// Request methods counted by name; the rest are "other".
enum method_index : uint8_t { m_get, m_head, m_post, m_put, m_delete, m_patch, m_options, m_other };
inline constexpr size_t k_methods = 8;
method_index method_of(std::string_view method) noexcept;

// Status classes: 0 = no response was sent (the client left, the app failed after nothing).
inline constexpr size_t k_classes = 6;

// Request duration buckets (seconds, Prometheus' default set); +Inf is the count.
inline constexpr double k_bucket_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                             0.5,   1.0,  2.5,   5.0,  10.0};
inline constexpr size_t k_buckets = std::size(k_bucket_bounds);

// Refusals are counted by http::refusal (src/http/refusal.hpp).
inline constexpr size_t k_refusals = static_cast<size_t>(http::refusal::count);

// Why the supervisor started or stopped a worker (supervisor-written, header words).
inline constexpr std::string_view k_start_reasons[] = {"initial", "replace", "respawn", "scale"};
inline constexpr std::string_view k_exit_reasons[] = {"graceful", "crashed", "killed",
                                                      "failed_start"};
inline constexpr size_t k_start_n = std::size(k_start_reasons);
inline constexpr size_t k_exit_n = std::size(k_exit_reasons);

struct block {
    uint64_t pid;  // the worker writing it; 0: free
    uint64_t requests[k_methods][k_classes];
    uint64_t duration_buckets[k_buckets];  // not cumulative here; render accumulates
    uint64_t duration_count;
    uint64_t duration_sum_us;
    uint64_t in_flight;  // gauges: zeroed when the worker's block is folded
    uint64_t connections_open;
    uint64_t connections_accepted;
    uint64_t connections_rejected;  // accept() failed (EMFILE...) or --proxy-protocol refused
    uint64_t bytes_received;
    uint64_t bytes_sent;
    uint64_t refused[k_refusals];
    uint64_t tls_handshakes[2];  // completed: [0] full, [1] resumed from a ticket
    uint64_t websockets_open;    // gauge: connections upgraded to WebSocket, still open
    uint64_t websockets_total;   // upgrades the app accepted
};

struct header {
    uint64_t magic;
    uint64_t slots;
    uint64_t seq;  // odd while the supervisor folds a block
    uint64_t worker_starts[k_start_n];
    uint64_t worker_exits[k_exit_n];
};

// One writer: a relaxed read-modify-write without a lock prefix (see "Concurrency").
inline void add(uint64_t& word, uint64_t n = 1) noexcept {
    std::atomic_ref<uint64_t> w(word);
    w.store(w.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
inline void set(uint64_t& word, uint64_t v) noexcept {
    std::atomic_ref<uint64_t>(word).store(v, std::memory_order_relaxed);
}
inline void sub(uint64_t& word, uint64_t n = 1) noexcept {
    std::atomic_ref<uint64_t> w(word);
    w.store(w.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
}

class region {
  public:
    region() = default;
    ~region();
    region(region&& other) noexcept;
    region& operator=(region&& other) noexcept;
    region(const region&) = delete;
    region& operator=(const region&) = delete;

    // A new shared region for `slots` workers, in a memfd (close-on-exec cleared by the caller
    // when a child must inherit it); `fd()` names it.
    static core::error create(size_t slots, region& out);
    // Maps the region a supervisor made (the fd stays the caller's).
    static core::error attach(int fd, region& out);
    // A private region with one slot (a server without a supervisor).
    static core::error make_private(region& out);

    bool valid() const noexcept { return base_ != nullptr; }
    int fd() const noexcept { return fd_; }
    size_t slots() const noexcept;
    block& slot(size_t i) noexcept;
    header& head() noexcept;

    // Supervisor side: a worker slot's block is folded into `retired` once its worker exited
    // (counters kept, gauges dropped) and zeroed for the next worker.
    void fold(size_t i) noexcept;
    void count_start(size_t reason) noexcept;
    void count_exit(size_t reason) noexcept;

    // The Prometheus text exposition format (version 0.0.4) of the whole region.
    std::string render() const;

  private:
    unsigned char* base_ = nullptr;
    size_t size_ = 0;
    int fd_ = -1;  // owned only when created here
    bool owns_fd_ = false;
};

}  // namespace coachwhip::server::metrics
