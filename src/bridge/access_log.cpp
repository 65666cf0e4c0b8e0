// The access log's hand-over to Python (see access_log.hpp).
#include "bridge/access_log.hpp"

#include <charconv>
#include <string_view>

#include "bridge/objects.hpp"

namespace coachwhip::bridge {
namespace {

using py::N;

// ASCII case-insensitive equality with `lower`, a lower-case name.
bool is_field(std::string_view name, std::string_view lower) noexcept {
    if (name.size() != lower.size()) return false;
    for (size_t i = 0; i < name.size(); ++i) {
        const char c = name[i] >= 'A' && name[i] <= 'Z' ? static_cast<char>(name[i] + 32) : name[i];
        if (c != lower[i]) return false;
    }
    return true;
}

PyObject* text(std::string_view s) {
    // Request fields may hold obs-text (bytes above 0x7f): shown escaped, never an error.
    return PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "backslashreplace");
}

PyObject* text_or_none(std::string_view s, bool present) {
    return present ? text(s) : Py_NewRef(Py_None);
}

// "host:port", "[v6]:port", the host alone when there is no port (a Unix socket's path), or "-".
PyObject* client_text(const http::endpoint& c) {
    if (!c.known || c.host.empty()) return PyUnicode_FromStringAndSize("-", 1);
    if (c.port < 0) return text(c.host);
    char buf[80];
    const bool v6 = c.host.find(':') != std::string::npos;
    if (c.host.size() + 10 > sizeof buf)
        return PyUnicode_FromFormat("%s:%d", c.host.c_str(), c.port);
    char* p = buf;
    if (v6) *p++ = '[';
    p = std::copy(c.host.begin(), c.host.end(), p);
    if (v6) *p++ = ']';
    *p++ = ':';
    p = std::to_chars(p, buf + sizeof buf, c.port).ptr;
    return PyUnicode_DecodeLatin1(buf, p - buf, nullptr);
}

PyObject* version_text(std::string_view v) {
    if (v == "1.1") return Py_NewRef(N().v_http_1_1);
    if (v == "2") return Py_NewRef(N().v_http_2);
    if (v == "1.0") return Py_NewRef(N().v_http_1_0);
    return v.empty() ? PyUnicode_FromStringAndSize("-", 1) : text(v);
}

// A tuple of `wanted` field values from `fields` (None where absent), or None when the format
// names no field.
PyObject* field_tuple(const std::vector<std::string>& wanted, std::span<const http::field> fields) {
    if (wanted.empty()) return Py_NewRef(Py_None);
    py::ref t(PyTuple_New(static_cast<Py_ssize_t>(wanted.size())));
    if (!t) return nullptr;
    for (size_t i = 0; i < wanted.size(); ++i) {
        PyObject* v = nullptr;
        for (const http::field& f : fields) {
            if (is_field(f.name, wanted[i])) {
                v = text(f.value);
                if (!v) return nullptr;
                break;
            }
        }
        PyTuple_SET_ITEM(t.get(), static_cast<Py_ssize_t>(i), v ? v : Py_NewRef(Py_None));
    }
    return t.release();
}

PyObject* logged_tuple(const std::vector<std::string>& wanted, const http::exchange* ex) {
    if (wanted.empty()) return Py_NewRef(Py_None);
    py::ref t(PyTuple_New(static_cast<Py_ssize_t>(wanted.size())));
    if (!t) return nullptr;
    for (size_t i = 0; i < wanted.size(); ++i) {
        PyObject* v = nullptr;
        if (ex && i < ex->logged_fields.size() && ex->logged_fields[i]) {
            v = text(*ex->logged_fields[i]);
            if (!v) return nullptr;
        }
        PyTuple_SET_ITEM(t.get(), static_cast<Py_ssize_t>(i), v ? v : Py_NewRef(Py_None));
    }
    return t.release();
}

// One record to the sink. False with a Python exception set when it could not be called.
bool write_one(server_object* srv, const access_log_state& a, const http::access_record& r) {
    const http::exchange* ex = r.ex.get();
    std::string_view user_agent = r.user_agent, request_id = r.request_id;
    bool has_agent = !user_agent.empty(), has_id = !request_id.empty();
    if (ex) {
        for (const http::field& f : ex->headers) {
            if (!has_agent && is_field(f.name, "user-agent")) {
                user_agent = f.value;
                has_agent = true;
            } else if (!has_id && is_field(f.name, "x-request-id")) {
                request_id = f.value;
                has_id = true;
            }
        }
    }
    const std::string_view method = ex ? ex->method : std::string_view(r.method);
    const std::string_view target = ex ? ex->target : std::string_view(r.target);
    py::ref args[12] = {
        py::ref(client_text(ex ? ex->client : r.client)),
        py::ref(method.empty() ? PyUnicode_FromStringAndSize("-", 1) : srv->scopes->method(method)),
        py::ref(target.empty() ? PyUnicode_FromStringAndSize("-", 1) : text(target)),
        py::ref(version_text(ex ? ex->http_version : r.http_version)),
        py::ref(PyLong_FromLong(r.status)),
        py::ref(PyLong_FromUnsignedLongLong(r.duration_us)),
        py::ref(PyLong_FromUnsignedLongLong(r.bytes)),
        py::ref(Py_NewRef(r.cut_short ? Py_True : Py_False)),
        py::ref(text_or_none(user_agent, has_agent)),
        py::ref(text_or_none(request_id, has_id)),
        py::ref(field_tuple(a.request_fields, ex ? std::span<const http::field>(ex->headers)
                                                 : std::span<const http::field>())),
        py::ref(logged_tuple(a.response_fields, ex)),
    };
    PyObject* raw[12];
    for (size_t i = 0; i < 12; ++i) {
        if (!args[i]) return false;
        raw[i] = args[i].get();
    }
    py::ref res(PyObject_Vectorcall(a.sink, raw, 12, nullptr));
    return static_cast<bool>(res);
}

}  // namespace

void write_access_records(server_object* srv, std::vector<http::access_record>& records) {
    access_log_state* a = srv->access.get();
    if (records.empty()) return;
    if (!a || !a->sink) {
        records.clear();
        return;
    }
    for (http::access_record& r : records) {
        if (!write_one(srv, *a, r)) PyErr_WriteUnraisable(a->sink);
        // An accepted HTTP/1.1 WebSocket keeps no request head for its life (the connection's
        // hand-over leaves it for this record: see http1::connection::hand_over).
        if (r.ex && r.ex->websocket && r.ex->http_version != "2") {
            r.ex->method = r.ex->target = {};
            std::vector<http::field>().swap(r.ex->headers);
            std::vector<std::string_view>().swap(r.ex->ws_subprotocols);
            std::string().swap(r.ex->head_storage);
        }
    }
    records.clear();  // the exchanges go now, with the GIL held: their owners expect no more
    if (a->flush) {
        py::ref res(PyObject_CallNoArgs(a->flush));
        if (!res) PyErr_WriteUnraisable(a->flush);
    }
}

void drain_access_log(server_object* srv) {
    access_log_state* a = srv->access.get();
    if (!a || !srv->engine || !srv->engine->events().has_records()) return;
    srv->engine->events().take_records(a->batch);
    write_access_records(srv, a->batch);
}

void inspect_response_head(const std::vector<std::string>& wanted, http::exchange& ex,
                           std::span<const http::field> fields) {
    for (const http::field& f : fields) {
        if (is_field(f.name, "content-type")) {
            const std::string_view v = f.value;
            ex.event_stream = v.size() >= 17 && is_field(v.substr(0, 17), "text/event-stream");
            break;
        }
    }
    if (wanted.empty()) return;
    ex.logged_fields.assign(wanted.size(), std::nullopt);
    for (size_t i = 0; i < wanted.size(); ++i) {
        for (const http::field& f : fields) {
            if (is_field(f.name, wanted[i])) {
                ex.logged_fields[i].emplace(f.value);
                break;
            }
        }
    }
}

}  // namespace coachwhip::bridge
