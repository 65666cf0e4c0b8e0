// coachwhip::proxy PROXY protocol header decoder, versions 1 and 2 (HAProxy, "The PROXY
// protocol", revision 2020/03/05: §2.1 text format, §2.2 binary format and its TLVs).
//
// A listener configured for the PROXY protocol calls decode_proxy_header() on the first bytes of
// every connection, before TLS and before HTTP. The spec (§2) is explicit that the receiver MUST
// NOT guess whether a header is there: only call this on listeners where it is required.
//
// Contract
// - Pure: bytes in, a result out. No I/O, no allocation, no global state; safe on any thread.
// - Stateless and restartable: call it again with a longer prefix of the same stream after more
//   bytes arrive (each call re-reads from the start; a header is at most limits.max_header
//   bytes, so the total work stays small). It validates as far as the input goes:
//     complete   - a whole valid header; `length` bytes belong to it. Everything after it (the
//                  TLS ClientHello, the HTTP request) is NOT consumed and is the caller's.
//     incomplete - every byte so far can still begin a valid header; read more. A prefix of a
//                  valid header always gives incomplete, never error.
//     error      - some byte proves the input is not a valid header; close the connection
//                  (§2.1: "abort the connection as soon as possible"). Input that is neither
//                  v1 nor v2 fails on its first byte (neither 'P' nor '\r'); a v2 header whose
//                  declared length exceeds limits.max_header fails as soon as its 16-byte
//                  fixed part is in, without waiting for (or buffering) the rest.
//   A prefix of an input never gets `complete` when the whole input gets `error`, and once a
//   prefix gets `error`, every longer input gets the same error (the CRC32c check, which needs
//   the whole header, is the only error that cannot show on a prefix).
// - Zero-copy: every string_view in the result points into `input`; it stays valid for as long
//   as the caller keeps those bytes where they are (copy what you need before compacting or
//   reusing the read buffer). Address texts are held inline in the result (`ip_text`).
// - Strict. v1: "PROXY" SP ("TCP4" | "TCP6") SP src SP dst SP sport SP dport CRLF with single
//   spaces, addresses of the declared family (ip_address.hpp rules: no leading zeros), decimal
//   ports 0..65535 without leading zeros, at most 107 bytes including CRLF (§2.1); or "PROXY
//   UNKNOWN" followed by CRLF or by SP and any bytes other than CR and LF up to the CRLF. A bare
//   CR or LF anywhere is an error. v2: the 12-byte signature, version nibble 2, command LOCAL (0)
//   or PROXY (1), address family 0..3 and transport 0..2 (anything else is an error, §2.2), a
//   length covering the address block of the declared family, and a TLV area that is exactly a
//   sequence of whole TLVs (a length running past the header is an error).
//
// What the result says (fields not listed stay at their defaults)
// - version 1 or 2, `length`.
// - command: v2 LOCAL -> `local` (a health check from the proxy itself: §2.2 says use the real
//   socket endpoints and ignore the rest of the block; TLVs are not parsed). Everything else ->
//   `proxy`.
// - source / destination: provided (family != none) only for v1 TCP4/TCP6 and for v2 PROXY
//   with family INET/INET6/UNIX and transport STREAM/DGRAM. For v1 UNKNOWN, v2 LOCAL and v2
//   UNSPEC (either nibble 0) they are "not provided": the caller keeps the real socket peer.
// - tlvs (v2 PROXY with a provided address only; the TLVs start right after the address block of
//   the declared family - with UNSPEC that place is unknown, so nothing after the fixed part is
//   read):
//     PP2_TYPE_ALPN (0x01), AUTHORITY (0x02), UNIQUE_ID (0x05, at most 128 bytes), NETNS (0x30)
//     -> views of their values; PP2_TYPE_CRC32C (0x03, exactly 4 bytes) -> verified over the
//     whole header with the checksum field zeroed (§2.2.3); a mismatch is an error;
//     PP2_TYPE_SSL (0x20) -> client bits, verify, and the sub-TLVs VERSION (0x21), CN (0x22),
//     CIPHER (0x23), SIG_ALG (0x24), KEY_ALG (0x25); NOOP (0x04) and every other type (the
//     0xE0-0xEF custom range used by AWS and GCP, experimental and future types, unknown SSL
//     sub-types) are skipped but must still be well formed. Any known type (or SSL sub-type)
//     appearing twice is an error: two checksums or two authorities have no single meaning.
//     `tlv_block` is the whole validated TLV area, for find_tlv() on custom types.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "proxy/ip_address.hpp"

namespace coachwhip::proxy {

struct proxy_limits {
    // The whole header, v1 or v2, in bytes. A v1 line is also bounded by the spec's 107 bytes.
    size_t max_header = 4096;
};

enum class proxy_status : uint8_t { complete, incomplete, error };
enum class proxy_command : uint8_t { proxy, local };
enum class proxy_transport : uint8_t { unspec, stream, dgram };  // v1 TCP4/TCP6: stream
enum class address_family : uint8_t { none, inet, inet6, unix_socket };

struct proxy_endpoint {
    address_family family = address_family::none;  // none: not provided, use the socket's own
    ip_address address;                            // inet / inet6
    ip_text host;                                  // inet / inet6: canonical text ("192.0.2.1",
                                                   // "2001:db8::1"), like inet_ntop
    uint16_t port = 0;                             // inet / inet6
    std::string_view unix_path;  // unix_socket: the 108-byte field up to its first NUL after
                                 // the first byte (a Linux abstract name keeps its leading NUL)
};

// PP2_TYPE_SSL (§2.2.6). Strings are views of the sub-TLV values; empty when absent.
struct proxy_ssl {
    bool present = false;
    uint8_t client = 0;   // PP2_CLIENT_SSL 0x01 | PP2_CLIENT_CERT_CONN 0x02 | _CERT_SESS 0x04
    uint32_t verify = 0;  // 0: the client presented a certificate and it verified
    std::string_view version, cn, cipher, sig_alg, key_alg;
};

struct proxy_tlvs {
    std::string_view alpn, authority, unique_id, netns;  // empty when absent
    bool crc32c_verified = false;  // a PP2_TYPE_CRC32C TLV was present and matched
    proxy_ssl ssl;
    std::string_view tlv_block;  // every TLV, validated; for find_tlv()
};

struct proxy_result {
    proxy_status status = proxy_status::incomplete;
    size_t length = 0;  // complete: bytes of the header, to drop from the read buffer
    uint8_t version = 0;
    proxy_command command = proxy_command::proxy;
    proxy_transport transport = proxy_transport::unspec;
    proxy_endpoint source, destination;
    proxy_tlvs tlvs;
    std::string_view error;  // error: a static reason naming the rule, e.g.
                             // "PROXY v1 header: port out of range"
};

// Decodes the PROXY header at the start of `input`.
proxy_result decode_proxy_header(std::string_view input, const proxy_limits& limits) noexcept;

// The value of the first TLV of `type` in `tlv_block` (a proxy_tlvs::tlv_block), or an empty view
// with a null data() when there is none. E.g. AWS's VPC endpoint: find_tlv(block, 0xEA) gives
// "\x01vpce-...": subtype 0x01 then the endpoint id.
std::string_view find_tlv(std::string_view tlv_block, uint8_t type) noexcept;

// CRC32c (Castagnoli, RFC 4960 Appendix B / RFC 3720 §B.4), as PP2_TYPE_CRC32C uses it.
// `crc` continues an earlier call: crc32c(b, crc32c(a)) == crc32c(a + b). Exposed for tests
// and the fuzz target, which build headers with a valid checksum.
uint32_t crc32c(std::string_view data, uint32_t crc = 0) noexcept;

}  // namespace coachwhip::proxy
