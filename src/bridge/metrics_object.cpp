// coachwhip._core.MetricsRegion: the supervisor's handle on the shared metrics memory
// (server::metrics::region). It creates the region, hands its fd to every worker it starts
// (each worker's Server counts into its own slot), folds the slot of a worker that exited, and
// counts worker starts and exits. Rendering is the same code the workers' /-/metrics runs.
#include <new>
#include <string>

#include "bridge/py.hpp"
#include "server/metrics.hpp"

namespace coachwhip::bridge {
namespace {

namespace metrics = server::metrics;

struct metrics_object {
    PyObject_HEAD metrics::region region;  // constructed in place by tp_new
};

metrics::region* region_of(PyObject* self) {
    auto* r = &reinterpret_cast<metrics_object*>(self)->region;
    if (!r->valid()) PyErr_SetString(PyExc_RuntimeError, "MetricsRegion is not initialised");
    return r->valid() ? r : nullptr;
}

PyObject* metrics_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
    PyObject* self = PyType_GenericNew(type, args, kwds);
    if (self) new (&reinterpret_cast<metrics_object*>(self)->region) metrics::region();
    return self;
}

int metrics_init(PyObject* self, PyObject* args, PyObject* kwds) {
    static const char* kwlist[] = {"slots", nullptr};
    Py_ssize_t slots = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n", const_cast<char**>(kwlist), &slots))
        return -1;
    if (slots < 1 || slots > 4096) {
        PyErr_SetString(PyExc_ValueError, "slots must be within 1..4096");
        return -1;
    }
    auto* obj = reinterpret_cast<metrics_object*>(self);
    if (core::error e = metrics::region::create(static_cast<size_t>(slots), obj->region)) {
        PyErr_SetString(PyExc_OSError, std::string(e.reason).c_str());
        return -1;
    }
    return 0;
}

void metrics_dealloc(PyObject* self) {
    reinterpret_cast<metrics_object*>(self)->region.~region();
    PyTypeObject* type = Py_TYPE(self);
    type->tp_free(self);
    Py_DECREF(type);
}

// index(arg, limit): a Python int within 0..limit-1, or -1 with an exception set.
Py_ssize_t index(PyObject* arg, size_t limit, const char* what) {
    Py_ssize_t i = PyLong_AsSsize_t(arg);
    if (i == -1 && PyErr_Occurred()) return -1;
    if (i < 0 || static_cast<size_t>(i) >= limit) {
        PyErr_Format(PyExc_ValueError, "%s out of range", what);
        return -1;
    }
    return i;
}

PyObject* metrics_fold(PyObject* self, PyObject* arg) {
    metrics::region* r = region_of(self);
    Py_ssize_t i = r ? index(arg, r->slots(), "slot") : -1;
    if (i < 0) return nullptr;
    r->fold(static_cast<size_t>(i));
    Py_RETURN_NONE;
}

PyObject* metrics_count_start(PyObject* self, PyObject* arg) {
    metrics::region* r = region_of(self);
    Py_ssize_t i = r ? index(arg, metrics::k_start_n, "start reason") : -1;
    if (i < 0) return nullptr;
    r->count_start(static_cast<size_t>(i));
    Py_RETURN_NONE;
}

PyObject* metrics_count_exit(PyObject* self, PyObject* arg) {
    metrics::region* r = region_of(self);
    Py_ssize_t i = r ? index(arg, metrics::k_exit_n, "exit reason") : -1;
    if (i < 0) return nullptr;
    r->count_exit(static_cast<size_t>(i));
    Py_RETURN_NONE;
}

PyObject* metrics_render(PyObject* self, PyObject*) {
    metrics::region* r = region_of(self);
    if (!r) return nullptr;
    std::string text = r->render();
    return PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "strict");
}

PyObject* metrics_get_fd(PyObject* self, void*) {
    metrics::region* r = region_of(self);
    return r ? PyLong_FromLong(r->fd()) : nullptr;
}

PyObject* metrics_get_slots(PyObject* self, void*) {
    metrics::region* r = region_of(self);
    return r ? PyLong_FromSize_t(r->slots()) : nullptr;
}

PyMethodDef metrics_methods[] = {
    {"fold", metrics_fold, METH_O, "fold(slot): keep an exited worker's counts, free its slot."},
    {"count_start", metrics_count_start, METH_O, "count_start(reason_index)"},
    {"count_exit", metrics_count_exit, METH_O, "count_exit(reason_index)"},
    {"render", metrics_render, METH_NOARGS, "The Prometheus text of the whole region."},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef metrics_getset[] = {
    {"fd", metrics_get_fd, nullptr, "The memfd to pass to workers (close-on-exec).", nullptr},
    {"slots", metrics_get_slots, nullptr, "Worker slots.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyType_Slot metrics_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(metrics_new)},
    {Py_tp_init, reinterpret_cast<void*>(metrics_init)},
    {Py_tp_dealloc, reinterpret_cast<void*>(metrics_dealloc)},
    {Py_tp_methods, metrics_methods},
    {Py_tp_getset, metrics_getset},
    {Py_tp_doc, const_cast<char*>("MetricsRegion(slots): shared worker counters (internal).")},
    {0, nullptr}};

PyType_Spec metrics_spec = {"coachwhip._core.MetricsRegion", sizeof(metrics_object), 0,
                            Py_TPFLAGS_DEFAULT, metrics_slots};

}  // namespace

bool init_metrics_type(PyObject* module) {
    PyObject* type = PyType_FromModuleAndSpec(module, &metrics_spec, nullptr);
    if (!type) return false;
    int r = PyModule_AddObjectRef(module, "MetricsRegion", type);
    Py_DECREF(type);
    if (r != 0) return false;
    py::ref starts(PyTuple_New(metrics::k_start_n)), exits(PyTuple_New(metrics::k_exit_n));
    if (!starts || !exits) return false;
    for (size_t i = 0; i < metrics::k_start_n; ++i) {
        auto s = metrics::k_start_reasons[i];
        PyTuple_SET_ITEM(starts.get(), i, PyUnicode_FromStringAndSize(s.data(), s.size()));
    }
    for (size_t i = 0; i < metrics::k_exit_n; ++i) {
        auto s = metrics::k_exit_reasons[i];
        PyTuple_SET_ITEM(exits.get(), i, PyUnicode_FromStringAndSize(s.data(), s.size()));
    }
    return PyModule_AddObjectRef(module, "WORKER_START_REASONS", starts.get()) == 0 &&
           PyModule_AddObjectRef(module, "WORKER_EXIT_REASONS", exits.get()) == 0;
}

}  // namespace coachwhip::bridge
