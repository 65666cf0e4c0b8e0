#include "bridge/asgi/scope.hpp"

#include <iterator>
#include <utility>
#include <vector>

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

// Request headers whose values repeat from one connection to the next (the same browser, the
// same proxy, the same host): a websocket scope shares their (name, value) tuples, which an
// idle connection keeps for its whole life (wsload's 5 handshake headers: 448 bytes less per
// connection, more for a browser's). Safe: tuples and bytes are immutable, so sharing is
// invisible to apps (the `headers` list itself stays per scope). Junk values can fill the
// cache (bounded: cache_limit entries of at most shared_value_limit bytes, ~350 KiB per
// worker); the saving is then lost for new values, never made wrong. Names as lowercase ASCII;
// compared case-insensitively with the raw name.
constexpr std::string_view low_cardinality_names[] = {
    "host",   "upgrade",    "connection",      "sec-websocket-version", "sec-websocket-extensions",
    "origin", "user-agent", "accept-encoding", "accept-language",       "cache-control",
    "pragma", "accept",
};
constexpr size_t shared_value_limit = 256;  // longer values (and paths) are not cached

bool is_low_cardinality(std::string_view raw) {
    for (std::string_view n : low_cardinality_names) {
        if (n.size() != raw.size()) continue;
        bool same = true;
        for (size_t i = 0; i < n.size() && same; ++i) {
            char c = raw[i];
            same = ((c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c) == n[i];
        }
        if (same) return true;
    }
    return false;
}

// A new dict of `items` (str keys, in order) whose copies (PyDict_Copy) share its keys table,
// with room for `spare_slots` more keys; or nullptr with an exception set.
//
// It is a "split table", the layout CPython gives instances' __dict__s: the dict is the
// __dict__ of an instance of a private class, whose keys CPython shares between instances. A
// copy shares the keys too and allocates only a dict object and its values. Setting a key the
// template has keeps that layout. A key an app adds goes into the shared keys while they have
// spare room (every copy then has a slot for it, empty unless set). Past that, the copy that
// adds one becomes an ordinary ("combined") dict of its own, ~200 bytes larger than a copy of
// a presized dict (the http scope's).
//
// The room: CPython 3.11-3.13 give a class's shared keys 30 slots, and every new instance
// takes one of the free ones away (while more than one is left). A copy's values array has a
// slot for each key and each free one: as counted when it is copied (3.11, 3.12), or when the
// template's instance was made (3.13). So the keys are set on a first instance, more
// instances use up the room but `spare_slots`, and the template is the instance made last.
//
// This relies on CPython's key-sharing dicts (PEP 412), an implementation detail. Should a
// version stop sharing keys, or size them otherwise, a copy is an ordinary dict with the same
// items, or a larger split one: that costs memory, never correctness.
PyObject* split_template(const std::vector<std::pair<PyObject*, PyObject*>>& items,
                         int spare_slots) {
    constexpr int shared_keys_max = 30;  // CPython's SHARED_KEYS_MAX_SIZE (3.11-3.13)
    py::ref ns(PyDict_New());
    py::ref cls(ns ? PyObject_CallFunction(reinterpret_cast<PyObject*>(&PyType_Type), "s()O",
                                           "coachwhip_keys", ns.get())
                   : nullptr);
    if (!cls) return nullptr;
    auto make = [&]() -> PyObject* {
        py::ref inst(PyObject_CallNoArgs(cls.get()));
        for (auto& [k, v] : items)
            if (!inst || PyObject_SetAttr(inst.get(), k, v) < 0) return nullptr;
        return inst.release();
    };
    py::ref first(make());  // adds the keys: 30 - 1 - items.size() slots left
    if (!first) return nullptr;
    const int instances = shared_keys_max - 2 - static_cast<int>(items.size()) - spare_slots;
    for (int i = 0; i < instances; ++i) {
        py::ref spare(PyObject_CallNoArgs(cls.get()));
        if (!spare) return nullptr;
    }
    py::ref inst(make());  // the last one takes one more
    return inst ? PyObject_GenericGetDict(inst.get(), nullptr) : nullptr;
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
    for (auto& [k, v] : pairs_)
        Py_DECREF(v);
    for (auto& [k, v] : paths_)
        Py_DECREF(v);
    Py_XDECREF(ws_template_);
    Py_XDECREF(ws_asgi_);
    Py_XDECREF(ws_extensions_);
    Py_XDECREF(text_message_);
    Py_XDECREF(bytes_message_);
    Py_XDECREF(server_tuple_);
    Py_XDECREF(tls_template_);
    Py_XDECREF(cert_str_);
    Py_XDECREF(version_obj_);
    Py_XDECREF(suite_obj_);
    Py_XDECREF(template_);
    Py_XDECREF(asgi_);
}

void scope_builder::clear_paths() {
    for (auto& [k, v] : paths_)
        Py_DECREF(v);
    paths_.clear();
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

PyObject* scope_builder::header_pair(const http::field& f) {
    std::string key;
    key.reserve(f.name.size() + 1 + f.value.size());
    key.append(f.name).push_back('\0');
    key.append(f.value);
    auto it = pairs_.find(key);
    if (it != pairs_.end()) return Py_NewRef(it->second);
    py::ref name(header_name(f.name));
    py::ref value(name ? py::bytes(f.value) : nullptr);
    PyObject* pair = value ? PyTuple_Pack(2, name.get(), value.get()) : nullptr;
    if (pair && pairs_.size() < cache_limit) pairs_.emplace(std::move(key), Py_NewRef(pair));
    return pair;
}

PyObject* scope_builder::headers(const http::exchange& ex, bool ws) {
    PyObject* list = PyList_New(static_cast<Py_ssize_t>(ex.headers.size()));
    if (!list) return nullptr;
    Py_ssize_t i = 0;
    for (const auto& f : ex.headers) {
        if (ws && f.value.size() <= shared_value_limit && is_low_cardinality(f.name)) {
            PyObject* pair = header_pair(f);
            if (!pair) {
                Py_DECREF(list);
                return nullptr;
            }
            PyList_SET_ITEM(list, i++, pair);
            continue;
        }
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

bool scope_builder::add_path(PyObject* scope, std::string_view target, bool ws) {
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

    // A websocket endpoint is one of a few paths, and an idle connection keeps its scope: its
    // two objects are shared (112 bytes a connection). Both are immutable, so apps cannot tell.
    // Bounded like the other caches; paths past the limit are built per scope as before.
    const bool share = ws && raw.size() <= shared_value_limit;
    if (share) {
        auto it = paths_.find(raw);
        if (it != paths_.end())
            return PyDict_SetItem(scope, n.path, PyTuple_GET_ITEM(it->second, 0)) == 0 &&
                   PyDict_SetItem(scope, n.raw_path, PyTuple_GET_ITEM(it->second, 1)) == 0 &&
                   (query.empty() || set_item(scope, n.query_string, py::bytes(query)) == 0);
    }

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
    if (share && paths_.size() < cache_limit) {
        PyObject* both = PyTuple_Pack(2, path.get(), raw_path.get());
        if (!both) return false;
        paths_.emplace(std::string(raw), both);
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

PyObject* scope_builder::extensions(const http::exchange& ex) {
    py::ref ext(ex.tls ? extensions(*ex.tls) : PyDict_New());
    if (!ext || ex.http_version != "2") return ext.release();
    py::ref empty(PyDict_New());
    if (!empty || PyDict_SetItem(ext.get(), py::N().v_response_trailers, empty.get()) < 0)
        return nullptr;
    return ext.release();
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

// The websocket scope's own template: its keys in their final order (no `method`; the
// `subprotocols` and `extensions` in place), as a split table (see split_template). An idle
// WebSocket keeps its scope for the connection's life: a copy of this is a dict object and its
// values (256 bytes on CPython 3.11), where a copy of the presized http template has a
// 24-bytes-an-entry keys table of its own, which at 568 bytes even goes to glibc (640 in all).
bool scope_builder::make_ws_template() {
    const auto& n = py::N();
    std::vector<std::pair<PyObject*, PyObject*>> items = {
        {n.type, n.v_websocket},
        {n.asgi, Py_None},
        {n.http_version, n.v_http_1_1},
        {n.scheme, n.v_scheme_ws},
        {n.path, Py_None},
        {n.raw_path, Py_None},
        {n.query_string, n.v_empty_bytes},
        {n.root_path, root_path_ ? root_path_ : n.v_empty_str},
        {n.headers, Py_None},
        {n.client, Py_None},
        {n.server, Py_None},
        {n.state, Py_None},
        {n.subprotocols, Py_None},
        {n.extensions, Py_None},
    };
    if (!state_) items.erase(items.begin() + 11);
    // The two small dicts every websocket scope has a copy of: split tables too, 96 bytes a
    // copy instead of 192 (a keys table of 8 slots each). Still a fresh dict per scope, so an
    // app that writes into its own changes no other connection's.
    if (!ws_asgi_)
        ws_asgi_ =
            split_template({{n.version, n.v_asgi_version}, {n.spec_version, n.v_spec_version}}, 1);
    if (!ws_extensions_) ws_extensions_ = split_template({{n.v_ws_response, Py_None}}, 1);
    if (!ws_asgi_ || !ws_extensions_) return false;
    // 7 spare slots: enough for the keys Starlette's routing adds (measured with 6,000 idle
    // Starlette WebSockets: they stay split), while an app that adds none pays for few.
    ws_template_ = split_template(items, 7);
    return ws_template_ != nullptr;
}

// An app that keeps the last message while it awaits the next (as a plain `message =
// await receive()` loop does) keeps this dict while idle: as a split-table copy (see
// split_template) it is 96 bytes instead of 192.
PyObject* scope_builder::receive_message(bool text) {
    const auto& n = py::N();
    PyObject*& tmpl = text ? text_message_ : bytes_message_;
    if (!tmpl)
        tmpl = split_template({{n.type, n.v_ws_receive}, {text ? n.text : n.bytes, Py_None}}, 1);
    return tmpl ? PyDict_Copy(tmpl) : nullptr;
}

bool scope_builder::fill(PyObject* d, const http::exchange& ex, bool ws) {
    const auto& n = py::N();
    bool unix_server = ex.server.known && ex.server.port < 0;
    return set_item(d, n.asgi, PyDict_Copy(ws ? ws_asgi_ : asgi_)) == 0 &&
           (ex.http_version == "1.1" ||
            PyDict_SetItem(d, n.http_version, ex.http_version == "2" ? n.v_http_2 : n.v_http_1_0) ==
                0) &&
           add_path(d, ex.target, ws) && set_item(d, n.headers, headers(ex, ws)) == 0 &&
           set_item(d, n.client, endpoint(&ex.client, false)) == 0 &&
           set_item(d, n.server, server_endpoint(ex.server, unix_server)) == 0 &&
           (!state_ || set_item(d, n.state, PyDict_Copy(state_)) == 0) &&
           ((!ex.tls && ex.http_version != "2") || set_item(d, n.extensions, extensions(ex)) == 0);
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
    bool ok = set_item(d, n.method, method(ex.method)) == 0 && fill(d, ex, false) &&
              (ex.scheme == "http" || PyDict_SetItem(d, n.scheme, scheme(ex.scheme)) == 0);
    return ok ? scope.release() : nullptr;
}

PyObject* scope_builder::build_websocket(const http::exchange& ex) {
    const auto& n = py::N();
    if (!ws_template_ && !make_ws_template()) return nullptr;
    py::ref scope(PyDict_Copy(ws_template_));
    if (!scope || !fill(scope.get(), ex, true)) return nullptr;
    PyObject* d = scope.get();
    py::ref subprotocols(PyList_New(static_cast<Py_ssize_t>(ex.ws_subprotocols.size())));
    if (!subprotocols) return nullptr;
    for (size_t i = 0; i < ex.ws_subprotocols.size(); ++i) {
        PyObject* p = py::str(ex.ws_subprotocols[i]);  // tokens: ASCII (checked by the engine)
        if (!p) return nullptr;
        PyList_SET_ITEM(subprotocols.get(), static_cast<Py_ssize_t>(i), p);
    }
    // fill() set the TLS extension dict, if any; otherwise the template's None is still there.
    PyObject* ext = PyDict_GetItemWithError(d, n.extensions);  // borrowed
    if (!ext && PyErr_Occurred()) return nullptr;
    py::ref extensions(ext && ext != Py_None ? Py_NewRef(ext) : PyDict_Copy(ws_extensions_));
    py::ref empty(PyDict_New());
    if (!extensions || !empty || PyDict_SetItem(extensions.get(), n.v_ws_response, empty.get()) < 0)
        return nullptr;
    // http -> ws (the template's), https -> wss; a trusted proxy may have named ws or wss already.
    const bool secure = ex.scheme == "https" || ex.scheme == "wss";
    const bool ok = (!secure || PyDict_SetItem(d, n.scheme, n.v_scheme_wss) == 0) &&
                    PyDict_SetItem(d, n.subprotocols, subprotocols.get()) == 0 &&
                    PyDict_SetItem(d, n.extensions, extensions.get()) == 0;
    return ok ? scope.release() : nullptr;
}

}  // namespace coachwhip::bridge::asgi
