// Tests for http1::analyze_request (src/http1/message.cpp): framing, persistence, Host and
// target rules. Every head is also run through the every-prefix parser check first.
#include <string>
#include <string_view>
#include <vector>

#include "http1/message.hpp"
#include "http1_cases.hpp"

namespace coachwhip::http1::test {
namespace {

using namespace std::string_view_literals;

struct message_case {
    std::string_view name;
    std::string_view input;                     // a complete head
    uint16_t error = 0;                         // expected error status, 0 = accepted
    body_framing framing = body_framing::none;  // the rest is checked only when accepted
    uint64_t content_length = 0;
    bool keep_alive = true;
    bool expect_continue = false;
    bool upgrade = false;
};

constexpr auto k_cl = body_framing::content_length;
constexpr auto k_chunked = body_framing::chunked;

// gtest prints a failing parameter with this instead of its bytes.
void PrintTo(const message_case& c, std::ostream* os) { *os << c.name; }

// clang-format off
const message_case k_message_cases[] = {
    // ---- accepted: framing
    {.name = "get no body", .input = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
    {.name = "content length 5", .input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", .framing = k_cl, .content_length = 5},
    {.name = "content length 0", .input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", .framing = k_cl},
    {.name = "content length max", .input = "POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 9223372036854775807\r\n\r\n", .framing = k_cl, .content_length = 9223372036854775807ull},
    {.name = "content length leading zeros", .input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n", .framing = k_cl, .content_length = 7},
    {.name = "content length ows trimmed", .input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \t12 \r\n\r\n", .framing = k_cl, .content_length = 12},
    {.name = "chunked", .input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", .framing = k_chunked},
    {.name = "chunked any case", .input = "POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: ChUnKeD\r\n\r\n", .framing = k_chunked},
    {.name = "underscore te is not te", .input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\n", .framing = k_cl, .content_length = 5},
    {.name = "underscore cl is not cl", .input = "POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\n"},
    {.name = "underscore cl with te", .input = "POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", .framing = k_chunked},
    // ---- accepted: connection
    {.name = "http10 closes", .input = "GET / HTTP/1.0\r\n\r\n", .keep_alive = false},
    {.name = "http10 keep alive", .input = "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"},
    {.name = "http10 keep alive and close", .input = "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", .keep_alive = false},
    {.name = "close", .input = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", .keep_alive = false},
    {.name = "close upper case in list", .input = "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, ,CLOSE\r\n\r\n", .keep_alive = false},
    {.name = "close in second field", .input = "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo\r\nConnection: close\r\n\r\n", .keep_alive = false},
    {.name = "closed is not close", .input = "GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n"},
    {.name = "upgrade", .input = "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n", .upgrade = true},
    {.name = "upgrade field without option", .input = "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"},
    {.name = "upgrade option without field", .input = "GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n"},
    {.name = "upgrade ignored on http10", .input = "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", .keep_alive = false},
    // ---- accepted: expect
    {.name = "expect continue", .input = "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 100-Continue\r\n\r\n", .framing = k_cl, .content_length = 1, .expect_continue = true},
    {.name = "expect ignored on http10", .input = "PUT / HTTP/1.0\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n", .framing = k_cl, .content_length = 1, .keep_alive = false},
    // ---- accepted: host and target
    {.name = "host with port", .input = "GET / HTTP/1.1\r\nHost: example.com:8080\r\n\r\n"},
    {.name = "host ipv4", .input = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"},
    {.name = "host ipv6 with port", .input = "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"},
    {.name = "host ipv6 full with v4", .input = "GET / HTTP/1.1\r\nHost: [2001:db8:0:0:0:0:127.0.0.1]\r\n\r\n"},
    {.name = "host ipvfuture", .input = "GET / HTTP/1.1\r\nHost: [v1.fe:x]\r\n\r\n"},
    {.name = "host pct encoded", .input = "GET / HTTP/1.1\r\nHost: a%2Db.example\r\n\r\n"},
    {.name = "host empty", .input = "GET / HTTP/1.1\r\nHost:\r\n\r\n"},
    {.name = "host empty port", .input = "GET / HTTP/1.1\r\nHost: a:\r\n\r\n"},
    {.name = "options asterisk", .input = "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"},
    {.name = "absolute form", .input = "GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n"},
    {.name = "absolute form case", .input = "GET HTTPS://Example.COM HTTP/1.1\r\nHost: example.com\r\n\r\n"},
    {.name = "absolute form http10 no host", .input = "GET http://example.com/ HTTP/1.0\r\n\r\n", .keep_alive = false},
    {.name = "lowercase method", .input = "get / HTTP/1.1\r\nHost: a\r\n\r\n"},
    // ---- rejected: Content-Length (ATTACKS A)
    {.name = "cl and te", .input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", .error = 400},
    {.name = "te and cl", .input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", .error = 400},
    {.name = "cl empty", .input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", .error = 400},
    {.name = "cl plus", .input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", .error = 400},
    {.name = "cl minus zero", .input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -0\r\n\r\n", .error = 400},
    {.name = "cl underscore", .input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0_1\r\n\r\n", .error = 400},
    {.name = "cl hex", .input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", .error = 400},
    {.name = "cl exponent", .input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1e3\r\n\r\n", .error = 400},
    {.name = "cl inner space", .input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:  3 1\r\n\r\n", .error = 400},
    {.name = "cl 2 pow 63", .input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n", .error = 400},
    {.name = "cl 2 pow 64", .input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n", .error = 400},
    {.name = "cl 21 digits", .input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 000000000000000000001\r\n\r\n", .error = 400},
    {.name = "cl list", .input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", .error = 400},
    {.name = "cl twice equal", .input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", .error = 400},
    {.name = "cl twice different", .input = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n", .error = 400},
    // ---- rejected: Transfer-Encoding (ATTACKS A)
    {.name = "te chunked then gzip", .input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", .error = 400},
    {.name = "te identity chunked", .input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n", .error = 400},
    {.name = "te leading comma", .input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: ,chunked\r\n\r\n", .error = 400},
    {.name = "te trailing comma", .input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n", .error = 400},
    {.name = "te chunkedchunked", .input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunkedchunked\r\n\r\n", .error = 400},
    {.name = "te nbsp chunked", .input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \xa0" "chunked\xa0\r\n\r\n"sv, .error = 400},
    {.name = "te unknown coding", .input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo, chunked\r\n\r\n", .error = 400},
    {.name = "te gzip only", .input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", .error = 400},
    {.name = "te chunked twice", .input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", .error = 400},
    {.name = "te with parameter", .input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip;q=1, chunked\r\n\r\n", .error = 400},
    {.name = "te empty", .input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", .error = 400},
    {.name = "te two fields", .input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", .error = 400},
    {.name = "te two chunked fields", .input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", .error = 400},
    {.name = "te on http10", .input = "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", .error = 400},
    {.name = "te gzip chunked 501", .input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", .error = 501},
    {.name = "te deflate chunked 501", .input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Deflate,chunked\r\n\r\n", .error = 501},
    {.name = "te gzip with cl", .input = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 1\r\n\r\n", .error = 400},
    // ---- rejected: Host (ATTACKS C)
    {.name = "http11 without host", .input = "GET / HTTP/1.1\r\n\r\n", .error = 400},
    {.name = "two hosts", .input = "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", .error = 400},
    {.name = "two hosts http10", .input = "GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", .error = 400},
    {.name = "host with space", .input = "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", .error = 400},
    {.name = "host with userinfo", .input = "GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", .error = 400},
    {.name = "host bad port", .input = "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", .error = 400},
    {.name = "host two ports", .input = "GET / HTTP/1.1\r\nHost: a:80:80\r\n\r\n", .error = 400},
    {.name = "host port only", .input = "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", .error = 400},
    {.name = "host open bracket", .input = "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", .error = 400},
    {.name = "host bad ipv6", .input = "GET / HTTP/1.1\r\nHost: [1:2:3:4:5:6:7:8:9]\r\n\r\n", .error = 400},
    {.name = "host ipv6 two gaps", .input = "GET / HTTP/1.1\r\nHost: [1::2::3]\r\n\r\n", .error = 400},
    {.name = "host bad pct", .input = "GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n", .error = 400},
    {.name = "host obs text", .input = "GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n", .error = 400},
    {.name = "host slash", .input = "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", .error = 400},
    // ---- rejected: target form (ATTACKS B, C)
    {.name = "asterisk with get", .input = "GET * HTTP/1.1\r\nHost: a\r\n\r\n", .error = 400},
    {.name = "authority form with get", .input = "GET example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n", .error = 400},
    {.name = "connect origin form", .input = "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", .error = 400},
    {.name = "connect without port", .input = "CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n", .error = 400},
    {.name = "connect asterisk", .input = "CONNECT * HTTP/1.1\r\nHost: a\r\n\r\n", .error = 400},
    // CONNECT is refused before the app runs (501), after every 400 check (ATTACKS B).
    {.name = "connect authority 501", .input = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", .error = 501},
    {.name = "connect http10 501", .input = "CONNECT localhost:80 HTTP/1.0\r\n\r\n", .error = 501},
    {.name = "connect with body 501", .input = "CONNECT a:80 HTTP/1.1\r\nHost: a:80\r\nContent-Length: 3\r\n\r\n", .error = 501},
    {.name = "connect cl and te 400", .input = "CONNECT a:80 HTTP/1.1\r\nHost: a:80\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", .error = 400},
    {.name = "lowercase connect authority 400", .input = "connect a:80 HTTP/1.1\r\nHost: a:80\r\n\r\n", .error = 400},
    {.name = "relative target", .input = "GET foo HTTP/1.1\r\nHost: a\r\n\r\n", .error = 400},
    {.name = "fragment", .input = "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", .error = 400},
    {.name = "absolute ftp", .input = "GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", .error = 400},
    {.name = "absolute empty host", .input = "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", .error = 400},
    {.name = "absolute userinfo", .input = "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", .error = 400},
    {.name = "absolute host mismatch", .input = "GET http://evil.example/ HTTP/1.1\r\nHost: a\r\n\r\n", .error = 400},
    {.name = "absolute port mismatch", .input = "GET http://a:8080/ HTTP/1.1\r\nHost: a\r\n\r\n", .error = 400},
    {.name = "absolute without host http11", .input = "GET http://a/ HTTP/1.1\r\n\r\n", .error = 400},
    // ---- rejected: Connection and Expect
    {.name = "connection not token", .input = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close x\r\n\r\n", .error = 400},
    {.name = "expect other", .input = "GET / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", .error = 417},
    {.name = "expect continue and other", .input = "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue, x\r\n\r\n", .error = 417},
};
// clang-format on

class message_table : public ::testing::TestWithParam<message_case> {};

TEST_P(message_table, analyze) {
    const message_case& c = GetParam();
    const head_snapshot parsed = parse_every_prefix(c.input);
    ASSERT_EQ(parsed.status, parse_status::complete) << parsed;

    exact_buffer buf(c.input);
    std::vector<header_field> storage(32);
    request_head head;
    ASSERT_EQ(parse_request_head(buf.view(), head, storage, limits{}).status,
              parse_status::complete);
    const request_info info = analyze_request(head);
    EXPECT_EQ(info.error.status, c.error) << info.error.reason;
    if (c.error != 0) {
        EXPECT_FALSE(info.error.reason.empty());
        EXPECT_EQ(info.framing, body_framing::none) << "a rejected request has no body framing";
        return;
    }
    EXPECT_EQ(info.framing, c.framing);
    EXPECT_EQ(info.content_length, c.content_length);
    EXPECT_EQ(info.keep_alive, c.keep_alive);
    EXPECT_EQ(info.expect_continue, c.expect_continue);
    EXPECT_EQ(info.upgrade, c.upgrade);
    EXPECT_TRUE(info.host.empty() || buf.contains(info.host));
}

INSTANTIATE_TEST_SUITE_P(cases, message_table, ::testing::ValuesIn(k_message_cases),
                         [](const auto& info) { return test_name(info.param.name); });

TEST(message, host_is_the_field_value) {
    exact_buffer buf("GET / HTTP/1.1\r\nhOsT:  Example.com:81 \r\n\r\n");
    header_field storage[4];
    request_head head;
    ASSERT_EQ(parse_request_head(buf.view(), head, storage, limits{}).status,
              parse_status::complete);
    EXPECT_EQ(analyze_request(head).host, "Example.com:81");
}

// The proxy-header fields are noted (by exact name, any case), so the connection resolves them
// only when there is something to resolve.
TEST(message, notes_proxy_header_fields) {
    const std::pair<const char*, bool> cases[] = {
        {"X-Forwarded-For: 1.2.3.4", true}, {"x-forwarded-proto: https", true},
        {"FORWARDED: for=1.2.3.4", true},   {"X-Forwarded-Host: a", false},
        {"X-Forwarded-For-X: 1", false},    {"X_Forwarded_For: 1.2.3.4", false},
        {"Forwardedx: 1", false},           {"User-Agent: curl", false},
    };
    for (const auto& [field, expected] : cases) {
        exact_buffer buf(std::string("GET / HTTP/1.1\r\nHost: a\r\n") + field + "\r\n\r\n");
        header_field storage[4];
        request_head head;
        ASSERT_EQ(parse_request_head(buf.view(), head, storage, limits{}).status,
                  parse_status::complete);
        EXPECT_EQ(analyze_request(head).forwarded, expected) << field;
    }
}

// analyze_request does not assume our parser built the head.
TEST(message, rechecks_method_and_target) {
    request_head head;
    header_field host{"Host", "a"};
    head.headers = std::span<header_field>(&host, 1);
    head.method = "G T";
    head.target = "/";
    EXPECT_EQ(analyze_request(head).error.status, 400);
    head.method = "GET";
    head.target = "/a b";
    EXPECT_EQ(analyze_request(head).error.status, 400);
    head.target = "";
    EXPECT_EQ(analyze_request(head).error.status, 400);
    head.target = "/ok";
    EXPECT_EQ(analyze_request(head).error.status, 0);
}

TEST(message, iequals) {
    EXPECT_TRUE(iequals("Content-Length", "content-length"));
    EXPECT_TRUE(iequals("", ""));
    EXPECT_FALSE(iequals("Content_Length", "content-length"));
    EXPECT_FALSE(iequals("host", "hosts"));
    EXPECT_FALSE(iequals("\xc3\xa9", "\xc3\x89"));  // ASCII only
}

}  // namespace
}  // namespace coachwhip::http1::test
