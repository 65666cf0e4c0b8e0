// coachwhip::core clock: a monotonic millisecond clock and the cached IMF-fixdate for `Date`.
//
// Contract: `now_ms()` is CLOCK_MONOTONIC in milliseconds (the coarse clock: timeouts);
// `now_us()` is CLOCK_MONOTONIC in microseconds (the precise one: request durations for the
// access log). `http_date()` returns a view of a 29-byte "Sun, 06 Nov 1994 08:49:37 GMT"
// string for the current second; the view stays valid until the next call (it points into a
// buffer that is rewritten at most once a second). `http_date()` is for the engine thread
// only; the two clocks may be read from any thread.
#pragma once

#include <cstdint>
#include <string_view>

namespace coachwhip::core {

uint64_t now_ms() noexcept;
uint64_t now_us() noexcept;
std::string_view http_date() noexcept;

}  // namespace coachwhip::core
