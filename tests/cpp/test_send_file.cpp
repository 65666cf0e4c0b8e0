// Zero-copy file bodies: core::output_queue file parts, the default core::transport::send_file
// (pread + writev, for transports without sendfile) and http::exchange::send_file through an
// http1::connection driven in memory. Every file is a real temporary file with known content;
// every descriptor handed over is checked to be closed exactly once, and not before its time.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/buffer.hpp"
#include "core/transport.hpp"
#include "http1/connection.hpp"
#include "server/tcp_transport.hpp"

using namespace coachwhip;
using timer_kind = http1::connection_owner::timer_kind;

namespace {

// ---------------------------------------------------------------- files and descriptors

// A temporary file holding `content`, already unlinked: the returned descriptor is its only
// name, so nothing is left behind whoever closes it.
int temp_file(std::string_view content) {
    std::string path = testing::TempDir() + "coachwhip_send_file_XXXXXX";
    const int fd = ::mkstemp(path.data());
    if (fd < 0) {
        ADD_FAILURE() << "mkstemp: " << std::strerror(errno);
        return -1;
    }
    ::unlink(path.c_str());
    size_t done = 0;
    while (done < content.size()) {
        const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
        if (n <= 0) {
            ADD_FAILURE() << "write: " << std::strerror(errno);
            break;
        }
        done += static_cast<size_t>(n);
    }
    return fd;
}

bool fd_open(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

bool fd_closed(int fd) {
    errno = 0;
    return ::fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

// Occupies the number of a descriptor that was just closed with another open file, so that a
// second close of the same number by the code under test shows: the sentinel would be gone.
class fd_sentinel {
  public:
    explicit fd_sentinel(int n) : fd_(n) {
        const int d = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (d != n) {
            EXPECT_EQ(::dup2(d, n), n);
            ::close(d);
        }
    }
    ~fd_sentinel() { ::close(fd_); }
    fd_sentinel(const fd_sentinel&) = delete;
    fd_sentinel& operator=(const fd_sentinel&) = delete;
    bool alive() const { return fd_open(fd_); }

  private:
    int fd_;
};

std::string pattern(size_t n) {
    std::string s(n, '\0');
    for (size_t i = 0; i < n; ++i)
        s[i] = static_cast<char>('a' + (i * 7 + i / 26) % 26);
    return s;
}

// ---------------------------------------------------------------- output_queue with files

// Writes everything in the queue the way http1::connection::flush does: the iovecs while
// there are some, else the file part at the front.
std::string drain(core::output_queue& q) {
    std::string out;
    for (int round = 0; !q.empty() && round < 1000; ++round) {
        iovec v[8];
        const int n = q.iov(v, 8);
        if (n > 0) {
            size_t took = 0;
            for (int i = 0; i < n; ++i) {
                out.append(static_cast<const char*>(v[i].iov_base), v[i].iov_len);
                took += v[i].iov_len;
            }
            q.consume(took);
            continue;
        }
        const core::output_queue::file_part f = q.front_file();
        if (f.fd < 0) {
            ADD_FAILURE() << "a non-empty queue has neither bytes nor a file at its front";
            break;
        }
        std::string buf(f.len, '\0');
        const ssize_t r = ::pread(f.fd, buf.data(), f.len, static_cast<off_t>(f.offset));
        if (r <= 0) {
            ADD_FAILURE() << "pread of the front file part: " << r;
            break;
        }
        out.append(buf.data(), static_cast<size_t>(r));
        q.consume(static_cast<size_t>(r));
    }
    return out;
}

std::string iov_bytes(const core::output_queue& q) {
    iovec v[16];
    const int n = q.iov(v, 16);
    std::string out;
    for (int i = 0; i < n; ++i)
        out.append(static_cast<const char*>(v[i].iov_base), v[i].iov_len);
    return out;
}

int iov_count(const core::output_queue& q) {
    iovec v[16];
    return q.iov(v, 16);
}

TEST(SendFileQueue, MixedPartsComeOutInOrder) {
    const int a = temp_file("0123456789");
    const int b = temp_file("abcdef");
    core::output_queue q;
    q.append(std::string_view("head "));
    q.append_file(a, 2, 5);  // "23456"
    q.append(std::string_view(" mid "));
    q.append_file(b, 0, 6);
    q.append(std::string(" tail"));
    EXPECT_EQ(q.size(), 5u + 5 + 5 + 6 + 5);
    EXPECT_EQ(drain(q), "head 23456 mid abcdef tail");
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(q.size(), 0u);
    EXPECT_TRUE(fd_closed(a));
    EXPECT_TRUE(fd_closed(b));
}

TEST(SendFileQueue, IovStopsInFrontOfAFilePart) {
    const int fd = temp_file("FILE");
    core::output_queue q;
    q.append(std::string_view("abc"));
    q.append_file(fd, 0, 4);
    q.append(std::string_view("def"));
    iovec v[8];
    ASSERT_EQ(q.iov(v, 8), 1);
    EXPECT_EQ(std::string(static_cast<char*>(v[0].iov_base), v[0].iov_len), "abc");
    EXPECT_EQ(q.front_file().fd, -1);  // bytes first
    q.consume(3);
    EXPECT_EQ(q.iov(v, 8), 0);  // the file is at the front: nothing for writev
    const core::output_queue::file_part f = q.front_file();
    EXPECT_EQ(f.fd, fd);
    EXPECT_EQ(f.offset, 0u);
    EXPECT_EQ(f.len, 4u);
    EXPECT_TRUE(fd_open(fd));
    q.consume(4);
    EXPECT_TRUE(fd_closed(fd));
    EXPECT_EQ(q.front_file().fd, -1);
    EXPECT_EQ(iov_bytes(q), "def");
}

TEST(SendFileQueue, FrontFileOfAnEmptyOrByteQueueIsNone) {
    core::output_queue q;
    core::output_queue::file_part f = q.front_file();
    EXPECT_EQ(f.fd, -1);
    EXPECT_EQ(f.offset, 0u);
    EXPECT_EQ(f.len, 0u);
    q.append(std::string_view("x"));
    f = q.front_file();
    EXPECT_EQ(f.fd, -1);
    EXPECT_EQ(f.len, 0u);
}

// Small appends after a file part must land after it, never inside the file's segment (its
// string is not written) nor before it.
TEST(SendFileQueue, AppendsAfterAFileAreNotCoalescedIntoIt) {
    const int fd = temp_file("0123456789");
    core::output_queue q;
    q.append_file(fd, 0, 10);  // the very first segment
    q.append(std::string_view("x"));
    q.append(std::string("yz"));
    q.append(std::string_view("!"));
    EXPECT_EQ(q.size(), 14u);
    EXPECT_EQ(iov_count(q), 0);
    EXPECT_EQ(q.front_file().len, 10u);
    EXPECT_EQ(drain(q), "0123456789xyz!");
    EXPECT_TRUE(fd_closed(fd));

    // The same after a written one: bytes before, the file, bytes after.
    const int fd2 = temp_file("FILE");
    q.append(std::string_view("<"));
    q.append_file(fd2, 1, 2);
    q.append(std::string_view(">"));
    EXPECT_EQ(iov_bytes(q), "<");
    EXPECT_EQ(drain(q), "<IL>");
    EXPECT_TRUE(fd_closed(fd2));
}

TEST(SendFileQueue, ConsumeWalksThroughFileParts) {
    const int fd = temp_file("0123456789");
    core::output_queue q;
    q.append(std::string_view("abc"));
    q.append_file(fd, 0, 10);
    q.append(std::string_view("def"));
    q.consume(5);  // "abc" and two bytes of the file
    core::output_queue::file_part f = q.front_file();
    EXPECT_EQ(f.fd, fd);
    EXPECT_EQ(f.offset, 2u);
    EXPECT_EQ(f.len, 8u);
    EXPECT_EQ(q.size(), 11u);
    q.consume(3);  // inside the file
    f = q.front_file();
    EXPECT_EQ(f.offset, 5u);
    EXPECT_EQ(f.len, 5u);
    EXPECT_TRUE(fd_open(fd));
    q.consume(6);  // the rest of the file and one byte after it
    EXPECT_TRUE(fd_closed(fd));
    EXPECT_EQ(q.size(), 2u);
    EXPECT_EQ(iov_bytes(q), "ef");
    q.consume(2);
    EXPECT_TRUE(q.empty());
}

// One consume() over bytes, a whole file, and more bytes.
TEST(SendFileQueue, OneConsumeSpansStringFileString) {
    const int fd = temp_file("0123456789");
    core::output_queue q;
    q.append(std::string_view("abc"));
    q.append_file(fd, 0, 10);
    q.append(std::string_view("defg"));
    q.consume(3 + 10 + 1);
    EXPECT_TRUE(fd_closed(fd));
    EXPECT_EQ(q.size(), 3u);
    EXPECT_EQ(iov_bytes(q), "efg");
}

TEST(SendFileQueue, AdjacentFilePartsFollowEachOther) {
    const int a = temp_file("AAAA");
    const int b = temp_file("BBBBBB");
    core::output_queue q;
    q.append_file(a, 0, 4);
    q.append_file(b, 1, 5);
    EXPECT_EQ(q.front_file().fd, a);
    q.consume(4);
    EXPECT_TRUE(fd_closed(a));
    EXPECT_TRUE(fd_open(b));
    const core::output_queue::file_part f = q.front_file();
    EXPECT_EQ(f.fd, b);
    EXPECT_EQ(f.offset, 1u);
    EXPECT_EQ(f.len, 5u);
    EXPECT_EQ(iov_count(q), 0);
    q.consume(5);
    EXPECT_TRUE(fd_closed(b));
    EXPECT_TRUE(q.empty());
}

// A written file is closed once: later operations on the queue (more parts, clear, the
// destructor) never close its number again, when something else may already own it.
TEST(SendFileQueue, WrittenFileIsClosedExactlyOnce) {
    const int fd = temp_file("0123456789");
    auto q = std::make_unique<core::output_queue>();
    q->append(std::string_view("abc"));
    q->append_file(fd, 0, 10);
    q->append(std::string_view("def"));
    q->consume(13);
    ASSERT_TRUE(fd_closed(fd));
    fd_sentinel reused(fd);
    q->consume(1);
    q->append(std::string_view("more"));
    q->clear();
    q->release();
    q.reset();
    EXPECT_TRUE(reused.alive());
}

TEST(SendFileQueue, ClearClosesUnwrittenFilesOnce) {
    const int a = temp_file("0123456789");
    const int b = temp_file("abcdef");
    core::output_queue q;
    q.append(std::string_view("abc"));
    q.append_file(a, 0, 10);
    q.append(std::string_view("def"));
    q.append_file(b, 0, 6);
    q.consume(5);  // a is partly written
    ASSERT_TRUE(fd_open(a));
    ASSERT_TRUE(fd_open(b));
    q.clear();
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(q.size(), 0u);
    EXPECT_EQ(q.front_file().fd, -1);
    EXPECT_TRUE(fd_closed(a));
    EXPECT_TRUE(fd_closed(b));
    fd_sentinel ra(a), rb(b);
    q.clear();  // again, and the destructor below: nothing left to close
    q.append(std::string_view("z"));
    EXPECT_EQ(drain(q), "z");
    EXPECT_TRUE(ra.alive());
    EXPECT_TRUE(rb.alive());
}

TEST(SendFileQueue, DestructorClosesUnwrittenFiles) {
    const int a = temp_file("0123456789");
    const int b = temp_file("abcdef");
    {
        core::output_queue q;
        q.append_file(a, 0, 10);
        q.append(std::string_view("between"));
        q.append_file(b, 2, 3);
        q.consume(4);
        EXPECT_TRUE(fd_open(a));
        EXPECT_TRUE(fd_open(b));
    }
    EXPECT_TRUE(fd_closed(a));
    EXPECT_TRUE(fd_closed(b));
}

TEST(SendFileQueue, ZeroLengthPartClosesAtOnce) {
    const int fd = temp_file("0123456789");
    core::output_queue q;
    q.append_file(fd, 3, 0);
    EXPECT_TRUE(fd_closed(fd));
    EXPECT_TRUE(q.empty());
    EXPECT_EQ(q.front_file().fd, -1);
    EXPECT_EQ(iov_count(q), 0);
    fd_sentinel reused(fd);
    // Between two strings it leaves no trace either.
    const int fd2 = temp_file("x");
    q.append(std::string_view("ab"));
    q.append_file(fd2, 0, 0);
    EXPECT_TRUE(fd_closed(fd2));
    q.append(std::string_view("cd"));
    EXPECT_EQ(q.size(), 4u);
    EXPECT_EQ(iov_bytes(q), "abcd");
    q.clear();
    EXPECT_TRUE(reused.alive());
}

// ---------------------------------------------------------------- transport::send_file default

// An in-memory transport that keeps the default send_file: accepts `budget` bytes in all, at
// most `per_write` per call.
struct pipe_transport final : core::transport {
    std::string output;
    size_t budget = SIZE_MAX;
    size_t per_write = SIZE_MAX;
    int writes = 0;

    ssize_t read(char*, size_t) override { return -EAGAIN; }
    ssize_t writev(const iovec* iov, int n, bool) override {
        ++writes;
        if (budget == 0) return -EAGAIN;
        size_t room = std::min(budget, per_write), written = 0;
        for (int i = 0; i < n && room > 0; ++i) {
            const size_t take = std::min(iov[i].iov_len, room);
            output.append(static_cast<const char*>(iov[i].iov_base), take);
            room -= take;
            written += take;
        }
        budget -= written;
        return static_cast<ssize_t>(written);
    }
    void shutdown_write() override {}
    void close() override {}
};

TEST(SendFileTransport, DefaultWritesFromTheOffsetWithoutMovingTheFilePosition) {
    const int fd = temp_file("0123456789");
    ASSERT_EQ(::lseek(fd, 1, SEEK_SET), 1);
    pipe_transport t;
    EXPECT_EQ(t.send_file(fd, 3, 4), 4);
    EXPECT_EQ(t.output, "3456");
    EXPECT_EQ(::lseek(fd, 0, SEEK_CUR), 1);
    EXPECT_TRUE(fd_open(fd));  // the transport never owns the descriptor
    ::close(fd);
}

// Nothing asked is nothing written, not "the file ended early": tcp_transport's sendfile
// override answers 0 here too.
TEST(SendFileTransport, DefaultZeroLengthIsZeroNotEio) {
    const int fd = temp_file("0123456789");
    pipe_transport t;
    EXPECT_EQ(t.send_file(fd, 0, 0), 0);
    EXPECT_EQ(t.output, "");
    ::close(fd);
}

TEST(SendFileTransport, PartialWritesAndWouldBlock) {
    const std::string content = pattern(100);
    const int fd = temp_file(content);
    pipe_transport t;
    t.per_write = 30;
    t.budget = 70;
    uint64_t off = 0;
    ssize_t n = t.send_file(fd, off, 100);
    EXPECT_EQ(n, 30);
    off += static_cast<uint64_t>(n);
    n = t.send_file(fd, off, 100 - off);
    EXPECT_EQ(n, 30);
    off += static_cast<uint64_t>(n);
    n = t.send_file(fd, off, 100 - off);
    EXPECT_EQ(n, 10);  // the budget's end
    off += static_cast<uint64_t>(n);
    EXPECT_EQ(t.send_file(fd, off, 100 - off), -EAGAIN);
    t.budget = SIZE_MAX;
    t.per_write = SIZE_MAX;
    n = t.send_file(fd, off, 100 - off);
    EXPECT_EQ(n, 30);
    EXPECT_EQ(t.output, content);
    ::close(fd);
}

// More than one block: each call writes something, in order, until the whole range is out.
TEST(SendFileTransport, LargeRangeGoesOutInBlocks) {
    const std::string content = pattern(100 * 1024 + 17);
    const int fd = temp_file(content);
    pipe_transport t;
    uint64_t off = 5;
    int calls = 0;
    while (off < content.size() && calls < 1000) {
        const ssize_t n = t.send_file(fd, off, content.size() - off);
        ASSERT_GT(n, 0) << "at " << off;
        off += static_cast<uint64_t>(n);
        ++calls;
    }
    EXPECT_EQ(t.output, content.substr(5));
    EXPECT_GT(calls, 1);
    ::close(fd);
}

TEST(SendFileTransport, FileEndingEarlyIsEio) {
    const int fd = temp_file("0123456789");
    pipe_transport t;
    EXPECT_EQ(t.send_file(fd, 10, 5), -EIO);  // at the end
    EXPECT_EQ(t.send_file(fd, 50, 5), -EIO);  // past it
    EXPECT_EQ(t.output, "");
    EXPECT_EQ(t.writes, 0);
    EXPECT_EQ(t.send_file(fd, 8, 5), 2);  // what there is, then the end
    EXPECT_EQ(t.send_file(fd, 10, 3), -EIO);
    EXPECT_EQ(t.output, "89");
    ::close(fd);
}

TEST(SendFileTransport, BadDescriptorIsItsErrno) {
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    ::close(p[1]);
    pipe_transport t;
    EXPECT_EQ(t.send_file(p[0], 0, 4), -ESPIPE);  // a pipe cannot be pread
    ::close(p[0]);
    EXPECT_EQ(t.send_file(p[0], 0, 4), -EBADF);
    EXPECT_EQ(t.output, "");
}

// ---------------------------------------------------------------- http1::connection

// The in-memory transport of test_connection.cpp, without a send_file of its own: the
// connection's file parts go through the default (pread + writev).
struct mem_transport final : core::transport {
    std::string input;
    size_t pos = 0;
    std::string output;
    size_t write_budget = SIZE_MAX;
    bool shut = false, closed = false;
    bool fin_owed = false;  // a complete fin_next write: the FIN must come next

    ssize_t read(char* buf, size_t len) override {
        EXPECT_FALSE(fin_owed) << "read() between a fin_next write and the FIN";
        if (pos < input.size()) {
            const size_t n = std::min(len, input.size() - pos);
            std::memcpy(buf, input.data() + pos, n);
            pos += n;
            return static_cast<ssize_t>(n);
        }
        return -EAGAIN;
    }
    ssize_t writev(const iovec* iov, int n, bool fin_next) override {
        EXPECT_FALSE(fin_owed) << "writev() between a fin_next write and the FIN";
        if (write_budget == 0) return -EAGAIN;
        size_t written = 0, offered = 0;
        for (int i = 0; i < n; ++i) {
            const size_t take = std::min(iov[i].iov_len, write_budget);
            output.append(static_cast<const char*>(iov[i].iov_base), take);
            write_budget -= take;
            written += take;
            offered += iov[i].iov_len;
        }
        if (fin_next && written == offered) fin_owed = true;
        return static_cast<ssize_t>(written);
    }
    void shutdown_write() override {
        shut = true;
        fin_owed = false;
    }
    void close() override {
        closed = true;
        fin_owed = false;
    }
};

// A fake owner; the test is the app, answering through the exchanges it collects.
struct harness final : http1::connection_owner {
    mem_transport t;
    http1::connection_config cfg;
    http::event_queue events;
    http::endpoint client{"127.0.0.1", 5555, true};
    http::endpoint server{"127.0.0.1", 8000, true};
    std::unique_ptr<http1::connection> conn;
    std::vector<http1::connection*> scheduled;
    std::vector<std::shared_ptr<http::exchange>> exchanges;
    bool closed = false;

    harness() {
        cfg.date_header = false;
        conn = std::make_unique<http1::connection>(t, *this, cfg, events, client, server);
    }
    void schedule(http1::connection& c) override {
        if (!c.scheduled) scheduled.push_back(&c);
        c.scheduled = true;
    }
    void arm_timer(http1::connection&, timer_kind) override {}
    void disarm_timer(http1::connection&, timer_kind) override {}
    uint64_t now_ms() const noexcept override { return 1000; }
    bool admit_request(http1::connection&) override { return true; }
    void request_finished(http1::connection&) override {}
    void on_closed(http1::connection&) override { closed = true; }

    void feed(std::string_view bytes) {
        t.input.append(bytes);
        if (!closed) conn->on_readable();
        pump();
    }
    void pump() {
        for (int round = 0; round < 1000; ++round) {
            bool busy = false;
            for (auto& ex : events.take()) {
                busy = true;
                if (ex->take_events() & http::ev_request) exchanges.push_back(ex);
            }
            for (auto* c : std::exchange(scheduled, {})) {
                busy = true;
                c->scheduled = false;
                if (!closed) c->process();
            }
            if (!busy) return;
        }
        FAIL() << "pump did not settle";
    }
    // The client has room again, as the EPOLLOUT edge would say.
    void writable() {
        if (!closed) conn->on_writable();
        pump();
    }
};

constexpr std::string_view get_request = "GET /f HTTP/1.1\r\nHost: a\r\n\r\n";
constexpr std::string_view ok_head = "HTTP/1.1 200 OK\r\nserver: coachwhip\r\n";

std::string ok_with_length(std::string_view body) {
    return std::string(ok_head) + "content-length: " + std::to_string(body.size()) + "\r\n\r\n" +
           std::string(body);
}

// Splits a response at the end of its head: {head, everything after it}.
std::pair<std::string, std::string> split_head(const std::string& response) {
    const size_t end = response.find("\r\n\r\n");
    if (end == std::string::npos) return {response, {}};
    return {response.substr(0, end + 4), response.substr(end + 4)};
}

// Decodes a chunked body without trailers (RFC 9112 §7.1); nullopt when it is malformed or
// unfinished. `rest`: what follows the last chunk.
std::optional<std::string> decode_chunked(std::string_view s, std::string_view* rest) {
    std::string body;
    for (;;) {
        const size_t eol = s.find("\r\n");
        if (eol == std::string_view::npos || eol == 0) return std::nullopt;
        size_t size = 0;
        const auto [end, ec] = std::from_chars(s.data(), s.data() + eol, size, 16);
        if (ec != std::errc() || end != s.data() + eol) return std::nullopt;
        s.remove_prefix(eol + 2);
        if (size == 0) {
            if (!s.starts_with("\r\n")) return std::nullopt;
            *rest = s.substr(2);
            return body;
        }
        if (s.size() < size + 2 || s.substr(size, 2) != "\r\n") return std::nullopt;
        body.append(s.substr(0, size));
        s.remove_prefix(size + 2);
    }
}

TEST(SendFileConnection, FileWithTheHeadGetsItsLengthAsContentLength) {
    harness h;
    h.feed(get_request);
    ASSERT_EQ(h.exchanges.size(), 1u);
    auto& ex = *h.exchanges[0];
    const int fd = temp_file("skip:file body");
    http::response_sink::head head{200, {}};
    EXPECT_EQ(ex.send_file(&head, fd, 5, 9, false).status, http::send_status::proceed);
    EXPECT_TRUE(fd_open(fd));  // queued, not yet written: the connection still needs it
    h.pump();
    EXPECT_EQ(h.t.output, ok_with_length("file body"));
    EXPECT_TRUE(fd_closed(fd));
    EXPECT_TRUE(ex.response_complete);
    EXPECT_EQ(ex.bytes_sent, 9u);
    EXPECT_FALSE(h.closed);
    EXPECT_FALSE(h.t.shut);
}

// The head first through send() (the app's own content-length), then the file on its own.
TEST(SendFileConnection, FileAfterAHeadSentAlone) {
    harness h;
    h.feed(get_request);
    auto& ex = *h.exchanges[0];
    http::field cl[] = {{"content-length", "10"}};
    http::response_sink::head head{200, cl};
    EXPECT_EQ(ex.send(&head, "", true).status, http::send_status::proceed);
    const int fd = temp_file("0123456789");
    EXPECT_EQ(ex.send_file(nullptr, fd, 0, 10, false).status, http::send_status::proceed);
    h.pump();
    EXPECT_EQ(h.t.output, std::string(ok_head) + "content-length: 10\r\n\r\n0123456789");
    EXPECT_TRUE(fd_closed(fd));
    EXPECT_TRUE(ex.response_complete);
    EXPECT_FALSE(h.closed);
}

// A file without a head before any head is the app's mistake: refused, the file closed.
TEST(SendFileConnection, FileBeforeAnyHeadIsRefused) {
    harness h;
    h.feed(get_request);
    auto& ex = *h.exchanges[0];
    const int fd = temp_file("0123456789");
    EXPECT_EQ(ex.send_file(nullptr, fd, 0, 10, false).status, http::send_status::error);
    EXPECT_TRUE(fd_closed(fd));
    h.pump();
    EXPECT_EQ(h.t.output, "");
}

TEST(SendFileConnection, TwoFilePartsAndAStringBetweenAreChunked) {
    harness h;
    h.feed(get_request);
    auto& ex = *h.exchanges[0];
    const std::string first = pattern(3000);
    const std::string second = "xx" + pattern(700) + "yy";
    const int a = temp_file(first);
    const int b = temp_file(second);
    http::response_sink::head head{200, {}};
    EXPECT_EQ(ex.send_file(&head, a, 0, first.size(), true).status, http::send_status::proceed);
    EXPECT_EQ(ex.send(nullptr, "-- middle --", true).status, http::send_status::proceed);
    EXPECT_EQ(ex.send_file(nullptr, b, 2, 700, false).status, http::send_status::proceed);
    h.pump();
    const auto [resp_head, rest] = split_head(h.t.output);
    EXPECT_EQ(resp_head, std::string(ok_head) + "transfer-encoding: chunked\r\n\r\n");
    std::string_view after;
    const std::optional<std::string> body = decode_chunked(rest, &after);
    ASSERT_TRUE(body.has_value()) << "not a valid chunked body: " << rest.substr(0, 200);
    EXPECT_EQ(*body, first + "-- middle --" + pattern(700));
    EXPECT_EQ(after, "");
    EXPECT_TRUE(fd_closed(a));
    EXPECT_TRUE(fd_closed(b));
    EXPECT_TRUE(ex.response_complete);
    EXPECT_EQ(ex.bytes_sent, 3000u + 12 + 700);
    EXPECT_FALSE(h.closed);
}

// An empty file part in a chunked body writes no chunk (a "0" chunk would end the body).
TEST(SendFileConnection, EmptyFilePartInAChunkedBodyIsNoChunk) {
    harness h;
    h.feed(get_request);
    auto& ex = *h.exchanges[0];
    const int empty = temp_file("");
    http::response_sink::head head{200, {}};
    EXPECT_EQ(ex.send(&head, "abc", true).status, http::send_status::proceed);
    EXPECT_EQ(ex.send_file(nullptr, empty, 0, 0, true).status, http::send_status::proceed);
    EXPECT_TRUE(fd_closed(empty));
    EXPECT_EQ(ex.send(nullptr, "de", false).status, http::send_status::proceed);
    h.pump();
    EXPECT_EQ(h.t.output, std::string(ok_head) +
                              "transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
}

TEST(SendFileConnection, HeadRequestSendsNoBodyBytesAndClosesTheFile) {
    harness h;
    h.feed("HEAD /f HTTP/1.1\r\nHost: a\r\n\r\n");
    auto& ex = *h.exchanges[0];
    const int fd = temp_file("0123456789");
    http::response_sink::head head{200, {}};
    EXPECT_EQ(ex.send_file(&head, fd, 0, 10, false).status, http::send_status::proceed);
    EXPECT_TRUE(fd_closed(fd));  // no byte of it will ever be sent
    h.pump();
    EXPECT_EQ(h.t.output, std::string(ok_head) + "content-length: 10\r\n\r\n");
    EXPECT_TRUE(ex.response_complete);
    EXPECT_FALSE(h.closed);

    // In parts: no length is known, none is announced, nothing follows the head.
    h.feed("HEAD /g HTTP/1.1\r\nHost: a\r\n\r\n");
    ASSERT_EQ(h.exchanges.size(), 2u);
    auto& ex2 = *h.exchanges[1];
    const int a = temp_file("0123456789");
    EXPECT_EQ(ex2.send_file(&head, a, 0, 10, true).status, http::send_status::proceed);
    EXPECT_TRUE(fd_closed(a));
    const int b = temp_file("abcdef");
    EXPECT_EQ(ex2.send_file(nullptr, b, 0, 6, false).status, http::send_status::proceed);
    EXPECT_TRUE(fd_closed(b));
    h.pump();
    EXPECT_EQ(h.t.output,
              std::string(ok_head) + "content-length: 10\r\n\r\n" + std::string(ok_head) + "\r\n");
    EXPECT_TRUE(ex2.response_complete);
    EXPECT_FALSE(h.closed);
}

// A later part that breaks the app's content-length: refused, its file closed, none of its
// bytes written.
TEST(SendFileConnection, PartBreakingTheContentLengthIsRefused) {
    for (const bool too_long : {true, false}) {
        harness h;
        h.feed(get_request);
        auto& ex = *h.exchanges[0];
        http::field cl[] = {{"content-length", "6"}};
        http::response_sink::head head{200, cl};
        EXPECT_EQ(ex.send(&head, "ab", true).status, http::send_status::proceed);
        const int fd = temp_file("FILEDATA");
        // 2 + 8 > 6; or 2 + 3 < 6 as the last part.
        const auto r = ex.send_file(nullptr, fd, 0, too_long ? 8 : 3, too_long);
        EXPECT_EQ(r.status, http::send_status::error) << too_long;
        EXPECT_FALSE(r.reason.empty());
        EXPECT_TRUE(fd_closed(fd)) << too_long;
        h.pump();
        EXPECT_EQ(h.t.output, std::string(ok_head) + "content-length: 6\r\n\r\nab") << too_long;
        EXPECT_EQ(ex.bytes_sent, 2u);
    }
}

// The same mistake in the call that carries the head answers like send() does: refused with
// nothing queued, so the app can still answer with an error response.
TEST(SendFileConnection, PartBreakingTheContentLengthWithTheHeadQueuesNothing) {
    harness h;
    h.feed(get_request);
    auto& ex = *h.exchanges[0];
    http::field cl[] = {{"content-length", "10"}};
    http::response_sink::head head{200, cl};
    const int fd = temp_file("FILEDATA");
    EXPECT_EQ(ex.send_file(&head, fd, 0, 3, false).status, http::send_status::error);
    EXPECT_TRUE(fd_closed(fd));
    h.writable();               // an I/O phase: whatever was queued goes out
    EXPECT_EQ(h.t.output, "");  // send(&head, "FIL", false) writes nothing either
    http::response_sink::head error{500, {}};
    EXPECT_EQ(ex.send(&error, "oops", false).status, http::send_status::proceed);
    h.pump();
    EXPECT_EQ(h.t.output,
              "HTTP/1.1 500 Internal Server Error\r\nserver: coachwhip\r\n"
              "content-length: 4\r\n\r\noops");
}

// The file ends before the range the head announced: the framing cannot be kept, so the
// connection closes (the client sees a body cut short, not the next response inside it).
TEST(SendFileConnection, FileAlreadyAtItsEndClosesTheConnection) {
    harness h;
    h.feed(get_request);
    auto& ex = *h.exchanges[0];
    const int fd = temp_file("0123456789");
    http::response_sink::head head{200, {}};
    EXPECT_EQ(ex.send_file(&head, fd, 10, 5, false).status, http::send_status::proceed);
    h.pump();
    EXPECT_TRUE(h.closed);
    EXPECT_TRUE(h.t.closed);
    EXPECT_EQ(h.t.output, std::string(ok_head) + "content-length: 5\r\n\r\n");
    EXPECT_TRUE(fd_closed(fd));
}

TEST(SendFileConnection, FileShorterThanAnnouncedClosesTheConnection) {
    harness h;
    h.feed(get_request);
    auto& ex = *h.exchanges[0];
    const int fd = temp_file("abc");
    http::response_sink::head head{200, {}};
    EXPECT_EQ(ex.send_file(&head, fd, 0, 10, false).status, http::send_status::proceed);
    h.pump();  // the client has room for everything: no EPOLLOUT edge will come
    EXPECT_TRUE(h.closed) << "the connection waits, with 7 bytes owed that do not exist";
    EXPECT_EQ(h.t.output, std::string(ok_head) + "content-length: 10\r\n\r\nabc");
    EXPECT_TRUE(fd_closed(fd));
}

// A file larger than the default send_file's block, to a client with room for all of it: the
// whole body goes out without waiting for a writable edge (a short send_file here is not a
// full socket, just the end of one block).
TEST(SendFileConnection, FileLargerThanABlockIsSentWhole) {
    harness h;
    h.feed(get_request);
    auto& ex = *h.exchanges[0];
    const std::string content = pattern(100 * 1024);
    const int fd = temp_file(content);
    http::response_sink::head head{200, {}};
    EXPECT_EQ(ex.send_file(&head, fd, 0, content.size(), false).status, http::send_status::proceed);
    h.pump();
    const auto [resp_head, body] = split_head(h.t.output);
    EXPECT_EQ(resp_head, std::string(ok_head) + "content-length: 102400\r\n\r\n");
    EXPECT_EQ(body.size(), content.size()) << "stalled after " << body.size() << " bytes";
    EXPECT_TRUE(body == content.substr(0, body.size()));
    EXPECT_TRUE(fd_closed(fd));
    EXPECT_TRUE(ex.response_complete);
}

// A client that takes the body a few bytes at a time: the file stays open until its last
// byte is out, and the bytes arrive in order.
TEST(SendFileConnection, SlowClientGetsTheFileAcrossWritableEvents) {
    harness h;
    h.feed(get_request);
    auto& ex = *h.exchanges[0];
    const std::string content = pattern(50);
    const int fd = temp_file(content);
    http::response_sink::head head{200, {}};
    const std::string expected = ok_with_length(content);
    const size_t head_size = expected.size() - content.size();
    h.t.write_budget = head_size + 4;
    EXPECT_EQ(ex.send_file(&head, fd, 0, content.size(), false).status, http::send_status::proceed);
    h.pump();
    EXPECT_EQ(h.t.output, expected.substr(0, head_size + 4));
    EXPECT_TRUE(fd_open(fd));
    for (int i = 0; i < 100 && h.t.output.size() < expected.size(); ++i) {
        h.t.write_budget = 7;
        h.writable();
        if (h.t.output.size() < expected.size()) {
            EXPECT_TRUE(fd_open(fd)) << h.t.output.size();
        }
    }
    EXPECT_EQ(h.t.output, expected);
    EXPECT_TRUE(fd_closed(fd));
    EXPECT_FALSE(h.closed);
}

TEST(SendFileConnection, KeepAliveServesTheNextRequestAfterAFile) {
    harness h;
    h.feed(get_request);
    const int fd = temp_file("first body");
    http::response_sink::head head{200, {}};
    EXPECT_EQ(h.exchanges[0]->send_file(&head, fd, 0, 10, false).status,
              http::send_status::proceed);
    h.pump();
    EXPECT_TRUE(fd_closed(fd));
    h.feed("GET /second HTTP/1.1\r\nHost: a\r\n\r\n");
    ASSERT_EQ(h.exchanges.size(), 2u);
    EXPECT_EQ(h.exchanges[1]->target, "/second");
    EXPECT_EQ(h.exchanges[1]->send(&head, "second body", false).status, http::send_status::proceed);
    h.pump();
    EXPECT_EQ(h.t.output, ok_with_length("first body") + ok_with_length("second body"));
    EXPECT_FALSE(h.closed);

    // And a file again, on the same connection.
    h.feed(get_request);
    ASSERT_EQ(h.exchanges.size(), 3u);
    const int fd3 = temp_file("third");
    EXPECT_EQ(h.exchanges[2]->send_file(&head, fd3, 0, 5, false).status,
              http::send_status::proceed);
    h.pump();
    EXPECT_TRUE(fd_closed(fd3));
    EXPECT_EQ(h.t.output, ok_with_length("first body") + ok_with_length("second body") +
                              ok_with_length("third"));
}

// Connection: close: the file goes out whole, then the connection ends.
TEST(SendFileConnection, FileResponseThenCloseWhenTheClientAskedForIt) {
    harness h;
    h.feed("GET /f HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    const int fd = temp_file("last one");
    http::response_sink::head head{200, {}};
    EXPECT_EQ(h.exchanges[0]->send_file(&head, fd, 0, 8, false).status, http::send_status::proceed);
    h.pump();
    EXPECT_EQ(h.t.output,
              std::string(ok_head) + "content-length: 8\r\nconnection: close\r\n\r\n" + "last one");
    EXPECT_TRUE(h.closed || h.t.shut);
    EXPECT_TRUE(fd_closed(fd));
}

// After the response is complete, or on a 204, a file is refused and still closed.
TEST(SendFileConnection, RefusedFilesAreClosed) {
    harness h;
    h.feed(get_request);
    auto& ex = *h.exchanges[0];
    http::response_sink::head head{200, {}};
    EXPECT_EQ(ex.send(&head, "done", false).status, http::send_status::proceed);
    const int late = temp_file("late");
    EXPECT_NE(ex.send_file(nullptr, late, 0, 4, false).status, http::send_status::proceed);
    EXPECT_TRUE(fd_closed(late));
    h.pump();  // the exchange is detached now
    const int detached = temp_file("gone");
    EXPECT_EQ(ex.send_file(nullptr, detached, 0, 4, false).status, http::send_status::closed);
    EXPECT_TRUE(fd_closed(detached));
    EXPECT_EQ(h.t.output, ok_with_length("done"));

    h.feed(get_request);
    ASSERT_EQ(h.exchanges.size(), 2u);
    http::response_sink::head no_content{204, {}};
    const int body = temp_file("body");
    EXPECT_EQ(h.exchanges[1]->send_file(&no_content, body, 0, 4, false).status,
              http::send_status::error);
    EXPECT_TRUE(fd_closed(body));
    h.pump();
    EXPECT_EQ(h.t.output.find("body"), std::string::npos);
}

}  // namespace

// ---- tcp_transport: sendfile(2) to a remote peer, a copy to a local one ----------------------

namespace {

// Reads everything the peer end of `sv` holds now (non-blocking).
std::string drain(int fd) {
    std::string got;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0)
        got.append(buf, static_cast<size_t>(n));
    return got;
}

// Sends [offset, offset + len) of `file` through `t` the way http1::connection::flush does (a
// slice per call until it says it would block, then the reader drains), and returns what the
// reader got.
std::string send_through(server::tcp_transport& t, int reader, int file, uint64_t offset,
                         size_t len) {
    std::string got;
    for (int guard = 0; len > 0 && guard < 100000; ++guard) {
        const ssize_t n = t.send_file(file, offset, std::min<size_t>(len, 1 << 20));
        if (n > 0) {
            offset += static_cast<uint64_t>(n);
            len -= static_cast<size_t>(n);
        } else if (n == -EAGAIN) {
            got += drain(reader);
        } else {
            ADD_FAILURE() << "send_file: " << n;
            break;
        }
    }
    return got + drain(reader);
}

}  // namespace

TEST(SendFileTcp, RemoteAndLocalPeersGetTheSameBytes) {
    const std::string data = pattern(3 * 1024 * 1024 + 123);
    for (bool local : {false, true}) {
        int sv[2];
        ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
        const int small = 64 * 1024;  // short writes and EAGAIN on the way
        ::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        const int fd = temp_file(data);
        server::tcp_transport t(sv[0], nullptr);
        t.set_local_peer(local);
        EXPECT_EQ(send_through(t, sv[1], fd, 100, data.size() - 100), data.substr(100))
            << (local ? "copy" : "sendfile");
        ::close(fd);
        ::close(sv[1]);
    }
}

TEST(SendFileTcp, AFileShorterThanAskedIsEioBothWays) {
    for (bool local : {false, true}) {
        int sv[2];
        ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
        const int fd = temp_file("abc");
        server::tcp_transport t(sv[0], nullptr);
        t.set_local_peer(local);
        EXPECT_EQ(t.send_file(fd, 0, 10), 3) << local;
        EXPECT_EQ(t.send_file(fd, 3, 7), -EIO) << local;
        EXPECT_EQ(drain(sv[1]), "abc");
        ::close(fd);
        ::close(sv[1]);
    }
}
