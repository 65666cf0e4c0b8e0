// fuzz_chunked — libFuzzer target for http1::chunked_decoder (RFC 9112 §7.1).
//
// Input layout: three control bytes, then the bytes that follow a request head.
//   byte 0: piece sizes for the split run: 1 + rng() % (1 + byte0), so 0 means one byte a time
//   byte 1: seed of the piece-size PRNG
//   byte 2: limits: 0 = defaults; otherwise max_line = 1 + (low nibble) * 8 and
//           max_trailers = 1 + (high nibble) * 16
// Checks:
// - the same stream decoded whole, in pieces, and one byte at a time gives identical body bytes,
//   final status, error (status and reason) and total bytes consumed: a decoder that depended
//   on where TCP split the stream could be made to read one body two ways;
// - each call honours the contract in chunked.hpp: data is non-empty, lies inside the input
//   and ends where `consumed` says; need_more consumes everything; errors are sticky; done
//   stays done; decoded bytes never exceed the input;
// - a reference decoder for the subset without extensions and trailers agrees on accept,
//   reject, body and end position (ATTACKS.md A: sizes that are not 1*HEXDIG, data not followed
//   by CRLF, bare CR/LF, 64-bit overflow);
// - round trip: the stream's bytes encoded with http1::encode_chunk (the response side) decode
//   back to the same bytes.
#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "http1/chunked.hpp"
#include "http1/response.hpp"

using namespace coachwhip::http1;
using coachwhip_fuzz::rng;
using status = chunked_decoder::status;

namespace {

struct outcome {
    std::string body;
    status final = status::need_more;
    uint16_t error_status = 0;
    std::string_view reason;
    size_t consumed = 0;  // bytes of the stream used, up to the end of the message or the error

    bool operator==(const outcome&) const = default;
};

// One decode() call, checked against the contract.
chunked_decoder::result checked_decode(chunked_decoder& dec, std::string_view input) {
    const chunked_decoder::result r = dec.decode(input);
    FUZZ_CHECK(r.consumed <= input.size());
    switch (r.status) {
        case status::data:
            FUZZ_CHECK(!r.data.empty());
            FUZZ_CHECK(r.data.data() >= input.data());
            FUZZ_CHECK(r.data.data() + r.data.size() == input.data() + r.consumed);
            break;
        case status::need_more:
            FUZZ_CHECK(r.consumed == input.size());
            FUZZ_CHECK(!dec.finished());
            break;
        case status::done: FUZZ_CHECK(dec.finished()); break;
        case status::error:
            FUZZ_CHECK(r.error.status == 400 || r.error.status == 431);
            FUZZ_CHECK(!r.error.reason.empty());
            FUZZ_CHECK(!dec.finished());
            break;
    }
    return r;
}

// Feeds `pieces` in order, each until the decoder needs more; stops at done or error.
outcome decode_pieces(const std::vector<std::string_view>& pieces, chunked_decoder::limits lim) {
    chunked_decoder dec(lim);
    outcome o;
    for (std::string_view original : pieces) {
        // Each piece in its own exact-size heap block: a read past its end is an ASan report.
        const auto copy = std::make_unique<char[]>(std::max<size_t>(original.size(), 1));
        std::memcpy(copy.get(), original.data(), original.size());
        std::string_view piece(copy.get(), original.size());
        for (;;) {
            const auto r = checked_decode(dec, piece);
            o.consumed += r.consumed;
            piece.remove_prefix(r.consumed);
            if (r.status == status::data) {
                o.body.append(r.data);
                continue;
            }
            o.final = r.status;
            if (r.status == status::need_more) break;
            if (r.status == status::error) {
                o.error_status = r.error.status;
                o.reason = r.error.reason;
                // Sticky: the stream cannot be resynchronised, whatever comes next.
                const auto again = dec.decode("0\r\n\r\n");
                FUZZ_CHECK(again.status == status::error && again.consumed == 0);
                FUZZ_CHECK(again.error.status == r.error.status &&
                           again.error.reason == r.error.reason);
            } else {
                // Done: the bytes after the message belong to the next request.
                const auto again = dec.decode("5\r\nhello\r\n");
                FUZZ_CHECK(again.status == status::done && again.consumed == 0);
            }
            return o;
        }
    }
    return o;
}

std::vector<std::string_view> split(std::string_view s, size_t max_piece, rng& r) {
    std::vector<std::string_view> pieces;
    while (!s.empty()) {
        const size_t n = std::min(s.size(), r.between(1, max_piece));
        pieces.push_back(s.substr(0, n));
        s.remove_prefix(n);
    }
    return pieces;
}

// ---- reference decoder: chunks without extensions, no trailer fields -----------------------

enum class ref_verdict { done, incomplete, invalid, unsupported };

struct ref_outcome {
    ref_verdict verdict = ref_verdict::incomplete;
    std::string body;
    size_t consumed = 0;
};

int hex_digit(unsigned char b) {
    if (b >= '0' && b <= '9') return b - '0';
    if (b >= 'a' && b <= 'f') return b - 'a' + 10;
    if (b >= 'A' && b <= 'F') return b - 'A' + 10;
    return -1;
}

// Written from RFC 9112 §7.1 and the limits in chunked.hpp, independently of chunked.cpp:
//   chunked-body = *chunk last-chunk trailer-section CRLF
//   chunk = chunk-size CRLF chunk-data CRLF; chunk-size = 1*HEXDIG (value <= 2^63-1)
// A size line longer than max_line bytes (before its CR) is invalid. Anything outside the
// subset (whitespace or ';' after the size, a trailer field) is "unsupported": no claim.
ref_outcome ref_decode(std::string_view s, size_t max_line) {
    ref_outcome o;
    size_t p = 0;
    const auto end = [&](ref_verdict v) {
        o.verdict = v;
        o.consumed = p;
        return o;
    };
    const auto expect = [&](char want) -> int {  // 1 ok, 0 end of input, -1 mismatch
        if (p == s.size()) return 0;
        if (s[p] != want) return -1;
        ++p;
        return 1;
    };
    for (;;) {
        uint64_t size = 0;
        size_t digits = 0;
        for (;;) {
            if (p == s.size()) return end(ref_verdict::incomplete);
            const unsigned char b = static_cast<unsigned char>(s[p]);
            if (b == '\r') break;
            if (digits == max_line) return end(ref_verdict::invalid);  // line too long
            const int v = hex_digit(b);
            if (v < 0) {
                if (digits > 0 && (b == ' ' || b == '\t' || b == ';'))
                    return end(ref_verdict::unsupported);
                return end(ref_verdict::invalid);
            }
            if (size > (uint64_t{INT64_MAX} - static_cast<uint64_t>(v)) / 16)
                return end(ref_verdict::invalid);
            size = size * 16 + static_cast<uint64_t>(v);
            ++digits;
            ++p;
        }
        if (digits == 0) return end(ref_verdict::invalid);
        ++p;  // CR
        if (int e = expect('\n'); e <= 0)
            return end(e ? ref_verdict::invalid : ref_verdict::incomplete);
        if (size == 0) break;
        const size_t have = std::min<uint64_t>(size, s.size() - p);
        o.body.append(s.substr(p, have));
        p += have;
        if (have < size) return end(ref_verdict::incomplete);
        for (char want : {'\r', '\n'})
            if (int e = expect(want); e <= 0)
                return end(e ? ref_verdict::invalid : ref_verdict::incomplete);
    }
    if (p < s.size() && s[p] != '\r') return end(ref_verdict::unsupported);  // trailer fields
    for (char want : {'\r', '\n'})
        if (int e = expect(want); e <= 0)
            return end(e ? ref_verdict::invalid : ref_verdict::incomplete);
    return end(ref_verdict::done);
}

void check_against_reference(std::string_view stream, const outcome& whole) {
    const ref_outcome ref = ref_decode(stream, chunked_decoder::limits{}.max_line);
    switch (ref.verdict) {
        case ref_verdict::done:
            FUZZ_CHECK(whole.final == status::done);
            FUZZ_CHECK(whole.body == ref.body && whole.consumed == ref.consumed);
            break;
        case ref_verdict::incomplete:
            FUZZ_CHECK(whole.final == status::need_more);
            FUZZ_CHECK(whole.body == ref.body);
            break;
        case ref_verdict::invalid: FUZZ_CHECK(whole.final == status::error); break;
        case ref_verdict::unsupported: break;
    }
}

// ---- round trip through the response-side encoder -------------------------------------------

void check_round_trip(std::string_view payload, rng& r) {
    std::string encoded;
    for (std::string_view piece : split(payload, 1 + r.between(0, 300), r))
        encode_chunk(encoded, piece);
    encoded.append(last_chunk);
    encoded.append("GET /next");  // the next request: must not be consumed
    const outcome o = decode_pieces({encoded}, chunked_decoder::limits{});
    FUZZ_CHECK(o.final == status::done);
    FUZZ_CHECK(o.body == payload);
    FUZZ_CHECK(o.consumed == encoded.size() - 9);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 3) return 0;
    const std::string_view stream(reinterpret_cast<const char*>(data) + 3, size - 3);
    chunked_decoder::limits lim;
    if (data[2] != 0) {
        lim.max_line = 1 + (data[2] & 0x0f) * 8u;
        lim.max_trailers = 1 + (data[2] >> 4) * 16u;
    }
    rng r(data[1] * 0x100000001ull + data[0]);

    const outcome whole = decode_pieces({stream}, lim);
    FUZZ_CHECK(whole.body.size() <= stream.size());
    FUZZ_CHECK(whole.consumed <= stream.size());
    if (whole.final == status::done) FUZZ_CHECK(stream.substr(whole.consumed - 2, 2) == "\r\n");
    if (whole.final == status::need_more) FUZZ_CHECK(whole.consumed == stream.size());

    FUZZ_CHECK(decode_pieces(split(stream, 1 + size_t{data[0]}, r), lim) == whole);
    if (stream.size() <= 4096) FUZZ_CHECK(decode_pieces(split(stream, 1, r), lim) == whole);
    if (data[2] == 0) check_against_reference(stream, whole);
    check_round_trip(stream, r);
    return 0;
}
