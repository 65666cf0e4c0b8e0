// coachwhip::ws opening handshake. The contract is in handshake.hpp; this file says why.
//
// Every list header is walked in place, element by element; nothing is copied except a quoted
// extension parameter value, unescaped into a few bytes on the stack. Negotiation reads the
// whole Sec-WebSocket-Extensions header even after an offer was accepted, so a syntax error
// anywhere gives 400 whatever comes before it.
#include "ws/handshake.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>

namespace coachwhip::ws {
namespace {

constexpr core::error bad_request(std::string_view reason) { return core::error{400, reason}; }

bool is_ows(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_ows(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_ows(s.back()))
        s.remove_suffix(1);
    return s;
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(),
                                              [](char x, char y) { return lower(x) == lower(y); });
}

// RFC 9110 §5.6.2 tchar.
bool is_tchar(char ch) {
    const auto c = static_cast<unsigned char>(ch);
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return c != 0 && std::string_view("!#$%&'*+-.^_`|~").find(ch) != std::string_view::npos;
}

bool is_token(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

// Calls fn(element) for each non-empty, OWS-trimmed element of a comma list without quoted
// strings (Upgrade, Connection, Sec-WebSocket-Protocol); stops early when fn returns false.
template <class Fn>
bool for_each_element(std::string_view value, Fn fn) {
    for (;;) {
        const size_t comma = value.find(',');
        const std::string_view element = trim(value.substr(0, comma));
        if (!element.empty() && !fn(element)) return false;
        if (comma == std::string_view::npos) return true;
        value.remove_prefix(comma + 1);
    }
}

// ---- base64 (RFC 4648 §4) ---------------------------------------------------------------------

constexpr std::string_view k_alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_value(char c) {
    const size_t at = k_alphabet.find(c);
    return at == std::string_view::npos ? -1 : static_cast<int>(at);
}

// 20 bytes (a SHA-1 digest) -> 28 characters, the last one '='.
std::array<char, 28> base64_20(const unsigned char* in) {
    std::array<char, 28> out{};
    size_t o = 0;
    for (size_t i = 0; i < 18; i += 3) {
        const uint32_t v = uint32_t{in[i]} << 16 | uint32_t{in[i + 1]} << 8 | in[i + 2];
        for (int s = 18; s >= 0; s -= 6)
            out[o++] = k_alphabet[(v >> s) & 63];
    }
    const uint32_t v = uint32_t{in[18]} << 16 | uint32_t{in[19]} << 8;
    out[o++] = k_alphabet[(v >> 18) & 63];
    out[o++] = k_alphabet[(v >> 12) & 63];
    out[o++] = k_alphabet[(v >> 6) & 63];
    out[o] = '=';
    return out;
}

// ---- Sec-WebSocket-Extensions (RFC 6455 §9.1, RFC 7692 §7) ------------------------------------

// A cursor over one header line of the extension grammar:
//   extension-list = 1#extension          extension = token *( ";" extension-param )
//   extension-param = token [ "=" (token / quoted-string) ]
// with OWS allowed around the separators.
struct ext_cursor {
    std::string_view s;
    size_t i = 0;

    bool at_end() const { return i == s.size(); }
    char peek() const { return s[i]; }
    void skip_ows() {
        while (i < s.size() && is_ows(s[i]))
            ++i;
    }
    std::string_view token() {
        const size_t start = i;
        while (i < s.size() && is_tchar(s[i]))
            ++i;
        return s.substr(start, i - start);
    }
};

// A parameter value, unquoted into `buf` when quoted. Values longer than the buffer cannot be
// a window size; they are marked so instead of kept.
struct param_value {
    bool present = false;
    bool too_long = false;
    char buf[8] = {};
    size_t size = 0;
    std::string_view view() const { return {buf, size}; }
    void push(char c) {
        if (size < sizeof buf) {
            buf[size++] = c;
        } else {
            too_long = true;
        }
    }
};

// quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE (RFC 9110 §5.6.4).
bool parse_quoted(ext_cursor& c, param_value& v) {
    ++c.i;  // the opening quote
    while (!c.at_end()) {
        const auto b = static_cast<unsigned char>(c.peek());
        ++c.i;
        if (b == '"') return true;
        if (b == '\\') {
            if (c.at_end()) return false;
            const auto q = static_cast<unsigned char>(c.peek());
            if (q < 0x20 && q != '\t') return false;
            if (q == 0x7F) return false;
            v.push(static_cast<char>(q));
            ++c.i;
            continue;
        }
        if ((b < 0x20 && b != '\t') || b == 0x7F) return false;
        v.push(static_cast<char>(b));
    }
    return false;  // no closing quote
}

// One offer of permessage-deflate, as far as parameters go.
struct offer {
    bool acceptable = true;
    bool server_no_context_takeover = false;
    bool client_no_context_takeover = false;
    int server_max_window_bits = 0;  // 0: absent
    int client_max_window_bits = 0;  // 0: absent; -1: present without a value
    unsigned seen = 0;               // bit per known parameter, for duplicates
};

// RFC 7692 §7.1.2.1: "a decimal integer value without leading zeroes between 8 and 15".
int window_bits(const param_value& v) {
    if (!v.present || v.too_long) return 0;
    const std::string_view s = v.view();
    if (s.empty() || s.size() > 2 || s[0] < '1' || s[0] > '9') return 0;
    if (s.size() == 2 && (s[1] < '0' || s[1] > '9')) return 0;
    const int n = s.size() == 1 ? s[0] - '0' : (s[0] - '0') * 10 + (s[1] - '0');
    return n >= 8 && n <= 15 ? n : 0;
}

void take_param(offer& o, std::string_view name, const param_value& v) {
    constexpr std::string_view k_names[] = {"server_no_context_takeover",
                                            "client_no_context_takeover", "server_max_window_bits",
                                            "client_max_window_bits"};
    const auto* it = std::find_if(std::begin(k_names), std::end(k_names),
                                  [&](std::string_view n) { return iequals(n, name); });
    if (it == std::end(k_names)) {
        o.acceptable = false;  // §7.1: an unknown parameter makes the offer unacceptable
        return;
    }
    const auto index = static_cast<unsigned>(it - std::begin(k_names));
    if ((o.seen & (1u << index)) != 0) o.acceptable = false;  // §7.1: no duplicates
    o.seen |= 1u << index;
    switch (index) {
        case 0:
            o.server_no_context_takeover = true;
            if (v.present) o.acceptable = false;  // §7.1.1.1: this parameter has no value
            break;
        case 1:
            o.client_no_context_takeover = true;
            if (v.present) o.acceptable = false;  // §7.1.1.2: this parameter has no value
            break;
        case 2:
            o.server_max_window_bits = window_bits(v);  // §7.1.2.1: a value is required
            if (o.server_max_window_bits == 0) o.acceptable = false;
            break;
        default:
            o.client_max_window_bits = v.present ? window_bits(v) : -1;  // §7.1.2.2: optional
            if (o.client_max_window_bits == 0) o.acceptable = false;
            break;
    }
}

void append(inline_text& t, std::string_view s) {
    const size_t n = std::min(s.size(), t.bytes.size() - t.size);
    std::copy_n(s.data(), n, t.bytes.begin() + t.size);
    t.size += n;
}

void append_bits(inline_text& t, std::string_view name, int bits) {
    append(t, "; ");
    append(t, name);
    append(t, "=");
    const char digits[2] = {static_cast<char>('0' + bits / 10), static_cast<char>('0' + bits % 10)};
    append(t, bits >= 10 ? std::string_view(digits, 2) : std::string_view(digits + 1, 1));
}

// The response to an acceptable offer (RFC 7692 §7.1): what the server will do and what it asks.
void accept_offer(const offer& o, const deflate_config& cfg, deflate_negotiation& n) {
    deflate_params& p = n.params;
    p.server_no_context_takeover = o.server_no_context_takeover || cfg.server_no_context_takeover;
    p.client_no_context_takeover = o.client_no_context_takeover || cfg.client_no_context_takeover;
    const int server_cap = std::clamp<int>(cfg.server_max_window_bits, 8, 15);
    const int server_bits =
        o.server_max_window_bits != 0 ? std::min(o.server_max_window_bits, server_cap) : server_cap;
    p.server_max_window_bits = static_cast<uint8_t>(server_bits);
    // §7.1.2.2: only when offered may the response limit the client's window; the offered value
    // is an upper bound for ours.
    const int client_cap = std::clamp<int>(cfg.client_max_window_bits, 8, 15);
    const int offered = o.client_max_window_bits > 0 ? o.client_max_window_bits : 15;
    p.client_max_window_bits =
        static_cast<uint8_t>(o.client_max_window_bits != 0 ? std::min(offered, client_cap) : 15);
    n.accepted = true;
    append(n.response, "permessage-deflate");
    if (p.server_no_context_takeover) append(n.response, "; server_no_context_takeover");
    if (p.client_no_context_takeover) append(n.response, "; client_no_context_takeover");
    // §7.1.2.1: an offered server_max_window_bits must be answered; otherwise only a window
    // smaller than the default needs saying.
    if (o.server_max_window_bits != 0 || server_bits < 15)
        append_bits(n.response, "server_max_window_bits", server_bits);
    if (o.client_max_window_bits != 0)
        append_bits(n.response, "client_max_window_bits", p.client_max_window_bits);
}

// One extension-param after its ';'. Returns false on a syntax error.
bool parse_param(ext_cursor& c, offer& o) {
    c.skip_ows();
    const std::string_view name = c.token();
    if (name.empty()) return false;
    c.skip_ows();
    param_value v;
    if (!c.at_end() && c.peek() == '=') {
        ++c.i;
        c.skip_ows();
        v.present = true;
        if (!c.at_end() && c.peek() == '"') {
            if (!parse_quoted(c, v)) return false;
            // RFC 6455 §9.1: the unescaped value must be a token too. An empty or non-token
            // value is not a syntax error of the header, only an unusable value.
            if (v.size == 0 || !is_token(v.view())) v.too_long = true;
        } else {
            const std::string_view t = c.token();
            if (t.empty()) return false;
            for (char ch : t)
                v.push(ch);
        }
    }
    take_param(o, name, v);
    return true;
}

// One header line. Returns false on a syntax error.
bool parse_extension_line(std::string_view line, const deflate_config& cfg,
                          deflate_negotiation& n) {
    ext_cursor c{line};
    for (;;) {
        c.skip_ows();
        if (c.at_end()) return true;
        if (c.peek() == ',') {  // an empty list element (RFC 9110 §5.6.1)
            ++c.i;
            continue;
        }
        const std::string_view name = c.token();
        if (name.empty()) return false;
        offer o;
        for (;;) {
            c.skip_ows();
            if (c.at_end() || c.peek() == ',') break;
            if (c.peek() != ';') return false;
            ++c.i;
            if (!parse_param(c, o)) return false;
        }
        if (!n.accepted && o.acceptable && iequals(name, "permessage-deflate"))
            accept_offer(o, cfg, n);
    }
}

}  // namespace

// ---- public -----------------------------------------------------------------------------------

bool list_has_token(std::string_view value, std::string_view token) noexcept {
    return !for_each_element(value, [&](std::string_view e) { return !iequals(e, token); });
}

bool is_websocket_upgrade(std::span<const http::field> headers) noexcept {
    return std::any_of(headers.begin(), headers.end(), [](const http::field& f) {
        return iequals(f.name, "upgrade") && list_has_token(f.value, "websocket");
    });
}

bool is_valid_key(std::string_view key) noexcept {
    // 16 bytes = 5 groups of 3 + 1 byte: 22 characters of data, then "==" (RFC 4648 §4).
    if (key.size() != 24 || key[22] != '=' || key[23] != '=') return false;
    return std::all_of(key.begin(), key.begin() + 22, [](char c) { return base64_value(c) >= 0; });
}

std::array<char, 28> compute_accept(std::string_view key) noexcept {
    constexpr std::string_view k_guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";  // §1.3
    // Streamed through a digest context, so a key of any length works (the function is total;
    // check_upgrade only calls it with valid 24-byte keys).
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    const bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_sha1(), nullptr) == 1 &&
                    EVP_DigestUpdate(ctx, key.data(), key.size()) == 1 &&
                    EVP_DigestUpdate(ctx, k_guid.data(), k_guid.size()) == 1 &&
                    EVP_DigestFinal_ex(ctx, digest, &len) == 1 && len == 20;
    EVP_MD_CTX_free(ctx);
    // Only when OpenSSL cannot allocate: a wrong accept, which the client rejects.
    if (!ok) std::memset(digest, 0, 20);
    return base64_20(digest);
}

core::error parse_subprotocols(std::span<const http::field> headers,
                               std::span<std::string_view> storage, size_t& count) noexcept {
    count = 0;
    core::error err;
    for (const http::field& f : headers) {
        if (!iequals(f.name, "sec-websocket-protocol")) continue;
        for_each_element(f.value, [&](std::string_view e) {
            if (!is_token(e)) {
                err = bad_request("Sec-WebSocket-Protocol element is not a token (RFC 6455 §4.1)");
                return false;
            }
            if (count == storage.size()) {
                err = bad_request("too many Sec-WebSocket-Protocol values");
                return false;
            }
            storage[count++] = e;
            return true;
        });
        if (err) return err;
    }
    return err;
}

deflate_negotiation negotiate_deflate(std::span<const http::field> headers,
                                      const deflate_config& cfg) noexcept {
    deflate_negotiation n;
    if (!cfg.enabled) return n;
    for (const http::field& f : headers) {
        if (!iequals(f.name, "sec-websocket-extensions")) continue;
        if (!parse_extension_line(f.value, cfg, n)) {
            deflate_negotiation bad;
            bad.error = bad_request("malformed Sec-WebSocket-Extensions (RFC 6455 §9.1)");
            return bad;
        }
    }
    return n;
}

upgrade_result check_upgrade(const upgrade_request& req, const deflate_config& cfg,
                             std::span<std::string_view> subprotocol_storage) noexcept {
    upgrade_result r;
    const auto fail = [&](uint16_t status, std::string_view reason) {
        r.error = core::error{status, reason};
        return r;
    };
    // §4.2.1 items 1-4: "An HTTP/1.1 or higher GET request"; HTTP/2 goes through RFC 8441.
    if (req.method != "GET") return fail(400, "WebSocket handshake must be a GET (RFC 6455 §4.1)");
    if (req.http_version != "1.1")
        return fail(400, "WebSocket handshake must be HTTP/1.1 (RFC 6455 §4.1)");
    const std::span<const http::field> h = req.headers;
    if (!is_websocket_upgrade(h))
        return fail(400, "Upgrade header without \"websocket\" (RFC 6455 §4.2.1)");
    const bool connection_upgrade = std::any_of(h.begin(), h.end(), [](const http::field& f) {
        return iequals(f.name, "connection") && list_has_token(f.value, "upgrade");
    });
    if (!connection_upgrade)
        return fail(400, "Connection header without \"upgrade\" (RFC 6455 §4.2.1)");
    const http::field* version = nullptr;
    const http::field* key = nullptr;
    for (const http::field& f : h) {
        const bool is_version = iequals(f.name, "sec-websocket-version");
        const bool is_key = !is_version && iequals(f.name, "sec-websocket-key");
        if ((is_version && version) || (is_key && key))
            return fail(400, "Sec-WebSocket-Key or -Version repeated (RFC 6455 §4.1)");
        if (is_version) version = &f;
        if (is_key) key = &f;
    }
    if (!version) return fail(400, "Sec-WebSocket-Version missing (RFC 6455 §4.2.1)");
    if (trim(version->value) != k_websocket_version)
        return fail(426,
                    "unsupported Sec-WebSocket-Version; this server speaks 13 (RFC 6455 §4.4)");
    if (!key) return fail(400, "Sec-WebSocket-Key missing (RFC 6455 §4.2.1)");
    const std::string_view key_value = trim(key->value);
    if (!is_valid_key(key_value))
        return fail(400, "Sec-WebSocket-Key is not base64 of 16 bytes (RFC 6455 §4.1)");
    size_t count = 0;
    if (const core::error e = parse_subprotocols(h, subprotocol_storage, count)) {
        r.error = e;
        return r;
    }
    r.subprotocols = subprotocol_storage.first(count);
    r.deflate = negotiate_deflate(h, cfg);
    if (r.deflate.error) {
        r.error = r.deflate.error;
        return r;
    }
    r.accept_bytes = compute_accept(key_value);
    return r;
}

}  // namespace coachwhip::ws
