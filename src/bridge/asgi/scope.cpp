#include "bridge/asgi/scope.hpp"

#include <iterator>

namespace coachwhip::bridge::asgi {
namespace {
constexpr size_t cache_limit = 512;  // bounded: a client cannot grow the caches without limit

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int set_item(PyObject* d, PyObject* k, PyObject* v) {
    if (!v) return -1;
    int r = PyDict_SetItem(d, k, v);
    Py_DECREF(v);
    return r;
}
}  // namespace

void percent_decode(std::string_view in, std::string& out) {
    out.clear();
    out.reserve(in.size());
    for (size_t i = 0; i < in.size(); ++i) {
        int hi, lo;
        if (in[i] == '%' && i + 2 < in.size() && (hi = hex_value(in[i + 1])) >= 0 &&
            (lo = hex_value(in[i + 2])) >= 0) {
            out.push_back(static_cast<char>(hi * 16 + lo));
            i += 2;
        } else {
            out.push_back(in[i]);
        }
    }
}

scope_builder::~scope_builder() {
    for (auto& [k, v] : methods_)
        Py_DECREF(v);
    for (auto& [k, v] : names_)
        Py_DECREF(v);
    for (auto& [k, v] : hosts_)
        Py_DECREF(v);
    Py_XDECREF(server_tuple_);
    Py_XDECREF(tls_template_);
    Py_XDECREF(cert_str_);
    Py_XDECREF(version_obj_);
    Py_XDECREF(suite_obj_);
    Py_XDECREF(template_);
    Py_XDECREF(asgi_);
}

PyObject* scope_builder::host(const std::string& h) {
    auto it = hosts_.find(h);
    if (it != hosts_.end()) return Py_NewRef(it->second);
    PyObject* s = py::str(h);
    if (s && hosts_.size() < cache_limit) hosts_.emplace(h, Py_NewRef(s));
    return s;
}

// The scheme a trusted proxy named (http::exchange::scheme is one of these four): borrowed.
PyObject* scope_builder::scheme(std::string_view s) {
    const auto& n = py::N();
    if (s == "https") return n.v_scheme_https;
    if (s == "ws") return n.v_scheme_ws;
    if (s == "wss") return n.v_scheme_wss;
    return n.v_scheme_http;
}

PyObject* scope_builder::method(std::string_view m) {
    auto it = methods_.find(m);
    if (it != methods_.end()) return Py_NewRef(it->second);
    PyObject* s = py::str(m);
    if (s && methods_.size() < cache_limit) methods_.emplace(std::string(m), Py_NewRef(s));
    return s;
}

PyObject* scope_builder::header_name(std::string_view raw) {
    auto it = names_.find(raw);
    if (it != names_.end()) return Py_NewRef(it->second);
    PyObject* b = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(raw.size()));
    if (!b) return nullptr;
    char* p = PyBytes_AS_STRING(b);
    for (size_t i = 0; i < raw.size(); ++i) {
        char c = raw[i];
        p[i] = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;  // ASGI: lowercased names
    }
    if (names_.size() < cache_limit) names_.emplace(std::string(raw), Py_NewRef(b));
    return b;
}

PyObject* scope_builder::headers(const http::exchange& ex) {
    PyObject* list = PyList_New(static_cast<Py_ssize_t>(ex.headers.size()));
    if (!list) return nullptr;
    Py_ssize_t i = 0;
    for (const auto& f : ex.headers) {
        PyObject* name = header_name(f.name);
        PyObject* value = name ? py::bytes(f.value) : nullptr;
        PyObject* pair = value ? PyTuple_Pack(2, name, value) : nullptr;
        Py_XDECREF(name);
        Py_XDECREF(value);
        if (!pair) {
            Py_DECREF(list);
            return nullptr;
        }
        PyList_SET_ITEM(list, i++, pair);
    }
    return list;
}

PyObject* scope_builder::endpoint(const http::endpoint* ep, bool unix_server) {
    if (!ep->known) return Py_NewRef(Py_None);
    py::ref h(host(ep->host));
    py::ref port(unix_server || ep->port < 0 ? Py_NewRef(Py_None) : PyLong_FromLong(ep->port));
    if (!h || !port) return nullptr;
    return PyTuple_Pack(2, h.get(), port.get());
}

bool scope_builder::add_path(PyObject* scope, std::string_view target) {
    const auto& n = py::N();
    // absolute-form (RFC 9112 §3.2.2): the path starts after the authority.
    if (target.size() > 7 && (target[0] == 'h' || target[0] == 'H')) {
        size_t scheme_end = target.find("://");
        if (scheme_end != std::string_view::npos) {
            size_t slash = target.find('/', scheme_end + 3);
            size_t query = target.find('?', scheme_end + 3);
            size_t start = std::min(slash, query);
            target = start == std::string_view::npos ? std::string_view("/") : target.substr(start);
        }
    }
    size_t q = target.find('?');
    std::string_view raw = target.substr(0, q);
    std::string_view query =
        q == std::string_view::npos ? std::string_view() : target.substr(q + 1);

    std::string decoded;
    percent_decode(raw, decoded);
    py::ref path(
        PyUnicode_DecodeUTF8(decoded.data(), static_cast<Py_ssize_t>(decoded.size()), "replace"));
    if (!path) return false;
    py::ref raw_path(py::bytes(raw));
    if (!raw_path) return false;
    if (root_path_ && PyUnicode_GET_LENGTH(root_path_) > 0) {
        // uvicorn's behaviour, which apps expect: root_path prefixes both path and raw_path.
        path = py::ref(PyUnicode_Concat(root_path_, path.get()));
        py::ref prefix(PyUnicode_AsUTF8String(root_path_));
        if (!path || !prefix) return false;
        PyObject* joined = prefix.release();
        PyBytes_Concat(&joined, raw_path.get());
        raw_path = py::ref(joined);
        if (!raw_path) return false;
    }
    return set_item(scope, n.path, path.release()) == 0 &&
           set_item(scope, n.raw_path, raw_path.release()) == 0 &&
           (query.empty() || set_item(scope, n.query_string, py::bytes(query)) == 0);
}

PyObject* scope_builder::server_endpoint(const http::endpoint& ep, bool unix_server) {
    if (!server_tuple_ || ep.port != server_port_ || unix_server != server_unix_ ||
        ep.host != server_host_ || !ep.known) {
        PyObject* t = endpoint(&ep, unix_server);
        if (!t || !ep.known) return t;  // None for an unknown address: nothing to cache
        Py_XSETREF(server_tuple_, t);
        server_host_ = ep.host;
        server_port_ = ep.port;
        server_unix_ = unix_server;
    }
    return Py_NewRef(server_tuple_);
}

// {"tls": the ASGI TLS extension}: present on TLS connections only, as the extension requires.
// `server_name` (the SNI the client sent) is ours; the extension has no key for it.
PyObject* scope_builder::extensions(const tls::info& t) {
    const auto& n = py::N();
    auto str = [](const std::string& s) {
        return PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), "replace");
    };
    auto optional = [&](const std::optional<std::string>& s) {
        return s ? str(*s) : Py_NewRef(Py_None);
    };
    if (!tls_template_) {
        tls_template_ = PyDict_New();
        for (PyObject* k : {n.server_cert, n.client_cert_chain, n.client_cert_name,
                            n.client_cert_error, n.tls_version, n.cipher_suite, n.server_name})
            if (!tls_template_ || PyDict_SetItem(tls_template_, k, Py_None) < 0) {
                Py_CLEAR(tls_template_);
                return nullptr;
            }
    }
    if (t.server_cert != cert_source_ || !cert_str_) {
        Py_XSETREF(cert_str_, t.server_cert ? str(*t.server_cert) : Py_NewRef(Py_None));
        if (!cert_str_) return nullptr;
        cert_source_ = t.server_cert;
    }
    // A tuple (the extension asks for an Iterable[str]): immutable, and the empty one, which
    // most connections have, is CPython's shared singleton, so it costs no allocation.
    py::ref chain(PyTuple_New(static_cast<Py_ssize_t>(t.client_cert_chain.size())));
    if (!chain) return nullptr;
    for (size_t i = 0; i < t.client_cert_chain.size(); ++i) {
        PyObject* pem = str(t.client_cert_chain[i]);
        if (!pem) return nullptr;
        PyTuple_SET_ITEM(chain.get(), static_cast<Py_ssize_t>(i), pem);
    }
    // The version and the suite are the same few numbers on every connection (ints above 256
    // are allocated each time): one object each, kept.
    auto number = [](uint16_t value, uint16_t& cached_value, PyObject*& cached) {
        if (!cached || cached_value != value) {
            Py_XSETREF(cached, PyLong_FromLong(value));
            cached_value = value;
        }
        return cached ? Py_NewRef(cached) : nullptr;
    };
    py::ref tls(PyDict_Copy(tls_template_));
    if (!tls) return nullptr;
    PyObject* d = tls.get();
    const bool ok =
        PyDict_SetItem(d, n.server_cert, cert_str_) == 0 &&
        PyDict_SetItem(d, n.client_cert_chain, chain.get()) == 0 &&
        (!t.client_cert_name ||
         set_item(d, n.client_cert_name, optional(t.client_cert_name)) == 0) &&
        (!t.client_cert_error ||
         set_item(d, n.client_cert_error, optional(t.client_cert_error)) == 0) &&
        set_item(d, n.tls_version, number(t.version, version_value_, version_obj_)) == 0 &&
        set_item(d, n.cipher_suite, number(t.cipher_suite, suite_value_, suite_obj_)) == 0 &&
        (t.server_name.empty() || set_item(d, n.server_name, str(t.server_name)) == 0);
    if (!ok) return nullptr;
    PyObject* ext = PyDict_New();
    if (ext && PyDict_SetItem(ext, n.tls, d) < 0) Py_CLEAR(ext);
    return ext;
}

bool scope_builder::make_template() {
    const auto& n = py::N();
    Py_XSETREF(asgi_, PyDict_New());
    if (!asgi_ || PyDict_SetItem(asgi_, n.version, n.v_asgi_version) < 0 ||
        PyDict_SetItem(asgi_, n.spec_version, n.v_spec_version) < 0)
        return false;
    // Every key, in the order build() fills them; None where each request sets its own value.
    PyObject* items[][2] = {
        {n.type, n.http},
        {n.asgi, Py_None},
        {n.http_version, n.v_http_1_1},
        {n.method, Py_None},
        {n.scheme, n.v_scheme_http},
        {n.path, Py_None},
        {n.raw_path, Py_None},
        {n.query_string, n.v_empty_bytes},
        {n.root_path, root_path_ ? root_path_ : n.v_empty_str},
        {n.headers, Py_None},
        {n.client, Py_None},
        {n.server, Py_None},
        {n.state, Py_None},
    };
    template_ = _PyDict_NewPresized(std::size(items));
    if (!template_) return false;
    for (auto& [k, v] : items) {
        if (k == n.state && !state_) continue;
        if (PyDict_SetItem(template_, k, v) < 0) return false;
    }
    return true;
}

PyObject* scope_builder::build(const http::exchange& ex) {
    const auto& n = py::N();
    if (!template_ && !make_template()) {
        Py_CLEAR(template_);
        return nullptr;
    }
    // PyDict_Copy of a dense dict clones its key table in one go; the sets below then replace
    // values in place (no insertion, no resize).
    py::ref scope(PyDict_Copy(template_));
    if (!scope) return nullptr;
    PyObject* d = scope.get();
    bool unix_server = ex.server.known && ex.server.port < 0;
    bool ok = set_item(d, n.asgi, PyDict_Copy(asgi_)) == 0 &&
              (ex.http_version == "1.1" || PyDict_SetItem(d, n.http_version, n.v_http_1_0) == 0) &&
              set_item(d, n.method, method(ex.method)) == 0 && add_path(d, ex.target) &&
              (ex.scheme == "http" || PyDict_SetItem(d, n.scheme, scheme(ex.scheme)) == 0) &&
              set_item(d, n.headers, headers(ex)) == 0 &&
              set_item(d, n.client, endpoint(&ex.client, false)) == 0 &&
              set_item(d, n.server, server_endpoint(ex.server, unix_server)) == 0 &&
              (!state_ || set_item(d, n.state, PyDict_Copy(state_)) == 0) &&
              (!ex.tls || set_item(d, n.extensions, extensions(*ex.tls)) == 0);
    return ok ? scope.release() : nullptr;
}

PyObject* scope_builder::build_websocket(const http::exchange& ex) {
    const auto& n = py::N();
    py::ref scope(build(ex));
    if (!scope) return nullptr;
    PyObject* d = scope.get();
    // http -> ws, https -> wss; a trusted proxy may have named ws or wss already.
    PyObject* scheme = ex.scheme == "https" || ex.scheme == "wss" ? n.v_scheme_wss : n.v_scheme_ws;
    py::ref subprotocols(PyList_New(static_cast<Py_ssize_t>(ex.ws_subprotocols.size())));
    if (!subprotocols) return nullptr;
    for (size_t i = 0; i < ex.ws_subprotocols.size(); ++i) {
        PyObject* p = py::str(ex.ws_subprotocols[i]);  // tokens: ASCII (checked by the engine)
        if (!p) return nullptr;
        PyList_SET_ITEM(subprotocols.get(), static_cast<Py_ssize_t>(i), p);
    }
    PyObject* ext = PyDict_GetItemWithError(d, n.extensions);  // borrowed: the TLS one, if any
    if (!ext && PyErr_Occurred()) return nullptr;
    py::ref extensions(ext ? Py_NewRef(ext) : PyDict_New());
    py::ref empty(PyDict_New());
    if (!extensions || !empty || PyDict_SetItem(extensions.get(), n.v_ws_response, empty.get()) < 0)
        return nullptr;
    const bool ok = PyDict_DelItem(d, n.method) == 0 &&
                    PyDict_SetItem(d, n.type, n.v_websocket) == 0 &&
                    PyDict_SetItem(d, n.scheme, scheme) == 0 &&
                    PyDict_SetItem(d, n.subprotocols, subprotocols.get()) == 0 &&
                    PyDict_SetItem(d, n.extensions, extensions.get()) == 0;
    return ok ? scope.release() : nullptr;
}

}  // namespace coachwhip::bridge::asgi
