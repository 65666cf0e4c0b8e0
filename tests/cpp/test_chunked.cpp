// Tests for http1::chunked_decoder (src/http1/chunked.cpp).
//
// Every table case is decoded three ways — whole, split in two at every byte boundary, and one
// byte per call — each piece in its own exact-size heap buffer, and all three must agree.
#include <string>
#include <string_view>
#include <vector>

#include "http1/chunked.hpp"
#include "http1_cases.hpp"

namespace coachwhip::http1::test {
namespace {

using namespace std::string_view_literals;
using status = chunked_decoder::status;

struct chunked_case {
    std::string_view name;
    std::string_view input;
    status expect = status::done;  // done, need_more or error (data is never final)
    uint16_t error = 0;            // when expect == error
    std::string_view body = {};    // the de-chunked bytes delivered before the end
    size_t tail = 0;               // when done: bytes after the trailer section, not consumed
};

// What a whole feed produced, comparable across ways of splitting the input.
struct outcome {
    status final = status::need_more;
    uint16_t error = 0;
    std::string reason;
    std::string body;
    size_t consumed = 0;  // total bytes consumed over all calls

    bool operator==(const outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const outcome& o) {
    return os << "status=" << int(o.final) << " error=" << o.error << " (" << o.reason
              << ") body=" << o.body.size() << "B consumed=" << o.consumed;
}

// Feeds `pieces` in order, as the connection would: call decode until it wants more input.
outcome decode_pieces(const std::vector<std::string_view>& pieces,
                      chunked_decoder::limits lim = {}) {
    chunked_decoder dec(lim);
    outcome o;
    for (const std::string_view piece : pieces) {
        exact_buffer buf(piece);
        std::string_view rest = buf.view();
        for (;;) {
            const auto r = dec.decode(rest);
            EXPECT_LE(r.consumed, rest.size());
            o.consumed += r.consumed;
            rest.remove_prefix(r.consumed);
            if (r.status == status::data) {
                EXPECT_FALSE(r.data.empty());
                EXPECT_TRUE(buf.contains(r.data)) << "data must point into the input";
                o.body.append(r.data);
                continue;
            }
            o.final = r.status;
            if (r.status == status::need_more) {
                EXPECT_TRUE(rest.empty()) << "need_more must consume everything";
                break;
            }
            if (r.status == status::done) {
                EXPECT_TRUE(dec.finished());
            }
            o.error = r.error.status;
            o.reason = std::string(r.error.reason);
            return o;
        }
    }
    return o;
}

std::vector<std::string_view> split_at(std::string_view s, size_t k) {
    return {s.substr(0, k), s.substr(k)};
}

std::vector<std::string_view> one_byte_pieces(std::string_view s) {
    std::vector<std::string_view> out;
    for (size_t i = 0; i < s.size(); ++i)
        out.push_back(s.substr(i, 1));
    return out;
}

// gtest prints a failing parameter with this instead of its bytes.
void PrintTo(const chunked_case& c, std::ostream* os) { *os << c.name; }

// clang-format off
const chunked_case k_chunked_cases[] = {
    // ---- complete bodies
    {"one chunk", "5\r\nhello\r\n0\r\n\r\n"sv, status::done, 0, "hello"},
    {"several chunks", "3\r\nabc\r\n2\r\nde\r\n1\r\nf\r\n0\r\n\r\n"sv, status::done, 0, "abcdef"},
    {"hex both cases", "A\r\n0123456789\r\na\r\nabcdefghij\r\n0\r\n\r\n"sv, status::done, 0, "0123456789abcdefghij"},
    {"leading zeros", "0005\r\nhello\r\n000\r\n\r\n"sv, status::done, 0, "hello"},
    {"twenty digits one significant", "00000000000000000001\r\na\r\n0\r\n\r\n"sv, status::done, 0, "a"},
    {"empty body", "0\r\n\r\n"sv, status::done, 0, ""},
    {"binary data with crlf", "6\r\n\r\n\0\n\r\xff\r\n0\r\n\r\n"sv, status::done, 0, "\r\n\0\n\r\xff"sv},
    {"extensions", "5;foo=bar\r\nhello\r\n0;last\r\n\r\n"sv, status::done, 0, "hello"},
    {"extension bws", "5 ; a = b ;c\t;d=e\r\nhello\r\n0\r\n\r\n"sv, status::done, 0, "hello"},
    {"quoted extension", "5;a=\"x y;\\\"z\\\\\"\r\nhello\r\n0\r\n\r\n"sv, status::done, 0, "hello"},
    {"quoted extension obs text", "5;a=\"caf\xc3\xa9\"\r\nhello\r\n0\r\n\r\n"sv, status::done, 0, "hello"},
    {"trailers", "0\r\nX-Checksum: abc\r\nX-Empty:\r\nContent-Type: a/b\r\n\r\n"sv, status::done},
    {"trailer obs text", "0\r\nX: caf\xc3\xa9\r\n\r\n"sv, status::done},
    {"next request not consumed", "1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\n"sv, status::done, 0, "a", 16},
    {"garbage after end not consumed", "0\r\n\r\nXX"sv, status::done, 0, "", 2},
    // ---- incomplete
    {"nothing", ""sv, status::need_more},
    {"ends after last chunk line", "0\r\n"sv, status::need_more},
    {"ends mid data", "5\r\nhel"sv, status::need_more, 0, "hel"},
    {"ends mid trailers", "0\r\nX: y\r\n"sv, status::need_more},
    {"largest size", "7fffffffffffffff\r\nabc"sv, status::need_more, 0, "abc"},
    // ---- chunk-size (ATTACKS A)
    {"hex prefix", "0x2\r\nab\r\n0\r\n\r\n"sv, status::error, 400},
    {"plus sign", "+5\r\nhello\r\n0\r\n\r\n"sv, status::error, 400},
    {"minus sign", "-5\r\nhello\r\n0\r\n\r\n"sv, status::error, 400},
    {"underscore", "1_0\r\n"sv, status::error, 400},
    {"leading space", " 5\r\nhello\r\n0\r\n\r\n"sv, status::error, 400},
    {"leading tab", "\t5\r\nhello\r\n0\r\n\r\n"sv, status::error, 400},
    {"trailing space", "5 \r\nhello\r\n0\r\n\r\n"sv, status::error, 400},
    {"empty size", "\r\nhello\r\n0\r\n\r\n"sv, status::error, 400},
    {"seventeen digits", "10000000000000000\r\n"sv, status::error, 400},
    {"two pow 63", "8000000000000000\r\n"sv, status::error, 400},
    {"two pow 64 minus one", "ffffffffffffffff\r\n"sv, status::error, 400},
    {"bare lf after size", "5\nhello\r\n0\r\n\r\n"sv, status::error, 400},
    {"bare cr after size", "5\rhello\r\n0\r\n\r\n"sv, status::error, 400},
    // ---- chunk data must end with CRLF (ATTACKS A)
    {"data then xx", "5\r\nhelloXX"sv, status::error, 400, "hello"},
    {"data then lf", "5\r\nhello\n0\r\n\r\n"sv, status::error, 400, "hello"},
    {"data then cr x", "5\r\nhello\rX"sv, status::error, 400, "hello"},
    {"data too long", "3\r\nhello\r\n0\r\n\r\n"sv, status::error, 400, "hel"},
    // ---- chunk extensions (RFC 9112 §7.1.1)
    {"ext bare lf", "5;a\nhello\r\n0\r\n\r\n"sv, status::error, 400},
    {"ext bare cr", "5;a\rb\r\nhello\r\n0\r\n\r\n"sv, status::error, 400},
    {"ext quoted cr", "5;a=\"x\ry\"\r\nhello\r\n0\r\n\r\n"sv, status::error, 400},
    {"ext quoted lf", "5;a=\"x\ny\"\r\nhello\r\n0\r\n\r\n"sv, status::error, 400},
    {"ext empty name", "5;\r\nhello\r\n0\r\n\r\n"sv, status::error, 400},
    {"ext no name", "5;=a\r\nhello\r\n0\r\n\r\n"sv, status::error, 400},
    {"ext empty value", "5;a=\r\nhello\r\n0\r\n\r\n"sv, status::error, 400},
    {"ext unterminated quote", "5;a=\"x\r\nhello\r\n0\r\n\r\n"sv, status::error, 400},
    {"ext space in name", "5;a b\r\nhello\r\n0\r\n\r\n"sv, status::error, 400},
    {"ext space in value", "5;a=b c\r\nhello\r\n0\r\n\r\n"sv, status::error, 400},
    {"ext trailing space", "5;a=b \r\nhello\r\n0\r\n\r\n"sv, status::error, 400},
    {"ext nul", "5;a=b\0\r\nhello\r\n0\r\n\r\n"sv, status::error, 400},
    // ---- trailer section (ATTACKS A; RFC 9110 §6.5.1)
    {"trailer content length", "0\r\nContent-Length: 5\r\n\r\n"sv, status::error, 400},
    {"trailer transfer encoding", "0\r\nTransfer-Encoding: chunked\r\n\r\n"sv, status::error, 400},
    {"trailer host", "0\r\nHOST: a\r\n\r\n"sv, status::error, 400},
    {"trailer trailer", "0\r\nTrailer: x\r\n\r\n"sv, status::error, 400},
    {"trailer connection", "0\r\nconnection: close\r\n\r\n"sv, status::error, 400},
    {"trailer underscore is allowed", "0\r\nContent_Length: 5\r\n\r\n"sv, status::done},
    {"trailer long name is allowed", "0\r\nX-A-Very-Long-Trailer-Name-Indeed: 1\r\n\r\n"sv, status::done},
    {"trailer obs fold", "0\r\nX: a\r\n b\r\n\r\n"sv, status::error, 400},
    {"trailer space before colon", "0\r\nX : a\r\n\r\n"sv, status::error, 400},
    {"trailer empty name", "0\r\n: a\r\n\r\n"sv, status::error, 400},
    {"trailer no colon", "0\r\nX\r\n\r\n"sv, status::error, 400},
    {"trailer bare lf", "0\r\nX: a\n\r\n"sv, status::error, 400},
    {"trailer nul", "0\r\nX: a\0\r\n\r\n"sv, status::error, 400},
    {"end bare lf", "0\r\n\n"sv, status::error, 400},
    {"end bare cr", "0\r\n\rX"sv, status::error, 400},
};
// clang-format on

class chunked_table : public ::testing::TestWithParam<chunked_case> {};

TEST_P(chunked_table, same_outcome_however_split) {
    const chunked_case& c = GetParam();
    const outcome whole = decode_pieces({c.input});
    EXPECT_EQ(whole.final, c.expect) << whole;
    EXPECT_EQ(whole.error, c.error) << whole;
    EXPECT_EQ(whole.body, std::string(c.body));
    if (c.expect == status::done) {
        EXPECT_EQ(whole.consumed, c.input.size() - c.tail);
    }
    if (c.expect == status::error) {
        EXPECT_FALSE(whole.reason.empty());
    }
    for (size_t k = 0; k <= c.input.size(); ++k)
        EXPECT_EQ(decode_pieces(split_at(c.input, k)), whole) << "split at " << k;
    EXPECT_EQ(decode_pieces(one_byte_pieces(c.input)), whole) << "one byte at a time";
}

INSTANTIATE_TEST_SUITE_P(cases, chunked_table, ::testing::ValuesIn(k_chunked_cases),
                         [](const auto& info) { return test_name(info.param.name); });

TEST(chunked, error_is_sticky) {
    chunked_decoder dec;
    const auto first = dec.decode("zz");
    ASSERT_EQ(first.status, status::error);
    const auto again = dec.decode("5\r\nhello\r\n0\r\n\r\n");
    EXPECT_EQ(again.status, status::error);
    EXPECT_EQ(again.error.status, first.error.status);
    EXPECT_EQ(again.consumed, 0u);
}

TEST(chunked, done_consumes_nothing_more) {
    chunked_decoder dec;
    EXPECT_EQ(dec.decode("0\r\n\r\n").status, status::done);
    const auto again = dec.decode("more");
    EXPECT_EQ(again.status, status::done);
    EXPECT_EQ(again.consumed, 0u);
}

TEST(chunked, data_comes_in_place_and_in_pieces) {
    exact_buffer buf("a\r\n0123456789\r\n0\r\n\r\n");
    chunked_decoder dec;
    const auto r = dec.decode(buf.view());
    ASSERT_EQ(r.status, status::data);
    EXPECT_EQ(r.data, "0123456789");
    EXPECT_EQ(r.data.data(), buf.view().data() + 3);
    EXPECT_EQ(r.consumed, 13u);
}

TEST(chunked, size_line_limit) {
    chunked_decoder::limits lim;
    lim.max_line = 8;
    EXPECT_EQ(decode_pieces({"00000005\r\nhello\r\n0\r\n\r\n"}, lim).final, status::done);
    const std::string too_long = "000000005\r\nhello\r\n0\r\n\r\n";
    const outcome o = decode_pieces({too_long}, lim);
    EXPECT_EQ(o.error, 400);
    EXPECT_EQ(decode_pieces(one_byte_pieces(too_long), lim), o);
    EXPECT_EQ(decode_pieces({"5;a=bcdefg\r\nhello\r\n0\r\n\r\n"}, lim).error,
              400);  // extensions count
    // Default limit: thousands of leading zeros are refused, not buffered.
    EXPECT_EQ(decode_pieces({std::string(5000, '0') + "1\r\na\r\n0\r\n\r\n"}).error, 400);
}

TEST(chunked, trailer_section_limit) {
    chunked_decoder::limits lim;
    lim.max_trailers = 16;
    const std::string exact = "0\r\nX: 012345678\r\n\r\n";  // 14 + 2 trailer bytes
    EXPECT_EQ(decode_pieces({exact}, lim).final, status::done);
    const std::string over = "0\r\nX: 0123456789\r\n\r\n";
    const outcome o = decode_pieces({over}, lim);
    EXPECT_EQ(o.error, 431);
    EXPECT_EQ(decode_pieces(one_byte_pieces(over), lim), o);
    // An endless trailer is stopped at the limit, with the line still open.
    EXPECT_EQ(decode_pieces({"0\r\nX: " + std::string(100, 'v')}, lim).error, 431);
}

TEST(chunked, large_chunk_streams_without_buffering) {
    std::string body(100000, 'x');
    const std::string input = "186a0\r\n" + body + "\r\n0\r\n\r\n";
    EXPECT_EQ(decode_pieces({input}).body, body);
    std::vector<std::string_view> pieces;
    for (size_t i = 0; i < input.size(); i += 4096)
        pieces.push_back(std::string_view(input).substr(i, 4096));
    const outcome o = decode_pieces(pieces);
    EXPECT_EQ(o.final, status::done);
    EXPECT_EQ(o.body.size(), body.size());
}

}  // namespace
}  // namespace coachwhip::http1::test
