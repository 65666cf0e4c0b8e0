// Tests for http1::parse_request_head (src/http1/parser.cpp).
//
// Every table case is parsed from an exact-size heap copy (ASan catches over-reads) and at every
// prefix length (the connection re-parses after each line, and TCP may split anywhere).
#include <cctype>
#include <string>
#include <string_view>
#include <vector>

#include "http1/parser.hpp"
#include "http1_cases.hpp"

namespace coachwhip::http1::test {
namespace {

using namespace std::string_view_literals;

constexpr uint16_t k_complete = 0;
constexpr uint16_t k_incomplete = 1;

struct parser_case {
    std::string_view name;
    std::string_view input;
    uint16_t expect;  // k_complete, k_incomplete or the error status
};

// gtest prints a failing parameter with this instead of its bytes.
void PrintTo(const parser_case& c, std::ostream* os) { *os << c.name; }

// clang-format off
const parser_case k_parser_cases[] = {
    // ---- valid heads
    {"simple get", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"sv, k_complete},
    {"http 1.0 no fields", "GET / HTTP/1.0\r\n\r\n"sv, k_complete},
    {"body after head", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"sv, k_complete},
    {"pipelined request after head", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\n"sv, k_complete},
    {"obs-text in value", "GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n"sv, k_complete},
    {"htab inside value", "GET / HTTP/1.1\r\nX: \t a \t b \t\r\n\r\n"sv, k_complete},
    {"empty value", "GET / HTTP/1.1\r\nX:\r\n\r\n"sv, k_complete},
    {"blank value", "GET / HTTP/1.1\r\nX:   \r\n\r\n"sv, k_complete},
    {"extension method asterisk", "M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n"sv, k_complete},
    {"odd but vchar target", "GET /a?b=c&d=%20|{}^`\\ HTTP/1.1\r\n\r\n"sv, k_complete},
    {"lowercase method is a token", "get / HTTP/1.1\r\n\r\n"sv, k_complete},
    {"every tchar in name", "GET / HTTP/1.1\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n"sv, k_complete},
    {"underscore name", "GET / HTTP/1.1\r\nTransfer_Encoding: chunked\r\n\r\n"sv, k_complete},
    {"colon in value", "GET / HTTP/1.1\r\nX: a:b: c\r\n\r\n"sv, k_complete},
    // ---- incomplete
    {"empty input", ""sv, k_incomplete},
    {"request line only", "GET / HTTP/1.1\r\n"sv, k_incomplete},
    {"ends mid field", "GET / HTTP/1.1\r\nHost: a"sv, k_incomplete},
    {"ends after final cr", "GET / HTTP/1.1\r\nHost: a\r\n\r"sv, k_incomplete},
    // ---- line endings (ATTACKS B, C): CRLF only
    {"bare lf after request line", "GET / HTTP/1.1\nHost: a\r\n\r\n"sv, 400},
    {"bare lf after field", "GET / HTTP/1.1\r\nHost: a\n\r\n"sv, 400},
    {"bare lf as final line", "GET / HTTP/1.1\r\nHost: a\r\n\n"sv, 400},
    {"bare lf only endings", "GET / HTTP/1.1\nHost: a\n\n"sv, 400},
    {"bare cr after request line", "GET / HTTP/1.1\rHost: a\r\n\r\n"sv, 400},
    {"bare cr in value", "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"sv, 400},
    {"bare cr as final line", "GET / HTTP/1.1\r\nHost: a\r\n\rX"sv, 400},
    {"bare cr smuggle", "GET / HTTP/1.1\r\nX: a\rTransfer-Encoding: chunked\r\n\r\n"sv, 400},
    {"lf as separator after method", "GET\n/ HTTP/1.1\r\n\r\n"sv, 400},
    {"lf as separator after target", "GET /\nHTTP/1.1\r\n\r\n"sv, 400},
    {"leading empty line", "\r\nGET / HTTP/1.1\r\n\r\n"sv, 400},
    {"leading lf", "\nGET / HTTP/1.1\r\n\r\n"sv, 400},
    // ---- request line shape (ATTACKS B)
    {"two spaces after method", "GET  / HTTP/1.1\r\n\r\n"sv, 400},
    {"two spaces before version", "GET /  HTTP/1.1\r\n\r\n"sv, 400},
    {"tab after method", "GET\t/ HTTP/1.1\r\n\r\n"sv, 400},
    {"tab after target", "GET /\tHTTP/1.1\r\n\r\n"sv, 400},
    {"space after version", "GET / HTTP/1.1 \r\n\r\n"sv, 400},
    {"leading space", " GET / HTTP/1.1\r\n\r\n"sv, 400},
    {"method with paren", "GE(T / HTTP/1.1\r\n\r\n"sv, 400},
    {"method with at", "G@T / HTTP/1.1\r\n\r\n"sv, 400},
    {"method with del", "GET\x7f / HTTP/1.1\r\n\r\n"sv, 400},
    {"method with high byte", "G\x80T / HTTP/1.1\r\n\r\n"sv, 400},
    {"method with nul", "G\0T / HTTP/1.1\r\n\r\n"sv, 400},
    {"empty target", "GET  HTTP/1.1\r\n\r\n"sv, 400},
    {"target with utf8", "GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n"sv, 400},
    {"target with del", "GET /a\x7f HTTP/1.1\r\n\r\n"sv, 400},
    {"target with nul", "GET /a\0b HTTP/1.1\r\n\r\n"sv, 400},
    {"target with ctl", "GET /a\x01 HTTP/1.1\r\n\r\n"sv, 400},
    {"no version", "GET /\r\n\r\n"sv, 400},
    {"method only", "GET\r\n\r\n"sv, 400},
    {"version 1.32", "GET / HTTP/1.32\r\n\r\n"sv, 400},
    {"version 111", "GET / HTTP/111\r\n\r\n"sv, 400},
    {"version lowercase", "GET / http/1.1\r\n\r\n"sv, 400},
    {"version short", "GET / HTTP/1\r\n\r\n"sv, 400},
    {"version letters", "GET / HTTP/1.a\r\n\r\n"sv, 400},
    {"version with space", "GET / HTTP/ 1.1\r\n\r\n"sv, 400},
    {"version 2.0 then garbage", "GET / HTTP/2.0x\r\n\r\n"sv, 400},
    {"version 2.0 bare cr", "GET / HTTP/2.0\rX"sv, 400},
    {"version 2.0", "GET / HTTP/2.0\r\n\r\n"sv, 505},
    {"version 1.2", "GET / HTTP/1.2\r\n\r\n"sv, 505},
    {"version 0.9", "GET / HTTP/0.9\r\n\r\n"sv, 505},
    {"version 9.9", "GET / HTTP/9.9\r\nHost: a\r\n\r\n"sv, 505},
    {"tls client hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"sv, 400},
    {"binary garbage", "\0\x01\x02\x03\xff\xfe"sv, 400},
    {"http2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"sv, 505},
    // ---- field names (ATTACKS C)
    {"empty name", "GET / HTTP/1.1\r\n: v\r\n\r\n"sv, 400},
    {"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n"sv, 400},
    {"tab before colon", "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n"sv, 400},
    {"space before first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n"sv, 400},
    {"tab before first field", "GET / HTTP/1.1\r\n\tHost: a\r\n\r\n"sv, 400},
    {"obs-fold space", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"sv, 400},
    {"obs-fold tab", "GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n"sv, 400},
    {"ctl in name", "GET / HTTP/1.1\r\nX\x01Y: v\r\n\r\n"sv, 400},
    {"paren in name", "GET / HTTP/1.1\r\nX(Y): v\r\n\r\n"sv, 400},
    {"slash in name", "GET / HTTP/1.1\r\nX/Y: v\r\n\r\n"sv, 400},
    {"quote in name", "GET / HTTP/1.1\r\nX\"Y: v\r\n\r\n"sv, 400},
    {"high byte in name", "GET / HTTP/1.1\r\nX\xffY: v\r\n\r\n"sv, 400},
    {"space in name", "GET / HTTP/1.1\r\nTransfer Encoding: chunked\r\n\r\n"sv, 400},
    {"no colon", "GET / HTTP/1.1\r\nHost\r\n\r\n"sv, 400},
    // ---- field values (ATTACKS C)
    {"nul in value", "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"sv, 400},
    {"ctl 01 in value", "GET / HTTP/1.1\r\nX: a\x01\r\n\r\n"sv, 400},
    {"vt before chunked", "GET / HTTP/1.1\r\nTransfer-Encoding: \x0b" "chunked\r\n\r\n"sv, 400},
    {"esc in value", "GET / HTTP/1.1\r\nX: \x1b[31m\r\n\r\n"sv, 400},
    {"del in value", "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n"sv, 400},
    {"bare lf in value", "GET / HTTP/1.1\r\nX: a\nb: c\r\n\r\n"sv, 400},
};
// clang-format on

class parser_table : public ::testing::TestWithParam<parser_case> {};

TEST_P(parser_table, same_outcome_for_every_prefix) {
    const parser_case& c = GetParam();
    const head_snapshot full = parse_every_prefix(c.input);
    if (c.expect == k_complete) {
        ASSERT_EQ(full.status, parse_status::complete) << full;
        EXPECT_EQ(full.head_length, c.input.find("\r\n\r\n") + 4);
    } else if (c.expect == k_incomplete) {
        EXPECT_EQ(full.status, parse_status::incomplete) << full;
    } else {
        ASSERT_EQ(full.status, parse_status::error) << full;
        EXPECT_EQ(full.error_status, c.expect) << full;
    }
}

INSTANTIATE_TEST_SUITE_P(cases, parser_table, ::testing::ValuesIn(k_parser_cases),
                         [](const auto& info) { return test_name(info.param.name); });

// ---- fields and views ----------------------------------------------------------------------

TEST(parser, fills_the_head) {
    const auto s = parse_every_prefix(
        "POST /p?q=1 HTTP/1.0\r\nHost: example.com\r\nX-Empty:\r\nX-Pad: \t v w \t\r\n\r\nBODY");
    ASSERT_EQ(s.status, parse_status::complete);
    EXPECT_EQ(s.method, "POST");
    EXPECT_EQ(s.target, "/p?q=1");
    EXPECT_EQ(s.minor_version, 0);
    const std::vector<std::pair<std::string, std::string>> want = {
        {"Host", "example.com"}, {"X-Empty", ""}, {"X-Pad", "v w"}};
    EXPECT_EQ(s.headers, want);
    EXPECT_EQ(s.head_length, std::string_view("POST /p?q=1 HTTP/1.0\r\nHost: example.com\r\n"
                                              "X-Empty:\r\nX-Pad: \t v w \t\r\n\r\n")
                                 .size());
}

TEST(parser, views_point_into_the_input) {
    exact_buffer buf("GET /x HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n");
    header_field storage[4];
    request_head head;
    const auto r = parse_request_head(buf.view(), head, storage, limits{});
    ASSERT_EQ(r.status, parse_status::complete);
    EXPECT_EQ(head.method.data(), buf.view().data());
    EXPECT_EQ(head.target.data(), buf.view().data() + 4);
    ASSERT_EQ(head.headers.size(), 2u);
    EXPECT_EQ(head.headers.data(), storage);
    EXPECT_EQ(head.headers[0].name.data(), buf.view().data() + 17);
    EXPECT_EQ(head.headers[1].value.data(), buf.view().data() + 26);
    EXPECT_EQ(head.minor_version, 1);
}

TEST(parser, null_empty_input_is_incomplete) {
    header_field storage[1];
    request_head head;
    EXPECT_EQ(parse_request_head({}, head, storage, limits{}).status, parse_status::incomplete);
}

TEST(parser, token_helpers) {
    EXPECT_TRUE(is_token("Content-Length"));
    EXPECT_TRUE(is_token("!#$%&'*+-.^_`|~"));
    EXPECT_FALSE(is_token(""));
    EXPECT_FALSE(is_token("a b"));
    EXPECT_FALSE(is_token("a:b"));
    EXPECT_FALSE(is_token("caf\xc3\xa9"));
    constexpr std::string_view k_punct = "!#$%&'*+-.^_`|~";
    for (int c = 0; c < 256; ++c) {
        const bool want =
            c < 0x80 && (std::isalnum(c) || k_punct.find(char(c)) != std::string_view::npos);
        EXPECT_EQ(is_token_char(static_cast<unsigned char>(c)), want) << c;
    }
}

// ---- limits --------------------------------------------------------------------------------

std::string request_line_of(size_t length) {  // "GET /aaa... HTTP/1.1", exactly `length` bytes
    const size_t fixed = std::string_view("GET / HTTP/1.1").size();
    return "GET /" + std::string(length - fixed, 'a') + " HTTP/1.1";
}

TEST(parser_limits, request_line_exactly_at_the_limit_passes) {
    limits lim;
    lim.max_request_line = 64;
    const auto s = parse_every_prefix(request_line_of(64) + "\r\nHost: a\r\n\r\n", lim);
    EXPECT_EQ(s.status, parse_status::complete) << s;
}

TEST(parser_limits, request_line_one_over_the_limit_is_414_even_when_partial) {
    limits lim;
    lim.max_request_line = 64;
    const std::string line = request_line_of(65);
    EXPECT_EQ(parse_every_prefix(line + "\r\nHost: a\r\n\r\n", lim).error_status, 414);
    // Partial: no CRLF yet, only 65 bytes of the line.
    EXPECT_EQ(parse_snapshot(line.substr(0, 65), lim).error_status, 414);
    EXPECT_EQ(parse_snapshot(line.substr(0, 64), lim).status, parse_status::incomplete);
}

TEST(parser_limits, target_longer_than_64k_is_414_not_truncated) {
    const std::string target(70000, 'a');
    const std::string input = "GET /" + target;  // the client is still sending
    EXPECT_EQ(parse_snapshot(input).error_status, 414);
    limits big;
    big.max_request_line = 1 << 20;
    big.max_head = 1 << 20;
    const auto s = parse_snapshot("GET /" + target + " HTTP/1.1\r\n\r\n", big);
    ASSERT_EQ(s.status, parse_status::complete);
    EXPECT_EQ(s.target.size(), target.size() + 1);
}

TEST(parser_limits, head_exactly_at_the_limit_passes) {
    const std::string start = "GET / HTTP/1.1\r\nX: ";
    limits lim;
    lim.max_head = 200;
    const std::string head = start + std::string(200 - start.size() - 4, 'v') + "\r\n\r\n";
    ASSERT_EQ(head.size(), 200u);
    const auto s = parse_every_prefix(head + "body", lim);
    ASSERT_EQ(s.status, parse_status::complete) << s;
    EXPECT_EQ(s.head_length, 200u);
}

TEST(parser_limits, head_one_over_the_limit_is_431_even_when_partial) {
    const std::string start = "GET / HTTP/1.1\r\nX: ";
    limits lim;
    lim.max_head = 200;
    const std::string one_over = start + std::string(201 - start.size() - 4, 'v') + "\r\n\r\n";
    EXPECT_EQ(parse_every_prefix(one_over, lim).error_status, 431);
    const std::string head = start + std::string(300, 'v') + "\r\n\r\n";
    EXPECT_EQ(parse_snapshot(head.substr(0, 201), lim).error_status, 431);  // still mid-value
    EXPECT_EQ(parse_snapshot(head.substr(0, 200), lim).status, parse_status::incomplete);
}

TEST(parser_limits, one_64k_header_is_431) {
    const std::string input = "GET / HTTP/1.1\r\nX: " + std::string(65536, 'v');  // never ends
    EXPECT_EQ(parse_snapshot(input).error_status, 431);
}

std::string head_with_fields(size_t n) {
    std::string s = "GET / HTTP/1.1\r\n";
    for (size_t i = 0; i < n; ++i)
        s += "F" + std::to_string(i) + ": v\r\n";
    return s + "\r\n";
}

TEST(parser_limits, max_headers_exactly_passes_and_one_more_is_431) {
    limits lim;
    lim.max_headers = 5;
    const auto ok = parse_every_prefix(head_with_fields(5), lim, 5);
    ASSERT_EQ(ok.status, parse_status::complete);
    EXPECT_EQ(ok.headers.size(), 5u);
    EXPECT_EQ(parse_every_prefix(head_with_fields(6), lim, 64).error_status, 431);
    // Partial: the sixth field has only begun.
    const std::string six = head_with_fields(6);
    EXPECT_EQ(parse_snapshot(six.substr(0, six.find("F5") + 1), lim, 64).error_status, 431);
}

TEST(parser_limits, storage_smaller_than_max_headers_is_431) {
    limits lim;
    lim.max_headers = 100;
    EXPECT_EQ(parse_every_prefix(head_with_fields(3), lim, 3).status, parse_status::complete);
    EXPECT_EQ(parse_every_prefix(head_with_fields(4), lim, 3).error_status, 431);
    EXPECT_EQ(parse_snapshot(head_with_fields(1), lim, 0).error_status, 431);
    EXPECT_EQ(parse_snapshot(head_with_fields(0), lim, 0).status, parse_status::complete);
}

TEST(parser_limits, ten_thousand_headers_is_431) {
    limits lim;
    lim.max_head = 1 << 20;  // so that the field count, not the size, is what trips
    EXPECT_EQ(parse_snapshot(head_with_fields(10000), lim).error_status, 431);
    EXPECT_EQ(parse_snapshot(head_with_fields(10000)).error_status, 431);  // default limits
}

TEST(parser_limits, split_request_line_at_every_offset_is_incomplete) {
    // ATTACKS B: the request line split across segments at every byte offset.
    const std::string line = "OPTIONS * HTTP/1.1\r\n";
    for (size_t k = 0; k < line.size(); ++k)
        EXPECT_EQ(parse_snapshot(line.substr(0, k)).status, parse_status::incomplete) << k;
}

TEST(parser_errors, reasons_name_the_rule) {
    EXPECT_EQ(parse_snapshot("GET / HTTP/1.1\nHost: a\r\n\r\n").reason,
              "bare LF in request head (RFC 9112 §2.2: lines end with CRLF)");
    EXPECT_NE(parse_snapshot("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n").reason.find("obs-fold"),
              std::string::npos);
    EXPECT_NE(parse_snapshot("GET / HTTP/1.1\r\nHost : a\r\n\r\n").reason.find("§5.1"),
              std::string::npos);
}

}  // namespace
}  // namespace coachwhip::http1::test
