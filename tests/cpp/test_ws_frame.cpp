// Tests for ws::frame_parser, ws::message_assembler, encode_frame_header and the close payload
// helpers (src/ws/frame.cpp).
//
// Every input goes through the parser and the assembler whole, split in two at every byte
// position, and one byte at a time. Each piece sits in its own exact-size heap block (ASan
// catches an over-read, and the parser unmasks in place, so a write outside the piece would be
// caught too). The result is an event log - headers, each frame's payload joined, message and
// control frame ends, the error - that must be identical for every split.
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ws/frame.hpp"

namespace coachwhip::ws::test {
namespace {

using namespace std::string_literals;

constexpr std::array<uint8_t, 4> k_mask = {0x37, 0xfa, 0x21, 0x3d};  // RFC 6455 §5.7's key

// ---- builders ---------------------------------------------------------------------------------

enum class len_form { minimal, in16, in64 };

// A client frame: `b0` is FIN/RSV/opcode, the payload is masked with `mask`. `declared` overrides
// the length field (for lies and huge lengths; the payload is then whatever is given).
std::string client_frame(uint8_t b0, std::string_view payload, len_form form = len_form::minimal,
                         std::array<uint8_t, 4> mask = k_mask, bool masked = true,
                         std::optional<uint64_t> declared = std::nullopt) {
    const uint64_t len = declared.value_or(payload.size());
    std::string out(1, static_cast<char>(b0));
    const char m = masked ? '\x80' : 0;
    if (form == len_form::minimal && len <= 125) {
        out += static_cast<char>(m | static_cast<char>(len));
    } else if (form != len_form::in64 && len <= 0xFFFF) {
        out += static_cast<char>(m | 126);
        out += static_cast<char>(len >> 8);
        out += static_cast<char>(len & 0xFF);
    } else {
        out += static_cast<char>(m | 127);
        for (int i = 7; i >= 0; --i)
            out += static_cast<char>((len >> (8 * i)) & 0xFF);
    }
    std::string body(payload);
    if (masked) {
        out.append(reinterpret_cast<const char*>(mask.data()), 4);
        for (size_t i = 0; i < body.size(); ++i)
            body[i] = static_cast<char>(body[i] ^ mask[i % 4]);
    }
    return out + body;
}

std::string text(std::string_view p, bool fin = true) { return client_frame(fin ? 0x81 : 0x01, p); }
std::string binary(std::string_view p, bool fin = true) {
    return client_frame(fin ? 0x82 : 0x02, p);
}
std::string cont(std::string_view p, bool fin = true) { return client_frame(fin ? 0x80 : 0x00, p); }
std::string ping(std::string_view p) { return client_frame(0x89, p); }
std::string pong(std::string_view p) { return client_frame(0x8A, p); }
std::string close_frame(std::string_view p) { return client_frame(0x88, p); }
std::string close_with(uint16_t code, std::string_view reason = {}) {
    return close_frame(std::string{static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)} +
                       std::string(reason));
}

// ---- the driver -------------------------------------------------------------------------------

struct run_options {
    frame_parser::options parser{};
    message_assembler::options assembler{};
};

std::string printable(std::string_view s) {
    std::string out;
    for (unsigned char c : s) {
        if (c >= 0x20 && c < 0x7F && c != '\\') {
            out += static_cast<char>(c);
        } else {
            static const char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

const char* op_name(opcode op) {
    switch (op) {
        case opcode::continuation: return "cont";
        case opcode::text: return "text";
        case opcode::binary: return "binary";
        case opcode::close: return "close";
        case opcode::ping: return "ping";
        case opcode::pong: return "pong";
    }
    return "?";
}

bool inside(std::string_view part, const char* begin, size_t size) {
    return part.empty() || (part.data() >= begin && part.data() + part.size() <= begin + size);
}

// Feeds `bytes` cut at `cuts` through a parser and an assembler; returns the event log.
std::vector<std::string> run(std::string_view bytes, const std::vector<size_t>& cuts,
                             const run_options& o = {}) {
    frame_parser parser(o.parser);
    message_assembler assembler(o.assembler);
    std::vector<std::string> log;
    std::string frame_payload, message;
    uint64_t declared = 0;
    std::vector<size_t> ends = cuts;
    ends.push_back(bytes.size());
    size_t from = 0;
    bool failed = false;
    const auto error = [&](const core::error& e) {
        log.push_back("error " + std::to_string(e.status));
        EXPECT_FALSE(e.reason.empty());
        failed = true;
    };
    for (size_t to : ends) {
        if (failed) break;
        const size_t n = to - from;
        std::unique_ptr<char[]> block(new char[std::max<size_t>(n, 1)]);
        std::memcpy(block.get(), bytes.data() + from, n);
        from = to;
        std::span<char> input(block.get(), n);
        for (int guard = 0; guard < 100000 && !failed; ++guard) {
            const frame_parser::result r = parser.parse(input);
            EXPECT_LE(r.consumed, input.size());
            input = input.subspan(r.consumed);
            if (r.status == frame_parser::status::need_more) {
                EXPECT_TRUE(input.empty());
                break;
            }
            if (r.status == frame_parser::status::error) {
                error(r.error);
                break;
            }
            if (r.status == frame_parser::status::header) {
                const frame_header& h = r.header;
                EXPECT_TRUE(h.masked);
                log.push_back("header " + std::string(op_name(h.op)) +
                              " fin=" + std::to_string(h.fin) + " rsv1=" + std::to_string(h.rsv1) +
                              " len=" + std::to_string(h.length));
                declared = h.length;
                frame_payload.clear();
                if (const core::error e = assembler.begin_frame(h)) error(e);
                continue;
            }
            EXPECT_TRUE(inside(r.payload, block.get(), n));
            frame_payload += r.payload;
            EXPECT_LE(frame_payload.size(), declared);
            if (assembler.in_control_frame()) {
                assembler.control_data(r.payload);
            } else if (const core::error e = assembler.message_data(r.payload)) {
                log.push_back("data so far " + printable(frame_payload));
                error(e);
                break;
            } else {
                message += r.payload;
            }
            if (!r.frame_end) continue;
            EXPECT_EQ(frame_payload.size(), declared);
            log.push_back("payload " + printable(frame_payload));
            const message_assembler::frame_end end = assembler.end_frame();
            if (end.error) {
                error(end.error);
                break;
            }
            using c = message_assembler::completed;
            switch (end.what) {
                case c::fragment: break;
                case c::message:
                    log.push_back("message " + std::string(op_name(assembler.message_opcode())) +
                                  " " + printable(message));
                    message.clear();
                    break;
                case c::ping:
                    log.push_back("ping " + printable(assembler.control_payload()));
                    break;
                case c::pong:
                    log.push_back("pong " + printable(assembler.control_payload()));
                    break;
                case c::close:
                    log.push_back("close " + std::to_string(assembler.received_close().code) + " " +
                                  printable(assembler.received_close().reason));
                    break;
            }
        }
    }
    if (!failed && parser.remaining() > 0 && !frame_payload.empty())
        log.push_back("partial " + printable(frame_payload));
    return log;
}

std::string joined(const std::vector<std::string>& log) {
    std::string s;
    for (const std::string& e : log)
        s += e + "\n";
    return s;
}

// The log for the whole input, checked to be the same for every split.
std::vector<std::string> run_every_split(std::string_view bytes, const run_options& o = {}) {
    const std::vector<std::string> whole = run(bytes, {}, o);
    for (size_t k = 0; k <= bytes.size(); ++k)
        EXPECT_EQ(joined(run(bytes, {k}, o)), joined(whole)) << "split at " << k;
    std::vector<size_t> each;
    for (size_t k = 1; k < bytes.size(); ++k)
        each.push_back(k);
    EXPECT_EQ(joined(run(bytes, each, o)), joined(whole)) << "one byte at a time";
    return whole;
}

void expect_log(std::string_view bytes, const std::vector<std::string>& expected,
                const run_options& o = {}) {
    EXPECT_EQ(joined(run_every_split(bytes, o)), joined(expected));
}

// ---- RFC 6455 §5.7 examples -------------------------------------------------------------------

TEST(ws_frame, Rfc6455MaskedTextHello) {
    const std::string f = "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    EXPECT_EQ(f, text("Hello"));
    expect_log(f, {"header text fin=1 rsv1=0 len=5", "payload Hello", "message text Hello"});
}

TEST(ws_frame, Rfc6455MaskedPong) {
    expect_log("\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58",
               {"header pong fin=1 rsv1=0 len=5", "payload Hello", "pong Hello"});
}

TEST(ws_frame, Rfc6455UnmaskedExamplesAreRejectedFromAClient) {
    expect_log("\x81\x05\x48\x65\x6c\x6c\x6f", {"error 1002"});          // single-frame text
    expect_log("\x01\x03\x48\x65\x6c\x80\x02\x6c\x6f", {"error 1002"});  // fragmented text
    expect_log("\x89\x05\x48\x65\x6c\x6c\x6f", {"error 1002"});          // ping
}

TEST(ws_frame, Rfc6455FragmentedTextMasked) {
    expect_log(text("Hel", false) + cont("lo"),
               {"header text fin=0 rsv1=0 len=3", "payload Hel", "header cont fin=1 rsv1=0 len=2",
                "payload lo", "message text Hello"});
}

TEST(ws_frame, Rfc6455LengthForms256And65536) {
    const std::string p256(256, 'x');
    const std::string f = client_frame(0x82, p256);
    EXPECT_EQ(f.substr(0, 4), "\x82\xfe\x01\x00"s);
    expect_log(f,
               {"header binary fin=1 rsv1=0 len=256", "payload " + p256, "message binary " + p256});
    const std::string p64k(65536, 'y');
    const std::string g = client_frame(0x82, p64k);
    EXPECT_EQ(g.substr(0, 10), "\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00"s);
    // One split (not every one: 64 KiB squared is too slow) and the whole.
    const auto whole = run(g, {});
    ASSERT_EQ(whole.size(), 3u);
    EXPECT_EQ(whole[0], "header binary fin=1 rsv1=0 len=65536");
    for (size_t k : {1, 2, 5, 9, 13, 14, 15, 1000, 65549})
        EXPECT_EQ(joined(run(g, {k})), joined(whole));
}

// ---- single-frame rules -----------------------------------------------------------------------

TEST(ws_frame, EmptyFramesGiveOneEmptyPayload) {
    expect_log(text("") + binary("") + ping("") + close_frame(""),
               {"header text fin=1 rsv1=0 len=0", "payload ", "message text ",
                "header binary fin=1 rsv1=0 len=0", "payload ", "message binary ",
                "header ping fin=1 rsv1=0 len=0", "payload ", "ping ",
                "header close fin=1 rsv1=0 len=0", "payload ", "close 1005 "});
}

TEST(ws_frame, NonMinimalLengthsAreAccepted) {
    expect_log(client_frame(0x81, "Hi", len_form::in16),
               {"header text fin=1 rsv1=0 len=2", "payload Hi", "message text Hi"});
    expect_log(client_frame(0x81, "Hi", len_form::in64),
               {"header text fin=1 rsv1=0 len=2", "payload Hi", "message text Hi"});
    expect_log(client_frame(0x89, "p", len_form::in16),
               {"header ping fin=1 rsv1=0 len=1", "payload p", "ping p"});
}

TEST(ws_frame, UnmaskedFrameIs1002) {
    expect_log(client_frame(0x81, "Hello", len_form::minimal, k_mask, false), {"error 1002"});
    // The error shows at byte 1, before any payload: a prefix of 2 bytes already fails.
    EXPECT_EQ(joined(run("\x81\x05"s, {})), "error 1002\n");
}

TEST(ws_frame, ReservedBitsAre1002) {
    expect_log(client_frame(0xC1, "x"), {"error 1002"});  // RSV1 without permessage-deflate
    expect_log(client_frame(0xA1, "x"), {"error 1002"});  // RSV2
    expect_log(client_frame(0x91, "x"), {"error 1002"});  // RSV3
    run_options deflate;
    deflate.parser.rsv1_allowed = true;
    // (The assembler does not inflate: the payload passes as is.)
    expect_log(client_frame(0xC1, "x"),
               {"header text fin=1 rsv1=1 len=1", "payload x", "message text x"}, deflate);
    expect_log(client_frame(0xA1, "x"), {"error 1002"}, deflate);
    // RFC 7692 §6.1: RSV1 only on the first frame of a data message.
    expect_log(client_frame(0xC9, "x"), {"error 1002"}, deflate);  // ping
    expect_log(client_frame(0x41, "a") + client_frame(0xC0, "b"),
               {"header text fin=0 rsv1=1 len=1", "payload a", "error 1002"}, deflate);
}

TEST(ws_frame, ReservedOpcodesAre1002) {
    for (uint8_t op : {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF})
        expect_log(client_frame(static_cast<uint8_t>(0x80 | op), "x"), {"error 1002"});
}

TEST(ws_frame, ControlFrameRules) {
    expect_log(ping(std::string(125, 'p')),
               {"header ping fin=1 rsv1=0 len=125", "payload " + std::string(125, 'p'),
                "ping " + std::string(125, 'p')});
    expect_log(client_frame(0x89, std::string(126, 'p')), {"error 1002"});  // > 125
    expect_log(client_frame(0x09, "p"), {"error 1002"});                    // fragmented ping
    expect_log(client_frame(0x08, ""), {"error 1002"});                     // fragmented close
    expect_log(client_frame(0x8A, std::string(126, 'p'), len_form::in16), {"error 1002"});
}

TEST(ws_frame, SixtyFourBitLengthWithHighBitIs1002) {
    const std::string f = client_frame(0x82, "", len_form::in64, k_mask, true, 1ull << 63);
    expect_log(f, {"error 1002"});
    // Decided at the first length byte.
    EXPECT_EQ(joined(run(f.substr(0, 3), {})), "error 1002\n");
}

TEST(ws_frame, FrameOverTheLimitIs1009BeforeItsPayload) {
    run_options o;
    o.parser.max_frame = 10;
    expect_log(
        binary("0123456789"),
        {"header binary fin=1 rsv1=0 len=10", "payload 0123456789", "message binary 0123456789"},
        o);
    expect_log(binary("0123456789a"), {"error 1009"}, o);
    // A 2^62-byte frame is refused from its header alone.
    const std::string huge = client_frame(0x82, "", len_form::in64, k_mask, true, 1ull << 62);
    expect_log(huge.substr(0, 10), {"error 1009"});
}

TEST(ws_frame, PayloadArrivesInChunksAsItComes) {
    frame_parser p;
    std::string f = text("Hello, world");
    std::span<char> all(f.data(), f.size());
    auto r = p.parse(all.first(8));  // the 6-byte header and 2 payload bytes
    ASSERT_EQ(r.status, frame_parser::status::header);
    EXPECT_EQ(r.consumed, 6u);
    r = p.parse(all.subspan(6, 2));
    ASSERT_EQ(r.status, frame_parser::status::payload);
    EXPECT_EQ(r.payload, "He");
    EXPECT_FALSE(r.frame_end);
    EXPECT_EQ(p.remaining(), 10u);
    r = p.parse(all.subspan(8, 0));
    EXPECT_EQ(r.status, frame_parser::status::need_more);
    r = p.parse(all.subspan(8));
    ASSERT_EQ(r.status, frame_parser::status::payload);
    EXPECT_EQ(r.payload, "llo, world");
    EXPECT_TRUE(r.frame_end);
    // The payload was unmasked in place, in the caller's buffer.
    EXPECT_EQ(std::string_view(f).substr(6), "Hello, world");
}

TEST(ws_frame, ErrorsAreSticky) {
    frame_parser p;
    std::string bad = "\x81\x05"s;
    auto r = p.parse(std::span<char>(bad.data(), bad.size()));
    ASSERT_EQ(r.status, frame_parser::status::error);
    EXPECT_EQ(r.consumed, 1u);  // byte 1 is the bad one
    std::string good = text("x");
    r = p.parse(std::span<char>(good.data(), good.size()));
    EXPECT_EQ(r.status, frame_parser::status::error);
    EXPECT_EQ(r.error.status, 1002);
}

// ---- fragmentation (RFC 6455 §5.4; Autobahn 5.x) ----------------------------------------------

TEST(ws_assembler, ContinuationWithoutAMessageIs1002) {
    expect_log(cont("x"), {"header cont fin=1 rsv1=0 len=1", "error 1002"});
    expect_log(text("a") + cont("b"),
               {"header text fin=1 rsv1=0 len=1", "payload a", "message text a",
                "header cont fin=1 rsv1=0 len=1", "error 1002"});
}

TEST(ws_assembler, NewDataFrameInsideAFragmentedMessageIs1002) {
    expect_log(text("a", false) + text("b"), {"header text fin=0 rsv1=0 len=1", "payload a",
                                              "header text fin=1 rsv1=0 len=1", "error 1002"});
    expect_log(binary("a", false) + binary("b", false),
               {"header binary fin=0 rsv1=0 len=1", "payload a", "header binary fin=0 rsv1=0 len=1",
                "error 1002"});
}

TEST(ws_assembler, ControlFramesBetweenFragments) {
    expect_log(text("Hel", false) + ping("p1") + cont("l", false) + pong("") + cont("o"),
               {"header text fin=0 rsv1=0 len=3", "payload Hel", "header ping fin=1 rsv1=0 len=2",
                "payload p1", "ping p1", "header cont fin=0 rsv1=0 len=1", "payload l",
                "header pong fin=1 rsv1=0 len=0", "payload ", "pong ",
                "header cont fin=1 rsv1=0 len=1", "payload o", "message text Hello"});
}

TEST(ws_assembler, EmptyFragments) {
    expect_log(binary("", false) + cont("", false) + cont(""),
               {"header binary fin=0 rsv1=0 len=0", "payload ", "header cont fin=0 rsv1=0 len=0",
                "payload ", "header cont fin=1 rsv1=0 len=0", "payload ", "message binary "});
}

TEST(ws_assembler, MessageOverTheLimitIs1009AtTheHeader) {
    run_options o;
    o.assembler.max_message = 5;
    expect_log(text("abc", false) + cont("de"),
               {"header text fin=0 rsv1=0 len=3", "payload abc", "header cont fin=1 rsv1=0 len=2",
                "payload de", "message text abcde"},
               o);
    expect_log(text("abc", false) + cont("def"),
               {"header text fin=0 rsv1=0 len=3", "payload abc", "header cont fin=1 rsv1=0 len=3",
                "error 1009"},
               o);
    // The count starts again with each message.
    expect_log(text("abcde") + text("fghij"),
               {"header text fin=1 rsv1=0 len=5", "payload abcde", "message text abcde",
                "header text fin=1 rsv1=0 len=5", "payload fghij", "message text fghij"},
               o);
}

// ---- UTF-8 across fragments (RFC 6455 §8.1; Autobahn 6.x) -------------------------------------

TEST(ws_assembler, TextSplitInsideACodePointAcrossFragments) {
    // U+20AC (E2 82 AC) cut after its first and second byte.
    expect_log(text("\xe2", false) + cont("\x82", false) + cont("\xac"),
               {"header text fin=0 rsv1=0 len=1", "payload \\xe2", "header cont fin=0 rsv1=0 len=1",
                "payload \\x82", "header cont fin=1 rsv1=0 len=1", "payload \\xac",
                "message text \\xe2\\x82\\xac"});
}

TEST(ws_assembler, InvalidUtf8FailsFastInTheFirstFragment) {
    // Autobahn 6.4.1-like: the first fragment already holds an impossible sequence (F4 90); the
    // error comes with it, before the rest of the message exists.
    expect_log(text("\xce\xba\xf4\x90", false), {"header text fin=0 rsv1=0 len=4",
                                                 "data so far \\xce\\xba\\xf4\\x90", "error 1007"});
}

TEST(ws_assembler, InvalidUtf8InsideAFrameFailsBeforeItsEnd) {
    // The whole frame is never delivered: the error shows with the chunk that holds \xff.
    const std::string f = text("abc\xff" + std::string(100, 'z'));
    const auto log = run(f, {});
    ASSERT_EQ(log.size(), 3u);
    EXPECT_EQ(log.back(), "error 1007");
    // With the frame cut right after the bad byte, the error comes before the rest arrives.
    const auto early = run(f.substr(0, 6 + 4), {});
    EXPECT_EQ(early.back(), "error 1007");
}

TEST(ws_assembler, TextEndingInsideACodePointIs1007) {
    expect_log(text("ab\xe2\x82"),
               {"header text fin=1 rsv1=0 len=4", "payload ab\\xe2\\x82", "error 1007"});
    // Binary messages are not checked.
    expect_log(binary("ab\xe2\x82"), {"header binary fin=1 rsv1=0 len=4", "payload ab\\xe2\\x82",
                                      "message binary ab\\xe2\\x82"});
}

// ---- close frames (RFC 6455 §5.5.1, §7.4; Autobahn 7.x) ---------------------------------------

TEST(ws_assembler, CloseFrames) {
    expect_log(close_with(1000, "bye"),
               {"header close fin=1 rsv1=0 len=5", "payload \\x03\\xe8bye", "close 1000 bye"});
    expect_log(close_frame("\x03"), {"header close fin=1 rsv1=0 len=1", "payload \\x03",
                                     "error 1002"});  // 1-byte payload
    expect_log(close_with(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"),
               {"header close fin=1 rsv1=0 len=13",
                "payload \\x03\\xe8\\xce\\xba\\xe1\\xbd\\xb9\\xcf\\x83\\xce\\xbc\\xce\\xb5",
                "close 1000 \\xce\\xba\\xe1\\xbd\\xb9\\xcf\\x83\\xce\\xbc\\xce\\xb5"});
    expect_log(
        close_with(1000, "\xed\xa0\x80"),
        {"header close fin=1 rsv1=0 len=5", "payload \\x03\\xe8\\xed\\xa0\\x80", "error 1007"});
}

TEST(ws_assembler, CloseCodes) {
    for (uint16_t code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
                          3000, 3999, 4000, 4999}) {
        EXPECT_TRUE(is_valid_close_code(code)) << code;
        const auto log = run_every_split(close_with(code));
        EXPECT_EQ(log.back(), "close " + std::to_string(code) + " ") << code;
    }
    for (uint16_t code : {0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
        EXPECT_FALSE(is_valid_close_code(code)) << code;
        EXPECT_EQ(run_every_split(close_with(code)).back(), "error 1002") << code;
    }
}

TEST(ws_assembler, NothingAfterClose) {
    expect_log(close_with(1000) + text("late"),
               {"header close fin=1 rsv1=0 len=2", "payload \\x03\\xe8", "close 1000 ",
                "header text fin=1 rsv1=0 len=4", "error 1002"});
}

TEST(ws_assembler, CloseBetweenFragmentsIsAccepted) {
    expect_log(text("a", false) + close_with(1001),
               {"header text fin=0 rsv1=0 len=1", "payload a", "header close fin=1 rsv1=0 len=2",
                "payload \\x03\\xe9", "close 1001 "});
}

// ---- close payload helpers --------------------------------------------------------------------

TEST(ws_close_payload, DecodeAndEncode) {
    EXPECT_EQ(decode_close_payload("").code, close_code::no_status);
    EXPECT_FALSE(decode_close_payload("").error);
    EXPECT_EQ(decode_close_payload("\x03").error.status, 1002);
    const close_info c = decode_close_payload("\x0f\xa0reason");
    EXPECT_EQ(c.code, 4000);
    EXPECT_EQ(c.reason, "reason");
    EXPECT_EQ(decode_close_payload("\x03\xe8\xff").error.status, 1007);
    EXPECT_EQ(decode_close_payload("\x03\xec").error.status, 1002);  // 1004

    EXPECT_EQ(encode_close_payload(1000, "bye").view(),
              "\x03\xe8"
              "bye");
    EXPECT_EQ(encode_close_payload(close_code::no_status, "ignored").view(), "");
    EXPECT_EQ(encode_close_payload(4999, "").view(), "\x13\x87");
}

TEST(ws_close_payload, ReasonIsCutAtACodePointToFit125Bytes) {
    const std::string fits(123, 'a');
    EXPECT_EQ(encode_close_payload(1000, fits).size, 125u);
    EXPECT_EQ(encode_close_payload(1000, fits + "b").size, 125u);
    // 122 ASCII bytes then a 2-byte character: it would end at byte 124 of the reason; it goes.
    const close_payload p = encode_close_payload(1000, std::string(122, 'a') + "\xc3\xa9");
    EXPECT_EQ(p.size, 124u);
    EXPECT_TRUE(is_valid_utf8(p.view().substr(2)));
    // Every cut of a reason full of 3- and 4-byte characters decodes back as valid.
    std::string reason;
    while (reason.size() < 300)
        reason += "\xe2\x82\xac\xf0\x9f\x98\x80";
    for (size_t n = 0; n <= reason.size(); ++n) {
        const std::string_view valid = std::string_view(reason).substr(0, utf8_truncate(reason, n));
        const close_payload q = encode_close_payload(1001, valid);
        EXPECT_LE(q.size, 125u);
        const close_info back = decode_close_payload(q.view());
        EXPECT_FALSE(back.error) << n;
        EXPECT_EQ(back.code, 1001);
    }
}

// ---- encode_frame_header ----------------------------------------------------------------------

std::string header_of(const frame_header& h) {
    std::array<char, k_max_header_size> buf{};
    return std::string(buf.data(), encode_frame_header(h, buf));
}

TEST(ws_encode, Rfc6455ServerFrames) {
    frame_header h;
    h.op = opcode::text;
    h.length = 5;
    EXPECT_EQ(header_of(h), "\x81\x05");  // "Hello", single frame
    h.fin = false;
    h.length = 3;
    EXPECT_EQ(header_of(h), "\x01\x03");  // "Hel"
    h.fin = true;
    h.op = opcode::continuation;
    h.length = 2;
    EXPECT_EQ(header_of(h), "\x80\x02"s);  // "lo"
    h.op = opcode::ping;
    h.length = 5;
    EXPECT_EQ(header_of(h), "\x89\x05");
    h.op = opcode::binary;
    h.length = 256;
    EXPECT_EQ(header_of(h), "\x82\x7e\x01\x00"s);
    h.length = 65536;
    EXPECT_EQ(header_of(h), "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"s);
    h.op = opcode::text;
    h.rsv1 = true;
    h.length = 7;
    EXPECT_EQ(header_of(h), "\xc1\x07");  // RFC 7692 §7.2.3.1
}

TEST(ws_encode, LengthBoundaries) {
    const std::pair<uint64_t, size_t> cases[] = {{0, 2},
                                                 {125, 2},
                                                 {126, 4},
                                                 {65535, 4},
                                                 {65536, 10},
                                                 {1ull << 32, 10},
                                                 {(1ull << 63) - 1, 10}};
    for (const auto& [len, size] : cases) {
        frame_header h;
        h.length = len;
        EXPECT_EQ(header_of(h).size(), size) << len;
        h.masked = true;
        h.mask = {1, 2, 3, 4};
        const std::string masked = header_of(h);
        EXPECT_EQ(masked.size(), size + 4) << len;
        // The parser reads back what the encoder wrote (the payload itself is not needed).
        frame_parser::options o;
        o.max_frame = ~uint64_t{0};
        frame_parser p(o);
        std::string copy = masked;
        const auto r = p.parse(std::span<char>(copy.data(), copy.size()));
        ASSERT_EQ(r.status, frame_parser::status::header) << len;
        EXPECT_EQ(r.consumed, masked.size());
        EXPECT_EQ(r.header.length, len);
        EXPECT_EQ(r.header.mask, h.mask);
        EXPECT_EQ(r.header.op, opcode::binary);
    }
}

// ---- apply_mask -------------------------------------------------------------------------------

TEST(ws_mask, MatchesTheBytewiseDefinitionAtEveryOffsetAndLength) {
    const std::array<uint8_t, 4> key = {0x12, 0x34, 0x56, 0x78};
    for (size_t offset = 0; offset < 8; ++offset) {
        for (size_t n = 0; n < 40; ++n) {
            std::string data;
            for (size_t i = 0; i < n; ++i)
                data += static_cast<char>(i * 7 + 1);
            std::unique_ptr<char[]> block(new char[std::max<size_t>(n, 1)]);
            std::memcpy(block.get(), data.data(), n);
            const size_t next = apply_mask(std::span<char>(block.get(), n), key, offset);
            EXPECT_EQ(next, (offset + n) % 4);
            for (size_t i = 0; i < n; ++i)
                ASSERT_EQ(static_cast<uint8_t>(block[i]),
                          static_cast<uint8_t>(data[i] ^ key[(offset + i) % 4]))
                    << offset << " " << n << " " << i;
        }
    }
}

}  // namespace
}  // namespace coachwhip::ws::test
