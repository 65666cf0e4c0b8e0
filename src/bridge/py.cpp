#include "bridge/py.hpp"

namespace coachwhip::bridge::py {
namespace {
names g_names;  // immutable after module init: interned, immortal for the process's life
}

const names& N() { return g_names; }

bool init_names() {
    names& n = g_names;
#define COACHWHIP_INIT(x) \
    if (!(n.x = PyUnicode_InternFromString(#x))) return false;
    COACHWHIP_NAMES(COACHWHIP_INIT)
#undef COACHWHIP_INIT
    struct {
        PyObject** slot;
        const char* text;
    } values[] = {
        {&n.v_asgi_version, "3.0"},
        {&n.v_spec_version, "2.4"},
        {&n.v_http_request, "http.request"},
        {&n.v_http_disconnect, "http.disconnect"},
        {&n.v_response_start, "http.response.start"},
        {&n.v_response_body, "http.response.body"},
        {&n.v_response_trailers, "http.response.trailers"},
        {&n.v_http_2, "2"},
        {&n.v_http_1_1, "1.1"},
        {&n.v_http_1_0, "1.0"},
        {&n.v_scheme_http, "http"},
        {&n.v_scheme_https, "https"},
        {&n.v_scheme_ws, "ws"},
        {&n.v_scheme_wss, "wss"},
        {&n.v_empty_str, ""},
        {&n.v_websocket, "websocket"},
        {&n.v_ws_connect, "websocket.connect"},
        {&n.v_ws_receive, "websocket.receive"},
        {&n.v_ws_disconnect, "websocket.disconnect"},
        {&n.v_ws_accept, "websocket.accept"},
        {&n.v_ws_send, "websocket.send"},
        {&n.v_ws_close, "websocket.close"},
        {&n.v_ws_response, "websocket.http.response"},
        {&n.v_ws_response_start, "websocket.http.response.start"},
        {&n.v_ws_response_body, "websocket.http.response.body"},
    };
    for (auto& v : values)
        if (!(*v.slot = PyUnicode_InternFromString(v.text))) return false;
    n.v_empty_bytes = PyBytes_FromStringAndSize(nullptr, 0);
    return n.v_empty_bytes != nullptr;
}

}  // namespace coachwhip::bridge::py
