// coachwhip::bridge — the two Python objects the engine is seen through.
//
// Server (coachwhip._core.Server): one per worker. Owns the C++ engine (server::server), the app
// and the asyncio loop's bound methods it needs. asyncio watches `fileno()` and calls
// `on_readable()`; the engine's schedule hook asks `loop.call_soon(run_scheduled)`. After each
// engine phase (run with the GIL released) the Server delivers the engine's events: new
// requests start the app in a Task; body, drain and disconnect events resolve waiting futures.
//
// Exchange (coachwhip._core.Exchange): one per HTTP request, the ASGI face of an
// http::exchange. Its `receive` and `send` are what the app gets. It is kept alive by the Server
// (the live list) until the app's coroutine has finished and the runner called `_finish()` or
// `_fail()`. It never sees the connection, only the http::exchange interface.
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include "bridge/asgi/scope.hpp"
#include "bridge/py.hpp"
#include "http/exchange.hpp"
#include "server/server.hpp"

namespace coachwhip::bridge::wsgi {
class pool;
}
namespace coachwhip::bridge {
class engine_thread;
struct access_log_state;
}  // namespace coachwhip::bridge

namespace coachwhip::bridge {

struct exchange_object;

struct server_object {
    PyObject_HEAD
        // C++ members: constructed in place by tp_new, destroyed by tp_dealloc.
        std::unique_ptr<server::server_config>
            cfg;
    std::unique_ptr<server::server> engine;
    std::unique_ptr<asgi::scope_builder> scopes;
    // Requests that arrived before the app's startup completed (hold_requests), with their
    // coalesced events; started by release_requests().
    std::unique_ptr<std::vector<std::pair<std::shared_ptr<http::exchange>, uint8_t>>> held;
    // WSGI (--interface wsgi): the thread pool's hand-over (wsgi/pool.hpp); null for ASGI.
    std::unique_ptr<wsgi::pool> wsgi;
    std::unique_ptr<engine_thread> thread;     // WSGI: the engine's own thread (engine_thread.hpp)
    std::unique_ptr<access_log_state> access;  // the access log (access_log.hpp); null: off
    PyObject* wsgi_environ;  // dict: the environ keys that are the same for every request
    PyObject* app;
    PyObject* loop;
    PyObject* report_failure;    // callable(exc): logs an app's exception (coachwhip._asgi)
    PyObject* create_task;       // loop.create_task
    PyObject* task_type;         // asyncio.Task, called directly while the loop has no task factory
    PyObject* task_kwargs;       // {"loop": loop, "name": "coachwhip.request", "context": ...}
    PyObject* get_task_factory;  // loop.get_task_factory
    PyObject* create_future;     // loop.create_future
    PyObject* call_soon;         // loop.call_soon
    PyObject* run_scheduled;     // self.run_scheduled (bound; cleared by tp_clear)
    PyObject* error_log;         // callable(level: int, message: str)
    PyObject* root_path;         // str
    PyObject* state;             // dict or None
    exchange_object* live;       // head of the live-exchange list (each holds a reference)
    Py_ssize_t live_count;
    unsigned long long requests_total;  // apps started (for --max-requests)
    unsigned long long request_limit;   // call on_request_limit when requests_total reaches it
    PyObject* on_request_limit;         // callable() or nullptr
    bool run_scheduled_pending;
    bool bench_ceiling;       // benchmark only: answer every request from C++, never call the app
    bool warned_header_case;  // the mixed-case header notice was logged (once per server)
    bool hold_requests;       // the app's startup has not completed: hold new requests
    // A graceful shutdown began: an app streaming Server-Sent Events is told the client is
    // gone (http.disconnect), since such a stream never ends by itself (see exchange.cpp).
    bool draining;
    unsigned long loop_thread;  // the thread that runs the loop (PyThread_get_thread_ident)
};

struct exchange_object {
    PyObject_HEAD std::shared_ptr<http::exchange> ex;  // constructed in place
    server_object* srv;                                // strong
    PyObject* task;                                    // strong until the app finished
    PyObject* recv_waiter;    // future an app's receive() awaits, or nullptr
    PyObject* send_waiter;    // future an app's send() awaits, or nullptr
    PyObject* start_headers;  // (name0, value0, name1, ...) from http.response.start, until sent
    // 100-999, checked by http.response.start. int16_t, not int: with the flags below it fills
    // the padding before `prev`, so the object is 96 bytes, not 104 (pymalloc's 112-byte class).
    int16_t start_status;
    uint8_t asgi_state;    // see exchange_detail.hpp
    uint8_t ws_state;      // ws_none for HTTP; see websocket.cpp
    bool ws_connect_sent;  // websocket.connect was delivered
    bool body_finished;    // the last http.request was delivered
    bool told_disconnect;  // receive() returned http.disconnect: sends now raise
    bool linked;           // in the server's live list
    exchange_object* prev;
    exchange_object* next;
};

bool init_exchange_type(PyObject* module);
bool init_server_type(PyObject* module);
bool init_metrics_type(PyObject* module);  // metrics_object.cpp
bool init_tls_type(PyObject* module);      // tls_object.cpp
// Server(tls=...): the context of a TlsContext into `out` (None: left empty); false with an
// exception set for anything else.
bool tls_context_of(PyObject* obj, std::shared_ptr<const tls::context>& out);

// The ASGI `websocket` face of an exchange (websocket.cpp), for an exchange whose request was a
// WebSocket handshake. States (exchange_object::ws_state, a ws_phase):
//   handshake --websocket.accept--> accepting --the 101 is out (ev_drain)--> open
//   handshake --websocket.close: 403, or websocket.http.response.*--> denied (HTTP rules)
//   open --websocket.close--> closing
enum ws_phase : uint8_t { ws_none, ws_handshake, ws_accepting, ws_open, ws_closing, ws_denied };
PyObject* ws_receive(exchange_object* obj);
PyObject* ws_send(exchange_object* obj, PyObject* msg, PyObject* type);
void ws_finish(exchange_object* obj);  // the app returned
void ws_fail(exchange_object* obj);    // the app raised
void ws_deliver(exchange_object* obj, uint8_t events);

// exchange._finish(result) and exchange._fail() for the runner (asgi/runner.hpp).
PyObject* finish_exchange(PyObject* exchange, PyObject* result);
PyObject* fail_exchange(PyObject* exchange);

// Starts the app for a new request. On failure logs and answers 500 itself.
void start_exchange(server_object* srv, const std::shared_ptr<http::exchange>& ex);
// Delivers coalesced engine events (http::event bits) to the exchange's Python side.
void deliver_events(exchange_object* obj, uint8_t events);
// A graceful shutdown began: apps streaming Server-Sent Events learn that it ends them
// (http.disconnect); see exchange.cpp.
void end_event_streams(server_object* srv);
// Calls srv->error_log(level, message); never raises (reports to sys.unraisablehook instead).
void log_error(server_object* srv, int level, std::string_view message);

extern PyObject* client_disconnected_error;  // coachwhip._core.ClientDisconnected (OSError)

}  // namespace coachwhip::bridge
