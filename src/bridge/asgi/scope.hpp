// coachwhip::bridge::asgi — building the ASGI `http` scope (ASGI HTTP spec 2.4) from an exchange.
//
// One pass over the request: method and header names come from small caches of immutable
// Python objects (the same few dozen names arrive on every request), values are new bytes. The
// dict itself is a copy of a template that holds every key in its final order and the values
// that do not change between requests, so each request replaces values in place instead of
// inserting keys into an empty dict (callgrind: ~1k instructions less per request).
//
// A websocket scope lives as long as its connection, so it is built for size: its template is
// a split-table dict (copies share its keys), and its path and low-cardinality header tuples
// are shared between connections (scope.cpp: split_template, headers, add_path).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "bridge/py.hpp"
#include "http/exchange.hpp"

namespace coachwhip::bridge::asgi {

// Per-server caches and settings used to build scopes. Owned by the Server object.
class scope_builder {
  public:
    scope_builder() = default;
    ~scope_builder();
    scope_builder(const scope_builder&) = delete;
    scope_builder& operator=(const scope_builder&) = delete;

    // `root_path`: str; `state`: the lifespan state dict or nullptr (borrowed, kept alive by
    // the Server).
    void configure(PyObject* root_path, PyObject* state) {
        root_path_ = root_path;
        state_ = state;
        Py_CLEAR(template_);
        Py_CLEAR(ws_template_);
        clear_paths();  // the cached paths include the root path
    }

    // A new `http` scope dict, or nullptr with an exception set.
    PyObject* build(const http::exchange& ex);
    // A new `websocket` scope (ASGI WebSocket spec 2.4) for a handshake's exchange: the http
    // scope's keys without `method`, scheme ws/wss, `subprotocols`, and the
    // websocket.http.response extension advertised; or nullptr with an exception set. An
    // ordinary dict, whose keys table it shares with the other websocket scopes (split table).
    PyObject* build_websocket(const http::exchange& ex);
    // A new {"type": "websocket.receive", "text" or "bytes": None} dict for the caller to fill
    // (its keys table shared, as build_websocket's), or nullptr with an exception set.
    PyObject* receive_message(bool text);
    // The method as a str, shared by every request that uses it (a new reference; the access
    // log uses it too).
    PyObject* method(std::string_view m);

  private:
    // Heterogeneous lookup: the caches are searched with views into the request, no copies.
    struct text_hash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };
    using cache = std::unordered_map<std::string, PyObject*, text_hash, std::equal_to<>>;

    bool make_template();
    bool make_ws_template();
    void clear_paths();
    // The values every scope sets (all but type, method, scheme, and the websocket keys); `ws`:
    // for a websocket scope, whose path and low-cardinality headers are shared objects.
    bool fill(PyObject* d, const http::exchange& ex, bool ws);
    PyObject* extensions(const tls::info& t);
    // scope["extensions"] of an HTTP/2 or TLS request: "tls", "http.response.trailers" (HTTP/2).
    PyObject* extensions(const http::exchange& ex);
    static PyObject* scheme(std::string_view s);
    PyObject* header_name(std::string_view raw);
    PyObject* headers(const http::exchange& ex, bool ws);
    PyObject* header_pair(const http::field& f);
    PyObject* endpoint(const http::endpoint* ep, bool unix_server);
    PyObject* server_endpoint(const http::endpoint& ep, bool unix_server);
    bool add_path(PyObject* scope, std::string_view target, bool ws);

    PyObject* host(const std::string& h);

    PyObject* root_path_ = nullptr;      // borrowed
    PyObject* state_ = nullptr;          // borrowed
    PyObject* template_ = nullptr;       // owned; built on first use (after configure)
    PyObject* ws_template_ = nullptr;    // owned; the websocket scope's split-table template
    PyObject* ws_asgi_ = nullptr;        // owned; its `asgi` (split table), copied per scope
    PyObject* ws_extensions_ = nullptr;  // owned; {"websocket.http.response": None} (split)
    PyObject* text_message_ = nullptr;   // owned; receive_message's split-table templates
    PyObject* bytes_message_ = nullptr;  // owned
    PyObject* asgi_ = nullptr;           // owned; {"version": "3.0", "spec_version": "2.4"}, copied
    // The server address is the same for (nearly) every request: its tuple is built once.
    // Tuples are immutable, so sharing one between scopes is safe.
    std::string server_host_;
    int server_port_ = -1;
    bool server_unix_ = false;
    PyObject* server_tuple_ = nullptr;  // owned
    cache hosts_;                       // client host -> str, owned
    cache methods_;                     // owned values
    cache names_;                       // raw name -> lowercased bytes, owned
    cache pairs_;  // websocket scopes: raw name + '\0' + value -> (name, value) tuple, owned
    cache paths_;  // websocket scopes: raw path -> (path, raw_path) tuple, owned
    // TLS: the extension dict is a copy of a template with its keys in order; the served
    // certificate (the same PEM for every connection) is decoded to a str once.
    PyObject* tls_template_ = nullptr;                // owned
    std::shared_ptr<const std::string> cert_source_;  // what cert_str_ was made from
    PyObject* cert_str_ = nullptr;                    // owned
    uint16_t version_value_ = 0, suite_value_ = 0;    // what the two objects below hold
    PyObject* version_obj_ = nullptr;                 // owned
    PyObject* suite_obj_ = nullptr;                   // owned
};

// Percent-decodes `in` (RFC 3986 §2.1) into `out`; invalid escapes are kept literally.
void percent_decode(std::string_view in, std::string& out);

}  // namespace coachwhip::bridge::asgi
