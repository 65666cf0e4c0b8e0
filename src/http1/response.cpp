#include "http1/response.hpp"

#include <charconv>
#include <cstring>

#include "core/clock.hpp"
#include "http1/message.hpp"
#include "http1/parser.hpp"

namespace coachwhip::http1 {
namespace {

// RFC 9110 §5.5: field-value = *field-content; CR, LF and NUL are never allowed, and we refuse
// every other CTL except HTAB as well (DEL included) so nothing can confuse a downstream parser.
bool valid_value(std::string_view v) noexcept {
    for (unsigned char c : v)
        if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
    return true;
}

bool all_digits(std::string_view v) noexcept {
    if (v.empty() || v.size() > 19) return false;
    for (char c : v)
        if (c < '0' || c > '9') return false;
    return true;
}

// 1xx, 204 and 304 never have content (RFC 9110 §6.4.1), so they get no framing fields.
bool status_has_no_body(int status) noexcept {
    return (status >= 100 && status < 200) || status == 204 || status == 304;
}

// For the rare error responses: plain appends.
void append_status_line(std::string& out, int status) {
    char code[4] = {static_cast<char>('0' + status / 100),
                    static_cast<char>('0' + status / 10 % 10), static_cast<char>('0' + status % 10),
                    ' '};
    out.append("HTTP/1.1 ");
    out.append(code, 4);
    out.append(reason_phrase(status));
    out.append("\r\n");
}

void append_field(std::string& out, std::string_view name, std::string_view value) {
    out.append(name);
    out.append(": ");
    out.append(value);
    out.append("\r\n");
}

void append_number(std::string& out, uint64_t n) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, n);
    out.append(buf, static_cast<size_t>(r.ptr - buf));
}

// The fields the encoder treats specially, recognised with one comparison (by length first).
enum class field_kind : uint8_t {
    other,
    content_length,
    server,
    date,
    connection,
    transfer_encoding
};

field_kind classify(std::string_view name) noexcept {
    switch (name.size()) {
        case 4: return iequals(name, "date") ? field_kind::date : field_kind::other;
        case 6: return iequals(name, "server") ? field_kind::server : field_kind::other;
        case 10: return iequals(name, "connection") ? field_kind::connection : field_kind::other;
        case 14:
            return iequals(name, "content-length") ? field_kind::content_length : field_kind::other;
        case 17:
            return iequals(name, "transfer-encoding") ? field_kind::transfer_encoding
                                                      : field_kind::other;
        default: return field_kind::other;
    }
}

// Writes into space the caller sized in advance: memcpy per piece instead of std::string's
// capacity check per append (the head is written for every response).
struct head_writer {
    char* p;
    void put(std::string_view s) noexcept {
        std::memcpy(p, s.data(), s.size());
        p += s.size();
    }
    void field(std::string_view name, std::string_view value) noexcept {
        put(name);
        put(": ");
        put(value);
        put("\r\n");
    }
};

// RFC 9110 §5.6.3: OWS = *( SP / HTAB ).
std::string_view trim_ows(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

// Operator fields the engine refuses, each with the reason; `name` is lower case.
std::string_view engine_owned(std::string_view name) noexcept {
    if (name == "content-length" || name == "transfer-encoding")
        return "the server frames every response itself (content-length or chunked)";
    if (name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
        name == "upgrade" || name == "te")
        // RFC 9110 §7.6.1: connection-specific; RFC 9113 §8.2.2: forbidden in HTTP/2.
        return "connection-specific fields are the server's (and are not allowed in HTTP/2)";
    if (name == "trailer") return "trailer announces one response's trailer fields";
    if (name == "date") return "the server writes the current date on every response";
    if (name.starts_with("sec-websocket-")) return "the server answers WebSocket handshakes";
    return {};
}

}  // namespace

core::error add_default_header(default_headers& d, std::string_view name, std::string_view value) {
    name = trim_ows(name);
    value = trim_ows(value);
    if (name.empty()) return {500, "header name is empty"};
    if (!is_token(name)) return {500, "header name is not a token (RFC 9110 §5.1)"};
    if (!valid_value(value))
        return {500, "header value contains CR, LF, NUL or another control byte"};
    std::string lower(name);
    for (char& c : lower)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + ('a' - 'A'));
    if (std::string_view why = engine_owned(lower); !why.empty()) return {500, why};
    if (lower == "server") {
        if (d.server_configured) return {500, "server is given twice"};
        if (value.empty()) return {500, "server needs a value"};
        d.server.assign(value);
        d.server_line = "server: " + d.server + "\r\n";
        d.server_configured = true;
        return {};
    }
    d.lines += lower;
    d.lines += ": ";
    d.lines += value;
    d.lines += "\r\n";
    d.fields.emplace_back(std::move(lower), std::string(value));
    return {};
}

std::string_view reason_phrase(int status) noexcept {
    switch (status) {
        case 100: return "Continue";
        case 101: return "Switching Protocols";
        case 103: return "Early Hints";
        case 200: return "OK";
        case 201: return "Created";
        case 202: return "Accepted";
        case 203: return "Non-Authoritative Information";
        case 204: return "No Content";
        case 205: return "Reset Content";
        case 206: return "Partial Content";
        case 300: return "Multiple Choices";
        case 301: return "Moved Permanently";
        case 302: return "Found";
        case 303: return "See Other";
        case 304: return "Not Modified";
        case 307: return "Temporary Redirect";
        case 308: return "Permanent Redirect";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 402: return "Payment Required";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 406: return "Not Acceptable";
        case 408: return "Request Timeout";
        case 409: return "Conflict";
        case 410: return "Gone";
        case 411: return "Length Required";
        case 412: return "Precondition Failed";
        case 413: return "Content Too Large";
        case 414: return "URI Too Long";
        case 415: return "Unsupported Media Type";
        case 416: return "Range Not Satisfiable";
        case 417: return "Expectation Failed";
        case 418: return "I'm a teapot";
        case 421: return "Misdirected Request";
        case 422: return "Unprocessable Content";
        case 425: return "Too Early";
        case 426: return "Upgrade Required";
        case 428: return "Precondition Required";
        case 429: return "Too Many Requests";
        case 431: return "Request Header Fields Too Large";
        case 451: return "Unavailable For Legal Reasons";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        case 505: return "HTTP Version Not Supported";
        default: return "";
    }
}

core::error encode_response_head(std::string& out, int status, std::span<const http::field> fields,
                                 const head_options& opt, response_framing& framing) {
    // RFC 9110 §15: status codes are 100..599. A 1xx is interim (§15.2): sent as the final
    // response it would leave the client waiting for the real one, and every later response
    // on the connection would be read as the answer to the wrong request.
    if (status < 100 || status > 599) return {500, "response status must be within 100-599"};
    if (status < 200) return {500, "a 1xx status cannot be the final response (RFC 9110 §15.2)"};
    framing = {};
    bool app_server = false, app_date = false, app_close = false;
    size_t fields_size = 0;
    // Validate everything before writing anything: on error, `out` is untouched.
    for (const auto& f : fields) {
        if (!is_token(f.name)) return {500, "response header name is not a valid token"};
        if (!valid_value(f.value))
            return {500, "response header value contains CR, LF, NUL or another control byte"};
        fields_size += f.name.size() + f.value.size() + 4;
        switch (classify(f.name)) {
            case field_kind::content_length: {
                if (!all_digits(f.value)) return {500, "response content-length is not a number"};
                uint64_t n = 0;
                std::from_chars(f.value.data(), f.value.data() + f.value.size(), n);
                if (framing.content_length && *framing.content_length != n)
                    return {500, "response has two different content-length values"};
                framing.content_length = n;
                break;
            }
            case field_kind::server: app_server = true; break;
            case field_kind::date: app_date = true; break;
            case field_kind::connection: app_close = app_close || iequals(f.value, "close"); break;
            default: break;
        }
    }
    framing.no_body = status_has_no_body(status) || opt.head_request;
    framing.keep_alive = opt.keep_alive && !app_close;
    if (!framing.no_body && !framing.content_length) {
        if (opt.body_size) {
            framing.content_length = opt.body_size;
        } else if (opt.minor_version >= 1) {
            framing.chunked = true;
        } else {
            framing.close_delimited = true;  // RFC 9112 §6.3 rule 8: length = until close
            framing.keep_alive = false;
        }
    }
    if (opt.head_request && !framing.content_length && opt.body_size && !status_has_no_body(status))
        framing.content_length = opt.body_size;  // HEAD: say what GET would have sent

    // RFC 9112 §4: reason-phrase = *( HTAB / SP / VCHAR / obs-text ).
    for (unsigned char c : opt.reason)
        if (c != '\t' && (c < 0x20 || c == 0x7f))
            return {500, "response reason phrase contains CR, LF, NUL or another control byte"};
    const std::string_view reason = opt.reason.empty() ? reason_phrase(status) : opt.reason;
    // Status line, server, date, the operator's fields, the app's fields, content-length (20
    // digits at most), transfer-encoding, connection, the blank line: an upper bound, trimmed
    // at the end. Without defaults (no --header) the server line is a constant, whose copy the
    // compiler inlines: the common case costs one test more than before --header existed.
    const default_headers* d = opt.defaults && !opt.defaults->empty() ? opt.defaults : nullptr;
    const size_t added = d ? d->server_line.size() + d->lines.size() : k_server_line.size();
    const size_t old = out.size();
    out.resize(old + 15 + reason.size() + added + 37 + fields_size + 38 + 28 + 24 + 2);
    head_writer w{out.data() + old};
    const char code[4] = {static_cast<char>('0' + status / 100),
                          static_cast<char>('0' + status / 10 % 10),
                          static_cast<char>('0' + status % 10), ' '};
    w.put("HTTP/1.1 ");
    w.put({code, 4});
    w.put(reason);
    w.put("\r\n");
    if (opt.server_header && !app_server) {
        if (d)
            w.put(d->server_line);
        else
            w.put(k_server_line);
    }
    if (opt.date_header && !app_date) w.field("date", core::http_date());
    if (d) w.put(d->lines);  // pre-encoded at startup: one copy
    bool cl_written = false;
    for (const auto& f : fields) {
        // ASGI: the server owns framing; an app's transfer-encoding is ignored. Connection is
        // written by us below, once, so an app cannot send a contradictory pair.
        field_kind kind = classify(f.name);
        if (kind == field_kind::transfer_encoding || kind == field_kind::connection) continue;
        if (kind == field_kind::content_length) {
            if (status_has_no_body(status) && status != 304) continue;  // §8.6: not on 1xx/204
            if (cl_written) continue;
            cl_written = true;
        }
        w.field(f.name, f.value);
    }
    if (framing.content_length && !cl_written && !status_has_no_body(status)) {
        char digits[24];
        auto r = std::to_chars(digits, digits + sizeof digits, *framing.content_length);
        w.field("content-length", {digits, static_cast<size_t>(r.ptr - digits)});
    }
    if (framing.chunked) w.put("transfer-encoding: chunked\r\n");
    if (!framing.keep_alive) {
        w.put("connection: close\r\n");
    } else if (opt.minor_version == 0) {
        w.put("connection: keep-alive\r\n");
    }
    w.put("\r\n");
    out.resize(static_cast<size_t>(w.p - out.data()));
    if (status_has_no_body(status)) framing.content_length.reset();
    return {};
}

void encode_chunk(std::string& out, std::string_view data) {
    if (data.empty()) return;  // an empty chunk would be the last-chunk
    char buf[20];
    auto r = std::to_chars(buf, buf + sizeof buf, data.size(), 16);
    out.append(buf, static_cast<size_t>(r.ptr - buf));
    out.append("\r\n");
    out.append(data);
    out.append("\r\n");
}

std::string encode_error_response(int status, bool server_header, bool date_header,
                                  std::span<const http::field> extra,
                                  const default_headers* defaults) {
    std::string body(reason_phrase(status));
    body += '\n';
    std::string out;
    append_status_line(out, status);
    if (server_header) out.append(defaults ? defaults->server_line : k_server_line);
    if (date_header) append_field(out, "date", core::http_date());
    if (defaults) out.append(defaults->lines);
    for (const auto& f : extra)
        append_field(out, f.name, f.value);
    out.append("content-type: text/plain; charset=utf-8\r\nconnection: close\r\ncontent-length: ");
    append_number(out, body.size());
    out.append("\r\n\r\n");
    out.append(body);
    return out;
}

core::error encode_websocket_accept(std::string& out, std::string_view accept,
                                    std::string_view subprotocol, std::string_view extensions,
                                    std::span<const http::field> fields, bool server_header,
                                    bool date_header, const default_headers* defaults) {
    bool app_server = false, app_date = false;
    for (const auto& f : fields) {
        if (!is_token(f.name)) return {500, "response header name is not a valid token"};
        if (!valid_value(f.value))
            return {500, "response header value contains CR, LF, NUL or another control byte"};
        const field_kind kind = classify(f.name);
        const bool reserved =
            kind == field_kind::connection || kind == field_kind::content_length ||
            kind == field_kind::transfer_encoding || iequals(f.name, "upgrade") ||
            (f.name.size() > 14 && iequals(f.name.substr(0, 14), "sec-websocket-"));
        if (reserved)
            return {500,
                    "websocket.accept headers cannot set upgrade, connection, content-length, "
                    "transfer-encoding or sec-websocket-* (the server sets them; name a "
                    "subprotocol with the 'subprotocol' key)"};
        app_server = app_server || kind == field_kind::server;
        app_date = app_date || kind == field_kind::date;
    }
    out.append("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n");
    append_field(out, "sec-websocket-accept", accept);
    if (!subprotocol.empty()) append_field(out, "sec-websocket-protocol", subprotocol);
    if (!extensions.empty()) append_field(out, "sec-websocket-extensions", extensions);
    if (server_header && !app_server) out.append(defaults ? defaults->server_line : k_server_line);
    if (date_header && !app_date) append_field(out, "date", core::http_date());
    if (defaults) out.append(defaults->lines);
    for (const auto& f : fields)
        append_field(out, f.name, f.value);
    out.append("\r\n");
    return {};
}

}  // namespace coachwhip::http1
