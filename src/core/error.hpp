// coachwhip::core::error — an HTTP-level error as a value.
//
// Inside the engine, errors never travel as exceptions: a function that can fail returns a
// result carrying one of these. `status` is the HTTP status code the peer should see (400, 413,
// 414, 431, 501, 505, ...); `reason` is a static, human-readable explanation that names the rule
// that was broken (it goes to the debug log and, for 4xx, into the plain-text response body).
#pragma once

#include <cstdint>
#include <string_view>

namespace coachwhip::core {

struct error {
    uint16_t status = 0;           // 0 means "no error"
    std::string_view reason = {};  // static storage; never owned

    constexpr explicit operator bool() const noexcept { return status != 0; }
};

}  // namespace coachwhip::core
