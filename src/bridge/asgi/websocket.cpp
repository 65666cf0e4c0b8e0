// The ASGI `websocket` face of an exchange (ASGI WebSocket spec 2.4, with the
// websocket.http.response extension): receive(), send() and the runner's outcomes for a request
// the engine recognised as a WebSocket handshake. The engine side is http::exchange's WebSocket
// part: ws_accept (HTTP/1.1 answers 101, then ws::connection takes over), ws_inbox + ev_message,
// ws_send / ws_close / ws_taken, ev_drain, ev_disconnect with ws_close_code.
//
// States (exchange_object::ws_state; objects.hpp has the diagram). Before the accept the exchange
// is still an HTTP request: a denial (websocket.close -> 403, or websocket.http.response.*) is an
// HTTP response with the HTTP rules (exchange_detail.hpp), after which the connection closes.
#include <string>

#include "bridge/asgi/awaitable.hpp"
#include "bridge/asgi/exchange_detail.hpp"
#include "bridge/objects.hpp"
#include "ws/frame.hpp"

namespace coachwhip::bridge {

using namespace detail;
using py::N;

namespace {

constexpr int log_error_level = 40;
constexpr uint16_t k_abnormal_closure = 1006;

bool is_type(PyObject* type, PyObject* name) {
    return type == name || (PyUnicode_Check(type) && PyUnicode_Compare(type, name) == 0);
}

PyObject* disconnected() {
    PyErr_SetString(client_disconnected_error, "the WebSocket is closed");
    return nullptr;
}

// A new future for the app to await; kept in `waiter`.
PyObject* wait_on(exchange_object* obj, PyObject*& waiter) {
    PyObject* fut = PyObject_CallNoArgs(obj->srv->create_future);
    if (fut) waiter = Py_NewRef(fut);
    return fut;
}

PyObject* typed_message(PyObject* type) {
    PyObject* d = PyDict_New();
    if (d && PyDict_SetItem(d, N().type, type) < 0) Py_CLEAR(d);
    return d;
}

// websocket.disconnect with the client's close code (1006: the connection ended without one).
PyObject* make_disconnect(exchange_object* obj) {
    const http::exchange& ex = *obj->ex;
    obj->told_disconnect = true;
    const uint16_t code = ex.ws_close_code ? ex.ws_close_code : k_abnormal_closure;
    py::ref d(typed_message(N().v_ws_disconnect));
    py::ref c(PyLong_FromLong(code));
    py::ref reason(PyUnicode_DecodeUTF8(
        ex.ws_close_reason.data(), static_cast<Py_ssize_t>(ex.ws_close_reason.size()), "replace"));
    if (!d || !c || !reason || PyDict_SetItem(d.get(), N().code, c.get()) < 0 ||
        PyDict_SetItem(d.get(), N().reason, reason.get()) < 0)
        return nullptr;
    return d.release();
}

// websocket.receive for the oldest waiting message, which it removes (reading may resume).
PyObject* take_message(exchange_object* obj) {
    http::exchange& ex = *obj->ex;
    http::ws_message& m = ex.ws_inbox.front();
    const auto size = static_cast<Py_ssize_t>(m.data.size());
    // Text was checked as UTF-8 by the engine, incrementally as it arrived.
    py::ref data(m.text ? PyUnicode_DecodeUTF8(m.data.data(), size, "strict")
                        : PyBytes_FromStringAndSize(m.data.data(), size));
    // A copy of a split-table template (scope.hpp, receive_message): 96 bytes, not 192, for
    // apps that hold the message while they wait for the next.
    py::ref d(obj->srv->scopes->receive_message(m.text));
    if (!data || !d || PyDict_SetItem(d.get(), m.text ? N().text : N().bytes, data.get()) < 0)
        return nullptr;
    ex.ws_inbox.pop_front();
    ex.ws_taken();
    return d.release();
}

// The next receive() message if one is available now (new reference); nullptr without an
// exception when the app must wait.
PyObject* try_receive(exchange_object* obj) {
    http::exchange& ex = *obj->ex;
    if (!obj->ws_connect_sent) {
        obj->ws_connect_sent = true;
        return typed_message(N().v_ws_connect);
    }
    // Messages that arrived before the client closed are delivered before its disconnect.
    if (!ex.ws_inbox.empty()) return take_message(obj);
    bool gone = !ex.connected();
    // Before the WebSocket took over, a client that half-closed sends no more: it is leaving.
    if (obj->ws_state == ws_handshake || obj->ws_state == ws_accepting)
        gone = gone || ex.client_closed;
    if (obj->ws_state == ws_denied) gone = gone || ex.response_complete;
    return gone ? make_disconnect(obj) : nullptr;
}

// ---------------------------------------------------------------- send()

PyObject* get(PyObject* msg, PyObject* key, bool& failed) {
    PyObject* v = PyDict_GetItemWithError(msg, key);
    failed = !v && PyErr_Occurred();
    return v;
}

PyObject* on_accept(exchange_object* obj, PyObject* msg) {
    bool failed = false;
    PyObject* sub = get(msg, N().subprotocol, failed);
    if (failed) return nullptr;
    std::string_view subprotocol;
    if (sub && sub != Py_None) {
        if (!PyUnicode_Check(sub))
            return PyErr_Format(PyExc_TypeError,
                                "websocket.accept 'subprotocol' must be str or None, got %.50s",
                                Py_TYPE(sub)->tp_name);
        Py_ssize_t n = 0;
        const char* p = PyUnicode_AsUTF8AndSize(sub, &n);
        if (!p) return nullptr;
        subprotocol = {p, static_cast<size_t>(n)};
    }
    PyObject* headers = get(msg, N().headers, failed);
    if (failed) return nullptr;
    py::ref copied(copy_headers(obj, headers));
    if (!copied) return nullptr;
    const auto n = static_cast<size_t>(PyTuple_GET_SIZE(copied.get()) / 2);
    std::vector<http::field> fields(n);
    for (size_t i = 0; i < n; ++i) {
        PyObject* k = PyTuple_GET_ITEM(copied.get(), static_cast<Py_ssize_t>(2 * i));
        PyObject* v = PyTuple_GET_ITEM(copied.get(), static_cast<Py_ssize_t>(2 * i + 1));
        fields[i] = {{PyBytes_AS_STRING(k), static_cast<size_t>(PyBytes_GET_SIZE(k))},
                     {PyBytes_AS_STRING(v), static_cast<size_t>(PyBytes_GET_SIZE(v))}};
    }
    const http::send_result r = obj->ex->ws_accept(subprotocol, fields);
    if (r.status == http::send_status::closed) return disconnected();
    if (r.status == http::send_status::error)
        return PyErr_Format(PyExc_RuntimeError, "invalid websocket.accept: %s",
                            std::string(r.reason).c_str());
    obj->ws_state = ws_accepting;
    // Completes once the 101 is written and the WebSocket took over (ev_drain).
    return wait_on(obj, obj->send_waiter);
}

// websocket.close before the accept: the handshake is refused with 403 (ASGI).
PyObject* deny(exchange_object* obj) {
    obj->ws_state = ws_denied;
    Py_XSETREF(obj->start_headers, PyTuple_New(0));
    if (!obj->start_headers) return nullptr;
    obj->start_status = 403;
    obj->asgi_state = st_head;
    return send_to_engine(obj, {}, false);
}

PyObject* on_message(exchange_object* obj, PyObject* msg) {
    bool failed = false;
    PyObject* bytes = get(msg, N().bytes, failed);
    if (failed) return nullptr;
    PyObject* text = get(msg, N().text, failed);
    if (failed) return nullptr;
    const bool has_bytes = bytes && bytes != Py_None, has_text = text && text != Py_None;
    if (has_bytes == has_text)
        return runtime_error(
            "websocket.send needs exactly one of 'bytes' and 'text' (the other absent or None)");
    http::send_result r;
    if (has_text) {
        if (!PyUnicode_Check(text))
            return PyErr_Format(PyExc_TypeError, "websocket.send 'text' must be str, got %.50s",
                                Py_TYPE(text)->tp_name);
        Py_ssize_t n = 0;
        const char* p = PyUnicode_AsUTF8AndSize(text, &n);  // fails on lone surrogates
        if (!p) return nullptr;
        r = obj->ex->ws_send(true, {p, static_cast<size_t>(n)});
    } else {
        if (PyUnicode_Check(bytes) || !PyObject_CheckBuffer(bytes))
            return PyErr_Format(PyExc_TypeError, "websocket.send 'bytes' must be bytes, got %.50s",
                                Py_TYPE(bytes)->tp_name);
        Py_buffer view;
        if (PyObject_GetBuffer(bytes, &view, PyBUF_SIMPLE) < 0) return nullptr;
        r = obj->ex->ws_send(false,
                             {static_cast<const char*>(view.buf), static_cast<size_t>(view.len)});
        PyBuffer_Release(&view);
    }
    switch (r.status) {
        case http::send_status::proceed: return asgi::ready(Py_NewRef(Py_None));
        case http::send_status::wait: return wait_on(obj, obj->send_waiter);
        case http::send_status::closed: return disconnected();
        default:
            return PyErr_Format(PyExc_RuntimeError, "invalid websocket.send: %s",
                                std::string(r.reason).c_str());
    }
}

PyObject* on_close(exchange_object* obj, PyObject* msg) {
    bool failed = false;
    PyObject* code_obj = get(msg, N().code, failed);
    if (failed) return nullptr;
    long code = 1000;
    if (code_obj && code_obj != Py_None) {
        if (!PyLong_Check(code_obj))
            return PyErr_Format(PyExc_TypeError, "websocket.close 'code' must be int, got %.50s",
                                Py_TYPE(code_obj)->tp_name);
        code = PyLong_AsLong(code_obj);
        if (code == -1 && PyErr_Occurred()) return nullptr;
    }
    // RFC 6455 §7.4: 1000-1003, 1007-1014 and 3000-4999 may be sent; 1005, 1006 and 1015 never.
    // (PyErr_Format takes an ASCII format only: a '§' there turns the message into a ValueError.)
    if (code < 1000 || code > 4999 || !ws::is_valid_close_code(static_cast<uint16_t>(code)))
        return PyErr_Format(
            PyExc_RuntimeError,
            "websocket.close 'code' %ld cannot be sent (RFC 6455 section 7.4: use 1000 "
            "for a normal close, 1001-1003 or 1007-1014, or 3000-4999)",
            code);
    PyObject* reason_obj = get(msg, N().reason, failed);
    if (failed) return nullptr;
    std::string_view reason;
    if (reason_obj && reason_obj != Py_None) {
        if (!PyUnicode_Check(reason_obj))
            return PyErr_Format(PyExc_TypeError, "websocket.close 'reason' must be str, got %.50s",
                                Py_TYPE(reason_obj)->tp_name);
        Py_ssize_t n = 0;
        const char* p = PyUnicode_AsUTF8AndSize(reason_obj, &n);
        if (!p) return nullptr;
        reason = {p, static_cast<size_t>(n)};  // the engine cuts it to 123 bytes at a character
    }
    if (!obj->ex->connected()) return disconnected();
    obj->ex->ws_close(static_cast<uint16_t>(code), reason);
    obj->ws_state = ws_closing;
    return asgi::ready(Py_NewRef(Py_None));
}

}  // namespace

PyObject* ws_receive(exchange_object* obj) {
    PyObject* msg = try_receive(obj);
    if (msg || PyErr_Occurred()) return msg ? asgi::ready(msg) : nullptr;
    return wait_on(obj, obj->recv_waiter);
}

PyObject* ws_send(exchange_object* obj, PyObject* msg, PyObject* type) {
    const auto& n = N();
    switch (obj->ws_state) {
        case ws_handshake:
            if (is_type(type, n.v_ws_accept)) return on_accept(obj, msg);
            if (is_type(type, n.v_ws_close)) return deny(obj);
            if (is_type(type, n.v_ws_response_start)) {
                obj->ws_state = ws_denied;
                return on_response_start(obj, msg);
            }
            return runtime_error(
                "Expected ASGI message 'websocket.accept', 'websocket.close' or "
                "'websocket.http.response.start', but got %R",
                type);
        case ws_denied:
            if (obj->asgi_state == st_done) return disconnected();
            if (is_type(type, n.v_ws_response_body) &&
                (obj->asgi_state == st_head || obj->asgi_state == st_body))
                return on_response_body(obj, msg);
            return runtime_error("Expected ASGI message 'websocket.http.response.body', but got %R",
                                 type);
        case ws_accepting:
        case ws_open:
            if (is_type(type, n.v_ws_send)) return on_message(obj, msg);
            if (is_type(type, n.v_ws_close)) return on_close(obj, msg);
            return runtime_error(
                "Expected ASGI message 'websocket.send' or 'websocket.close', but "
                "got %R",
                type);
        default:  // closing: the app closed it
            if (is_type(type, n.v_ws_send) || is_type(type, n.v_ws_close)) return disconnected();
            return runtime_error("Unexpected ASGI message %R, after sending 'websocket.close'",
                                 type);
    }
}

void ws_finish(exchange_object* obj) {
    switch (obj->ws_state) {
        case ws_handshake:
            log_error(obj->srv, log_error_level,
                      "ASGI callable returned without accepting or refusing the WebSocket "
                      "handshake (websocket.accept, websocket.close or "
                      "websocket.http.response.start)");
            if (obj->ex->connected()) send_internal_error(obj);
            break;
        case ws_accepting:
        case ws_open: obj->ex->ws_close(1000, {}); break;  // returned without closing: normal
        default: break;
    }
}

void ws_fail(exchange_object* obj) {
    if (obj->ws_state == ws_handshake) {
        send_internal_error(obj);  // 500 instead of the 101
    } else {
        obj->ex->abort();  // after the accept: close 1011
    }
}

void ws_deliver(exchange_object* obj, uint8_t events) {
    const http::exchange& ex = *obj->ex;
    if ((events & http::ev_drain) && obj->ws_state == ws_accepting) obj->ws_state = ws_open;
    if (obj->send_waiter) {
        if (events & http::ev_drain) {
            resolve(obj->send_waiter, Py_None);
        } else if ((events & http::ev_disconnect) && !ex.connected()) {
            if (obj->ws_state == ws_denied && ex.response_complete) {
                resolve(obj->send_waiter, Py_None);  // the denial was written in full
            } else {
                fail_waiter(obj->send_waiter, client_disconnected_error, "the WebSocket is closed");
            }
        }
    }
    if (obj->recv_waiter) answer_receive(obj, try_receive(obj));
}

}  // namespace coachwhip::bridge
