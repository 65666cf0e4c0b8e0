#include "bridge/wsgi/call.hpp"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bridge/asgi/scope.hpp"
#include "bridge/objects.hpp"
#include "bridge/wsgi/pool.hpp"

namespace coachwhip::bridge::wsgi {

namespace {

constexpr int log_error_level = 40;

// Response state of one call (request_object::state):
//   fresh --start_response--> started --first non-empty block or the end--> sending
//   sending --the last block, or a failure--> ended
//   fresh/started --the app failed--> ended (a 500)
enum class phase : uint8_t { fresh, started, sending, ended };

struct request_object {
    PyObject_HEAD std::shared_ptr<call> c;  // constructed in place
    const http::exchange* ex;               // valid while phase != ended
    server_object* srv;                     // strong
    // wsgi.input
    std::string in;  // body bytes received and not yet read (from in_pos)
    size_t in_pos;
    bool in_complete;  // no more body after `in`
    // the response
    phase state;
    bool head_request;
    bool file_wrapper;  // the app returned a wsgi.file_wrapper
    bool gone;          // the client left: nothing more is sent
    int status;
    std::string* reason;           // owned: the status line's reason phrase (latin-1 bytes)
    std::vector<std::string>* hv;  // owned: name0, value0, ... (latin-1 bytes) until sent
    long long content_length;      // the app's Content-Length, or -1
    unsigned long long sent;       // body bytes handed to the engine
};

PyTypeObject* g_input_type = nullptr;

// The environ keys set per request, interned once at module init (immutable afterwards).
struct environ_keys {
    PyObject* request_method = nullptr;
    PyObject* path_info = nullptr;
    PyObject* query_string = nullptr;
    PyObject* server_protocol = nullptr;
    PyObject* url_scheme = nullptr;
    PyObject* input = nullptr;
    PyObject* remote_addr = nullptr;
    PyObject* remote_port = nullptr;
    PyObject* server_name = nullptr;
    PyObject* server_port = nullptr;
    PyObject* file_wrapper = nullptr;
    PyObject* close = nullptr;
};
environ_keys g_keys;

bool init_keys() {
    const std::pair<PyObject**, const char*> all[] = {
        {&g_keys.request_method, "REQUEST_METHOD"},  {&g_keys.path_info, "PATH_INFO"},
        {&g_keys.query_string, "QUERY_STRING"},      {&g_keys.server_protocol, "SERVER_PROTOCOL"},
        {&g_keys.url_scheme, "wsgi.url_scheme"},     {&g_keys.input, "wsgi.input"},
        {&g_keys.remote_addr, "REMOTE_ADDR"},        {&g_keys.remote_port, "REMOTE_PORT"},
        {&g_keys.server_name, "SERVER_NAME"},        {&g_keys.server_port, "SERVER_PORT"},
        {&g_keys.file_wrapper, "wsgi.file_wrapper"}, {&g_keys.close, "close"}};
    for (const auto& [slot, text] : all)
        if (!(*slot = PyUnicode_InternFromString(text))) return false;
    return true;
}

request_object* self_of(PyObject* o) { return reinterpret_cast<request_object*>(o); }

void log_text(server_object* srv, const std::string& text) {
    log_error(srv, log_error_level, text);
}

// "GET /path" for messages (the parser admits only visible ASCII in method and target).
std::string where(const request_object* r) {
    if (!r->ex) return "the request";
    return std::string(r->ex->method) + " " + std::string(r->ex->target);
}

// ---------------------------------------------------------------- posting to the engine

// Hands `cmd` to the engine; waits (GIL released) only when the call's output is full.
// Returns false when the client has gone (nothing queued unless `cmd` was final).
bool post(request_object* r, command&& cmd) {
    pool& p = *r->srv->wsgi;
    const bool fin = cmd.final();
    if (fin) r->state = phase::ended;
    bool ok;
    if (fin) {
        ok = p.post(r->c, std::move(cmd));  // never waits
    } else {
        Py_BEGIN_ALLOW_THREADS ok = p.post(r->c, std::move(cmd));
        Py_END_ALLOW_THREADS
    }
    if (!ok) r->gone = true;
    return ok;
}

void post_final(request_object* r, command::kind what) {
    if (r->state == phase::ended) return;
    if (what == command::error_500) r->status = 500;  // for the access line
    command cmd;
    cmd.what = what;
    cmd.more = false;
    post(r, std::move(cmd));
}

// A block of the body (`last`: the response ends with it). Sends the head first when it has not
// gone out. Cuts a body that overruns the app's Content-Length, and closes the connection when
// the body ends short of it. Returns false when nothing more should be sent (client gone, body
// cut, response ended).
bool send_block(request_object* r, std::string_view data, bool last) {
    if (r->state == phase::ended || r->gone) return false;
    // HEAD: the app's Content-Length is the GET's; what it yields (often nothing) is not sent.
    if (r->content_length >= 0 && !r->head_request) {
        const auto limit = static_cast<unsigned long long>(r->content_length);
        if (r->sent + data.size() > limit) {
            // PEP 3333: stop iterating once Content-Length bytes went out. The response is
            // complete and well-formed, so the connection stays usable. A file wrapper over a
            // whole file with the length of a part is how apps send a part: not a mistake.
            if (!r->file_wrapper)
                log_text(r->srv, "WSGI app error: the response body of " + where(r) +
                                     " is longer than its Content-Length (" +
                                     std::to_string(limit) + "): cut at that length (PEP 3333)");
            data = data.substr(0, static_cast<size_t>(limit - r->sent));
            last = true;
        } else if (last && r->sent + data.size() < limit) {
            log_text(r->srv, "WSGI app error: the response body of " + where(r) + " ended after " +
                                 std::to_string(r->sent + data.size()) +
                                 " bytes, short of its Content-Length (" + std::to_string(limit) +
                                 "): connection closed");
            if (r->state == phase::started) {
                // Nothing went out: the head and what there is, then the close.
                command cmd;
                cmd.status = r->status;
                cmd.hv = std::move(*r->hv);
                cmd.reason = std::move(*r->reason);
                cmd.data.assign(data);
                cmd.more = true;
                r->state = phase::sending;
                if (!post(r, std::move(cmd))) return false;
            } else if (!data.empty()) {
                command cmd;
                cmd.data.assign(data);
                if (!post(r, std::move(cmd))) return false;
            }
            post_final(r, command::abort);
            return false;
        }
    }
    // PEP 3333: the head waits for the first non-empty block (or the end of the body).
    if (data.empty() && !last) return true;
    command cmd;
    if (r->state == phase::started) {
        cmd.status = r->status;
        cmd.hv = std::move(*r->hv);
        cmd.reason = std::move(*r->reason);
        r->state = phase::sending;
    }
    cmd.data.assign(data);
    cmd.more = !last;
    r->sent += data.size();
    return post(r, std::move(cmd)) && !last;
}

// ---------------------------------------------------------------- start_response

bool is_token_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
}

bool is_hop_by_hop(std::string_view name) {
    static constexpr std::string_view names[] = {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
        "te",         "trailer",    "trailers",           "transfer-encoding",
        "upgrade"};
    std::string lower(name);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return std::find(std::begin(names), std::end(names), lower) != std::end(names);
}

// The latin-1 bytes of a str (PEP 3333 "native strings"), or false with TypeError/ValueError.
bool latin1(PyObject* s, const char* what, std::string& out) {
    if (!PyUnicode_Check(s)) {
        PyErr_Format(PyExc_TypeError, "WSGI %s must be a str, got %.80s", what,
                     Py_TYPE(s)->tp_name);
        return false;
    }
    py::ref b(PyUnicode_AsLatin1String(s));
    if (!b) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "WSGI %s must be latin-1 text (PEP 3333), got %R", what, s);
        return false;
    }
    out.assign(PyBytes_AS_STRING(b.get()), static_cast<size_t>(PyBytes_GET_SIZE(b.get())));
    return true;
}

// Checks the status and headers and keeps them for the head. False with an exception set.
bool take_head(request_object* r, PyObject* status, PyObject* headers) {
    std::string st;
    if (!latin1(status, "status", st)) return false;
    int code = 0;
    auto [end, ec] = std::from_chars(st.data(), st.data() + std::min<size_t>(st.size(), 3), code);
    if (ec != std::errc() || end != st.data() + 3 || code < 100 || code > 999 ||
        (st.size() > 3 && st[3] != ' ')) {
        PyErr_Format(PyExc_ValueError,
                     "WSGI status must be a code and a reason like '200 OK', got %R", status);
        return false;
    }
    std::string reason = st.size() > 4 ? st.substr(4) : std::string();
    for (unsigned char ch : reason) {
        if (ch != '\t' && (ch < 0x20 || ch == 0x7f)) {
            PyErr_Format(PyExc_ValueError,
                         "WSGI status %R has a control character (CR, LF, ...) in its reason",
                         status);
            return false;
        }
    }
    if (code < 200) {
        PyErr_Format(PyExc_ValueError,
                     "WSGI status %R: an interim (1xx) response cannot be sent by a WSGI app",
                     status);
        return false;
    }
    py::ref seq(PySequence_Fast(headers, "WSGI response headers must be a list of (name, value)"));
    if (!seq) return false;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.get());
    std::vector<std::string> hv;
    hv.reserve(static_cast<size_t>(2 * n));
    long long length = -1;
    for (Py_ssize_t i = 0; i < n; ++i) {
        PyObject* pair = PySequence_Fast_GET_ITEM(seq.get(), i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_Format(PyExc_TypeError,
                         "each WSGI response header must be a (name, value) tuple, got %R", pair);
            return false;
        }
        std::string name, value;
        if (!latin1(PyTuple_GET_ITEM(pair, 0), "header name", name) ||
            !latin1(PyTuple_GET_ITEM(pair, 1), "header value", value))
            return false;
        if (name.empty() || !std::all_of(name.begin(), name.end(),
                                         [](unsigned char c) { return is_token_char(c); })) {
            PyErr_Format(PyExc_ValueError, "WSGI response header name %R is not a valid token",
                         PyTuple_GET_ITEM(pair, 0));
            return false;
        }
        if (value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
            PyErr_Format(PyExc_ValueError,
                         "WSGI response header %R has CR, LF or NUL in its value: %R",
                         PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1));
            return false;
        }
        if (is_hop_by_hop(name)) {
            PyErr_Format(PyExc_ValueError,
                         "WSGI response header %R is hop-by-hop: the server sets it (PEP 3333)",
                         PyTuple_GET_ITEM(pair, 0));
            return false;
        }
        if (name.size() == 14 &&
            std::equal(name.begin(), name.end(), "content-length", [](char a, char b) {
                return std::tolower(static_cast<unsigned char>(a)) == b;
            })) {
            long long v = -1;
            auto [p, e] = std::from_chars(value.data(), value.data() + value.size(), v);
            if (e != std::errc() || p != value.data() + value.size() || v < 0 ||
                (length >= 0 && length != v)) {
                PyErr_Format(PyExc_ValueError, "WSGI response Content-Length %R is not valid",
                             PyTuple_GET_ITEM(pair, 1));
                return false;
            }
            length = v;
        }
        hv.push_back(std::move(name));
        hv.push_back(std::move(value));
    }
    r->status = code;
    *r->reason = std::move(reason);
    *r->hv = std::move(hv);
    r->content_length = length;
    return true;
}

PyObject* write_method(PyObject* self, PyObject* data);
PyMethodDef write_def = {"write", write_method, METH_O,
                         "write(data): send bytes now, before the app's iterable (PEP 3333)."};

PyObject* start_response(PyObject* self, PyObject* const* args, Py_ssize_t nargs,
                         PyObject* kwnames) {
    request_object* r = self_of(self);
    PyObject *status = nullptr, *headers = nullptr, *exc_info = Py_None;
    static const char* const kw[] = {"status", "headers", "exc_info"};
    // The public API has no vectorcall argument parser: unpack by hand.
    const Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject* slots[3] = {nullptr, nullptr, nullptr};
    if (nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "start_response() takes at most 3 arguments");
        return nullptr;
    }
    for (Py_ssize_t i = 0; i < nargs; ++i)
        slots[i] = args[i];
    for (Py_ssize_t i = 0; i < nkw; ++i) {
        PyObject* k = PyTuple_GET_ITEM(kwnames, i);
        int idx = -1;
        for (int j = 0; j < 3; ++j)
            if (PyUnicode_CompareWithASCIIString(k, kw[j]) == 0) idx = j;
        if (idx < 0 || slots[idx]) {
            PyErr_Format(PyExc_TypeError, "start_response() got an unexpected argument %R", k);
            return nullptr;
        }
        slots[idx] = args[nargs + i];
    }
    status = slots[0];
    headers = slots[1];
    if (slots[2]) exc_info = slots[2];
    if (!status || !headers) {
        PyErr_SetString(PyExc_TypeError, "start_response(status, headers, exc_info=None)");
        return nullptr;
    }
    const bool has_exc = exc_info != Py_None;
    if (has_exc) {
        if (r->state == phase::sending || r->state == phase::ended) {
            // PEP 3333: too late to change the head; re-raise the app's exception.
            if (!PyTuple_Check(exc_info) || PyTuple_GET_SIZE(exc_info) != 3) {
                PyErr_SetString(PyExc_TypeError, "exc_info must be a sys.exc_info() tuple");
                return nullptr;
            }
            PyObject* value = PyTuple_GET_ITEM(exc_info, 1);
            if (!PyExceptionInstance_Check(value)) {
                PyErr_SetString(PyExc_TypeError, "exc_info must be a sys.exc_info() tuple");
                return nullptr;
            }
            PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(value)), value);
            return nullptr;
        }
    } else if (r->state != phase::fresh) {
        PyErr_SetString(PyExc_AssertionError,
                        "start_response was called a second time without exc_info (PEP 3333)");
        return nullptr;
    }
    if (!take_head(r, status, headers)) return nullptr;
    if (r->state == phase::fresh) r->state = phase::started;
    return PyCFunction_NewEx(&write_def, self, nullptr);
}

PyMethodDef start_response_def = {
    "start_response", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(start_response)),
    METH_FASTCALL | METH_KEYWORDS, "start_response(status, headers, exc_info=None) (PEP 3333)."};

PyObject* write_method(PyObject* self, PyObject* data) {
    request_object* r = self_of(self);
    if (r->state == phase::fresh) {
        PyErr_SetString(PyExc_AssertionError, "write() before start_response (PEP 3333)");
        return nullptr;
    }
    Py_buffer view;
    if (!PyBytes_Check(data)) {
        PyErr_Format(PyExc_TypeError, "write() takes bytes, got %.80s", Py_TYPE(data)->tp_name);
        return nullptr;
    }
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) return nullptr;
    std::string_view bytes(static_cast<const char*>(view.buf), static_cast<size_t>(view.len));
    if (r->content_length >= 0 &&
        r->sent + bytes.size() > static_cast<unsigned long long>(r->content_length)) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError,
                     "write() past the response's Content-Length (%lld bytes) (PEP 3333)",
                     r->content_length);
        return nullptr;
    }
    send_block(r, bytes, false);
    PyBuffer_Release(&view);
    if (r->gone) {
        PyErr_SetString(client_disconnected_error, "the client has disconnected");
        return nullptr;
    }
    Py_RETURN_NONE;
}

// ---------------------------------------------------------------- wsgi.input

// Makes at least one more byte available in r->in (or learns the body ended). False when the
// body has ended (or the client left: then with ClientDisconnected set).
bool fill(request_object* r) {
    if (r->in_pos < r->in.size()) return true;
    r->in.clear();
    r->in_pos = 0;
    if (r->in_complete) return false;
    bool complete = false, ok;
    Py_BEGIN_ALLOW_THREADS ok = r->srv->wsgi->read_body(r->c, r->in, complete);
    Py_END_ALLOW_THREADS r->in_complete = complete;
    if (!ok) {
        r->in_complete = true;
        PyErr_SetString(client_disconnected_error,
                        "the client disconnected before the request body ended");
        return false;
    }
    return r->in_pos < r->in.size();
}

// Reads up to `limit` bytes (-1: all), stopping after `stop` when stop >= 0 (readline).
PyObject* read_some(request_object* r, Py_ssize_t limit, int stop) {
    std::string out;
    while (limit < 0 || static_cast<Py_ssize_t>(out.size()) < limit) {
        if (!fill(r)) {
            if (PyErr_Occurred()) return nullptr;
            break;
        }
        std::string_view avail(r->in.data() + r->in_pos, r->in.size() - r->in_pos);
        size_t take = avail.size();
        if (limit >= 0) take = std::min(take, static_cast<size_t>(limit) - out.size());
        bool found = false;
        if (stop >= 0) {
            size_t nl = avail.substr(0, take).find(static_cast<char>(stop));
            if (nl != std::string_view::npos) {
                take = nl + 1;
                found = true;
            }
        }
        if (out.empty() && r->in_pos == 0 && take == r->in.size()) {
            // The whole buffer is (the start of) the answer: take it without a copy.
            out.swap(r->in);
            r->in_pos = 0;
            r->in.clear();
        } else {
            out.append(avail.substr(0, take));
            r->in_pos += take;
        }
        if (found) break;
    }
    return py::bytes(out);
}

bool size_arg(PyObject* const* args, Py_ssize_t nargs, Py_ssize_t& size, const char* name) {
    size = -1;
    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most 1 argument", name);
        return false;
    }
    if (nargs == 1 && args[0] != Py_None) {
        size = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
        if (size == -1 && PyErr_Occurred()) return false;
        if (size < 0) size = -1;
    }
    return true;
}

PyObject* input_read(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    Py_ssize_t size;
    if (!size_arg(args, nargs, size, "read")) return nullptr;
    return read_some(self_of(self), size, -1);
}

PyObject* input_readline(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    Py_ssize_t size;
    if (!size_arg(args, nargs, size, "readline")) return nullptr;
    return read_some(self_of(self), size, '\n');
}

PyObject* input_readlines(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    Py_ssize_t hint;
    if (!size_arg(args, nargs, hint, "readlines")) return nullptr;
    py::ref lines(PyList_New(0));
    if (!lines) return nullptr;
    Py_ssize_t total = 0;
    while (true) {
        py::ref line(read_some(self_of(self), -1, '\n'));
        if (!line) return nullptr;
        if (PyBytes_GET_SIZE(line.get()) == 0) break;
        total += PyBytes_GET_SIZE(line.get());
        if (PyList_Append(lines.get(), line.get()) < 0) return nullptr;
        if (hint > 0 && total >= hint) break;
    }
    return lines.release();
}

PyObject* input_iternext(PyObject* self) {
    PyObject* line = read_some(self_of(self), -1, '\n');
    if (line && PyBytes_GET_SIZE(line) == 0) {
        Py_DECREF(line);
        return nullptr;  // StopIteration
    }
    return line;
}

PyObject* input_self(PyObject* self, PyObject*) { return Py_NewRef(self); }

void input_dealloc(PyObject* self) {
    request_object* r = self_of(self);
    r->c.~shared_ptr();
    r->in.~basic_string();
    delete r->hv;
    delete r->reason;
    Py_XDECREF(reinterpret_cast<PyObject*>(r->srv));
    PyTypeObject* type = Py_TYPE(self);
    type->tp_free(self);
    Py_DECREF(type);
}

PyMethodDef input_methods[] = {
    {"read", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(input_read)), METH_FASTCALL,
     "read(size=-1): request body bytes; b'' at its end."},
    {"readline", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(input_readline)),
     METH_FASTCALL, "readline(size=-1): up to and including the next b'\\n'."},
    {"readlines", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(input_readlines)),
     METH_FASTCALL, "readlines(hint=-1): the remaining lines."},
    {"close", input_self, METH_NOARGS, "Nothing to do; the server owns the stream."},
    {nullptr, nullptr, 0, nullptr}};

PyType_Slot input_slots[] = {{Py_tp_dealloc, reinterpret_cast<void*>(input_dealloc)},
                             {Py_tp_iter, reinterpret_cast<void*>(PyObject_SelfIter)},
                             {Py_tp_iternext, reinterpret_cast<void*>(input_iternext)},
                             {Py_tp_methods, input_methods},
                             {Py_tp_doc, const_cast<char*>("wsgi.input: the request body.")},
                             {0, nullptr}};

PyType_Spec input_spec = {"coachwhip._core.WsgiInput", sizeof(request_object), 0,
                          Py_TPFLAGS_DEFAULT, input_slots};

// ---------------------------------------------------------------- environ

// PEP 3333 native strings: bytes as latin-1 code points.
int set_str(PyObject* d, const char* key, std::string_view v) {
    py::ref s(py::str(v));
    return s ? PyDict_SetItemString(d, key, s.get()) : -1;
}

int set_str(PyObject* d, PyObject* key, std::string_view v) {
    py::ref s(py::str(v));
    return s ? PyDict_SetItem(d, key, s.get()) : -1;
}

// SERVER_NAME and SERVER_PORT from Host (gunicorn's rule), else the server's address.
int set_server(PyObject* env, const http::exchange& ex, std::string_view host) {
    std::string name, port;
    if (!host.empty()) {
        if (host.front() == '[') {
            size_t close = host.find(']');
            name = std::string(
                host.substr(0, close == std::string_view::npos ? host.size() : close + 1));
            if (close != std::string_view::npos && close + 1 < host.size() &&
                host[close + 1] == ':')
                port = std::string(host.substr(close + 2));
        } else {
            size_t colon = host.rfind(':');
            name = std::string(host.substr(0, colon));
            if (colon != std::string_view::npos) port = std::string(host.substr(colon + 1));
        }
        if (port.empty()) port = ex.scheme == "https" ? "443" : "80";
    } else {
        name = ex.server.known ? ex.server.host : "";
        port = ex.server.port >= 0 ? std::to_string(ex.server.port) : "";
    }
    return set_str(env, g_keys.server_name, name) < 0 || set_str(env, g_keys.server_port, port) < 0
               ? -1
               : 0;
}

PyObject* build_environ(server_object* srv, const http::exchange& ex, PyObject* input) {
    py::ref env(PyDict_Copy(srv->wsgi_environ));
    if (!env) return nullptr;
    PyObject* d = env.get();
    std::string_view target = ex.target;
    size_t q = target.find('?');
    std::string_view raw_path = target.substr(0, q);
    std::string_view query = q == std::string_view::npos ? "" : target.substr(q + 1);
    std::string path;
    asgi::percent_decode(raw_path, path);
    // --root-path is SCRIPT_NAME (in the base environ); a path that already starts with it
    // (a proxy that did not strip it) has it removed from PATH_INFO.
    Py_ssize_t root_size = 0;
    const char* root = PyUnicode_AsUTF8AndSize(srv->root_path, &root_size);
    if (!root) return nullptr;
    std::string_view rp(root, static_cast<size_t>(root_size));
    if (!rp.empty() && path.compare(0, rp.size(), rp) == 0 &&
        (path.size() == rp.size() || path[rp.size()] == '/'))
        path.erase(0, rp.size());
    if (set_str(d, g_keys.request_method, ex.method) < 0 ||
        set_str(d, g_keys.path_info, path) < 0 || set_str(d, g_keys.query_string, query) < 0 ||
        set_str(d, g_keys.server_protocol, std::string("HTTP/") + std::string(ex.http_version)) <
            0 ||
        set_str(d, g_keys.url_scheme,
                ex.scheme == "wss"  ? "https"
                : ex.scheme == "ws" ? "http"
                                    : ex.scheme) < 0 ||
        PyDict_SetItem(d, g_keys.input, input) < 0)
        return nullptr;
    if (ex.client.known) {
        if (set_str(d, g_keys.remote_addr, ex.client.host) < 0) return nullptr;
        if (ex.client.port >= 0 &&
            set_str(d, g_keys.remote_port, std::to_string(ex.client.port)) < 0)
            return nullptr;
    }
    // Headers: HTTP_<NAME>, repeats joined (cookies with "; "); a name with "_" is dropped so
    // that it can never pose as the "-" spelling (X_Forwarded_For as X-Forwarded-For).
    std::vector<std::pair<std::string, std::string>> vars;
    vars.reserve(ex.headers.size());
    std::string_view host;
    for (const http::field& f : ex.headers) {
        if (f.name.find('_') != std::string_view::npos) continue;
        std::string key;
        key.reserve(5 + f.name.size());
        auto upper = [](unsigned char c) {
            return c == '-' ? '_' : static_cast<char>(std::toupper(c));
        };
        std::string up(f.name.size(), '\0');
        std::transform(f.name.begin(), f.name.end(), up.begin(), upper);
        if (up == "CONTENT_TYPE" || up == "CONTENT_LENGTH") {
            key = up;
        } else {
            key = "HTTP_" + up;
            if (up == "HOST" && host.empty()) host = f.value;
        }
        auto it = std::find_if(vars.begin(), vars.end(), [&](auto& v) { return v.first == key; });
        if (it == vars.end()) {
            vars.emplace_back(std::move(key), std::string(f.value));
        } else {
            it->second.append(up == "COOKIE" ? "; " : ",").append(f.value);
        }
    }
    for (auto& [k, v] : vars)
        if (set_str(d, k.c_str(), v) < 0) return nullptr;
    if (set_server(d, ex, host) < 0) return nullptr;
    return env.release();
}

// ---------------------------------------------------------------- the call

// The app raised (the exception is set): report it, then a 500 or a closed connection.
void app_failed(request_object* r) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb && value) PyException_SetTraceback(value, tb);
    if (value) {
        // report_failure(exc, "GET /path"): the request is named while it is still ours.
        py::ref what(py::str(r->state == phase::ended ? std::string("the request") : where(r)));
        py::ref res(
            what ? PyObject_CallFunctionObjArgs(r->srv->report_failure, value, what.get(), nullptr)
                 : nullptr);
        if (!res) PyErr_WriteUnraisable(r->srv->report_failure);
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    post_final(r, r->state == phase::sending ? command::abort : command::error_500);
}

// Calls result.close() if it has one (PEP 3333: always, however the iteration ended).
void close_result(request_object* r, PyObject* result) {
    // A list or tuple (the usual `[body]`) has no close(): asking would build an AttributeError
    // per request (perf: PyUnicode_FromFormatV in the hello-world profile).
    if (PyList_CheckExact(result) || PyTuple_CheckExact(result)) return;
    py::ref close(PyObject_GetAttr(result, g_keys.close));
    if (!close) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return app_failed(r);
        PyErr_Clear();
        return;
    }
    py::ref res(PyObject_CallNoArgs(close.get()));
    if (!res) app_failed(r);
}

bool is_asgi_result(PyObject* result) {
    return PyCoro_CheckExact(result) || PyObject_HasAttrString(result, "__await__");
}

// wsgi.file_wrapper over a regular file: the rest of the file (cut at the Content-Length) goes
// as one final file part, which the engine sends with sendfile. False when that does not apply
// (a file-like without a usable fileno, a pipe, ...): then the wrapper is iterated as usual.
bool send_file_part(request_object* r, PyObject* wrapper) {
    if (r->state != phase::started) return false;  // no start_response yet, or body already sent
    py::ref filelike(PyObject_GetAttrString(wrapper, "filelike"));
    py::ref fileno(filelike ? PyObject_CallMethod(filelike.get(), "fileno", nullptr) : nullptr);
    const long fd = fileno ? PyLong_AsLong(fileno.get()) : -1;
    if (fd < 0 || fd > INT32_MAX) {
        PyErr_Clear();
        return false;
    }
    struct stat st {};
    if (::fstat(static_cast<int>(fd), &st) < 0 || !S_ISREG(st.st_mode)) return false;
    // tell(), not lseek: a buffered file object may have read ahead of where the app is.
    py::ref pos(PyObject_CallMethod(filelike.get(), "tell", nullptr));
    const long long offset = pos ? PyLong_AsLongLong(pos.get()) : -1;
    if (offset < 0) {
        PyErr_Clear();
        return false;
    }
    const auto size = static_cast<uint64_t>(st.st_size);
    uint64_t len = static_cast<uint64_t>(offset) < size ? size - static_cast<uint64_t>(offset) : 0;
    if (r->content_length >= 0)
        len = std::min<uint64_t>(len, static_cast<uint64_t>(r->content_length) - r->sent);
    const int dup = ::fcntl(static_cast<int>(fd), F_DUPFD_CLOEXEC, 0);  // the app closes its own
    if (dup < 0) return false;
    command cmd;
    cmd.status = r->status;
    cmd.hv = std::move(*r->hv);
    cmd.reason = std::move(*r->reason);
    cmd.file = owned_fd(dup);
    cmd.file_offset = static_cast<uint64_t>(offset);
    cmd.file_length = len;
    cmd.more = false;
    r->sent += len;
    if (r->content_length >= 0 && !r->head_request &&
        r->sent < static_cast<uint64_t>(r->content_length)) {
        // The file is shorter than the app's Content-Length: the part, then a closed connection.
        log_text(r->srv, "WSGI app error: the file sent for " + where(r) + " ends after " +
                             std::to_string(r->sent) + " bytes, short of its Content-Length (" +
                             std::to_string(r->content_length) + "): connection closed");
        cmd.more = true;
        r->state = phase::sending;
        if (post(r, std::move(cmd))) post_final(r, command::abort);
        return true;
    }
    r->state = phase::sending;
    post(r, std::move(cmd));
    return true;
}

// Iterates the app's result, sending each block. A list or tuple (the usual `[body]`) ends the
// response with its last block, so a one-block body goes out with its Content-Length in one
// command; any other iterable ends it after close().
void send_result(request_object* r, PyObject* result) {
    if (PyList_CheckExact(result) || PyTuple_CheckExact(result)) {
        py::ref seq(PySequence_Fast(result, "not a sequence"));
        if (!seq) return app_failed(r);
        const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.get());
        for (Py_ssize_t i = 0; i < n; ++i) {
            PyObject* item = PySequence_Fast_GET_ITEM(seq.get(), i);
            if (!PyBytes_Check(item)) {
                PyErr_Format(PyExc_TypeError, "a WSGI app must yield bytes, got %.80s (PEP 3333)",
                             Py_TYPE(item)->tp_name);
                return app_failed(r);
            }
            if (r->state == phase::fresh) {
                PyErr_SetString(PyExc_AssertionError,
                                "the WSGI app returned its body without calling start_response");
                return app_failed(r);
            }
            std::string_view b(PyBytes_AS_STRING(item),
                               static_cast<size_t>(PyBytes_GET_SIZE(item)));
            if (!send_block(r, b, i == n - 1)) return;
        }
        return;
    }
    PyObject* wrapper = PyDict_GetItemWithError(r->srv->wsgi_environ, g_keys.file_wrapper);
    r->file_wrapper = wrapper && Py_TYPE(result) == reinterpret_cast<PyTypeObject*>(wrapper);
    if (r->file_wrapper && send_file_part(r, result)) return;
    py::ref it(PyObject_GetIter(result));
    if (!it) return app_failed(r);
    while (true) {
        py::ref item(PyIter_Next(it.get()));
        if (!item) {
            if (PyErr_Occurred()) app_failed(r);
            return;
        }
        if (!PyBytes_Check(item.get())) {
            PyErr_Format(PyExc_TypeError, "a WSGI app must yield bytes, got %.80s (PEP 3333)",
                         Py_TYPE(item.get())->tp_name);
            return app_failed(r);
        }
        if (r->state == phase::fresh) {
            PyErr_SetString(PyExc_AssertionError,
                            "the WSGI app yielded its body before calling start_response");
            return app_failed(r);
        }
        std::string_view b(PyBytes_AS_STRING(item.get()),
                           static_cast<size_t>(PyBytes_GET_SIZE(item.get())));
        if (!send_block(r, b, false)) return;
    }
}

}  // namespace

void run_call(server_object* srv, const std::shared_ptr<call>& c) {
    auto* r = PyObject_New(request_object, g_input_type);
    if (!r) {
        PyErr_WriteUnraisable(srv->app);
        command cmd;
        cmd.what = command::error_500;
        srv->wsgi->post(c, std::move(cmd));
        return;
    }
    new (&r->c) std::shared_ptr<call>(c);
    new (&r->in) std::string();
    r->ex = c->request;
    r->srv = reinterpret_cast<server_object*>(Py_NewRef(reinterpret_cast<PyObject*>(srv)));
    r->in_pos = 0;
    r->in_complete = !r->ex->has_body;
    r->state = phase::fresh;
    r->head_request = r->ex->method == "HEAD";
    r->file_wrapper = false;
    r->gone = false;
    r->status = 0;
    r->hv = new (std::nothrow) std::vector<std::string>();
    r->reason = new (std::nothrow) std::string();
    r->content_length = -1;
    r->sent = 0;
    py::ref self(reinterpret_cast<PyObject*>(r));
    if (!r->hv || !r->reason) {
        PyErr_NoMemory();
        return app_failed(r);
    }
    py::ref env(build_environ(srv, *r->ex, self.get()));
    py::ref start(env ? PyCFunction_NewEx(&start_response_def, self.get(), nullptr) : nullptr);
    if (!start) {
        app_failed(r);
    } else {
        PyObject* args[] = {env.get(), start.get()};
        py::ref result(PyObject_Vectorcall(srv->app, args, 2, nullptr));
        if (!result) {
            app_failed(r);
        } else if (is_asgi_result(result.get())) {
            py::ref closed(PyObject_CallMethod(result.get(), "close", nullptr));
            if (!closed) PyErr_Clear();
            log_text(srv, "the app returned a coroutine for " + where(r) +
                              ": it is an ASGI app, not WSGI; use --interface asgi3");
            post_final(r, command::error_500);
        } else {
            send_result(r, result.get());
            close_result(r, result.get());
        }
    }
    if (r->state == phase::fresh) {
        if (!r->gone)
            log_text(srv, "the WSGI app returned from " + where(r) +
                              " without calling start_response (PEP 3333)");
        post_final(r, command::error_500);
    } else if (r->state == phase::started || r->state == phase::sending) {
        if (r->gone)
            post_final(r, command::done);
        else
            send_block(r, {}, true);  // the end of the body (the head too, if none went out)
    }
    PyErr_Clear();
    r->ex = nullptr;
}

bool init_input_type(PyObject* module) {
    if (!init_keys()) return false;
    PyObject* type = PyType_FromModuleAndSpec(module, &input_spec, nullptr);
    if (!type) return false;
    g_input_type = reinterpret_cast<PyTypeObject*>(type);
    return PyModule_AddObjectRef(module, "WsgiInput", type) == 0;
}

}  // namespace coachwhip::bridge::wsgi
