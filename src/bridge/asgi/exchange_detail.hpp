// coachwhip::bridge::detail — the parts of the ASGI exchange (exchange.cpp) that its WebSocket
// face (websocket.cpp) shares: waiting futures, response heads.
#pragma once

#include <cstdint>
#include <string_view>

#include "bridge/objects.hpp"

namespace coachwhip::bridge::detail {

// ASGI HTTP send() state machine (exchange_object::asgi_state), also a WebSocket's denial
// response (websocket.http.response.*):
//   start --http.response.start--> head --http.response.body(more)--> body --...--> done
//   head/body --http.response.body(!more)--> done
//   head/body --http.response.body(!more), trailers announced (HTTP/2)--> trailers
//   trailers --http.response.trailers(more_trailers)--> trailers --(!more_trailers)--> done
//   any --protocol error from the engine--> failed
enum asgi_state : uint8_t { st_start, st_head, st_body, st_done, st_failed, st_trailers };

// Completes `waiter` (cleared) with `value`, unless the app cancelled it.
void resolve(PyObject*& waiter, PyObject* value);
// A waiting receive() gets `msg` (stolen; nullptr: nothing yet, or an error to report).
void answer_receive(exchange_object* obj, PyObject* msg);
// True while `waiter` is a future the app still waits on; a done (cancelled) one is dropped.
bool still_waiting(PyObject*& waiter);
// Fails `waiter` (cleared) with exc_type(text), unless the app cancelled it.
void fail_waiter(PyObject*& waiter, PyObject* exc_type, const char* text);
// Raises RuntimeError(fmt % arg); returns nullptr.
PyObject* runtime_error(const char* fmt, PyObject* arg = nullptr);
// The validated (name0, value0, name1, ...) tuple of an ASGI headers list (None: empty).
PyObject* copy_headers(exchange_object* obj, PyObject* headers);
// The response head (from start_status/start_headers, in st_head) and/or body to the engine:
// None at once, a future to wait for ev_drain, or nullptr with ClientDisconnected or
// RuntimeError set.
PyObject* send_to_engine(exchange_object* obj, std::string_view body, bool more);
PyObject* on_response_start(exchange_object* obj, PyObject* msg);
PyObject* on_response_body(exchange_object* obj, PyObject* msg);
PyObject* on_response_trailers(exchange_object* obj, PyObject* msg);
// 500 with "connection: close" (before a head was sent), or close the connection.
void send_internal_error(exchange_object* obj);
// Completes a started response with an empty last body (false: it cannot be, the caller
// closes).
bool end_response(exchange_object* obj);

}  // namespace coachwhip::bridge::detail
