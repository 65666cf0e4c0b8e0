// Tests for ws::inflater and ws::deflater (src/ws/deflate.cpp), alone and behind the frame
// parser and message assembler.
//
// The compressed inputs are inflated whole, split in two at every byte position and one byte at
// a time, into output buffers of several sizes down to one byte: the message must come out the
// same every time. The RFC 7692 §7.2.3 examples are checked byte for byte, and bombs must stop
// at the limit without ever producing more than limit + 1 bytes.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "ws/deflate.hpp"
#include "ws/frame.hpp"

namespace coachwhip::ws::test {
namespace {

using namespace std::string_literals;

std::string hex(std::string_view s) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s) {
        if (!out.empty()) out += ' ';
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

struct inflated {
    std::string data;
    core::error error;
    size_t max_produced = 0;  // the largest single result.produced
};

// Inflates one message given as `pieces` (the last one ends the message) into a buffer of
// `out_size` bytes. Each piece is an exact-size heap copy.
inflated inflate_pieces(inflater& inf, const std::vector<std::string_view>& pieces,
                        size_t out_size) {
    inflated res;
    std::unique_ptr<char[]> out(new char[out_size]);
    for (size_t i = 0; i < pieces.size(); ++i) {
        const bool last = i + 1 == pieces.size();
        std::unique_ptr<char[]> block(new char[std::max<size_t>(pieces[i].size(), 1)]);
        if (!pieces[i].empty()) std::memcpy(block.get(), pieces[i].data(), pieces[i].size());
        std::string_view in(block.get(), pieces[i].size());
        for (int guard = 0;; ++guard) {
            if (guard > 10000000) {
                ADD_FAILURE() << "inflate does not progress";
                return res;
            }
            const inflater::result r = inf.inflate(in, std::span<char>(out.get(), out_size), last);
            EXPECT_LE(r.consumed, in.size());
            EXPECT_LE(r.produced, out_size);
            in.remove_prefix(r.consumed);
            res.max_produced = std::max(res.max_produced, r.produced);
            if (r.status == inflater::status::error) {
                res.error = r.error;
                return res;
            }
            res.data.append(out.get(), r.produced);
            if (r.status == inflater::status::more_output) continue;
            EXPECT_TRUE(in.empty());
            EXPECT_EQ(r.status,
                      last ? inflater::status::message_end : inflater::status::need_input);
            break;
        }
    }
    return res;
}

// Inflates one message whole, split at every position, and one byte at a time, with several
// output sizes, each with a fresh inflater; checks they all agree and returns the answer.
inflated inflate_every_split(std::string_view compressed, inflater::options o = {}) {
    inflater first(o);
    const inflated whole = inflate_pieces(first, {compressed}, 4096);
    for (size_t out_size : {1, 3, 64, 4096}) {
        for (size_t k = 0; k <= compressed.size(); ++k) {
            inflater inf(o);
            const inflated r =
                inflate_pieces(inf, {compressed.substr(0, k), compressed.substr(k)}, out_size);
            EXPECT_EQ(r.error.status, whole.error.status) << "split at " << k;
            // Output before an error depends on the split; only the error itself may not.
            if (!whole.error) {
                EXPECT_EQ(r.data, whole.data) << "split at " << k << ", out " << out_size;
            }
        }
        std::vector<std::string_view> bytes;
        for (size_t k = 0; k < compressed.size(); ++k)
            bytes.push_back(compressed.substr(k, 1));
        if (bytes.empty()) bytes.push_back({});
        inflater inf(o);
        const inflated r = inflate_pieces(inf, bytes, out_size);
        EXPECT_EQ(r.error.status, whole.error.status);
        if (!whole.error) {
            EXPECT_EQ(r.data, whole.data) << "byte at a time, out " << out_size;
        }
    }
    return whole;
}

std::string compress(deflater& d, std::string_view message) {
    std::string out;
    EXPECT_FALSE(d.compress(message, true, out));
    return out;
}

// ---- RFC 7692 §7.2.3 examples -----------------------------------------------------------------

TEST(ws_deflate, Rfc7692OneCompressedBlock) {
    // §7.2.3.1: "Hello" -> c1 07 f2 48 cd c9 c9 07 00 (frame header c1 07, then the payload).
    deflater d;
    EXPECT_EQ(hex(compress(d, "Hello")), "f2 48 cd c9 c9 07 00");
    const inflated r = inflate_every_split("\xf2\x48\xcd\xc9\xc9\x07\x00"s);
    EXPECT_FALSE(r.error);
    EXPECT_EQ(r.data, "Hello");
}

TEST(ws_deflate, Rfc7692SharingTheWindow) {
    // §7.2.3.2: a second "Hello" with context takeover -> c1 05 f2 00 11 00 00.
    deflater d;
    compress(d, "Hello");
    EXPECT_EQ(hex(compress(d, "Hello")), "f2 00 11 00 00");
    inflater inf;
    EXPECT_EQ(inflate_pieces(inf, {"\xf2\x48\xcd\xc9\xc9\x07\x00"s}, 64).data, "Hello");
    EXPECT_EQ(inflate_pieces(inf, {"\xf2\x00\x11\x00\x00"s}, 64).data, "Hello");
    // Without the first message's window the second cannot be decoded.
    inflater fresh;
    EXPECT_EQ(inflate_pieces(fresh, {"\xf2\x00\x11\x00\x00"s}, 64).error.status, 1007);
}

TEST(ws_deflate, Rfc7692StoredBlock) {
    // §7.2.3.3: c1 0b 00 05 00 fa ff 48 65 6c 6c 6f 00.
    const inflated r = inflate_every_split("\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00"s);
    EXPECT_FALSE(r.error);
    EXPECT_EQ(r.data, "Hello");
}

TEST(ws_deflate, Rfc7692FinalBlock) {
    // §7.2.3.4: BFINAL set: c1 08 f3 48 cd c9 c9 07 00 00.
    const inflated r = inflate_every_split("\xf3\x48\xcd\xc9\xc9\x07\x00\x00"s);
    EXPECT_FALSE(r.error);
    EXPECT_EQ(r.data, "Hello");
}

TEST(ws_deflate, Rfc7692TwoBlocksInOneMessage) {
    // §7.2.3.5: c1 0d f2 48 05 00 00 00 ff ff ca c9 c9 07 00.
    const inflated r = inflate_every_split("\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9\x07\x00"s);
    EXPECT_FALSE(r.error);
    EXPECT_EQ(r.data, "Hello");
}

TEST(ws_deflate, Rfc7692EmptyMessage) {
    // §7.2.3.6: an empty message compresses to the single byte 00.
    deflater d;
    EXPECT_EQ(hex(compress(d, "")), "00");
    // Right after another flush zlib writes nothing at all; the deflater sends 00 anyway.
    EXPECT_EQ(hex(compress(d, "")), "00");
    compress(d, "Hello");
    EXPECT_EQ(hex(compress(d, "")), "00");
    const inflated r = inflate_every_split("\x00"s);
    EXPECT_FALSE(r.error);
    EXPECT_EQ(r.data, "");
    // A zero-length payload with RSV1 (just the appended tail) is an empty message too.
    EXPECT_EQ(inflate_every_split("").data, "");
}

TEST(ws_deflate, BytesAfterAFinalBlockAreSkipped) {
    EXPECT_EQ(inflate_every_split("\xf3\x48\xcd\xc9\xc9\x07\x00"s).data, "Hello");  // none
    EXPECT_EQ(inflate_every_split("\xf3\x48\xcd\xc9\xc9\x07\x00\x00\x01\xff"s).data, "Hello");
}

// Regression (fuzz_ws_frame): an RSV1 message with no payload byte at all, after a message that
// ended with a final block, failed with 1007 "ends inside a DEFLATE block": the appended tail
// alone is a stored block header and a broken length. It is an empty message, and the stream
// must stay usable for the next one.
TEST(ws_deflate, EmptyCompressedPayloadIsAnEmptyMessage) {
    for (const std::string& first : {"\xf2\x48\xcd\xc9\xc9\x07\x00"s,  // sync-flushed "Hello"
                                     "\xf3\x48\xcd\xc9\xc9\x07\x00\x00"s}) {  // BFINAL "Hello"
        inflater inf;
        EXPECT_EQ(inflate_pieces(inf, {first}, 7).data, "Hello");
        const inflated empty = inflate_pieces(inf, {"", "", ""}, 7);
        EXPECT_FALSE(empty.error) << empty.error.reason;
        EXPECT_EQ(empty.data, "");
        const inflated next = inflate_pieces(inf, {"\xf2\x00\x11\x00\x00"s}, 7);  // refers back
        EXPECT_FALSE(next.error) << next.error.reason;
        EXPECT_EQ(next.data, "Hello");
    }
}

TEST(ws_deflate, WindowSurvivesAFinalBlockWithContextTakeover) {
    inflater inf;
    EXPECT_EQ(inflate_pieces(inf, {"\xf3\x48\xcd\xc9\xc9\x07\x00\x00"s}, 64).data, "Hello");
    // §7.2.3.2's second message refers back to "Hello" in the window.
    const inflated second = inflate_pieces(inf, {"\xf2\x00\x11\x00\x00"s}, 64);
    EXPECT_FALSE(second.error);
    EXPECT_EQ(second.data, "Hello");
}

// ---- invalid data -----------------------------------------------------------------------------

TEST(ws_deflate, InvalidDataIs1007) {
    EXPECT_EQ(inflate_every_split("\xff\xff\xff\xff"s).error.status, 1007);  // reserved BTYPE 11
    // A stored block whose NLEN does not match LEN.
    EXPECT_EQ(inflate_every_split("\x00\x05\x00\xfb\xff\x48\x65\x6c\x6c\x6f\x00"s).error.status,
              1007);
    // A message cut inside a block (the last byte of §7.2.3.1's example missing).
    EXPECT_EQ(inflate_every_split("\xf2\x48\xcd\xc9\xc9\x07"s).error.status, 1007);
}

TEST(ws_deflate, ErrorsAreSticky) {
    inflater inf;
    EXPECT_EQ(inflate_pieces(inf, {"\xff\xff"s}, 64).error.status, 1007);
    EXPECT_EQ(inflate_pieces(inf, {"\xf2\x48\xcd\xc9\xc9\x07\x00"s}, 64).error.status, 1007);
}

// ---- bombs ------------------------------------------------------------------------------------

// `n` zero bytes compressed as one message, produced in 64 KiB steps (never held in memory).
std::string zero_bomb(size_t n, uint8_t window_bits = 15) {
    deflater::options o;
    o.window_bits = window_bits;
    o.level = 9;
    deflater d(o);
    const std::string chunk(64 * 1024, '\0');
    std::string out;
    for (size_t done = 0; done < n; done += chunk.size()) {
        const bool last = done + chunk.size() >= n;
        EXPECT_FALSE(d.compress(std::string_view(chunk).substr(0, std::min(chunk.size(), n - done)),
                                last, out));
    }
    return out;
}

TEST(ws_deflate, BombStopsAtTheLimit) {
    const std::string bomb = zero_bomb(size_t{100} << 20);  // 100 MiB of zeros
    EXPECT_LT(bomb.size(), 200u * 1024);
    for (size_t out_size : {1000, 16384, 1 << 20}) {
        inflater::options o;
        o.max_message = 1 << 20;
        inflater inf(o);
        std::unique_ptr<char[]> out(new char[out_size]);
        std::string_view in = bomb;
        uint64_t total = 0;
        inflater::result r;
        do {
            r = inf.inflate(in, std::span<char>(out.get(), out_size), true);
            in.remove_prefix(r.consumed);
            total += r.produced;
        } while (r.status == inflater::status::more_output);
        EXPECT_EQ(r.status, inflater::status::error);
        EXPECT_EQ(r.error.status, 1009);
        EXPECT_EQ(total, o.max_message) << out_size;  // everything up to the limit, no more
        // Only a small part of the input was read: the work stopped with the output.
        EXPECT_LT(bomb.size() - in.size(), bomb.size() / 50);
        EXPECT_LT(inf.memory(), 48u * 1024);
    }
}

TEST(ws_deflate, ExactlyTheLimitIsAccepted) {
    inflater::options o;
    o.max_message = 100000;
    const std::string at = zero_bomb(100000);
    inflater inf(o);
    const inflated ok = inflate_pieces(inf, {at}, 777);
    EXPECT_FALSE(ok.error);
    EXPECT_EQ(ok.data.size(), 100000u);
    inflater inf2(o);
    const inflated over = inflate_pieces(inf2, {zero_bomb(100001)}, 777);
    EXPECT_EQ(over.error.status, 1009);
}

TEST(ws_deflate, LimitCountsPerMessage) {
    inflater::options o;
    o.max_message = 1000;
    inflater inf(o);
    deflater d;
    for (int i = 0; i < 5; ++i) {
        const inflated r = inflate_pieces(inf, {compress(d, std::string(1000, 'a' + i))}, 100);
        EXPECT_FALSE(r.error) << i;
        EXPECT_EQ(r.data, std::string(1000, 'a' + i));
    }
}

// ---- round trips ------------------------------------------------------------------------------

std::vector<std::string> sample_messages() {
    std::mt19937 rng(7);
    std::vector<std::string> m;
    for (int i = 0; i < 60; ++i) {
        std::string s = "{\"id\":" + std::to_string(rng() % 1000) + ",\"name\":\"user" +
                        std::to_string(rng() % 50) + "\",\"text\":\"";
        const size_t extra = rng() % 300;
        for (size_t k = 0; k < extra; ++k)
            s += static_cast<char>(rng() % 4 == 0 ? rng() % 256 : 'a' + rng() % 6);
        m.push_back(s + "\"}");
    }
    m.push_back("");
    m.push_back(std::string(70000, 'q'));
    return m;
}

void round_trip(deflater::options dopt, inflater::options iopt) {
    deflater d(dopt);
    inflater inf(iopt);
    size_t plain = 0, packed = 0;
    for (const std::string& msg : sample_messages()) {
        // Sent in three calls, to exercise Z_NO_FLUSH then the final flush.
        std::string out;
        const size_t a = msg.size() / 3, b = msg.size() / 2;
        ASSERT_FALSE(d.compress(std::string_view(msg).substr(0, a), false, out));
        ASSERT_FALSE(d.compress(std::string_view(msg).substr(a, b - a), false, out));
        ASSERT_FALSE(d.compress(std::string_view(msg).substr(b), true, out));
        plain += msg.size();
        packed += out.size();
        // Received in two frames cut in the middle.
        const std::string_view c = out;
        const inflated r =
            inflate_pieces(inf, {c.substr(0, c.size() / 2), c.substr(c.size() / 2)}, 1000);
        ASSERT_FALSE(r.error) << r.error.reason;
        ASSERT_EQ(r.data, msg);
    }
    EXPECT_LT(packed, plain);
}

TEST(ws_deflate, RoundTripWithContextTakeover) { round_trip({}, {}); }

TEST(ws_deflate, RoundTripWithoutContextTakeover) {
    deflater::options d;
    d.no_context_takeover = true;
    inflater::options i;
    i.no_context_takeover = true;
    round_trip(d, i);
}

TEST(ws_deflate, RoundTripEveryWindowSize) {
    for (uint8_t bits = 8; bits <= 15; ++bits) {
        deflater::options d;
        d.window_bits = bits;
        d.mem_level = 1 + bits % 9;
        inflater::options i;
        i.window_bits = bits;
        round_trip(d, i);
    }
}

// deflate.hpp: with server_max_window_bits=8 the deflater runs zlib with 9, and its output must
// still inflate with a 256-byte window. Data full of repeats at distances 200-600 tempts it.
TEST(ws_deflate, WindowEightCompressesWithinTwoHundredFiftySixBytes) {
    std::mt19937 rng(3);
    std::string data;
    std::string block;
    for (int i = 0; i < 600; ++i)
        block += static_cast<char>('a' + rng() % 26);
    for (int i = 0; i < 200; ++i) {
        const size_t distance = 200 + rng() % 400;
        const size_t len = 3 + rng() % 40;
        if (data.size() > distance + len) {
            data += data.substr(data.size() - distance, len);
        } else {
            data += block.substr(rng() % 500, len);
        }
        data += static_cast<char>('A' + rng() % 26);
    }
    deflater::options d;
    d.window_bits = 8;
    d.level = 9;
    deflater def(d);
    inflater::options i;
    i.window_bits = 8;
    inflater inf(i);
    for (int round = 0; round < 3; ++round) {  // context takeover over several messages
        const inflated r = inflate_pieces(inf, {compress(def, data)}, 512);
        ASSERT_FALSE(r.error) << r.error.reason;
        EXPECT_EQ(r.data, data);
    }
}

// ---- memory and release -----------------------------------------------------------------------

TEST(ws_deflate, MemoryIsLazyAndReleasable) {
    deflater d;  // window 12, memLevel 5
    EXPECT_EQ(d.memory(), 0u);
    compress(d, "hello");
    EXPECT_GT(d.memory(), 30u * 1024);
    EXPECT_LT(d.memory(), 48u * 1024);
    EXPECT_FALSE(d.release());  // context takeover: the window must survive
    EXPECT_GT(d.memory(), 0u);

    deflater::options big;
    big.window_bits = 15;
    big.mem_level = 8;
    deflater b(big);
    compress(b, "hello");
    EXPECT_GT(b.memory(), 250u * 1024);
    EXPECT_LT(b.memory(), 280u * 1024);

    deflater::options nct;
    nct.no_context_takeover = true;
    deflater n(nct);
    const std::string first = compress(n, "hello hello");
    EXPECT_TRUE(n.release());
    EXPECT_EQ(n.memory(), 0u);
    EXPECT_EQ(compress(n, "hello hello"), first);  // created again, same output

    inflater inf;
    EXPECT_EQ(inf.memory(), 0u);
    EXPECT_TRUE(inf.release());
    inflate_pieces(inf, {"\xf2\x48\xcd\xc9\xc9\x07\x00"s}, 64);
    EXPECT_GT(inf.memory(), 32u * 1024);  // 7 KiB of state + the 32 KiB window
    EXPECT_LT(inf.memory(), 48u * 1024);
    EXPECT_FALSE(inf.release());

    inflater::options small;
    small.window_bits = 12;
    small.no_context_takeover = true;
    inflater s(small);
    inflate_pieces(s, {"\xf2\x48\xcd\xc9\xc9\x07\x00"s}, 64);
    EXPECT_LT(s.memory(), 12u * 1024);
    EXPECT_TRUE(s.release());
    EXPECT_EQ(s.memory(), 0u);
    EXPECT_EQ(inflate_pieces(s, {"\xf2\x48\xcd\xc9\xc9\x07\x00"s}, 64).data, "Hello");
}

TEST(ws_deflate, NoReleaseInsideAMessage) {
    inflater::options o;
    o.no_context_takeover = true;
    inflater inf(o);
    char out[64];
    const auto r = inf.inflate("\xf2\x48\xcd"s, std::span<char>(out, sizeof out), false);
    EXPECT_EQ(r.status, inflater::status::need_input);
    EXPECT_FALSE(inf.release());
    const auto end = inf.inflate("\xc9\xc9\x07\x00"s, std::span<char>(out, sizeof out), true);
    EXPECT_EQ(end.status, inflater::status::message_end);
    EXPECT_TRUE(inf.release());
}

// ---- behind the frame parser ------------------------------------------------------------------

std::string client_frame(uint8_t b0, std::string_view payload) {
    const std::array<uint8_t, 4> mask = {0xa1, 0xb2, 0xc3, 0xd4};
    std::string out(1, static_cast<char>(b0));
    if (payload.size() <= 125) {
        out += static_cast<char>(0x80 | payload.size());
    } else {
        out += static_cast<char>(0x80 | 126);
        out += static_cast<char>(payload.size() >> 8);
        out += static_cast<char>(payload.size() & 0xFF);
    }
    out.append(reinterpret_cast<const char*>(mask.data()), 4);
    for (size_t i = 0; i < payload.size(); ++i)
        out += static_cast<char>(payload[i] ^ mask[i % 4]);
    return out;
}

// Parser + assembler + inflater over `bytes` cut at `cuts`; returns the messages and the error.
std::vector<std::string> pipeline(std::string_view bytes, const std::vector<size_t>& cuts,
                                  uint64_t max_message = 1 << 20, std::string* reason = nullptr) {
    frame_parser::options po;
    po.rsv1_allowed = true;
    frame_parser parser(po);
    message_assembler::options ao;
    ao.max_message = max_message;
    message_assembler assembler(ao);
    inflater::options io;
    io.max_message = max_message;
    inflater inf(io);
    std::vector<std::string> log;
    std::string message;
    char out[7];  // small on purpose: many more_output rounds
    std::vector<size_t> ends = cuts;
    ends.push_back(bytes.size());
    size_t from = 0;
    bool fin = false;
    const auto failed = [&](const core::error& e) {
        log.push_back("error " + std::to_string(e.status));
        if (reason) *reason = std::string(e.reason);
        return log;
    };
    for (size_t to : ends) {
        std::string piece(bytes.substr(from, to - from));
        from = to;
        std::span<char> input(piece.data(), piece.size());
        for (;;) {
            const auto r = parser.parse(input);
            input = input.subspan(r.consumed);
            if (r.status == frame_parser::status::need_more) break;
            if (r.status == frame_parser::status::error) return failed(r.error);
            if (r.status == frame_parser::status::header) {
                fin = r.header.fin;
                if (auto e = assembler.begin_frame(r.header)) return failed(e);
                continue;
            }
            if (assembler.in_control_frame()) {
                assembler.control_data(r.payload);
            } else if (!assembler.message_compressed()) {
                if (auto e = assembler.message_data(r.payload)) return failed(e);
                message += r.payload;
            } else {
                std::string_view in = r.payload;
                const bool last = r.frame_end && fin;
                for (;;) {
                    const auto ir = inf.inflate(in, std::span<char>(out, sizeof out), last);
                    in.remove_prefix(ir.consumed);
                    if (ir.status == inflater::status::error) return failed(ir.error);
                    const std::string_view produced(out, ir.produced);
                    if (auto e = assembler.message_data(produced)) return failed(e);
                    message += produced;
                    if (ir.status != inflater::status::more_output) break;
                }
            }
            if (!r.frame_end) continue;
            const auto end = assembler.end_frame();
            if (end.error) return failed(end.error);
            if (end.what == message_assembler::completed::message) {
                log.push_back(std::string(assembler.message_compressed() ? "z " : "") + message);
                message.clear();
            }
        }
    }
    return log;
}

std::vector<std::string> pipeline_every_split(std::string_view bytes,
                                              uint64_t max_message = 1 << 20) {
    const auto whole = pipeline(bytes, {}, max_message);
    for (size_t k = 0; k <= bytes.size(); ++k)
        EXPECT_EQ(pipeline(bytes, {k}, max_message), whole) << "split at " << k;
    std::vector<size_t> each;
    for (size_t k = 1; k < bytes.size(); ++k)
        each.push_back(k);
    EXPECT_EQ(pipeline(bytes, each, max_message), whole) << "one byte at a time";
    return whole;
}

std::string pipeline_reason(std::string_view bytes, const std::vector<size_t>& cuts) {
    std::string reason;
    pipeline(bytes, cuts, 1 << 20, &reason);
    return reason;
}

// Regression (fuzz_ws_frame): a compressed text message whose output turns invalid UTF-8 before
// its DEFLATE data turns invalid failed with "invalid DEFLATE data" when read whole but with
// "not UTF-8" when read in two parts: the output written before zlib's error was dropped. It is
// now handed out first and the error follows with the next call.
TEST(ws_deflate, OutputBeforeAnErrorComesFirst) {
    deflater d;
    // "ab\xff", the rest of the empty stored block that ends it, then a reserved block type.
    const std::string bad = compress(d, "ab\xff") + "\x00\x00\xff\xff\xff"s;
    inflater inf;
    char out[64];
    auto r = inf.inflate(bad, std::span<char>(out, sizeof out), true);
    ASSERT_EQ(r.status, inflater::status::more_output);
    EXPECT_EQ(std::string_view(out, r.produced), "ab\xff");
    r = inf.inflate(std::string_view(bad).substr(r.consumed), std::span<char>(out, sizeof out),
                    true);
    EXPECT_EQ(r.status, inflater::status::error);
    EXPECT_EQ(r.error.status, 1007);
    // Behind the assembler, the UTF-8 error now wins for every split.
    std::string stream = client_frame(0xC1, bad);
    for (size_t k = 0; k <= stream.size(); ++k)
        EXPECT_EQ(pipeline_reason(stream, {k}), "text message is not UTF-8 (RFC 6455 §8.1)") << k;
}

TEST(ws_deflate_frames, Rfc7692ExamplesAsClientFrames) {
    const std::string stream =
        client_frame(0xC1, "\xf2\x48\xcd\xc9\xc9\x07\x00"s) +                  // §7.2.3.1
        client_frame(0xC1, "\xf2\x00\x11\x00\x00"s) +                          // §7.2.3.2
        client_frame(0xC1, "\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00"s) +  // §7.2.3.3
        client_frame(0x81, "plain") +  // RSV1 is per message
        client_frame(0xC1, "\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9\x07\x00"s);  // §7.2.3.5
    EXPECT_EQ(pipeline_every_split(stream),
              (std::vector<std::string>{"z Hello", "z Hello", "z Hello", "plain", "z Hello"}));
}

TEST(ws_deflate_frames, CompressedMessageInFragmentsWithAPingBetween) {
    // §7.2.3.1's payload cut into three frames; only the first has RSV1 (RFC 7692 §6.1).
    const std::string stream = client_frame(0x41, "\xf2\x48"s) + client_frame(0x89, "p") +
                               client_frame(0x00, "\xcd\xc9"s) +
                               client_frame(0x80, "\xc9\x07\x00"s);
    EXPECT_EQ(pipeline_every_split(stream), (std::vector<std::string>{"z Hello"}));
}

TEST(ws_deflate_frames, InvalidUtf8InsideACompressedTextIs1007) {
    deflater d;
    const std::string stream = client_frame(0xC1, compress(d, "ok \xed\xa0\x80 no"));
    EXPECT_EQ(pipeline_every_split(stream), (std::vector<std::string>{"error 1007"}));
}

TEST(ws_deflate_frames, BombBehindFramesIs1009) {
    const std::string bomb = zero_bomb(size_t{8} << 20);
    std::string stream;
    // In frames of at most 65535 bytes: the first with RSV1, the rest continuations.
    for (size_t at = 0; at < bomb.size(); at += 60000) {
        const std::string_view part = std::string_view(bomb).substr(at, 60000);
        const bool first = at == 0, last = at + 60000 >= bomb.size();
        std::string f =
            client_frame(static_cast<uint8_t>((last ? 0x80 : 0) | (first ? 0x42 : 0x00)), part);
        stream += f;
    }
    const auto log = pipeline(stream, {}, 1 << 20);
    EXPECT_EQ(log, (std::vector<std::string>{"error 1009"}));
    for (size_t k : {1, 7, 100, 1000, 5000})
        EXPECT_EQ(pipeline(stream, {k}, 1 << 20), log);
}

}  // namespace
}  // namespace coachwhip::ws::test
