// The ASGI `http` face of one request: receive(), send(), and the runner's _finish()/_fail().
#include <cstddef>
#include <iterator>
#include <new>
#include <span>
#include <string>
#include <vector>

#include "bridge/access_log.hpp"
#include "bridge/asgi/awaitable.hpp"
#include "bridge/asgi/exchange_detail.hpp"
#include "bridge/asgi/runner.hpp"
#include "bridge/objects.hpp"
#include "core/clock.hpp"

#include <structmember.h>  // T_PYSSIZET, READONLY (Python 3.10 and 3.11 have no Py_T_PYSSIZET)

namespace coachwhip::bridge {

PyObject* client_disconnected_error = nullptr;

// The helpers websocket.cpp shares (exchange_detail.hpp) and this file's own.
namespace detail {

using py::N;

PyTypeObject* g_exchange_type = nullptr;

constexpr int log_error_level = 40;
constexpr int log_debug_level = 10;

// ---------------------------------------------------------------- live list

void link(exchange_object* obj) {
    server_object* s = obj->srv;
    obj->prev = nullptr;
    obj->next = s->live;
    if (s->live) s->live->prev = obj;
    s->live = obj;
    ++s->live_count;
    obj->linked = true;
    Py_INCREF(obj);
}

void unlink(exchange_object* obj) {
    if (!obj->linked) return;
    server_object* s = obj->srv;
    (obj->prev ? obj->prev->next : s->live) = obj->next;
    if (obj->next) obj->next->prev = obj->prev;
    obj->prev = obj->next = nullptr;
    obj->linked = false;
    --s->live_count;
    Py_CLEAR(obj->task);  // breaks exchange -> task -> coroutine -> exchange
    Py_DECREF(obj);
}

// ---------------------------------------------------------------- messages

PyObject* make_disconnect(exchange_object* obj) {
    // Once the app has been told the client is gone, we hold to it: its later sends raise
    // ClientDisconnected even if the client only half-closed. (A half-closed client whose app
    // never asks still gets its response.)
    obj->told_disconnect = true;
    PyObject* d = PyDict_New();
    if (d && PyDict_SetItem(d, N().type, N().v_http_disconnect) < 0) Py_CLEAR(d);
    return d;
}

PyObject* make_request(std::string_view body, bool more) {
    py::ref d(PyDict_New());
    py::ref b(body.empty() ? Py_NewRef(N().v_empty_bytes) : py::bytes(body));
    if (!d || !b) return nullptr;
    if (PyDict_SetItem(d.get(), N().type, N().v_http_request) < 0 ||
        PyDict_SetItem(d.get(), N().body, b.get()) < 0 ||
        PyDict_SetItem(d.get(), N().more_body, more ? Py_True : Py_False) < 0)
        return nullptr;
    return d.release();
}

// The next receive() message if one is available now (new reference); nullptr without an
// exception when the app must wait; nullptr with an exception on failure.
PyObject* try_receive(exchange_object* obj) {
    http::exchange& ex = *obj->ex;
    if (!obj->body_finished) {
        if (!ex.body.empty() || ex.body_complete) {
            bool more = !ex.body_complete;
            PyObject* msg = make_request(ex.body, more);
            if (!msg) return nullptr;
            obj->body_finished = !more;
            ex.body_taken();
            return msg;
        }
        if (ex.connected()) return nullptr;
        obj->body_finished = true;  // the client left in the middle of the body
        return make_disconnect(obj);
    }
    // After the body: http.disconnect once the response is sent or the client is gone, and for
    // an event stream once the server is shutting down (see end_event_streams).
    if (!ex.connected() || ex.client_closed || ex.response_complete ||
        (ex.event_stream && obj->srv->draining && obj->asgi_state == st_body))
        return make_disconnect(obj);
    return nullptr;
}

void resolve(PyObject*& waiter, PyObject* value) {
    PyObject* fut = std::exchange(waiter, nullptr);
    if (!fut) return;
    py::ref cancelled(PyObject_CallMethodNoArgs(fut, N().cancelled));
    if (cancelled && cancelled.get() == Py_False) {
        py::ref r(PyObject_CallMethodOneArg(fut, N().set_result, value));
        if (!r) PyErr_WriteUnraisable(fut);
    } else if (!cancelled) {
        PyErr_WriteUnraisable(fut);
    }
    Py_DECREF(fut);
}

void answer_receive(exchange_object* obj, PyObject* msg) {
    if (msg) {
        resolve(obj->recv_waiter, msg);
        Py_DECREF(msg);
    } else if (PyErr_Occurred()) {
        PyErr_WriteUnraisable(reinterpret_cast<PyObject*>(obj));
    }
}

// True while `waiter` is a future the app still waits on. A waiter that is already done was
// cancelled (the app's task was cancelled while it waited: anyio cancel scopes do this, e.g.
// Starlette's Request.is_disconnected()); it is dropped, so the app may call again.
bool still_waiting(PyObject*& waiter) {
    if (!waiter) return false;
    py::ref done(PyObject_CallMethodNoArgs(waiter, N().done));
    if (!done) PyErr_Clear();
    if (done && done.get() == Py_False) return true;
    Py_CLEAR(waiter);
    return false;
}

void fail_waiter(PyObject*& waiter, PyObject* exc_type, const char* text) {
    PyObject* fut = std::exchange(waiter, nullptr);
    if (!fut) return;
    py::ref cancelled(PyObject_CallMethodNoArgs(fut, N().cancelled));
    if (cancelled && cancelled.get() == Py_False) {
        py::ref exc(PyObject_CallFunction(exc_type, "s", text));
        py::ref r(exc ? PyObject_CallMethodOneArg(fut, N().set_exception, exc.get()) : nullptr);
        if (!r) PyErr_WriteUnraisable(fut);
    }
    Py_DECREF(fut);
}

// receive() and send() act when called (no coroutine to create and step), so a call from a
// thread other than the loop's (asgiref's async_to_sync calls send() in its worker thread and
// awaits the result on the loop: Channels' sync consumers, Django's sync views) would run the
// engine's calls there. Such a call returns coachwhip._asgi.call_in_loop(method, *args)
// instead: a coroutine that makes the call when it is awaited, on the loop's thread.
bool off_loop_thread(exchange_object* obj) {
    return PyThread_get_thread_ident() != obj->srv->loop_thread;
}

PyObject* defer_to_loop(PyObject* self, PyMethodDef* method, PyObject* arg) {
    static PyObject* call_in_loop = nullptr;  // set once, under the GIL; kept for the process
    if (!call_in_loop) {
        py::ref mod(PyImport_ImportModule("coachwhip._asgi"));
        call_in_loop = mod ? PyObject_GetAttrString(mod.get(), "call_in_loop") : nullptr;
        if (!call_in_loop) return nullptr;
    }
    py::ref bound(PyCFunction_NewEx(method, self, nullptr));
    if (!bound) return nullptr;
    return PyObject_CallFunctionObjArgs(call_in_loop, bound.get(), arg, nullptr);
}

// ---------------------------------------------------------------- send()

PyObject* runtime_error(const char* fmt, PyObject* arg) {
    if (arg) return PyErr_Format(PyExc_RuntimeError, fmt, arg);
    PyErr_SetString(PyExc_RuntimeError, fmt);
    return nullptr;
}

// ASGI says response header names must be lowercase, but Django's ASGI handler sends them in
// their original case on purpose ("some non-RFC compliant clients require e.g. Content-Type"),
// and HTTP field names are case-insensitive anyway. Rejecting them would break every Django
// app, so the names go out as given. Legal HTTP, and nothing the user has to act on: a note at
// DEBUG, once per server (a WARNING at every start of every Django app was noise).
void note_if_not_lowercase(exchange_object* obj, PyObject* name) {
    if (obj->srv->warned_header_case) return;
    std::string_view nm(PyBytes_AS_STRING(name), static_cast<size_t>(PyBytes_GET_SIZE(name)));
    for (char c : nm) {
        if (c >= 'A' && c <= 'Z') {
            obj->srv->warned_header_case = true;
            log_error(obj->srv, log_debug_level,
                      "response header names are not all lowercase as ASGI asks (got '" +
                          std::string(nm) +
                          "', Django sends them so); sent as given, since HTTP field names are "
                          "case-insensitive (said once)");
            return;
        }
    }
}

// Validates the headers of http.response.start and keeps them as one flat tuple (name0, value0,
// name1, value1, ...): bytes are immutable, so the app can change its own list afterwards
// without changing what is sent, and one tuple is one allocation instead of a list and a tuple
// per header.
PyObject* copy_headers(exchange_object* obj, PyObject* headers) {
    if (!headers || headers == Py_None) return PyTuple_New(0);
    py::ref seq(PySequence_Fast(headers, "'headers' must be an iterable of [name, value] pairs"));
    if (!seq) return nullptr;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.get());
    py::ref out(PyTuple_New(2 * n));
    if (!out) return nullptr;
    for (Py_ssize_t i = 0; i < n; ++i) {
        py::ref pair(PySequence_Fast(PySequence_Fast_GET_ITEM(seq.get(), i),
                                     "each response header must be a [name, value] pair"));
        if (!pair) return nullptr;
        if (PySequence_Fast_GET_SIZE(pair.get()) != 2)
            return runtime_error("each response header must be a [name, value] pair of 2 items");
        PyObject* name = PySequence_Fast_GET_ITEM(pair.get(), 0);
        PyObject* value = PySequence_Fast_GET_ITEM(pair.get(), 1);
        if (!PyBytes_Check(name) || !PyBytes_Check(value))
            return PyErr_Format(PyExc_TypeError,
                                "response header names and values must be bytes, got (%.50s, "
                                "%.50s) for header %R",
                                Py_TYPE(name)->tp_name, Py_TYPE(value)->tp_name, name);
        std::string_view v(PyBytes_AS_STRING(value), static_cast<size_t>(PyBytes_GET_SIZE(value)));
        for (unsigned char c : v)
            if (c == '\r' || c == '\n' || c == '\0')
                return runtime_error("response header value must not contain CR, LF or NUL: %R",
                                     value);
        note_if_not_lowercase(obj, name);
        PyTuple_SET_ITEM(out.get(), 2 * i, Py_NewRef(name));
        PyTuple_SET_ITEM(out.get(), 2 * i + 1, Py_NewRef(value));
    }
    return out.release();
}

// Hands a response message to the engine. `first`: the head goes with it.
PyObject* send_to_engine(exchange_object* obj, std::string_view body, bool more) {
    http::send_result r;
    if (obj->asgi_state == st_head) {
        auto n = static_cast<size_t>(PyTuple_GET_SIZE(obj->start_headers) / 2);
        // Views into the bytes objects; on the stack for the usual handful of headers.
        http::field local[16];
        std::vector<http::field> many;
        if (n > std::size(local)) many.resize(n);
        http::field* fields = n > std::size(local) ? many.data() : local;
        PyObject** items = reinterpret_cast<PyTupleObject*>(obj->start_headers)->ob_item;
        for (size_t i = 0; i < n; ++i) {
            PyObject* k = items[2 * i];
            PyObject* v = items[2 * i + 1];
            fields[i] = {{PyBytes_AS_STRING(k), static_cast<size_t>(PyBytes_GET_SIZE(k))},
                         {PyBytes_AS_STRING(v), static_cast<size_t>(PyBytes_GET_SIZE(v))}};
        }
        const std::span<const http::field> head_fields(fields, n);
        static const std::vector<std::string> no_fields;
        inspect_response_head(obj->srv->access ? obj->srv->access->response_fields : no_fields,
                              *obj->ex, head_fields);
        http::response_sink::head h{obj->start_status, head_fields};
        h.trailers = obj->ex->trailers;
        r = obj->ex->send(&h, body, more);
    } else {
        r = obj->ex->send(nullptr, body, more);
    }
    switch (r.status) {
        case http::send_status::closed:
            obj->asgi_state = st_failed;
            PyErr_SetString(client_disconnected_error, "the client has disconnected");
            return nullptr;
        case http::send_status::error:
            obj->asgi_state = obj->asgi_state == st_head ? st_start : st_failed;
            if (obj->asgi_state == st_failed) obj->ex->abort();
            // (PyErr_Format has no %.*s: build the message here.)
            PyErr_SetString(PyExc_RuntimeError,
                            ("invalid response: " + std::string(r.reason)).c_str());
            return nullptr;
        default: break;
    }
    if (obj->asgi_state == st_head) Py_CLEAR(obj->start_headers);
    obj->asgi_state = more ? st_body : obj->ex->trailers ? st_trailers : st_done;
    if (r.status == http::send_status::proceed) return asgi::ready(Py_NewRef(Py_None));
    PyObject* fut = PyObject_CallNoArgs(obj->srv->create_future);
    if (!fut) return nullptr;
    obj->send_waiter = Py_NewRef(fut);
    return fut;
}

PyObject* on_response_start(exchange_object* obj, PyObject* msg) {
    PyObject* status = PyDict_GetItemWithError(msg, N().status);
    if (!status) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_KeyError, "http.response.start requires 'status'");
        return nullptr;
    }
    if (!PyLong_Check(status))
        return PyErr_Format(PyExc_TypeError, "http.response.start 'status' must be int, got %.50s",
                            Py_TYPE(status)->tp_name);
    long code = PyLong_AsLong(status);
    if (code < 100 || code > 999)
        return PyErr_Format(PyExc_RuntimeError, "invalid HTTP status code %ld (must be 100-999)",
                            code);
    PyObject* headers = PyDict_GetItemWithError(msg, N().headers);
    if (!headers && PyErr_Occurred()) return nullptr;
    PyObject* copied = copy_headers(obj, headers);
    if (!copied) return nullptr;
    Py_XSETREF(obj->start_headers, copied);
    // ASGI's http.response.trailers extension, advertised (and honoured) on HTTP/2 only.
    PyObject* trailers = PyDict_GetItemWithError(msg, N().trailers);
    if (!trailers && PyErr_Occurred()) return nullptr;
    const int want = trailers ? PyObject_IsTrue(trailers) : 0;
    if (want < 0) return nullptr;
    obj->ex->trailers = want && obj->ex->http_version == "2";
    obj->start_status = static_cast<int16_t>(code);
    obj->asgi_state = st_head;
    return asgi::ready(Py_NewRef(Py_None));
}

PyObject* on_response_body(exchange_object* obj, PyObject* msg) {
    PyObject* body = PyDict_GetItemWithError(msg, N().body);
    if (!body && PyErr_Occurred()) return nullptr;
    PyObject* more_obj = PyDict_GetItemWithError(msg, N().more_body);
    if (!more_obj && PyErr_Occurred()) return nullptr;
    int more = more_obj ? PyObject_IsTrue(more_obj) : 0;
    if (more < 0) return nullptr;
    if (!body || body == Py_None) return send_to_engine(obj, {}, more);
    if (PyBytes_Check(body))
        return send_to_engine(
            obj, {PyBytes_AS_STRING(body), static_cast<size_t>(PyBytes_GET_SIZE(body))}, more);
    if (PyUnicode_Check(body) || !PyObject_CheckBuffer(body))
        return PyErr_Format(PyExc_TypeError, "http.response.body 'body' must be bytes, got %.50s",
                            Py_TYPE(body)->tp_name);
    Py_buffer view;
    if (PyObject_GetBuffer(body, &view, PyBUF_SIMPLE) < 0) return nullptr;
    PyObject* r = send_to_engine(
        obj, {static_cast<const char*>(view.buf), static_cast<size_t>(view.len)}, more);
    PyBuffer_Release(&view);
    return r;
}

PyObject* on_response_trailers(exchange_object* obj, PyObject* msg) {
    PyObject* headers = PyDict_GetItemWithError(msg, N().headers);
    if (!headers && PyErr_Occurred()) return nullptr;
    PyObject* more_obj = PyDict_GetItemWithError(msg, N().more_trailers);
    if (!more_obj && PyErr_Occurred()) return nullptr;
    const int more = more_obj ? PyObject_IsTrue(more_obj) : 0;
    if (more < 0) return nullptr;
    py::ref copied(copy_headers(obj, headers));
    if (!copied) return nullptr;
    const auto n = static_cast<size_t>(PyTuple_GET_SIZE(copied.get()) / 2);
    std::vector<http::field> fields(n);
    PyObject** items = reinterpret_cast<PyTupleObject*>(copied.get())->ob_item;
    for (size_t i = 0; i < n; ++i) {
        PyObject* k = items[2 * i];
        PyObject* v = items[2 * i + 1];
        fields[i] = {{PyBytes_AS_STRING(k), static_cast<size_t>(PyBytes_GET_SIZE(k))},
                     {PyBytes_AS_STRING(v), static_cast<size_t>(PyBytes_GET_SIZE(v))}};
    }
    const http::send_result r = obj->ex->send_trailers(fields, more);
    if (r.status == http::send_status::closed) {
        obj->asgi_state = st_failed;
        PyErr_SetString(client_disconnected_error, "the client has disconnected");
        return nullptr;
    }
    if (r.status == http::send_status::error) {
        obj->asgi_state = st_failed;
        obj->ex->abort();
        PyErr_SetString(PyExc_RuntimeError, ("invalid trailers: " + std::string(r.reason)).c_str());
        return nullptr;
    }
    if (!more) obj->asgi_state = st_done;
    return asgi::ready(Py_NewRef(Py_None));
}

PyMethodDef* send_method();
PyMethodDef* receive_method();

// A graceful shutdown is ending this event stream while its client still reads it.
bool ended_by_shutdown(const exchange_object* obj) {
    return obj->srv->draining && obj->ex->event_stream && obj->asgi_state == st_body &&
           obj->ex->connected() && !obj->ex->client_closed;
}

// `msg` (of type `type`) is an http.response.body that ends the response.
bool is_final_body(PyObject* msg, PyObject* type) {
    if (type != N().v_response_body &&
        !(PyUnicode_Check(type) && PyUnicode_Compare(type, N().v_response_body) == 0))
        return false;
    PyObject* more = PyDict_GetItemWithError(msg, N().more_body);
    if (!more) {
        PyErr_Clear();
        return true;
    }
    const int t = PyObject_IsTrue(more);
    if (t < 0) PyErr_Clear();
    return t == 0;
}

PyObject* exchange_send(PyObject* self, PyObject* msg) {
    auto* obj = reinterpret_cast<exchange_object*>(self);
    if (off_loop_thread(obj)) return defer_to_loop(self, send_method(), msg);
    if (!PyDict_Check(msg))
        return PyErr_Format(PyExc_TypeError, "ASGI message must be a dict, got %.50s",
                            Py_TYPE(msg)->tp_name);
    PyObject* type = PyDict_GetItemWithError(msg, N().type);
    if (!type) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_KeyError, "ASGI message has no 'type'");
        return nullptr;
    }
    if (still_waiting(obj->send_waiter))
        return runtime_error("send() called again before the previous send() completed");
    if (obj->ws_state != ws_none) return ws_send(obj, msg, type);
    if (ended_by_shutdown(obj)) {
        // The shutdown ends this event stream (end_event_streams): its sends raise as if the
        // client had left (what apps that never call receive() learn it from: Starlette's
        // StreamingResponse under ASGI 2.4), all but the one that ends the response, which
        // the client, still there, reads as a clean end.
        if (!is_final_body(msg, type)) {
            obj->told_disconnect = true;
            PyErr_SetString(client_disconnected_error,
                            "the server is shutting down: the event stream ends");
            return nullptr;
        }
    } else if (obj->told_disconnect && obj->asgi_state != st_done) {
        if (obj->asgi_state != st_failed) obj->ex->abort();
        obj->asgi_state = st_failed;
        PyErr_SetString(client_disconnected_error, "the client has disconnected");
        return nullptr;
    }
    switch (obj->asgi_state) {
        case st_start:
            if (type == N().v_response_start ||
                (PyUnicode_Check(type) && PyUnicode_Compare(type, N().v_response_start) == 0))
                return on_response_start(obj, msg);
            return runtime_error("Expected ASGI message 'http.response.start', but got %R", type);
        case st_head:
        case st_body:
            if (type == N().v_response_body ||
                (PyUnicode_Check(type) && PyUnicode_Compare(type, N().v_response_body) == 0))
                return on_response_body(obj, msg);
            return runtime_error("Expected ASGI message 'http.response.body', but got %R", type);
        case st_trailers:
            if (type == N().v_response_trailers ||
                (PyUnicode_Check(type) && PyUnicode_Compare(type, N().v_response_trailers) == 0))
                return on_response_trailers(obj, msg);
            return runtime_error("Expected ASGI message 'http.response.trailers', but got %R",
                                 type);
        case st_done:
            return runtime_error(
                "Unexpected ASGI message %R sent, after response already completed", type);
        default:
            if (!obj->ex->connected()) {
                PyErr_SetString(client_disconnected_error, "the client has disconnected");
                return nullptr;
            }
            return runtime_error("Unexpected ASGI message %R sent, after the response failed",
                                 type);
    }
}

// ---------------------------------------------------------------- receive()

PyObject* exchange_receive(PyObject* self, PyObject*) {
    auto* obj = reinterpret_cast<exchange_object*>(self);
    if (off_loop_thread(obj)) return defer_to_loop(self, receive_method(), nullptr);
    if (still_waiting(obj->recv_waiter))
        return runtime_error("receive() called again before the previous receive() completed");
    if (obj->ws_state != ws_none) return ws_receive(obj);
    PyObject* msg = try_receive(obj);
    if (msg) return asgi::ready(msg);
    if (PyErr_Occurred()) return nullptr;
    if (!obj->body_finished) obj->ex->want_body();  // 100 Continue goes out now, if owed
    PyObject* fut = PyObject_CallNoArgs(obj->srv->create_future);
    if (!fut) return nullptr;
    obj->recv_waiter = Py_NewRef(fut);
    return fut;
}

// ---------------------------------------------------------------- runner hooks

void send_internal_error(exchange_object* obj) {
    static constexpr http::field fields[] = {{"content-type", "text/plain; charset=utf-8"},
                                             {"connection", "close"}};
    http::response_sink::head h{500, fields};
    http::send_result r = obj->ex->send(&h, "Internal Server Error", false);
    if (r.status == http::send_status::proceed || r.status == http::send_status::wait) {
        obj->asgi_state = st_done;
    } else {
        obj->ex->abort();
    }
}

// Completes a started response with an empty last body; false if the client is gone or the
// framing does not allow it (a content-length not reached).
bool end_response(exchange_object* obj) {
    if (!obj->ex->connected()) return false;
    const http::send_result r = obj->ex->send(nullptr, {}, false);
    if (r.status != http::send_status::proceed && r.status != http::send_status::wait) return false;
    obj->asgi_state = st_done;
    return true;
}

// The app raised. Answer 500 if nothing was sent yet, otherwise close the connection.
PyObject* exchange_fail(PyObject* self, PyObject*) {
    auto* obj = reinterpret_cast<exchange_object*>(self);
    if (obj->ws_state != ws_none && obj->ws_state != ws_denied) {
        ws_fail(obj);
    } else if (obj->asgi_state == st_start || obj->asgi_state == st_head) {
        Py_CLEAR(obj->start_headers);
        send_internal_error(obj);
    } else if (obj->asgi_state != st_done) {
        // (An event stream the shutdown ended: the app raised the ClientDisconnected its send
        // got; the client still reads, and sees a clean end.)
        if (!ended_by_shutdown(obj) || !end_response(obj)) obj->ex->abort();
    }
    unlink(obj);
    Py_RETURN_NONE;
}

// The app returned `result`. Check that it completed its response (ASGI: it must).
PyObject* exchange_finish(PyObject* self, PyObject* result) {
    auto* obj = reinterpret_cast<exchange_object*>(self);
    if (result != Py_None) {
        py::ref repr(PyObject_Repr(result));
        const char* text = repr ? PyUnicode_AsUTF8(repr.get()) : "?";
        log_error(
            obj->srv, log_error_level,
            std::string("ASGI callable should return None, but returned ") + (text ? text : "?"));
        PyErr_Clear();
    }
    if (obj->ws_state != ws_none && obj->ws_state != ws_denied) {
        ws_finish(obj);
        unlink(obj);
        Py_RETURN_NONE;
    }
    switch (obj->asgi_state) {
        case st_start:
        case st_head:
            log_error(obj->srv, log_error_level,
                      obj->asgi_state == st_start
                          ? "ASGI callable returned without sending 'http.response.start'"
                          : "ASGI callable returned without sending 'http.response.body'");
            Py_CLEAR(obj->start_headers);
            if (obj->ex->connected()) send_internal_error(obj);
            break;
        case st_body:
            if (obj->told_disconnect || !obj->ex->connected()) {
                // It learned the client was gone (or a shutdown ended its event stream) and
                // stopped: what ASGI asks of it, not an error. An event stream a shutdown ended
                // ends cleanly (the last chunk) while its client still reads; otherwise the
                // connection closes, and the access line says the response was cut short.
                if (!ended_by_shutdown(obj) || !end_response(obj)) obj->ex->abort();
                break;
            }
            log_error(obj->srv, log_error_level,
                      "ASGI callable returned without completing the response (the last "
                      "'http.response.body' had more_body=True); closing the connection");
            obj->ex->abort();
            break;
        case st_trailers:
            if (obj->told_disconnect || !obj->ex->connected()) {
                obj->ex->abort();
                break;
            }
            log_error(obj->srv, log_error_level,
                      "ASGI callable returned without sending the 'http.response.trailers' its "
                      "'http.response.start' announced; resetting the stream");
            obj->ex->abort();
            break;
        default: break;  // complete: a non-None return value is logged above, the response stands
    }
    unlink(obj);
    Py_RETURN_NONE;
}

PyObject* exchange_get_task(PyObject* self, void*) {
    auto* obj = reinterpret_cast<exchange_object*>(self);
    return Py_NewRef(obj->task ? obj->task : Py_None);
}

void exchange_dealloc(PyObject* self) {
    auto* obj = reinterpret_cast<exchange_object*>(self);
    if (obj->ex) obj->ex->app_handle = nullptr;
    obj->ex.~shared_ptr();
    Py_CLEAR(obj->recv_waiter);
    Py_CLEAR(obj->send_waiter);
    Py_CLEAR(obj->start_headers);
    Py_CLEAR(obj->task);
    Py_CLEAR(obj->srv);
    PyTypeObject* type = Py_TYPE(self);
    PyObject_Free(self);
    Py_DECREF(type);
}

// receive and send come first: receive_method()/send_method() (defer_to_loop) use them by index.
PyMethodDef exchange_methods[] = {
    {"receive", exchange_receive, METH_NOARGS, "ASGI receive(): the next request event."},
    {"send", exchange_send, METH_O, "ASGI send(message)."},
    {"_fail", exchange_fail, METH_NOARGS, "Runner hook: the app raised."},
    {"_finish", exchange_finish, METH_O, "Runner hook: the app returned this value."},
    {nullptr, nullptr, 0, nullptr}};

PyMethodDef* receive_method() { return &exchange_methods[0]; }
PyMethodDef* send_method() { return &exchange_methods[1]; }

PyGetSetDef exchange_getset[] = {{"task", exchange_get_task, nullptr,
                                  "The asyncio Task running the app, while it runs.", nullptr},
                                 {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyType_Slot exchange_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(exchange_dealloc)},
    {Py_tp_methods, exchange_methods},
    {Py_tp_getset, exchange_getset},
    {Py_tp_doc,
     const_cast<char*>("One HTTP request as the ASGI app sees it (created by the server only).")},
    {0, nullptr}};

// Py_TPFLAGS_DISALLOW_INSTANTIATION: only start_exchange() creates these.
PyType_Spec exchange_spec = {"coachwhip._core.Exchange", sizeof(exchange_object), 0,
                             Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
                             exchange_slots};

// An idle WebSocket keeps its exchange object for the connection's life. 96 bytes on a 64-bit
// build (pymalloc's 96-byte class): one field more, or start_status back to int, costs 16 bytes
// per connection. (Relative to PyObject, whose size differs in debug and free-threaded builds.)
static_assert(sizeof(void*) != 8 || sizeof(exchange_object) - sizeof(PyObject) <= 80);

// ---------------------------------------------------------------- receive/send callables

// The app's receive and send. A bound builtin method is 72 bytes and GC-tracked (80 in
// pymalloc); this is 32 and untracked: 96 bytes less per request, which for an idle WebSocket
// is for the connection's life. Safe for the GC as the bound methods were: the exchange was
// never GC-visible, and the cycle exchange -> task -> coroutine -> frame -> channel -> exchange
// is broken by unlink(), as before. What apps can see: `__self__` (the Exchange), `__name__`,
// `__qualname__`, a repr; the type is coachwhip._core.Channel, so inspect.isbuiltin() is False.
struct channel_object {
    PyObject_HEAD PyObject* exchange;  // strong
    vectorcallfunc vectorcall;         // receive_vectorcall or send_vectorcall
};

PyTypeObject* g_channel_type = nullptr;

PyObject* channel_exchange(PyObject* self) {
    return reinterpret_cast<channel_object*>(self)->exchange;
}

PyObject* receive_vectorcall(PyObject* self, PyObject* const*, size_t nargsf, PyObject* kwnames) {
    if (PyVectorcall_NARGS(nargsf) != 0 || (kwnames && PyTuple_GET_SIZE(kwnames) != 0))
        return PyErr_Format(PyExc_TypeError, "receive() takes no arguments");
    return exchange_receive(channel_exchange(self), nullptr);
}

PyObject* send_vectorcall(PyObject* self, PyObject* const* args, size_t nargsf, PyObject* kwnames) {
    if (PyVectorcall_NARGS(nargsf) != 1 || (kwnames && PyTuple_GET_SIZE(kwnames) != 0))
        return PyErr_Format(PyExc_TypeError, "send() takes exactly one argument (the message)");
    return exchange_send(channel_exchange(self), args[0]);
}

void channel_dealloc(PyObject* self) {
    Py_CLEAR(reinterpret_cast<channel_object*>(self)->exchange);
    PyTypeObject* type = Py_TYPE(self);
    PyObject_Free(self);
    Py_DECREF(type);  // heap type: each instance holds a reference
}

PyObject* channel_get_name(PyObject* self, void*) {
    auto* c = reinterpret_cast<channel_object*>(self);
    return Py_NewRef(c->vectorcall == receive_vectorcall ? N().receive : N().send);
}

PyObject* channel_repr(PyObject* self) {
    auto* c = reinterpret_cast<channel_object*>(self);
    return PyUnicode_FromFormat("<coachwhip %s of %R>",
                                c->vectorcall == receive_vectorcall ? "receive" : "send",
                                c->exchange);
}

PyObject* channel_get_self(PyObject* self, void*) { return Py_NewRef(channel_exchange(self)); }

PyMemberDef channel_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET,
     static_cast<Py_ssize_t>(offsetof(channel_object, vectorcall)), READONLY, nullptr},
    {nullptr, 0, 0, 0, nullptr}};

PyGetSetDef channel_getset[] = {{"__self__", channel_get_self, nullptr, "The Exchange.", nullptr},
                                {"__name__", channel_get_name, nullptr, nullptr, nullptr},
                                {"__qualname__", channel_get_name, nullptr, nullptr, nullptr},
                                {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyType_Slot channel_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(channel_dealloc)},
    {Py_tp_call, reinterpret_cast<void*>(PyVectorcall_Call)},
    {Py_tp_repr, reinterpret_cast<void*>(channel_repr)},
    {Py_tp_members, channel_members},
    {Py_tp_getset, channel_getset},
    {Py_tp_doc,
     const_cast<char*>("An ASGI receive() or send() callable (created by the server only).")},
    {0, nullptr}};

PyType_Spec channel_spec = {
    "coachwhip._core.Channel", sizeof(channel_object), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    channel_slots};

PyObject* make_channel(PyObject* exchange, vectorcallfunc fn) {
    auto* c = PyObject_New(channel_object, g_channel_type);
    if (!c) return nullptr;
    c->exchange = Py_NewRef(exchange);
    c->vectorcall = fn;
    return reinterpret_cast<PyObject*>(c);
}

}  // namespace detail

using namespace detail;

bool init_exchange_type(PyObject* module) {
    g_exchange_type =
        reinterpret_cast<PyTypeObject*>(PyType_FromModuleAndSpec(module, &exchange_spec, nullptr));
    if (!g_exchange_type) return false;
    g_channel_type =
        reinterpret_cast<PyTypeObject*>(PyType_FromModuleAndSpec(module, &channel_spec, nullptr));
    if (!g_channel_type) return false;
    // Exported for coachwhip._asgi, which marks it as a coroutine function's type.
    if (PyModule_AddObjectRef(module, "Channel", reinterpret_cast<PyObject*>(g_channel_type)) < 0)
        return false;
    client_disconnected_error = PyErr_NewExceptionWithDoc(
        "coachwhip._core.ClientDisconnected",
        "Raised by send() when the client has gone away (ASGI HTTP spec 2.4: an OSError).",
        PyExc_OSError, nullptr);
    return client_disconnected_error != nullptr;
}

PyObject* finish_exchange(PyObject* exchange, PyObject* result) {
    return exchange_finish(exchange, result);
}
PyObject* fail_exchange(PyObject* exchange) { return exchange_fail(exchange, nullptr); }

// loop.create_task(coro) is Task(coro, loop=loop, name=None) behind a task-factory check, and
// uvloop packs the keywords into a new dict that Task.__init__ unpacks again (callgrind: ~1.1k
// instructions per request). With no factory set we call Task ourselves, with one kwargs dict
// made at startup. Both fixed keywords matter: without `loop` Task.__init__ asks for the running
// loop, which in 3.11 costs a getpid() syscall (strace: one per request); without `name` it
// formats "Task-<n>" (PyUnicode_FromFormat, ~1.4k instructions). `context` is the request's own
// Context, which the eager first step (asgi::step_eagerly) enters too.
// A factory an app or APM tool installs (even during lifespan startup) is honoured; its tasks
// take their first step from the loop as usual (`*context` is left null then).
PyObject* make_task(server_object* srv, PyObject* coro, py::ref* context) {
    py::ref factory(PyObject_CallNoArgs(srv->get_task_factory));
    if (!factory) return nullptr;
    if (factory.get() != Py_None) return PyObject_CallOneArg(srv->create_task, coro);
    py::ref ctx(PyContext_CopyCurrent());
    py::ref args(ctx ? PyTuple_Pack(1, coro) : nullptr);
    if (!args || PyDict_SetItem(srv->task_kwargs, N().context, ctx.get()) < 0) return nullptr;
    PyObject* task = PyObject_Call(srv->task_type, args.get(), srv->task_kwargs);
    // Not kept alive by the shared dict until the next request (any error from Task() kept).
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (PyDict_SetItem(srv->task_kwargs, N().context, Py_None) < 0) PyErr_Clear();
    PyErr_Restore(type, value, tb);
    if (task) *context = std::move(ctx);
    return task;
}

void start_exchange(server_object* srv, const std::shared_ptr<http::exchange>& ex) {
    auto* obj = PyObject_New(exchange_object, g_exchange_type);
    if (!obj) {
        PyErr_WriteUnraisable(reinterpret_cast<PyObject*>(srv));
        return;
    }
    new (&obj->ex) std::shared_ptr<http::exchange>(ex);
    obj->srv = reinterpret_cast<server_object*>(Py_NewRef(reinterpret_cast<PyObject*>(srv)));
    obj->task = obj->recv_waiter = obj->send_waiter = obj->start_headers = nullptr;
    obj->start_status = 0;
    obj->asgi_state = st_start;
    obj->body_finished = false;
    obj->told_disconnect = false;
    obj->ws_state = ex->websocket ? ws_handshake : ws_none;
    obj->ws_connect_sent = false;
    obj->linked = false;
    obj->prev = obj->next = nullptr;
    ex->app_handle = obj;
    if (srv->access && ex->started_us == 0) ex->started_us = core::now_us();  // (HTTP/2)
    if (++srv->requests_total == srv->request_limit && srv->on_request_limit) {
        // --max-requests: tell the worker at once, not at its next heartbeat.
        py::ref r(PyObject_CallNoArgs(srv->on_request_limit));
        if (!r) PyErr_WriteUnraisable(srv->on_request_limit);
    }
    py::ref self(reinterpret_cast<PyObject*>(obj));

    py::ref scope(ex->websocket ? srv->scopes->build_websocket(*ex) : srv->scopes->build(*ex));
    if (!scope) {
        PyErr_WriteUnraisable(srv->app);
        send_internal_error(obj);
        return;
    }
    py::ref receive(make_channel(self.get(), receive_vectorcall));
    py::ref send(receive ? make_channel(self.get(), send_vectorcall) : nullptr);
    if (!send) {
        PyErr_WriteUnraisable(srv->app);
        send_internal_error(obj);
        return;
    }
    // What `await app(scope, receive, send)` does, from C: an exception in the call itself, or
    // a return value that cannot be awaited, is the app failing like any other.
    PyObject* args[] = {scope.get(), receive.get(), send.get()};
    py::ref awaitable(PyObject_Vectorcall(srv->app, args, 3, nullptr));
    py::ref runner(awaitable ? asgi::make_runner(awaitable.get(), self.get(), srv->report_failure)
                             : nullptr);
    if (!runner) {
        asgi::handle_app_failure(self.get(), srv->report_failure);
        if (PyErr_Occurred()) PyErr_WriteUnraisable(srv->app);  // KeyboardInterrupt, SystemExit
        return;
    }
    py::ref context;
    py::ref task(make_task(srv, runner.get(), &context));
    if (!task) {
        PyErr_WriteUnraisable(srv->app);
        py::ref closed(PyObject_CallMethod(runner.get(), "close", nullptr));  // fails the exchange
        if (!closed) PyErr_Clear();
        return;
    }
    obj->task = Py_NewRef(task.get());
    link(obj);
    // The app's first step runs now, inside its Task (see asgi::step_eagerly). It may finish
    // the exchange and drop obj->task: `task` and `runner` keep both alive until we return.
    if (context && !asgi::step_eagerly(runner.get(), task.get(), context.get(), srv->loop))
        PyErr_WriteUnraisable(srv->app);
}

// A graceful shutdown began (server_object::draining): each app streaming Server-Sent Events
// that waits in receive() gets http.disconnect now, and later receive() calls return it at
// once. An event stream never ends by itself, so waiting for it would only hold the shutdown
// for the whole --timeout-graceful-shutdown; ended as a client's departure ends it, its client
// reconnects (EventSource does) to a server that stays. Other responses, streamed downloads
// included, are left to finish within the timeout.
void end_event_streams(server_object* srv) {
    for (exchange_object* obj = srv->live; obj; obj = obj->next) {
        if (obj->ws_state != ws_none || obj->asgi_state != st_body || !obj->ex->event_stream)
            continue;
        if (obj->recv_waiter) answer_receive(obj, try_receive(obj));
    }
}

void deliver_events(exchange_object* obj, uint8_t events) {
    if (obj->ws_state != ws_none) return ws_deliver(obj, events);
    http::exchange& ex = *obj->ex;
    if (obj->send_waiter) {
        if (events & http::ev_drain) {
            resolve(obj->send_waiter, Py_None);
        } else if ((events & http::ev_disconnect) && !ex.connected()) {
            if (ex.response_complete) {
                resolve(obj->send_waiter, Py_None);  // the final send was written in full
            } else {
                fail_waiter(obj->send_waiter, client_disconnected_error,
                            "the client has disconnected");
            }
        }
    }
    if (obj->recv_waiter) answer_receive(obj, try_receive(obj));
}

}  // namespace coachwhip::bridge
