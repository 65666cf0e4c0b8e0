// fuzz_forwarded — libFuzzer target for proxy::parse_trusted_networks and
// proxy::resolve_forwarded (X-Forwarded-For, X-Forwarded-Proto, Forwarded / RFC 7239).
//
// Input layout: text lines separated by '\n'.
//   line 1: the --forwarded-allow-ips value
//   line 2: the peer's address text ("unix" = a Unix-socket peer)
//   lines 3+: one header line each; the first byte picks the header ('F' X-Forwarded-For,
//             'P' X-Forwarded-Proto, 'W' Forwarded; any other byte: that byte % 3), the rest of
//             the line is the value.
// Checks:
// - parse_trusted_networks: an error names the option and the element and trusts nobody; a
//   success matches a naive reference (inet_pton + bit compare) on the peer and on every
//   X-Forwarded-For element.
// - resolve_forwarded: deterministic; nothing applies to an untrusted peer; a header client is a
//   valid IP in canonical form (glibc's inet_pton agrees); the scheme is empty or one of
//   http/https/ws/wss; a Forwarded host= only comes with the Forwarded kind and has only URI
//   host characters.
// - list semantics (RFC 9110 §5.3): splitting header lines at their commas, or joining all lines
//   of a header with ",", gives the same answer (for Forwarded only when no '"' or '\' is
//   involved, as a quoted-string may hold a comma).
// - X-Forwarded-For and X-Forwarded-Proto are resolved again by a naive reference written from
//   forwarded.hpp (vectors and strings, no ring, no shortcuts) and must agree on the client
//   (source, address, port), the scheme and whether a problem was reported.
#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "proxy/forwarded.hpp"

using namespace coachwhip::proxy;

namespace {

struct input_lines {
    std::string trusted, peer;
    std::vector<std::string> kinds[3];  // XFF, XFP, Forwarded
};

input_lines split_input(std::string_view in) {
    input_lines out;
    size_t line = 0;
    while (true) {
        const size_t nl = in.find('\n');
        const std::string_view l = in.substr(0, nl);
        if (line == 0) {
            out.trusted = l;
        } else if (line == 1) {
            out.peer = l;
        } else if (!l.empty()) {
            const char k = l[0];
            const int kind = k == 'F'   ? 0
                             : k == 'P' ? 1
                             : k == 'W' ? 2
                                        : static_cast<unsigned char>(k) % 3;
            out.kinds[kind].emplace_back(l.substr(1));
        }
        ++line;
        if (nl == std::string_view::npos) break;
        in.remove_prefix(nl + 1);
    }
    return out;
}

// ---- naive reference ----------------------------------------------------------------------

bool ascii_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

std::string trim(std::string s, bool only_ows) {
    const auto sp = [&](char c) { return only_ows ? (c == ' ' || c == '\t') : ascii_space(c); };
    while (!s.empty() && sp(s.front()))
        s.erase(s.begin());
    while (!s.empty() && sp(s.back()))
        s.pop_back();
    return s;
}

std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    size_t start = 0;
    for (size_t i = 0; i <= s.size(); ++i) {
        if (i == s.size() || s[i] == sep) {
            out.push_back(s.substr(start, i - start));
            start = i + 1;
        }
    }
    return out;
}

struct ref_ip {
    bool v6 = false;
    unsigned char b[16] = {};
};

bool ref_parse(const std::string& s, ref_ip& ip) {
    if (s.find('\0') != std::string::npos) return false;
    ip = {};
    if (inet_pton(AF_INET, s.c_str(), ip.b) == 1) return true;
    ip.v6 = true;
    return inet_pton(AF_INET6, s.c_str(), ip.b) == 1;
}

struct ref_trusted {
    bool everyone = false;
    std::vector<std::pair<ref_ip, unsigned>> nets;
    std::vector<std::string> literals;
};

ref_trusted ref_parse_trusted(const std::string& spec) {
    ref_trusted t;
    for (std::string e : split(spec, ',')) {
        e = trim(e, false);
        if (e.empty()) continue;
        if (e == "*") {
            t.everyone = true;
            continue;
        }
        ref_ip ip;
        const size_t slash = e.find('/');
        if (slash != std::string::npos) {
            FUZZ_CHECK(ref_parse(e.substr(0, slash), ip));
            t.nets.push_back({ip, unsigned(std::stoul(e.substr(slash + 1)))});
        } else if (ref_parse(e, ip)) {
            t.nets.push_back({ip, ip.v6 ? 128u : 32u});
        } else {
            t.literals.push_back(e);
        }
    }
    return t;
}

bool bits_equal(const unsigned char* a, const unsigned char* b, unsigned bits) {
    for (unsigned i = 0; i < bits; ++i)
        if (((a[i / 8] >> (7 - i % 8)) & 1) != ((b[i / 8] >> (7 - i % 8)) & 1)) return false;
    return true;
}

bool ref_contains_ip(const ref_trusted& t, const ref_ip& ip) {
    if (t.everyone) return true;
    static const unsigned char k_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    const bool mapped = ip.v6 && std::memcmp(ip.b, k_mapped, 12) == 0;
    for (const auto& [net, bits] : t.nets) {
        if (net.v6 == ip.v6 && bits_equal(net.b, ip.b, bits)) return true;
        if (mapped && !net.v6 && bits_equal(net.b, ip.b + 12, bits)) return true;
    }
    return false;
}

bool ref_contains(const ref_trusted& t, const std::string& text) {
    if (t.everyone) return true;
    ref_ip ip;
    if (ref_parse(text, ip)) return ref_contains_ip(t, ip);
    return std::find(t.literals.begin(), t.literals.end(), text) != t.literals.end();
}

bool ref_port(const std::string& s, uint16_t& port) {
    if (s.empty() || s.size() > 5 ||
        !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return false;
    const unsigned long v = std::stoul(s);
    port = uint16_t(v);
    return v <= 65535;
}

enum class ref_kind { address, unknown, text };

struct ref_node {
    ref_kind kind = ref_kind::text;
    ref_ip ip;
    uint16_t port = 0;
};

std::string lower(std::string s) {
    for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    return s;
}

ref_node ref_classify(const std::string& e) {
    ref_node n;
    if (lower(e) == "unknown") {
        n.kind = ref_kind::unknown;
        return n;
    }
    if (ref_parse(e, n.ip)) {
        n.kind = ref_kind::address;
        return n;
    }
    if (e[0] == '[') {
        const size_t close = e.find(']');
        if (close == std::string::npos) return n;
        const std::string rest = e.substr(close + 1);
        if (ref_parse(e.substr(1, close - 1), n.ip) && n.ip.v6 &&
            (rest.empty() || (rest[0] == ':' && ref_port(rest.substr(1), n.port))))
            n.kind = ref_kind::address;
        return n;
    }
    const size_t colon = e.find(':');
    if (colon != std::string::npos && ref_parse(e.substr(0, colon), n.ip) && !n.ip.v6 &&
        ref_port(e.substr(colon + 1), n.port))
        n.kind = ref_kind::address;
    return n;
}

struct ref_answer {
    client_source client = client_source::peer;
    ref_ip ip;
    uint16_t port = 0;
    bool problem = false;
    std::string scheme;
};

std::vector<std::string> list_of(const std::vector<std::string>& lines) {
    std::vector<std::string> out;
    for (const std::string& l : lines)
        for (const std::string& e : split(l, ','))
            if (std::string t = trim(e, true); !t.empty()) out.push_back(t);
    return out;
}

ref_answer answer_from(const ref_node& n, size_t index) {
    ref_answer a;
    (void)index;
    if (n.kind == ref_kind::address) {
        a.client = client_source::header;
        a.ip = n.ip;
        a.port = n.port;
    } else {
        a.client = client_source::unknown;
        a.problem = n.kind == ref_kind::text;
    }
    return a;
}

// The X-Forwarded-* resolution of forwarded.hpp, written the slow, obvious way.
ref_answer ref_x_forwarded(const ref_trusted& t, const input_lines& in) {
    const std::vector<std::string> xff = list_of(in.kinds[0]), xfp = list_of(in.kinds[1]);
    ref_answer a;
    bool chosen = false;
    size_t index = 0;  // from the right
    if (!xff.empty()) {
        if (t.everyone) {
            index = xff.size() - 1;
            a = answer_from(ref_classify(xff.front()), index);
            chosen = true;
        } else {
            size_t i = 0;
            for (; i < xff.size() && i < k_max_forwarded_elements; ++i) {
                const std::string& e = xff[xff.size() - 1 - i];
                const ref_node n = ref_classify(e);
                const bool trusted = n.kind == ref_kind::address ? ref_contains_ip(t, n.ip)
                                     : n.kind == ref_kind::text  ? ref_contains(t, e)
                                                                 : false;
                if (!trusted) {
                    a = answer_from(n, i);
                    index = i;
                    chosen = true;
                    break;
                }
            }
            if (!chosen && xff.size() > k_max_forwarded_elements) {
                a.client = client_source::unknown;
                a.problem = true;
            } else if (!chosen) {
                index = xff.size() - 1;
                a = answer_from(ref_classify(xff.front()), index);
                chosen = true;
            }
        }
    }
    if (a.problem || xfp.empty()) return a;
    const std::string proto =
        chosen && xfp.size() == xff.size() ? xfp[xfp.size() - 1 - index] : xfp.back();
    const std::string l = lower(proto);
    if (l == "http" || l == "https" || l == "ws" || l == "wss") {
        a.scheme = l;
    } else {
        a.problem = true;
    }
    return a;
}

// ---- checks on the real thing ---------------------------------------------------------------

forwarded_result run(const input_lines& in, const trusted_networks& t) {
    std::vector<std::string_view> v[3];
    for (int k = 0; k < 3; ++k)
        v[k].assign(in.kinds[k].begin(), in.kinds[k].end());
    const peer_address peer{in.peer, in.peer == "unix"};
    return resolve_forwarded(peer, {v[0], v[1], v[2]}, t);
}

std::string summary(const forwarded_result& r) {
    return std::to_string(int(r.client)) + "|" + std::string(r.host.view()) + "|" +
           std::to_string(r.port) + "|" + std::string(r.scheme) + "|" +
           std::string(r.forwarded_host.view()) + "|" + std::to_string(int(r.kind)) + "|" +
           std::string(r.problem);
}

bool host_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("-._~%!$&'()*+,;=:[]").find(c) != std::string_view::npos;
}

void check_result(const forwarded_result& r, const input_lines& in, bool peer_trusted) {
    if (!peer_trusted) {
        FUZZ_CHECK(r.client == client_source::peer && r.kind == forwarded_kind::none);
        FUZZ_CHECK(r.scheme.empty() && r.forwarded_host.empty() && r.problem.empty());
        return;
    }
    if (r.client == client_source::header) {
        ip_address a;
        FUZZ_CHECK(parse_ip(r.host.view(), a));
        FUZZ_CHECK(format_ip(a).view() == r.host.view());
        ref_ip ip;
        FUZZ_CHECK(ref_parse(std::string(r.host.view()), ip));
        FUZZ_CHECK(std::memcmp(ip.b, a.bytes.data(), a.v6 ? 16 : 4) == 0);
    } else {
        FUZZ_CHECK(r.host.empty() && r.port == 0);
    }
    FUZZ_CHECK(r.scheme.empty() || r.scheme == "http" || r.scheme == "https" || r.scheme == "ws" ||
               r.scheme == "wss");
    if (r.kind != forwarded_kind::forwarded) FUZZ_CHECK(r.forwarded_host.empty());
    for (char c : r.forwarded_host.view())
        FUZZ_CHECK(host_char(c));
    const bool any = !in.kinds[0].empty() || !in.kinds[1].empty() || !in.kinds[2].empty();
    FUZZ_CHECK((r.kind == forwarded_kind::none) == !any);
    if (!in.kinds[0].empty()) FUZZ_CHECK(r.kind == forwarded_kind::x_forwarded);
}

bool has_quoting(const std::vector<std::string>& lines) {
    for (const std::string& l : lines)
        if (l.find_first_of("\"\\") != std::string::npos) return true;
    return false;
}

// The same headers with every line cut at its commas, and with all lines joined.
void check_list_semantics(const input_lines& in, const trusted_networks& t,
                          const std::string& want) {
    input_lines cut = in, joined = in;
    for (int k = 0; k < 3; ++k) {
        if (k == 2 && has_quoting(in.kinds[k])) continue;
        cut.kinds[k].clear();
        for (const std::string& l : in.kinds[k])
            for (const std::string& e : split(l, ','))
                cut.kinds[k].push_back(e);
        if (in.kinds[k].empty()) continue;
        std::string all;
        for (size_t i = 0; i < in.kinds[k].size(); ++i)
            all += (i ? "," : "") + in.kinds[k][i];
        joined.kinds[k] = {all};
    }
    FUZZ_CHECK(summary(run(cut, t)) == want);
    FUZZ_CHECK(summary(run(joined, t)) == want);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const input_lines in = split_input(std::string_view(reinterpret_cast<const char*>(data), size));
    const trusted_networks_result parsed = parse_trusted_networks(in.trusted);
    if (!parsed.error.empty()) {
        FUZZ_CHECK(parsed.error.starts_with("--forwarded-allow-ips: '"));
        FUZZ_CHECK(!parsed.networks.contains("127.0.0.1") && !parsed.networks.contains_unix());
        return 0;
    }
    const trusted_networks& t = parsed.networks;
    const ref_trusted ref = ref_parse_trusted(in.trusted);
    FUZZ_CHECK(t.everyone() == ref.everyone);
    if (in.peer != "unix") FUZZ_CHECK(t.contains(in.peer) == ref_contains(ref, in.peer));
    for (const std::string& e : list_of(in.kinds[0]))
        FUZZ_CHECK(t.contains(e) == ref_contains(ref, e));

    const bool peer_trusted = in.peer == "unix" ? t.contains_unix() : t.contains(in.peer);
    const forwarded_result r = run(in, t);
    const std::string want = summary(r);
    FUZZ_CHECK(summary(run(in, t)) == want);  // deterministic
    check_result(r, in, peer_trusted);
    check_list_semantics(in, t, want);

    if (peer_trusted && r.kind == forwarded_kind::x_forwarded) {
        const ref_answer a = ref_x_forwarded(ref, in);
        FUZZ_CHECK(a.client == r.client);
        if (a.client == client_source::header) {
            ip_address got;
            FUZZ_CHECK(parse_ip(r.host.view(), got));
            FUZZ_CHECK(got.v6 == a.ip.v6 &&
                       std::memcmp(got.bytes.data(), a.ip.b, a.ip.v6 ? 16 : 4) == 0);
            FUZZ_CHECK(r.port == a.port);
        }
        FUZZ_CHECK(std::string(r.scheme) == a.scheme);
        FUZZ_CHECK(a.problem == !r.problem.empty());
    }
    return 0;
}
