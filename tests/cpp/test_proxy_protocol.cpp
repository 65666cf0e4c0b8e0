// Tests for proxy::decode_proxy_header (src/proxy/proxy_protocol.cpp).
//
// Every table case is decoded from exact-size heap copies (ASan catches over-reads) at every
// prefix length: a prefix of a valid header must be incomplete, the whole header complete with
// the same answer however it was split, and the request bytes after it left alone. An invalid
// input must fail, and no prefix of it may ever be complete.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/proxy_protocol.hpp"

namespace coachwhip::proxy::test {
namespace {

using namespace std::string_literals;
using namespace std::string_view_literals;

const std::string k_request = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";

// ---- builders for v2 headers ----------------------------------------------------------------

const std::string k_sig = "\r\n\r\n\0\r\nQUIT\n"s;

std::string be16(size_t v) { return {char(v >> 8), char(v & 0xff)}; }

std::string tlv(uint8_t type, std::string_view value) {
    return std::string(1, char(type)) + be16(value.size()) + std::string(value);
}

std::string v2(uint8_t ver_cmd, uint8_t fam, std::string_view body) {
    return k_sig + char(ver_cmd) + char(fam) + be16(body.size()) + std::string(body);
}

std::string inet4(std::string_view src, std::string_view dst, uint16_t sp, uint16_t dp) {
    ip_address a, b;
    EXPECT_TRUE(parse_ipv4(src, a) && parse_ipv4(dst, b));
    return std::string(a.bytes.begin(), a.bytes.begin() + 4) +
           std::string(b.bytes.begin(), b.bytes.begin() + 4) + be16(sp) + be16(dp);
}

std::string inet6(std::string_view src, std::string_view dst, uint16_t sp, uint16_t dp) {
    ip_address a, b;
    EXPECT_TRUE(parse_ipv6(src, a) && parse_ipv6(dst, b));
    return std::string(a.bytes.begin(), a.bytes.end()) +
           std::string(b.bytes.begin(), b.bytes.end()) + be16(sp) + be16(dp);
}

std::string unix_block(std::string_view src, std::string_view dst) {
    std::string s(216, '\0');
    std::memcpy(s.data(), src.data(), src.size());
    std::memcpy(s.data() + 108, dst.data(), dst.size());
    return s;
}

// A header with a PP2_TYPE_CRC32C TLV first, its value filled with crc32c() (the independent
// check of crc32c() itself is the real-world vectors below, computed elsewhere).
std::string v2_with_crc(uint8_t fam, std::string_view addr, std::string_view tlvs) {
    std::string h = v2(0x21, fam, std::string(addr) + tlv(0x03, "\0\0\0\0"sv) + std::string(tlvs));
    const uint32_t crc = crc32c(h);
    const size_t at = 16 + addr.size() + 3;
    for (int i = 0; i < 4; ++i)
        h[at + i] = char(crc >> (24 - 8 * i));
    return h;
}

// ---- real-world headers (bytes computed with an independent bitwise CRC32c) -------------------

// HAProxy "send-proxy-v2-ssl-cn" with "proxy-v2-options crc32c,unique-id,authority": TCP4
// 203.0.113.7:51514 -> 10.0.0.5:443; CRC32C, ALPN "h2", AUTHORITY, UNIQUE_ID, and SSL (client
// 0x07, verify 0, TLSv1.3, CN, cipher, sig_alg, key_alg).
const std::string k_haproxy_ssl =
    "\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a\x21\x11\x00\xaf"
    "\xcb\x00\x71\x07\x0a\x00\x00\x05\xc9\x3a\x01\xbb\x03\x00\x04\xca"
    "\xd8\xcb\x65\x01\x00\x02\x68\x32\x02\x00\x0f\x77\x77\x77\x2e\x65"
    "\x78\x61\x6d\x70\x6c\x65\x2e\x63\x6f\x6d\x05\x00\x2b\x34\x45\x36"
    "\x46\x31\x42\x32\x43\x3a\x43\x39\x33\x41\x5f\x30\x41\x30\x30\x30"
    "\x30\x30\x35\x3a\x30\x31\x42\x42\x5f\x36\x35\x46\x32\x41\x31\x42"
    "\x30\x5f\x30\x30\x30\x31\x3a\x30\x20\x00\x54\x07\x00\x00\x00\x00"
    "\x21\x00\x07\x54\x4c\x53\x76\x31\x2e\x33\x22\x00\x12\x63\x6c\x69"
    "\x65\x6e\x74\x2e\x65\x78\x61\x6d\x70\x6c\x65\x2e\x63\x6f\x6d\x23"
    "\x00\x16\x54\x4c\x53\x5f\x41\x45\x53\x5f\x32\x35\x36\x5f\x47\x43"
    "\x4d\x5f\x53\x48\x41\x33\x38\x34\x24\x00\x0a\x52\x53\x41\x2d\x53"
    "\x48\x41\x32\x35\x36\x25\x00\x07\x52\x53\x41\x32\x30\x34\x38"s;

// AWS NLB, TCP6 2001:db8:85a3::8a2e:370:7334:40001 -> [2600:1f18::10]:80, with the 0xEA TLV
// (PP2_TYPE_AWS, subtype 0x01 PP2_SUBTYPE_AWS_VPCE_ID) and no checksum.
const std::string k_aws_nlb_v6 =
    "\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a\x21\x21\x00\x3e"
    "\x20\x01\x0d\xb8\x85\xa3\x00\x00\x00\x00\x8a\x2e\x03\x70\x73\x34"
    "\x26\x00\x1f\x18\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10"
    "\x9c\x41\x00\x50\xea\x00\x17\x01\x76\x70\x63\x65\x2d\x30\x38\x64"
    "\x32\x62\x66\x31\x35\x66\x61\x63\x35\x30\x30\x31\x63\x39"s;

// AWS NLB, TCP4 198.51.100.23:33445 -> 172.31.5.9:8000, CRC32C then the 0xEA TLV.
const std::string k_aws_nlb_v4 =
    "\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a\x21\x11\x00\x2d"
    "\xc6\x33\x64\x17\xac\x1f\x05\x09\x82\xa5\x1f\x40\x03\x00\x04\x29"
    "\x3f\x21\x1b\xea\x00\x17\x01\x76\x70\x63\x65\x2d\x30\x31\x32\x33"
    "\x34\x35\x36\x37\x38\x39\x61\x62\x63\x64\x65\x66\x30"s;

std::string flip(std::string s, size_t at) {
    s[at] = char(s[at] ^ 1);
    return s;
}

// ---- snapshots ------------------------------------------------------------------------------

// A result with its views turned into owned strings (and offsets), comparable across buffers.
struct snapshot {
    proxy_status status = proxy_status::incomplete;
    size_t length = 0;
    std::string error, summary;
    std::vector<std::string> tlvs;  // name=value of every decoded TLV field
    size_t block_offset = 0;

    bool operator==(const snapshot&) const = default;
};

std::ostream& operator<<(std::ostream& os, const snapshot& s) {
    const char* names[] = {"complete", "incomplete", "error"};
    return os << names[int(s.status)] << " length=" << s.length << " error='" << s.error << "' "
              << s.summary;
}

std::string endpoint_text(const proxy_endpoint& ep) {
    switch (ep.family) {
        case address_family::none: return "none";
        case address_family::inet:
            return std::string(ep.host.view()) + ":" + std::to_string(ep.port);
        case address_family::inet6:
            return "[" + std::string(ep.host.view()) + "]:" + std::to_string(ep.port);
        case address_family::unix_socket: return "unix:" + std::string(ep.unix_path);
    }
    return "?";
}

// "v1 proxy stream 192.0.2.1:1 -> 192.0.2.2:2": what the table of valid cases compares.
std::string summarize(const proxy_result& r) {
    const char* cmd = r.command == proxy_command::local ? "local" : "proxy";
    const char* tr[] = {"unspec", "stream", "dgram"};
    return "v" + std::to_string(r.version) + " " + cmd + " " + tr[int(r.transport)] + " " +
           endpoint_text(r.source) + " -> " + endpoint_text(r.destination);
}

bool inside(std::string_view part, std::string_view whole) {
    return part.empty() || (part.data() >= whole.data() &&
                            part.data() + part.size() <= whole.data() + whole.size());
}

snapshot take(const proxy_result& r, std::string_view input) {
    snapshot s;
    s.status = r.status;
    s.error = std::string(r.error);
    if (r.status != proxy_status::complete) return s;
    s.length = r.length;
    s.summary = summarize(r);
    const std::string_view header = input.substr(0, r.length);
    const std::pair<const char*, std::string_view> fields[] = {
        {"alpn", r.tlvs.alpn},
        {"authority", r.tlvs.authority},
        {"unique_id", r.tlvs.unique_id},
        {"netns", r.tlvs.netns},
        {"ssl.version", r.tlvs.ssl.version},
        {"ssl.cn", r.tlvs.ssl.cn},
        {"ssl.cipher", r.tlvs.ssl.cipher},
        {"ssl.sig_alg", r.tlvs.ssl.sig_alg},
        {"ssl.key_alg", r.tlvs.ssl.key_alg},
        {"src.unix", r.source.unix_path},
        {"dst.unix", r.destination.unix_path},
        {"block", r.tlvs.tlv_block}};
    for (const auto& [name, v] : fields) {
        EXPECT_TRUE(inside(v, header)) << name << " points outside the header";
        if (!v.empty()) s.tlvs.push_back(std::string(name) + "=" + std::string(v));
    }
    if (r.tlvs.crc32c_verified) s.tlvs.push_back("crc32c");
    if (r.tlvs.ssl.present)
        s.tlvs.push_back("ssl client=" + std::to_string(r.tlvs.ssl.client) +
                         " verify=" + std::to_string(r.tlvs.ssl.verify));
    if (!r.tlvs.tlv_block.empty()) s.block_offset = size_t(r.tlvs.tlv_block.data() - input.data());
    return s;
}

snapshot decode_exact(std::string_view bytes, const proxy_limits& lim) {
    // Exactly bytes.size() bytes on the heap: a read of one more is an ASan report.
    std::unique_ptr<char[]> block(new char[std::max<size_t>(bytes.size(), 1)]);
    std::memcpy(block.get(), bytes.data(), bytes.size());
    const std::string_view in(block.get(), bytes.size());
    return take(decode_proxy_header(in, lim), in);
}

// Decodes `input` whole and at every prefix, checking the resumability contract; returns the
// answer for the whole input.
snapshot decode_every_prefix(std::string_view input, const proxy_limits& lim = {}) {
    const snapshot full = decode_exact(input, lim);
    bool seen_error = false;
    for (size_t k = 0; k < input.size(); ++k) {
        const snapshot s = decode_exact(input.substr(0, k), lim);
        if (full.status == proxy_status::complete && k < full.length) {
            EXPECT_EQ(s.status, proxy_status::incomplete) << "prefix " << k << ": " << s;
        } else if (full.status == proxy_status::complete) {
            EXPECT_EQ(s, full) << "prefix " << k;
        } else {
            EXPECT_NE(s.status, proxy_status::complete) << "prefix " << k << ": " << s;
            if (s.status == proxy_status::error) {
                EXPECT_EQ(s.error, full.error) << "prefix " << k;
            }
            // Once an error shows, every longer input shows it too.
            if (seen_error) {
                EXPECT_EQ(s.status, proxy_status::error) << "prefix " << k;
            }
            seen_error = seen_error || s.status == proxy_status::error;
        }
    }
    return full;
}

std::string test_name(std::string_view name) {
    std::string out;
    for (char c : name)
        out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    return out;
}

// ---- valid headers --------------------------------------------------------------------------

struct valid_case {
    std::string name;
    std::string header;
    std::string summary;
};

void PrintTo(const valid_case& c, std::ostream* os) { *os << c.name; }

const std::string k_ffff6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";

std::vector<valid_case> valid_cases() {
    return {
        // ---- v1 (§2.1)
        {"v1 spec example", "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
         "v1 proxy stream 192.168.0.1:56324 -> 192.168.0.11:443"},
        {"v1 tcp4 longest (56 bytes)", "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
         "v1 proxy stream 255.255.255.255:65535 -> 255.255.255.255:65535"},
        {"v1 tcp4 zeros", "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n",
         "v1 proxy stream 0.0.0.0:0 -> 0.0.0.0:0"},
        {"v1 tcp6", "PROXY TCP6 2001:db8::1 2001:db8::2 1234 443\r\n",
         "v1 proxy stream [2001:db8::1]:1234 -> [2001:db8::2]:443"},
        {"v1 tcp6 long form upper case",
         "PROXY TCP6 2001:0DB8:0000:0000:0000:0000:0000:0001 ::1 1 2\r\n",
         "v1 proxy stream [2001:db8::1]:1 -> [::1]:2"},
        {"v1 tcp6 longest (104 bytes)",
         "PROXY TCP6 " + k_ffff6 + " " + k_ffff6 + " 65535 65535\r\n",
         "v1 proxy stream [" + k_ffff6 + "]:65535 -> [" + k_ffff6 + "]:65535"},
        {"v1 tcp6 v4-mapped", "PROXY TCP6 ::ffff:192.0.2.1 :: 80 81\r\n",
         "v1 proxy stream [::ffff:192.0.2.1]:80 -> [::]:81"},
        {"v1 unknown short", "PROXY UNKNOWN\r\n", "v1 proxy unspec none -> none"},
        {"v1 unknown longest (107 bytes)",
         "PROXY UNKNOWN " + k_ffff6 + " " + k_ffff6 + " 65535 65535\r\n",
         "v1 proxy unspec none -> none"},
        {"v1 unknown junk ignored", "PROXY UNKNOWN what\x01ever \xff\r\n",
         "v1 proxy unspec none -> none"},
        // ---- v2 (§2.2)
        {"v2 tcp4", v2(0x21, 0x11, inet4("192.0.2.1", "192.0.2.2", 56324, 443)),
         "v2 proxy stream 192.0.2.1:56324 -> 192.0.2.2:443"},
        {"v2 udp4", v2(0x21, 0x12, inet4("192.0.2.1", "192.0.2.2", 53, 5353)),
         "v2 proxy dgram 192.0.2.1:53 -> 192.0.2.2:5353"},
        {"v2 tcp6", v2(0x21, 0x21, inet6("2001:db8::1", "::ffff:10.0.0.1", 1, 65535)),
         "v2 proxy stream [2001:db8::1]:1 -> [::ffff:10.0.0.1]:65535"},
        {"v2 udp6", v2(0x21, 0x22, inet6("fe80::1", "::", 0, 0)),
         "v2 proxy dgram [fe80::1]:0 -> [::]:0"},
        {"v2 unix stream", v2(0x21, 0x31, unix_block("/run/haproxy.sock", "/run/app.sock")),
         "v2 proxy stream unix:/run/haproxy.sock -> unix:/run/app.sock"},
        {"v2 unix dgram abstract", v2(0x21, 0x32, unix_block("\0abstract"sv, "")),
         "v2 proxy dgram unix:\0abstract -> unix:"s},
        {"v2 unix full 108 bytes", v2(0x21, 0x31, unix_block(std::string(108, 'p'), "x")),
         "v2 proxy stream unix:" + std::string(108, 'p') + " -> unix:x"},
        {"v2 local health check", v2(0x20, 0x00, ""), "v2 local unspec none -> none"},
        {"v2 local with an ignored address",
         v2(0x20, 0x11, inet4("192.0.2.1", "192.0.2.2", 1, 2) + tlv(0xff, "junk")),
         "v2 local stream none -> none"},
        {"v2 local with a short block", v2(0x20, 0x21, "abc"), "v2 local stream none -> none"},
        {"v2 proxy unspec", v2(0x21, 0x00, "ignored bytes"), "v2 proxy unspec none -> none"},
        {"v2 proxy inet unspec transport", v2(0x21, 0x10, "12345678"),
         "v2 proxy unspec none -> none"},
        {"v2 extra address bytes and tlvs",
         v2(0x21, 0x11, inet4("192.0.2.1", "192.0.2.2", 1, 2) + tlv(0x04, "") + tlv(0x01, "h2")),
         "v2 proxy stream 192.0.2.1:1 -> 192.0.2.2:2"},
        {"v2 all tlv types",
         v2(0x21, 0x11,
            inet4("192.0.2.1", "192.0.2.2", 1, 2) + tlv(0x01, "http/1.1") +
                tlv(0x02, "example.com") + tlv(0x04, "pad") + tlv(0x05, std::string(128, 'u')) +
                tlv(0x30, "blue") + tlv(0xe0, "gcp-psc!") + tlv(0xf0, "") + tlv(0xff, "future") +
                tlv(0x00, "zero")),
         "v2 proxy stream 192.0.2.1:1 -> 192.0.2.2:2"},
        {"v2 crc32c", v2_with_crc(0x11, inet4("192.0.2.1", "192.0.2.2", 1, 2), tlv(0x01, "h2")),
         "v2 proxy stream 192.0.2.1:1 -> 192.0.2.2:2"},
        {"haproxy send-proxy-v2-ssl-cn", k_haproxy_ssl,
         "v2 proxy stream 203.0.113.7:51514 -> 10.0.0.5:443"},
        {"aws nlb v6 vpce", k_aws_nlb_v6,
         "v2 proxy stream [2001:db8:85a3::8a2e:370:7334]:40001 -> [2600:1f18::10]:80"},
        {"aws nlb v4 crc vpce", k_aws_nlb_v4,
         "v2 proxy stream 198.51.100.23:33445 -> 172.31.5.9:8000"},
    };
}

class proxy_valid : public ::testing::TestWithParam<valid_case> {};

TEST_P(proxy_valid, complete_at_full_length_incomplete_before) {
    const valid_case& c = GetParam();
    const snapshot s = decode_every_prefix(c.header + k_request);
    ASSERT_EQ(s.status, proxy_status::complete) << s;
    EXPECT_EQ(s.length, c.header.size());  // the request after it is not consumed
    EXPECT_EQ(s.summary, c.summary);
    // The header alone gives the same answer.
    EXPECT_EQ(decode_every_prefix(c.header), s);
}

INSTANTIATE_TEST_SUITE_P(cases, proxy_valid, ::testing::ValuesIn(valid_cases()),
                         [](const auto& info) { return test_name(info.param.name); });

// ---- invalid headers ------------------------------------------------------------------------

struct invalid_case {
    std::string name;
    std::string input;
    std::string reason;  // a substring of the expected error
};

void PrintTo(const invalid_case& c, std::ostream* os) { *os << c.name; }

const std::string k_v4_block = inet4("192.0.2.1", "192.0.2.2", 1, 2);
const std::string k_tcp4_line = "PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n";

std::vector<invalid_case> invalid_cases() {
    return {
        // ---- not a PROXY header at all: fails on the first byte that says so
        {"http request", k_request, "not a PROXY protocol header"},
        {"http2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "not a PROXY protocol header"},
        {"tls client hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "not a PROXY"},
        {"lowercase proxy", "proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", "not a PROXY"},
        {"empty line", "\r\n" + k_request, "not a PROXY"},
        {"nul byte", "\0PROXY"s, "not a PROXY"},
        // ---- v1 shape
        {"v1 no space after proxy", "PROXYTCP4 1.2.3.4 1.2.3.4 1 2\r\n", "single space after"},
        {"v1 double space after proxy", "PROXY  TCP4 1.2.3.4 1.2.3.4 1 2\r\n", "unknown protocol"},
        {"v1 tcp5", "PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", "unknown protocol"},
        {"v1 udp4", "PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n", "unknown protocol"},
        {"v1 lowercase tcp4", "PROXY tcp4 1.2.3.4 1.2.3.4 1 2\r\n", "unknown protocol"},
        {"v1 tcp44", "PROXY TCP44 1.2.3.4 1.2.3.4 1 2\r\n", "unknown protocol"},
        {"v1 tcp4 then crlf", "PROXY TCP4\r\n", "single space after the protocol"},
        {"v1 double space before source", "PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n", "single space"},
        {"v1 double space before dest", "PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n", "single space"},
        {"v1 double space before port", "PROXY TCP4 1.2.3.4 1.2.3.4  1 2\r\n", "single space"},
        {"v1 double space before dport", "PROXY TCP4 1.2.3.4 1.2.3.4 1  2\r\n", "single space"},
        {"v1 tab separator", "PROXY TCP4\t1.2.3.4 1.2.3.4 1 2\r\n", "unknown protocol"},
        {"v1 trailing space", "PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n", "space after the destination"},
        {"v1 missing dport", "PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", "line ends before"},
        {"v1 missing everything", "PROXY TCP4 1.2.3.4\r\n", "source address"},
        {"v1 bare lf end", "PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", "bare LF"},
        {"v1 bare cr end", "PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX", "CR not followed by LF"},
        {"v1 unknown bare lf", "PROXY UNKNOWN\n", "unknown protocol"},
        {"v1 unknown bare lf later", "PROXY UNKNOWN a\nb\r\n", "bare LF"},
        {"v1 unknown bare cr", "PROXY UNKNOWN\r\r\n", "CR not followed by LF"},
        {"v1 unknown 108 bytes", "PROXY UNKNOWN " + std::string(92, 'x') + "\r\n", "107 bytes"},
        {"v1 never ends", "PROXY UNKNOWN " + std::string(200, 'x'), "107 bytes"},
        {"v1 tcp6 with v4 tails too long",
         "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
         "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 65535 65535\r\n",
         "107 bytes"},
        // ---- v1 addresses
        {"v1 octet 256", "PROXY TCP4 1.2.3.256 1.2.3.4 1 2\r\n", "source address is not an IPv4"},
        {"v1 octet 300 partial", "PROXY TCP4 300", "source address is not an IPv4"},
        {"v1 leading zero octet", "PROXY TCP4 01.2.3.4 1.2.3.4 1 2\r\n", "source address"},
        {"v1 three octets", "PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n", "source address"},
        {"v1 five octets", "PROXY TCP4 1.2.3.4.5 1.2.3.4 1 2\r\n", "source address"},
        {"v1 hostname", "PROXY TCP4 localhost 1.2.3.4 1 2\r\n", "source address"},
        {"v1 ipv6 in tcp4", "PROXY TCP4 ::1 ::1 1 2\r\n", "source address is not an IPv4"},
        {"v1 ipv4 in tcp6", "PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n", "source address is not an IPv6"},
        {"v1 dest family", "PROXY TCP4 1.2.3.4 ::1 1 2\r\n", "destination address is not an IPv4"},
        {"v1 two gaps", "PROXY TCP6 1::2::3 ::1 1 2\r\n", "source address is not an IPv6"},
        {"v1 bracketed", "PROXY TCP6 [::1] ::1 1 2\r\n", "source address is not an IPv6"},
        {"v1 zone id", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "source address is not an IPv6"},
        {"v1 nine groups", "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n", "source address"},
        {"v1 five hex digits", "PROXY TCP6 12345:: ::1 1 2\r\n", "source address"},
        // ---- v1 ports
        {"v1 port 65536", "PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", "port out of range"},
        {"v1 dport 99999", "PROXY TCP4 1.2.3.4 1.2.3.4 1 99999\r\n", "port out of range"},
        {"v1 port leading zero", "PROXY TCP4 1.2.3.4 1.2.3.4 080 2\r\n", "leading zero"},
        {"v1 port 00", "PROXY TCP4 1.2.3.4 1.2.3.4 00 2\r\n", "leading zero"},
        {"v1 port sign", "PROXY TCP4 1.2.3.4 1.2.3.4 +1 2\r\n", "not a decimal"},
        {"v1 port hex", "PROXY TCP4 1.2.3.4 1.2.3.4 0x50 2\r\n", "not a decimal"},
        // ---- v2 fixed part
        {"v2 bad signature", "\r\n\r\n\0\r\nQUIT\r"s, "not a PROXY"},
        {"v2 signature then http", "\r\n\r\nGET"s, "not a PROXY"},
        {"v2 version 1", k_sig + "\x11\x11\x00\x0c" + k_v4_block, "version is not 2"},
        {"v2 version 3", k_sig + "\x31\x11\x00\x0c" + k_v4_block, "version is not 2"},
        {"v2 command 2", k_sig + "\x22\x11\x00\x0c" + k_v4_block, "neither LOCAL nor PROXY"},
        {"v2 command f", k_sig + "\x2f\x11\x00\x0c" + k_v4_block, "neither LOCAL nor PROXY"},
        {"v2 family 4", k_sig + "\x21\x41\x00\x0c" + k_v4_block, "unknown address family"},
        {"v2 transport 3", k_sig + "\x21\x13\x00\x0c" + k_v4_block, "unknown transport"},
        {"v2 local family 5", k_sig + "\x20\x50\x00\x00"s, "unknown address family"},
        {"v2 inet block short", v2(0x21, 0x11, k_v4_block.substr(0, 11)), "too short"},
        {"v2 inet6 block short", v2(0x21, 0x21, std::string(35, 'a')), "too short"},
        {"v2 unix block short", v2(0x21, 0x31, std::string(215, 'a')), "too short"},
        {"v2 inet length zero", v2(0x21, 0x11, ""), "too short"},
        {"v2 larger than 4096", v2(0x21, 0x11, k_v4_block + tlv(0x04, std::string(4069, 'p'))),
         "larger than proxy_limits.max_header"},
        {"v2 length 65535 (fixed part only)", k_sig + "\x21\x11\xff\xff"s, "larger than"},
        // ---- v2 TLVs
        {"v2 tlv overruns", v2(0x21, 0x11, k_v4_block + "\x01\x00\x05" + "ab"), "runs past"},
        {"v2 tlv one byte left", v2(0x21, 0x11, k_v4_block + "\x01"), "too short for a TLV"},
        {"v2 tlv two bytes left", v2(0x21, 0x11, k_v4_block + tlv(0x01, "h2") + "\x01\x00"s),
         "too short for a TLV"},
        {"v2 duplicate alpn", v2(0x21, 0x11, k_v4_block + tlv(0x01, "h2") + tlv(0x01, "h2")),
         "twice"},
        {"v2 duplicate authority", v2(0x21, 0x11, k_v4_block + tlv(0x02, "a") + tlv(0x02, "b")),
         "twice"},
        {"v2 crc 3 bytes", v2(0x21, 0x11, k_v4_block + tlv(0x03, "abc")), "not 4 bytes"},
        {"v2 crc 5 bytes", v2(0x21, 0x11, k_v4_block + tlv(0x03, "abcde")), "not 4 bytes"},
        {"v2 crc mismatch", v2(0x21, 0x11, k_v4_block + tlv(0x03, "\0\0\0\0"s)), "CRC32c mismatch"},
        {"haproxy with a flipped address bit", flip(k_haproxy_ssl, 20), "CRC32c mismatch"},
        {"haproxy with a flipped crc bit", flip(k_haproxy_ssl, 31), "CRC32c mismatch"},
        {"v2 two crcs",
         v2(0x21, 0x11, k_v4_block + tlv(0x03, "\0\0\0\0"s) + tlv(0x03, "\0\0\0\0"s)), "twice"},
        {"v2 unique id 129", v2(0x21, 0x11, k_v4_block + tlv(0x05, std::string(129, 'u'))),
         "longer than 128"},
        {"v2 ssl 4 bytes", v2(0x21, 0x11, k_v4_block + tlv(0x20, "\x01\0\0\0"s)),
         "shorter than client + verify"},
        {"v2 ssl sub tlv overruns",
         v2(0x21, 0x11, k_v4_block + tlv(0x20, "\x01\0\0\0\0\x21\x00\x09TLSv1.3"s)), "runs past"},
        {"v2 ssl sub tlv truncated",
         v2(0x21, 0x11, k_v4_block + tlv(0x20, "\x01\0\0\0\0\x21\x00"s)), "too short for a TLV"},
        {"v2 ssl duplicate version",
         v2(0x21, 0x11,
            k_v4_block + tlv(0x20, "\x01\0\0\0\0"s + tlv(0x21, "TLSv1.2") + tlv(0x21, "TLSv1.3"))),
         "twice"},
        {"v2 duplicate ssl",
         v2(0x21, 0x11, k_v4_block + tlv(0x20, "\x01\0\0\0\0"s) + tlv(0x20, "\x01\0\0\0\0"s)),
         "twice"},
        {"v2 duplicate netns", v2(0x21, 0x11, k_v4_block + tlv(0x30, "a") + tlv(0x30, "a")),
         "twice"},
    };
}

class proxy_invalid : public ::testing::TestWithParam<invalid_case> {};

TEST_P(proxy_invalid, error_and_never_complete_on_a_prefix) {
    const invalid_case& c = GetParam();
    const snapshot s = decode_every_prefix(c.input);
    ASSERT_EQ(s.status, proxy_status::error) << s;
    EXPECT_NE(s.error.find(c.reason), std::string::npos) << s.error;
    // Bytes after it do not change the verdict.
    EXPECT_EQ(decode_exact(c.input + k_request, {}).error, s.error);
}

INSTANTIATE_TEST_SUITE_P(cases, proxy_invalid, ::testing::ValuesIn(invalid_cases()),
                         [](const auto& info) { return test_name(info.param.name); });

// ---- fields ---------------------------------------------------------------------------------

// The result's views point into `s`: keep the bytes alive (a temporary would dangle).
proxy_result decode(const std::string& s, proxy_limits lim = {}) {
    return decode_proxy_header(s, lim);
}
proxy_result decode(std::string&&, proxy_limits = {}) = delete;

TEST(proxy_fields, haproxy_ssl_tlvs) {
    const std::string input = k_haproxy_ssl + k_request;
    const proxy_result r = decode(input);
    ASSERT_EQ(r.status, proxy_status::complete) << r.error;
    EXPECT_EQ(r.length, 191u);
    EXPECT_EQ(r.version, 2);
    EXPECT_TRUE(r.tlvs.crc32c_verified);
    EXPECT_EQ(r.tlvs.alpn, "h2");
    EXPECT_EQ(r.tlvs.authority, "www.example.com");
    EXPECT_EQ(r.tlvs.unique_id, "4E6F1B2C:C93A_0A000005:01BB_65F2A1B0_0001:0");
    EXPECT_TRUE(r.tlvs.netns.empty());
    EXPECT_TRUE(r.tlvs.ssl.present);
    EXPECT_EQ(r.tlvs.ssl.client, 0x07);
    EXPECT_EQ(r.tlvs.ssl.verify, 0u);
    EXPECT_EQ(r.tlvs.ssl.version, "TLSv1.3");
    EXPECT_EQ(r.tlvs.ssl.cn, "client.example.com");
    EXPECT_EQ(r.tlvs.ssl.cipher, "TLS_AES_256_GCM_SHA384");
    EXPECT_EQ(r.tlvs.ssl.sig_alg, "RSA-SHA256");
    EXPECT_EQ(r.tlvs.ssl.key_alg, "RSA2048");
    EXPECT_EQ(r.source.host.view(), "203.0.113.7");
    EXPECT_EQ(r.source.address.bytes[0], 203);
    EXPECT_EQ(r.tlvs.tlv_block.size(), 191u - 28u);
}

TEST(proxy_fields, aws_vpce_id_through_find_tlv) {
    const proxy_result r = decode(k_aws_nlb_v6);
    ASSERT_EQ(r.status, proxy_status::complete) << r.error;
    EXPECT_FALSE(r.tlvs.crc32c_verified);
    EXPECT_EQ(find_tlv(r.tlvs.tlv_block, 0xEA), "\x01vpce-08d2bf15fac5001c9");
    EXPECT_EQ(find_tlv(r.tlvs.tlv_block, 0xE0).data(), nullptr);
    const proxy_result r4 = decode(k_aws_nlb_v4);
    ASSERT_EQ(r4.status, proxy_status::complete) << r4.error;
    EXPECT_TRUE(r4.tlvs.crc32c_verified);
    EXPECT_EQ(find_tlv(r4.tlvs.tlv_block, 0xEA), "\x01vpce-0123456789abcdef0");
    EXPECT_EQ(find_tlv(r4.tlvs.tlv_block, 0x03).size(), 4u);
}

TEST(proxy_fields, unknown_and_custom_tlvs_are_skipped) {
    const std::string h = v2(0x21, 0x11,
                             k_v4_block + tlv(0xe0, "12345678") + tlv(0x01, "h2") +
                                 tlv(0x20, "\x03\0\0\0\x01"s + tlv(0x2a, "?") + tlv(0x22, "cn")));
    const proxy_result r = decode(h);
    ASSERT_EQ(r.status, proxy_status::complete) << r.error;
    EXPECT_EQ(r.tlvs.alpn, "h2");
    EXPECT_EQ(r.tlvs.ssl.client, 3);
    EXPECT_EQ(r.tlvs.ssl.verify, 1u);
    EXPECT_EQ(r.tlvs.ssl.cn, "cn");
    EXPECT_EQ(find_tlv(r.tlvs.tlv_block, 0xe0), "12345678");
}

TEST(proxy_fields, local_and_unspec_do_not_read_tlvs) {
    // Garbage where TLVs would be: ignored with LOCAL (§2.2: "discard the protocol block").
    const std::string h = v2(0x20, 0x11, k_v4_block + "\x01\xff\xff");
    const proxy_result r = decode(h);
    ASSERT_EQ(r.status, proxy_status::complete) << r.error;
    EXPECT_EQ(r.command, proxy_command::local);
    EXPECT_EQ(r.source.family, address_family::none);
    EXPECT_TRUE(r.tlvs.tlv_block.empty());
}

TEST(proxy_fields, v1_views_and_inline_hosts) {
    const std::string line = "PROXY TCP6 2001:DB8:0:0:1:0:0:1 ::FFFF:10.0.0.1 65535 0\r\n";
    const proxy_result r = decode(line);
    ASSERT_EQ(r.status, proxy_status::complete) << r.error;
    EXPECT_EQ(r.length, line.size());
    EXPECT_EQ(r.source.host.view(), "2001:db8::1:0:0:1");
    EXPECT_EQ(r.destination.host.view(), "::ffff:10.0.0.1");
    EXPECT_EQ(r.source.port, 65535);
    EXPECT_EQ(r.destination.port, 0);
    EXPECT_TRUE(r.tlvs.tlv_block.empty());
}

// ---- limits ---------------------------------------------------------------------------------

TEST(proxy_limits, v2_exactly_at_the_limit_passes_one_over_fails_early) {
    const std::string pad_at = v2(0x21, 0x11, k_v4_block + tlv(0x04, std::string(4096 - 31, 'p')));
    ASSERT_EQ(pad_at.size(), 4096u);
    EXPECT_EQ(decode_every_prefix(pad_at + k_request).length, 4096u);
    const std::string over = v2(0x21, 0x11, k_v4_block + tlv(0x04, std::string(4097 - 31, 'p')));
    // Rejected as soon as the 16-byte fixed part is in: never buffered.
    EXPECT_EQ(decode_exact(over.substr(0, 15), {}).status, proxy_status::incomplete);
    EXPECT_EQ(decode_exact(over.substr(0, 16), {}).status, proxy_status::error);
}

TEST(proxy_limits, configured_limit_applies_to_both_versions) {
    proxy_limits lim;
    lim.max_header = 40;
    EXPECT_EQ(decode_every_prefix("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", lim).status,
              proxy_status::complete);  // 32 bytes
    EXPECT_EQ(decode_every_prefix("PROXY TCP4 10.20.30.40 50.60.70.80 1000 2000\r\n", lim).status,
              proxy_status::error);  // 46 bytes
    EXPECT_EQ(decode_every_prefix(v2(0x21, 0x11, k_v4_block), lim).status,
              proxy_status::complete);  // 28 bytes
    EXPECT_EQ(decode_every_prefix(v2(0x21, 0x11, k_v4_block + tlv(0x01, "http/1.1")), lim).status,
              proxy_status::complete);  // 39 bytes
    EXPECT_EQ(decode_every_prefix(v2(0x21, 0x11, k_v4_block + tlv(0x01, "http/1.1xx")), lim).status,
              proxy_status::error);  // 41 bytes
}

TEST(proxy_limits, tiny_limits_never_complete_a_v2_header) {
    proxy_limits lim;
    lim.max_header = 10;
    const snapshot s = decode_every_prefix(v2(0x20, 0x00, ""), lim);
    EXPECT_EQ(s.status, proxy_status::error);
}

// Found by fuzz_proxy_protocol: with a limit below 16 bytes, the 2-byte prefix "\r\r" failed as
// "larger than max_header" but the whole input as "not a PROXY header". The limit is now checked
// per byte position like every other rule, so both say the same.
TEST(proxy_limits, regress_limit_below_the_v2_fixed_part_is_positional) {
    for (size_t max : {0, 1, 5, 12, 15}) {
        proxy_limits lim;
        lim.max_header = max;
        const snapshot bad = decode_every_prefix("\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\r\x8bk", lim);
        EXPECT_EQ(bad.status, proxy_status::error);
        const snapshot good = decode_every_prefix(v2(0x20, 0x00, ""), lim);
        EXPECT_EQ(good.error, "PROXY v2 header: larger than proxy_limits.max_header");
    }
}

TEST(proxy_limits, empty_input_is_incomplete) {
    EXPECT_EQ(decode_proxy_header({}, {}).status, proxy_status::incomplete);
}

// ---- CRC32c ---------------------------------------------------------------------------------

TEST(crc32c, check_values) {
    EXPECT_EQ(crc32c("123456789"), 0xE3069283u);  // RFC 3720 §B.4 / the CRC catalogue
    EXPECT_EQ(crc32c(""), 0u);
    EXPECT_EQ(crc32c(std::string(32, '\0')), 0x8A9136AAu);  // RFC 3720 §B.4: 32 bytes of zeros
    EXPECT_EQ(crc32c(std::string(32, '\xff')), 0x62A8AB43u);
    EXPECT_EQ(crc32c("56789", crc32c("1234")), crc32c("123456789"));
}

}  // namespace
}  // namespace coachwhip::proxy::test
