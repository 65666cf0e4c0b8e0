#include "bridge/asgi/runner.hpp"

#include <cstdint>
#include <utility>

#include "bridge/objects.hpp"

namespace coachwhip::bridge::asgi {
namespace {

// After step_eagerly(): what the Task's own first step is handed instead of resuming the app.
enum class early_step : uint8_t {
    none,      // no eager step, or its outcome was handed over already
    yielded,   // the app is waiting: `early` is what it yielded (a future, or None for sleep(0))
    returned,  // the app finished (the exchange has been told)
    raised,    // the run ended with an exception that must reach the Task: `early` is it
};

struct runner_object {
    PyObject_HEAD PyObject* iter;  // the app's coroutine (or __await__ iterator); nullptr once done
    PyObject* exchange;            // the request's Exchange; nullptr once done
    PyObject* report;              // callable(exc): logs an app failure
    PyObject* early;               // see early_step; owned
    early_step early_kind;
    bool running;  // inside send()/throw(): cr_running
};

PyTypeObject* g_runner_type = nullptr;  // immutable after module init
PyObject* g_cancelled_error = nullptr;  // asyncio.CancelledError
PyObject* g_enter_task = nullptr;       // asyncio.tasks._enter_task
PyObject* g_leave_task = nullptr;       // asyncio.tasks._leave_task

runner_object* as_runner(PyObject* self) { return reinterpret_cast<runner_object*>(self); }

void finish_run(runner_object* r) {
    Py_CLEAR(r->iter);
    Py_CLEAR(r->exchange);
}

// The app's awaitable ended with `r` (PYGEN_RETURN: *result holds its value; PYGEN_ERROR: an
// exception is set). Reports to the exchange and turns the outcome into the runner's own.
PySendResult settle(runner_object* r, PySendResult status, PyObject** result) {
    if (status == PYGEN_NEXT) return PYGEN_NEXT;
    py::ref exchange = py::ref::borrow(r->exchange);
    finish_run(r);  // before reporting: the exchange may drop the Task, and with it us
    if (status == PYGEN_RETURN) {
        py::ref value(*result);
        *result = nullptr;
        py::ref done(finish_exchange(exchange.get(), value.get()));
        if (!done) return PYGEN_ERROR;
        *result = Py_NewRef(Py_None);
        return PYGEN_RETURN;
    }
    if (handle_app_failure(exchange.get(), r->report)) return PYGEN_ERROR;
    *result = Py_NewRef(Py_None);
    return PYGEN_RETURN;
}

// Drops what an eager step left for the Task (the Task was cancelled or closed first).
void forget_early(runner_object* r) {
    r->early_kind = early_step::none;
    Py_CLEAR(r->early);
}

// The Task's first step after an eager one: it gets what the app yielded (so the Task waits on
// that future exactly as if it had run the step), or how the run ended.
PySendResult hand_over_early(runner_object* r, PyObject** result) {
    early_step kind = std::exchange(r->early_kind, early_step::none);
    PyObject* early = std::exchange(r->early, nullptr);
    switch (kind) {
        case early_step::yielded: *result = early; return PYGEN_NEXT;
        case early_step::returned:
            Py_XDECREF(early);
            *result = Py_NewRef(Py_None);
            return PYGEN_RETURN;
        default:
            PyErr_Restore(Py_NewRef(reinterpret_cast<PyObject*>(Py_TYPE(early))), early,
                          PyException_GetTraceback(early));
            *result = nullptr;
            return PYGEN_ERROR;
    }
}

PySendResult runner_am_send(PyObject* self, PyObject* arg, PyObject** result) {
    runner_object* r = as_runner(self);
    if (r->early_kind != early_step::none) return hand_over_early(r, result);
    if (!r->iter) {
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse already awaited coroutine");
        *result = nullptr;
        return PYGEN_ERROR;
    }
    r->running = true;
    PySendResult status = PyIter_Send(r->iter, arg, result);
    r->running = false;
    return settle(r, status, result);
}

// Method-call form of a PySendResult: the yielded value, or StopIteration(value), or the error.
PyObject* as_method_result(PySendResult status, PyObject* result) {
    if (status == PYGEN_NEXT) return result;
    if (status == PYGEN_RETURN) {
        if (result == Py_None) {
            PyErr_SetNone(PyExc_StopIteration);
        } else {  // wrapped, so a tuple or an exception value is not unpacked
            py::ref args(PyTuple_Pack(1, result));
            if (args) PyErr_SetObject(PyExc_StopIteration, args.get());
        }
        Py_XDECREF(result);
    }
    return nullptr;
}

PyObject* runner_send(PyObject* self, PyObject* arg) {
    PyObject* result = nullptr;
    PySendResult status = runner_am_send(self, arg, &result);
    return as_method_result(status, result);
}

// Sets the exception throw(...) was called with.
void raise_thrown(PyObject* const* args, Py_ssize_t nargs) {
    if (nargs >= 1 && PyExceptionInstance_Check(args[0])) {
        PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(args[0])), args[0]);
    } else if (nargs >= 1) {
        PyErr_SetObject(args[0], nargs >= 2 ? args[1] : Py_None);
    } else {
        PyErr_SetString(PyExc_TypeError, "throw expected at least 1 argument, got 0");
    }
}

// throw(exc) / throw(type[, value[, tb]]): asyncio cancels a Task this way.
PyObject* runner_throw(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
    runner_object* r = as_runner(self);
    // Cancelled before its first step: the exception goes where the app waits (or, if the app
    // already finished, is raised here), as it would without the eager step. Task.cancel()
    // would also have cancelled the future the app waits on (its _fut_waiter); do that too, so
    // whoever registered it (our receive(), an asyncio.Event) sees it cancelled.
    if (r->early_kind == early_step::yielded && nargs >= 1 &&
        PyErr_GivenExceptionMatches(args[0], g_cancelled_error) &&
        PyObject_HasAttrString(r->early, "_asyncio_future_blocking")) {
        py::ref cancelled(PyObject_CallMethod(r->early, "cancel", nullptr));
        if (!cancelled) PyErr_WriteUnraisable(r->early);
    }
    forget_early(r);
    if (!r->iter) {  // finished: raise it here, as a finished coroutine does
        raise_thrown(args, nargs);
        return nullptr;
    }
    py::ref method(PyObject_GetAttrString(r->iter, "throw"));
    if (!method) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return nullptr;
        // An __await__ iterator without throw(): as with `await`, the exception is raised
        // where the app awaits, so the app fails with it.
        PyErr_Clear();
        raise_thrown(args, nargs);
        PyObject* none = nullptr;
        return as_method_result(settle(r, PYGEN_ERROR, &none), none);
    }
    r->running = true;
    PyObject* yielded =
        PyObject_Vectorcall(method.get(), args, static_cast<size_t>(nargs), nullptr);
    r->running = false;
    PyObject* result = yielded;
    PySendResult status = PYGEN_NEXT;
    if (!yielded) {
        status = PYGEN_ERROR;
        if (PyErr_ExceptionMatches(PyExc_StopIteration)) {  // the app finished
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            result = value ? PyObject_GetAttrString(value, "value") : Py_NewRef(Py_None);
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
            if (!result) return nullptr;
            status = PYGEN_RETURN;
        }
    }
    status = settle(r, status, &result);
    return as_method_result(status, result);
}

PyObject* runner_close(PyObject* self, PyObject*) {
    runner_object* r = as_runner(self);
    forget_early(r);
    if (!r->iter) Py_RETURN_NONE;
    py::ref closed(PyObject_CallMethod(r->iter, "close", nullptr));
    py::ref exchange = py::ref::borrow(r->exchange);
    finish_run(r);
    py::ref failed(fail_exchange(exchange.get()));  // the response will not be completed
    if (!failed) PyErr_WriteUnraisable(self);
    if (!closed) return nullptr;
    Py_RETURN_NONE;
}

PyObject* runner_await(PyObject* self) { return Py_NewRef(self); }

PyObject* runner_iternext(PyObject* self) { return runner_send(self, Py_None); }

// cr_* answer for the app's coroutine; once the run is over, as a closed coroutine does.
PyObject* forward(runner_object* r, const char* name, PyObject* when_done) {
    if (!r->iter) return Py_NewRef(when_done);
    PyObject* v = PyObject_GetAttrString(r->iter, name);
    if (v || !PyErr_ExceptionMatches(PyExc_AttributeError)) return v;
    PyErr_Clear();  // an iterator from __await__ that is not a coroutine
    return Py_NewRef(when_done);
}
PyObject* get_cr_running(PyObject* self, void*) {
    return PyBool_FromLong(as_runner(self)->running);
}
PyObject* get_cr_frame(PyObject* self, void*) {
    return forward(as_runner(self), "cr_frame", Py_None);
}
PyObject* get_cr_await(PyObject* self, void*) {
    return forward(as_runner(self), "cr_await", Py_None);
}
PyObject* get_cr_code(PyObject* self, void*) {
    return forward(as_runner(self), "cr_code", Py_None);
}
PyObject* get_cr_suspended(PyObject* self, void*) {
    return forward(as_runner(self), "cr_suspended", Py_False);
}
PyObject* get_qualname(PyObject* self, void*) {
    py::ref fallback(PyUnicode_FromString("coachwhip.request"));
    if (!fallback) return nullptr;
    return forward(as_runner(self), "__qualname__", fallback.get());
}

int runner_traverse(PyObject* self, visitproc visit, void* arg) {
    runner_object* r = as_runner(self);
    Py_VISIT(r->iter);
    Py_VISIT(r->exchange);
    Py_VISIT(r->report);
    Py_VISIT(r->early);
    Py_VISIT(Py_TYPE(self));
    return 0;
}

int runner_clear(PyObject* self) {
    runner_object* r = as_runner(self);
    Py_CLEAR(r->iter);
    Py_CLEAR(r->exchange);
    Py_CLEAR(r->report);
    Py_CLEAR(r->early);
    return 0;
}

void runner_dealloc(PyObject* self) {
    PyTypeObject* type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    runner_clear(self);
    PyObject_GC_Del(self);
    Py_DECREF(type);  // heap type: each instance holds a reference to it
}

PyMethodDef runner_methods[] = {
    {"send", runner_send, METH_O, "Resume the app with a value."},
    {"throw", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(runner_throw)),
     METH_FASTCALL, "Raise an exception inside the app (asyncio cancels this way)."},
    {"close", runner_close, METH_NOARGS, "Close the app's coroutine; the response fails."},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef runner_getset[] = {{"cr_running", get_cr_running, nullptr, nullptr, nullptr},
                               {"cr_frame", get_cr_frame, nullptr, nullptr, nullptr},
                               {"cr_await", get_cr_await, nullptr, nullptr, nullptr},
                               {"cr_code", get_cr_code, nullptr, nullptr, nullptr},
                               {"cr_suspended", get_cr_suspended, nullptr, nullptr, nullptr},
                               {"__qualname__", get_qualname, nullptr, nullptr, nullptr},
                               {"__name__", get_qualname, nullptr, nullptr, nullptr},
                               {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyType_Slot runner_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(runner_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(runner_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(runner_clear)},
    {Py_am_await, reinterpret_cast<void*>(runner_await)},
    {Py_am_send, reinterpret_cast<void*>(runner_am_send)},
    {Py_tp_iter, reinterpret_cast<void*>(PyObject_SelfIter)},
    {Py_tp_iternext, reinterpret_cast<void*>(runner_iternext)},
    {Py_tp_methods, runner_methods},
    {Py_tp_getset, runner_getset},
    {Py_tp_doc, const_cast<char*>("The coroutine a request's Task runs: drives the ASGI app "
                                  "and reports how it ended (internal).")},
    {0, nullptr}};

PyType_Spec runner_spec = {"coachwhip._core.Runner", sizeof(runner_object), 0,
                           Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, runner_slots};

}  // namespace

bool init_runner_type(PyObject* module) {
    py::ref asyncio(PyImport_ImportModule("asyncio"));
    g_cancelled_error = asyncio ? PyObject_GetAttrString(asyncio.get(), "CancelledError") : nullptr;
    if (!g_cancelled_error) return false;
    py::ref tasks(PyImport_ImportModule("asyncio.tasks"));
    g_enter_task = tasks ? PyObject_GetAttrString(tasks.get(), "_enter_task") : nullptr;
    g_leave_task = g_enter_task ? PyObject_GetAttrString(tasks.get(), "_leave_task") : nullptr;
    if (!g_leave_task) return false;
    g_runner_type = reinterpret_cast<PyTypeObject*>(
        PyType_FromModuleAndSpec(module, &runner_spec, nullptr));  // kept for the process's life
    if (!g_runner_type) return false;
    return PyModule_AddObjectRef(module, "Runner", reinterpret_cast<PyObject*>(g_runner_type)) == 0;
}

PyObject* make_runner(PyObject* awaitable, PyObject* exchange, PyObject* report) {
    py::ref iter;
    if (PyCoro_CheckExact(awaitable)) {
        iter = py::ref::borrow(awaitable);
    } else {
        PyAsyncMethods* am = Py_TYPE(awaitable)->tp_as_async;
        if (!am || !am->am_await)
            return PyErr_Format(PyExc_TypeError,
                                "the ASGI app returned %.100s, which cannot be awaited (is it an "
                                "'async def' function?)",
                                Py_TYPE(awaitable)->tp_name);
        iter = py::ref(am->am_await(awaitable));
        if (!iter) return nullptr;
        if (!PyIter_Check(iter.get()))
            return PyErr_Format(PyExc_TypeError,
                                "__await__() returned non-iterator of type '%.100s'",
                                Py_TYPE(iter.get())->tp_name);
    }
    auto* r = PyObject_GC_New(runner_object, g_runner_type);
    if (!r) return nullptr;
    r->iter = iter.release();
    r->exchange = Py_NewRef(exchange);
    r->report = Py_NewRef(report);
    r->early = nullptr;
    r->early_kind = early_step::none;
    r->running = false;
    PyObject_GC_Track(r);
    return reinterpret_cast<PyObject*>(r);
}

bool step_eagerly(PyObject* runner, PyObject* task, PyObject* context, PyObject* loop) {
    runner_object* r = as_runner(runner);
    PyObject* args[] = {loop, task};
    py::ref entered(PyObject_Vectorcall(g_enter_task, args, 2, nullptr));
    if (!entered) {
        // Another task is current (requests delivered from inside a coroutine, e.g. during
        // shutdown): no eager step; the Task takes its first step from the loop as usual.
        PyErr_Clear();
        return true;
    }
    if (PyContext_Enter(context) < 0) {
        PyErr_WriteUnraisable(runner);
        py::ref left(PyObject_Vectorcall(g_leave_task, args, 2, nullptr));
        return static_cast<bool>(left);  // the Task will run the first step itself
    }
    PyObject* result = nullptr;
    PySendResult status = runner_am_send(runner, Py_None, &result);
    if (status == PYGEN_NEXT) {
        r->early_kind = early_step::yielded;
        r->early = result;
    } else if (status == PYGEN_RETURN) {
        r->early_kind = early_step::returned;
        Py_XDECREF(result);
    } else {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (tb && value) PyException_SetTraceback(value, tb);
        Py_XDECREF(type);
        Py_XDECREF(tb);
        r->early_kind = value ? early_step::raised : early_step::none;  // none: cannot happen
        r->early = value;
    }
    if (PyContext_Exit(context) < 0) PyErr_WriteUnraisable(runner);  // the app broke the nesting
    py::ref left(PyObject_Vectorcall(g_leave_task, args, 2, nullptr));
    return static_cast<bool>(left);
}

bool handle_app_failure(PyObject* exchange, PyObject* report) {
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb && value) PyException_SetTraceback(value, tb);
    bool propagate = PyErr_GivenExceptionMatches(type, g_cancelled_error) ||
                     PyErr_GivenExceptionMatches(type, PyExc_KeyboardInterrupt) ||
                     PyErr_GivenExceptionMatches(type, PyExc_SystemExit);
    // The server cancelled it (shutdown timeout): close quietly, no report.
    if (!PyErr_GivenExceptionMatches(type, g_cancelled_error)) {
        py::ref reported(PyObject_CallOneArg(report, value ? value : Py_None));
        if (!reported) PyErr_WriteUnraisable(report);
    }
    py::ref failed(fail_exchange(exchange));
    if (!failed) PyErr_WriteUnraisable(exchange);
    if (propagate) {
        PyErr_Restore(type, value, tb);
        return true;
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return false;
}

}  // namespace coachwhip::bridge::asgi
