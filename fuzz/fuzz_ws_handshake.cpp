// fuzz_ws_handshake — libFuzzer target for ws::check_upgrade and its parts (negotiate_deflate,
// parse_subprotocols, is_valid_key, compute_accept, list_has_token).
//
// Input layout: two control bytes, then the request.
//   byte 0: deflate_config: bit 0 enabled (inverted: 0 = on), bit 1 server_no_context_takeover,
//           bit 2 client_no_context_takeover, bits 3-5 server_max_window_bits - 8,
//   byte 1: bits 0-2 client_max_window_bits - 8, bits 3-7 subprotocol storage size (0..31)
//   payload: lines split at '\n'. The first line is "METHOD VERSION" (split at the first space);
//            each other line is a header "name:value" (split at the first ':', nothing trimmed).
// Checks:
// - an accepted request really is one: method GET, version 1.1, one Sec-WebSocket-Key that is
//   valid base64 of 16 bytes, one Sec-WebSocket-Version that trims to "13", a websocket Upgrade
//   token and an upgrade Connection token; Sec-WebSocket-Accept is 28 base64 characters and
//   equals compute_accept() of the trimmed key; every subprotocol is a token lying inside some
//   header value, at most the storage size of them.
// - negotiated parameters are within 8..15 and the config's caps; the response value, offered
//   back as a client would, is accepted with exactly the same parameters and the same text
//   (the server never answers something it would not itself accept).
// - list semantics: cutting every list header at its top-level commas into one line per
//   element, and joining each list header's lines with ", ", change nothing; neither does
//   upper-casing every header name.
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "ws/handshake.hpp"

using namespace coachwhip::ws;
using coachwhip::http::field;

namespace {

using line_list = std::vector<std::pair<std::string, std::string>>;

struct snapshot {
    uint16_t status = 0;
    std::string accept;
    std::vector<std::string> protocols;
    bool deflate = false;
    std::string extensions;
    deflate_params params;

    bool operator==(const snapshot& o) const {
        return status == o.status && accept == o.accept && protocols == o.protocols &&
               deflate == o.deflate && extensions == o.extensions &&
               params.server_no_context_takeover == o.params.server_no_context_takeover &&
               params.client_no_context_takeover == o.params.client_no_context_takeover &&
               params.server_max_window_bits == o.params.server_max_window_bits &&
               params.client_max_window_bits == o.params.client_max_window_bits;
    }
};

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

bool is_tchar(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           (c != 0 && std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos);
}

bool inside(std::string_view part, std::string_view whole) {
    return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

// Exact-size heap copies of the header lines, and the fields viewing them.
struct request {
    std::vector<std::unique_ptr<char[]>> storage;
    std::vector<field> fields;
    explicit request(const line_list& lines) {
        for (const auto& [n, v] : lines)
            fields.push_back({copy(n), copy(v)});
    }
    std::string_view copy(const std::string& s) {
        storage.emplace_back(new char[std::max<size_t>(s.size(), 1)]);
        if (!s.empty()) std::memcpy(storage.back().get(), s.data(), s.size());
        return {storage.back().get(), s.size()};
    }
};

size_t count_named(const std::vector<field>& fields, std::string_view name) {
    return static_cast<size_t>(std::count_if(
        fields.begin(), fields.end(), [&](const field& f) { return iequals(f.name, name); }));
}

void check_accepted(const upgrade_result& r, const request& req, std::string_view method,
                    std::string_view version, size_t storage) {
    FUZZ_CHECK(method == "GET" && version == "1.1");
    FUZZ_CHECK(count_named(req.fields, "sec-websocket-key") == 1);
    FUZZ_CHECK(count_named(req.fields, "sec-websocket-version") == 1);
    FUZZ_CHECK(is_websocket_upgrade(req.fields));
    bool connection = false;
    std::string_view key;
    for (const field& f : req.fields) {
        if (iequals(f.name, "connection") && list_has_token(f.value, "upgrade")) connection = true;
        if (iequals(f.name, "sec-websocket-key")) key = trim(f.value);
        if (iequals(f.name, "sec-websocket-version")) FUZZ_CHECK(trim(f.value) == "13");
    }
    FUZZ_CHECK(connection && is_valid_key(key) && key.size() == 24);
    const auto expect = compute_accept(key);
    FUZZ_CHECK(r.accept() == std::string_view(expect.data(), expect.size()));
    FUZZ_CHECK(r.accept().back() == '=');
    for (char c : r.accept().substr(0, 27))
        FUZZ_CHECK(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/');
    FUZZ_CHECK(r.subprotocols.size() <= storage);
    for (std::string_view p : r.subprotocols) {
        FUZZ_CHECK(!p.empty() && std::all_of(p.begin(), p.end(), is_tchar));
        FUZZ_CHECK(std::any_of(req.fields.begin(), req.fields.end(), [&](const field& f) {
            return iequals(f.name, "sec-websocket-protocol") && inside(p, f.value);
        }));
    }
}

void check_deflate(const deflate_negotiation& n, const deflate_config& cfg) {
    if (!n.accepted) {
        FUZZ_CHECK(n.response.size == 0);
        return;
    }
    FUZZ_CHECK(cfg.enabled);
    const deflate_params& p = n.params;
    FUZZ_CHECK(p.server_max_window_bits >= 8 && p.server_max_window_bits <= 15);
    FUZZ_CHECK(p.client_max_window_bits >= 8 && p.client_max_window_bits <= 15);
    FUZZ_CHECK(p.server_max_window_bits <= std::clamp<int>(cfg.server_max_window_bits, 8, 15));
    if (cfg.server_no_context_takeover) FUZZ_CHECK(p.server_no_context_takeover);
    if (cfg.client_no_context_takeover) FUZZ_CHECK(p.client_no_context_takeover);
    const std::string_view text = n.response.view();
    FUZZ_CHECK(text.starts_with("permessage-deflate"));
    FUZZ_CHECK(text.size() < n.response.bytes.size());
    const bool says_client_bits = text.find("client_max_window_bits") != std::string_view::npos;
    if (!says_client_bits) FUZZ_CHECK(p.client_max_window_bits == 15);
    // The response, offered back, is accepted as is.
    const field back[] = {{"Sec-WebSocket-Extensions", text}};
    const deflate_negotiation again = negotiate_deflate(back, cfg);
    FUZZ_CHECK(!again.error && again.accepted);
    FUZZ_CHECK(again.response.view() == text);
    FUZZ_CHECK(again.params.server_no_context_takeover == p.server_no_context_takeover);
    FUZZ_CHECK(again.params.client_no_context_takeover == p.client_no_context_takeover);
    FUZZ_CHECK(again.params.server_max_window_bits == p.server_max_window_bits);
    FUZZ_CHECK(again.params.client_max_window_bits == p.client_max_window_bits);
}

snapshot run(std::string_view method, std::string_view version, const line_list& lines,
             const deflate_config& cfg, size_t storage_size) {
    request req(lines);
    std::vector<std::string_view> storage(storage_size);
    const upgrade_request in{method, version, req.fields};
    const upgrade_result r = check_upgrade(in, cfg, storage);
    snapshot s;
    s.status = r.error.status;
    FUZZ_CHECK(s.status == 0 || s.status == 400 || s.status == 426);
    if (r.error) {
        FUZZ_CHECK(!r.error.reason.empty());
        return s;
    }
    check_accepted(r, req, method, version, storage_size);
    check_deflate(r.deflate, cfg);
    s.accept = std::string(r.accept());
    for (std::string_view p : r.subprotocols)
        s.protocols.emplace_back(p);
    s.deflate = r.deflate.accepted;
    s.extensions = std::string(r.deflate.response.view());
    s.params = r.deflate.params;
    // The parts agree with the whole.
    size_t count = 0;
    FUZZ_CHECK(!parse_subprotocols(req.fields, storage, count) && count == s.protocols.size());
    const deflate_negotiation n = negotiate_deflate(req.fields, cfg);
    FUZZ_CHECK(!n.error && n.accepted == s.deflate && n.response.view() == s.extensions);
    return s;
}

bool is_list(std::string_view name) {
    return iequals(name, "sec-websocket-extensions") || iequals(name, "sec-websocket-protocol") ||
           iequals(name, "upgrade") || iequals(name, "connection");
}

// Top-level commas only: a comma inside a quoted string (with its backslash escapes) stays.
line_list cut_lists(const line_list& lines) {
    line_list out;
    for (const auto& [name, value] : lines) {
        if (!is_list(name)) {
            out.emplace_back(name, value);
            continue;
        }
        size_t start = 0;
        bool quoted = false;
        for (size_t i = 0; i <= value.size(); ++i) {
            // A backslash escapes the next byte, if there is one (a last one stays, unclosed).
            if (i + 1 < value.size() && quoted && value[i] == '\\') {
                ++i;
                continue;
            }
            if (i < value.size() && value[i] == '"') quoted = !quoted;
            if (i == value.size() || (value[i] == ',' && !quoted)) {
                out.emplace_back(name, value.substr(start, i - start));
                start = i + 1;
            }
        }
    }
    return out;
}

line_list join_lists(const line_list& lines) {
    line_list out;
    for (const auto& line : lines) {
        const auto& [name, value] = line;
        auto it = std::find_if(out.begin(), out.end(), [&](const auto& f) {
            return is_list(line.first) && iequals(f.first, line.first);
        });
        if (it != out.end()) {
            it->second += ", " + value;
        } else {
            out.emplace_back(name, value);
        }
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    deflate_config cfg;
    cfg.enabled = (data[0] & 1) == 0;
    cfg.server_no_context_takeover = (data[0] & 2) != 0;
    cfg.client_no_context_takeover = (data[0] & 4) != 0;
    cfg.server_max_window_bits = static_cast<uint8_t>(8 + ((data[0] >> 3) & 7));
    cfg.client_max_window_bits = static_cast<uint8_t>(8 + (data[1] & 7));
    const size_t storage = data[1] >> 3;
    const std::string_view text(reinterpret_cast<const char*>(data) + 2, size - 2);
    std::vector<std::string_view> raw;
    for (size_t start = 0;;) {
        const size_t nl = text.find('\n', start);
        raw.push_back(text.substr(start, nl == std::string_view::npos ? nl : nl - start));
        if (nl == std::string_view::npos) break;
        start = nl + 1;
    }
    const std::string_view first = raw[0];
    const size_t sp = first.find(' ');
    const std::string method(first.substr(0, sp));
    const std::string version(sp == std::string_view::npos ? "" : first.substr(sp + 1));
    line_list lines;
    for (size_t i = 1; i < raw.size(); ++i) {
        const size_t colon = raw[i].find(':');
        if (colon == std::string_view::npos) continue;
        lines.emplace_back(raw[i].substr(0, colon), raw[i].substr(colon + 1));
    }
    const snapshot s = run(method, version, lines, cfg, storage);
    // List lines are one list: cutting at top-level commas or joining lines changes nothing.
    // Joining is only checked on a request that was not refused: a line ending inside a quoted
    // string is an error alone, but joined to the next line its quote may close.
    FUZZ_CHECK(run(method, version, cut_lists(lines), cfg, storage) == s);
    if (s.status != 400) FUZZ_CHECK(run(method, version, join_lists(lines), cfg, storage) == s);
    line_list upper = lines;
    for (auto& [name, value] : upper)
        for (char& c : name)
            c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    FUZZ_CHECK(run(method, version, upper, cfg, storage) == s);
    return 0;
}
