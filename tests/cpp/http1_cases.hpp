// Shared helpers for the http1 codec tests: exact-size input buffers (so AddressSanitizer turns
// any over-read into a crash, the heap version of picohttpparser's guard pages) and the
// "every prefix" driver that checks the parser gives one answer however the input was split.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http1/parser.hpp"

namespace coachwhip::http1::test {

// A copy of `bytes` in a heap block of exactly bytes.size() bytes. Under ASan a read of even one
// byte past the end is reported as a heap-buffer-overflow.
class exact_buffer {
  public:
    explicit exact_buffer(std::string_view bytes)
        : size_(bytes.size()), data_(new char[bytes.size()]) {
        std::copy(bytes.begin(), bytes.end(), data_.get());
    }
    std::string_view view() const { return {data_.get(), size_}; }
    bool contains(std::string_view v) const {
        const char* b = data_.get();
        return std::less_equal<const char*>()(b, v.data()) &&
               std::less_equal<const char*>()(v.data() + v.size(), b + size_);
    }

  private:
    size_t size_;
    std::unique_ptr<char[]> data_;
};

// A parse result with its views turned into owned strings, comparable across inputs.
struct head_snapshot {
    parse_status status = parse_status::incomplete;
    size_t head_length = 0;
    uint16_t error_status = 0;
    std::string reason;
    std::string method, target;
    int minor_version = -1;
    std::vector<std::pair<std::string, std::string>> headers;

    bool operator==(const head_snapshot&) const = default;
};

inline const char* status_name(parse_status s) {
    switch (s) {
        case parse_status::complete: return "complete";
        case parse_status::incomplete: return "incomplete";
        case parse_status::error: return "error";
    }
    return "?";
}

inline std::ostream& operator<<(std::ostream& os, const head_snapshot& s) {
    os << status_name(s.status) << " len=" << s.head_length << " err=" << s.error_status << " ("
       << s.reason << ")";
    if (s.status == parse_status::complete)
        os << " " << s.method << " " << s.target << " 1." << s.minor_version
           << " fields=" << s.headers.size();
    return os;
}

// Parses `input` from an exact-size copy. When complete, also checks that every view points
// into that copy (zero-copy contract) before turning the views into strings.
inline head_snapshot parse_snapshot(std::string_view input, const limits& lim = {},
                                    size_t storage_size = 128, request_head* keep = nullptr) {
    exact_buffer buf(input);
    std::vector<header_field> storage(storage_size);
    request_head head;
    const parse_result r = parse_request_head(buf.view(), head, storage, lim);
    head_snapshot s;
    s.status = r.status;
    if (r.status == parse_status::error) {
        s.error_status = r.error.status;
        s.reason = std::string(r.error.reason);
        EXPECT_FALSE(r.error.reason.empty()) << "an error must name its rule";
    }
    if (r.status != parse_status::complete) return s;
    s.head_length = r.head_length;
    EXPECT_TRUE(buf.contains(head.method) && buf.contains(head.target));
    s.method = std::string(head.method);
    s.target = std::string(head.target);
    s.minor_version = head.minor_version;
    EXPECT_EQ(head.headers.data(), storage.data());
    for (const header_field& f : head.headers) {
        EXPECT_TRUE(buf.contains(f.name) && buf.contains(f.value)) << f.name;
        s.headers.emplace_back(std::string(f.name), std::string(f.value));
    }
    if (keep != nullptr) *keep = head;  // views dangle after return: only spans/sizes usable
    return s;
}

// Parses every prefix of `input` (each in its own exact-size buffer) and checks the contract
// the connection relies on when it re-parses after each line:
//  - a complete head of length H: every prefix shorter than H is incomplete, every longer
//    prefix is complete with the same head;
//  - an error: every prefix is incomplete until the first one that fails, and from there on
//    all fail with the same status and reason (errors are decided by the bytes seen so far);
//  - incomplete: every prefix is incomplete.
// Returns the result for the whole input.
inline head_snapshot parse_every_prefix(std::string_view input, const limits& lim = {},
                                        size_t storage_size = 128) {
    const head_snapshot full = parse_snapshot(input, lim, storage_size);
    bool failed = false;
    for (size_t k = 0; k < input.size(); ++k) {
        const head_snapshot part = parse_snapshot(input.substr(0, k), lim, storage_size);
        SCOPED_TRACE("prefix of " + std::to_string(k) + " bytes");
        if (full.status == parse_status::complete && k < full.head_length) {
            EXPECT_EQ(part.status, parse_status::incomplete) << part;
        } else if (full.status == parse_status::complete) {
            EXPECT_EQ(part, full);
        } else if (part.status != parse_status::incomplete || failed) {
            EXPECT_EQ(part, full);
            failed = true;
        }
    }
    return full;
}

// Names for parameterised tests: letters, digits and '_' only.
inline std::string test_name(std::string_view text) {
    std::string out;
    for (const char c : text)
        out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
    return out;
}

}  // namespace coachwhip::http1::test
