// coachwhip::proxy client address from proxy headers: X-Forwarded-For, X-Forwarded-Proto and
// Forwarded (RFC 7239), trusted only when the connection comes from a trusted proxy.
//
// The model is uvicorn 0.3x's ProxyHeadersMiddleware (--proxy-headers, --forwarded-allow-ips),
// extended with RFC 7239 and made safe for scope["client"]. Differences from uvicorn are marked
// "(uvicorn: ...)".
//
// Trusted networks (parse_trusted_networks)
// - A comma-separated list like uvicorn's --forwarded-allow-ips, each element trimmed:
//     IPv4 / IPv6 address       "127.0.0.1", "::1"         (ip_address.hpp rules: no leading
//     IPv4 / IPv6 CIDR          "10.0.0.0/8", "fd00::/8"     zeros, no brackets, no zone)
//     "*"                       everyone, wherever it appears in the list (uvicorn 0.3x only
//                               honours a lone "*"; older uvicorn and gunicorn honour it
//                               anywhere, which is what someone writing it means)
//     "unix:"                   peers connected over a Unix-domain socket. The literal is what
//                               nginx writes for such peers ($remote_addr, and so in
//                               X-Forwarded-For). (uvicorn: a Unix-socket peer has no address,
//                               so only "*" trusts it.)
//     anything else without '/' or ':' and not made only of digits and dots, e.g. "proxy1" or
//                               "_edge": a literal matched exactly against node strings in the
//                               headers (uvicorn's literals). Hostnames are never resolved.
//   Empty elements are ignored; an empty list trusts nobody. Errors (returned as a value, the
//   message names the element): a '/' element that is not a CIDR ("10.0.0.0/33", "10.0.0.0/08",
//   "10.0.0.1/8" - host bits set), a digits-and-dots element that is not an IPv4 address
//   ("010.0.0.1", "1.2.3"), a ':' element other than "unix:" that is not an IPv6 address
//   ("[::1]", "fe80::1%eth0"). (uvicorn: silently turns all of these into literals that never
//   match.)
// - Matching: an IPv4 peer matches IPv4 entries; an IPv6 peer matches IPv6 entries and, when it
//   is IPv4-mapped (::ffff:192.0.2.1, what a dual-stack socket reports), IPv4 entries too.
//
// Resolution (resolve_forwarded)
// - Nothing is applied unless the immediate peer is trusted (result: client_source::peer,
//   kind none). An untrusted peer's headers are ignored, so clients cannot spoof anything.
// - One header kind per request:
//     any X-Forwarded-For line present -> X-Forwarded-For (client) + X-Forwarded-Proto
//                                         (scheme); Forwarded is ignored. nginx and most
//                                         ingresses append X-Forwarded-For and pass a client's
//                                         own Forwarded through verbatim, so Forwarded next to
//                                         X-Forwarded-For is the untrustworthy one.
//     else any Forwarded line present  -> Forwarded alone: client from for=, scheme from
//                                         proto=, host from host=, all from the same element;
//                                         X-Forwarded-Proto is ignored (a Forwarded-speaking
//                                         proxy passes a client's X-Forwarded-Proto through).
//     else X-Forwarded-Proto only      -> scheme only.
// - Several lines of one header are one list, in order (RFC 9110 §5.3). Empty elements are
//   skipped (RFC 9110 §5.6.1). A list with no element at all names no client: the peer is kept
//   (uvicorn does the same for an empty X-Forwarded-For, encode/uvicorn#1068).
// - The client: walk the list from the right (the nearest proxy appends last) over trusted
//   nodes; the first untrusted node is the client; if every node is trusted, the leftmost one
//   (uvicorn does the same; with "*" that is always the leftmost). A node is trusted when it is
//   an IP address in the trusted networks, or when it is not an address and its exact text
//   (without its port) is a trusted literal; "unknown" is never trusted.
//     X-Forwarded-For nodes: IPv4, IPv6, "[IPv6]", "IPv4:port", "[IPv6]:port", "unknown".
//     Forwarded for= nodes (RFC 7239 §6): IPv4, "[IPv6]" (quoted, as ':' and '[' are not
//     token characters), an optional ":port" or obfuscated ":_port", "unknown", obfuscated
//     "_name". An element without for= counts as for=unknown.
// - Unknown client. When the walk stops at "unknown", at an obfuscated name that is not a
//   trusted literal, or at anything it cannot read, the result is client_source::unknown and the
//   caller must set scope["client"] to None. It must NOT keep the socket peer: the peer is a
//   trusted proxy, and handing its address (often 127.0.0.1 or 10.x) to an anonymous client
//   would pass exactly the IP allow-lists that trusted proxies are put on. None is what the
//   ASGI spec provides for "not known"; an app that dereferences it fails loudly, not open.
// - Malformed. When a node the walk has to read is not one of the forms above, or a Forwarded
//   element it has to read breaks RFC 7239 §4 (a pair without '=', a bad token, an unterminated
//   quoted string, a parameter twice, a host= that is not a URI host), that header kind is
//   ignored entirely - no scheme, no host from it - and the client is `unknown` (as above: the
//   peer is known not to be the client). `problem` says what was wrong, for a debug log.
//   Elements left of the client are never read: they are whatever the client sent, and junk
//   there must not change the answer. (uvicorn: puts whatever text it finds into
//   scope["client"].) The client host is therefore always a valid IP address in canonical form
//   (ip_address.hpp), safe for scope["client"].
// - Bounded: only the rightmost k_max_forwarded_elements elements of a kind are examined. If
//   the walk trusts all of them and more remain, it is handled like a malformed value: the kind
//   is ignored and the client is `unknown` (problem says why). With "*" only the leftmost
//   element is read. Finding the elements is one pass over the header bytes, which the HTTP
//   parser bounds.
// - The scheme: X-Forwarded-Proto is a list too. When it has exactly as many elements as
//   X-Forwarded-For, the element at the client's position is used (each proxy appended the
//   scheme it was reached by, next to the address it was reached from); otherwise the rightmost
//   (what the nearest, trusted, proxy says). Forwarded: proto= of the client's element. Only
//   http, https, ws and wss are accepted, case-insensitively, returned lowercase (uvicorn: the
//   same set, case-sensitive); anything else leaves the scheme alone. For a WebSocket scope the
//   caller maps http -> ws and https -> wss, as uvicorn does.
//
// Contract: pure, no I/O; resolve_forwarded() allocates nothing (the result holds its strings
// inline) and is safe on any thread with a shared const trusted_networks. The caller only needs
// to call it when one of the three headers was seen.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/ip_address.hpp"

namespace coachwhip::proxy {

inline constexpr std::string_view k_unix_literal = "unix:";
inline constexpr size_t k_max_forwarded_elements = 64;

class trusted_networks {
  public:
    trusted_networks() = default;  // trusts nobody

    // `host`: an IP address text (matched against the networks) or anything else (matched
    // exactly against the literals). Never allocates.
    bool contains(std::string_view host) const noexcept;
    bool contains(const ip_address& addr) const noexcept;
    bool contains_unix() const noexcept { return everyone_ || has_unix_; }
    bool everyone() const noexcept { return everyone_; }

  private:
    friend struct trusted_parser;
    struct network {
        ip_address base;  // host bits zero
        uint8_t prefix;   // 0..32 for IPv4, 0..128 for IPv6
    };
    bool match_networks(const ip_address& addr) const noexcept;

    std::vector<network> networks_;
    std::vector<std::string> literals_;
    bool everyone_ = false;
    bool has_unix_ = false;
};

struct trusted_networks_result {
    trusted_networks networks;
    std::string error;  // empty on success, else e.g.
                        // "--forwarded-allow-ips: '10.0.0.0/33' is not an IP address or CIDR"
};

// Parses a --forwarded-allow-ips value. `option` names the setting in error messages.
trusted_networks_result parse_trusted_networks(std::string_view spec,
                                               std::string_view option = "--forwarded-allow-ips");

// The connection's immediate peer, as the socket reports it.
struct peer_address {
    std::string_view host;     // TCP: the peer's IP text, e.g. from inet_ntop
    bool unix_socket = false;  // true: a Unix-domain socket peer (host ignored)
};

// The values of every line of each header, in the order received (empty spans when absent).
struct forwarded_headers {
    std::span<const std::string_view> x_forwarded_for;
    std::span<const std::string_view> x_forwarded_proto;
    std::span<const std::string_view> forwarded;
};

enum class client_source : uint8_t {
    peer,     // keep the socket peer: untrusted peer, or no client named by the headers
    header,   // `host` / `port` below name the client
    unknown,  // a trusted proxy forwarded it but the client cannot be named: scope["client"]
              // must be None (see "Unknown client" above)
};

enum class forwarded_kind : uint8_t { none, x_forwarded, forwarded };

// A Forwarded host= value after unquoting; at most 255 bytes (longer is malformed).
struct host_text {
    std::array<char, 255> chars{};
    uint8_t size = 0;

    std::string_view view() const noexcept { return {chars.data(), size}; }
    bool empty() const noexcept { return size == 0; }
};

struct forwarded_result {
    client_source client = client_source::peer;
    ip_text host;              // client == header: canonical IP text ("192.0.2.1", "2001:db8::1")
    uint16_t port = 0;         // client == header: the node's port when it had one, else 0 (as
                               // uvicorn reports X-Forwarded-For clients)
    std::string_view scheme;   // "http", "https", "ws" or "wss" (static storage), or empty: keep
                               // the connection's own scheme
    host_text forwarded_host;  // Forwarded host= of the client's element, empty when absent
    forwarded_kind kind = forwarded_kind::none;  // which header kind was used
    std::string_view problem;  // static: why a value was ignored (debug log); empty when none
};

forwarded_result resolve_forwarded(const peer_address& peer, const forwarded_headers& headers,
                                   const trusted_networks& trusted) noexcept;

}  // namespace coachwhip::proxy
