// coachwhip::proxy IP address text. The contract is in ip_address.hpp; this file says why.
//
// Both scanners run left to right and stop at the first byte that no valid address could have
// there, so "invalid" for a prefix is "invalid" for every continuation of it. "prefix" is only
// returned when some continuation exists; the checks that guarantee it are marked below.
#include "proxy/ip_address.hpp"

namespace coachwhip::proxy {
namespace {

constexpr int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Dotted quad into four bytes (RFC 3986 §3.2.2 dec-octet: no leading zeros).
ip_scan scan_dotted(std::string_view s, uint8_t (&out)[4]) {
    int octets = 0, digits = 0;
    unsigned value = 0;
    uint8_t tmp[4] = {};
    for (char c : s) {
        if (c >= '0' && c <= '9') {
            if (digits == 1 && value == 0) return ip_scan::invalid;  // "01": leading zero
            value = value * 10 + static_cast<unsigned>(c - '0');
            if (value > 255) return ip_scan::invalid;
            ++digits;
        } else if (c == '.') {
            if (digits == 0 || octets == 3) return ip_scan::invalid;
            tmp[octets++] = static_cast<uint8_t>(value);
            value = 0;
            digits = 0;
        } else {
            return ip_scan::invalid;
        }
    }
    if (octets < 3 || digits == 0) return ip_scan::prefix;  // more digits or dots can follow
    tmp[3] = static_cast<uint8_t>(value);
    for (int i = 0; i < 4; ++i)
        out[i] = tmp[i];
    return ip_scan::valid;
}

// The eight 16-bit words of an IPv6 address being scanned, and where "::" stands.
struct v6_words {
    uint16_t w[8] = {};
    int n = 0;     // explicit words so far
    int gap = -1;  // index of "::" among the explicit words; -1 when there is none

    // RFC 4291 §2.2: "::" stands for one or more zero groups, so with it at most 7 are explicit.
    int limit() const { return gap >= 0 ? 7 : 8; }

    ip_scan finish(ip_address& out) const {
        if (gap < 0 && n < 8) return ip_scan::prefix;
        ip_address a;
        a.v6 = true;
        uint16_t full[8] = {};
        const int tail = gap < 0 ? 0 : n - gap;
        const int head = n - tail;
        for (int i = 0; i < head; ++i)
            full[i] = w[i];
        for (int i = 0; i < tail; ++i)
            full[8 - tail + i] = w[head + i];
        for (int i = 0; i < 8; ++i) {
            a.bytes[2 * i] = static_cast<uint8_t>(full[i] >> 8);
            a.bytes[2 * i + 1] = static_cast<uint8_t>(full[i]);
        }
        out = a;
        return ip_scan::valid;
    }
};

// The embedded IPv4 tail (RFC 4291 §2.2 form 3): it ends the text and fills exactly the last
// two words, so without "::" exactly six words must precede it.
ip_scan scan_v4_tail(std::string_view s, v6_words& v, ip_address& out) {
    if (v.gap < 0 ? v.n != 6 : v.n + 2 > 7) return ip_scan::invalid;
    uint8_t q[4];
    const ip_scan r = scan_dotted(s, q);
    if (r != ip_scan::valid) return r;
    v.w[v.n++] = static_cast<uint16_t>(q[0] << 8 | q[1]);
    v.w[v.n++] = static_cast<uint16_t>(q[2] << 8 | q[3]);
    return v.finish(out);
}

}  // namespace

bool ip_address::is_v4_mapped() const noexcept {
    if (!v6) return false;
    for (int i = 0; i < 10; ++i)
        if (bytes[i] != 0) return false;
    return bytes[10] == 0xff && bytes[11] == 0xff;
}

ip_address ip_address::unmapped() const noexcept {
    if (!is_v4_mapped()) return *this;
    ip_address a;
    for (int i = 0; i < 4; ++i)
        a.bytes[i] = bytes[12 + i];
    return a;
}

ip_scan scan_ipv4(std::string_view text, ip_address& out) noexcept {
    uint8_t q[4];
    const ip_scan r = scan_dotted(text, q);
    if (r == ip_scan::valid) {
        out = ip_address{};
        for (int i = 0; i < 4; ++i)
            out.bytes[i] = q[i];
    }
    return r;
}

ip_scan scan_ipv6(std::string_view s, ip_address& out) noexcept {
    v6_words v;
    size_t i = 0;
    bool after_gap = false;  // the last thing read was "::", so the text may end here
    if (!s.empty() && s[0] == ':') {
        if (s.size() == 1) return ip_scan::prefix;
        if (s[1] != ':') return ip_scan::invalid;  // a lone leading ':' is never valid
        v.gap = 0;
        i = 2;
        after_gap = true;
    }
    for (;;) {  // at the start of a group
        if (i == s.size()) {
            if (after_gap) return v.finish(out);
            return ip_scan::prefix;  // empty text, or after ':' (the room check below holds)
        }
        const size_t start = i;
        unsigned value = 0;
        int digits = 0;
        for (; i < s.size() && hex_value(s[i]) >= 0; ++i) {
            if (digits == 4) return ip_scan::invalid;  // a group has at most 4 hex digits
            value = value * 16 + static_cast<unsigned>(hex_value(s[i]));
            ++digits;
        }
        if (i < s.size() && s[i] == '.') return scan_v4_tail(s.substr(start), v, out);
        if (digits == 0) {
            // "::" in the middle: this ':' follows the one that ended the previous group.
            if (s[i] != ':' || after_gap || v.gap >= 0 || start == 0) return ip_scan::invalid;
            v.gap = v.n;
            ++i;
            after_gap = true;
            continue;
        }
        if (v.n + 1 > v.limit()) return ip_scan::invalid;
        v.w[v.n++] = static_cast<uint16_t>(value);
        if (i == s.size()) return v.finish(out);
        if (s[i] != ':') return ip_scan::invalid;
        ++i;
        after_gap = false;
        // Room check: a ':' after a group promises another group (or "::", which also needs
        // at least one free word), so the address must not be full already.
        if (v.n >= v.limit()) return ip_scan::invalid;
    }
}

bool parse_ipv4(std::string_view text, ip_address& out) noexcept {
    return scan_ipv4(text, out) == ip_scan::valid;
}

bool parse_ipv6(std::string_view text, ip_address& out) noexcept {
    return scan_ipv6(text, out) == ip_scan::valid;
}

bool parse_ip(std::string_view text, ip_address& out) noexcept {
    return parse_ipv4(text, out) || parse_ipv6(text, out);
}

namespace {

void append(ip_text& t, std::string_view s) {
    for (char c : s)
        t.chars[t.size++] = c;
}

void append_decimal(ip_text& t, unsigned v) {
    char buf[3];
    int n = 0;
    do {
        buf[n++] = static_cast<char>('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        t.chars[t.size++] = buf[--n];
}

void append_hex(ip_text& t, unsigned v) {
    constexpr char k_digits[] = "0123456789abcdef";
    bool started = false;
    for (int shift = 12; shift >= 0; shift -= 4) {
        const unsigned d = (v >> shift) & 0xf;
        if (d == 0 && !started && shift != 0) continue;  // RFC 5952 §4.1: no leading zeros
        started = true;
        t.chars[t.size++] = k_digits[d];
    }
}

void append_dotted(ip_text& t, const uint8_t* q) {
    for (int i = 0; i < 4; ++i) {
        if (i > 0) append(t, ".");
        append_decimal(t, q[i]);
    }
}

}  // namespace

ip_text format_ip(const ip_address& addr) noexcept {
    ip_text t;
    if (!addr.v6) {
        append_dotted(t, addr.bytes.data());
        return t;
    }
    if (addr.is_v4_mapped()) {  // RFC 5952 §5
        append(t, "::ffff:");
        append_dotted(t, addr.bytes.data() + 12);
        return t;
    }
    unsigned w[8];
    for (int i = 0; i < 8; ++i)
        w[i] = static_cast<unsigned>(addr.bytes[2 * i] << 8 | addr.bytes[2 * i + 1]);
    // RFC 5952 §4.2: compress the longest run of zero words, the first one on a tie, and
    // never a single zero word (§4.2.2).
    int best = -1, best_len = 1;
    for (int i = 0; i < 8;) {
        int j = i;
        while (j < 8 && w[j] == 0)
            ++j;
        if (j - i > best_len) {
            best = i;
            best_len = j - i;
        }
        i = j == i ? i + 1 : j;
    }
    for (int i = 0; i < 8; ++i) {
        if (i == best) {
            append(t, "::");
            i += best_len - 1;
            continue;
        }
        if (i > 0 && i != best + best_len) append(t, ":");
        append_hex(t, w[i]);
    }
    return t;
}

}  // namespace coachwhip::proxy
