// coachwhip::proxy IP address text: strict parsing and canonical formatting, shared by the PROXY
// protocol decoder and the forwarded-header resolver.
//
// Contract
// - Pure: no I/O, no allocation, no locale, no global state. Not inet_pton/inet_ntop: the libc
//   versions differ between libcs in what they accept (leading zeros, IPv4-compatible output),
//   and the PROXY v1 decoder needs a "could this still become valid" answer for partial input.
// - IPv4 (RFC 3986 §3.2.2 IPv4address): exactly four decimal octets 0..255 separated by single
//   dots, no leading zeros ("010" could be read as octal by someone else; the PROXY spec §2.1 and
//   Python's ipaddress both reject it), no sign, no spaces.
// - IPv6 (RFC 4291 §2.2): eight groups of 1-4 hex digits (either case), at most one "::" standing
//   for one or more zero groups, optionally ending in an embedded dotted IPv4 address for the low
//   32 bits. No brackets, no zone index ("%eth0"), no prefix length.
// - Formatting follows RFC 5952 §4 (lowercase, leading zeros dropped, the longest run of two or
//   more zero groups - the first one on a tie - written "::") and §5 (IPv4-mapped addresses,
//   ::ffff:0:0/96, written "::ffff:192.0.2.1"). This is what inet_ntop prints, except that glibc
//   also prints deprecated IPv4-compatible addresses (::/96) in dotted form; we print "::102:304"
//   for those, like Python's ipaddress.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace coachwhip::proxy {

struct ip_address {
    bool v6 = false;                  // false: IPv4, in bytes[0..3]; bytes[4..15] are zero
    std::array<uint8_t, 16> bytes{};  // network byte order

    bool operator==(const ip_address&) const = default;

    // ::ffff:a.b.c.d (RFC 4291 §2.5.5.2): what a dual-stack socket reports for an IPv4 peer.
    bool is_v4_mapped() const noexcept;
    // The IPv4 address inside an IPv4-mapped IPv6 address; *this unchanged otherwise.
    ip_address unmapped() const noexcept;
};

// Result of scanning text that may be cut short (the PROXY v1 decoder sees partial lines).
enum class ip_scan : uint8_t {
    valid,    // the text is a complete address (it may also be the start of a longer one)
    prefix,   // not an address yet, but some continuation would make it one
    invalid,  // no continuation can make it an address
};

// Scan `text` as IPv4 / IPv6; on `valid`, `out` holds the address (untouched otherwise).
ip_scan scan_ipv4(std::string_view text, ip_address& out) noexcept;
ip_scan scan_ipv6(std::string_view text, ip_address& out) noexcept;

// Whole-text parsers: true and `out` filled when `text` is exactly one address of that family.
bool parse_ipv4(std::string_view text, ip_address& out) noexcept;
bool parse_ipv6(std::string_view text, ip_address& out) noexcept;
bool parse_ip(std::string_view text, ip_address& out) noexcept;  // IPv4, else IPv6

// Canonical text of an address, held inline (no allocation). The longest output is
// "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"-sized: 45 characters.
struct ip_text {
    std::array<char, 46> chars{};
    uint8_t size = 0;

    std::string_view view() const noexcept { return {chars.data(), size}; }
    bool empty() const noexcept { return size == 0; }
};

ip_text format_ip(const ip_address& addr) noexcept;

}  // namespace coachwhip::proxy
