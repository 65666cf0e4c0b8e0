// The hostile-input corpus (tests/corpus/malformed.txt, format described at its top) driven
// through an in-memory http1::connection with an echo app: every case whole, split in two at
// every byte boundary (at a handful of places for the huge ones), and one byte at a time. For
// each way of feeding it, the connection must answer exactly the expected statuses, call the app
// exactly the expected number of times, be closed or draining after the last answer, and write
// nothing more whatever the client sends next.
//
// COACHWHIP_CORPUS_CASE=<name> in the environment runs only that case (for debugging).
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http1/connection.hpp"

#ifndef COACHWHIP_CORPUS_FILE
#error "COACHWHIP_CORPUS_FILE must name tests/corpus/malformed.txt (see CMakeLists.txt)"
#endif

using namespace coachwhip;
using timer_kind = http1::connection_owner::timer_kind;

namespace {

// ---------------------------------------------------------------------------- the corpus file

struct corpus_case {
    std::string name;
    int line = 0;             // where "= name" is, for messages
    std::vector<int> expect;  // statuses of every response, the bad request's last
    size_t apps = 0;          // app invocations
    bool apps_given = false;
    bool eof = false;   // the client half-closes after the bytes
    bool wait = false;  // then the pending header/body deadline fires
    std::string bytes;
};

struct corpus {
    std::map<std::string, std::string> settings;
    std::vector<corpus_case> cases;
    std::vector<std::string> errors;  // format problems, each with its line number
};

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Decodes the escaped text from `i` into `out`. Inside a repetition (`nested`), stops after the
// unescaped '}' that closes it. Returns an error message, or "" on success.
std::string unescape(std::string_view s, size_t& i, std::string& out, bool nested) {
    while (i < s.size()) {
        const char c = s[i++];
        if (c == '}' && nested) return {};
        if (c != '\\') {
            out += c;
            continue;
        }
        if (i == s.size()) return "a lone backslash at the end of a piece";
        const char e = s[i++];
        switch (e) {
            case 'r': out += '\r'; break;
            case 'n': out += '\n'; break;
            case 't': out += '\t'; break;
            case '0': out += '\0'; break;
            case 's': out += ' '; break;
            case '\\': out += '\\'; break;
            case '}': out += '}'; break;
            case 'x': {
                const int hi = i + 1 < s.size() ? hex_digit(s[i]) : -1;
                const int lo = hi >= 0 ? hex_digit(s[i + 1]) : -1;
                if (lo < 0) return "\\x needs two hex digits";
                out += static_cast<char>(hi * 16 + lo);
                i += 2;
                break;
            }
            case '*': {
                size_t count = 0, digits = 0;
                while (i < s.size() && s[i] >= '0' && s[i] <= '9' && digits < 9) {
                    count = count * 10 + static_cast<size_t>(s[i++] - '0');
                    ++digits;
                }
                if (digits == 0 || i == s.size() || s[i] != '{') return "\\* needs N{text}";
                ++i;
                std::string unit;
                if (std::string err = unescape(s, i, unit, true); !err.empty()) return err;
                if (s[i - 1] != '}') return "\\*N{ without its closing }";
                for (size_t k = 0; k < count; ++k)
                    out += unit;
                break;
            }
            default: return std::string("unknown escape \\") + e;
        }
    }
    return nested ? "\\*N{ without its closing }" : "";
}

bool valid_name(std::string_view n) {
    return !n.empty() && std::all_of(n.begin(), n.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    });
}

corpus load_corpus(const std::string& path) {
    corpus out;
    std::ifstream file(path, std::ios::binary);
    if (!file) {
        out.errors.push_back("cannot open " + path);
        return out;
    }
    std::string line;
    int number = 0;
    corpus_case* current = nullptr;
    auto error = [&](const std::string& what) {
        out.errors.push_back("line " + std::to_string(number) + ": " + what);
    };
    while (std::getline(file, line)) {
        ++number;
        if (line.empty() || line[0] == '#') continue;
        if (line.back() == ' ' || line.back() == '\t' || line.back() == '\r') {
            error("ends in whitespace (write \\s or \\t)");
            continue;
        }
        if (line[0] == '@') {
            const size_t sp = line.find(' ');
            if (current || sp == std::string::npos) {
                error("a setting is '@name value', before the first case");
                continue;
            }
            out.settings[line.substr(1, sp - 1)] = line.substr(sp + 1);
            continue;
        }
        if (line.rfind("= ", 0) == 0) {
            out.cases.emplace_back();
            current = &out.cases.back();
            current->name = line.substr(2);
            current->line = number;
            if (!valid_name(current->name)) error("bad case name '" + current->name + "'");
            continue;
        }
        if (!current) {
            error("a case line before the first '= name'");
            continue;
        }
        if (line.rfind("> ", 0) == 0) {
            size_t i = 2;
            if (std::string err = unescape(line, i, current->bytes, false); !err.empty())
                error(err);
        } else if (line.rfind("expect ", 0) == 0) {
            std::istringstream words(line.substr(7));
            int status = 0;
            while (words >> status)
                current->expect.push_back(status);
            if (!words.eof()) error("expect takes status codes");
        } else if (line.rfind("apps ", 0) == 0) {
            current->apps = static_cast<size_t>(std::atoi(line.c_str() + 5));
            current->apps_given = true;
        } else if (line == "eof") {
            current->eof = true;
        } else if (line == "wait") {
            current->wait = true;
        } else {
            error("unknown line '" + line.substr(0, 40) + "'");
        }
    }
    std::set<std::string> names;
    for (corpus_case& c : out.cases) {
        if (!names.insert(c.name).second) out.errors.push_back("duplicate case " + c.name);
        if (c.expect.empty()) out.errors.push_back(c.name + ": no expect line");
        if (c.bytes.empty()) out.errors.push_back(c.name + ": no bytes");
        for (int s : c.expect)
            if (s < 100 || s > 599) out.errors.push_back(c.name + ": bad status");
        if (!c.apps_given)
            c.apps = static_cast<size_t>(std::count_if(c.expect.begin(), c.expect.end(),
                                                       [](int s) { return s / 100 == 2; }));
    }
    return out;
}

const corpus& the_corpus() {
    static const corpus c = load_corpus(COACHWHIP_CORPUS_FILE);
    return c;
}

http1::connection_config config_from(const corpus& c) {
    http1::connection_config cfg;
    cfg.date_header = false;
    auto number = [&](const char* name, uint64_t fallback) -> uint64_t {
        auto it = c.settings.find(name);
        return it == c.settings.end() ? fallback : std::strtoull(it->second.c_str(), nullptr, 10);
    };
    cfg.head_limits.max_request_line = number("limit-request-line", 8190);
    cfg.head_limits.max_headers = number("limit-request-fields", 100);
    cfg.head_limits.max_head = number("limit-request-header-size", 65536);
    cfg.max_body = number("limit-request-body", 0);
    return cfg;
}

// ---------------------------------------------------------------------------- the connection

struct mem_transport final : core::transport {
    std::string input;
    size_t pos = 0;
    bool eof = false;
    std::string output;
    bool shut = false, closed = false;

    ssize_t read(char* buf, size_t len) override {
        EXPECT_FALSE(closed) << "read after close";
        if (pos < input.size()) {
            size_t n = std::min(len, input.size() - pos);
            std::memcpy(buf, input.data() + pos, n);
            pos += n;
            return static_cast<ssize_t>(n);
        }
        return eof ? 0 : -EAGAIN;
    }
    ssize_t writev(const iovec* iov, int n, bool /*fin_next*/) override {
        EXPECT_FALSE(closed) << "write after close";
        EXPECT_FALSE(shut) << "write after shutdown";
        size_t written = 0;
        for (int i = 0; i < n; ++i) {
            output.append(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
            written += iov[i].iov_len;
        }
        return static_cast<ssize_t>(written);
    }
    void shutdown_write() override { shut = true; }
    void close() override { closed = true; }
};

// The owner and an echo app: once the whole body is in, it answers 200 "<method> <target> <body>".
struct harness final : http1::connection_owner {
    mem_transport t;
    http1::connection_config cfg;
    http::event_queue events;
    http::endpoint client{"127.0.0.1", 5555, true};
    http::endpoint server{"127.0.0.1", 8000, true};
    std::unique_ptr<http1::connection> conn;
    std::vector<http1::connection*> scheduled;
    timer_kind armed = timer_kind::none;
    size_t in_flight = 0;
    bool closed = false;
    std::vector<std::shared_ptr<http::exchange>> exchanges;  // one per app invocation
    std::vector<std::string> bodies;

    explicit harness(const http1::connection_config& c) : cfg(c) {
        conn = std::make_unique<http1::connection>(t, *this, cfg, events, client, server);
    }

    void schedule(http1::connection& c) override {
        if (!c.scheduled) scheduled.push_back(&c);
        c.scheduled = true;
    }
    // The read slot only: the corpus's "wait" cases fire the header or body deadline. (The
    // minimum data rates are off in the corpus settings, so the rate slot is never armed.)
    void arm_timer(http1::connection&, timer_kind k) override {
        if (k != timer_kind::write && k != timer_kind::rate) armed = k;
    }
    void disarm_timer(http1::connection&, timer_kind k) override {
        if (k != timer_kind::write && k != timer_kind::rate) armed = timer_kind::none;
    }
    uint64_t now_ms() const noexcept override { return 0; }
    bool admit_request(http1::connection&) override {
        ++in_flight;
        return true;
    }
    void request_finished(http1::connection&) override { --in_flight; }
    void on_closed(http1::connection&) override { closed = true; }

    void feed(std::string_view bytes) {
        t.input.append(bytes);
        if (!closed) conn->on_readable();
        pump();
    }
    void end_input() {
        t.eof = true;
        if (!closed) conn->on_readable();
        pump();
    }
    void fire_read_timer() {
        const timer_kind k = armed;
        armed = timer_kind::none;
        if (!closed) conn->on_timer(k);
        pump();
    }
    void pump() {
        for (int round = 0; round < 100000; ++round) {
            bool busy = false;
            for (auto& ex : events.take()) {
                busy = true;
                const uint8_t ev = ex->take_events();
                if (ev & http::ev_request) {
                    exchanges.push_back(ex);
                    bodies.emplace_back();
                }
                respond_if_ready(*ex);
            }
            for (auto* c : std::exchange(scheduled, {})) {
                busy = true;
                c->scheduled = false;
                if (!closed) c->process();
            }
            if (!busy) return;
        }
        ADD_FAILURE() << "pump did not settle";
    }
    void respond_if_ready(http::exchange& ex) {
        size_t i = 0;
        while (i < exchanges.size() && exchanges[i].get() != &ex)
            ++i;
        if (i == exchanges.size() || ex.response_complete || !ex.connected()) return;
        bodies[i] += ex.body;
        ex.body_taken();
        if (!ex.body_complete) return;
        const std::string body =
            std::string(ex.method) + " " + std::string(ex.target) + " " + bodies[i];
        const http::response_sink::head h{200, {}};
        ex.send(&h, body, false);
    }
};

// ---------------------------------------------------------------------------- checking output

bool iprefix(std::string_view s, std::string_view prefix) {
    if (s.size() < prefix.size()) return false;
    for (size_t i = 0; i < prefix.size(); ++i)
        if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
    return true;
}

// Splits the bytes the server wrote into responses; returns their statuses, or sets `error` if
// the stream is not a sequence of whole, content-length framed responses.
std::vector<int> response_statuses(std::string_view out, std::string& error) {
    std::vector<int> statuses;
    while (!out.empty()) {
        const size_t end = out.find("\r\n\r\n");
        if (out.substr(0, 9) != "HTTP/1.1 " || out.size() < 12 || end == std::string_view::npos) {
            error = "not a response head at byte offset of: " + std::string(out.substr(0, 60));
            return statuses;
        }
        const int status = std::atoi(std::string(out.substr(9, 3)).c_str());
        statuses.push_back(status);
        const std::string_view head = out.substr(0, end + 2);
        out.remove_prefix(end + 4);
        if (status / 100 == 1 || status == 204 || status == 304) continue;
        size_t length = SIZE_MAX;
        for (size_t p = head.find("\r\n"); p != std::string_view::npos;
             p = head.find("\r\n", p + 2)) {
            const std::string_view field = head.substr(p + 2);
            if (iprefix(field, "content-length:"))
                length = std::strtoull(std::string(field.substr(15, 20)).c_str(), nullptr, 10);
            if (iprefix(field, "transfer-encoding:")) error = "a chunked response";
        }
        if (length == SIZE_MAX || length > out.size()) {
            error = "response " + std::to_string(status) + " without a whole content-length body";
            return statuses;
        }
        out.remove_prefix(length);
    }
    return statuses;
}

std::string join(const std::vector<int>& v) {
    std::string s;
    for (int x : v)
        s += (s.empty() ? "" : " ") + std::to_string(x);
    return s.empty() ? "(none)" : s;
}

constexpr std::string_view k_next_request = "GET /ok HTTP/1.1\r\nHost: a\r\n\r\n";

// Feeds `c` in the given pieces and checks every rule. Returns "" or what went wrong.
std::string run_case(const corpus_case& c, const http1::connection_config& cfg,
                     const std::vector<std::string_view>& pieces) {
    harness h(cfg);
    for (std::string_view piece : pieces)
        h.feed(piece);
    if (c.eof) h.end_input();
    if (c.wait) {
        if (h.armed != timer_kind::header && h.armed != timer_kind::body)
            return "expected to wait on the header or body deadline, but timer " +
                   std::to_string(static_cast<int>(h.armed)) + " is armed";
        h.fire_read_timer();
    }
    std::string error;
    const std::vector<int> got = response_statuses(h.t.output, error);
    if (!error.empty()) return error;
    if (got != c.expect) return "responses " + join(got) + ", expected " + join(c.expect);
    if (h.exchanges.size() != c.apps)
        return "the app ran " + std::to_string(h.exchanges.size()) + " times, expected " +
               std::to_string(c.apps);
    if (!h.t.shut && !h.closed) return "the connection is still open after the last response";
    if (h.in_flight != 0) return "admitted requests not finished: " + std::to_string(h.in_flight);
    // Nothing more is answered, whatever the client sends next; its EOF then ends the linger.
    const size_t written = h.t.output.size();
    h.feed(k_next_request);
    if (h.t.output.size() != written) return "the server answered a request after the last one";
    if (h.exchanges.size() != c.apps) return "the app ran for a request after the last one";
    h.end_input();
    if (!h.closed) return "the connection stays open after the client closed";
    for (const auto& ex : h.exchanges)
        if (ex->connected()) return "an exchange is still attached after the close";
    return {};
}

// Splits worth trying on a case too large to split everywhere: the edges, the middle, and the
// bytes around every limit.
std::vector<size_t> some_splits(size_t n) {
    std::vector<size_t> at = {1, 2, 3, n / 3, n / 2, 2 * n / 3, n - 2, n - 1};
    for (size_t limit : {4096, 8190, 16384, 65536})
        for (size_t d : {limit - 1, limit, limit + 1})
            at.push_back(d);
    std::vector<size_t> out;
    for (size_t k : at)
        if (k > 0 && k < n) out.push_back(k);
    return out;
}

// Cases up to this size are split at every byte (larger ones at some_splits()), and fed one byte
// at a time. In a Debug+ASan build an 8 KiB case split everywhere costs seconds.
constexpr size_t k_every_split_max = 4608;
constexpr size_t k_one_byte_max = 16 * 1024;

bool selected(const corpus_case& c) {
    const char* only = std::getenv("COACHWHIP_CORPUS_CASE");
    return only == nullptr || *only == '\0' || c.name == only;
}

// ---------------------------------------------------------------------------- tests

TEST(Corpus, FileIsWellFormed) {
    const corpus& c = the_corpus();
    for (const std::string& e : c.errors)
        ADD_FAILURE() << COACHWHIP_CORPUS_FILE << ": " << e;
    EXPECT_GE(c.cases.size(), 150u);
    for (const char* key : {"limit-request-line", "limit-request-fields",
                            "limit-request-header-size", "limit-request-body"})
        EXPECT_TRUE(c.settings.count(key)) << "the corpus must state @" << key;
}

TEST(Corpus, EveryCaseWhole) {
    const corpus& c = the_corpus();
    const auto cfg = config_from(c);
    for (const corpus_case& k : c.cases) {
        if (!selected(k)) continue;
        const std::string err = run_case(k, cfg, {k.bytes});
        EXPECT_EQ(err, "") << k.name << " (malformed.txt:" << k.line << "), sent whole";
    }
}

TEST(Corpus, EveryCaseSplitInTwoAtEveryByte) {
    const corpus& c = the_corpus();
    const auto cfg = config_from(c);
    for (const corpus_case& k : c.cases) {
        if (!selected(k)) continue;
        const std::string_view b = k.bytes;
        std::vector<size_t> splits;
        if (b.size() <= k_every_split_max) {
            for (size_t i = 1; i < b.size(); ++i)
                splits.push_back(i);
        } else {
            splits = some_splits(b.size());
        }
        for (size_t at : splits) {
            const std::string err = run_case(k, cfg, {b.substr(0, at), b.substr(at)});
            if (!err.empty()) {  // one report per case: the first split that fails
                ADD_FAILURE() << k.name << " (malformed.txt:" << k.line << "), split at byte " << at
                              << " of " << b.size() << ": " << err;
                break;
            }
        }
    }
}

TEST(Corpus, EveryCaseOneByteAtATime) {
    const corpus& c = the_corpus();
    const auto cfg = config_from(c);
    for (const corpus_case& k : c.cases) {
        if (!selected(k) || k.bytes.size() > k_one_byte_max) continue;
        std::vector<std::string_view> pieces;
        for (size_t i = 0; i < k.bytes.size(); ++i)
            pieces.push_back(std::string_view(k.bytes).substr(i, 1));
        const std::string err = run_case(k, cfg, pieces);
        EXPECT_EQ(err, "") << k.name << " (malformed.txt:" << k.line << "), one byte at a time";
    }
}

TEST(Corpus, EscapesDecode) {
    auto decode = [](std::string_view s) {
        size_t i = 0;
        std::string out;
        const std::string err = unescape(s, i, out, false);
        return err.empty() ? out : "ERROR: " + err;
    };
    EXPECT_EQ(decode("a\\r\\n\\t\\0\\s\\\\\\x41\\xff"), std::string("a\r\n\t\0 \\A\xff", 9));
    EXPECT_EQ(decode("\\*3{ab}c"), "abababc");
    EXPECT_EQ(decode("\\*2{x\\}\\*2{y}}{}"), "x}yyx}yy{}");
    EXPECT_EQ(decode("\\*0{zz}"), "");
    EXPECT_EQ(decode("\\q"), "ERROR: unknown escape \\q");
    EXPECT_EQ(decode("\\*3{ab"), "ERROR: \\*N{ without its closing }");
    EXPECT_EQ(decode("\\x4"), "ERROR: \\x needs two hex digits");
}

}  // namespace
