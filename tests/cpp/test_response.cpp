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

// ---- the operator's default fields (--header NAME:VALUE) -------------------------------------

namespace {

http1::default_headers defaults_of(std::vector<std::pair<std::string_view, std::string_view>> in) {
    http1::default_headers d;
    for (const auto& [name, value] : in)
        EXPECT_FALSE(http1::add_default_header(d, name, value)) << name;
    return d;
}

}  // namespace

TEST(DefaultHeaders, AreEncodedOnceLowerCasedAndTrimmed) {
    const auto d = defaults_of({{"X-Frame-Options", " DENY "},
                                {"\tStrict-Transport-Security", "max-age=63072000"},
                                {"x-empty", ""}});
    EXPECT_EQ(d.lines,
              "x-frame-options: DENY\r\nstrict-transport-security: max-age=63072000\r\n"
              "x-empty: \r\n");
    ASSERT_EQ(d.fields.size(), 3u);
    EXPECT_EQ(d.fields[0].first, "x-frame-options");
    EXPECT_EQ(d.fields[0].second, "DENY");
    EXPECT_EQ(d.server_line, http1::k_server_line);
    EXPECT_FALSE(d.server_configured);
}

TEST(DefaultHeaders, FollowServerAndDateAndPrecedeTheAppsFields) {
    const auto d = defaults_of({{"X-A", "1"}, {"x-b", "2"}});
    head_options opt;
    opt.body_size = 0;
    opt.defaults = &d;
    auto e = encode(200, {{"x-a", "app"}, {"content-type", "text/plain"}}, opt);
    ASSERT_FALSE(e.err);
    // A name the app sends too appears twice, the operator's first (as uvicorn does).
    EXPECT_EQ(e.out,
              "HTTP/1.1 200 OK\r\nserver: coachwhip\r\nx-a: 1\r\nx-b: 2\r\nx-a: app\r\n"
              "content-type: text/plain\r\ncontent-length: 0\r\n\r\n");
    opt.date_header = true;
    std::string out;
    response_framing f;
    ASSERT_FALSE(http1::encode_response_head(out, 204, {}, opt, f));
    const size_t date = out.find("\r\ndate: "), a = out.find("\r\nx-a: 1\r\n");
    ASSERT_NE(date, std::string::npos);
    EXPECT_LT(out.find("\r\nserver: coachwhip\r\n"), date);
    EXPECT_LT(date, a);
}

TEST(DefaultHeaders, NoneLeavesTheHeadAsItWas) {
    const http1::default_headers none;
    head_options opt;
    opt.body_size = 5;
    const auto without = encode(200, {{"content-type", "text/plain"}}, opt);
    opt.defaults = &none;
    const auto with = encode(200, {{"content-type", "text/plain"}}, opt);
    EXPECT_EQ(with.out, without.out);
}

TEST(DefaultHeaders, ServerReplacesCoachwhipsUnlessTheAppSendsOne) {
    const auto d = defaults_of({{"Server", "edge"}, {"x-a", "1"}});
    EXPECT_TRUE(d.server_configured);
    EXPECT_EQ(d.server, "edge");
    EXPECT_EQ(d.server_line, "server: edge\r\n");
    EXPECT_EQ(d.lines, "x-a: 1\r\n");  // the server field is not among the others
    head_options opt;
    opt.body_size = 0;
    opt.defaults = &d;
    auto e = encode(200, {}, opt);
    EXPECT_EQ(e.out.rfind("HTTP/1.1 200 OK\r\nserver: edge\r\nx-a: 1\r\n", 0), 0u) << e.out;
    e = encode(200, {{"Server", "app"}}, opt);
    EXPECT_EQ(e.out.find("server: edge"), std::string::npos);
    EXPECT_NE(e.out.find("Server: app\r\n"), std::string::npos);
    opt.server_header = false;  // the engine turns it on for a configured server (server.cpp)
    e = encode(200, {}, opt);
    EXPECT_EQ(e.out.find("server:"), std::string::npos);
}

TEST(DefaultHeaders, RefusedWithAReasonAndNothingAdded) {
    const std::pair<std::string_view, std::string_view> bad[] = {
        {"", "x"},
        {"  ", "x"},
        {"X Foo", "1"},
        {"x(y)", "1"},
        {"caf\xe9", "1"},
        {"x-a", "a\r\nx-evil: 1"},
        {"x-a", "a\nb"},
        {"x-a", std::string_view("a\0b", 3)},
        {"x-a", "a\x7f"},
        {"Content-Length", "5"},
        {"transfer-encoding", "chunked"},
        {"Connection", "close"},
        {"keep-alive", "timeout=5"},
        {"proxy-connection", "close"},
        {"Upgrade", "h2c"},
        {"TE", "trailers"},
        {"trailer", "x"},
        {"Date", "Thu, 01 Jan 1970 00:00:00 GMT"},
        {"Sec-WebSocket-Accept", "x"},
        {"server", ""},
    };
    for (const auto& [name, value] : bad) {
        http1::default_headers d;
        const core::error err = http1::add_default_header(d, name, value);
        EXPECT_TRUE(err) << name << ": " << value;
        EXPECT_FALSE(err.reason.empty());
        EXPECT_TRUE(d.lines.empty());
        EXPECT_TRUE(d.fields.empty());
        EXPECT_FALSE(d.server_configured);
    }
    http1::default_headers d;
    ASSERT_FALSE(http1::add_default_header(d, "server", "a"));
    EXPECT_TRUE(http1::add_default_header(d, "Server", "b"));  // twice
    EXPECT_EQ(d.server, "a");
    // HTAB and obs-text are allowed in a value (RFC 9110 §5.5).
    EXPECT_FALSE(http1::add_default_header(d, "x-a", "a\tb caf\xe9"));
}

TEST(DefaultHeaders, GoOnErrorResponsesAndTheWebSocketAccept) {
    const auto d = defaults_of({{"x-a", "1"}, {"server", "edge"}});
    std::string r = http1::encode_error_response(431, true, false, {}, &d);
    EXPECT_EQ(r,
              "HTTP/1.1 431 Request Header Fields Too Large\r\nserver: edge\r\nx-a: 1\r\n"
              "content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
              "content-length: 32\r\n\r\nRequest Header Fields Too Large\n");
    // Without defaults the bytes are as before (the fuzz harness compares them exactly).
    EXPECT_EQ(http1::encode_error_response(400, true, false),
              http1::encode_error_response(400, true, false, {}, nullptr));
    std::string out;
    const http::field app[] = {{"x-app", "2"}};
    ASSERT_FALSE(http1::encode_websocket_accept(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "chat", "",
                                                app, true, false, &d));
    EXPECT_EQ(out,
              "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
              "sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
              "sec-websocket-protocol: chat\r\nserver: edge\r\nx-a: 1\r\nx-app: 2\r\n\r\n");
}
