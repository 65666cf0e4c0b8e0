// fuzz_parser — libFuzzer target for http1::parse_request_head and http1::analyze_request.
//
// Input: the raw bytes a client sent at the start of a connection. Each input is parsed twice
// over: once with the default limits and once with tiny limits taken from its first three bytes
// (so 414 and 431 are reachable with short inputs), and every parse is checked against the
// contract in parser.hpp:
// - views: every string_view of a complete head lies inside the head; header fields fill the
//   caller's storage from its start; head_length <= input size; the head ends with CRLF CRLF.
// - prefixes: the parser keeps no state, so a prefix of the input is either incomplete or gets
//   exactly the full input's answer (same status, reason, head). Prefixes are parsed from the
//   end of an exact-size heap block, so any read past the prefix is an ASan report.
// - copies: the result is identical when re-parsed from an exact-size heap copy.
// - limits: tighter limits can only turn an answer into 414/431, never into a different 400
//   or a different head (limits truncate the scan; they never change how a byte is read).
// For complete heads analyze_request is checked against an oracle of the smuggling rules
// (ATTACKS.md A and C): framing comes from exactly one well-formed Content-Length or exactly
// one "Transfer-Encoding: chunked", never both; HTTP/1.1 needs exactly one Host.
#include <algorithm>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "http1/message.hpp"
#include "http1/parser.hpp"

using namespace coachwhip::http1;

namespace {

constexpr size_t k_storage = 128;  // more than the default max_headers (100)

// A parse result with offsets instead of pointers, comparable across buffers.
struct snapshot {
    parse_status status = parse_status::incomplete;
    size_t head_length = 0;
    uint16_t error_status = 0;
    std::string_view reason;
    size_t method_off = 0, method_len = 0, target_off = 0, target_len = 0;
    int minor = 0;
    std::vector<size_t> fields;  // name offset, name length, value offset, value length, ...

    bool operator==(const snapshot&) const = default;
};

struct parse_config {
    limits lim;
    size_t storage;  // header slots handed to the parser (may be fewer than lim.max_headers)
};

size_t offset_in(std::string_view part, std::string_view whole) {
    return static_cast<size_t>(part.data() - whole.data());
}

bool inside(std::string_view part, std::string_view whole) {
    return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

bool is_token_view(std::string_view s) { return is_token(s); }

// Structural checks on one complete head; `head` is input.substr(0, head_length).
void check_complete(const request_head& out, std::string_view head, const parse_config& cfg,
                    const header_field* storage) {
    FUZZ_CHECK(head.size() >= 16);  // "M / HTTP/1.1\r\n\r\n" is the shortest possible head
    FUZZ_CHECK(head.substr(head.size() - 4) == "\r\n\r\n");
    FUZZ_CHECK(head.size() <= cfg.lim.max_head);
    FUZZ_CHECK(inside(out.method, head) && inside(out.target, head));
    FUZZ_CHECK(out.method.data() == head.data() && is_token_view(out.method));
    FUZZ_CHECK(!out.target.empty());
    for (unsigned char c : out.target)
        FUZZ_CHECK(c > 0x20 && c < 0x7f);
    FUZZ_CHECK(out.minor_version == 0 || out.minor_version == 1);
    // The request line is bounded by max_request_line (its CRLF is not counted).
    const size_t line_len = head.find("\r\n");
    FUZZ_CHECK(line_len <= cfg.lim.max_request_line);
    FUZZ_CHECK(out.headers.data() == storage || out.headers.empty());
    FUZZ_CHECK(out.headers.size() <= std::min(cfg.storage, cfg.lim.max_headers));
    for (const header_field& f : out.headers) {
        FUZZ_CHECK(inside(f.name, head) && inside(f.value, head));
        FUZZ_CHECK(is_token_view(f.name));
        FUZZ_CHECK(f.value.data() > f.name.data() + f.name.size());  // the colon sits between
        for (unsigned char c : f.value)
            FUZZ_CHECK(c != '\r' && c != '\n' && c != 0);
        if (!f.value.empty()) {
            FUZZ_CHECK(f.value.front() != ' ' && f.value.front() != '\t');
            FUZZ_CHECK(f.value.back() != ' ' && f.value.back() != '\t');
        }
    }
    // CRLF only: every LF is preceded by CR and every CR is followed by LF.
    for (size_t i = 0; i < head.size(); ++i) {
        if (head[i] == '\n') FUZZ_CHECK(i > 0 && head[i - 1] == '\r');
        if (head[i] == '\r') FUZZ_CHECK(i + 1 < head.size() && head[i + 1] == '\n');
    }
}

snapshot parse_checked(std::string_view input, const parse_config& cfg) {
    header_field storage[k_storage];
    request_head out;
    const parse_result r =
        parse_request_head(input, out, std::span<header_field>(storage, cfg.storage), cfg.lim);
    snapshot s;
    s.status = r.status;
    switch (r.status) {
        case parse_status::complete: {
            FUZZ_CHECK(r.head_length > 0 && r.head_length <= input.size());
            const std::string_view head = input.substr(0, r.head_length);
            check_complete(out, head, cfg, storage);
            s.head_length = r.head_length;
            s.method_off = offset_in(out.method, input);
            s.method_len = out.method.size();
            s.target_off = offset_in(out.target, input);
            s.target_len = out.target.size();
            s.minor = out.minor_version;
            for (const header_field& f : out.headers) {
                s.fields.insert(s.fields.end(), {offset_in(f.name, input), f.name.size(),
                                                 offset_in(f.value, input), f.value.size()});
            }
            break;
        }
        case parse_status::incomplete:
            // Past max_head the answer is known (431) whatever follows; same for a request line
            // past max_request_line (+1: its CR may sit just past the limit).
            FUZZ_CHECK(input.size() <= cfg.lim.max_head);
            if (input.find('\n') == std::string_view::npos)
                FUZZ_CHECK(input.size() <= cfg.lim.max_request_line + 1);
            break;
        case parse_status::error: {
            const uint16_t st = r.error.status;
            FUZZ_CHECK(st == 400 || st == 414 || st == 431 || st == 505);
            FUZZ_CHECK(!r.error.reason.empty());
            if (st == 414) FUZZ_CHECK(input.size() > cfg.lim.max_request_line);
            s.error_status = st;
            s.reason = r.error.reason;
            break;
        }
    }
    return s;
}

// The prefix lengths worth checking: all of them for short inputs; otherwise the bytes around
// every line ending (where the parser changes state), around the limits, and a spread.
std::vector<size_t> prefix_lengths(std::string_view input, const parse_config& cfg,
                                   const snapshot& full) {
    const size_t n = input.size();
    std::vector<size_t> ks;
    if (n <= 96) {
        for (size_t k = 0; k < n; ++k)
            ks.push_back(k);
        return ks;
    }
    size_t line_ends = 0;
    for (size_t i = 0; i < n && line_ends < 32; ++i) {
        if (input[i] != '\r' && input[i] != '\n') continue;
        ++line_ends;
        ks.insert(ks.end(), {i, i + 1, i + 2});
    }
    for (size_t lim : {cfg.lim.max_request_line, cfg.lim.max_head, full.head_length})
        ks.insert(ks.end(), {lim - 1, lim, lim + 1});
    for (size_t i = 0; i < 16; ++i)
        ks.push_back(n * i / 16);
    std::sort(ks.begin(), ks.end());
    ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
    ks.erase(std::remove_if(ks.begin(), ks.end(), [n](size_t k) { return k >= n; }), ks.end());
    return ks;
}

void check_prefixes(std::string_view input, const parse_config& cfg, const snapshot& full) {
    const size_t n = input.size();
    if (n == 0) return;
    // One block of exactly n bytes; prefix k is copied to its end, so byte k of the prefix is
    // the redzone after the allocation.
    auto block = std::make_unique<char[]>(n);
    for (size_t k : prefix_lengths(input, cfg, full)) {
        char* at = block.get() + (n - k);
        std::memcpy(at, input.data(), k);
        const snapshot s = parse_checked(std::string_view(at, k), cfg);
        if (full.status == parse_status::complete && k < full.head_length) {
            FUZZ_CHECK(s.status == parse_status::incomplete);  // a prefix of a valid head
        } else if (full.status == parse_status::complete) {
            FUZZ_CHECK(s == full);  // the whole head is there: the same head
        } else if (s.status != parse_status::incomplete) {
            FUZZ_CHECK(s == full);  // the same error (or head) as the whole input
        }
    }
}

snapshot check_config(std::string_view input, const parse_config& cfg) {
    const snapshot full = parse_checked(input, cfg);
    // An exact-size heap copy: nothing readable past the end, and the same answer.
    auto copy = std::make_unique<char[]>(std::max<size_t>(input.size(), 1));
    std::memcpy(copy.get(), input.data(), input.size());
    FUZZ_CHECK(parse_checked(std::string_view(copy.get(), input.size()), cfg) == full);
    check_prefixes(input, cfg, full);
    return full;
}

// ---- analyze_request oracle ---------------------------------------------------------------

struct field_counts {
    int content_length = 0, transfer_encoding = 0, host = 0;
    std::string_view cl_value, te_value, host_value;
};

field_counts count_fields(const request_head& head) {
    field_counts c;
    for (const header_field& f : head.headers) {
        if (iequals(f.name, "content-length")) {
            ++c.content_length;
            c.cl_value = f.value;
        } else if (iequals(f.name, "transfer-encoding")) {
            ++c.transfer_encoding;
            c.te_value = f.value;
        } else if (iequals(f.name, "host")) {
            ++c.host;
            c.host_value = f.value;
        }
    }
    return c;
}

bool same_info(const request_info& a, const request_info& b) {
    return a.framing == b.framing && a.content_length == b.content_length &&
           a.keep_alive == b.keep_alive && a.expect_continue == b.expect_continue &&
           a.upgrade == b.upgrade && a.host.data() == b.host.data() &&
           a.host.size() == b.host.size() && a.error.status == b.error.status &&
           a.error.reason == b.error.reason;
}

void check_analysis(const request_head& head, std::string_view input) {
    const request_info info = analyze_request(head);
    FUZZ_CHECK(same_info(info, analyze_request(head)));  // pure: same head, same verdict
    const field_counts c = count_fields(head);
    if (info.error) {
        const uint16_t st = info.error.status;
        FUZZ_CHECK(st == 400 || st == 417 || st == 501);
        FUZZ_CHECK(!info.error.reason.empty());
        FUZZ_CHECK(info.framing == body_framing::none);
        return;
    }
    // Accepted: exactly one reading of the framing (RFC 9112 §6.3).
    FUZZ_CHECK(!(c.content_length > 0 && c.transfer_encoding > 0));
    FUZZ_CHECK(c.content_length <= 1 && c.transfer_encoding <= 1 && c.host <= 1);
    if (head.minor_version == 1) FUZZ_CHECK(c.host == 1);
    if (head.minor_version == 0) FUZZ_CHECK(c.transfer_encoding == 0);
    switch (info.framing) {
        case body_framing::none:
            FUZZ_CHECK(c.content_length == 0 && c.transfer_encoding == 0);
            break;
        case body_framing::chunked:
            FUZZ_CHECK(c.transfer_encoding == 1 && iequals(c.te_value, "chunked"));
            break;
        case body_framing::content_length: {
            FUZZ_CHECK(c.content_length == 1);
            const std::string_view v = c.cl_value;
            FUZZ_CHECK(!v.empty() && v.size() <= 19);
            uint64_t n = 0;
            for (char ch : v) {
                FUZZ_CHECK(ch >= '0' && ch <= '9');
                n = n * 10 + static_cast<uint64_t>(ch - '0');
            }
            FUZZ_CHECK(n == info.content_length && n <= uint64_t{INT64_MAX});
            break;
        }
    }
    FUZZ_CHECK(info.host.data() == c.host_value.data() && info.host.size() == c.host_value.size());
    if (!info.host.empty()) FUZZ_CHECK(inside(info.host, input));
    FUZZ_CHECK(head.target.find('#') == std::string_view::npos);
    if (head.target == "*") FUZZ_CHECK(head.method == "OPTIONS");
    if (info.expect_continue) FUZZ_CHECK(head.minor_version == 1);
    if (info.upgrade) FUZZ_CHECK(head.minor_version == 1);
}

void analyze_if_complete(std::string_view input, const parse_config& cfg) {
    header_field storage[k_storage];
    request_head out;
    const parse_result r =
        parse_request_head(input, out, std::span<header_field>(storage, cfg.storage), cfg.lim);
    if (r.status == parse_status::complete) check_analysis(out, input);
}

// Limits derived from the first three bytes: always below the defaults in every dimension.
parse_config tiny_config(std::string_view input) {
    const auto b = [&](size_t i) { return static_cast<unsigned char>(input[i]); };
    parse_config cfg;
    cfg.lim.max_request_line = b(0);
    cfg.lim.max_head = size_t{b(1)} * 2;
    cfg.lim.max_headers = b(2) & 0x0f;
    cfg.storage = b(2) >> 4;
    return cfg;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    const parse_config defaults{limits{}, k_storage};
    const snapshot wide = check_config(input, defaults);
    analyze_if_complete(input, defaults);
    if (size < 3) return 0;

    const parse_config tiny = tiny_config(input);
    const snapshot narrow = check_config(input, tiny);
    analyze_if_complete(input, tiny);
    // Tighter limits only truncate the scan: they may add a 414/431, nothing else.
    const bool narrow_limit_error = narrow.status == parse_status::error &&
                                    (narrow.error_status == 414 || narrow.error_status == 431);
    if (!narrow_limit_error && narrow.status != parse_status::incomplete)
        FUZZ_CHECK(narrow == wide);
    if (narrow.status == parse_status::incomplete)
        FUZZ_CHECK(wide.status == parse_status::incomplete);
    if (wide.status == parse_status::error) FUZZ_CHECK(narrow.status == parse_status::error);
    return 0;
}
