// coachwhip._core: module initialisation.
#include "bridge/asgi/awaitable.hpp"
#include "bridge/asgi/runner.hpp"
#include "bridge/objects.hpp"
#include "proxy/forwarded.hpp"

namespace coachwhip::bridge {
namespace {

// check_forwarded_allow_ips(spec, option) -> None, or the message saying what is wrong. The
// configuration checks a value with the engine's own parser before anything starts.
PyObject* check_forwarded_allow_ips(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "check_forwarded_allow_ips(spec: str, option: str)");
        return nullptr;
    }
    Py_ssize_t n = 0, m = 0;
    const char* spec = PyUnicode_AsUTF8AndSize(args[0], &n);
    const char* option = spec ? PyUnicode_AsUTF8AndSize(args[1], &m) : nullptr;
    if (!option) return nullptr;
    auto r = proxy::parse_trusted_networks({spec, static_cast<size_t>(n)},
                                           {option, static_cast<size_t>(m)});
    if (r.error.empty()) Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(r.error.data(), static_cast<Py_ssize_t>(r.error.size()), "replace");
}

PyMethodDef module_methods[] = {
    {"check_forwarded_allow_ips", reinterpret_cast<PyCFunction>(check_forwarded_allow_ips),
     METH_FASTCALL, "None if the --forwarded-allow-ips value is valid, else what is wrong."},
    {nullptr, nullptr, 0, nullptr}};

int module_exec(PyObject* m) {
    if (!py::init_names() || !asgi::init_ready_type(m) || !asgi::init_runner_type(m) ||
        !init_exchange_type(m) || !init_server_type(m) || !init_metrics_type(m))
        return -1;
    if (PyModule_AddObjectRef(m, "ClientDisconnected", client_disconnected_error) < 0) return -1;
    return PyModule_AddStringConstant(m, "ENGINE", "coachwhip http1 (epoll)");
}

PyModuleDef_Slot slots[] = {{Py_mod_exec, reinterpret_cast<void*>(module_exec)}, {0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT,
                          "coachwhip._core",
                          "coachwhip's C++ engine and ASGI bridge.",
                          0,
                          module_methods,
                          slots,
                          nullptr,
                          nullptr,
                          nullptr};

}  // namespace
}  // namespace coachwhip::bridge

PyMODINIT_FUNC PyInit__core() { return PyModuleDef_Init(&coachwhip::bridge::module_def); }
