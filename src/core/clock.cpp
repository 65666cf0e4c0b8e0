#include "core/clock.hpp"

#include <ctime>

namespace coachwhip::core {

uint64_t now_ms() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);  // ~1-4 ms resolution is plenty for timeouts
    return static_cast<uint64_t>(ts.tv_sec) * 1000u + static_cast<uint64_t>(ts.tv_nsec) / 1000000u;
}

uint64_t now_us() noexcept {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);  // vDSO: ~20 ns, no syscall
    return static_cast<uint64_t>(ts.tv_sec) * 1000000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

std::string_view http_date() noexcept {
    static char buf[32];
    static time_t cached = -1;
    time_t now = time(nullptr);  // vDSO, no syscall
    if (now != cached) {
        cached = now;
        tm t{};
        gmtime_r(&now, &t);
        strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &t);  // C locale names
    }
    return {buf, 29};
}

}  // namespace coachwhip::core
