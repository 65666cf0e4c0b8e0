#include "bridge/asgi/awaitable.hpp"

namespace coachwhip::bridge::asgi {
namespace {

struct ready_object {
    PyObject_HEAD PyObject* value;  // owned; nullptr once consumed
};

PyTypeObject* g_ready_type = nullptr;  // immutable after module init
// The one awaitable for None (what every accepted send() returns): with no value to hand over
// it has no state, so all awaits can share it and no object is allocated per send().
PyObject* g_ready_none = nullptr;

void ready_dealloc(PyObject* self) {
    PyTypeObject* type = Py_TYPE(self);
    Py_XDECREF(reinterpret_cast<ready_object*>(self)->value);
    PyObject_Free(self);
    Py_DECREF(type);  // heap type: each instance holds a reference to it
}

PyObject* ready_await(PyObject* self) { return Py_NewRef(self); }

PySendResult ready_send(PyObject* self, PyObject*, PyObject** result) {
    auto* r = reinterpret_cast<ready_object*>(self);
    *result = r->value ? r->value : Py_NewRef(Py_None);
    r->value = nullptr;
    return PYGEN_RETURN;
}

PyObject* ready_next(PyObject* self) {
    auto* r = reinterpret_cast<ready_object*>(self);
    PyObject* v = r->value ? r->value : Py_NewRef(Py_None);
    r->value = nullptr;
    // StopIteration(value): wrap in a tuple so a tuple or exception value is not unpacked.
    PyObject* args = PyTuple_Pack(1, v);
    Py_DECREF(v);
    if (args) {
        PyErr_SetObject(PyExc_StopIteration, args);
        Py_DECREF(args);
    }
    return nullptr;
}

PyType_Slot ready_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(ready_dealloc)},
    {Py_am_await, reinterpret_cast<void*>(ready_await)},
    {Py_am_send, reinterpret_cast<void*>(ready_send)},
    {Py_tp_iter, reinterpret_cast<void*>(PyObject_SelfIter)},
    {Py_tp_iternext, reinterpret_cast<void*>(ready_next)},
    {Py_tp_doc, const_cast<char*>("An awaitable that is already complete (internal).")},
    {0, nullptr}};

PyType_Spec ready_spec = {"coachwhip._core._Ready", sizeof(ready_object), 0, Py_TPFLAGS_DEFAULT,
                          ready_slots};

}  // namespace

bool init_ready_type(PyObject* module) {
    g_ready_type = reinterpret_cast<PyTypeObject*>(
        PyType_FromModuleAndSpec(module, &ready_spec, nullptr));  // kept for the process's life
    if (!g_ready_type) return false;
    auto* none = PyObject_New(ready_object, g_ready_type);  // kept for the process's life
    if (!none) return false;
    none->value = nullptr;  // completes with None, however often it is awaited
    g_ready_none = reinterpret_cast<PyObject*>(none);
    return true;
}

PyObject* ready(PyObject* value) {
    if (!value) return nullptr;
    if (value == Py_None) {
        Py_DECREF(value);
        return Py_NewRef(g_ready_none);
    }
    auto* r = PyObject_New(ready_object, g_ready_type);
    if (!r) {
        Py_DECREF(value);
        return nullptr;
    }
    r->value = value;
    return reinterpret_cast<PyObject*>(r);
}

}  // namespace coachwhip::bridge::asgi
