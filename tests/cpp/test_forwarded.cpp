// Tests for proxy::parse_trusted_networks / proxy::resolve_forwarded (src/proxy/forwarded.cpp)
// and the IP text helpers they share with the PROXY decoder (src/proxy/ip_address.cpp).
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/forwarded.hpp"
#include "proxy/ip_address.hpp"

// Counts allocations on this thread while armed, to check the "allocates nothing" contract.
namespace {
thread_local bool g_counting = false;
thread_local size_t g_allocations = 0;
}  // namespace

void* operator new(size_t n) {
    if (g_counting) ++g_allocations;
    if (void* p = std::malloc(n ? n : 1)) return p;
    throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace coachwhip::proxy::test {
namespace {

using namespace std::string_literals;
using namespace std::string_view_literals;

std::string test_name(std::string_view name) {
    std::string out;
    for (char c : name)
        out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    return out;
}

// ---- IP text --------------------------------------------------------------------------------

struct canonical_case {
    std::string_view in, out;
};

TEST(ip_text, canonical_forms) {
    const canonical_case cases[] = {
        {"0.0.0.0", "0.0.0.0"},
        {"255.255.255.255", "255.255.255.255"},
        {"192.0.2.1", "192.0.2.1"},
        {"::", "::"},
        {"::1", "::1"},
        {"1::", "1::"},
        {"2001:DB8::1", "2001:db8::1"},
        {"2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"},
        {"1:0:0:2:0:0:0:3", "1:0:0:2::3"},       // RFC 5952 §4.2.3: the longest run
        {"1:0:0:2:0:0:3:4", "1::2:0:0:3:4"},     // tie: the first run
        {"1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"},  // §4.2.2: never "::" for one group
        {"0:2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"},
        {"::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"},  // "::" standing for one group is accepted
        {"1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"},
        {"::ffff:1.2.3.4", "::ffff:1.2.3.4"},  // §5: IPv4-mapped in dotted form
        {"::FFFF:0102:0304", "::ffff:1.2.3.4"},
        {"::1.2.3.4", "::102:304"},  // IPv4-compatible: hex, like Python
        {"1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"},
        {"fe80::1:2:3:4:5:6", "fe80:0:1:2:3:4:5:6"},
        {"0:0:0:0:0:0:0:0", "::"},
        {"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
         "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"},
    };
    for (const canonical_case& c : cases) {
        ip_address a;
        ASSERT_TRUE(parse_ip(c.in, a)) << c.in;
        EXPECT_EQ(format_ip(a).view(), c.out) << c.in;
        ip_address again;
        ASSERT_TRUE(parse_ip(format_ip(a).view(), again));
        EXPECT_EQ(again, a) << c.in;
    }
}

TEST(ip_text, rejects) {
    const std::string_view bad[] = {
        "",
        "1.2.3",
        "1.2.3.4.5",
        "01.2.3.4",
        "1.2.3.256",
        " 1.2.3.4",
        "1.2.3.4 ",
        "1.2.3.-4",
        "+1.2.3.4",
        "1..2.3",
        "0x1.2.3.4",
        "1:2:3:4:5:6:7:8:9",
        "1::2::3",
        ":::",
        ":1::",
        "1:",
        "12345::",
        "::g",
        "[::1]",
        "fe80::1%eth0",
        "1:2:3:4:5:6:7:1.2.3.4",
        "::1.2.3",
        "1.2.3.4::",
        "::ffff:1.2.3.04",
        "1:2:3:4:5:6:7:8::",
        "::1:2:3:4:5:6:7:8",
        "1:2:1.2.3.4",
        ":",
        "::/0",
        "1.2.3.4/32",
        "2001:db8::1\0"sv,
        "caf\xc3\xa9::1",
    };
    for (std::string_view s : bad) {
        ip_address a;
        EXPECT_FALSE(parse_ip(s, a)) << s;
    }
}

// Every string over a small alphabet: the scanners agree with glibc's inet_pton on what is an
// address (both reject leading zeros in IPv4), "invalid" never turns valid when more bytes come,
// and no prefix of a valid address is "invalid" (what the PROXY v1 decoder relies on).
void check_all_strings(std::string_view alphabet, size_t max_len, bool v6) {
    std::vector<std::string> level = {""};
    for (size_t len = 0; len <= max_len; ++len) {
        std::vector<std::string> next;
        for (const std::string& s : level) {
            ip_address a;
            const ip_scan scan = v6 ? scan_ipv6(s, a) : scan_ipv4(s, a);
            unsigned char want[16];
            const bool libc = inet_pton(v6 ? AF_INET6 : AF_INET, s.c_str(), want) == 1;
            ASSERT_EQ(scan == ip_scan::valid, libc) << "'" << s << "'";
            if (libc) {
                EXPECT_EQ(std::memcmp(a.bytes.data(), want, v6 ? 16 : 4), 0) << s;
            }
            if (scan == ip_scan::valid) {
                for (size_t k = 0; k < s.size(); ++k) {
                    ip_address p;
                    const std::string_view pre(s.data(), k);
                    EXPECT_NE(v6 ? scan_ipv6(pre, p) : scan_ipv4(pre, p), ip_scan::invalid)
                        << "prefix '" << pre << "' of '" << s << "'";
                }
            }
            if (scan == ip_scan::invalid) continue;  // no continuation can be valid: prune
            if (len < max_len)
                for (char c : alphabet)
                    next.push_back(s + c);
        }
        level = std::move(next);
    }
}

TEST(ip_text, ipv4_scanner_matches_inet_pton) { check_all_strings("0129.", 9, false); }

TEST(ip_text, ipv6_scanner_matches_inet_pton) { check_all_strings("01f:.", 9, true); }

TEST(ip_text, invalid_stays_invalid) {
    const std::string_view samples[] = {"1:2:1.2", "12345",    "1::2::", ":1",
                                        "01",      "1.2.3.4.", "256",    "1:2:3:4:5:6:7:8:"};
    for (std::string_view s : samples) {
        ip_address a;
        const bool v6 = s.find(':') != std::string_view::npos || s == "12345";
        ASSERT_EQ(v6 ? scan_ipv6(s, a) : scan_ipv4(s, a), ip_scan::invalid) << s;
        for (std::string_view tail : {"0", "1", ":", "::", ".", "1.2.3.4", "::1", "ff"}) {
            const std::string longer = std::string(s) + std::string(tail);
            EXPECT_EQ(v6 ? scan_ipv6(longer, a) : scan_ipv4(longer, a), ip_scan::invalid) << longer;
        }
    }
}

TEST(ip_text, prefixes_of_valid_are_prefix_or_valid) {
    ip_address a;
    EXPECT_EQ(scan_ipv4("", a), ip_scan::prefix);
    EXPECT_EQ(scan_ipv4("25", a), ip_scan::prefix);
    EXPECT_EQ(scan_ipv4("1.2.3.", a), ip_scan::prefix);
    EXPECT_EQ(scan_ipv4("1.2.3.4", a), ip_scan::valid);
    EXPECT_EQ(scan_ipv6("", a), ip_scan::prefix);
    EXPECT_EQ(scan_ipv6(":", a), ip_scan::prefix);
    EXPECT_EQ(scan_ipv6("1:2:3:4:5:6:1.2", a), ip_scan::prefix);
    EXPECT_EQ(scan_ipv6("::1.2", a), ip_scan::prefix);
    EXPECT_EQ(scan_ipv6("1:2:3:4:5:6:7", a), ip_scan::prefix);
    EXPECT_EQ(scan_ipv6("1:2:3:4:5:6:7:", a), ip_scan::prefix);
}

// ---- trusted networks: parsing --------------------------------------------------------------

struct spec_case {
    std::string_view spec;
    std::string_view error;  // empty: valid
};

TEST(trusted_parse, accepts_and_rejects) {
    const spec_case cases[] = {
        {"127.0.0.1", ""},
        {"127.0.0.1, 10.0.0.0/8, ::1, fd00::/8", ""},
        {"", ""},
        {" , ,", ""},
        {"*", ""},
        {"127.0.0.1,*", ""},
        {"unix:", ""},
        {"proxy1, _edge", ""},
        {"0.0.0.0/0, ::/0", ""},
        {"192.0.2.1/32, 2001:db8::1/128", ""},
        {"2001:DB8::/32", ""},
        {"10.0.0.0/33", "--forwarded-allow-ips: '10.0.0.0/33' is not an IP address or CIDR"},
        {"::/129", "--forwarded-allow-ips: '::/129' is not an IP address or CIDR"},
        {"10.0.0.0/-1", "'10.0.0.0/-1' is not an IP address or CIDR"},
        {"10.0.0.0/", "'10.0.0.0/' is not an IP address or CIDR"},
        {"/8", "'/8' is not an IP address or CIDR"},
        {"10.0.0.0/08", "'10.0.0.0/08' is not an IP address or CIDR"},
        {"10.0.0.0/8/8", "'10.0.0.0/8/8' is not an IP address or CIDR"},
        {"10.0.0.0/ 8", "'10.0.0.0/ 8' is not an IP address or CIDR"},
        {"10.0.0.1/8", "'10.0.0.1/8' has host bits set"},
        {"2001:db8::1/32", "'2001:db8::1/32' has host bits set"},
        {"10.0.0.128/25", ""},
        {"10.0.0.64/25", "has host bits set"},
        {"010.0.0.1", "'010.0.0.1' is not an IP address or CIDR"},
        {"1.2.3", "'1.2.3' is not an IP address or CIDR"},
        {"256.0.0.0", "'256.0.0.0' is not an IP address or CIDR"},
        {"127.0.0.1, [::1]", "'[::1]' is not an IP address or CIDR"},
        {"fe80::1%eth0", "'fe80::1%eth0' is not an IP address or CIDR"},
        {"localhost:8000", "'localhost:8000' is not an IP address or CIDR"},
        {"unix:/run/x.sock", "'unix:/run/x.sock' is not an IP address or CIDR"},
        {"hostname/24", "'hostname/24' is not an IP address or CIDR"},
    };
    for (const spec_case& c : cases) {
        const trusted_networks_result r = parse_trusted_networks(c.spec);
        if (c.error.empty()) {
            EXPECT_EQ(r.error, "") << c.spec;
        } else {
            EXPECT_NE(r.error.find(c.error), std::string::npos) << c.spec << " -> " << r.error;
            EXPECT_FALSE(r.networks.contains("127.0.0.1")) << "a failed parse trusts nobody";
        }
    }
    EXPECT_EQ(parse_trusted_networks("1.2.3", "COACHWHIP_FORWARDED_ALLOW_IPS").error,
              "COACHWHIP_FORWARDED_ALLOW_IPS: '1.2.3' is not an IP address or CIDR");
}

// ---- trusted networks: matching -------------------------------------------------------------

struct contains_case {
    std::string_view spec, host;
    bool want;
};

TEST(trusted_contains, table) {
    const contains_case cases[] = {
        {"127.0.0.1", "127.0.0.1", true},
        {"127.0.0.1", "127.0.0.2", false},
        {"127.0.0.1", "::ffff:127.0.0.1", true},  // dual-stack socket
        {"127.0.0.1", "::1", false},
        {"::1", "::1", true},
        {"::1", "0:0:0:0:0:0:0:1", true},
        {"::1", "127.0.0.1", false},
        {"10.0.0.0/8", "10.255.255.255", true},
        {"10.0.0.0/8", "11.0.0.0", false},
        {"10.0.0.0/8", "::ffff:10.1.2.3", true},
        {"10.0.0.0/8", "::ffff:11.0.0.1", false},
        {"10.0.0.0/9", "10.127.255.255", true},
        {"10.0.0.0/9", "10.128.0.0", false},
        {"0.0.0.0/0", "203.0.113.1", true},
        {"0.0.0.0/0", "::1", false},
        {"0.0.0.0/0", "::ffff:203.0.113.1", true},
        {"::/0", "2001:db8::1", true},
        {"::/0", "203.0.113.1", false},
        {"192.0.2.1/32", "192.0.2.1", true},
        {"192.0.2.1/32", "192.0.2.0", false},
        {"2001:db8::/32", "2001:db8:ffff::1", true},
        {"2001:db8::/32", "2001:db9::", false},
        {"2001:db8::1/128", "2001:db8::1", true},
        {"2001:db8::1/128", "2001:db8::2", false},
        {"fd00::/8", "fdff::1", true},
        {"fd00::/8", "fe00::", false},
        {"fc00::/7", "fd12::1", true},
        {"fc00::/7", "fe00::1", false},
        {"127.0.0.1", "127.0.0.01", false},  // not an address: a literal, and not listed
        {"127.0.0.1", "", false},
        {"*", "anything at all", true},
        {"*", "", true},
        {"proxy1", "proxy1", true},
        {"proxy1", "Proxy1", false},
        {"proxy1", "127.0.0.1", false},
        {"unix:", "unix:", true},
        {"unix:", "127.0.0.1", false},
        {"", "127.0.0.1", false},
    };
    for (const contains_case& c : cases) {
        const trusted_networks_result r = parse_trusted_networks(c.spec);
        ASSERT_EQ(r.error, "") << c.spec;
        EXPECT_EQ(r.networks.contains(c.host), c.want) << c.spec << " contains " << c.host;
    }
}

TEST(trusted_contains, unix_peers) {
    EXPECT_TRUE(parse_trusted_networks("unix:").networks.contains_unix());
    EXPECT_TRUE(parse_trusted_networks("*").networks.contains_unix());
    EXPECT_FALSE(parse_trusted_networks("127.0.0.1").networks.contains_unix());
    EXPECT_FALSE(trusted_networks{}.contains_unix());
}

TEST(trusted_contains, allocates_nothing) {
    const trusted_networks t =
        parse_trusted_networks("10.0.0.0/8, fd00::/8, proxy-with-a-long-literal-name").networks;
    g_allocations = 0;
    g_counting = true;
    bool any = false;
    for (std::string_view h : {"10.1.2.3", "fd00::1", "::ffff:10.0.0.1", "192.0.2.1",
                               "proxy-with-a-long-literal-name", "nope"})
        any = t.contains(h) || any;
    g_counting = false;
    EXPECT_TRUE(any);
    EXPECT_EQ(g_allocations, 0u);
}

// ---- resolve_forwarded ----------------------------------------------------------------------

struct resolve_case {
    std::string name;
    std::string_view trusted;
    std::string_view peer;  // "unix" for a Unix-socket peer
    std::vector<std::string> xff, xfp, fwd;
    std::string want;       // summary(): "client=<...> scheme=<...> host=<...> kind=<...>"
    std::string problem{};  // a substring of `problem`; empty: no problem
};

void PrintTo(const resolve_case& c, std::ostream* os) { *os << c.name; }

std::string summary(const forwarded_result& r) {
    std::string client;
    switch (r.client) {
        case client_source::peer: client = "peer"; break;
        case client_source::unknown: client = "unknown"; break;
        case client_source::header:
            client = std::string(r.host.view()) + "/" + std::to_string(r.port);
            break;
    }
    const char* kinds[] = {"none", "xf", "fwd"};
    return "client=" + client + " scheme=" + std::string(r.scheme) +
           " host=" + std::string(r.forwarded_host.view()) + " kind=" + kinds[int(r.kind)];
}

forwarded_result resolve(const resolve_case& c, const trusted_networks& t) {
    std::vector<std::string_view> xff(c.xff.begin(), c.xff.end());
    std::vector<std::string_view> xfp(c.xfp.begin(), c.xfp.end());
    std::vector<std::string_view> fwd(c.fwd.begin(), c.fwd.end());
    peer_address peer{c.peer, c.peer == "unix"};
    g_allocations = 0;
    g_counting = true;
    const forwarded_result r = resolve_forwarded(peer, {xff, xfp, fwd}, t);
    g_counting = false;
    return r;
}

std::string repeat(std::string_view s, size_t n) {
    std::string out;
    for (size_t i = 0; i < n; ++i)
        out += s;
    return out;
}

// 63 trusted hops and `client` leftmost: 64 elements.
std::string hops_64(std::string_view client) {
    return std::string(client) + repeat(", 10.0.0.1", 63);
}

const std::string k_local = "127.0.0.1";
const std::string k_chain = "127.0.0.1, 10.0.0.0/8";

std::vector<resolve_case> resolve_cases() {
    return {
        // ---- trust
        {"untrusted peer spoofing xff",
         "127.0.0.1",
         "203.0.113.9",
         {"1.2.3.4"},
         {"https"},
         {},
         "client=peer scheme= host= kind=none"},
        {"untrusted peer spoofing forwarded",
         "127.0.0.1",
         "203.0.113.9",
         {},
         {},
         {"for=1.2.3.4;proto=https;host=evil"},
         "client=peer scheme= host= kind=none"},
        {"untrusted unix peer",
         "127.0.0.1",
         "unix",
         {"1.2.3.4"},
         {},
         {},
         "client=peer scheme= host= kind=none"},
        {"trusted unix peer",
         "unix:",
         "unix",
         {"203.0.113.5"},
         {"https"},
         {},
         "client=203.0.113.5/0 scheme=https host= kind=xf"},
        {"star trusts unix peers",
         "*",
         "unix",
         {"203.0.113.5"},
         {},
         {},
         "client=203.0.113.5/0 scheme= host= kind=xf"},
        {"v4-mapped peer",
         "127.0.0.1",
         "::ffff:127.0.0.1",
         {"203.0.113.5"},
         {},
         {},
         "client=203.0.113.5/0 scheme= host= kind=xf"},
        {"peer text that is not an ip",
         "127.0.0.1",
         "localhost",
         {"203.0.113.5"},
         {},
         {},
         "client=peer scheme= host= kind=none"},
        // ---- X-Forwarded-For
        {"xff single",
         k_local,
         "127.0.0.1",
         {"203.0.113.5"},
         {},
         {},
         "client=203.0.113.5/0 scheme= host= kind=xf"},
        {"xff first untrusted from the right",
         k_chain,
         "10.0.0.1",
         {"198.51.100.1, 203.0.113.5, 10.0.0.2"},
         {},
         {},
         "client=203.0.113.5/0 scheme= host= kind=xf"},
        {"xff all trusted: leftmost",
         k_chain,
         "10.0.0.1",
         {"10.0.0.3, 10.0.0.2"},
         {},
         {},
         "client=10.0.0.3/0 scheme= host= kind=xf"},
        {"xff star: leftmost like uvicorn",
         "*",
         "192.0.2.1",
         {"1.1.1.1, 2.2.2.2"},
         {},
         {},
         "client=1.1.1.1/0 scheme= host= kind=xf"},
        {"xff several lines are one list",
         k_chain,
         "10.0.0.1",
         {"198.51.100.1", "203.0.113.5, 10.0.0.2"},
         {},
         {},
         "client=203.0.113.5/0 scheme= host= kind=xf"},
        {"xff ipv6 canonical",
         k_local,
         "127.0.0.1",
         {"2001:DB8:0::5"},
         {},
         {},
         "client=2001:db8::5/0 scheme= host= kind=xf"},
        {"xff ipv6 brackets and port",
         k_local,
         "127.0.0.1",
         {"[2001:db8::5]:4711"},
         {},
         {},
         "client=2001:db8::5/4711 scheme= host= kind=xf"},
        {"xff ipv6 brackets no port",
         k_local,
         "127.0.0.1",
         {"[2001:db8::5]"},
         {},
         {},
         "client=2001:db8::5/0 scheme= host= kind=xf"},
        {"xff ipv4 and port",
         k_local,
         "127.0.0.1",
         {"203.0.113.5:8080"},
         {},
         {},
         "client=203.0.113.5/8080 scheme= host= kind=xf"},
        {"xff trusted hop with a port",
         k_chain,
         "10.0.0.1",
         {"203.0.113.5, 10.0.0.2:3128"},
         {},
         {},
         "client=203.0.113.5/0 scheme= host= kind=xf"},
        {"xff unknown",
         k_local,
         "127.0.0.1",
         {"1.2.3.4, unknown"},
         {"https"},
         {},
         "client=unknown scheme=https host= kind=xf"},
        {"xff unknown uppercase",
         k_local,
         "127.0.0.1",
         {"UNKNOWN"},
         {},
         {},
         "client=unknown scheme= host= kind=xf"},
        {"xff junk as the client",
         k_local,
         "127.0.0.1",
         {"not-an-ip"},
         {"https"},
         {},
         "client=unknown scheme= host= kind=xf",
         "not an IP address"},
        {"xff junk left of the client is never read",
         k_local,
         "127.0.0.1",
         {"garbage!!, \"\0\xff, 203.0.113.5"s},
         {},
         {},
         "client=203.0.113.5/0 scheme= host= kind=xf"},
        {"xff empty elements",
         k_local,
         "127.0.0.1",
         {" , 203.0.113.5 ,, ", ","},
         {},
         {},
         "client=203.0.113.5/0 scheme= host= kind=xf"},
        {"xff empty value keeps the peer, proto applies",
         k_local,
         "127.0.0.1",
         {""},
         {"https"},
         {},
         "client=peer scheme=https host= kind=xf"},
        {"xff trusted literal hop",
         "unix:",
         "unix",
         {"203.0.113.5, unix:"},
         {},
         {},
         "client=203.0.113.5/0 scheme= host= kind=xf"},
        {"xff leftmost is a literal",
         "unix:, 10.0.0.0/8",
         "10.0.0.1",
         {"unix:, 10.0.0.2"},
         {},
         {},
         "client=unknown scheme= host= kind=xf",
         "not an IP address"},
        {"xff hostname literal hop",
         "127.0.0.1, edge",
         "127.0.0.1",
         {"203.0.113.5, edge"},
         {},
         {},
         "client=203.0.113.5/0 scheme= host= kind=xf"},
        {"xff nul byte",
         k_local,
         "127.0.0.1",
         {"203.0.113.5\0"s},
         {},
         {},
         "client=unknown scheme= host= kind=xf",
         "not an IP address"},
        {"xff non-ascii",
         k_local,
         "127.0.0.1",
         {"203.0.113.5, 2001:db8::1\xff"},
         {},
         {},
         "client=unknown scheme= host= kind=xf",
         "not an IP address"},
        {"xff zone id",
         k_local,
         "127.0.0.1",
         {"fe80::1%eth0"},
         {},
         {},
         "client=unknown scheme= host= kind=xf",
         "not an IP address"},
        {"xff port out of range",
         k_local,
         "127.0.0.1",
         {"203.0.113.5:65536"},
         {},
         {},
         "client=unknown scheme= host= kind=xf",
         "not an IP address"},
        {"xff empty port",
         k_local,
         "127.0.0.1",
         {"203.0.113.5:"},
         {},
         {},
         "client=unknown scheme= host= kind=xf",
         "not an IP address"},
        {"xff leading zero octet",
         k_local,
         "127.0.0.1",
         {"203.0.113.05"},
         {},
         {},
         "client=unknown scheme= host= kind=xf",
         "not an IP address"},
        {"xff quoted",
         k_local,
         "127.0.0.1",
         {"\"203.0.113.5\""},
         {},
         {},
         "client=unknown scheme= host= kind=xf",
         "not an IP address"},
        {"xff 10000 elements, untrusted rightmost",
         k_chain,
         "10.0.0.1",
         {repeat("1.1.1.1, ", 9999) + "203.0.113.5"},
         {},
         {},
         "client=203.0.113.5/0 scheme= host= kind=xf"},
        {"xff 10000 trusted elements",
         k_chain,
         "10.0.0.1",
         {repeat("10.0.0.1, ", 10000)},
         {"https"},
         {},
         "client=unknown scheme= host= kind=xf",
         "more trusted hops"},
        {"xff 10000 lines",
         k_chain,
         "10.0.0.1",
         std::vector<std::string>(10000, "10.0.0.7"),
         {},
         {},
         "client=unknown scheme= host= kind=xf",
         "more trusted hops"},
        {"xff 64 elements, client leftmost",
         k_chain,
         "10.0.0.1",
         {hops_64("203.0.113.5")},
         {},
         {},
         "client=203.0.113.5/0 scheme= host= kind=xf"},
        {"xff 64 trusted elements: leftmost",
         k_chain,
         "10.0.0.1",
         {hops_64("10.9.9.9")},
         {},
         {},
         "client=10.9.9.9/0 scheme= host= kind=xf"},
        {"xff 65 elements, client leftmost: too far",
         k_chain,
         "10.0.0.1",
         {"203.0.113.5, " + hops_64("10.9.9.9")},
         {},
         {},
         "client=unknown scheme= host= kind=xf",
         "more trusted hops"},
        {"xff 10000 elements with star",
         "*",
         "10.0.0.1",
         {"203.0.113.5" + repeat(", 10.0.0.1", 9999)},
         {},
         {},
         "client=203.0.113.5/0 scheme= host= kind=xf"},
        // ---- X-Forwarded-Proto
        {"xfp https",
         k_local,
         "127.0.0.1",
         {"203.0.113.5"},
         {"https"},
         {},
         "client=203.0.113.5/0 scheme=https host= kind=xf"},
        {"xfp case-insensitive and trimmed",
         k_local,
         "127.0.0.1",
         {},
         {" HTTPS\t"},
         {},
         "client=peer scheme=https host= kind=xf"},
        {"xfp ws and wss",
         k_local,
         "127.0.0.1",
         {},
         {"WsS"},
         {},
         "client=peer scheme=wss host= kind=xf"},
        {"xfp unsupported",
         k_local,
         "127.0.0.1",
         {},
         {"ftp"},
         {},
         "client=peer scheme= host= kind=xf",
         "X-Forwarded-Proto"},
        {"xfp same hop as the client",
         k_chain,
         "10.0.0.1",
         {"203.0.113.5, 10.0.0.2"},
         {"https, http"},
         {},
         "client=203.0.113.5/0 scheme=https host= kind=xf"},
        {"xfp same hop across lines",
         k_chain,
         "10.0.0.1",
         {"203.0.113.5", "10.0.0.2"},
         {"https", "http"},
         {},
         "client=203.0.113.5/0 scheme=https host= kind=xf"},
        {"xfp counts differ: rightmost",
         k_chain,
         "10.0.0.1",
         {"203.0.113.5"},
         {"https, http"},
         {},
         "client=203.0.113.5/0 scheme=http host= kind=xf"},
        {"xfp only, several lines: rightmost",
         k_local,
         "127.0.0.1",
         {},
         {"http", "https"},
         {},
         "client=peer scheme=https host= kind=xf"},
        {"xfp same hop when all trusted",
         k_chain,
         "10.0.0.1",
         {"10.0.0.3, 10.0.0.2"},
         {"wss, http"},
         {},
         "client=10.0.0.3/0 scheme=wss host= kind=xf"},
        {"xfp empty", k_local, "127.0.0.1", {}, {" , "}, {}, "client=peer scheme= host= kind=xf"},
        {"xfp ignored when xff is unreadable",
         k_local,
         "127.0.0.1",
         {"junk"},
         {"https"},
         {},
         "client=unknown scheme= host= kind=xf",
         "not an IP address"},
        // ---- Forwarded (RFC 7239)
        {"fwd rfc 7239 §4 example",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=192.0.2.60;proto=http;by=203.0.113.43"},
         "client=192.0.2.60/0 scheme=http host= kind=fwd"},
        {"fwd rfc 7239 §7.1 ipv6 and port",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"For=\"[2001:db8:cafe::17]:4711\""},
         "client=2001:db8:cafe::17/4711 scheme= host= kind=fwd"},
        {"fwd rfc 7239 §7.1 list",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=192.0.2.43, for=198.51.100.17"},
         "client=198.51.100.17/0 scheme= host= kind=fwd"},
        {"fwd obfuscated node",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=\"_gazonk\";proto=https"},
         "client=unknown scheme=https host= kind=fwd"},
        {"fwd obfuscated node unquoted",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=_hidden"},
         "client=unknown scheme= host= kind=fwd"},
        {"fwd unknown keeps proto and host",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=unknown;proto=https;host=example.com"},
         "client=unknown scheme=https host=example.com kind=fwd"},
        {"fwd unknown with a port",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=\"unknown:80\""},
         "client=unknown scheme= host= kind=fwd"},
        {"fwd obfuscated port",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=\"192.0.2.1:_abc\""},
         "client=192.0.2.1/0 scheme= host= kind=fwd"},
        {"fwd ipv4 and port",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=\"203.0.113.5:8080\""},
         "client=203.0.113.5/8080 scheme= host= kind=fwd"},
        {"fwd trusted obfuscated literal",
         "127.0.0.1, _edge",
         "127.0.0.1",
         {},
         {},
         {"for=192.0.2.1, for=_edge"},
         "client=192.0.2.1/0 scheme= host= kind=fwd"},
        {"fwd case-insensitive names",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"FOR=192.0.2.1;PROTO=HTTPS;HOST=Example.COM"},
         "client=192.0.2.1/0 scheme=https host=Example.COM kind=fwd"},
        {"fwd quoted host with escapes",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=192.0.2.1;host=\"ex\\ample.com:8443\""},
         "client=192.0.2.1/0 scheme= host=example.com:8443 kind=fwd"},
        {"fwd walk over trusted, same element",
         k_chain,
         "10.0.0.1",
         {},
         {},
         {"for=198.51.100.1;proto=http, for=203.0.113.5;proto=https;host=a.example, "
          "for=10.0.0.2;proto=http;host=internal"},
         "client=203.0.113.5/0 scheme=https host=a.example kind=fwd"},
        {"fwd all trusted: leftmost element",
         k_chain,
         "10.0.0.1",
         {},
         {},
         {"for=10.0.0.3;proto=wss", "for=10.0.0.2;proto=http"},
         "client=10.0.0.3/0 scheme=wss host= kind=fwd"},
        {"fwd star: leftmost element",
         "*",
         "10.0.0.1",
         {},
         {},
         {"for=\"[::1]\";host=first, for=203.0.113.5"},
         "client=::1/0 scheme= host=first kind=fwd"},
        {"fwd element without for",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"proto=https"},
         "client=unknown scheme=https host= kind=fwd"},
        {"fwd empty elements and pairs",
         k_local,
         "127.0.0.1",
         {},
         {},
         {", ;for=203.0.113.5;;proto=https; ,"},
         "client=203.0.113.5/0 scheme=https host= kind=fwd"},
        {"fwd ows around ;",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=203.0.113.5 ; proto=https"},
         "client=203.0.113.5/0 scheme=https host= kind=fwd"},
        {"fwd quoted comma in an extension",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"ext=\"a,b\\\",c\";for=203.0.113.5"},
         "client=203.0.113.5/0 scheme= host= kind=fwd"},
        {"fwd obs-text in an extension",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"ext=\"caf\xc3\xa9\";for=203.0.113.5"},
         "client=203.0.113.5/0 scheme= host= kind=fwd"},
        {"fwd proto unsupported",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=203.0.113.5;proto=ftp"},
         "client=203.0.113.5/0 scheme= host= kind=fwd",
         "proto="},
        {"fwd junk left of the client is never read",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=\"oops", "for=;;;===, for=203.0.113.5"},
         "client=203.0.113.5/0 scheme= host= kind=fwd"},
        // ---- Forwarded: malformed (kind ignored, client unknown)
        {"fwd unquoted ipv6",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=[2001:db8::1];proto=https"},
         "client=unknown scheme= host= kind=fwd",
         "malformed"},
        {"fwd unquoted ipv4 port",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=192.0.2.1:80"},
         "client=unknown scheme= host= kind=fwd",
         "malformed"},
        {"fwd bare ipv6 quoted",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=\"2001:db8::1\""},
         "client=unknown scheme= host= kind=fwd",
         "malformed"},
        {"fwd bracket not closed",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=\"[2001:db8::1\""},
         "client=unknown scheme= host= kind=fwd",
         "malformed"},
        {"fwd ipv4 in brackets",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=\"[192.0.2.1]\""},
         "client=unknown scheme= host= kind=fwd",
         "malformed"},
        {"fwd duplicate parameter",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=192.0.2.1;for=192.0.2.2;proto=https"},
         "client=unknown scheme= host= kind=fwd",
         "malformed"},
        {"fwd duplicate proto",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=192.0.2.1;proto=http;Proto=https"},
         "client=unknown scheme= host= kind=fwd",
         "malformed"},
        {"fwd unterminated quote swallows the proxy's element",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=\"1.2.3.4, for=203.0.113.5"},
         "client=unknown scheme= host= kind=fwd",
         "malformed"},
        {"fwd trailing backslash",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=\"1.2.3.4\\"},
         "client=unknown scheme= host= kind=fwd",
         "malformed"},
        {"fwd spaces around =",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for = 192.0.2.1"},
         "client=unknown scheme= host= kind=fwd",
         "malformed"},
        {"fwd empty value",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=;proto=https"},
         "client=unknown scheme= host= kind=fwd",
         "malformed"},
        {"fwd junk after value",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=192.0.2.1 x"},
         "client=unknown scheme= host= kind=fwd",
         "malformed"},
        {"fwd backslash outside quotes",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=192.0.2.1\\"},
         "client=unknown scheme= host= kind=fwd",
         "malformed"},
        {"fwd nul in quoted",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=\"192.0.2.1\0\""s},
         "client=unknown scheme= host= kind=fwd",
         "malformed"},
        {"fwd bad host",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=203.0.113.5;host=\"a b\""},
         "client=unknown scheme= host= kind=fwd",
         "malformed"},
        {"fwd host too long",
         k_local,
         "127.0.0.1",
         {},
         {},
         {"for=203.0.113.5;host=" + std::string(256, 'h')},
         "client=unknown scheme= host= kind=fwd",
         "malformed"},
        {"fwd trusted hop malformed",
         k_chain,
         "10.0.0.1",
         {},
         {},
         {"for=203.0.113.5, for=10.0.0.2;proto=\"http"},
         "client=unknown scheme= host= kind=fwd",
         "malformed"},
        {"fwd 10000 trusted elements",
         k_chain,
         "10.0.0.1",
         {},
         {},
         {repeat("for=10.0.0.1,", 10000)},
         "client=unknown scheme= host= kind=fwd",
         "more trusted hops"},
        {"fwd 10000 unterminated quotes",
         k_chain,
         "10.0.0.1",
         {},
         {},
         {repeat("\"", 10001)},
         "client=unknown scheme= host= kind=fwd",
         "malformed"},
        // ---- precedence
        {"xff wins over forwarded",
         k_local,
         "127.0.0.1",
         {"203.0.113.5"},
         {},
         {"for=198.51.100.1;proto=https;host=evil"},
         "client=203.0.113.5/0 scheme= host= kind=xf"},
        {"empty xff still wins",
         k_local,
         "127.0.0.1",
         {""},
         {},
         {"for=198.51.100.1"},
         "client=peer scheme= host= kind=xf"},
        {"forwarded ignores xfp",
         k_local,
         "127.0.0.1",
         {},
         {"https"},
         {"for=203.0.113.5"},
         "client=203.0.113.5/0 scheme= host= kind=fwd"},
        {"no headers at all",
         k_local,
         "127.0.0.1",
         {},
         {},
         {},
         "client=peer scheme= host= kind=none"},
    };
}

class resolve_table : public ::testing::TestWithParam<resolve_case> {};

TEST_P(resolve_table, resolves) {
    const resolve_case& c = GetParam();
    const trusted_networks_result t = parse_trusted_networks(c.trusted);
    ASSERT_EQ(t.error, "");
    const forwarded_result r = resolve(c, t.networks);
    EXPECT_EQ(g_allocations, 0u) << "resolve_forwarded allocated";
    EXPECT_EQ(summary(r), c.want);
    if (c.problem.empty()) {
        EXPECT_EQ(r.problem, "");
    } else {
        EXPECT_NE(std::string(r.problem).find(c.problem), std::string::npos) << r.problem;
    }
    // Safe for scope["client"]: an address in canonical form, or nothing.
    if (r.client == client_source::header) {
        ip_address a;
        ASSERT_TRUE(parse_ip(r.host.view(), a));
        EXPECT_EQ(format_ip(a).view(), r.host.view());
    } else {
        EXPECT_TRUE(r.host.empty());
    }
}

INSTANTIATE_TEST_SUITE_P(cases, resolve_table, ::testing::ValuesIn(resolve_cases()),
                         [](const auto& info) { return test_name(info.param.name); });

TEST(resolve, nothing_applies_to_an_untrusted_peer_whatever_the_headers) {
    const trusted_networks t = parse_trusted_networks("10.0.0.0/8").networks;
    const std::string_view junk[] = {"1.2.3.4", "unknown", "\"", "for=1.2.3.4", ""};
    for (std::string_view v : junk) {
        const forwarded_result r =
            resolve_forwarded({"192.0.2.1", false}, {{&v, 1}, {&v, 1}, {&v, 1}}, t);
        EXPECT_EQ(r.client, client_source::peer);
        EXPECT_EQ(r.kind, forwarded_kind::none);
        EXPECT_TRUE(r.scheme.empty());
    }
}

}  // namespace
}  // namespace coachwhip::proxy::test
