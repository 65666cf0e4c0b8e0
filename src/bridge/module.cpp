// coachwhip._core: module initialisation.
#include "bridge/asgi/awaitable.hpp"
#include "bridge/asgi/runner.hpp"
#include "bridge/objects.hpp"
#include "bridge/wsgi/call.hpp"

namespace coachwhip::bridge {
namespace {

int module_exec(PyObject* m) {
    if (!py::init_names() || !asgi::init_ready_type(m) || !asgi::init_runner_type(m) ||
        !init_exchange_type(m) || !init_server_type(m) || !init_metrics_type(m) ||
        !init_tls_type(m) || !wsgi::init_input_type(m))
        return -1;
    if (PyModule_AddObjectRef(m, "ClientDisconnected", client_disconnected_error) < 0) return -1;
    return PyModule_AddStringConstant(m, "ENGINE", "coachwhip http1 (epoll)");
}

PyModuleDef_Slot slots[] = {{Py_mod_exec, reinterpret_cast<void*>(module_exec)}, {0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT,
                          "coachwhip._core",
                          "coachwhip's C++ engine and its ASGI and WSGI bridges.",
                          0,
                          nullptr,
                          slots,
                          nullptr,
                          nullptr,
                          nullptr};

}  // namespace
}  // namespace coachwhip::bridge

PyMODINIT_FUNC PyInit__core() { return PyModuleDef_Init(&coachwhip::bridge::module_def); }
