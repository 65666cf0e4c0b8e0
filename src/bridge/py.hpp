// coachwhip::bridge::py — the small toolkit every bridge file uses: an owning PyObject reference
// and the interned strings of the ASGI vocabulary.
//
// This folder is the only code that includes <Python.h>. Rules that hold across it:
// - No C++ exception crosses the C API: functions called from Python return nullptr/-1 with a
//   Python exception set; helpers return values, never throw.
// - Every function here runs with the GIL held, unless its comment says otherwise.
// - No global mutable state beyond the module state (interned constants are immutable), so that
//   a free-threaded build can later run one engine per thread.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string_view>
#include <utility>

namespace coachwhip::bridge::py {

// An owning reference. `ref(p)` steals p; `ref::borrow(p)` takes a new reference.
class ref {
  public:
    ref() noexcept = default;
    explicit ref(PyObject* p) noexcept : p_(p) {}
    static ref borrow(PyObject* p) noexcept {
        Py_XINCREF(p);
        return ref(p);
    }
    ref(const ref&) = delete;
    ref& operator=(const ref&) = delete;
    ref(ref&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
    ref& operator=(ref&& o) noexcept {
        if (this != &o) {
            Py_XDECREF(p_);
            p_ = std::exchange(o.p_, nullptr);
        }
        return *this;
    }
    ~ref() { Py_XDECREF(p_); }

    PyObject* get() const noexcept { return p_; }
    PyObject* release() noexcept { return std::exchange(p_, nullptr); }
    explicit operator bool() const noexcept { return p_ != nullptr; }

  private:
    PyObject* p_ = nullptr;
};

inline PyObject* str(std::string_view s) {
    return PyUnicode_DecodeLatin1(s.data(), static_cast<Py_ssize_t>(s.size()), nullptr);
}
inline PyObject* bytes(std::string_view s) {
    return PyBytes_FromStringAndSize(s.data(), static_cast<Py_ssize_t>(s.size()));
}

// Interned keys and constant values of the ASGI messages, created once at module init.
struct names {
// (clang-format 14 re-indents this list differently on every pass, so it is left alone.)
// clang-format off
#define COACHWHIP_NAMES(X)                                                                   \
    X(type) X(asgi) X(version) X(spec_version) X(http_version) X(method) X(scheme) X(path)  \
    X(raw_path) X(query_string) X(root_path) X(headers) X(client) X(server) X(state)        \
    X(body) X(more_body) X(status) X(trailers) X(http) X(message) X(set_result)              \
    X(set_exception) X(cancelled) X(cancel) X(done) X(receive) X(send) X(context)             \
    X(extensions) X(tls) X(server_cert) X(client_cert_chain) X(client_cert_name)              \
    X(client_cert_error) X(tls_version) X(cipher_suite) X(server_name) X(bytes) X(text)       \
    X(code) X(reason) X(subprotocol) X(subprotocols) X(more_trailers)
// clang-format on
#define COACHWHIP_DECLARE(n) PyObject* n = nullptr;
    COACHWHIP_NAMES(COACHWHIP_DECLARE)
#undef COACHWHIP_DECLARE
    // Values.
    PyObject* v_asgi_version = nullptr;       // "3.0"
    PyObject* v_spec_version = nullptr;       // "2.4"
    PyObject* v_http_request = nullptr;       // "http.request"
    PyObject* v_http_disconnect = nullptr;    // "http.disconnect"
    PyObject* v_response_start = nullptr;     // "http.response.start"
    PyObject* v_response_body = nullptr;      // "http.response.body"
    PyObject* v_response_trailers = nullptr;  // "http.response.trailers" (message, extension)
    PyObject* v_http_2 = nullptr;             // "2"
    PyObject* v_http_1_1 = nullptr;           // "1.1"
    PyObject* v_http_1_0 = nullptr;           // "1.0"
    PyObject* v_scheme_http = nullptr;        // "http"
    PyObject* v_scheme_https = nullptr;       // "https"
    PyObject* v_scheme_ws = nullptr;          // "ws"
    PyObject* v_scheme_wss = nullptr;         // "wss"
    PyObject* v_websocket = nullptr;          // "websocket"
    PyObject* v_ws_connect = nullptr;         // "websocket.connect"
    PyObject* v_ws_receive = nullptr;         // "websocket.receive"
    PyObject* v_ws_disconnect = nullptr;      // "websocket.disconnect"
    PyObject* v_ws_accept = nullptr;          // "websocket.accept"
    PyObject* v_ws_send = nullptr;            // "websocket.send"
    PyObject* v_ws_close = nullptr;           // "websocket.close"
    PyObject* v_ws_response = nullptr;        // "websocket.http.response" (the extension)
    PyObject* v_ws_response_start = nullptr;  // "websocket.http.response.start"
    PyObject* v_ws_response_body = nullptr;   // "websocket.http.response.body"
    PyObject* v_empty_bytes = nullptr;        // b""
    PyObject* v_empty_str = nullptr;          // ""
};

// Creates the names; returns false with a Python exception set on failure.
bool init_names();
const names& N();  // the module's names (valid after init_names succeeded)

}  // namespace coachwhip::bridge::py
