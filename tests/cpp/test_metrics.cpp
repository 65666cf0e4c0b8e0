// server::metrics::region: shared counters, folding an exited worker, the rendered text.
#include <gtest/gtest.h>

#include <string>

#include "server/metrics.hpp"

using namespace coachwhip::server;

namespace {

bool has_line(const std::string& text, const std::string& line) {
    return text.find("\n" + line + "\n") != std::string::npos;
}

TEST(Metrics, WorkersAttachToOneRegionAndRenderTheSum) {
    metrics::region supervisor;
    ASSERT_FALSE(metrics::region::create(4, supervisor));
    metrics::region w1, w2;  // what two workers map (same fd here)
    ASSERT_FALSE(metrics::region::attach(supervisor.fd(), w1));
    ASSERT_FALSE(metrics::region::attach(supervisor.fd(), w2));
    metrics::add(w1.slot(0).requests[metrics::m_get][2], 3);
    metrics::add(w2.slot(1).requests[metrics::m_get][2], 4);
    metrics::add(w2.slot(1).requests[metrics::m_post][5]);
    metrics::add(w1.slot(0).in_flight, 2);
    metrics::set(w1.slot(0).pid, 11);
    metrics::set(w2.slot(1).pid, 12);
    const std::string text = supervisor.render();
    EXPECT_TRUE(has_line(text, "coachwhip_requests_total{method=\"GET\",status=\"2xx\"} 7"));
    EXPECT_TRUE(has_line(text, "coachwhip_requests_total{method=\"POST\",status=\"5xx\"} 1"));
    EXPECT_TRUE(has_line(text, "coachwhip_requests_in_flight 2"));
    EXPECT_TRUE(has_line(text, "coachwhip_workers 2"));
}

TEST(Metrics, FoldKeepsCountersDropsGaugesAndFreesTheSlot) {
    metrics::region r;
    ASSERT_FALSE(metrics::region::create(2, r));
    metrics::block& b = r.slot(1);
    metrics::set(b.pid, 99);
    metrics::add(b.requests[metrics::m_put][4], 5);
    metrics::add(b.connections_open, 3);
    metrics::add(b.bytes_sent, 1000);
    r.fold(1);
    EXPECT_EQ(b.pid, 0u);
    EXPECT_EQ(b.bytes_sent, 0u);
    const std::string text = r.render();
    EXPECT_TRUE(has_line(text, "coachwhip_requests_total{method=\"PUT\",status=\"4xx\"} 5"));
    EXPECT_TRUE(has_line(text, "coachwhip_sent_bytes_total 1000"));
    EXPECT_TRUE(has_line(text, "coachwhip_connections_open 0"));
    EXPECT_TRUE(has_line(text, "coachwhip_workers 0"));
    EXPECT_EQ(r.head().seq % 2, 0u);
}

TEST(Metrics, HistogramIsCumulativeAndWorkerEventsAreCounted) {
    metrics::region r;
    ASSERT_FALSE(metrics::region::make_private(r));
    metrics::add(r.slot(0).duration_buckets[0], 2);  // <= 5 ms
    metrics::add(r.slot(0).duration_buckets[3], 1);  // <= 50 ms
    metrics::add(r.slot(0).duration_count, 4);       // one slower than 10 s
    r.count_start(0);
    r.count_exit(2);
    const std::string text = r.render();
    EXPECT_TRUE(has_line(text, "coachwhip_request_duration_seconds_bucket{le=\"0.005\"} 2"));
    EXPECT_TRUE(has_line(text, "coachwhip_request_duration_seconds_bucket{le=\"0.05\"} 3"));
    EXPECT_TRUE(has_line(text, "coachwhip_request_duration_seconds_bucket{le=\"10\"} 3"));
    EXPECT_TRUE(has_line(text, "coachwhip_request_duration_seconds_bucket{le=\"+Inf\"} 4"));
    EXPECT_TRUE(has_line(text, "coachwhip_worker_starts_total{reason=\"initial\"} 1"));
    EXPECT_TRUE(has_line(text, "coachwhip_worker_exits_total{reason=\"killed\"} 1"));
}

TEST(Metrics, AttachRefusesWhatIsNotARegion) {
    metrics::region r;
    EXPECT_TRUE(metrics::region::attach(-1, r));
    EXPECT_EQ(metrics::method_of("PATCH"), metrics::m_patch);
    EXPECT_EQ(metrics::method_of("get"), metrics::m_other);  // methods are case-sensitive
}

}  // namespace
