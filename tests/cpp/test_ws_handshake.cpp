// Tests for the opening handshake checks (src/ws/handshake.cpp).
//
// A handshake is a parsed request, so "split at every byte" becomes "split every list header at
// every comma": the lines of a list header are one list (RFC 9110 §5.3), so cutting
// Sec-WebSocket-Extensions or Sec-WebSocket-Protocol into one line per element (and joining
// them back) must never change the answer. Each check also runs on exact-size heap copies of
// the header values.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ws/handshake.hpp"

namespace coachwhip::ws::test {
namespace {

using headers = std::vector<std::pair<std::string, std::string>>;

// Owns exact-size copies of the names and values, and the http::field views of them.
struct request {
    std::vector<std::unique_ptr<char[]>> storage;
    std::vector<http::field> fields;
    std::string method = "GET";
    std::string version = "1.1";

    explicit request(const headers& h) {
        for (const auto& [name, value] : h)
            fields.push_back({copy(name), copy(value)});
    }
    std::string_view copy(const std::string& s) {
        storage.emplace_back(new char[std::max<size_t>(s.size(), 1)]);
        std::memcpy(storage.back().get(), s.data(), s.size());
        return {storage.back().get(), s.size()};
    }
    upgrade_request view() const { return {method, version, fields}; }
};

const headers k_rfc_request = {
    {"Host", "server.example.com"},   {"Upgrade", "websocket"},
    {"Connection", "Upgrade"},        {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
    {"Origin", "http://example.com"}, {"Sec-WebSocket-Protocol", "chat, superchat"},
    {"Sec-WebSocket-Version", "13"},
};

struct outcome {
    uint16_t status = 0;
    std::string accept;
    std::vector<std::string> protocols;
    bool deflate = false;
    std::string extensions;

    bool operator==(const outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const outcome& o) {
    os << "status=" << o.status << " accept=" << o.accept << " protocols=[";
    for (const auto& p : o.protocols)
        os << p << ",";
    return os << "] deflate=" << o.deflate << " ext='" << o.extensions << "'";
}

outcome check_once(const headers& h, const deflate_config& cfg, size_t max_protocols) {
    request req(h);
    std::vector<std::string_view> storage(max_protocols);
    const upgrade_result r = check_upgrade(req.view(), cfg, storage);
    outcome o;
    o.status = r.error.status;
    if (r.error) {
        EXPECT_FALSE(r.error.reason.empty());
        return o;
    }
    o.accept = std::string(r.accept());
    for (std::string_view p : r.subprotocols)
        o.protocols.emplace_back(p);
    o.deflate = r.deflate.accepted;
    o.extensions = std::string(r.deflate.response.view());
    return o;
}

// Every list header cut into one line per comma-separated piece (in place), and all lines of
// each list header joined into one.
std::vector<headers> list_variants(const headers& h) {
    const auto is_list = [](const std::string& n) {
        return n == "Sec-WebSocket-Extensions" || n == "Sec-WebSocket-Protocol" ||
               n == "Connection" || n == "Upgrade";
    };
    std::vector<headers> out;
    headers cut;
    for (const auto& [name, value] : h) {
        if (!is_list(name)) {
            cut.emplace_back(name, value);
            continue;
        }
        // Commas inside quoted strings do not separate elements.
        size_t start = 0;
        bool quoted = false;
        for (size_t i = 0; i <= value.size(); ++i) {
            if (i < value.size() && value[i] == '"') quoted = !quoted;
            if (i == value.size() || (value[i] == ',' && !quoted)) {
                cut.emplace_back(name, value.substr(start, i - start));
                start = i + 1;
            }
        }
    }
    out.push_back(cut);
    headers joined;
    for (const auto& line : h) {
        // (A lambda may not capture a structured binding in C++20: `line`, not [name, value].)
        auto it = std::find_if(joined.begin(), joined.end(),
                               [&](const auto& f) { return f.first == line.first; });
        if (is_list(line.first) && it != joined.end()) {
            it->second += ", " + line.second;
        } else {
            joined.push_back(line);
        }
    }
    out.push_back(joined);
    return out;
}

outcome check(const headers& h, const deflate_config& cfg = {}, size_t max_protocols = 8) {
    const outcome whole = check_once(h, cfg, max_protocols);
    for (const headers& v : list_variants(h))
        EXPECT_EQ(check_once(v, cfg, max_protocols), whole);
    return whole;
}

headers with(headers h, const std::string& name, const std::string& value) {
    h.emplace_back(name, value);
    return h;
}

headers without(headers h, const std::string& name) {
    std::erase_if(h, [&](const auto& f) { return f.first == name; });
    return h;
}

headers replaced(const headers& h, const std::string& name, const std::string& value) {
    return with(without(h, name), name, value);
}

// ---- the RFC 6455 example ---------------------------------------------------------------------

TEST(ws_handshake, Rfc6455Example) {
    const std::array<char, 28> a = compute_accept("dGhlIHNhbXBsZSBub25jZQ==");
    EXPECT_EQ(std::string_view(a.data(), a.size()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    const outcome o = check(k_rfc_request);
    EXPECT_EQ(o.status, 0);
    EXPECT_EQ(o.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    EXPECT_EQ(o.protocols, (std::vector<std::string>{"chat", "superchat"}));
    EXPECT_FALSE(o.deflate);
}

TEST(ws_handshake, MoreAcceptValues) {
    // Computed independently (Python: base64(sha1(key + GUID))).
    const std::pair<const char*, const char*> cases[] = {
        {"x3JJHMbDL1EzLkh9GBhXDw==", "HSmrc0sMlYUkAGmm5OPpG2HaGWk="},
        {"AQIDBAUGBwgJCgsMDQ4PEC==", "OfS0wDaT5NoxF2gqm7Zj2YtetzM="},
    };
    for (const auto& [key, accept] : cases) {
        const std::array<char, 28> a = compute_accept(key);
        EXPECT_EQ(std::string_view(a.data(), a.size()), accept) << key;
    }
}

TEST(ws_handshake, TolerantOfCaseListsAndWhitespace) {
    headers h = {{"upgrade", "  WebSocket "},
                 {"CONNECTION", "keep-alive, Upgrade"},
                 {"sec-websocket-key", " dGhlIHNhbXBsZSBub25jZQ== "},
                 {"SEC-WEBSOCKET-VERSION", "\t13\t"}};
    EXPECT_EQ(check(h).accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    // Upgrade and Connection may be lists spread over several lines.
    h = replaced(h, "upgrade", "h2c, websocket");
    h = with(replaced(h, "CONNECTION", "keep-alive"), "Connection", "x, upgrade");
    EXPECT_EQ(check(h).status, 0);
    EXPECT_TRUE(is_websocket_upgrade(request(h).fields));
    EXPECT_TRUE(list_has_token("keep-alive,  Upgrade ,x", "upgrade"));
    EXPECT_FALSE(list_has_token("keep-alive, Upgraded", "upgrade"));
    EXPECT_FALSE(list_has_token("", "upgrade"));
}

// ---- rejections -------------------------------------------------------------------------------

TEST(ws_handshake, MethodAndVersion) {
    request post(k_rfc_request);
    post.method = "POST";
    std::vector<std::string_view> s(8);
    EXPECT_EQ(check_upgrade(post.view(), {}, s).error.status, 400);
    request http10(k_rfc_request);
    http10.version = "1.0";
    EXPECT_EQ(check_upgrade(http10.view(), {}, s).error.status, 400);
    request http2(k_rfc_request);
    http2.version = "2";
    EXPECT_EQ(check_upgrade(http2.view(), {}, s).error.status, 400);
}

TEST(ws_handshake, UpgradeAndConnectionTokens) {
    EXPECT_EQ(check(without(k_rfc_request, "Upgrade")).status, 400);
    EXPECT_EQ(check(replaced(k_rfc_request, "Upgrade", "h2c")).status, 400);
    EXPECT_EQ(check(replaced(k_rfc_request, "Upgrade", "websocket/13")).status, 400);
    EXPECT_FALSE(is_websocket_upgrade(request(replaced(k_rfc_request, "Upgrade", "h2c")).fields));
    EXPECT_EQ(check(without(k_rfc_request, "Connection")).status, 400);
    EXPECT_EQ(check(replaced(k_rfc_request, "Connection", "keep-alive")).status, 400);
}

TEST(ws_handshake, VersionMustBe13) {
    EXPECT_EQ(check(without(k_rfc_request, "Sec-WebSocket-Version")).status, 400);
    EXPECT_EQ(check(replaced(k_rfc_request, "Sec-WebSocket-Version", "8")).status, 426);
    EXPECT_EQ(check(replaced(k_rfc_request, "Sec-WebSocket-Version", "13, 8")).status, 426);
    EXPECT_EQ(check(replaced(k_rfc_request, "Sec-WebSocket-Version", "")).status, 426);
    EXPECT_EQ(check(with(k_rfc_request, "Sec-WebSocket-Version", "13")).status, 400);  // twice
}

TEST(ws_handshake, KeyMustBeBase64OfSixteenBytes) {
    EXPECT_EQ(check(without(k_rfc_request, "Sec-WebSocket-Key")).status, 400);
    EXPECT_EQ(check(with(k_rfc_request, "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")).status,
              400);  // twice
    for (const char* bad : {"", "dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZQ",
                            "dGhlIHNhbXBsZSBub25jZQ===",  // 25 characters
                            "dGhlIHNhbXBsZSBub25j",       // 15 bytes
                            "dGhlIHNhbXBsZSBub25jZQ1=",   // 17 bytes
                            "dGhlIHNhbXBsZSBub25jZQA",    // no padding
                            "dGhlIHNhbXBsZSBub25j-Q==",   // base64url alphabet
                            "dGhlIHNhbXBsZSBub25jZ Q=",   // inner space
                            "dGhlIHNhbXBsZSBub25jZ\xc3\xa9="}) {
        EXPECT_FALSE(is_valid_key(bad)) << bad;
        EXPECT_EQ(check(replaced(k_rfc_request, "Sec-WebSocket-Key", bad)).status, 400) << bad;
    }
    EXPECT_TRUE(is_valid_key("AAAAAAAAAAAAAAAAAAAAAA=="));
    EXPECT_TRUE(is_valid_key("/////////////////////w=="));
}

TEST(ws_handshake, VersionMismatchWinsOverABadKey) {
    // A client speaking another version learns which one we speak.
    headers h = replaced(k_rfc_request, "Sec-WebSocket-Version", "7");
    EXPECT_EQ(check(replaced(h, "Sec-WebSocket-Key", "nope")).status, 426);
}

// ---- Sec-WebSocket-Protocol -------------------------------------------------------------------

TEST(ws_handshake, Subprotocols) {
    headers h = with(k_rfc_request, "Sec-WebSocket-Protocol", " v2.chat ,, graphql-ws");
    EXPECT_EQ(check(h).protocols,
              (std::vector<std::string>{"chat", "superchat", "v2.chat", "graphql-ws"}));
    EXPECT_EQ(check(without(k_rfc_request, "Sec-WebSocket-Protocol")).protocols,
              std::vector<std::string>{});
    EXPECT_EQ(check(replaced(k_rfc_request, "Sec-WebSocket-Protocol", "")).status, 0);
    EXPECT_EQ(check(replaced(k_rfc_request, "Sec-WebSocket-Protocol", "ch\xc3\xa4t")).status, 400);
    EXPECT_EQ(check(replaced(k_rfc_request, "Sec-WebSocket-Protocol", "a b")).status, 400);
    EXPECT_EQ(check(replaced(k_rfc_request, "Sec-WebSocket-Protocol", "a;b")).status, 400);
    EXPECT_EQ(check(replaced(k_rfc_request, "Sec-WebSocket-Protocol", "\"chat\"")).status, 400);
    // A huge list is bounded by the caller's storage.
    std::string many;
    for (int i = 0; i < 9; ++i)
        many += "p" + std::to_string(i) + ",";
    EXPECT_EQ(check(replaced(k_rfc_request, "Sec-WebSocket-Protocol", many), {}, 9).status, 0);
    EXPECT_EQ(check(replaced(k_rfc_request, "Sec-WebSocket-Protocol", many), {}, 8).status, 400);
}

// ---- permessage-deflate negotiation (RFC 7692 §7.1) -------------------------------------------

struct ext_case {
    const char* offer;     // the Sec-WebSocket-Extensions value
    const char* response;  // "" = declined, "400" = bad request
};

void expect_negotiation(const ext_case& c, const deflate_config& cfg = {}) {
    const outcome o = check(with(k_rfc_request, "Sec-WebSocket-Extensions", c.offer), cfg);
    if (std::string_view(c.response) == "400") {
        EXPECT_EQ(o.status, 400) << c.offer;
        return;
    }
    EXPECT_EQ(o.status, 0) << c.offer;
    EXPECT_EQ(o.deflate, *c.response != '\0') << c.offer;
    EXPECT_EQ(o.extensions, c.response) << c.offer;
}

TEST(ws_negotiate, DefaultConfig) {
    const ext_case cases[] = {
        // Firefox and Chrome's offers.
        {"permessage-deflate", "permessage-deflate; server_max_window_bits=12"},
        {"permessage-deflate; client_max_window_bits",
         "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"},
        // The client's limits win when smaller; ours when the client allows more.
        {"permessage-deflate; server_max_window_bits=10",
         "permessage-deflate; server_max_window_bits=10"},
        {"permessage-deflate; server_max_window_bits=15",
         "permessage-deflate; server_max_window_bits=12"},
        {"permessage-deflate; server_max_window_bits=8",
         "permessage-deflate; server_max_window_bits=8"},
        {"permessage-deflate; client_max_window_bits=9",
         "permessage-deflate; server_max_window_bits=12; client_max_window_bits=9"},
        {"permessage-deflate; client_max_window_bits=15",
         "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"},
        // Quoted values are unquoted first (RFC 6455 §9.1).
        {"permessage-deflate; server_max_window_bits=\"10\"",
         "permessage-deflate; server_max_window_bits=10"},
        {"permessage-deflate; server_max_window_bits=\"1\\0\"",
         "permessage-deflate; server_max_window_bits=10"},
        // The no-context-takeover flags are honoured.
        {"permessage-deflate; server_no_context_takeover",
         "permessage-deflate; server_no_context_takeover; server_max_window_bits=12"},
        {"permessage-deflate; client_no_context_takeover",
         "permessage-deflate; client_no_context_takeover; server_max_window_bits=12"},
        {"permessage-deflate;client_no_context_takeover;server_no_context_takeover",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
         "server_max_window_bits=12"},
        // Names are matched without regard to case, whitespace allowed around separators.
        {"PerMessage-Deflate ; Server_Max_Window_Bits = 9",
         "permessage-deflate; server_max_window_bits=9"},
        // Declined offers (not an error): unknown, duplicate, missing or bad values.
        {"permessage-deflate; foo", ""},
        {"permessage-deflate; foo=1", ""},
        {"permessage-deflate; server_max_window_bits", ""},
        {"permessage-deflate; server_max_window_bits=7", ""},
        {"permessage-deflate; server_max_window_bits=16", ""},
        {"permessage-deflate; server_max_window_bits=08", ""},
        {"permessage-deflate; server_max_window_bits=0x9", ""},
        {"permessage-deflate; server_max_window_bits=\"\"", ""},
        {"permessage-deflate; server_max_window_bits=\"1 0\"", ""},
        {"permessage-deflate; server_max_window_bits=123456789012", ""},
        {"permessage-deflate; client_max_window_bits=1", ""},
        {"permessage-deflate; server_no_context_takeover=1", ""},
        {"permessage-deflate; client_no_context_takeover=\"\"", ""},
        {"permessage-deflate; server_no_context_takeover; server_no_context_takeover", ""},
        {"permessage-deflate; server_max_window_bits=10; server_max_window_bits=10", ""},
        {"permessage-deflate; client_max_window_bits; client_max_window_bits=10", ""},
        {"x-webkit-deflate-frame", ""},
        {"deflate-frame, x-foo; a=b", ""},
        // The first acceptable offer wins.
        {"permessage-deflate; foo, permessage-deflate; client_no_context_takeover",
         "permessage-deflate; client_no_context_takeover; server_max_window_bits=12"},
        {"x-foo, permessage-deflate; server_max_window_bits=9, permessage-deflate",
         "permessage-deflate; server_max_window_bits=9"},
        {"permessage-deflate, permessage-deflate; server_max_window_bits=9",
         "permessage-deflate; server_max_window_bits=12"},
        // Empty list elements are skipped (RFC 9110 §5.6.1).
        {", ,permessage-deflate,", "permessage-deflate; server_max_window_bits=12"},
        {"", ""},
        // Syntax errors: 400, wherever they are.
        {"permessage-deflate;", "400"},
        {"permessage-deflate; ;", "400"},
        {"permessage-deflate; =9", "400"},
        {"permessage-deflate; server_max_window_bits=", "400"},
        {"permessage-deflate; a=\"unterminated", "400"},
        {"permessage-deflate; a=\"ends in backslash\\", "400"},
        {"permessage deflate", "400"},
        {"permessage-deflate x", "400"},
        {";permessage-deflate", "400"},
        {"permessage-deflate, @", "400"},
        {"permessage-deflate; a=b=c", "400"},
        {"perm\xc3\xa9ssage-deflate", "400"},
        {"permessage-deflate; a=\"\x01\"", "400"},
    };
    for (const ext_case& c : cases)
        expect_negotiation(c);
}

TEST(ws_negotiate, QuotedCommasDoNotSplitOffers) {
    expect_negotiation({"x-foo; a=\"1,2\", permessage-deflate; server_max_window_bits=11",
                        "permessage-deflate; server_max_window_bits=11"});
}

TEST(ws_negotiate, SeveralHeaderLines) {
    headers h = with(k_rfc_request, "Sec-WebSocket-Extensions", "x-foo");
    h = with(h, "Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=13");
    EXPECT_EQ(check(h).extensions, "permessage-deflate; server_max_window_bits=12");
    // A syntax error on a later line, after an accepted offer, is still an error.
    h = with(h, "Sec-WebSocket-Extensions", "bad value");
    EXPECT_EQ(check(h).status, 400);
}

TEST(ws_negotiate, ServerConfig) {
    deflate_config off;
    off.enabled = false;
    expect_negotiation({"permessage-deflate", ""}, off);
    expect_negotiation({"bad value", ""}, off);  // not even looked at

    deflate_config full;
    full.server_max_window_bits = 15;
    full.client_max_window_bits = 15;
    expect_negotiation({"permessage-deflate", "permessage-deflate"}, full);
    expect_negotiation({"permessage-deflate; client_max_window_bits",
                        "permessage-deflate; client_max_window_bits=15"},
                       full);
    expect_negotiation({"permessage-deflate; server_max_window_bits=15",
                        "permessage-deflate; server_max_window_bits=15"},
                       full);

    deflate_config frugal;
    frugal.server_no_context_takeover = true;
    frugal.client_no_context_takeover = true;
    frugal.server_max_window_bits = 9;
    frugal.client_max_window_bits = 8;
    expect_negotiation({"permessage-deflate; client_max_window_bits",
                        "permessage-deflate; server_no_context_takeover; "
                        "client_no_context_takeover; server_max_window_bits=9; "
                        "client_max_window_bits=8"},
                       frugal);
}

TEST(ws_negotiate, ParamsMatchTheResponse) {
    request req(with(k_rfc_request, "Sec-WebSocket-Extensions",
                     "permessage-deflate; client_max_window_bits=10; server_max_window_bits=8; "
                     "client_no_context_takeover"));
    const deflate_negotiation n = negotiate_deflate(req.fields, {});
    ASSERT_TRUE(n.accepted);
    EXPECT_FALSE(n.params.server_no_context_takeover);
    EXPECT_TRUE(n.params.client_no_context_takeover);
    EXPECT_EQ(n.params.server_max_window_bits, 8);
    EXPECT_EQ(n.params.client_max_window_bits, 10);
    // Without client_max_window_bits in the offer, the client may use 15.
    request plain(with(k_rfc_request, "Sec-WebSocket-Extensions", "permessage-deflate"));
    EXPECT_EQ(negotiate_deflate(plain.fields, {}).params.client_max_window_bits, 15);
}

TEST(ws_negotiate, LongestResponseFits) {
    deflate_config cfg;
    cfg.server_no_context_takeover = true;
    cfg.client_no_context_takeover = true;
    request req(with(k_rfc_request, "Sec-WebSocket-Extensions",
                     "permessage-deflate; client_max_window_bits=10; server_max_window_bits=11"));
    const deflate_negotiation n = negotiate_deflate(req.fields, cfg);
    EXPECT_EQ(n.response.view(),
              "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
              "server_max_window_bits=11; client_max_window_bits=10");
    EXPECT_LT(n.response.size, n.response.bytes.size());
}

}  // namespace
}  // namespace coachwhip::ws::test
