// fuzz_ws_frame — libFuzzer target for the WebSocket read side: ws::frame_parser,
// ws::message_assembler, ws::utf8_validator and ws::inflater, wired as the engine will wire them.
//
// Input layout: two control bytes, then the payload.
//   byte 0, bits 0-1: 0 or 1 = the payload is raw client bytes;
//                     2 = the payload drives a builder of valid client traffic (text with valid
//                         UTF-8, binary, pings, fragments with control frames between them,
//                         compressed messages from ws::deflater or BFINAL-style ones from zlib,
//                         a closing close frame), then the raw checks run on what was built;
//                     3 = the payload is a byte string for the UTF-8 validator alone.
//   byte 0, bit 2:    permessage-deflate negotiated (RSV1 allowed, inflater in use)
//   byte 0, bits 3-4: limits: max_frame / max_message = 125 / 100, 4096 / 4096,
//                     65536 / 1 MiB, 1 MiB / 64
//   byte 0, bit 5:    no context takeover (client_no_context_takeover)
//   byte 0, bits 6-7: inflater output buffer: 1, 7, 512 or 65536 bytes
//   byte 1:           seeds the piece sizes and names the split point (payload size * b / 256)
//
// Checks on raw bytes (modes 0-2):
// - every payload view lies in the piece just fed; a frame's payload adds up to its declared
//   length, never more; the parser consumes what it says; errors carry a close code and a reason.
// - the frames (headers, unmasked payloads) and the frame-level error equal those of a naive
//   reference decoder written here from RFC 6455 §5.2, run over the whole input at once.
// - the events (frames, messages, control frames, the error code) are the same when the input is
//   fed whole, split at the fuzzer-chosen point, and cut into pieces of random sizes (1 byte up):
//   payload chunking may follow the reads, nothing else may.
// - delivered text messages are valid UTF-8 (checked with the one-shot is_valid_utf8); messages
//   respect max_message; control payloads are at most 125 bytes; close codes are valid ones.
// - the inflater never writes past its buffer, never hands out more than max_message bytes of
//   one message (bomb bound; 1009 exactly at the limit), and its memory stays under 64 KiB.
// Builder mode also checks that the built traffic comes out exactly as built, without error
// (false positives: a valid message rejected, a compressed message mangled).
// UTF-8 mode compares the validator with a naive decoder: same status, same failing byte (fail
// fast), whole or in random pieces.
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "ws/deflate.hpp"
#include "ws/frame.hpp"
#include "ws/utf8.hpp"

using namespace coachwhip::ws;

namespace {

struct config {
    frame_parser::options parser;
    message_assembler::options assembler;
    inflater::options inflate;
    size_t out_size = 512;
};

config make_config(uint8_t control) {
    config c;
    c.parser.rsv1_allowed = (control & 4) != 0;
    const uint64_t frames[] = {125, 4096, 65536, 1 << 20};
    const uint64_t messages[] = {100, 4096, 1 << 20, 64};
    c.parser.max_frame = frames[(control >> 3) & 3];
    c.assembler.max_message = messages[(control >> 3) & 3];
    c.inflate.max_message = c.assembler.max_message;
    c.inflate.no_context_takeover = (control & 32) != 0;
    const size_t outs[] = {1, 7, 512, 65536};
    c.out_size = outs[control >> 6];
    return c;
}

// ---- the pipeline under test ------------------------------------------------------------------

struct outcome {
    std::vector<std::string> frames;    // "op fin rsv1 len|payload" per completed frame
    std::vector<std::string> messages;  // "M op|data", "ping|..", "pong|..", "close code|reason"
    uint16_t error = 0;
    std::string_view reason;  // static strings: the same rule must fail whatever the split
    bool operator==(const outcome&) const = default;
};

bool inside(std::string_view part, const char* begin, size_t size) {
    return part.empty() || (part.data() >= begin && part.data() + part.size() <= begin + size);
}

std::string header_text(const frame_header& h) {
    return std::to_string(int(h.op)) + " " + std::to_string(h.fin) + " " + std::to_string(h.rsv1) +
           " " + std::to_string(h.length);
}

class pipeline {
  public:
    explicit pipeline(const config& c)
        : cfg_(c),
          parser_(c.parser),
          assembler_(c.assembler),
          inflater_(c.inflate),
          out_(new char[c.out_size]) {}

    // Feeds one piece (copied into an exact-size heap block, which the parser unmasks).
    void feed(std::string_view bytes) {
        if (failed()) return;
        std::unique_ptr<char[]> block(new char[std::max<size_t>(bytes.size(), 1)]);
        if (!bytes.empty()) std::memcpy(block.get(), bytes.data(), bytes.size());
        std::span<char> input(block.get(), bytes.size());
        for (;;) {
            const frame_parser::result r = parser_.parse(input);
            FUZZ_CHECK(r.consumed <= input.size());
            input = input.subspan(r.consumed);
            if (r.status == frame_parser::status::need_more) {
                FUZZ_CHECK(input.empty());
                return;
            }
            if (r.status == frame_parser::status::error) {
                fail(r.error);
                return;
            }
            if (r.status == frame_parser::status::header) {
                if (!start_frame(r.header)) return;
                continue;
            }
            FUZZ_CHECK(inside(r.payload, block.get(), bytes.size()));
            if (!take_payload(r.payload, r.frame_end)) return;
        }
    }

    const outcome& result() const { return out; }
    bool failed() const { return out.error != 0; }

  private:
    bool fail(const coachwhip::core::error& e) {
        FUZZ_CHECK(e.status != 0 && !e.reason.empty());
        FUZZ_CHECK(e.status == 1002 || e.status == 1007 || e.status == 1009);
        out.error = e.status;
        out.reason = e.reason;
        return false;
    }

    bool start_frame(const frame_header& h) {
        FUZZ_CHECK(h.masked && h.length <= cfg_.parser.max_frame);
        FUZZ_CHECK(h.length < (uint64_t{1} << 63));
        if (is_control(h.op)) FUZZ_CHECK(h.fin && h.length <= 125 && !h.rsv1);
        if (h.rsv1) FUZZ_CHECK(cfg_.parser.rsv1_allowed && h.op != opcode::continuation);
        header_ = h;
        frame_.clear();
        if (const auto e = assembler_.begin_frame(h)) return fail(e);
        return true;
    }

    bool take_payload(std::string_view p, bool end) {
        frame_ += p;
        FUZZ_CHECK(frame_.size() <= header_.length);
        FUZZ_CHECK(end == (frame_.size() == header_.length));
        FUZZ_CHECK(parser_.remaining() == header_.length - frame_.size());
        if (assembler_.in_control_frame()) {
            assembler_.control_data(p);
        } else if (assembler_.message_compressed()) {
            if (!inflate(p, end && header_.fin)) return false;
        } else {
            if (const auto e = assembler_.message_data(p)) return fail(e);
            message_ += p;
        }
        if (!end) return true;
        out.frames.push_back(header_text(header_) + "|" + frame_);
        const message_assembler::frame_end fe = assembler_.end_frame();
        if (fe.error) return fail(fe.error);
        record(fe.what);
        return true;
    }

    bool inflate(std::string_view in, bool last) {
        for (int round = 0;; ++round) {
            FUZZ_CHECK(round < (1 << 22));
            const inflater::result r = inflater_.inflate(in, {out_.get(), cfg_.out_size}, last);
            FUZZ_CHECK(r.consumed <= in.size() && r.produced <= cfg_.out_size);
            in.remove_prefix(r.consumed);
            inflated_ += r.produced;
            // The bomb bound: never more than the limit, even on the way to 1009.
            FUZZ_CHECK(inflated_ <= cfg_.inflate.max_message);
            FUZZ_CHECK(inflater_.memory() < 64 * 1024);
            if (r.status == inflater::status::error) {
                FUZZ_CHECK(r.error.status == 1007 || r.error.status == 1009);
                if (r.error.status == 1009) FUZZ_CHECK(inflated_ == cfg_.inflate.max_message);
                return fail(r.error);
            }
            const std::string_view produced(out_.get(), r.produced);
            if (const auto e = assembler_.message_data(produced)) return fail(e);
            message_ += produced;
            if (r.status == inflater::status::more_output) continue;
            FUZZ_CHECK(in.empty());
            FUZZ_CHECK(r.status ==
                       (last ? inflater::status::message_end : inflater::status::need_input));
            if (!last) return true;
            inflated_ = 0;
            // Between messages without context takeover the state can go, and comes back.
            if (cfg_.inflate.no_context_takeover) {
                FUZZ_CHECK(inflater_.release() && inflater_.memory() == 0);
            }
            return true;
        }
    }

    void record(message_assembler::completed what) {
        using c = message_assembler::completed;
        switch (what) {
            case c::fragment: return;
            case c::message: {
                const opcode op = assembler_.message_opcode();
                FUZZ_CHECK(op == opcode::text || op == opcode::binary);
                FUZZ_CHECK(message_.size() <= cfg_.assembler.max_message);
                FUZZ_CHECK(message_.size() == assembler_.message_size());
                if (op == opcode::text) FUZZ_CHECK(is_valid_utf8(message_));
                out.messages.push_back("M " + std::to_string(int(op)) + "|" + message_);
                message_.clear();
                return;
            }
            case c::ping:
            case c::pong:
                FUZZ_CHECK(assembler_.control_payload() == frame_);
                out.messages.push_back((what == c::ping ? "ping|" : "pong|") + frame_);
                return;
            case c::close: {
                const close_info& ci = assembler_.received_close();
                FUZZ_CHECK(frame_.empty() ? ci.code == close_code::no_status
                                          : is_valid_close_code(ci.code));
                FUZZ_CHECK(is_valid_utf8(ci.reason) && ci.reason.size() + 2 <= 125);
                out.messages.push_back("close " + std::to_string(ci.code) + "|" +
                                       std::string(ci.reason));
                return;
            }
        }
    }

    config cfg_;
    frame_parser parser_;
    message_assembler assembler_;
    inflater inflater_;
    std::unique_ptr<char[]> out_;
    frame_header header_{};
    std::string frame_, message_;
    uint64_t inflated_ = 0;
    outcome out;
};

outcome drive(std::string_view input, const std::vector<size_t>& cuts, const config& c) {
    pipeline p(c);
    size_t from = 0;
    for (size_t to : cuts) {
        p.feed(input.substr(from, to - from));
        from = to;
    }
    p.feed(input.substr(from));
    return p.result();
}

// ---- reference frame decoder (RFC 6455 §5.2, whole input at once) -----------------------------

struct ref_result {
    std::vector<std::string> frames;  // as outcome::frames
    uint16_t error = 0;
};

// Decodes frames until an error or the end of the input; checks are made at the same byte as
// the spec allows knowing them (the parser's documented fail-fast points).
ref_result reference_frames(std::string_view in, const frame_parser::options& o) {
    ref_result r;
    const auto* u = reinterpret_cast<const unsigned char*>(in.data());
    size_t i = 0;
    for (;;) {
        if (i >= in.size()) return r;
        const unsigned b0 = u[i];
        const unsigned op = b0 & 15;
        const bool control = op >= 8;
        if ((op > 2 && op < 8) || op > 10 || (b0 & 0x30) != 0) return r.error = 1002, r;
        if ((b0 & 0x40) && (!o.rsv1_allowed || control || op == 0)) return r.error = 1002, r;
        if (control && !(b0 & 0x80)) return r.error = 1002, r;
        if (i + 1 >= in.size()) return r;
        const unsigned b1 = u[i + 1];
        if (!(b1 & 0x80)) return r.error = 1002, r;
        const unsigned len7 = b1 & 127;
        const size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
        if (ext == 8 && i + 2 < in.size() && (u[i + 2] & 0x80)) return r.error = 1002, r;
        if (i + 2 + ext > in.size()) return r;
        uint64_t len = len7;
        if (ext != 0) {
            len = 0;
            for (size_t k = 0; k < ext; ++k)
                len = len << 8 | u[i + 2 + k];
        }
        if (control && len > 125) return r.error = 1002, r;
        if (len > o.max_frame) return r.error = 1009, r;
        const size_t head = 2 + ext + 4;
        if (i + head > in.size()) return r;
        const unsigned char* key = u + i + 2 + ext;
        const size_t have = std::min<uint64_t>(len, in.size() - i - head);
        std::string payload;
        for (size_t k = 0; k < have; ++k)
            payload += static_cast<char>(u[i + head + k] ^ key[k % 4]);
        if (have < len) return r;  // the frame is not complete
        frame_header h;
        h.op = static_cast<opcode>(op);
        h.fin = (b0 & 0x80) != 0;
        h.rsv1 = (b0 & 0x40) != 0;
        h.length = len;
        r.frames.push_back(header_text(h) + "|" + payload);
        i += head + len;
    }
}

// The parser alone (no assembler), for comparison with the reference.
ref_result parser_frames(std::string_view input, const frame_parser::options& o) {
    ref_result r;
    frame_parser p(o);
    std::string copy(input);
    std::span<char> in(copy.data(), copy.size());
    std::string payload;
    frame_header h;
    for (;;) {
        const auto res = p.parse(in);
        in = in.subspan(res.consumed);
        if (res.status == frame_parser::status::need_more) return r;
        if (res.status == frame_parser::status::error) {
            r.error = res.error.status;
            return r;
        }
        if (res.status == frame_parser::status::header) {
            h = res.header;
            payload.clear();
            continue;
        }
        payload += res.payload;
        if (res.frame_end) r.frames.push_back(header_text(h) + "|" + payload);
    }
}

// FUZZ_TRACE=1: the events of a run, for reading a failure.
std::string show(const std::string& s) {
    std::string out;
    for (unsigned char ch : s.substr(0, 80))
        out += ch >= 0x20 && ch < 0x7F ? std::string(1, static_cast<char>(ch))
                                       : "\\x" + std::to_string(ch);
    return out + (s.size() > 80 ? "...(" + std::to_string(s.size()) + ")" : "");
}

void trace(const char* what, const outcome& o) {
    if (std::getenv("FUZZ_TRACE") == nullptr) return;
    std::fprintf(stderr, "%s:\n", what);
    for (const std::string& f : o.frames)
        std::fprintf(stderr, "  frame: %s\n", show(f).c_str());
    for (const std::string& m : o.messages)
        std::fprintf(stderr, "  got:   %s\n", show(m).c_str());
    std::fprintf(stderr, "  error: %u %.*s\n", o.error, static_cast<int>(o.reason.size()),
                 o.reason.data());
}

// ---- the raw checks ---------------------------------------------------------------------------

void check_raw(std::string_view input, const config& c, uint8_t split_byte) {
    const outcome whole = drive(input, {}, c);
    // Frames against the reference (as far as the assembler let the pipeline go).
    const ref_result ref = reference_frames(input, c.parser);
    const ref_result alone = parser_frames(input, c.parser);
    FUZZ_CHECK(ref.frames == alone.frames && ref.error == alone.error);
    FUZZ_CHECK(whole.frames.size() <= ref.frames.size());
    FUZZ_CHECK(std::equal(whole.frames.begin(), whole.frames.end(), ref.frames.begin()));
    if (whole.error == 0) FUZZ_CHECK(whole.frames == ref.frames && ref.error == 0);
    if (ref.error != 0 && whole.frames.size() == ref.frames.size())
        FUZZ_CHECK(whole.error != 0);  // the parser error, or an assembler error before it
    // Split invariance: at the chosen point, then in random pieces.
    const size_t at = input.size() * split_byte / 256;
    trace("whole", whole);
    const outcome split = drive(input, {at}, c);
    trace(("split at " + std::to_string(at)).c_str(), split);
    FUZZ_CHECK(split == whole);
    coachwhip_fuzz::rng rng(split_byte * 0x9E3779B97F4A7C15ull + input.size());
    std::vector<size_t> cuts;
    for (size_t pos = 0; pos < input.size();) {
        pos += rng.one_in(4) ? 1 : rng.between(1, 64);
        if (pos < input.size()) cuts.push_back(pos);
    }
    FUZZ_CHECK(drive(input, cuts, c) == whole);
}

// ---- builder of valid traffic -----------------------------------------------------------------

struct reader {
    std::string_view in;
    uint8_t byte() {
        if (in.empty()) return 0;
        const auto b = static_cast<uint8_t>(in[0]);
        in.remove_prefix(1);
        return b;
    }
    std::string bytes(size_t n) {
        std::string s;
        for (size_t i = 0; i < n; ++i)
            s += static_cast<char>(byte());
        return s;
    }
};

void append_utf8(std::string& s, uint32_t cp) {
    if (cp < 0x80) {
        s += static_cast<char>(cp);
    } else if (cp < 0x800) {
        s += static_cast<char>(0xC0 | cp >> 6);
        s += static_cast<char>(0x80 | (cp & 63));
    } else if (cp < 0x10000) {
        s += static_cast<char>(0xE0 | cp >> 12);
        s += static_cast<char>(0x80 | ((cp >> 6) & 63));
        s += static_cast<char>(0x80 | (cp & 63));
    } else {
        s += static_cast<char>(0xF0 | cp >> 18);
        s += static_cast<char>(0x80 | ((cp >> 12) & 63));
        s += static_cast<char>(0x80 | ((cp >> 6) & 63));
        s += static_cast<char>(0x80 | (cp & 63));
    }
}

// Valid UTF-8 of about `n` bytes, with code points of every length (surrogates avoided).
std::string build_text(reader& rd, size_t n) {
    std::string s;
    while (s.size() < n) {
        const uint8_t b = rd.byte();
        uint32_t cp;
        switch (b & 3) {
            case 0: cp = b >> 2; break;
            case 1: cp = 0x80 + (uint32_t(b) << 3); break;
            case 2: cp = 0xE000 + (uint32_t(b) << 5); break;
            default: cp = 0x10000 + (uint32_t(b) << 12) + rd.byte(); break;
        }
        append_utf8(s, cp);
    }
    return s;
}

std::string client_frame(uint8_t b0, std::string_view payload, reader& rd) {
    frame_header h;
    h.fin = (b0 & 0x80) != 0;
    h.rsv1 = (b0 & 0x40) != 0;
    h.op = static_cast<opcode>(b0 & 15);
    h.masked = true;
    h.length = payload.size();
    for (uint8_t& m : h.mask)
        m = rd.byte();
    std::array<char, k_max_header_size> head{};
    std::string out(head.data(), encode_frame_header(h, head));
    std::string body(payload);
    apply_mask(std::span<char>(body.data(), body.size()), h.mask, 0);
    return out + body;
}

// A message compressed with BFINAL and one trailing 0x00, as RFC 7692 §7.2.3.4 shows; from its
// own zlib stream, so it refers to nothing before it.
std::string bfinal_compress(std::string_view msg) {
    z_stream z{};
    FUZZ_CHECK(deflateInit2(&z, 6, Z_DEFLATED, -9, 4, Z_DEFAULT_STRATEGY) == Z_OK);
    std::string out(deflateBound(&z, msg.size()) + 8, '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(msg.data()));
    z.avail_in = static_cast<uInt>(msg.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    FUZZ_CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END);
    out.resize(out.size() - z.avail_out);
    deflateEnd(&z);
    return out + '\0';
}

struct built {
    std::string stream;
    std::vector<std::string> messages;  // as outcome::messages
};

built build(reader& rd, const config& c) {
    built b;
    const bool deflate_on = c.parser.rsv1_allowed;
    deflater::options dopt;
    dopt.window_bits = static_cast<uint8_t>(8 + rd.byte() % 8);
    dopt.mem_level = static_cast<uint8_t>(1 + rd.byte() % 9);
    dopt.level = rd.byte() % 10;
    // A receiver that resets its window can only read a sender that resets too.
    dopt.no_context_takeover = c.inflate.no_context_takeover || (rd.byte() & 1);
    deflater def(dopt);
    const unsigned count = 1 + rd.byte() % 8;
    for (unsigned m = 0; m < count && !rd.in.empty(); ++m) {
        const uint8_t kind = rd.byte() % 8;
        size_t len = rd.byte();
        if (rd.byte() % 4 == 0) len *= 37;
        if (kind >= 6) {  // a ping or a pong on its own
            const std::string p = rd.bytes(len % 126);
            b.stream += client_frame(kind == 6 ? 0x89 : 0x8A, p, rd);
            b.messages.push_back((kind == 6 ? "ping|" : "pong|") + p);
            continue;
        }
        const bool is_text = kind < 3;
        const std::string msg = is_text ? build_text(rd, len) : rd.bytes(len);
        const uint8_t how = rd.byte();
        const bool compressed = deflate_on && (how & 1);
        std::string payload = msg;
        if (compressed && dopt.no_context_takeover && (how & 2)) {
            payload = bfinal_compress(msg);
        } else if (compressed) {
            // In one call or two (Z_NO_FLUSH, then the flush).
            payload.clear();
            const size_t part = (how & 0x80) ? msg.size() / 2 : 0;
            const std::string_view m = msg;
            if (part > 0) FUZZ_CHECK(!def.compress(m.substr(0, part), false, payload));
            FUZZ_CHECK(!def.compress(m.substr(part), true, payload));
            FUZZ_CHECK(!payload.empty());  // never an empty payload (RFC 7692 §7.2.3.6)
            if (dopt.no_context_takeover) FUZZ_CHECK(def.release() && def.memory() == 0);
        }
        if (msg.size() > c.assembler.max_message) return b;  // would be refused: stop here
        // Fragments, with control frames between some of them.
        const unsigned pieces = 1 + (how >> 2) % 4;
        size_t at = 0;
        for (unsigned k = 0; k < pieces; ++k) {
            const bool last = k + 1 == pieces;
            const size_t n =
                last ? payload.size() - at : std::min(payload.size() - at, size_t{rd.byte()});
            const uint8_t op = k == 0 ? (is_text ? 1 : 2) : 0;
            const uint8_t b0 =
                static_cast<uint8_t>((last ? 0x80 : 0) | (k == 0 && compressed ? 0x40 : 0) | op);
            if (n > c.parser.max_frame) return b;  // would be refused: stop here
            b.stream += client_frame(b0, std::string_view(payload).substr(at, n), rd);
            at += n;
            if (!last && (rd.byte() & 3) == 0) {
                const std::string p = rd.bytes(rd.byte() % 20);
                b.stream += client_frame(0x89, p, rd);
                b.messages.push_back("ping|" + p);
            }
        }
        b.messages.push_back("M " + std::to_string(is_text ? 1 : 2) + "|" + msg);
    }
    if (rd.byte() & 1) {
        const uint16_t codes[] = {1000, 1001, 1003, 1008, 1011, 1014, 3000, 4999};
        const uint16_t code = codes[rd.byte() % 8];
        const std::string reason = build_text(rd, rd.byte() % 60);
        const close_payload cp = encode_close_payload(code, reason);
        b.stream += client_frame(0x88, cp.view(), rd);
        b.messages.push_back("close " + std::to_string(code) + "|" +
                             std::string(cp.view().substr(2)));
    }
    return b;
}

// ---- UTF-8 against a naive decoder ------------------------------------------------------------

// Index of the first byte after which no continuation can make `s` valid, or npos; sets
// `complete` when `s` is valid and ends on a boundary. Decodes the long way (RFC 3629 §3, §4).
size_t naive_utf8_fail(std::string_view s, bool& complete) {
    complete = false;
    const auto* u = reinterpret_cast<const unsigned char*>(s.data());
    size_t i = 0;
    while (i < s.size()) {
        const unsigned b = u[i];
        if (b < 0x80) {
            ++i;
            continue;
        }
        const size_t len = (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
        if (len == 0 || b == 0xC0 || b == 0xC1 || b > 0xF4) return i;
        // The second byte's range depends on the lead (overlongs, surrogates, > U+10FFFF).
        unsigned lo = 0x80, hi = 0xBF;
        if (b == 0xE0) lo = 0xA0;
        if (b == 0xED) hi = 0x9F;
        if (b == 0xF0) lo = 0x90;
        if (b == 0xF4) hi = 0x8F;
        for (size_t k = 1; k < len; ++k) {
            if (i + k >= s.size()) return std::string_view::npos;  // incomplete
            const unsigned c = u[i + k];
            if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) return i + k;
        }
        i += len;
    }
    complete = true;
    return std::string_view::npos;
}

void check_utf8(std::string_view s, uint8_t seed) {
    bool complete = false;
    const size_t fail = naive_utf8_fail(s, complete);
    const utf8_status expect = fail != std::string_view::npos ? utf8_status::invalid
                               : complete                     ? utf8_status::valid
                                                              : utf8_status::incomplete;
    utf8_validator whole;
    FUZZ_CHECK(whole.feed(s) == expect);
    FUZZ_CHECK(is_valid_utf8(s) == (expect == utf8_status::valid));
    // Fail fast: the prefix just before the failing byte is not invalid, the one with it is.
    if (fail != std::string_view::npos) {
        utf8_validator before, with;
        FUZZ_CHECK(before.feed(s.substr(0, fail)) != utf8_status::invalid);
        FUZZ_CHECK(with.feed(s.substr(0, fail + 1)) == utf8_status::invalid);
    }
    coachwhip_fuzz::rng rng(seed + s.size() * 31);
    utf8_validator pieces;
    utf8_status st = utf8_status::valid;
    for (size_t at = 0; at < s.size();) {
        const size_t n = rng.between(1, 20);
        st = pieces.feed(s.substr(at, n));
        at += n;
    }
    FUZZ_CHECK(st == expect || (s.empty() && st == utf8_status::valid));
    const size_t cut = utf8_truncate(s, seed % (s.size() + 1));
    if (expect == utf8_status::valid) FUZZ_CHECK(is_valid_utf8(s.substr(0, cut)));
}

// FUZZ_TRACE=1: what was built, for reading a failure.
void trace(const built& b) {
    if (std::getenv("FUZZ_TRACE") == nullptr) return;
    std::fprintf(stderr, "built %zu bytes, %zu messages\n", b.stream.size(), b.messages.size());
    for (const std::string& m : b.messages)
        std::fprintf(stderr, "  built: %s\n", show(m).c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 2) return 0;
    const uint8_t control = data[0], split = data[1];
    const std::string_view payload(reinterpret_cast<const char*>(data) + 2, size - 2);
    const config c = make_config(control);
    switch (control & 3) {
        case 2: {
            reader rd{payload};
            const built b = build(rd, c);
            const outcome o = drive(b.stream, {}, c);
            trace(b);
            trace("built stream", o);
            FUZZ_CHECK(o.error == 0);
            FUZZ_CHECK(o.messages == b.messages);
            check_raw(b.stream, c, split);
            break;
        }
        case 3: check_utf8(payload, split); break;
        default: check_raw(payload, c, split); break;
    }
    return 0;
}
