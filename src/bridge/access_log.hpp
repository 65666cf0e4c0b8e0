// coachwhip::bridge — the access log: the engine's access records (http::access_record) handed to
// Python's logging, one call per response, with the fields as values (no text to parse).
//
// The engine collects a record as each response ends (its protocol lets go of the exchange: the
// response was written, failed, or cut short) and for every answer it gives itself (400, 408,
// 413, 414, 431, 503, 505, the /-/ endpoints). The bridge drains them after each engine phase:
// under asyncio on the loop's thread (deliver_all), with WSGI on a WSGI thread (the engine's own
// thread never takes the GIL: it hands them to the pool). Each record becomes one call of the
// Python sink (coachwhip.logs.access):
//
//   sink(client, method, target, http_version, status, duration_us, bytes, cut_short,
//        user_agent, request_id, request_fields, response_fields)
//
// `client` is "host:port" ("[v6]:port"; "-" when unknown), `target` the path with its query,
// `user_agent` and `request_id` (X-Request-ID) are str or None, and the two tuples hold the
// values of the request and response fields the log format names (%({name}i)s, %({name}o)s),
// None for a field the message did not have; both are None when the format names none. After a
// batch the bridge calls the flush callable once, so a burst of responses costs one write.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "bridge/py.hpp"
#include "http/exchange.hpp"

namespace coachwhip::bridge {

struct server_object;

// What the Server keeps for its access log (owned by server_object::access).
struct access_log_state {
    PyObject* sink = nullptr;   // callable (see above), strong; nullptr: no access log
    PyObject* flush = nullptr;  // callable(), strong, or nullptr
    std::vector<std::string> request_fields;   // lower-case names, in the format's order
    std::vector<std::string> response_fields;  // lower-case names, in the format's order
    std::vector<http::access_record> batch;    // reused: its capacity stays between batches
};

// Hands `records` to the sink, then flushes (GIL held). The records are consumed (cleared).
void write_access_records(server_object* srv, std::vector<http::access_record>& records);
// Takes what the engine collected and writes it (GIL held; the engine not running elsewhere).
void drain_access_log(server_object* srv);
// Notes what the engine needs to know of a response head the app is sending (no Python; any
// thread): whether it is a Server-Sent Events stream (ex.event_stream), and the values of the
// response fields the log format names (ex.logged_fields; `wanted` may be empty).
void inspect_response_head(const std::vector<std::string>& wanted, http::exchange& ex,
                           std::span<const http::field> fields);

}  // namespace coachwhip::bridge
