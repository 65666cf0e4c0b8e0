// Tests for ws::utf8_validator (src/ws/utf8.cpp).
//
// Every case is validated whole, split in two at every byte position, and one byte at a time
// (from exact-size heap copies, so ASan sees any over-read): the answer must not depend on the
// split. Invalid cases also pin the byte at which the validator must give up (Autobahn 6.x "fail
// fast"): every prefix that ends before it is still valid or incomplete, and every prefix that
// includes it is invalid. An exhaustive comparison with a reference decoder covers every 1-3
// byte sequence and the 4-byte ones around the boundaries.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ws/utf8.hpp"

namespace coachwhip::ws::test {
namespace {

using namespace std::string_literals;

const char* name(utf8_status s) {
    switch (s) {
        case utf8_status::valid: return "valid";
        case utf8_status::incomplete: return "incomplete";
        case utf8_status::invalid: return "invalid";
    }
    return "?";
}

// Feeds `bytes` in pieces cut at `cuts` (ascending offsets), each piece from its own exact-size
// heap block; returns the final status.
utf8_status feed_pieces(std::string_view bytes, const std::vector<size_t>& cuts) {
    utf8_validator v;
    utf8_status s = utf8_status::valid;
    size_t from = 0;
    std::vector<size_t> ends = cuts;
    ends.push_back(bytes.size());
    for (size_t to : ends) {
        const size_t n = to - from;
        std::unique_ptr<char[]> block(new char[std::max<size_t>(n, 1)]);
        std::memcpy(block.get(), bytes.data() + from, n);
        s = v.feed(std::string_view(block.get(), n));
        from = to;
    }
    EXPECT_EQ(s, v.status());
    EXPECT_EQ(s == utf8_status::valid, v.complete());
    EXPECT_EQ(s == utf8_status::invalid, v.failed());
    return s;
}

utf8_status feed_whole(std::string_view bytes) { return feed_pieces(bytes, {}); }

// The answer for the whole input, checked to be the same for every split.
utf8_status check_every_split(std::string_view bytes) {
    const utf8_status whole = feed_whole(bytes);
    for (size_t k = 0; k <= bytes.size(); ++k)
        EXPECT_EQ(feed_pieces(bytes, {k}), whole) << "split at " << k;
    std::vector<size_t> each;
    for (size_t k = 1; k < bytes.size(); ++k)
        each.push_back(k);
    EXPECT_EQ(feed_pieces(bytes, each), whole) << "one byte at a time";
    EXPECT_EQ(is_valid_utf8(bytes), whole == utf8_status::valid);
    return whole;
}

struct utf8_case {
    std::string name;
    std::string bytes;
    utf8_status expect;
    size_t fail_at = 0;  // invalid: index of the first byte that makes it invalid
};

void PrintTo(const utf8_case& c, std::ostream* os) { *os << c.name; }

std::vector<utf8_case> cases() {
    const auto ok = utf8_status::valid;
    const auto more = utf8_status::incomplete;
    const auto bad = utf8_status::invalid;
    return {
        // ---- valid (Autobahn 6.2, 6.5, 6.6, 6.7, 6.9, 6.11 and boundaries, RFC 3629 §4)
        {"empty", "", ok},
        {"ascii", "Hello-World", ok},
        {"hello world greek", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", ok},
        {"U+0000", "\x00"s, ok},
        {"U+007F", "\x7f", ok},
        {"U+0080", "\xc2\x80", ok},
        {"U+07FF", "\xdf\xbf", ok},
        {"U+0800", "\xe0\xa0\x80", ok},
        {"U+D7FF last before surrogates", "\xed\x9f\xbf", ok},
        {"U+E000 first after surrogates", "\xee\x80\x80", ok},
        {"U+FFFD", "\xef\xbf\xbd", ok},
        {"U+FFFE noncharacter is valid", "\xef\xbf\xbe", ok},
        {"U+FFFF", "\xef\xbf\xbf", ok},
        {"U+10000", "\xf0\x90\x80\x80", ok},
        {"U+10FFFF", "\xf4\x8f\xbf\xbf", ok},
        {"U+1F600 emoji", "\xf0\x9f\x98\x80", ok},
        {"mixed long",
         std::string(37, 'a') + "\xf0\x9f\x98\x80" + std::string(9, 'b') + "\xe2\x82\xac", ok},
        // ---- incomplete at the end (a later fragment may complete them)
        {"2-byte lead only", "\xc2", more},
        {"3-byte, 2 of 3", "\xe2\x82", more},
        {"4-byte, 3 of 4", "\xf0\x9f\x98", more},
        {"U+10FFFF, 3 of 4", "\xf4\x8f\xbf", more},
        {"E0 alone", "\xe0", more},
        {"ED with a valid second byte", "\xed\x9f", more},
        {"ascii then lead", "abcdefgh\xe2", more},
        // ---- Autobahn 6.3.1: a surrogate inside otherwise valid text
        {"6.3.1 surrogate in text",
         "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64", bad,
         12},
        // ---- stray continuation bytes (6.8)
        {"lone 80", "\x80", bad, 0},
        {"lone BF", "\xbf", bad, 0},
        {"ascii then 80", "ab\x80", bad, 2},
        {"two continuations after 2-byte", "\xc2\x80\x80", bad, 2},
        // ---- lead bytes followed by a space (6.10 "lonely start characters")
        {"C2 then space", "\xc2 ", bad, 1},
        {"E1 then space", "\xe1 ", bad, 1},
        {"F1 then space", "\xf1 ", bad, 1},
        {"E2 82 then ascii", "\xe2\x82\x41", bad, 2},
        {"F0 9F 98 then lead", "\xf0\x9f\x98\xf0", bad, 3},
        // ---- never in UTF-8 (6.12, 6.13)
        {"C0", "\xc0\x80", bad, 0},
        {"C1", "\xc1\xbf", bad, 0},
        {"F5", "\xf5\x80\x80\x80", bad, 0},
        {"F8 5-byte form", "\xf8\x88\x80\x80\x80", bad, 0},
        {"FC 6-byte form", "\xfc\x84\x80\x80\x80\x80", bad, 0},
        {"FE", "\xfe", bad, 0},
        {"FF", "\xff", bad, 0},
        // ---- overlong forms (6.17 - 6.19): fail on the second byte
        {"overlong / E0", "\xe0\x80\xaf", bad, 1},
        {"overlong U+07FF in 3 bytes", "\xe0\x9f\xbf", bad, 1},
        {"overlong / F0", "\xf0\x80\x80\xaf", bad, 1},
        {"overlong U+FFFF in 4 bytes", "\xf0\x8f\xbf\xbf", bad, 1},
        // ---- surrogates (6.20, 6.21): fail on the second byte
        {"U+D800", "\xed\xa0\x80", bad, 1},
        {"U+DBFF", "\xed\xaf\xbf", bad, 1},
        {"U+DC00", "\xed\xb0\x80", bad, 1},
        {"U+DFFF", "\xed\xbf\xbf", bad, 1},
        {"surrogate pair", "\xed\xa0\x80\xed\xb0\x80", bad, 1},
        // ---- above U+10FFFF (6.3.x, 6.4.x): fail as soon as it is certain
        {"U+110000", "\xf4\x90\x80\x80", bad, 1},
        {"6.4.1 fail fast", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65", bad,
         12},
        // ---- the ASCII fast path: bad bytes at word boundaries
        {"bad at byte 7", std::string(7, 'x') + "\xff" + std::string(20, 'y'), bad, 7},
        {"bad at byte 8", std::string(8, 'x') + "\xff" + std::string(20, 'y'), bad, 8},
        {"bad at byte 16", std::string(16, 'x') + "\x80", bad, 16},
        {"bad after valid multibyte",
         std::string(8, 'x') + "\xc3\xa9" + std::string(8, 'z') + "\xed\xa0\x80", bad, 19},
    };
}

class utf8_cases : public ::testing::TestWithParam<utf8_case> {};

TEST_P(utf8_cases, SameAnswerForEverySplitAndFailsFast) {
    const utf8_case& c = GetParam();
    EXPECT_EQ(check_every_split(c.bytes), c.expect) << name(check_every_split(c.bytes));
    if (c.expect != utf8_status::invalid) {
        // A prefix of a valid or incomplete stream is never invalid.
        for (size_t k = 0; k < c.bytes.size(); ++k)
            EXPECT_NE(feed_whole(std::string_view(c.bytes).substr(0, k)), utf8_status::invalid);
        return;
    }
    for (size_t k = 0; k <= c.bytes.size(); ++k) {
        const utf8_status s = check_every_split(std::string_view(c.bytes).substr(0, k));
        if (k <= c.fail_at) {
            EXPECT_NE(s, utf8_status::invalid) << "prefix " << k << " is already invalid";
        } else {
            EXPECT_EQ(s, utf8_status::invalid) << "prefix " << k << " is not invalid yet";
        }
    }
}

std::string test_name(const ::testing::TestParamInfo<utf8_case>& info) {
    std::string out;
    for (char c : info.param.name)
        out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    return out;
}

INSTANTIATE_TEST_SUITE_P(table, utf8_cases, ::testing::ValuesIn(cases()), test_name);

// ---- exhaustive comparison with a reference decoder -------------------------------------------

// RFC 3629 decoded the long way: the sequence length from the lead byte, the code point from the
// bits, then the range checks. Returns the status of the whole string.
utf8_status reference(std::string_view s) {
    size_t i = 0;
    while (i < s.size()) {
        const auto b = static_cast<unsigned char>(s[i]);
        size_t len;
        uint32_t cp;
        if (b < 0x80) {
            ++i;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            len = 2;
            cp = b & 0x1F;
        } else if ((b & 0xF0) == 0xE0) {
            len = 3;
            cp = b & 0x0F;
        } else if ((b & 0xF8) == 0xF0) {
            len = 4;
            cp = b & 0x07;
        } else {
            return utf8_status::invalid;
        }
        size_t j = 1;
        for (; j < len && i + j < s.size(); ++j) {
            const auto c = static_cast<unsigned char>(s[i + j]);
            if ((c & 0xC0) != 0x80) return utf8_status::invalid;
            cp = cp << 6 | (c & 0x3F);
        }
        if (j < len) {
            // Truncated: incomplete only if some completion is valid. Try them all by brute force
            // over the smallest and largest continuation of each remaining byte is not enough
            // (the ranges depend on the second byte), so complete with every second byte.
            if (j == 1) {
                for (unsigned c = 0x80; c <= 0xBF; ++c) {
                    std::string t(s.substr(i, 1));
                    t += static_cast<char>(c);
                    t.append(len - 2, '\x80');
                    if (reference(t) == utf8_status::valid) return utf8_status::incomplete;
                }
                return utf8_status::invalid;
            }
            std::string t(s.substr(i, j));
            t.append(len - j, '\x80');
            return reference(t) == utf8_status::valid ? utf8_status::incomplete
                                                      : utf8_status::invalid;
        }
        const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return utf8_status::invalid;
        i += len;
    }
    return utf8_status::valid;
}

TEST(utf8_exhaustive, EveryOneAndTwoByteSequence) {
    for (unsigned a = 0; a < 256; ++a) {
        const std::string one(1, static_cast<char>(a));
        ASSERT_EQ(feed_whole(one), reference(one)) << a;
        for (unsigned b = 0; b < 256; ++b) {
            const std::string two = {static_cast<char>(a), static_cast<char>(b)};
            ASSERT_EQ(feed_whole(two), reference(two)) << a << " " << b;
        }
    }
}

TEST(utf8_exhaustive, EveryThreeByteSequenceFromMultibyteLeads) {
    utf8_validator v;
    for (unsigned a = 0xC0; a < 256; ++a)
        for (unsigned b = 0x70; b < 0xD0; ++b)
            for (unsigned c = 0; c < 256; ++c) {
                const char s[3] = {static_cast<char>(a), static_cast<char>(b),
                                   static_cast<char>(c)};
                v.reset();
                ASSERT_EQ(v.feed(std::string_view(s, 3)), reference(std::string_view(s, 3)))
                    << a << " " << b << " " << c;
            }
}

TEST(utf8_exhaustive, FourByteSequencesAroundTheBoundaries) {
    const unsigned seconds[] = {0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0};
    const unsigned others[] = {0x00, 0x41, 0x7F, 0x80, 0xBF, 0xC0, 0xC2, 0xF0, 0xFF};
    utf8_validator v;
    for (unsigned a = 0xE0; a < 256; ++a)
        for (unsigned b : seconds)
            for (unsigned c : others)
                for (unsigned d : others) {
                    const char s[4] = {static_cast<char>(a), static_cast<char>(b),
                                       static_cast<char>(c), static_cast<char>(d)};
                    v.reset();
                    ASSERT_EQ(v.feed(std::string_view(s, 4)), reference(std::string_view(s, 4)))
                        << a << " " << b << " " << c << " " << d;
                }
}

// Every code point encoded by hand, in one long string split at many places.
TEST(utf8_exhaustive, EveryCodePointValid) {
    std::string all;
    for (uint32_t cp = 0; cp <= 0x10FFFF; ++cp) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        if (cp < 0x80) {
            all += static_cast<char>(cp);
        } else if (cp < 0x800) {
            all += static_cast<char>(0xC0 | cp >> 6);
            all += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            all += static_cast<char>(0xE0 | cp >> 12);
            all += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            all += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            all += static_cast<char>(0xF0 | cp >> 18);
            all += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            all += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            all += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }
    EXPECT_TRUE(is_valid_utf8(all));
    for (size_t step : {1, 2, 3, 5, 7, 8, 13, 4096}) {
        utf8_validator v;
        utf8_status s = utf8_status::valid;
        for (size_t at = 0; at < all.size(); at += step)
            s = v.feed(std::string_view(all).substr(at, step));
        EXPECT_EQ(s, utf8_status::valid) << "pieces of " << step;
    }
}

TEST(utf8_validator, StaysInvalidAndResets) {
    utf8_validator v;
    EXPECT_EQ(v.feed("\xff"), utf8_status::invalid);
    EXPECT_EQ(v.feed("abc"), utf8_status::invalid);
    EXPECT_TRUE(v.failed());
    v.reset();
    EXPECT_EQ(v.feed("abc"), utf8_status::valid);
}

// ---- utf8_truncate ----------------------------------------------------------------------------

TEST(utf8_truncate, CutsOnlyAtCodePointBoundaries) {
    EXPECT_EQ(utf8_truncate("hello", 10), 5u);
    EXPECT_EQ(utf8_truncate("hello", 3), 3u);
    EXPECT_EQ(utf8_truncate("", 0), 0u);
    const std::string euro =
        "ab\xe2\x82\xac"
        "cd";  // a b EURO c d
    EXPECT_EQ(utf8_truncate(euro, 2), 2u);
    EXPECT_EQ(utf8_truncate(euro, 3), 2u);
    EXPECT_EQ(utf8_truncate(euro, 4), 2u);
    EXPECT_EQ(utf8_truncate(euro, 5), 5u);
    const std::string emoji = "\xf0\x9f\x98\x80";
    for (size_t n = 0; n < 4; ++n)
        EXPECT_EQ(utf8_truncate(emoji, n), 0u);
    // Every cut of a valid string stays valid.
    const std::string text = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80 w\xc3\xb6rld";
    for (size_t n = 0; n <= text.size(); ++n) {
        const size_t cut = utf8_truncate(text, n);
        EXPECT_LE(cut, n);
        EXPECT_TRUE(is_valid_utf8(std::string_view(text).substr(0, cut))) << n;
    }
}

}  // namespace
}  // namespace coachwhip::ws::test
