// coachwhip::proxy client address from proxy headers. The contract (and every decision) is in
// forwarded.hpp; this file says how.
//
// Shape: each header kind is cut into list elements in one forward pass (Forwarded needs a
// forward pass: a quoted-string may hold ',' and '\"', which cannot be read from the right).
// Only the rightmost k_max_forwarded_elements elements are kept, in a ring on the stack, plus the
// leftmost for the trust-everyone case; the walk then reads elements right to left and stops at
// the client, so nothing left of the client is ever parsed.
#include "proxy/forwarded.hpp"

#include <algorithm>

namespace coachwhip::proxy {

// ---- trusted networks -----------------------------------------------------------------------

namespace {

constexpr bool is_ascii_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string_view trim(std::string_view s, bool (*space)(char)) {
    while (!s.empty() && space(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && space(s.back()))
        s.remove_suffix(1);
    return s;
}

bool all_digits(std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A decimal number without sign or leading zeros, at most `max`; -1 otherwise.
int parse_small_decimal(std::string_view s, int max) {
    if (!all_digits(s) || s.size() > 3 || (s.size() > 1 && s[0] == '0')) return -1;
    int v = 0;
    for (char c : s)
        v = v * 10 + (c - '0');
    return v <= max ? v : -1;
}

bool prefix_matches(const ip_address& a, const ip_address& base, unsigned prefix) {
    const unsigned full = prefix / 8, bits = prefix % 8;
    for (unsigned i = 0; i < full; ++i)
        if (a.bytes[i] != base.bytes[i]) return false;
    if (bits == 0) return true;
    const auto mask = static_cast<uint8_t>(0xff << (8 - bits));
    return (a.bytes[full] & mask) == base.bytes[full];
}

bool host_bits_zero(const ip_address& a, unsigned prefix) {
    const unsigned width = a.v6 ? 128 : 32;
    for (unsigned bit = prefix; bit < width; ++bit)
        if (a.bytes[bit / 8] & (0x80 >> (bit % 8))) return false;
    return true;
}

}  // namespace

// Parses one element of the list into `out`; returns the error message, empty when fine.
struct trusted_parser {
    trusted_networks& out;
    std::string_view option;

    std::string bad(std::string_view element, std::string_view why) const {
        std::string m(option);
        m += ": '";
        m += element;
        m += "' ";
        m += why;
        return m;
    }

    std::string cidr(std::string_view e) const {
        const size_t slash = e.find('/');
        ip_address base;
        if (!parse_ip(e.substr(0, slash), base)) return bad(e, "is not an IP address or CIDR");
        const int prefix = parse_small_decimal(e.substr(slash + 1), base.v6 ? 128 : 32);
        if (prefix < 0) return bad(e, "is not an IP address or CIDR");
        if (!host_bits_zero(base, static_cast<unsigned>(prefix)))
            return bad(e, "has host bits set (the address must be the network's first)");
        out.networks_.push_back({base, static_cast<uint8_t>(prefix)});
        return {};
    }

    std::string element(std::string_view e) const {
        if (e.empty()) return {};
        if (e == "*") {
            out.everyone_ = true;
            return {};
        }
        if (e.find('/') != std::string_view::npos) return cidr(e);
        ip_address addr;
        if (parse_ip(e, addr)) {
            out.networks_.push_back({addr, static_cast<uint8_t>(addr.v6 ? 128 : 32)});
            return {};
        }
        const bool dotted = std::all_of(e.begin(), e.end(),
                                        [](char c) { return c == '.' || (c >= '0' && c <= '9'); });
        if (dotted || (e.find(':') != std::string_view::npos && e != k_unix_literal))
            return bad(e, "is not an IP address or CIDR");
        if (e == k_unix_literal) out.has_unix_ = true;
        out.literals_.emplace_back(e);
        return {};
    }
};

trusted_networks_result parse_trusted_networks(std::string_view spec, std::string_view option) {
    trusted_networks_result r;
    trusted_parser p{r.networks, option};
    for (;;) {
        const size_t comma = spec.find(',');
        std::string err = p.element(trim(spec.substr(0, comma), is_ascii_space));
        if (!err.empty()) {
            r.networks = trusted_networks{};
            r.error = std::move(err);
            return r;
        }
        if (comma == std::string_view::npos) break;
        spec.remove_prefix(comma + 1);
    }
    return r;
}

bool trusted_networks::match_networks(const ip_address& addr) const noexcept {
    for (const network& n : networks_)
        if (n.base.v6 == addr.v6 && prefix_matches(addr, n.base, n.prefix)) return true;
    return false;
}

bool trusted_networks::contains(const ip_address& addr) const noexcept {
    if (everyone_) return true;
    if (match_networks(addr)) return true;
    // A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d; let it match IPv4 entries.
    return addr.is_v4_mapped() && match_networks(addr.unmapped());
}

bool trusted_networks::contains(std::string_view host) const noexcept {
    if (everyone_) return true;
    ip_address addr;
    if (parse_ip(host, addr)) return contains(addr);  // an address is never a literal (uvicorn)
    return std::find(literals_.begin(), literals_.end(), host) != literals_.end();
}

// ---- list elements --------------------------------------------------------------------------

namespace {

constexpr bool is_ows(char c) { return c == ' ' || c == '\t'; }  // RFC 9110 §5.6.3

// The rightmost k_max_forwarded_elements non-empty elements of a list, plus the leftmost.
class element_ring {
  public:
    void add(std::string_view e) {
        e = trim(e, [](char c) { return is_ows(c); });
        if (e.empty()) return;  // RFC 9110 §5.6.1: empty list elements are ignored
        if (count_ == 0) first_ = e;
        ring_[count_ % k_max_forwarded_elements] = e;
        ++count_;
    }
    size_t count() const { return count_; }
    // Element `i` counted from the right (0 = rightmost); i < kept() or i == count() - 1.
    std::string_view from_right(size_t i) const {
        if (i == count_ - 1) return first_;
        return ring_[(count_ - 1 - i) % k_max_forwarded_elements];
    }
    size_t kept() const { return std::min(count_, k_max_forwarded_elements); }

  private:
    std::string_view ring_[k_max_forwarded_elements];
    std::string_view first_;
    size_t count_ = 0;
};

// X-Forwarded-For and X-Forwarded-Proto: no quoting, ',' always separates.
void split_plain(std::span<const std::string_view> lines, element_ring& out) {
    for (std::string_view line : lines) {
        for (;;) {
            const size_t comma = line.find(',');
            out.add(line.substr(0, comma));
            if (comma == std::string_view::npos) break;
            line.remove_prefix(comma + 1);
        }
    }
}

// Forwarded: ',' inside a quoted-string (RFC 9110 §5.6.4, with "\" quoted-pairs) does not
// separate. A quoted-string still open at the end of a line makes the rest of that line one
// element, which fails to parse if the walk reaches it.
void split_quoted(std::span<const std::string_view> lines, element_ring& out) {
    for (std::string_view line : lines) {
        size_t start = 0;
        bool quoted = false;
        for (size_t i = 0; i < line.size(); ++i) {
            const char c = line[i];
            if (quoted && c == '\\') {
                ++i;
            } else if (c == '"') {
                quoted = !quoted;
            } else if (c == ',' && !quoted) {
                out.add(line.substr(start, i - start));
                start = i + 1;
            }
        }
        out.add(line.substr(std::min(start, line.size())));
    }
}

// ---- nodes ----------------------------------------------------------------------------------

enum class node_kind : uint8_t { address, unknown, obfuscated, text, malformed };

struct node {
    node_kind kind = node_kind::malformed;
    ip_address addr;        // address
    uint16_t port = 0;      // address with a numeric port
    std::string_view name;  // the node without its port (for literal matching)
};

bool ieq(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}

// RFC 7239 §6.3 obfnode / obfport: "_" 1*( ALPHA / DIGIT / "." / "_" / "-" ).
bool is_obfuscated(std::string_view s) {
    if (s.size() < 2 || s[0] != '_') return false;
    return std::all_of(s.begin() + 1, s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
    });
}

// 1*5DIGIT, at most 65535 (RFC 7239 §6: port = 1*5DIGIT).
bool parse_port(std::string_view s, uint16_t& port) {
    if (!all_digits(s) || s.size() > 5) return false;
    unsigned v = 0;
    for (char c : s)
        v = v * 10 + static_cast<unsigned>(c - '0');
    if (v > 65535) return false;
    port = static_cast<uint16_t>(v);
    return true;
}

// A node's optional port: numeric, or obfuscated (then unknown: 0) when `allow_obfuscated`.
bool node_port(std::string_view s, bool allow_obfuscated, node& n) {
    if (parse_port(s, n.port)) return true;
    return allow_obfuscated && is_obfuscated(s);
}

// "[IPv6]" with an optional ":port".
node bracketed(std::string_view s, bool allow_obfuscated) {
    node n;
    const size_t close = s.find(']');
    if (close == std::string_view::npos || !parse_ipv6(s.substr(1, close - 1), n.addr)) return n;
    const std::string_view rest = s.substr(close + 1);
    if (!rest.empty() && (rest[0] != ':' || !node_port(rest.substr(1), allow_obfuscated, n)))
        return n;
    n.kind = node_kind::address;
    n.name = s.substr(0, close + 1);
    return n;
}

// An X-Forwarded-For element: IPv4, IPv6, "[IPv6]", "IPv4:port", "[IPv6]:port", "unknown";
// anything else is `text` (maybe a trusted literal, else unreadable).
node xff_node(std::string_view s) {
    node n;
    n.name = s;
    if (ieq(s, "unknown")) {
        n.kind = node_kind::unknown;
    } else if (parse_ip(s, n.addr)) {
        n.kind = node_kind::address;
    } else if (s[0] == '[') {
        n = bracketed(s, false);
        if (n.kind != node_kind::address) n = {node_kind::text, {}, 0, s};
    } else {
        const size_t colon = s.find(':');
        const bool v4_port = colon != std::string_view::npos &&
                             parse_ipv4(s.substr(0, colon), n.addr) &&
                             parse_port(s.substr(colon + 1), n.port);
        n.kind = v4_port ? node_kind::address : node_kind::text;
        if (v4_port) n.name = s.substr(0, colon);
    }
    return n;
}

// A Forwarded for= value, unquoted (RFC 7239 §6: node = nodename [ ":" node-port ]).
node forwarded_node(std::string_view s) {
    if (!s.empty() && s[0] == '[') return bracketed(s, true);
    node n;
    const size_t colon = s.find(':');
    n.name = s.substr(0, colon);
    if (colon != std::string_view::npos && !node_port(s.substr(colon + 1), true, n)) return n;
    if (ieq(n.name, "unknown")) {
        n.kind = node_kind::unknown;
    } else if (is_obfuscated(n.name)) {
        n.kind = node_kind::obfuscated;
    } else if (parse_ipv4(n.name, n.addr)) {
        n.kind = node_kind::address;
    }
    n.port = n.kind == node_kind::address ? n.port : 0;
    return n;
}

// ---- Forwarded elements (RFC 7239 §4) -------------------------------------------------------

constexpr bool is_tchar(char ch) {  // RFC 9110 §5.6.2
    const auto c = static_cast<unsigned char>(ch);
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(ch) != std::string_view::npos;
}

// qdtext and the byte after "\" (RFC 9110 §5.6.4): HTAB, SP, VCHAR, obs-text; not '"'/'\\' for
// qdtext.
constexpr bool is_qchar(char ch) {
    const auto c = static_cast<unsigned char>(ch);
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

// A value with its quotes and escapes removed, held inline.
struct value_text {
    char chars[255];
    size_t size = 0;
    std::string_view view() const { return {chars, size}; }
};

// The parameters of one element that the walk uses, as raw (possibly quoted) values.
struct element_params {
    std::string_view for_, proto, host;
};

// Reads a token or quoted-string value at s[i]; advances i. False when malformed.
bool read_value(std::string_view s, size_t& i, std::string_view& raw) {
    const size_t start = i;
    if (i < s.size() && s[i] == '"') {
        for (++i; i < s.size() && s[i] != '"'; ++i) {
            if (s[i] == '\\') ++i;
            if (i >= s.size() || !is_qchar(s[i])) return false;
        }
        if (i >= s.size()) return false;  // unterminated quoted-string
        ++i;
    } else {
        while (i < s.size() && is_tchar(s[i]))
            ++i;
        if (i == start) return false;  // RFC 7239 §4: value = token / quoted-string, never empty
    }
    raw = s.substr(start, i - start);
    return true;
}

// forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] ), with OWS tolerated around
// ';' (some proxies write "for=a; proto=https"). Each parameter at most once (§4).
bool parse_element(std::string_view s, element_params& out) {
    std::string_view by;
    size_t i = 0;
    for (;;) {
        while (i < s.size() && is_ows(s[i]))
            ++i;
        if (i == s.size()) return true;
        if (s[i] == ';') {
            ++i;
            continue;
        }
        const size_t name_start = i;
        while (i < s.size() && is_tchar(s[i]))
            ++i;
        const std::string_view name = s.substr(name_start, i - name_start);
        if (name.empty() || i == s.size() || s[i] != '=') return false;
        ++i;
        std::string_view raw;
        if (!read_value(s, i, raw)) return false;
        std::string_view* slot = ieq(name, "for")     ? &out.for_
                                 : ieq(name, "proto") ? &out.proto
                                 : ieq(name, "host")  ? &out.host
                                 : ieq(name, "by")    ? &by
                                                      : nullptr;
        if (slot != nullptr && slot->data() != nullptr) return false;  // parameter twice
        if (slot != nullptr) *slot = raw;
        while (i < s.size() && is_ows(s[i]))
            ++i;
        if (i < s.size() && s[i] != ';') return false;
    }
}

// Removes the quotes and quoted-pair escapes of a value read by read_value.
bool unquote(std::string_view raw, value_text& out) {
    out.size = 0;
    if (raw.empty() || raw[0] != '"') {
        if (raw.size() > sizeof out.chars) return false;
        std::copy(raw.begin(), raw.end(), out.chars);
        out.size = raw.size();
        return true;
    }
    for (size_t i = 1; i + 1 < raw.size(); ++i) {
        if (raw[i] == '\\') ++i;
        if (out.size == sizeof out.chars) return false;
        out.chars[out.size++] = raw[i];
    }
    return true;
}

// RFC 7239 §5.3: host= is a Host header value, uri-host [ ":" port ] (RFC 3986 §3.2.2). The
// characters are checked (reg-name, IP-literal and port characters only): it may end up in a
// URL or a log line.
bool valid_host(std::string_view h) {
    if (h.empty()) return false;
    return std::all_of(h.begin(), h.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               std::string_view("-._~%!$&'()*+,;=:[]").find(c) != std::string_view::npos;
    });
}

// uvicorn's accepted schemes, matched case-insensitively; static lowercase storage.
std::string_view known_scheme(std::string_view s) {
    for (std::string_view k : {"http", "https", "ws", "wss"})
        if (ieq(s, k)) return k;
    return {};
}

// ---- the walk -------------------------------------------------------------------------------

// Where the walk ended: the client's element (index from the right) and what it named.
struct walk_end {
    client_source client = client_source::peer;
    size_t index = 0;  // from the right, when an element was chosen
    bool chosen = false;
    node who;
    std::string_view problem;
};

bool node_trusted(const node& n, const trusted_networks& trusted) {
    if (n.kind == node_kind::address) return trusted.contains(n.addr);
    if (n.kind == node_kind::obfuscated || n.kind == node_kind::text)
        return trusted.contains(n.name);  // uvicorn's literals: exact text
    return false;                         // unknown: never a hop we can vouch for
}

// The chosen element's node decides the client: an address names it; anything else is unknown.
walk_end choose(size_t index, const node& n, std::string_view unreadable) {
    walk_end w;
    w.chosen = true;
    w.index = index;
    w.who = n;
    if (n.kind == node_kind::address) {
        w.client = client_source::header;
    } else {
        w.client = client_source::unknown;
        if (n.kind == node_kind::text || n.kind == node_kind::malformed) w.problem = unreadable;
    }
    return w;
}

// Generic right-to-left walk. `read(i, n)` parses element i from the right into a node and
// returns false when the element itself is malformed.
template <typename Read>
walk_end walk(const element_ring& list, const trusted_networks& trusted, Read read,
              std::string_view unreadable, std::string_view too_many) {
    walk_end w;
    if (list.count() == 0) return w;  // nothing named: keep the peer
    node n;
    if (trusted.everyone()) {
        const size_t left = list.count() - 1;
        if (!read(left, n)) return choose(left, node{}, unreadable);
        return choose(left, n, unreadable);
    }
    for (size_t i = 0; i < list.kept(); ++i) {
        if (!read(i, n)) return choose(i, node{}, unreadable);
        if (!node_trusted(n, trusted)) return choose(i, n, unreadable);
    }
    if (list.count() > list.kept()) {
        w.client = client_source::unknown;
        w.problem = too_many;
        return w;
    }
    return choose(list.count() - 1, n, unreadable);  // all trusted: the leftmost
}

void set_client(forwarded_result& r, const walk_end& w) {
    r.client = w.client;
    r.problem = w.problem;
    if (w.client == client_source::header) {
        r.host = format_ip(w.who.addr);
        r.port = w.who.port;
    }
}

void resolve_x_forwarded(const forwarded_headers& h, const trusted_networks& trusted,
                         forwarded_result& r) {
    element_ring xff, xfp;
    split_plain(h.x_forwarded_for, xff);
    split_plain(h.x_forwarded_proto, xfp);
    const walk_end w = walk(
        xff, trusted,
        [&](size_t i, node& n) {
            n = xff_node(xff.from_right(i));
            return true;
        },
        "X-Forwarded-For: the client's element is not an IP address",
        "X-Forwarded-For: more trusted hops than coachwhip examines (64)");
    set_client(r, w);
    if (!w.problem.empty() || xfp.count() == 0) return;  // unreadable: nothing from this kind
    // Same hop as the client when both lists line up; else the nearest proxy's word.
    const bool same_hop = w.chosen && xfp.count() == xff.count() &&
                          (w.index < xfp.kept() || w.index == xfp.count() - 1);
    const std::string_view proto = xfp.from_right(same_hop ? w.index : 0);
    r.scheme = known_scheme(proto);
    if (r.scheme.empty() && r.problem.empty())
        r.problem = "X-Forwarded-Proto: not http, https, ws or wss";
}

void resolve_rfc7239(const forwarded_headers& h, const trusted_networks& trusted,
                     forwarded_result& r) {
    element_ring list;
    split_quoted(h.forwarded, list);
    element_params params;  // of the element read last, which is the chosen one when the walk ends
    value_text node_text;   // the unquoted for= of that element; node::name points into it
    const auto read = [&](size_t i, node& n) {
        params = {};
        value_text host;
        if (!parse_element(list.from_right(i), params)) return false;
        if (params.host.data() != nullptr &&
            (!unquote(params.host, host) || !valid_host(host.view())))
            return false;
        n = node{node_kind::unknown, {}, 0, {}};  // RFC 7239 §5.2: for= is optional
        if (params.for_.data() == nullptr) return true;
        if (!unquote(params.for_, node_text)) return false;
        n = forwarded_node(node_text.view());
        return n.kind != node_kind::malformed;
    };
    const walk_end w = walk(list, trusted, read, "Forwarded: malformed element (RFC 7239 §4, §6)",
                            "Forwarded: more trusted hops than coachwhip examines (64)");
    set_client(r, w);
    if (!w.problem.empty() || !w.chosen) return;  // unreadable: nothing from this kind
    value_text v;
    if (params.proto.data() != nullptr && unquote(params.proto, v)) {
        r.scheme = known_scheme(v.view());
        if (r.scheme.empty()) r.problem = "Forwarded: proto= is not http, https, ws or wss";
    }
    if (params.host.data() != nullptr && unquote(params.host, v)) {
        std::copy(v.chars, v.chars + v.size, r.forwarded_host.chars.begin());
        r.forwarded_host.size = static_cast<uint8_t>(v.size);
    }
}

}  // namespace

forwarded_result resolve_forwarded(const peer_address& peer, const forwarded_headers& headers,
                                   const trusted_networks& trusted) noexcept {
    forwarded_result r;
    const bool peer_trusted =
        peer.unix_socket ? trusted.contains_unix() : trusted.contains(peer.host);
    if (!peer_trusted) return r;
    if (!headers.x_forwarded_for.empty()) {
        r.kind = forwarded_kind::x_forwarded;
        resolve_x_forwarded(headers, trusted, r);
    } else if (!headers.forwarded.empty()) {
        r.kind = forwarded_kind::forwarded;
        resolve_rfc7239(headers, trusted, r);
    } else if (!headers.x_forwarded_proto.empty()) {
        r.kind = forwarded_kind::x_forwarded;
        resolve_x_forwarded(headers, trusted, r);
    }
    return r;
}

}  // namespace coachwhip::proxy
