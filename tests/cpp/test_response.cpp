// Response head serialisation: framing decisions and the checks that stop an app from splitting
// or corrupting a response.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "http1/response.hpp"

using namespace coachwhip;
using http1::head_options;
using http1::response_framing;

namespace {

struct encoded {
    core::error err;
    std::string out;
    response_framing framing;
};

encoded encode(int status, std::vector<http::field> fields, head_options opt = {}) {
    opt.date_header = false;
    encoded e;
    e.err = http1::encode_response_head(e.out, status, fields, opt, e.framing);
    return e;
}

TEST(ResponseHead, CompleteBodyGetsContentLength) {
    head_options opt;
    opt.body_size = 13;
    auto e = encode(200, {{"content-type", "text/plain"}}, opt);
    ASSERT_FALSE(e.err);
    EXPECT_EQ(e.out,
              "HTTP/1.1 200 OK\r\nserver: coachwhip\r\ncontent-type: text/plain\r\n"
              "content-length: 13\r\n\r\n");
    EXPECT_FALSE(e.framing.chunked);
    EXPECT_EQ(e.framing.content_length, 13u);
}

TEST(ResponseHead, StreamedBodyIsChunkedForHttp11) {
    auto e = encode(200, {});
    ASSERT_FALSE(e.err);
    EXPECT_NE(e.out.find("transfer-encoding: chunked\r\n"), std::string::npos);
    EXPECT_TRUE(e.framing.chunked);
}

TEST(ResponseHead, StreamedBodyIsCloseDelimitedForHttp10) {
    head_options opt;
    opt.minor_version = 0;
    auto e = encode(200, {}, opt);
    ASSERT_FALSE(e.err);
    EXPECT_TRUE(e.framing.close_delimited);
    EXPECT_FALSE(e.framing.keep_alive);
    EXPECT_NE(e.out.find("connection: close\r\n"), std::string::npos);
    EXPECT_EQ(e.out.find("transfer-encoding"), std::string::npos);
}

TEST(ResponseHead, AppTransferEncodingAndConnectionAreReplaced) {
    head_options opt;
    opt.body_size = 2;
    auto e = encode(200, {{"transfer-encoding", "gzip"}, {"connection", "keep-alive"}}, opt);
    ASSERT_FALSE(e.err);
    EXPECT_EQ(e.out.find("gzip"), std::string::npos);
    EXPECT_EQ(e.out.find("keep-alive"), std::string::npos);
}

TEST(ResponseHead, AppConnectionCloseIsHonoured) {
    head_options opt;
    opt.body_size = 0;
    auto e = encode(200, {{"connection", "close"}}, opt);
    ASSERT_FALSE(e.err);
    EXPECT_FALSE(e.framing.keep_alive);
    EXPECT_NE(e.out.find("connection: close\r\n"), std::string::npos);
}

TEST(ResponseHead, NoBodyStatusesHaveNoFraming) {
    for (int status : {204, 304}) {
        auto e = encode(status, {});
        ASSERT_FALSE(e.err) << status;
        EXPECT_TRUE(e.framing.no_body) << status;
        EXPECT_EQ(e.out.find("transfer-encoding"), std::string::npos) << status;
        EXPECT_EQ(e.out.find("content-length"), std::string::npos) << status;
    }
}

TEST(ResponseHead, HeadRequestKeepsLengthButNoBody) {
    head_options opt;
    opt.head_request = true;
    opt.body_size = 42;
    auto e = encode(200, {}, opt);
    ASSERT_FALSE(e.err);
    EXPECT_TRUE(e.framing.no_body);
    EXPECT_NE(e.out.find("content-length: 42\r\n"), std::string::npos);
}

TEST(ResponseHead, ServerAndDateHeadersAreOptionalAndNotDuplicated) {
    head_options opt;
    opt.date_header = true;
    opt.body_size = 0;
    std::string out;
    response_framing f;
    ASSERT_FALSE(http1::encode_response_head(out, 200, {}, opt, f));
    EXPECT_NE(out.find("\r\ndate: "), std::string::npos);
    auto e = encode(200, {{"server", "mine"}}, opt);
    EXPECT_EQ(e.out.find("coachwhip"), std::string::npos);
    opt.server_header = false;
    e = encode(200, {}, opt);
    EXPECT_EQ(e.out.find("server:"), std::string::npos);
}

// Every way an app could corrupt the head is refused, and nothing is written.
TEST(ResponseHead, InvalidFieldsAreRefusedWithoutOutput) {
    const std::vector<std::vector<http::field>> bad = {
        {{"x", "a\r\nset-cookie: evil"}},
        {{"x", "a\nb"}},
        {{"x", "a\rb"}},
        {{"x", std::string_view("a\0b", 3)}},
        {{"x", "a\x01"}},
        {{"x", "a\x7f"}},
        {{"bad name", "v"}},
        {{"bad:name", "v"}},
        {{"", "v"}},
        {{"na\r\nme", "v"}},
        {{"content-length", "12abc"}},
        {{"content-length", "-1"}},
        {{"content-length", "1"}, {"content-length", "2"}},
    };
    for (const auto& fields : bad) {
        std::string out = "untouched";
        response_framing f;
        core::error err = http1::encode_response_head(out, 200, fields, {}, f);
        EXPECT_EQ(err.status, 500) << fields[0].name << ": " << fields[0].value;
        EXPECT_EQ(out, "untouched");
    }
    // RFC 9110 §15: 100..599 only, and a 1xx is never a final response (§15.2).
    for (int status : {99, 100, 101, 103, 199, 600, 999, 1000}) {
        auto e = encode(status, {});
        EXPECT_EQ(e.err.status, 500) << status;
    }
}

TEST(ResponseHead, ValuesWithTabAndObsTextAreAllowed) {
    head_options opt;
    opt.body_size = 0;
    auto e = encode(200, {{"x", "a\tb \xe9"}}, opt);
    EXPECT_FALSE(e.err);
}

TEST(ResponseHead, UnknownStatusHasEmptyReason) {
    head_options opt;
    opt.body_size = 0;
    auto e = encode(599, {}, opt);
    ASSERT_FALSE(e.err);
    EXPECT_EQ(e.out.substr(0, 15), "HTTP/1.1 599 \r\n");
    e = encode(200, {}, opt);
    EXPECT_EQ(e.out.substr(0, 17), "HTTP/1.1 200 OK\r\n");
}

TEST(Chunk, EncodesHexSizeAndSkipsEmpty) {
    std::string out;
    http1::encode_chunk(out, "");
    EXPECT_EQ(out, "");
    http1::encode_chunk(out, std::string(26, 'a'));
    EXPECT_EQ(out, "1a\r\n" + std::string(26, 'a') + "\r\n");
}

TEST(ErrorResponse, IsCompleteAndCloses) {
    std::string r = http1::encode_error_response(400, true, false);
    EXPECT_EQ(r,
              "HTTP/1.1 400 Bad Request\r\nserver: coachwhip\r\n"
              "content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
              "content-length: 12\r\n\r\nBad Request\n");
}

}  // namespace

TEST(ResponseHead, TheAppsReasonPhraseIsSentWhenGivenAndChecked) {
    head_options opt;
    opt.body_size = 0;
    opt.reason = "Fine Thanks";
    auto e = encode(200, {}, opt);
    ASSERT_FALSE(e.err);
    EXPECT_EQ(e.out.rfind("HTTP/1.1 200 Fine Thanks\r\n", 0), 0u);
    opt.reason = "";
    e = encode(404, {}, opt);
    EXPECT_EQ(e.out.rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u);
    opt.reason = "caf\xe9\tok";  // obs-text and HTAB are allowed
    EXPECT_FALSE(encode(200, {}, opt).err);
    const std::string_view bads[] = {"a\r\nx: y", "a\nb", std::string_view("a\0b", 3), "a\x7f"};
    for (std::string_view bad : bads) {
        opt.reason = bad;
        e = encode(200, {}, opt);
        EXPECT_TRUE(e.err) << bad;
        EXPECT_TRUE(e.out.empty());
    }
}
