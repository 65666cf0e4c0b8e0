#include "server/metrics.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <new>
#include <utility>

namespace coachwhip::server::metrics {
namespace {

constexpr uint64_t k_magic = 0x33726d7063777763ull;  // "cwwcpmr3": layout version 3
constexpr std::string_view k_method_names[] = {"GET",    "HEAD",  "POST",    "PUT",
                                               "DELETE", "PATCH", "OPTIONS", "other"};
constexpr std::string_view k_class_names[] = {"none", "1xx", "2xx", "3xx", "4xx", "5xx"};
constexpr std::string_view k_refusal_names[] = {
    "bad_request",      "header_timeout", "body_timeout",    "body_rate",
    "response_rate",    "write_timeout",  "body_too_large",  "line_too_long",
    "header_too_large", "concurrency",    "not_implemented", "proxy_protocol",
    "tls_handshake",    "tls_timeout",    "tls_plain_http",  "h2_abuse"};
static_assert(std::size(k_refusal_names) == k_refusals);

uint64_t load(const uint64_t& word) noexcept {
    return std::atomic_ref<uint64_t>(const_cast<uint64_t&>(word)).load(std::memory_order_relaxed);
}
void store(uint64_t& word, uint64_t v) noexcept {
    std::atomic_ref<uint64_t>(word).store(v, std::memory_order_relaxed);
}

size_t bytes_for(size_t slots) { return sizeof(header) + (slots + 1) * sizeof(block); }

// The blocks, as arrays of words: every field is a uint64_t, so folding and summing need no
// field list (and cannot forget one).
constexpr size_t k_words = sizeof(block) / sizeof(uint64_t);
static_assert(sizeof(block) % sizeof(uint64_t) == 0);
uint64_t* words(block& b) noexcept { return reinterpret_cast<uint64_t*>(&b); }
const uint64_t* words(const block& b) noexcept { return reinterpret_cast<const uint64_t*>(&b); }

bool is_gauge(size_t word) noexcept {
    return word == offsetof(block, in_flight) / 8 ||
           word == offsetof(block, connections_open) / 8 ||
           word == offsetof(block, websockets_open) / 8;
}

core::error map(int fd, size_t size, bool shared, unsigned char*& base) {
    const int flags = shared ? MAP_SHARED : (MAP_PRIVATE | MAP_ANONYMOUS);
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, flags, shared ? fd : -1, 0);
    if (p == MAP_FAILED) return {500, "cannot map the metrics memory (mmap failed)"};
    base = static_cast<unsigned char*>(p);
    return {};
}

void line(std::string& out, std::string_view name, std::string_view labels, uint64_t value) {
    out.append(name);
    if (!labels.empty()) out.append("{").append(labels).append("}");
    out.append(" ").append(std::to_string(value)).append("\n");
}

void family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
    out.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

// A counter family with one sample per reason, every reason always present.
template <size_t N>
void by_reason(std::string& out, std::string_view name, std::string_view help,
               const std::string_view (&reasons)[N], const uint64_t (&values)[N]) {
    family(out, name, "counter", help);
    for (size_t r = 0; r < N; ++r)
        line(out, name, "reason=\"" + std::string(reasons[r]) + "\"", values[r]);
}

}  // namespace

method_index method_of(std::string_view m) noexcept {
    for (size_t i = 0; i + 1 < k_methods; ++i)
        if (m == k_method_names[i]) return static_cast<method_index>(i);
    return m_other;
}

region::~region() {
    if (base_) ::munmap(base_, size_);
    if (owns_fd_ && fd_ >= 0) ::close(fd_);
}

region::region(region&& o) noexcept
    : base_(std::exchange(o.base_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      fd_(std::exchange(o.fd_, -1)),
      owns_fd_(std::exchange(o.owns_fd_, false)) {}

region& region::operator=(region&& o) noexcept {
    if (this != &o) {
        this->~region();
        new (this) region(std::move(o));
    }
    return *this;
}

core::error region::create(size_t slots, region& out) {
    const int fd = ::memfd_create("coachwhip-metrics", MFD_CLOEXEC);
    if (fd < 0) return {500, "cannot create the metrics memory (memfd_create failed)"};
    region r;
    r.fd_ = fd;
    r.owns_fd_ = true;
    r.size_ = bytes_for(slots);
    if (::ftruncate(fd, static_cast<off_t>(r.size_)) != 0)
        return {500, "cannot size the metrics memory (ftruncate failed)"};
    if (core::error e = map(fd, r.size_, true, r.base_)) return e;
    r.head().magic = k_magic;  // memfd pages start zeroed: every counter is 0
    r.head().slots = slots;
    out = std::move(r);
    return {};
}

core::error region::attach(int fd, region& out) {
    struct stat st {};
    if (::fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) < sizeof(header))
        return {500, "the metrics fd is not a metrics memory region"};
    region r;
    r.fd_ = fd;
    r.size_ = static_cast<size_t>(st.st_size);
    if (core::error e = map(fd, r.size_, true, r.base_)) return e;
    if (r.head().magic != k_magic || bytes_for(r.head().slots) != r.size_)
        return {500, "the metrics memory region has another layout"};
    out = std::move(r);
    return {};
}

core::error region::make_private(region& out) {
    region r;
    r.size_ = bytes_for(1);
    if (core::error e = map(-1, r.size_, false, r.base_)) return e;
    r.head().magic = k_magic;
    r.head().slots = 1;
    out = std::move(r);
    return {};
}

header& region::head() noexcept { return *reinterpret_cast<header*>(base_); }
size_t region::slots() const noexcept {
    return base_ ? reinterpret_cast<const header*>(base_)->slots : 0;
}
// Block 0 is `retired`; worker slot i is block i + 1.
block& region::slot(size_t i) noexcept {
    return reinterpret_cast<block*>(base_ + sizeof(header))[i + 1];
}

void region::fold(size_t i) noexcept {
    block& retired = reinterpret_cast<block*>(base_ + sizeof(header))[0];
    block& dead = slot(i);
    header& h = head();
    store(h.seq, load(h.seq) + 1);  // odd: a fold is running
    std::atomic_thread_fence(std::memory_order_seq_cst);
    uint64_t* to = words(retired);
    uint64_t* from = words(dead);
    for (size_t w = 1; w < k_words; ++w) {  // word 0 is the pid
        if (!is_gauge(w)) store(to[w], load(to[w]) + load(from[w]));
        store(from[w], 0);
    }
    store(from[0], 0);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    store(h.seq, load(h.seq) + 1);
}

void region::count_start(size_t reason) noexcept {
    if (reason < k_start_n) add(head().worker_starts[reason]);
}
void region::count_exit(size_t reason) noexcept {
    if (reason < k_exit_n) add(head().worker_exits[reason]);
}

std::string region::render() const {
    if (!base_) return {};
    const auto* h = reinterpret_cast<const header*>(base_);
    const auto* blocks = reinterpret_cast<const block*>(base_ + sizeof(header));
    block total{};
    uint64_t workers = 0;
    for (int attempt = 0; attempt < 100; ++attempt) {  // a fold takes microseconds
        const uint64_t before = load(h->seq);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        total = {};
        workers = 0;
        for (size_t b = 0; b <= load(h->slots); ++b) {
            const uint64_t* from = words(blocks[b]);
            uint64_t* to = words(total);
            for (size_t w = 1; w < k_words; ++w)
                to[w] += load(from[w]);
            workers += b > 0 && load(from[0]) != 0;
        }
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (before % 2 == 0 && load(h->seq) == before) break;
    }
    std::string out;
    out.reserve(4096);
    family(out, "coachwhip_requests_total", "counter",
           "Requests handed to the app, by method and response status class.");
    for (size_t m = 0; m < k_methods; ++m)
        for (size_t c = 0; c < k_classes; ++c)
            if (total.requests[m][c] || (m == m_get && c == 2))
                line(out, "coachwhip_requests_total",
                     "method=\"" + std::string(k_method_names[m]) + "\",status=\"" +
                         std::string(k_class_names[c]) + "\"",
                     total.requests[m][c]);
    family(out, "coachwhip_request_duration_seconds", "histogram",
           "Time from a complete request head to the end of the response.");
    uint64_t cumulative = 0;
    for (size_t b = 0; b < k_buckets; ++b) {
        cumulative += total.duration_buckets[b];
        char le[32];
        std::snprintf(le, sizeof le, "le=\"%g\"", k_bucket_bounds[b]);
        line(out, "coachwhip_request_duration_seconds_bucket", le, cumulative);
    }
    line(out, "coachwhip_request_duration_seconds_bucket", "le=\"+Inf\"", total.duration_count);
    char sum[48];
    std::snprintf(sum, sizeof sum, "%.6f", static_cast<double>(total.duration_sum_us) / 1e6);
    out.append("coachwhip_request_duration_seconds_sum ").append(sum).append("\n");
    line(out, "coachwhip_request_duration_seconds_count", "", total.duration_count);
    const struct {
        std::string_view name, type, help;
        uint64_t value;
    } scalars[] = {
        {"coachwhip_requests_in_flight", "gauge", "Requests the app is working on.",
         total.in_flight},
        {"coachwhip_connections_open", "gauge", "Open client connections.", total.connections_open},
        {"coachwhip_connections_accepted_total", "counter", "Connections accepted.",
         total.connections_accepted},
        {"coachwhip_connections_rejected_total", "counter",
         "Connections refused: accept() failed, or --proxy-protocol turned them away.",
         total.connections_rejected},
        {"coachwhip_received_bytes_total", "counter", "Bytes read from clients.",
         total.bytes_received},
        {"coachwhip_sent_bytes_total", "counter", "Bytes written to clients.", total.bytes_sent},
        {"coachwhip_websockets_open", "gauge", "Open WebSocket connections.",
         total.websockets_open},
        {"coachwhip_websockets_total", "counter", "WebSocket upgrades the app accepted.",
         total.websockets_total},
        {"coachwhip_workers", "gauge", "Worker processes counting into these metrics.", workers},
    };
    for (const auto& s : scalars) {
        family(out, s.name, s.type, s.help);
        line(out, s.name, "", s.value);
    }
    by_reason(out, "coachwhip_refused_total",
              "Requests refused or connections cut by a limit or timeout, by reason.",
              k_refusal_names, total.refused);
    family(out, "coachwhip_tls_handshakes_total", "counter",
           "TLS handshakes completed, by whether the session was resumed from a ticket.");
    line(out, "coachwhip_tls_handshakes_total", "session=\"full\"", total.tls_handshakes[0]);
    line(out, "coachwhip_tls_handshakes_total", "session=\"resumed\"", total.tls_handshakes[1]);
    uint64_t starts[k_start_n], exits[k_exit_n];
    for (size_t r = 0; r < k_start_n; ++r)
        starts[r] = load(h->worker_starts[r]);
    for (size_t r = 0; r < k_exit_n; ++r)
        exits[r] = load(h->worker_exits[r]);
    by_reason(out, "coachwhip_worker_starts_total", "Worker processes started, by why.",
              k_start_reasons, starts);
    by_reason(out, "coachwhip_worker_exits_total", "Worker processes ended, by how.",
              k_exit_reasons, exits);
    return out;
}

}  // namespace coachwhip::server::metrics
