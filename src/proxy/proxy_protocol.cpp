// coachwhip::proxy PROXY protocol decoder. The contract is in proxy_protocol.hpp; this file says
// why. Section numbers are those of HAProxy's doc/proxy-protocol.txt.
//
// Shape: the first byte picks the version ('P' -> v1 text, '\r' -> v2 binary; §2.2 "identifying
// the protocol version"). Each version is one left-to-right pass that stops at the first byte it
// cannot accept, so whatever a prefix proves (error, or "still fine") holds for every longer
// input too. A header is small (107 bytes for v1, max_header for v2), so re-reading it from the
// start on every call costs less than keeping state between calls would.
#include "proxy/proxy_protocol.hpp"

#include <algorithm>
#include <array>

namespace coachwhip::proxy {
namespace {

constexpr std::string_view k_not_proxy =
    "not a PROXY protocol header (neither v1 \"PROXY \" nor the v2 signature)";

proxy_result fail(std::string_view reason) {
    proxy_result r;
    r.status = proxy_status::error;
    r.error = reason;
    return r;
}

proxy_result need_more() { return proxy_result{}; }

// ---- version 1 (§2.1) -----------------------------------------------------------------------

// §2.1: "If the CRLF sequence is not found in the first 107 characters, the receiver should
// declare the line invalid."
constexpr size_t k_v1_max_line = 107;

// Where the scan of a v1 line is. `stop` is the end of the input or the first position no valid
// line can reach, whichever comes first; `at_limit` says which.
struct v1_cursor {
    const char* p;
    const char* stop;
    bool at_limit;
};

enum class step : uint8_t { ok, incomplete, error };

struct v1_state {
    v1_cursor c;
    proxy_result out;
    std::string_view reason;  // when a step returns error
};

step v1_fail(v1_state& s, std::string_view reason) {
    s.reason = reason;
    return step::error;
}

// The scan reached `stop` before the line ended. At the limit the line is too long whatever comes
// next, so say it now without waiting for more bytes; before it we just need more input.
step v1_out_of_bytes(v1_state& s) {
    if (s.c.at_limit)
        return v1_fail(s,
                       "PROXY v1 header: no CRLF within 107 bytes (§2.1) or the configured "
                       "proxy_limits.max_header");
    return step::incomplete;
}

step v1_expect(v1_state& s, std::string_view literal, std::string_view reason) {
    for (char want : literal) {
        if (s.c.p == s.c.stop) return v1_out_of_bytes(s);
        if (*s.c.p != want) return v1_fail(s, reason);
        ++s.c.p;
    }
    return step::ok;
}

// §2.1 protocol: "TCP4", "TCP6" or "UNKNOWN", each followed by SP ("UNKNOWN" may also end the
// line at once). Every byte is checked as it comes: the word so far must start one of them.
step v1_protocol(v1_state& s, std::string_view& proto) {
    constexpr std::string_view k_words[] = {"TCP4", "TCP6", "UNKNOWN"};
    const char* start = s.c.p;
    for (;;) {
        if (s.c.p == s.c.stop) return v1_out_of_bytes(s);
        const std::string_view word(start, static_cast<size_t>(s.c.p - start));
        const char b = *s.c.p;
        if ((b == ' ' || b == '\r') &&
            std::find(std::begin(k_words), std::end(k_words), word) != std::end(k_words)) {
            proto = word;
            return step::ok;
        }
        const std::string_view longer(start, word.size() + 1);
        if (std::none_of(std::begin(k_words), std::end(k_words),
                         [&](std::string_view w) { return w.starts_with(longer); }))
            return v1_fail(s, "PROXY v1 header: unknown protocol (expected TCP4, TCP6 or UNKNOWN)");
        ++s.c.p;
    }
}

// After "UNKNOWN": CRLF, or SP and anything but CR/LF up to the CRLF (§2.1: "the receiver must
// ignore anything presented before the CRLF is found").
step v1_unknown_rest(v1_state& s) {
    if (*s.c.p == ' ') {
        ++s.c.p;
        for (;;) {
            if (s.c.p == s.c.stop) return v1_out_of_bytes(s);
            if (*s.c.p == '\r') break;
            if (*s.c.p == '\n') return v1_fail(s, "PROXY v1 header: bare LF (§2.1: CRLF only)");
            ++s.c.p;
        }
    }
    return v1_expect(s, "\r\n", "PROXY v1 header: CR not followed by LF (§2.1: CRLF only)");
}

// One address field, ended by a single SP. The field is scanned as far as the input goes, so
// "PROXY TCP4 300" fails before the space arrives.
step v1_address(v1_state& s, bool v6, proxy_endpoint& ep, std::string_view reason) {
    const char* start = s.c.p;
    const char* stop = s.c.stop;
    const char* sp = std::find(start, stop, ' ');
    const std::string_view text(start, static_cast<size_t>(sp - start));
    ip_address addr;
    const ip_scan scan = v6 ? scan_ipv6(text, addr) : scan_ipv4(text, addr);
    if (scan == ip_scan::invalid) return v1_fail(s, reason);
    if (sp == stop) {
        s.c.p = sp;
        return v1_out_of_bytes(s);
    }
    if (text.empty()) return v1_fail(s, "PROXY v1 header: expected a single space between fields");
    if (scan != ip_scan::valid) return v1_fail(s, reason);
    ep.family = v6 ? address_family::inet6 : address_family::inet;
    ep.address = addr;
    ep.host = format_ip(addr);
    s.c.p = sp + 1;
    return step::ok;
}

// A port: 1-5 decimal digits, 0..65535, no leading zero unless it is "0" (§2.1), then `term`.
step v1_port(v1_state& s, char term, uint16_t& port) {
    unsigned value = 0;
    int digits = 0;
    for (;;) {
        if (s.c.p == s.c.stop) return v1_out_of_bytes(s);
        const char b = *s.c.p++;
        if (b == term && digits > 0) break;
        if ((b == term || b == ' ') && digits == 0)
            return v1_fail(s, "PROXY v1 header: expected a single space between fields");
        if (b == ' ') return v1_fail(s, "PROXY v1 header: space after the destination port");
        if (b == '\r') return v1_fail(s, "PROXY v1 header: line ends before the destination port");
        if (b == '\n') return v1_fail(s, "PROXY v1 header: bare LF (§2.1: CRLF only)");
        if (b < '0' || b > '9') return v1_fail(s, "PROXY v1 header: port is not a decimal number");
        if (digits == 1 && value == 0)
            return v1_fail(s, "PROXY v1 header: port has a leading zero (§2.1)");
        value = value * 10 + static_cast<unsigned>(b - '0');
        if (value > 65535) return v1_fail(s, "PROXY v1 header: port out of range");
        ++digits;
    }
    port = static_cast<uint16_t>(value);
    return step::ok;
}

step v1_tcp(v1_state& s, bool v6) {
    constexpr std::string_view k_reasons[2][2] = {
        {"PROXY v1 header: source address is not an IPv4 address (TCP4)",
         "PROXY v1 header: destination address is not an IPv4 address (TCP4)"},
        {"PROXY v1 header: source address is not an IPv6 address (TCP6)",
         "PROXY v1 header: destination address is not an IPv6 address (TCP6)"}};
    step r = v1_address(s, v6, s.out.source, k_reasons[v6][0]);
    if (r == step::ok) r = v1_address(s, v6, s.out.destination, k_reasons[v6][1]);
    if (r == step::ok) r = v1_port(s, ' ', s.out.source.port);
    if (r == step::ok) r = v1_port(s, '\r', s.out.destination.port);
    if (r == step::ok)
        r = v1_expect(s, "\n", "PROXY v1 header: CR not followed by LF (§2.1: CRLF only)");
    s.out.transport = proxy_transport::stream;
    return r;
}

proxy_result decode_v1(std::string_view input, const proxy_limits& limits) {
    v1_state s;
    const size_t max_line = std::min(k_v1_max_line, limits.max_header);
    s.c = {input.data(), input.data() + std::min(input.size(), max_line), max_line <= input.size()};
    s.out.version = 1;
    step r = v1_expect(s, "PROXY", k_not_proxy);
    if (r == step::ok)
        r = v1_expect(s, " ", "PROXY v1 header: expected a single space after \"PROXY\"");
    std::string_view proto;
    if (r == step::ok) r = v1_protocol(s, proto);
    if (r == step::ok && proto == "UNKNOWN") {
        r = v1_unknown_rest(s);
    } else if (r == step::ok) {
        if (*s.c.p != ' ')
            r = v1_fail(s, "PROXY v1 header: expected a single space after the protocol");
        ++s.c.p;
        if (r == step::ok) r = v1_tcp(s, proto == "TCP6");
    }
    if (r == step::error) return fail(s.reason);
    if (r == step::incomplete) return need_more();
    if (proto == "UNKNOWN") {  // §2.1: use the real connection's endpoints
        s.out.source = {};
        s.out.destination = {};
    }
    s.out.status = proxy_status::complete;
    s.out.length = static_cast<size_t>(s.c.p - input.data());
    return s.out;
}

// ---- version 2 (§2.2) -----------------------------------------------------------------------

constexpr unsigned char k_v2_signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                              0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr size_t k_v2_fixed = 16;  // signature, ver_cmd, fam, len

// §2.2 TLV types and PP2_TYPE_SSL sub-types.
enum tlv_type : uint8_t {
    k_alpn = 0x01,
    k_authority = 0x02,
    k_crc32c = 0x03,
    k_noop = 0x04,
    k_unique_id = 0x05,
    k_ssl = 0x20,
    k_ssl_version = 0x21,
    k_ssl_cn = 0x22,
    k_ssl_cipher = 0x23,
    k_ssl_sig_alg = 0x24,
    k_ssl_key_alg = 0x25,
    k_netns = 0x30,
};

uint16_t be16(const unsigned char* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

uint32_t be32(const unsigned char* p) {
    return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

// What the TLV walk has seen. `seen` catches duplicates: bit t for top-level types below 0x40,
// and the SSL sub-types in `seen_ssl`.
struct tlv_state {
    const unsigned char* header = nullptr;  // the start of the whole PROXY header (offsets)
    proxy_tlvs* out = nullptr;
    uint64_t seen = 0;
    uint64_t seen_ssl = 0;
    size_t crc_offset = 0;  // offset of the CRC32c value in the header; 0 when absent
    std::string_view reason;
};

std::string_view view_of(const unsigned char* p, size_t n) {
    return {reinterpret_cast<const char*>(p), n};
}

step tlv_fail(tlv_state& st, std::string_view reason) {
    st.reason = reason;
    return step::error;
}

step walk_tlvs(tlv_state& st, const unsigned char* area, size_t declared, size_t avail,
               bool in_ssl);

// Checks one TLV whose 3-byte header is in; `avail` of its `len` value bytes are present.
// Everything decided from the header alone is decided here, before the value arrives.
step take_tlv(tlv_state& st, uint8_t type, const unsigned char* value, size_t len, size_t avail,
              bool in_ssl) {
    const bool known = in_ssl ? (type >= k_ssl_version && type <= k_ssl_key_alg)
                              : (type == k_alpn || type == k_authority || type == k_crc32c ||
                                 type == k_unique_id || type == k_ssl || type == k_netns);
    if (known) {
        uint64_t& seen = in_ssl ? st.seen_ssl : st.seen;
        const uint64_t bit = uint64_t{1} << (type & 0x3f);
        if (seen & bit) return tlv_fail(st, "PROXY v2 header: the same TLV type appears twice");
        seen |= bit;
    }
    if (!in_ssl && type == k_crc32c && len != 4)
        return tlv_fail(st, "PROXY v2 header: PP2_TYPE_CRC32C value is not 4 bytes (§2.2.3)");
    if (!in_ssl && type == k_unique_id && len > 128)
        return tlv_fail(st, "PROXY v2 header: PP2_TYPE_UNIQUE_ID longer than 128 bytes (§2.2.5)");
    if (!in_ssl && type == k_ssl) {
        // §2.2.6: uint8_t client; uint32_t verify; then sub-TLVs filling the rest.
        if (len < 5)
            return tlv_fail(st, "PROXY v2 header: PP2_TYPE_SSL shorter than client + verify");
        if (avail < 5) return step::incomplete;
        st.out->ssl.present = true;
        st.out->ssl.client = value[0];
        st.out->ssl.verify = be32(value + 1);
        const step r = walk_tlvs(st, value + 5, len - 5, avail - 5, true);
        if (r != step::ok) return r;
    }
    if (avail < len) return step::incomplete;
    if (!in_ssl && type == k_crc32c) st.crc_offset = static_cast<size_t>(value - st.header);
    const std::string_view v = view_of(value, len);
    proxy_ssl& ssl = st.out->ssl;
    std::string_view* slot = nullptr;
    if (!in_ssl) {
        if (type == k_alpn) slot = &st.out->alpn;
        if (type == k_authority) slot = &st.out->authority;
        if (type == k_unique_id) slot = &st.out->unique_id;
        if (type == k_netns) slot = &st.out->netns;
    } else {
        if (type == k_ssl_version) slot = &ssl.version;
        if (type == k_ssl_cn) slot = &ssl.cn;
        if (type == k_ssl_cipher) slot = &ssl.cipher;
        if (type == k_ssl_sig_alg) slot = &ssl.sig_alg;
        if (type == k_ssl_key_alg) slot = &ssl.key_alg;
    }
    if (slot != nullptr) *slot = v;
    return step::ok;
}

// Walks the TLVs of an area that the header says is `declared` bytes long, of which `avail` are
// present. A TLV that cannot fit in what is left of the declared area is an error at once, even
// before its bytes arrive: the declared length is already known.
step walk_tlvs(tlv_state& st, const unsigned char* area, size_t declared, size_t avail,
               bool in_ssl) {
    size_t off = 0;
    while (off < declared) {
        if (declared - off < 3)
            return tlv_fail(st, "PROXY v2 header: trailing bytes too short for a TLV");
        if (avail - off < 3) return step::incomplete;
        const uint8_t type = area[off];
        const size_t len = be16(area + off + 1);
        if (len > declared - off - 3)
            return tlv_fail(st, "PROXY v2 header: TLV length runs past the end of the header");
        const size_t value_avail = std::min(len, avail - off - 3);
        const step r = take_tlv(st, type, area + off + 3, len, value_avail, in_ssl);
        if (r != step::ok) return r;
        off += 3 + len;
    }
    return step::ok;
}

// Address block size for the families that carry one (§2.2: 12, 36 and 216 bytes).
size_t address_block(unsigned family) {
    switch (family) {
        case 1: return 12;
        case 2: return 36;
        case 3: return 216;
        default: return 0;
    }
}

void read_inet(const unsigned char* block, bool v6, proxy_result& r) {
    const size_t n = v6 ? 16 : 4;
    proxy_endpoint* eps[2] = {&r.source, &r.destination};
    for (size_t i = 0; i < 2; ++i) {
        proxy_endpoint& ep = *eps[i];
        ep.family = v6 ? address_family::inet6 : address_family::inet;
        ep.address.v6 = v6;
        std::copy(block + i * n, block + (i + 1) * n, ep.address.bytes.begin());
        ep.host = format_ip(ep.address);
        ep.port = be16(block + 2 * n + 2 * i);
    }
}

// A sockaddr_un path field: up to the first NUL; a Linux abstract name (first byte NUL) keeps
// its leading NUL and runs to the next one. An all-NUL field is an unnamed socket: empty.
std::string_view unix_path(const unsigned char* field) {
    size_t n = field[0] == 0 ? 1 : 0;
    while (n < 108 && field[n] != 0)
        ++n;
    if (n == 1 && field[0] == 0) n = 0;
    return view_of(field, n);
}

void read_unix(const unsigned char* block, proxy_result& r) {
    r.source.family = r.destination.family = address_family::unix_socket;
    r.source.unix_path = unix_path(block);
    r.destination.unix_path = unix_path(block + 108);
}

bool crc_matches(const unsigned char* header, size_t total, size_t crc_offset) {
    const uint32_t want = be32(header + crc_offset);
    // §2.2.3: the checksum of the whole header with the 32-bit checksum field set to zero.
    uint32_t crc = crc32c(view_of(header, crc_offset));
    crc = crc32c(std::string_view("\0\0\0\0", 4), crc);
    crc = crc32c(view_of(header + crc_offset + 4, total - crc_offset - 4), crc);
    return crc == want;
}

proxy_result decode_v2(std::string_view input, const proxy_limits& limits) {
    const auto* in = reinterpret_cast<const unsigned char*>(input.data());
    const size_t n = input.size();
    // The fixed part, byte by byte in order, so the first byte that proves the input wrong is
    // the one reported whatever the input's length (a limit below 16 bytes counts as a byte
    // past the limit, at its position).
    for (size_t i = 0; i < std::min(n, k_v2_fixed); ++i) {
        if (i >= limits.max_header)
            return fail("PROXY v2 header: larger than proxy_limits.max_header");
        if (i < sizeof k_v2_signature && in[i] != k_v2_signature[i]) return fail(k_not_proxy);
        // §2.2: version in the high nibble ("the receiver must only accept this value");
        // command LOCAL or PROXY ("Receivers must drop connections presenting unexpected
        // values here").
        if (i == 12 && in[12] >> 4 != 2) return fail("PROXY v2 header: version is not 2");
        if (i == 12 && (in[12] & 0x0f) > 1)
            return fail("PROXY v2 header: command is neither LOCAL nor PROXY");
        // §2.2: other families and transports "must be rejected as invalid by receivers".
        if (i == 13 && in[13] >> 4 > 3) return fail("PROXY v2 header: unknown address family");
        if (i == 13 && (in[13] & 0x0f) > 2)
            return fail("PROXY v2 header: unknown transport protocol");
    }
    if (n < k_v2_fixed) return need_more();
    const unsigned command = in[12] & 0x0f;
    const unsigned family = in[13] >> 4, transport = in[13] & 0x0f;
    const size_t total = k_v2_fixed + be16(in + 14);
    if (total > limits.max_header)
        return fail("PROXY v2 header: larger than proxy_limits.max_header");
    const bool addressed = command == 1 && family != 0 && transport != 0;
    const size_t block = addressed ? address_block(family) : 0;
    if (k_v2_fixed + block > total)
        return fail("PROXY v2 header: length too short for the address family's block");

    proxy_result r;
    r.version = 2;
    r.command = command == 1 ? proxy_command::proxy : proxy_command::local;
    r.transport = static_cast<proxy_transport>(transport);
    tlv_state st;
    st.header = in;
    st.out = &r.tlvs;
    if (addressed) {
        // The TLVs are validated as far as they have arrived, so a bad one fails early.
        const size_t tlv_start = k_v2_fixed + block;
        const size_t avail = n > tlv_start ? std::min(n, total) - tlv_start : 0;
        const step s = walk_tlvs(st, in + tlv_start, total - tlv_start, avail, false);
        if (s == step::error) return fail(st.reason);
    }
    if (n < total) return need_more();
    if (addressed) {
        const size_t tlv_start = k_v2_fixed + block;
        r.tlvs.tlv_block = view_of(in + tlv_start, total - tlv_start);
        if (family == 3) {
            read_unix(in + k_v2_fixed, r);
        } else {
            read_inet(in + k_v2_fixed, family == 2, r);
        }
        if (st.crc_offset != 0) {
            if (!crc_matches(in, total, st.crc_offset))
                return fail("PROXY v2 header: CRC32c mismatch (PP2_TYPE_CRC32C, §2.2.3)");
            r.tlvs.crc32c_verified = true;
        }
    }
    r.status = proxy_status::complete;
    r.length = total;
    return r;
}

// ---- CRC32c ---------------------------------------------------------------------------------

// Reflected Castagnoli polynomial 0x1EDC6F41 (RFC 4960 Appendix B), one table lookup per byte.
constexpr std::array<uint32_t, 256> make_crc32c_table() {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        t[i] = c;
    }
    return t;
}

constexpr std::array<uint32_t, 256> k_crc32c_table = make_crc32c_table();

}  // namespace

uint32_t crc32c(std::string_view data, uint32_t crc) noexcept {
    crc = ~crc;
    for (char ch : data)
        crc = k_crc32c_table[(crc ^ static_cast<unsigned char>(ch)) & 0xff] ^ (crc >> 8);
    return ~crc;
}

proxy_result decode_proxy_header(std::string_view input, const proxy_limits& limits) noexcept {
    if (input.empty()) return need_more();
    if (input[0] == 'P') return decode_v1(input, limits);
    if (input[0] == '\r') return decode_v2(input, limits);
    return fail(k_not_proxy);
}

std::string_view find_tlv(std::string_view tlv_block, uint8_t type) noexcept {
    const auto* p = reinterpret_cast<const unsigned char*>(tlv_block.data());
    size_t off = 0;
    while (tlv_block.size() - off >= 3) {
        const size_t len = be16(p + off + 1);
        if (len > tlv_block.size() - off - 3) break;  // not a validated block: stop safely
        if (p[off] == type) return view_of(p + off + 3, len);
        off += 3 + len;
    }
    return {};
}

}  // namespace coachwhip::proxy
