// fuzz_proxy_protocol — libFuzzer target for proxy::decode_proxy_header (PROXY protocol v1/v2).
//
// Input layout: one control byte, then the payload.
//   byte 0, bits 0-1: 0 or 1 = the payload is the raw connection bytes;
//                     2 = the payload drives a builder of a valid v2 header (then raw checks);
//                     3 = the payload drives a builder of a valid v1 line (then raw checks).
//                     A payload byte may give the built header one defect on purpose (a port
//                     with a leading zero, two spaces, a bare LF, a flipped bit under the
//                     CRC32c, a TLV twice or running past the end, ...): it must then fail.
//   byte 0, bits 2-7: a second, tighter proxy_limits.max_header = 8 * (byte0 >> 2)
// Checks on every decoded input (default limits and the tight one):
// - complete: length <= input size and <= max_header; v1 ends in CRLF, starts "PROXY ", is at
//   most 107 bytes; v2 has the signature and length 16 + its length field; every view lies in
//   the header; each address text is canonical (re-parses to the same address, and matches
//   glibc's inet_ntop except for IPv4-compatible ::a.b.c.d); v1 address fields re-parse with
//   inet_pton to the same bytes; LOCAL / UNKNOWN / UNSPEC provide no address.
// - prefixes: the decoder keeps no state, so a prefix shorter than a complete header is
//   incomplete, a longer one gives the same header; for other inputs a prefix is never complete,
//   an error on a prefix is the error of the whole input, and once a prefix errs every longer
//   one does. Prefixes sit at the end of exact-size heap blocks, so an over-read is an ASan
//   report. Bytes appended after a complete header change nothing.
// - limits: a tighter max_header can only turn an answer into an error.
// Builder modes also check the decoded fields equal what was built (addresses, ports, unix
// paths, every known TLV value, the CRC32c flag), so a decoder that mis-reads a valid header
// is caught even when it does not crash.
#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "proxy/proxy_protocol.hpp"

using namespace coachwhip::proxy;

namespace {

// ---- the raw checks ---------------------------------------------------------------------------

// A result with views as offsets, comparable across buffers.
struct snapshot {
    proxy_status status = proxy_status::incomplete;
    size_t length = 0;
    std::string_view error;
    std::vector<size_t> fields;
    std::string text;  // addresses, ports, families, flags

    bool operator==(const snapshot&) const = default;
};

bool inside(std::string_view part, std::string_view whole) {
    return part.empty() || (part.data() >= whole.data() &&
                            part.data() + part.size() <= whole.data() + whole.size());
}

bool ipv4_compatible(const ip_address& a) {
    return a.v6 &&
           std::all_of(a.bytes.begin(), a.bytes.begin() + 12, [](uint8_t b) { return b == 0; });
}

void check_endpoint(const proxy_endpoint& ep) {
    switch (ep.family) {
        case address_family::none:
            FUZZ_CHECK(ep.host.empty() && ep.port == 0 && ep.unix_path.empty());
            break;
        case address_family::inet:
        case address_family::inet6: {
            FUZZ_CHECK(ep.address.v6 == (ep.family == address_family::inet6));
            ip_address again;
            FUZZ_CHECK(parse_ip(ep.host.view(), again) && again == ep.address);
            FUZZ_CHECK(format_ip(again).view() == ep.host.view());
            char buf[INET6_ADDRSTRLEN];
            FUZZ_CHECK(inet_ntop(ep.address.v6 ? AF_INET6 : AF_INET, ep.address.bytes.data(), buf,
                                 sizeof buf) != nullptr);
            if (!ipv4_compatible(ep.address)) FUZZ_CHECK(ep.host.view() == buf);
            break;
        }
        case address_family::unix_socket:
            FUZZ_CHECK(ep.unix_path.size() <= 108 && ep.host.empty());
            if (!ep.unix_path.empty() && ep.unix_path[0] != '\0')
                FUZZ_CHECK(ep.unix_path.find('\0') == std::string_view::npos);
            break;
    }
}

// v1 address fields are the 3rd and 4th space-separated words; they must re-parse with glibc.
void check_v1_fields(std::string_view line, const proxy_result& r) {
    std::vector<std::string> words;
    size_t start = 0;
    for (size_t i = 0; i <= line.size(); ++i) {
        if (i == line.size() || line[i] == ' ') {
            words.emplace_back(line.substr(start, i - start));
            start = i + 1;
        }
    }
    if (words[1] == "UNKNOWN\r\n" || words[1] == "UNKNOWN") {
        FUZZ_CHECK(r.source.family == address_family::none);
        return;
    }
    FUZZ_CHECK(words.size() == 6);
    const bool v6 = words[1] == "TCP6";
    FUZZ_CHECK(v6 || words[1] == "TCP4");
    unsigned char src[16], dst[16];
    FUZZ_CHECK(inet_pton(v6 ? AF_INET6 : AF_INET, words[2].c_str(), src) == 1);
    FUZZ_CHECK(inet_pton(v6 ? AF_INET6 : AF_INET, words[3].c_str(), dst) == 1);
    FUZZ_CHECK(std::memcmp(src, r.source.address.bytes.data(), v6 ? 16 : 4) == 0);
    FUZZ_CHECK(std::memcmp(dst, r.destination.address.bytes.data(), v6 ? 16 : 4) == 0);
    FUZZ_CHECK(std::to_string(r.source.port) == words[4]);
    FUZZ_CHECK(std::to_string(r.destination.port) + "\r\n" == words[5]);
}

void check_complete(const proxy_result& r, std::string_view input, const proxy_limits& lim) {
    FUZZ_CHECK(r.length > 0 && r.length <= input.size() && r.length <= lim.max_header);
    const std::string_view header = input.substr(0, r.length);
    check_endpoint(r.source);
    check_endpoint(r.destination);
    FUZZ_CHECK((r.source.family == address_family::none) ==
               (r.destination.family == address_family::none));
    if (r.version == 1) {
        FUZZ_CHECK(header.starts_with("PROXY ") && header.ends_with("\r\n"));
        FUZZ_CHECK(header.size() <= 107);
        FUZZ_CHECK(header.find('\n') == header.size() - 1);
        FUZZ_CHECK(r.command == proxy_command::proxy && r.tlvs.tlv_block.empty());
        check_v1_fields(header, r);
        return;
    }
    FUZZ_CHECK(r.version == 2);
    FUZZ_CHECK(header.size() >= 16 &&
               header.starts_with(std::string_view("\r\n\r\n\0\r\nQUIT\n", 12)));
    const auto* u = reinterpret_cast<const unsigned char*>(header.data());
    FUZZ_CHECK(r.length == 16 + size_t(u[14] << 8 | u[15]));
    if (r.command == proxy_command::local || (u[13] >> 4) == 0 || (u[13] & 15) == 0)
        FUZZ_CHECK(r.source.family == address_family::none && r.tlvs.tlv_block.empty());
    const std::string_view views[] = {
        r.tlvs.alpn,        r.tlvs.authority, r.tlvs.unique_id,   r.tlvs.netns,
        r.tlvs.ssl.version, r.tlvs.ssl.cn,    r.tlvs.ssl.cipher,  r.tlvs.ssl.sig_alg,
        r.tlvs.ssl.key_alg, r.tlvs.tlv_block, r.source.unix_path, r.destination.unix_path};
    for (std::string_view v : views)
        FUZZ_CHECK(inside(v, header));
    FUZZ_CHECK(r.tlvs.unique_id.size() <= 128);
    if (!r.tlvs.tlv_block.empty())
        FUZZ_CHECK(r.tlvs.tlv_block.data() + r.tlvs.tlv_block.size() ==
                   header.data() + header.size());
    if (r.tlvs.crc32c_verified) FUZZ_CHECK(find_tlv(r.tlvs.tlv_block, 0x03).size() == 4);
}

snapshot decode_checked(std::string_view input, const proxy_limits& lim) {
    const proxy_result r = decode_proxy_header(input, lim);
    snapshot s;
    s.status = r.status;
    if (r.status == proxy_status::error) {
        FUZZ_CHECK(!r.error.empty());
        s.error = r.error;
        return s;
    }
    FUZZ_CHECK(r.error.empty());
    if (r.status == proxy_status::incomplete) {
        FUZZ_CHECK(r.length == 0);
        FUZZ_CHECK(input.size() <= std::max<size_t>(lim.max_header, 0));
        return s;
    }
    check_complete(r, input, lim);
    s.length = r.length;
    const auto off = [&](std::string_view v) {
        return v.empty() ? size_t(0) : size_t(v.data() - input.data());
    };
    for (std::string_view v :
         {r.tlvs.alpn, r.tlvs.authority, r.tlvs.unique_id, r.tlvs.netns, r.tlvs.ssl.version,
          r.tlvs.ssl.cn, r.tlvs.ssl.cipher, r.tlvs.ssl.sig_alg, r.tlvs.ssl.key_alg,
          r.tlvs.tlv_block, r.source.unix_path, r.destination.unix_path})
        s.fields.insert(s.fields.end(), {off(v), v.size()});
    s.text = std::to_string(r.version) + std::to_string(int(r.command)) +
             std::to_string(int(r.transport)) + std::to_string(int(r.source.family)) + " " +
             std::string(r.source.host.view()) + ":" + std::to_string(r.source.port) + " " +
             std::string(r.destination.host.view()) + ":" + std::to_string(r.destination.port) +
             (r.tlvs.crc32c_verified ? " crc" : "") + (r.tlvs.ssl.present ? " ssl" : "") +
             std::to_string(r.tlvs.ssl.client) + "/" + std::to_string(r.tlvs.ssl.verify);
    return s;
}

std::vector<size_t> prefix_lengths(size_t n, const snapshot& full) {
    std::vector<size_t> ks;
    for (size_t k = 0; k < n && k < 160; ++k)
        ks.push_back(k);
    for (size_t k : {full.length - 1, full.length, full.length + 1})
        ks.push_back(k);
    for (size_t i = 0; i < 32; ++i)
        ks.push_back(n * i / 32);
    std::sort(ks.begin(), ks.end());
    ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
    ks.erase(std::remove_if(ks.begin(), ks.end(), [n](size_t k) { return k >= n; }), ks.end());
    return ks;
}

snapshot check_input(std::string_view input, const proxy_limits& lim) {
    const snapshot full = decode_checked(input, lim);
    const size_t n = input.size();
    auto block = std::make_unique<char[]>(std::max<size_t>(n + 1, 1));
    std::memcpy(block.get(), input.data(), n);
    FUZZ_CHECK(decode_checked(std::string_view(block.get(), n), lim) == full);
    bool prefix_erred = false;
    for (size_t k : prefix_lengths(n, full)) {
        char* at = block.get() + (n - k);  // the prefix ends exactly where the block ends
        std::memmove(at, input.data(), k);
        const snapshot s = decode_checked(std::string_view(at, k), lim);
        if (full.status == proxy_status::complete && k < full.length) {
            FUZZ_CHECK(s.status == proxy_status::incomplete);
        } else if (full.status == proxy_status::complete) {
            FUZZ_CHECK(s == full);
        } else {
            FUZZ_CHECK(s.status != proxy_status::complete);
            if (s.status == proxy_status::error) FUZZ_CHECK(s.error == full.error);
            if (prefix_erred) FUZZ_CHECK(s.status == proxy_status::error);
            prefix_erred = prefix_erred || s.status == proxy_status::error;
        }
    }
    if (full.status == proxy_status::complete) {
        const std::string more = std::string(input) + "\x16\x03\x01GET / HTTP/1.1\r\n";
        snapshot s = decode_checked(more, lim);
        FUZZ_CHECK(s == full);
    }
    return full;
}

// ---- builders ---------------------------------------------------------------------------------

// Reads control values from the payload, then zeros when it runs out.
struct reader {
    std::string_view in;
    uint8_t byte() {
        if (in.empty()) return 0;
        const auto b = static_cast<uint8_t>(in[0]);
        in.remove_prefix(1);
        return b;
    }
    uint16_t u16() { return static_cast<uint16_t>(byte() << 8 | byte()); }
    std::string bytes(size_t n) {
        std::string s;
        for (size_t i = 0; i < n; ++i)
            s += static_cast<char>(byte());
        return s;
    }
};

std::string be16(size_t v) { return {char(v >> 8), char(v & 0xff)}; }

std::string tlv(uint8_t type, std::string_view v) {
    return std::string(1, char(type)) + be16(v.size()) + std::string(v);
}

struct built {
    std::string header;
    bool expect_error = false;  // a defect was put in on purpose
    std::string expect_alpn, expect_authority, expect_unique_id, expect_netns;
    std::string expect_ssl[5];  // version, cn, cipher, sig_alg, key_alg
    bool ssl = false, crc = false, addressed = false;
    uint8_t ssl_client = 0;
    uint32_t ssl_verify = 0;
    unsigned family = 0;
    std::string src, dst;  // raw address bytes
    uint16_t sport = 0, dport = 0;
};

std::string unix_field(std::string path) {
    path.resize(108, '\0');
    return path;
}

built build_v2(reader& rd) {
    built b;
    const uint8_t c = rd.byte();
    const bool local = (c & 0x80) != 0;
    b.family = c & 3;
    unsigned transport = (c >> 2) & 3;
    if (transport == 3) transport = 1;
    b.addressed = !local && b.family != 0 && transport != 0;
    std::string body;
    if (b.family == 1 || b.family == 2) {
        const size_t n = b.family == 1 ? 4 : 16;
        b.src = rd.bytes(n);
        b.dst = rd.bytes(n);
        b.sport = rd.u16();
        b.dport = rd.u16();
        body = b.src + b.dst + be16(b.sport) + be16(b.dport);
    } else if (b.family == 3) {
        b.src = unix_field(rd.bytes(rd.byte() % 109));
        b.dst = unix_field(rd.bytes(rd.byte() % 109));
        body = b.src + b.dst;
    }
    std::string tlvs;
    const unsigned count = rd.byte() % 12;
    uint64_t used = 0;
    for (unsigned i = 0; i < count; ++i) {
        const uint8_t kind = rd.byte() % 10;
        const std::string value = rd.bytes(rd.byte() % 40);
        const uint8_t known[] = {0x01, 0x02, 0x05, 0x30, 0x20};
        if (kind < 5) {
            const uint8_t t = known[kind];
            if (used & (uint64_t{1} << kind)) continue;
            used |= uint64_t{1} << kind;
            if (t == 0x20) {
                b.ssl = true;
                b.ssl_client = rd.byte();
                b.ssl_verify = uint32_t{rd.u16()} << 16 | rd.u16();
                std::string ssl = std::string(1, char(b.ssl_client)) +
                                  std::string{char(b.ssl_verify >> 24), char(b.ssl_verify >> 16),
                                              char(b.ssl_verify >> 8), char(b.ssl_verify)};
                for (int s = 0; s < 5; ++s) {
                    if (rd.byte() & 1) continue;
                    b.expect_ssl[s] = rd.bytes(1 + rd.byte() % 20);
                    ssl += tlv(uint8_t(0x21 + s), b.expect_ssl[s]);
                }
                if (rd.byte() & 1) ssl += tlv(0x2f, value);  // unknown sub-type: skipped
                tlvs += tlv(t, ssl);
                continue;
            }
            std::string* slot = t == 0x01   ? &b.expect_alpn
                                : t == 0x02 ? &b.expect_authority
                                : t == 0x05 ? &b.expect_unique_id
                                            : &b.expect_netns;
            *slot = value;
            tlvs += tlv(t, value);
        } else {
            const uint8_t others[] = {0x04, 0xe0, 0xea, 0xef, 0xf3, 0xff, 0x00, 0x40, 0x21};
            tlvs += tlv(others[rd.byte() % 9], value);  // skipped (0x21 is SSL-only)
        }
    }
    // One defect on purpose (only where TLVs are read): the decoder must then fail.
    const uint8_t defect = rd.byte() % 8;
    if (b.addressed && defect == 5) tlvs += tlv(0x02, "a") + tlv(0x02, "b");  // twice
    if (b.addressed && defect == 6) tlvs += "\x01";                           // 1 byte left
    if (b.addressed && defect == 7)
        tlvs += std::string(
            "\x01\x00\x05"
            "ab",
            5);                                                // overrun
    if (b.addressed && defect == 4) tlvs += tlv(0x03, "abc");  // CRC not 4 bytes
    b.expect_error = b.addressed && defect >= 4;
    // Empty values read back as empty views, which equal "absent": compare them so.
    // (No checksum with defects 4-7: a TLV placed after a broken one could be read differently.)
    b.crc = b.addressed && defect < 4 && (rd.byte() & 1);
    const std::string crc_tlv = b.crc ? tlv(0x03, std::string(4, '\0')) : std::string();
    const size_t crc_at = rd.byte() % 2 ? 0 : tlvs.size();  // first or last
    const std::string all_tlvs = tlvs.substr(0, crc_at) + crc_tlv + tlvs.substr(crc_at);
    body += all_tlvs;
    b.header = std::string("\r\n\r\n\0\r\nQUIT\n", 12) + char(local ? 0x20 : 0x21) +
               char(b.family << 4 | transport) + be16(body.size()) + body;
    if (b.crc) {
        const uint32_t crc = crc32c(b.header);
        const size_t at = b.header.size() - all_tlvs.size() + crc_at + 3;
        for (int i = 0; i < 4; ++i)
            b.header[at + i] = char(crc >> (24 - 8 * i));
        // Defect 3: one bit of the address block flipped after the checksum was computed.
        if (defect == 3) {
            const size_t block = b.family == 1 ? 12 : b.family == 2 ? 36 : 216;
            b.header[16 + rd.byte() % block] ^= char(1 << (rd.byte() % 8));
            b.expect_error = true;
        }
    }
    return b;
}

std::string_view unix_path_of(std::string_view field) {
    size_t n = field[0] == '\0' ? 1 : 0;
    while (n < 108 && field[n] != '\0')
        ++n;
    if (n == 1 && field[0] == '\0') n = 0;
    return field.substr(0, n);
}

void check_built_v2(const built& b, const proxy_result& r) {
    if (b.expect_error) {
        FUZZ_CHECK(r.status == proxy_status::error);
        return;
    }
    FUZZ_CHECK(r.status == proxy_status::complete);
    FUZZ_CHECK(r.length == b.header.size() && r.version == 2);
    if (!b.addressed) {
        FUZZ_CHECK(r.source.family == address_family::none);
        return;
    }
    if (b.family == 3) {
        FUZZ_CHECK(r.source.unix_path == unix_path_of(b.src));
        FUZZ_CHECK(r.destination.unix_path == unix_path_of(b.dst));
    } else {
        const size_t n = b.family == 1 ? 4 : 16;
        FUZZ_CHECK(std::memcmp(r.source.address.bytes.data(), b.src.data(), n) == 0);
        FUZZ_CHECK(std::memcmp(r.destination.address.bytes.data(), b.dst.data(), n) == 0);
        FUZZ_CHECK(r.source.port == b.sport && r.destination.port == b.dport);
    }
    FUZZ_CHECK(r.tlvs.alpn == b.expect_alpn && r.tlvs.authority == b.expect_authority);
    FUZZ_CHECK(r.tlvs.unique_id == b.expect_unique_id && r.tlvs.netns == b.expect_netns);
    FUZZ_CHECK(r.tlvs.crc32c_verified == b.crc && r.tlvs.ssl.present == b.ssl);
    if (b.ssl) {
        FUZZ_CHECK(r.tlvs.ssl.client == b.ssl_client && r.tlvs.ssl.verify == b.ssl_verify);
        const std::string_view got[] = {r.tlvs.ssl.version, r.tlvs.ssl.cn, r.tlvs.ssl.cipher,
                                        r.tlvs.ssl.sig_alg, r.tlvs.ssl.key_alg};
        for (int s = 0; s < 5; ++s)
            FUZZ_CHECK(got[s] == b.expect_ssl[s]);
    }
}

// A valid v1 line from the payload: family, addresses (as inet_ntop writes them, sometimes
// upper-cased), ports; or UNKNOWN with some junk.
std::string build_v1(reader& rd, std::string& expect) {
    const uint8_t c = rd.byte();
    if ((c & 3) == 3) {
        std::string junk;
        for (uint8_t n = rd.byte() % 80; n > 0; --n) {
            const char ch = char(rd.byte());
            junk += (ch == '\r' || ch == '\n') ? 'x' : ch;
        }
        expect = "unknown";
        return junk.empty() && (c & 4) ? "PROXY UNKNOWN\r\n" : "PROXY UNKNOWN " + junk + "\r\n";
    }
    const bool v6 = (c & 1) != 0;
    char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
    const std::string sa = rd.bytes(v6 ? 16 : 4), sb = rd.bytes(v6 ? 16 : 4);
    inet_ntop(v6 ? AF_INET6 : AF_INET, sa.data(), a, sizeof a);
    inet_ntop(v6 ? AF_INET6 : AF_INET, sb.data(), b, sizeof b);
    std::string ta = a, tb = b;
    const uint16_t sp = rd.u16(), dp = rd.u16();
    expect = sa + sb + std::to_string(sp) + "/" + std::to_string(dp);
    std::string sps = std::to_string(sp), dps = std::to_string(dp), sep = " ", end = "\r\n";
    // One defect on purpose (§2.1 rules), after which the decoder must fail.
    switch (rd.byte() % 8) {
        case 2: sps = "0" + sps; break;                             // port with a leading zero
        case 3: ta = v6 ? "[" + ta + "]" : "0" + ta; break;         // octet leading zero / brackets
        case 4: sep = "  "; break;                                  // two spaces
        case 5: end = " \r\n"; break;                               // trailing space
        case 6: end = "\n"; break;                                  // bare LF
        case 7: dps = std::to_string(unsigned{dp} + 65536); break;  // port out of range
        default: break;
    }
    if (sps.size() != std::to_string(sp).size() || ta != a || sep != " " || end != "\r\n" ||
        dps != std::to_string(dp))
        expect = "error";
    if (c & 8)
        for (char& ch : ta)
            ch = char(std::toupper(static_cast<unsigned char>(ch)));
    return std::string("PROXY ") + (v6 ? "TCP6 " : "TCP4 ") + ta + " " + tb + sep + sps + " " +
           dps + end;
}

void check_built_v1(const std::string& line, const std::string& expect, const proxy_result& r) {
    if (line.size() > 107 || expect == "error") {  // a defect, or longer than §2.1's bound
        FUZZ_CHECK(r.status == proxy_status::error);
        return;
    }
    FUZZ_CHECK(r.status == proxy_status::complete && r.length == line.size() && r.version == 1);
    if (expect == "unknown") {
        FUZZ_CHECK(r.source.family == address_family::none);
        return;
    }
    const bool v6 = r.source.family == address_family::inet6;
    const size_t n = v6 ? 16 : 4;
    const std::string got =
        std::string(reinterpret_cast<const char*>(r.source.address.bytes.data()), n) +
        std::string(reinterpret_cast<const char*>(r.destination.address.bytes.data()), n) +
        std::to_string(r.source.port) + "/" + std::to_string(r.destination.port);
    FUZZ_CHECK(got == expect);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const uint8_t control = data[0];
    std::string payload(reinterpret_cast<const char*>(data) + 1, size - 1);
    const proxy_limits defaults{};
    if ((control & 3) == 2) {
        reader rd{payload};
        const built b = build_v2(rd);
        if (b.header.size() <= defaults.max_header) {
            check_built_v2(b, decode_proxy_header(b.header, defaults));
            payload = b.header + std::string(rd.in);  // the rest follows the header
        }
    } else if ((control & 3) == 3) {
        reader rd{payload};
        std::string expect;
        const std::string line = build_v1(rd, expect);
        check_built_v1(line, expect, decode_proxy_header(line, defaults));
        payload = line + std::string(rd.in);
    }
    const snapshot wide = check_input(payload, defaults);
    const proxy_limits tight{size_t{8} * (control >> 2)};
    const snapshot narrow = check_input(payload, tight);
    // A tighter limit only adds errors; whatever it accepts, the default accepts identically.
    if (narrow.status == proxy_status::complete) FUZZ_CHECK(narrow == wide);
    if (wide.status == proxy_status::error) FUZZ_CHECK(narrow.status == proxy_status::error);
    return 0;
}
