// coachwhip::bridge::wsgi — one WSGI call (PEP 3333) run on a WSGI thread.
//
// A WSGI thread (Server._wsgi_work(), started by coachwhip.server in a threading.Thread) takes
// calls from the pool and runs each with the GIL held, releasing it only where it may wait:
// for the next call, for request body, and for send credit (pool.hpp). Per call:
//   environ (built here from the exchange's request fields) -> app(environ, start_response)
//   -> iterate the result, each non-empty bytes block handed to the engine at once (with the
//   head before the first) -> result.close() -> the final command -> the access line.
//
// The object the app sees as environ["wsgi.input"] is the call's Python face (type
// coachwhip._core.WsgiInput): read/readline/readlines/iteration over the body as it streams in,
// plus the start_response and write callables bound to it.
//
// App mistakes never reach the client as a malformed response: start_response checks the
// status and headers when it is called (raising, so the app sees its mistake where it made
// it); a body that breaks its Content-Length is cut or the connection closed; an exception
// before any output is a 500, after it a closed connection. Each is logged through
// `report(exc)` or the error log.
#pragma once

#include <memory>

#include "bridge/py.hpp"

namespace coachwhip::bridge {
struct server_object;
}

namespace coachwhip::bridge::wsgi {

struct call;

bool init_input_type(PyObject* module);
// Runs `c` to its end (the final command posted). GIL held; never leaves an exception set.
void run_call(server_object* srv, const std::shared_ptr<call>& c);

}  // namespace coachwhip::bridge::wsgi
