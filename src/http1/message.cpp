// coachwhip::http1 message semantics. The contract is in message.hpp; this file says why.
//
// analyze_request runs its checks in a fixed order, every 400 before the 501s and the 417, so a
// request that breaks several rules always gets the same answer:
//   request line -> Host -> target form -> Connection -> framing (CL / TE) -> method -> Expect.
//
// Decisions the lead must know (each is also noted where it is enforced):
// - Content-Length: 1 to 19 DIGITs (leading zeros count), value <= 2^63-1.
// - Content-Length: 0 yields framing content_length with content_length 0 (not none).
// - Transfer-Encoding: exactly one field. "chunked" alone -> chunked. A well-formed list of known
//   codings (compress, deflate, gzip, x-compress, x-gzip) ending in one "chunked" -> 501. All
//   else -> 400: empty list elements, parameters, identity, unknown codings, chunked not last.
// - Expect: a list of expectations; "100-continue" sets expect_continue (ignored on HTTP/1.0,
//   RFC 9110 §10.1.1), anything else -> 417.
// - Host: empty value allowed (RFC 9112 §3.2); a non-empty value needs a non-empty host.
// - Target: a '#' (fragment) is rejected; origin-form is otherwise accepted as any VCHAR run
//   starting with '/', since real clients send bytes like '|' and '{' unescaped.
// - CONNECT (well-formed, authority-form) -> 501 before the app runs, and the connection closes.
//   An origin server has no tunnel to offer an ASGI or WSGI app, and a front end that forwards
//   CONNECT and sees a 2xx turns the client's connection into a tunnel: if we then kept parsing
//   HTTP on it, the next request would reach the app without passing any of the front end's
//   rules (the HAProxy smuggling case, ATTACKS B). Refusing it in the engine means no app can
//   ever answer 2xx to it. The method name is case-sensitive (RFC 9110 §9.1): "connect" is some
//   other method and gets no special treatment (its authority-form target is a 400 anyway).
// - info.host is always the Host field value, even for an absolute-form target (they must match
//   when Host is present; on HTTP/1.0 without Host it stays empty and the target has the host).
#include "http1/message.hpp"

#include <algorithm>
#include <cstddef>
#include <limits>

namespace coachwhip::http1 {
namespace {

constexpr char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c; }
constexpr bool is_digit(char c) { return c >= '0' && c <= '9'; }
constexpr bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
constexpr bool is_hex(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
constexpr bool is_ows(char c) { return c == ' ' || c == '\t'; }

bool all_of(std::string_view s, bool (*pred)(char)) {
    return std::all_of(s.begin(), s.end(), pred);
}

bool reject(request_info& info, uint16_t status, std::string_view reason) {
    info.error = core::error{status, reason};
    return false;
}

std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && is_ows(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_ows(s.back()))
        s.remove_suffix(1);
    return s;
}

// Calls fn(element) for each element of a comma-separated list (RFC 9110 §5.6.1), OWS trimmed.
// Empty elements are passed through; each caller decides whether they are allowed.
template <class Fn>
bool for_each_element(std::string_view list, Fn&& fn) {
    for (;;) {
        const size_t comma = list.find(',');
        if (!fn(trim_ows(list.substr(0, comma)))) return false;
        if (comma == std::string_view::npos) return true;
        list.remove_prefix(comma + 1);
    }
}

// ---- uri-host [":" port] (RFC 3986 §3.2.2, §3.2.3) -----------------------------------------

bool is_reg_name_char(char c) {
    constexpr std::string_view k_extra = "-._~!$&'()*+,;=";  // unreserved + sub-delims
    return is_alpha(c) || is_digit(c) || k_extra.find(c) != std::string_view::npos;
}

// reg-name = *( unreserved / pct-encoded / sub-delims ); an IPv4address also matches it.
bool valid_reg_name(std::string_view s) {
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '%') {
            if (!is_reg_name_char(s[i])) return false;
            continue;
        }
        if (i + 2 >= s.size() || !is_hex(s[i + 1]) || !is_hex(s[i + 2])) return false;
        i += 2;
    }
    return true;
}

// dec-octet "." dec-octet "." dec-octet "." dec-octet, no leading zeros.
bool valid_ipv4(std::string_view s) {
    for (int octet = 0; octet < 4; ++octet) {
        const size_t dot = s.find('.');
        if ((octet < 3) == (dot == std::string_view::npos)) return false;
        const std::string_view part = s.substr(0, dot);
        if (part.empty() || part.size() > 3 || !all_of(part, is_digit)) return false;
        if (part.size() > 1 && part[0] == '0') return false;
        int value = 0;
        for (const char c : part)
            value = value * 10 + (c - '0');
        if (value > 255) return false;
        s.remove_prefix(octet < 3 ? dot + 1 : s.size());
    }
    return true;
}

// The number of 16-bit pieces in one side of "::" (an IPv4 tail counts as two); -1 if malformed.
int count_ipv6_pieces(std::string_view s, bool may_end_in_ipv4) {
    if (s.empty()) return 0;
    for (int pieces = 0;; ++pieces) {
        const size_t colon = s.find(':');
        const std::string_view piece = s.substr(0, colon);
        if (colon == std::string_view::npos && may_end_in_ipv4 &&
            piece.find('.') != std::string_view::npos)
            return valid_ipv4(piece) ? pieces + 2 : -1;
        if (piece.empty() || piece.size() > 4 || !all_of(piece, is_hex)) return -1;
        if (colon == std::string_view::npos) return pieces + 1;
        s.remove_prefix(colon + 1);
    }
}

bool valid_ipv6(std::string_view s) {
    const size_t gap = s.find("::");
    if (gap == std::string_view::npos) return count_ipv6_pieces(s, true) == 8;
    const std::string_view left = s.substr(0, gap), right = s.substr(gap + 2);
    if (right.find("::") != std::string_view::npos) return false;
    const int l = count_ipv6_pieces(left, false), r = count_ipv6_pieces(right, true);
    return l >= 0 && r >= 0 && l + r <= 7;  // "::" stands for at least one piece
}

// IP-literal = "[" ( IPv6address / IPvFuture ) "]"; IPvFuture = "v" 1*HEXDIG "." 1*( ... ).
bool valid_ip_literal(std::string_view inner) {
    if (inner.empty() || ascii_lower(inner[0]) != 'v') return valid_ipv6(inner);
    const size_t dot = inner.find('.');
    if (dot == std::string_view::npos || dot < 2 || dot + 1 == inner.size()) return false;
    if (!all_of(inner.substr(1, dot - 1), is_hex)) return false;
    return all_of(inner.substr(dot + 1), [](char c) { return c == ':' || is_reg_name_char(c); });
}

// uri-host [":" port] with a non-empty host; `need_port` for authority-form (RFC 9112 §3.2.3).
bool valid_host_port(std::string_view s, bool need_port) {
    if (s.empty()) return false;
    std::string_view host = s, port;
    bool has_port = false;
    const size_t colon = s.front() == '[' ? s.find("]:") : s.find(':');
    if (colon != std::string_view::npos) {
        const size_t host_len = s.front() == '[' ? colon + 1 : colon;
        host = s.substr(0, host_len);
        port = s.substr(host_len + 1);
        has_port = true;
    }
    if (host.empty() || (need_port && (!has_port || port.empty()))) return false;
    if (!all_of(port, is_digit)) return false;  // port = *DIGIT
    if (host.front() == '[')
        return host.size() >= 2 && host.back() == ']' &&
               valid_ip_literal(host.substr(1, host.size() - 2));
    return valid_reg_name(host);
}

// ---- the fields that matter, gathered in one pass ------------------------------------------

struct field_scan {
    std::string_view content_length, transfer_encoding, host;
    int content_length_count = 0, transfer_encoding_count = 0, host_count = 0;
    bool has_upgrade = false;
    bool has_connection = false, has_expect = false;  // their checks read the fields again
    bool has_forwarded = false;  // X-Forwarded-For, X-Forwarded-Proto or Forwarded
};

// Names are compared whole and case-insensitively (RFC 9110 §5.1), so "Transfer_Encoding" or
// "Content_Length" are unknown fields, never the dashed ones.
// One pass over the fields; the name's length picks the one comparison worth making, so most
// fields (User-Agent, Accept, ...) cost a switch and nothing more.
field_scan scan_fields(std::span<const header_field> headers) {
    field_scan scan;
    for (const header_field& f : headers) {
        const std::string_view n = f.name;
        switch (n.size()) {
            case 4:
                if (iequals(n, "host")) scan.host = f.value, ++scan.host_count;
                break;
            case 6: scan.has_expect |= iequals(n, "expect"); break;
            case 7: scan.has_upgrade |= iequals(n, "upgrade") && !f.value.empty(); break;
            case 9: scan.has_forwarded |= iequals(n, "forwarded"); break;
            case 10: scan.has_connection |= iequals(n, "connection"); break;
            case 14:
                if (iequals(n, "content-length"))
                    scan.content_length = f.value, ++scan.content_length_count;
                break;
            case 15: scan.has_forwarded |= iequals(n, "x-forwarded-for"); break;
            case 17:
                if (iequals(n, "transfer-encoding")) {
                    scan.transfer_encoding = f.value;
                    ++scan.transfer_encoding_count;
                } else {
                    scan.has_forwarded |= iequals(n, "x-forwarded-proto");
                }
                break;
            default: break;
        }
    }
    return scan;
}

// ---- checks, in order ------------------------------------------------------------------------

bool check_request_line(const request_head& head, request_info& info) {
    // RFC 9110 §9.1: method = token. The parser guarantees it; checked again because this
    // function's contract does not assume its caller used our parser.
    if (!is_token(head.method)) return reject(info, 400, "method is not a token (RFC 9110 §9.1)");
    // RFC 9112 §3.2: the request-target is a URI reference: VCHAR only, never empty.
    const bool vchar = all_of(head.target, [](char c) { return c > 0x20 && c < 0x7F; });
    if (head.target.empty() || !vchar)
        return reject(info, 400, "request-target has bytes outside VCHAR (RFC 9112 §3.2)");
    return true;
}

bool check_host(const request_head& head, const field_scan& scan, request_info& info) {
    // RFC 9112 §3.2: a server MUST respond 400 to an HTTP/1.1 request that lacks a Host field,
    // and to any request with more than one Host field.
    if (scan.host_count > 1) return reject(info, 400, "more than one Host field (RFC 9112 §3.2)");
    if (scan.host_count == 0 && head.minor_version == 1)
        return reject(info, 400, "HTTP/1.1 request without Host (RFC 9112 §3.2)");
    // RFC 9110 §7.2: Host = uri-host [ ":" port ]; RFC 9112 §3.2: it may be empty when the
    // target has no authority. A Host with a bad value is a 400 (RFC 9112 §3.2).
    if (!scan.host.empty() && !valid_host_port(scan.host, false))
        return reject(info, 400, "Host is not a valid uri-host[:port] (RFC 9110 §7.2)");
    info.host = scan.host;
    return true;
}

// absolute-form (RFC 9112 §3.2.2): scheme "://" authority path-abempty ["?" query]. Returns
// false if the target does not have that shape; `scheme` and `authority` are set when it does.
bool split_absolute(std::string_view target, std::string_view& scheme,
                    std::string_view& authority) {
    const size_t sep = target.find("://");
    if (sep == std::string_view::npos || sep == 0 || !is_alpha(target[0])) return false;
    scheme = target.substr(0, sep);
    const auto scheme_char = [](char c) {
        return is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.';
    };
    if (!all_of(scheme, scheme_char)) return false;
    const std::string_view rest = target.substr(sep + 3);
    authority = rest.substr(0, rest.find_first_of("/?#"));
    return true;
}

bool check_absolute_form(std::string_view scheme, std::string_view authority,
                         const field_scan& scan, request_info& info) {
    // RFC 9110 §4.2: we serve http and https only.
    if (!iequals(scheme, "http") && !iequals(scheme, "https"))
        return reject(info, 400, "absolute-form target with a scheme other than http(s)");
    // RFC 9110 §4.2.4: userinfo in an http(s) URI SHOULD be treated as an error.
    if (authority.find('@') != std::string_view::npos)
        return reject(info, 400, "userinfo in request-target (RFC 9110 §4.2.4)");
    // RFC 9110 §4.2.1: an http(s) URI with an empty host is invalid.
    if (authority.empty() || !valid_host_port(authority, false))
        return reject(info, 400, "absolute-form target without a valid host (RFC 9110 §4.2.1)");
    // RFC 9112 §3.2.2 says to ignore Host here; we refuse a conflict instead, so that no
    // component can route by one while we route by the other.
    if (scan.host_count == 1 && !iequals(scan.host, authority))
        return reject(info, 400, "Host differs from the target's authority (RFC 9112 §3.2.2)");
    return true;
}

bool check_target(const request_head& head, const field_scan& scan, request_info& info) {
    const std::string_view t = head.target;
    const bool connect = head.method == "CONNECT";
    // RFC 9112 §3.2: a request-target never carries a fragment.
    if (t.find('#') != std::string_view::npos)
        return reject(info, 400, "fragment in request-target (RFC 9112 §3.2)");
    if (t == "*") {  // RFC 9112 §3.2.4: asterisk-form is only for OPTIONS.
        if (head.method == "OPTIONS") return true;
        return reject(info, 400, "asterisk-form target with a method other than OPTIONS");
    }
    if (connect) {  // RFC 9112 §3.2.3: CONNECT takes authority-form, uri-host ":" port.
        if (valid_host_port(t, true)) return true;
        return reject(info, 400, "CONNECT needs an authority-form target (RFC 9112 §3.2.3)");
    }
    if (t.front() == '/')
        return true;  // RFC 9112 §3.2.1: origin-form = absolute-path [ "?" query ]
    std::string_view scheme, authority;
    if (split_absolute(t, scheme, authority))
        return check_absolute_form(scheme, authority, scan, info);
    if (valid_host_port(t, true))  // RFC 9112 §3.2.3: authority-form is only for CONNECT.
        return reject(info, 400, "authority-form target with a method other than CONNECT");
    return reject(info, 400, "request-target is not origin-form or absolute-form (RFC 9112 §3.2)");
}

bool check_connection(const request_head& head, const field_scan& scan, request_info& info) {
    bool close = false, keep_alive = false, upgrade = false;
    for (const header_field& f : scan.has_connection ? head.headers : std::span<header_field>{}) {
        if (!iequals(f.name, "connection")) continue;
        // RFC 9110 §7.6.1: Connection = #connection-option, connection-option = token. Empty
        // list elements are ignored (§5.6.1); anything else that is not a token is an error.
        const bool ok = for_each_element(f.value, [&](std::string_view option) {
            if (option.empty()) return true;
            if (!is_token(option)) return false;
            close |= iequals(option, "close");
            keep_alive |= iequals(option, "keep-alive");
            upgrade |= iequals(option, "upgrade");
            return true;
        });
        if (!ok) return reject(info, 400, "Connection option is not a token (RFC 9110 §7.6.1)");
    }
    // RFC 9112 §9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive".
    info.keep_alive = !close && (head.minor_version == 1 || keep_alive);
    // RFC 9110 §7.8: Upgrade is a hop-by-hop request only with "Connection: upgrade", and a
    // server MUST ignore Upgrade in an HTTP/1.0 request.
    info.upgrade = upgrade && scan.has_upgrade && head.minor_version == 1;
    info.upgrade_field = scan.has_upgrade;
    return true;
}

// Content-Length = 1*DIGIT (RFC 9110 §8.6). We cap it at 19 digits, which also keeps the
// arithmetic below from overflowing 64 bits, and at 2^63-1 so it fits every signed offset.
bool parse_content_length(std::string_view s, uint64_t& out) {
    if (s.empty() || s.size() > 19 || !all_of(s, is_digit)) return false;
    uint64_t n = 0;
    for (const char c : s)
        n = n * 10 + static_cast<uint64_t>(c - '0');
    if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return false;
    out = n;
    return true;
}

enum class coding_verdict : uint8_t { chunked, unsupported, invalid };

bool is_known_coding(std::string_view c) {
    // IANA HTTP Transfer Coding registry, minus chunked and the obsolete identity.
    return iequals(c, "gzip") || iequals(c, "deflate") || iequals(c, "compress") ||
           iequals(c, "x-gzip") || iequals(c, "x-compress");
}

// RFC 9112 §6.1: Transfer-Encoding = #transfer-coding; §6.3 item 4: in a request, chunked must
// be the final coding. Only a strictly well-formed list earns the 501.
coding_verdict classify_codings(std::string_view value) {
    if (iequals(value, "chunked")) return coding_verdict::chunked;
    bool chunked_seen = false;
    const bool well_formed = for_each_element(value, [&](std::string_view coding) {
        if (chunked_seen || !is_token(coding)) return false;  // chunked not last, empty, params
        chunked_seen = iequals(coding, "chunked");
        return chunked_seen || is_known_coding(coding);
    });
    return well_formed && chunked_seen ? coding_verdict::unsupported : coding_verdict::invalid;
}

bool check_transfer_encoding(const request_head& head, const field_scan& scan, request_info& info) {
    // RFC 9112 §6.1 would let us combine several TE fields; refusing them removes one more way
    // for two parsers to read the same bytes differently.
    if (scan.transfer_encoding_count > 1)
        return reject(info, 400, "more than one Transfer-Encoding field (RFC 9112 §6.1)");
    // RFC 9112 §6.1: a request with both is likely smuggling; §6.3 item 3 lets us reject it.
    if (scan.content_length_count > 0)
        return reject(info, 400, "Content-Length with Transfer-Encoding (RFC 9112 §6.1)");
    // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
    if (head.minor_version == 0)
        return reject(info, 400, "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1)");
    switch (classify_codings(scan.transfer_encoding)) {
        case coding_verdict::chunked: info.framing = body_framing::chunked; return true;
        case coding_verdict::unsupported:  // RFC 9112 §6.1: unknown coding -> 501
            return reject(info, 501, "transfer coding other than chunked (RFC 9112 §6.1)");
        case coding_verdict::invalid: break;
    }
    return reject(info, 400, "Transfer-Encoding is not exactly chunked (RFC 9112 §6.3)");
}

bool check_framing(const request_head& head, const field_scan& scan, request_info& info) {
    if (scan.transfer_encoding_count > 0) return check_transfer_encoding(head, scan, info);
    if (scan.content_length_count == 0) return true;  // RFC 9112 §6.3 item 7: no body
    // RFC 9112 §6.3 item 5: several Content-Length fields, even equal, or a list, are invalid
    // for us (the "5, 5" list is caught by 1*DIGIT below).
    if (scan.content_length_count > 1)
        return reject(info, 400, "more than one Content-Length field (RFC 9112 §6.3)");
    if (!parse_content_length(scan.content_length, info.content_length))
        return reject(info, 400, "Content-Length is not 1*DIGIT below 2^63 (RFC 9110 §8.6)");
    info.framing = body_framing::content_length;
    return true;
}

bool check_method(const request_head& head, request_info& info) {
    // RFC 9110 §9.1: a method the origin server does not implement SHOULD get 501. See the
    // CONNECT decision at the top of this file: this is what keeps tunnels from forming.
    if (head.method == "CONNECT")
        return reject(info, 501, "CONNECT is not supported: an origin server has no tunnel");
    return true;
}

bool check_expect(const request_head& head, const field_scan& scan, request_info& info) {
    bool unknown = false, cont = false;
    for (const header_field& f : scan.has_expect ? head.headers : std::span<header_field>{}) {
        if (!iequals(f.name, "expect")) continue;
        for_each_element(f.value, [&](std::string_view e) {
            cont |= iequals(e, "100-continue");
            unknown |= !e.empty() && !iequals(e, "100-continue");
            return true;
        });
    }
    // RFC 9110 §10.1.1: a server MAY answer 417 to an expectation other than 100-continue.
    if (unknown) return reject(info, 417, "expectation other than 100-continue (RFC 9110 §10.1.1)");
    // RFC 9110 §10.1.1: a 100-continue expectation in an HTTP/1.0 request MUST be ignored.
    info.expect_continue = cont && head.minor_version == 1;
    return true;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i)
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    return true;
}

request_info analyze_request(const request_head& head) noexcept {
    request_info info;
    const field_scan scan = scan_fields(head.headers);
    if (check_request_line(head, info) && check_host(head, scan, info) &&
        check_target(head, scan, info) && check_connection(head, scan, info) &&
        check_framing(head, scan, info) && check_method(head, info) &&
        check_expect(head, scan, info)) {
        info.forwarded = scan.has_forwarded;
        return info;
    }
    info.framing = body_framing::none;
    return info;
}

}  // namespace coachwhip::http1
