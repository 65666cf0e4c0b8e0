// coachwhip::ws UTF-8 validator. The contract is in utf8.hpp; this file says why.
//
// The DFA is RFC 3629 §4's table of well-formed byte sequences, one state per "what the next
// byte may be". Bytes are first mapped to one of 12 classes (bytes that every state treats
// alike), so the transition table is 9 x 12 entries and fits in two cache lines.
//
//   accept --00..7F--> accept
//   accept --C2..DF--> tail1 --80..BF--> accept
//   accept --E1..EC, EE..EF--> tail2 --80..BF--> tail1
//   accept --F1..F3--> tail3 --80..BF--> tail2
//   accept --E0--> e0 --A0..BF--> tail1        (80..9F would be overlong)
//   accept --ED--> ed --80..9F--> tail1        (A0..BF would be a surrogate D800..DFFF)
//   accept --F0--> f0 --90..BF--> tail2        (80..8F would be overlong)
//   accept --F4--> f4 --80..8F--> tail2        (90..BF would be above U+10FFFF)
//   any other (state, byte) --> reject (sticky): C0, C1, F5..FF, a stray 80..BF, a lead byte
//   where a continuation byte must come, ...
//
// Because every restriction sits on the byte right after the lead byte, a sequence is rejected
// at the first byte that rules it out: that is Autobahn's "fail fast" (cases 6.x).
#include "ws/utf8.hpp"

#include <array>
#include <cstring>

namespace coachwhip::ws {
namespace {

enum state : uint8_t { s_accept, s_reject, s_tail1, s_tail2, s_tail3, s_e0, s_ed, s_f0, s_f4 };
constexpr unsigned k_states = 9;

enum byte_class : uint8_t {
    c_ascii,     // 00..7F
    c_cont_lo,   // 80..8F
    c_cont_mid,  // 90..9F
    c_cont_hi,   // A0..BF
    c_bad,       // C0, C1, F5..FF: never in UTF-8
    c_lead2,     // C2..DF
    c_e0,        // E0
    c_lead3,     // E1..EC, EE..EF
    c_ed,        // ED
    c_f0,        // F0
    c_lead4,     // F1..F3
    c_f4,        // F4
};
constexpr unsigned k_classes = 12;
constexpr unsigned k_table_size = k_states * k_classes;

constexpr byte_class classify(unsigned b) {
    if (b < 0x80) return c_ascii;
    if (b < 0x90) return c_cont_lo;
    if (b < 0xA0) return c_cont_mid;
    if (b < 0xC0) return c_cont_hi;
    if (b < 0xC2) return c_bad;
    if (b < 0xE0) return c_lead2;
    if (b == 0xE0) return c_e0;
    if (b == 0xED) return c_ed;
    if (b < 0xF0) return c_lead3;
    if (b == 0xF0) return c_f0;
    if (b < 0xF4) return c_lead4;
    if (b == 0xF4) return c_f4;
    return c_bad;
}

constexpr std::array<uint8_t, 256> make_classes() {
    std::array<uint8_t, 256> t{};
    for (unsigned b = 0; b < 256; ++b)
        t[b] = classify(b);
    return t;
}

constexpr bool is_cont(unsigned c) { return c == c_cont_lo || c == c_cont_mid || c == c_cont_hi; }

// The diagram above, one rule per state.
constexpr uint8_t next_state(unsigned s, unsigned c) {
    switch (s) {
        case s_accept:
            switch (c) {
                case c_ascii: return s_accept;
                case c_lead2: return s_tail1;
                case c_e0: return s_e0;
                case c_lead3: return s_tail2;
                case c_ed: return s_ed;
                case c_f0: return s_f0;
                case c_lead4: return s_tail3;
                case c_f4: return s_f4;
                default: return s_reject;
            }
        case s_tail1: return is_cont(c) ? s_accept : s_reject;
        case s_tail2: return is_cont(c) ? s_tail1 : s_reject;
        case s_tail3: return is_cont(c) ? s_tail2 : s_reject;
        case s_e0: return c == c_cont_hi ? s_tail1 : s_reject;
        case s_ed: return c == c_cont_lo || c == c_cont_mid ? s_tail1 : s_reject;
        case s_f0: return c == c_cont_mid || c == c_cont_hi ? s_tail2 : s_reject;
        case s_f4: return c == c_cont_lo ? s_tail2 : s_reject;
        default: return s_reject;
    }
}

constexpr std::array<uint8_t, k_table_size> make_transitions() {
    std::array<uint8_t, k_table_size> t{};
    for (unsigned s = 0; s < k_states; ++s)
        for (unsigned c = 0; c < k_classes; ++c)
            t[s * k_classes + c] = next_state(s, c);
    return t;
}

constexpr std::array<uint8_t, 256> k_class = make_classes();
constexpr std::array<uint8_t, k_table_size> k_next = make_transitions();

constexpr uint64_t k_high_bits = 0x8080808080808080ull;

// Runs the DFA over [p, end) from state `s`; returns the state after the last byte, or
// s_reject as soon as it is reached.
uint8_t run(uint8_t s, const unsigned char* p, const unsigned char* end) noexcept {
    while (p < end) {
        // Fast path: at a boundary, text is mostly ASCII; skip whole 8-byte words of it. memcpy
        // is the portable unaligned load; compilers turn it into one mov.
        if (s == s_accept) {
            while (end - p >= 8) {
                uint64_t word;
                std::memcpy(&word, p, 8);
                if ((word & k_high_bits) != 0) break;
                p += 8;
            }
            if (p == end) break;
        }
        s = k_next[s * k_classes + k_class[*p++]];
        if (s == s_reject) break;
    }
    return s;
}

}  // namespace

utf8_status utf8_validator::feed(std::string_view bytes) noexcept {
    if (state_ != s_reject) {
        const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
        state_ = run(state_, p, p + bytes.size());
    }
    return status();
}

utf8_status utf8_validator::status() const noexcept {
    if (state_ == s_accept) return utf8_status::valid;
    if (state_ == s_reject) return utf8_status::invalid;
    return utf8_status::incomplete;
}

bool utf8_validator::failed() const noexcept { return state_ == s_reject; }

bool is_valid_utf8(std::string_view bytes) noexcept {
    utf8_validator v;
    return v.feed(bytes) == utf8_status::valid;
}

size_t utf8_truncate(std::string_view bytes, size_t max_size) noexcept {
    if (bytes.size() <= max_size) return bytes.size();
    size_t n = max_size;
    // bytes[n] is the first byte cut off: while it continues a code point, the cut is inside
    // that code point, so move it back to the code point's lead byte.
    while (n > 0 && (static_cast<unsigned char>(bytes[n]) & 0xC0) == 0x80)
        --n;
    return n;
}

}  // namespace coachwhip::ws
