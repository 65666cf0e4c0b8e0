// coachwhip._core.Server: the engine as the Python side sees it.
#include <cstdlib>
#include <memory>
#include <new>
#include <string>

#include "bridge/access_log.hpp"
#include "bridge/asgi/awaitable.hpp"
#include "bridge/engine_thread.hpp"
#include "bridge/objects.hpp"
#include "bridge/wsgi/call.hpp"
#include "bridge/wsgi/pool.hpp"
#include "core/log.hpp"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace coachwhip::bridge {
namespace {

// glibc returns the top of its heap to the kernel once 128 KiB there are free. A server
// streaming responses allocates and frees output buffers of 64 KiB and more all the time, so
// with many connections the heap top moved up and down: 4.9 brk() calls per 1 MiB response at
// 64 connections (strace), each shrink followed by page faults that zero fresh pages again.
// Keeping up to 16 MiB of free heap at the top stops that churn; the memory is reused, not
// leaked. An operator's MALLOC_TRIM_THRESHOLD_ (glibc's own variable) wins.
//
// Setting it also switches off glibc's sliding mmap threshold (it starts at 128 KiB and rises to
// the size of the largest mmapped block freed, up to 32 MiB), which left every allocation of
// 128 KiB and more to mmap: a 1 MiB WebSocket message (its buffer, the Python bytes, the output)
// was mapped, page-faulted in and unmapped several times per echo, 61% of the server's samples
// (bench/NOTES.md, optimisation 22). So the threshold is set where the sliding one would end.
void tune_allocator() {
#if defined(__GLIBC__)
    static bool done = false;
    if (done) return;
    done = true;
    if (!std::getenv("MALLOC_TRIM_THRESHOLD_")) mallopt(M_TRIM_THRESHOLD, 16 * 1024 * 1024);
    if (!std::getenv("MALLOC_MMAP_THRESHOLD_")) mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
#endif
}

// The engine, or nullptr with RuntimeError when __init__ did not run (or failed).
server::server* engine_of(PyObject* self) {
    auto* s = reinterpret_cast<server_object*>(self);
    if (!s->engine) PyErr_SetString(PyExc_RuntimeError, "Server is not initialised");
    return s->engine.get();
}

// ---------------------------------------------------------------- engine phases

// Benchmark-only (COACHWHIP_BENCH_CEILING=1): the engine answers every request itself with the
// 13-byte body of bench scenario 1, so the benchmark can measure what share of a request's cost
// is the Python side. Never enabled by a flag a user would reach for.
void answer_from_engine(http::exchange& ex) {
    static constexpr http::field fields[] = {{"content-type", "text/plain"}};
    http::response_sink::head h{200, fields};
    ex.send(&h, "Hello, world!", false);
}

// While the app's startup runs, a request is held with its events, not started: the app may
// not be called before lifespan.startup.complete (ASGI). Returns true if `ex` was held.
bool hold(server_object* s, const std::shared_ptr<http::exchange>& ex, uint8_t ev) {
    if (!s->hold_requests) return false;
    for (auto& [held, events] : *s->held) {
        if (held == ex) {
            events |= ev;
            return true;
        }
    }
    if (!(ev & http::ev_request)) return false;
    s->held->emplace_back(ex, ev);
    return true;
}

void deliver_one(server_object* s, const std::shared_ptr<http::exchange>& ex, uint8_t ev) {
    // An HTTP/2 stream the client reset before its app started: it never starts (Rapid Reset
    // costs the engine's bookkeeping, not an app call).
    if ((ev & http::ev_request) && ex->cancelled) return;
    if ((ev & http::ev_request) && s->bench_ceiling) return answer_from_engine(*ex);
    if (s->wsgi) {
        // WSGI before its engine thread started: the same as deliver_wsgi.
        if (ev & http::ev_request) {
            s->wsgi->submit(ex);
            if (++s->requests_total == s->request_limit && s->on_request_limit) {
                py::ref r(PyObject_CallNoArgs(s->on_request_limit));  // --max-requests
                if (!r) PyErr_WriteUnraisable(s->on_request_limit);
            }
        }
        if (ev & ~http::ev_request) s->wsgi->deliver(*ex, ev);
        return;
    }
    if (ev & http::ev_request) {
        start_exchange(s, ex);
        ev &= static_cast<uint8_t>(~http::ev_body);  // the body is seen on first receive()
    }
    auto* obj = static_cast<exchange_object*>(ex->app_handle);
    if (obj && (ev & ~http::ev_request)) deliver_events(obj, ev);
}

// Whether the engine runs on its own thread now (WSGI): then everything that touches it goes
// through on_engine(), and events are delivered there (deliver_wsgi), never here.
bool threaded(const server_object* s) { return s->thread && s->thread->running(); }

// Runs `f` on the engine: on its thread, with the GIL released while waiting, when it has one;
// else here (`f` must not need the GIL either way).
template <class F>
void on_engine(server_object* s, F&& f) {
    if (threaded(s)) {
        const std::function<void()> fn(std::forward<F>(f));
        Py_BEGIN_ALLOW_THREADS s->thread->run(fn);
        Py_END_ALLOW_THREADS
    } else {
        Py_BEGIN_ALLOW_THREADS f();
        Py_END_ALLOW_THREADS
    }
}

// The engine thread's delivery (WSGI), after each phase, without the GIL: requests go to the
// pool, their later events wake their threads. Only --max-requests calls Python.
void deliver_wsgi(server_object* s) {
    for (int round = 0; round < 4 && !s->engine->events().empty(); ++round) {
        for (auto& ex : s->engine->events().take()) {
            const uint8_t ev = ex->take_events();
            if ((ev & http::ev_request) && ex->cancelled) continue;  // see deliver_one
            if (ev & http::ev_request) {
                if (s->bench_ceiling) {
                    answer_from_engine(*ex);
                    continue;
                }
                s->wsgi->submit(ex);
                if (++s->requests_total == s->request_limit && s->on_request_limit) {
                    PyGILState_STATE g = PyGILState_Ensure();
                    py::ref r(PyObject_CallNoArgs(s->on_request_limit));  // --max-requests
                    if (!r) PyErr_WriteUnraisable(s->on_request_limit);
                    PyGILState_Release(g);
                }
            }
            if (ev & ~http::ev_request) s->wsgi->deliver(*ex, ev);
        }
    }
    // Access records need the GIL, which this thread never waits for: a WSGI thread logs them.
    if (s->access && s->engine->events().has_records()) {
        s->engine->events().take_records(s->access->batch);
        s->wsgi->post_access(s->access->batch);
    }
}

void deliver_all(server_object* s) {
    if (threaded(s)) return;  // the engine thread delivers (deliver_wsgi)
    // Delivering starts new apps, which take their first step at once (asgi::step_eagerly):
    // they can buffer output or ask for body, which only schedules engine work and never runs
    // it, so the queue is not refilled underneath us; loop anyway in case that changes.
    for (int round = 0; round < 4 && !s->engine->events().empty(); ++round) {
        for (auto& ex : s->engine->events().take()) {
            const uint8_t ev = ex->take_events();
            if (!hold(s, ex, ev)) deliver_one(s, ex, ev);
        }
    }
    drain_access_log(s);  // the responses this phase ended, in one batch
}

void schedule_hook(void* ctx) {
    auto* s = static_cast<server_object*>(ctx);
    if (s->run_scheduled_pending) return;
    py::ref r(PyObject_CallOneArg(s->call_soon, s->run_scheduled));
    if (!r) {
        PyErr_WriteUnraisable(s->call_soon);
        return;
    }
    s->run_scheduled_pending = true;
}

PyObject* not_with_thread() {
    PyErr_SetString(PyExc_RuntimeError,
                    "the engine runs on its own thread (WSGI): not from asyncio");
    return nullptr;
}

PyObject* server_on_readable(PyObject* self, PyObject*) {
    if (!engine_of(self)) return nullptr;
    auto* s = reinterpret_cast<server_object*>(self);
    if (threaded(s)) return not_with_thread();
    Py_BEGIN_ALLOW_THREADS s->engine->run_io();
    Py_END_ALLOW_THREADS deliver_all(s);
    // Work left scheduled after the phase's rounds (the hook fires only when the first
    // connection is scheduled, and not from inside a phase): ask for another flush phase.
    if (s->engine->has_scheduled()) schedule_hook(s);
    Py_RETURN_NONE;
}

PyObject* server_run_scheduled(PyObject* self, PyObject*) {
    if (!engine_of(self)) return nullptr;
    auto* s = reinterpret_cast<server_object*>(self);
    s->run_scheduled_pending = false;
    if (threaded(s)) return Py_NewRef(Py_None);  // a call_soon from before the thread started
    Py_BEGIN_ALLOW_THREADS s->engine->run_scheduled();
    Py_END_ALLOW_THREADS deliver_all(s);
    if (s->engine->has_scheduled()) schedule_hook(s);  // as in on_readable
    Py_RETURN_NONE;
}

// ---------------------------------------------------------------- control

PyObject* add_listener(PyObject* self, PyObject* arg, bool internal) {
    if (!engine_of(self)) return nullptr;
    auto* s = reinterpret_cast<server_object*>(self);
    int fd = PyObject_AsFileDescriptor(arg);
    if (fd < 0) return nullptr;
    core::error err;
    on_engine(s, [&] { err = s->engine->add_listener(fd, internal); });
    if (err)
        return PyErr_Format(PyExc_OSError, "cannot listen on fd %d: %s", fd,
                            std::string(err.reason).c_str());
    Py_RETURN_NONE;
}

PyObject* server_add_listener(PyObject* self, PyObject* arg) {
    return add_listener(self, arg, false);
}

PyObject* server_add_internal_listener(PyObject* self, PyObject* arg) {
    return add_listener(self, arg, true);
}

PyObject* server_fileno(PyObject* self, PyObject*) {
    if (!engine_of(self)) return nullptr;
    return PyLong_FromLong(reinterpret_cast<server_object*>(self)->engine->fileno());
}

PyObject* server_stop_accepting(PyObject* self, PyObject*) {
    if (!engine_of(self)) return nullptr;
    auto* s = reinterpret_cast<server_object*>(self);
    on_engine(s, [s] { s->engine->stop_accepting(); });
    Py_RETURN_NONE;
}

PyObject* server_set_ready(PyObject* self, PyObject* arg) {
    if (!engine_of(self)) return nullptr;
    int ready = PyObject_IsTrue(arg);
    if (ready < 0) return nullptr;
    auto* s = reinterpret_cast<server_object*>(self);
    on_engine(s, [s, ready] { s->engine->set_ready(ready); });
    Py_RETURN_NONE;
}

// A reloaded TlsContext (SIGHUP in a single process): new connections use it.
PyObject* server_set_tls(PyObject* self, PyObject* arg) {
    if (!engine_of(self)) return nullptr;
    std::shared_ptr<const tls::context> ctx;
    if (arg == Py_None || !tls_context_of(arg, ctx)) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "set_tls() needs a TlsContext");
        return nullptr;
    }
    auto* s = reinterpret_cast<server_object*>(self);
    on_engine(s, [s, &ctx] { s->engine->set_tls(std::move(ctx)); });
    Py_RETURN_NONE;
}

// The app's startup completed: start the requests held until now, in arrival order.
PyObject* server_release_requests(PyObject* self, PyObject*) {
    if (!engine_of(self)) return nullptr;
    auto* s = reinterpret_cast<server_object*>(self);
    s->hold_requests = false;
    for (auto& [ex, ev] : std::exchange(*s->held, {}))
        deliver_one(s, ex, ev);
    Py_RETURN_NONE;
}

PyObject* server_shutdown_connections(PyObject* self, PyObject*) {
    if (!engine_of(self)) return nullptr;
    auto* s = reinterpret_cast<server_object*>(self);
    on_engine(s, [s] { s->engine->shutdown_connections(); });
    deliver_all(s);
    s->draining = true;
    end_event_streams(s);
    Py_RETURN_NONE;
}

PyObject* server_close_all(PyObject* self, PyObject*) {
    if (!engine_of(self)) return nullptr;
    auto* s = reinterpret_cast<server_object*>(self);
    on_engine(s, [s] { s->engine->close_all(); });
    deliver_all(s);
    Py_RETURN_NONE;
}

// Cancels the Tasks of every app still running (graceful-shutdown timeout).
PyObject* server_cancel_all(PyObject* self, PyObject*) {
    auto* s = reinterpret_cast<server_object*>(self);
    for (exchange_object* obj = s->live; obj; obj = obj->next) {
        if (!obj->task) continue;
        py::ref r(PyObject_CallMethodNoArgs(obj->task, py::N().cancel));
        if (!r) PyErr_WriteUnraisable(obj->task);
    }
    Py_RETURN_NONE;
}

PyObject* server_get_connections(PyObject* self, void*) {
    if (!engine_of(self)) return nullptr;
    auto* s = reinterpret_cast<server_object*>(self);
    size_t n = 0;
    on_engine(s, [s, &n] { n = s->engine->connection_count(); });
    return PyLong_FromSize_t(n);
}

PyObject* server_get_requests_total(PyObject* self, void*) {
    auto* s = reinterpret_cast<server_object*>(self);
    unsigned long long n = 0;
    on_engine(s, [s, &n] { n = s->requests_total; });
    return PyLong_FromUnsignedLongLong(n);
}

PyObject* server_get_active(PyObject* self, void*) {
    auto* s = reinterpret_cast<server_object*>(self);
    size_t wsgi = 0;
    if (s->wsgi) on_engine(s, [s, &wsgi] { wsgi = s->wsgi->live(); });
    return PyLong_FromSize_t(static_cast<size_t>(s->live_count) + wsgi);
}

// ---------------------------------------------------------------- WSGI threads

wsgi::pool* pool_of(PyObject* self) {
    auto* s = reinterpret_cast<server_object*>(self);
    if (!s->wsgi) PyErr_SetString(PyExc_RuntimeError, "this Server does not serve WSGI");
    return s->wsgi.get();
}

// Writes the access records the engine thread handed to the pool (a WSGI thread, GIL held).
void write_wsgi_access(server_object* s, wsgi::pool& p) {
    if (!s->access || !p.access_pending()) return;
    static thread_local std::vector<http::access_record> batch;  // reused by this thread
    p.take_access(batch);
    write_access_records(s, batch);
}

// A WSGI thread's whole life: run calls until _wsgi_stop() and an empty queue.
PyObject* server_wsgi_work(PyObject* self, PyObject*) {
    wsgi::pool* p = pool_of(self);
    if (!p) return nullptr;
    auto* s = reinterpret_cast<server_object*>(self);
    p->thread_started();
    while (true) {
        write_wsgi_access(s, *p);
        // While calls are queued, take the next without giving up the GIL: handing the GIL
        // to another WSGI thread per request costs more than the request.
        std::shared_ptr<wsgi::call> c = p->try_take();
        if (!c) {
            Py_BEGIN_ALLOW_THREADS c = p->take();
            Py_END_ALLOW_THREADS
        }
        if (!c) {
            if (!p->stopping()) continue;  // woken to write access records
            break;
        }
        wsgi::run_call(s, c);
    }
    write_wsgi_access(s, *p);
    p->thread_ended();
    Py_RETURN_NONE;
}

PyObject* server_wsgi_stop(PyObject* self, PyObject*) {
    wsgi::pool* p = pool_of(self);
    if (!p) return nullptr;
    p->stop();
    Py_RETURN_NONE;
}

// WSGI: the engine leaves asyncio for a thread of its own (engine_thread.hpp).
PyObject* server_start_engine_thread(PyObject* self, PyObject*) {
    if (!engine_of(self)) return nullptr;
    auto* s = reinterpret_cast<server_object*>(self);
    if (!s->thread) {
        PyErr_SetString(PyExc_RuntimeError, "only a WSGI Server runs its engine on a thread");
        return nullptr;
    }
    // No asyncio to call run_scheduled: the thread runs scheduled work after each phase.
    s->engine->set_schedule_hook(nullptr, nullptr);
    if (int e = s->thread->start()) {
        s->engine->set_schedule_hook(schedule_hook, s);
        errno = e;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

PyObject* server_stop_engine_thread(PyObject* self, PyObject*) {
    auto* s = reinterpret_cast<server_object*>(self);
    if (s->thread && s->thread->running()) {
        Py_BEGIN_ALLOW_THREADS s->thread->stop();
        Py_END_ALLOW_THREADS s->engine->set_schedule_hook(schedule_hook, s);
    }
    // The last responses' records: those the WSGI threads (gone now) did not write, and those
    // of the engine's last phase.
    if (s->wsgi) write_wsgi_access(s, *s->wsgi);
    if (s->engine) drain_access_log(s);
    Py_RETURN_NONE;
}

PyObject* server_get_wsgi_stalled(PyObject* self, void*) {
    auto* s = reinterpret_cast<server_object*>(self);
    return PyFloat_FromDouble(s->wsgi ? static_cast<double>(s->wsgi->stalled_ms()) / 1000.0 : 0.0);
}

PyObject* server_get_wsgi_running(PyObject* self, void*) {
    auto* s = reinterpret_cast<server_object*>(self);
    return PyLong_FromSize_t(s->wsgi ? s->wsgi->running() : 0);
}

// ---------------------------------------------------------------- lifecycle

void engine_log_sink(core::log_level level, std::string_view message, void* ctx) {
    // Engine messages can come from the I/O phase, where the GIL is released.
    PyGILState_STATE g = PyGILState_Ensure();
    log_error(static_cast<server_object*>(ctx), static_cast<int>(level), message);
    PyGILState_Release(g);
}

// A sequence of field names (str) as lower-case std::strings; None: none.
bool field_names(PyObject* seq, const char* what, std::vector<std::string>& out) {
    if (seq == Py_None) return true;
    py::ref items(PySequence_Fast(seq, "a sequence of field names"));
    if (!items) return false;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(items.get()); ++i) {
        PyObject* item = PySequence_Fast_GET_ITEM(items.get(), i);
        Py_ssize_t n = 0;
        const char* p = PyUnicode_Check(item) ? PyUnicode_AsUTF8AndSize(item, &n) : nullptr;
        if (!p) {
            if (!PyErr_Occurred()) PyErr_Format(PyExc_TypeError, "%s must hold str", what);
            return false;
        }
        std::string name(p, static_cast<size_t>(n));
        for (char& ch : name)
            if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch + 32);
        out.push_back(std::move(name));
    }
    return true;
}

// A str as the bytes it stands for on the wire: Latin-1, as uvicorn encodes --header.
bool latin1_of(PyObject* text, std::string& out) {
    if (!PyUnicode_Check(text)) return false;
    py::ref bytes(PyUnicode_AsLatin1String(text));
    if (!bytes) return false;
    out.assign(PyBytes_AS_STRING(bytes.get()), static_cast<size_t>(PyBytes_GET_SIZE(bytes.get())));
    return true;
}

// The headers keyword: (name, value) pairs of str -> the engine's checked, encoded defaults.
// The Python side (coachwhip.config) has checked them already, with the flag in its messages;
// this is the engine's own check, for callers of _core.Server.
bool default_headers_of(PyObject* seq, http1::default_headers& out) {
    if (seq == Py_None) return true;
    py::ref items(PySequence_Fast(seq, "headers must be a sequence of (name, value) pairs"));
    if (!items) return false;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(items.get()); ++i) {
        PyObject* item = PySequence_Fast_GET_ITEM(items.get(), i);
        std::string name, value;
        const bool pair = (PyTuple_Check(item) || PyList_Check(item)) && PySequence_Size(item) == 2;
        py::ref pieces(pair ? PySequence_Fast(item, "") : nullptr);
        if (!pieces || !latin1_of(PySequence_Fast_GET_ITEM(pieces.get(), 0), name) ||
            !latin1_of(PySequence_Fast_GET_ITEM(pieces.get(), 1), value)) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError,
                         "headers[%zd]: expected a (name, value) pair of Latin-1 str, got %R", i,
                         item);
            return false;
        }
        if (core::error e = http1::add_default_header(out, name, value)) {
            PyErr_Format(PyExc_ValueError, "headers[%zd] %R: %s", i, item,
                         std::string(e.reason).c_str());
            return false;
        }
    }
    return true;
}

int server_init(PyObject* self, PyObject* args, PyObject* kwds) {
    auto* s = reinterpret_cast<server_object*>(self);
    tune_allocator();
    static const char* kwlist[] = {"app",
                                   "loop",
                                   "report_failure",
                                   "root_path",
                                   "state",
                                   "keep_alive",
                                   "server_header",
                                   "date_header",
                                   "access_log",
                                   "error_log",
                                   "log_level",
                                   "timeout_request_header",
                                   "timeout_request_body",
                                   "timeout_write",
                                   "limit_request_line",
                                   "limit_request_fields",
                                   "limit_request_header_size",
                                   "limit_request_body",
                                   "limit_concurrency",
                                   "max_connections",
                                   "request_limit",
                                   "on_request_limit",
                                   "min_request_body_rate",
                                   "min_response_rate",
                                   "min_rate_grace",
                                   "health",
                                   "readiness",
                                   "metrics",
                                   "hold_requests",
                                   "forwarded_allow_ips",
                                   "proxy_headers",
                                   "proxy_protocol",
                                   "metrics_fd",
                                   "metrics_slot",
                                   "tls",
                                   "timeout_tls_handshake",
                                   "websocket",
                                   "ws_max_size",
                                   "ws_max_queue",
                                   "ws_ping_interval",
                                   "ws_ping_timeout",
                                   "ws_per_message_deflate",
                                   "wsgi_environ",
                                   "http1",
                                   "http2",
                                   "http2_max_concurrent_streams",
                                   "http2_initial_stream_window_size",
                                   "http2_initial_connection_window_size",
                                   "http2_max_frame_size",
                                   "http2_max_headers_size",
                                   "access_log_flush",
                                   "access_log_request_fields",
                                   "access_log_response_fields",
                                   "headers",
                                   nullptr};
    PyObject *app, *loop, *report_failure, *root_path = nullptr, *state = Py_None;
    PyObject *access_log = Py_None, *error_log = Py_None;
    double keep_alive = 5.0, header_timeout = 20.0, body_timeout = 60.0, write_timeout = 60.0;
    int server_header = 1, date_header = 1, log_level = 20;
    Py_ssize_t request_line = 8190, request_fields = 100, header_size = 65536;
    Py_ssize_t concurrency = 0, max_connections = 0;
    unsigned long long max_body = 0, request_limit = 0;
    PyObject* on_request_limit = Py_None;
    unsigned long long min_body_rate = 0, min_response_rate = 0;
    double min_rate_grace = 5.0;
    int health = 0, readiness = 0, metrics = 0, hold_requests = 0;
    PyObject* forwarded_allow_ips = Py_None;  // str: the peers trusted with proxy information
    int proxy_headers = 0, proxy_protocol = 0;
    int metrics_fd = -1;  // a supervisor's MetricsRegion fd: count into its slot metrics_slot
    Py_ssize_t metrics_slot = 0;
    PyObject* tls = Py_None;  // a TlsContext: TLS on the app's listeners
    double tls_handshake_timeout = 5.0;
    // WebSocket (uvicorn's --ws-* names and defaults).
    int websocket = 1, ws_deflate = 1;
    unsigned long long ws_max_size = 16ULL << 20;
    Py_ssize_t ws_max_queue = 32;
    double ws_ping_interval = 20.0, ws_ping_timeout = 20.0;
    // WSGI: the environ keys every request shares (None: the app is ASGI).
    PyObject* wsgi_environ = Py_None;
    // HTTP/2 (--http, --http2-*: granian's names; defaults in http2::connection_config).
    int http1 = 1, http2 = 1;
    const http2::connection_config h2_defaults;
    unsigned long h2_streams = h2_defaults.max_concurrent_streams;
    unsigned long h2_stream_window = h2_defaults.initial_stream_window;
    unsigned long h2_conn_window = h2_defaults.initial_connection_window;
    unsigned long h2_frame = h2_defaults.max_frame_size;
    unsigned long h2_headers = h2_defaults.max_header_list;
    // The access log: flush() after each batch; the field names its format shows.
    PyObject *access_flush = Py_None, *logged_request = Py_None, *logged_response = Py_None;
    PyObject* headers = Py_None;  // (name, value) pairs for every response (--header)
    if (!PyArg_ParseTupleAndKeywords(
            args, kwds, "OOO|$UOdppOOidddnnnKnnKOKKdppppOppinOdpKnddpOppkkkkkOOOO",
            const_cast<char**>(kwlist), &app, &loop, &report_failure, &root_path, &state,
            &keep_alive, &server_header, &date_header, &access_log, &error_log, &log_level,
            &header_timeout, &body_timeout, &write_timeout, &request_line, &request_fields,
            &header_size, &max_body, &concurrency, &max_connections, &request_limit,
            &on_request_limit, &min_body_rate, &min_response_rate, &min_rate_grace, &health,
            &readiness, &metrics, &hold_requests, &forwarded_allow_ips, &proxy_headers,
            &proxy_protocol, &metrics_fd, &metrics_slot, &tls, &tls_handshake_timeout, &websocket,
            &ws_max_size, &ws_max_queue, &ws_ping_interval, &ws_ping_timeout, &ws_deflate,
            &wsgi_environ, &http1, &http2, &h2_streams, &h2_stream_window, &h2_conn_window,
            &h2_frame, &h2_headers, &access_flush, &logged_request, &logged_response, &headers))
        return -1;
    std::vector<std::string> request_names, response_names;
    if (!field_names(logged_request, "access_log_request_fields", request_names) ||
        !field_names(logged_response, "access_log_response_fields", response_names))
        return -1;
    if (!http1 && !http2) {
        PyErr_SetString(PyExc_ValueError, "at least one of http1 and http2 must be on");
        return -1;
    }
    // RFC 9113 §6.5.2: windows up to 2^31-1, frames of 2^14 to 2^24-1 bytes.
    if (h2_streams < 1 || h2_streams > 0xffffffffUL || h2_stream_window < 1 ||
        h2_stream_window > 0x7fffffffUL || h2_conn_window < 65535 ||
        h2_conn_window > 0x7fffffffUL || h2_frame < 16384 || h2_frame > 16777215 ||
        h2_headers < 1 || h2_headers > 0xffffffffUL) {
        PyErr_SetString(PyExc_ValueError,
                        "HTTP/2 settings out of range: streams >= 1, windows up to 2147483647 "
                        "(the connection's at least 65535), frame size 16384-16777215");
        return -1;
    }
    if (wsgi_environ != Py_None && !PyDict_Check(wsgi_environ)) {
        PyErr_SetString(PyExc_TypeError, "wsgi_environ must be a dict or None");
        return -1;
    }
    std::shared_ptr<const tls::context> tls_ctx;
    if (!tls_context_of(tls, tls_ctx)) return -1;
    if (request_line < 1 || request_fields < 1 || header_size < 1 || concurrency < 0 ||
        max_connections < 0 || keep_alive <= 0 || header_timeout <= 0 || body_timeout <= 0 ||
        write_timeout <= 0 || min_rate_grace <= 0 || tls_handshake_timeout <= 0 ||
        ws_max_size < 1 || ws_max_queue < 1 || ws_ping_interval < 0 || ws_ping_timeout < 0) {
        PyErr_SetString(PyExc_ValueError, "limits and timeouts must be positive");
        return -1;
    }
    proxy::trusted_networks_result trust;
    if (forwarded_allow_ips != Py_None) {
        Py_ssize_t n = 0;
        const char* spec = PyUnicode_Check(forwarded_allow_ips)
                               ? PyUnicode_AsUTF8AndSize(forwarded_allow_ips, &n)
                               : nullptr;
        if (!spec) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "forwarded_allow_ips must be a str or None");
            return -1;
        }
        trust = proxy::parse_trusted_networks({spec, static_cast<size_t>(n)});
        if (!trust.error.empty()) {
            PyErr_SetString(PyExc_ValueError, trust.error.c_str());
            return -1;
        }
    }
    if (state != Py_None && !PyDict_Check(state)) {
        PyErr_SetString(PyExc_TypeError, "state must be a dict or None");
        return -1;
    }
    if (s->engine) {
        PyErr_SetString(PyExc_RuntimeError, "Server.__init__ called twice");
        return -1;
    }
    try {
        s->cfg = std::make_unique<server::server_config>();
        server::server_config& c = *s->cfg;
        auto ms = [](double seconds) { return static_cast<uint64_t>(seconds * 1000.0 + 0.5); };
        c.keep_alive_ms = ms(keep_alive);
        c.header_timeout_ms = ms(header_timeout);
        c.body_timeout_ms = ms(body_timeout);
        c.write_timeout_ms = ms(write_timeout);
        c.max_connections = static_cast<size_t>(max_connections);
        c.max_concurrency = static_cast<size_t>(concurrency);
        c.conn.server_header = server_header;
        c.conn.date_header = date_header;
        if (!default_headers_of(headers, c.conn.defaults)) return -1;
        c.conn.max_body = max_body;
        c.conn.min_body_rate = min_body_rate;
        c.conn.min_response_rate = min_response_rate;
        c.conn.min_rate_grace_ms = ms(min_rate_grace);
        c.health_endpoint = health;
        c.ready_endpoint = readiness;
        c.metrics_endpoint = metrics;
        c.proxy_headers = proxy_headers;
        c.proxy_protocol = proxy_protocol;
        c.forwarded_trust = std::move(trust.networks);
        c.tls = std::move(tls_ctx);
        c.tls_handshake_ms = ms(tls_handshake_timeout);
        c.websocket = websocket;
        c.ws_deflate.enabled = ws_deflate;
        c.ws.max_message = ws_max_size;
        c.ws.max_queue = static_cast<size_t>(ws_max_queue);
        c.ws.ping_interval_ms = ms(ws_ping_interval);
        c.ws.ping_timeout_ms = ms(ws_ping_timeout);
        c.ws.write_high_water = c.conn.write_high_water;
        c.ws.write_low_water = c.conn.write_low_water;
        c.http1 = http1;
        c.http2 = http2;
        c.h2.max_concurrent_streams = static_cast<uint32_t>(h2_streams);
        c.h2.initial_stream_window = static_cast<uint32_t>(h2_stream_window);
        c.h2.initial_connection_window = static_cast<uint32_t>(h2_conn_window);
        c.h2.max_frame_size = static_cast<uint32_t>(h2_frame);
        c.h2.max_header_list = static_cast<uint32_t>(h2_headers);
        c.h2.stream_high_water = c.conn.body_high_water;
        c.conn.head_limits.max_request_line = static_cast<size_t>(request_line);
        c.conn.head_limits.max_headers = static_cast<size_t>(request_fields);
        c.conn.head_limits.max_head = static_cast<size_t>(header_size);
        c.access_log = access_log != Py_None;
        s->engine = std::make_unique<server::server>(*s->cfg);
        if (access_log != Py_None) {
            s->access = std::make_unique<access_log_state>();
            s->access->sink = Py_NewRef(access_log);
            s->access->flush = access_flush == Py_None ? nullptr : Py_NewRef(access_flush);
            s->access->request_fields = std::move(request_names);
            s->access->response_fields = std::move(response_names);
        }
        s->scopes = std::make_unique<asgi::scope_builder>();
        s->held =
            std::make_unique<std::vector<std::pair<std::shared_ptr<http::exchange>, uint8_t>>>();
        if (wsgi_environ != Py_None) {
            s->wsgi = std::make_unique<wsgi::pool>(*s->engine, c.conn.write_high_water);
            if (s->access) s->wsgi->log_response_fields(s->access->response_fields);
            s->thread = std::make_unique<engine_thread>(*s->engine, [s] { deliver_wsgi(s); });
            if (int e = s->wsgi->init_error()) {
                errno = e;
                PyErr_SetFromErrno(PyExc_OSError);
                return -1;
            }
        }
    } catch (const std::bad_alloc&) {
        PyErr_NoMemory();
        return -1;
    }
    if (core::error e = s->engine->init_error()) {
        PyErr_SetString(PyExc_OSError, std::string(e.reason).c_str());
        return -1;
    }
    if (metrics_fd >= 0) {
        core::error e = metrics_slot < 0 ? core::error{500, "metrics slot out of range"}
                                         : s->engine->use_shared_metrics(
                                               metrics_fd, static_cast<size_t>(metrics_slot));
        if (e) {
            PyErr_SetString(PyExc_OSError, std::string(e.reason).c_str());
            return -1;
        }
    }
    s->app = Py_NewRef(app);
    s->loop = Py_NewRef(loop);
    s->report_failure = Py_NewRef(report_failure);
    s->root_path = Py_NewRef(root_path ? root_path : py::N().v_empty_str);
    s->state = Py_NewRef(state);
    s->wsgi_environ = Py_NewRef(wsgi_environ);
    s->error_log = Py_NewRef(error_log);
    s->request_limit = request_limit;
    s->hold_requests = hold_requests;
    s->loop_thread = PyThread_get_thread_ident();
    s->engine->set_ready(!hold_requests);
    s->on_request_limit = on_request_limit == Py_None ? nullptr : Py_NewRef(on_request_limit);
    s->create_task = PyObject_GetAttrString(loop, "create_task");
    s->get_task_factory = PyObject_GetAttrString(loop, "get_task_factory");
    s->create_future = PyObject_GetAttrString(loop, "create_future");
    s->call_soon = PyObject_GetAttrString(loop, "call_soon");
    s->run_scheduled = PyObject_GetAttrString(self, "run_scheduled");
    if (!s->create_task || !s->get_task_factory || !s->create_future || !s->call_soon ||
        !s->run_scheduled)
        return -1;
    py::ref asyncio(PyImport_ImportModule("asyncio"));
    s->task_type = asyncio ? PyObject_GetAttrString(asyncio.get(), "Task") : nullptr;
    if (!s->task_type) return -1;
    s->task_kwargs =
        Py_BuildValue("{sOsssO}", "loop", loop, "name", "coachwhip.request", "context", Py_None);
    if (!s->task_kwargs) return -1;
    s->scopes->configure(s->root_path, state == Py_None ? nullptr : state);
    s->engine->set_schedule_hook(schedule_hook, s);
    const char* ceiling = std::getenv("COACHWHIP_BENCH_CEILING");
    s->bench_ceiling = ceiling && ceiling[0] == '1';
    core::set_log_sink(engine_log_sink, s, static_cast<core::log_level>(log_level));
    return 0;
}

PyObject* server_new(PyTypeObject* type, PyObject* args, PyObject* kwds) {
    PyObject* self = PyType_GenericNew(type, args, kwds);
    if (!self) return nullptr;
    auto* s = reinterpret_cast<server_object*>(self);
    new (&s->cfg) std::unique_ptr<server::server_config>();
    new (&s->engine) std::unique_ptr<server::server>();
    new (&s->scopes) std::unique_ptr<asgi::scope_builder>();
    new (&s->held) decltype(s->held)();
    new (&s->wsgi) decltype(s->wsgi)();
    new (&s->thread) decltype(s->thread)();
    new (&s->access) decltype(s->access)();
    return self;
}

int server_traverse(PyObject* self, visitproc visit, void* arg) {
    auto* s = reinterpret_cast<server_object*>(self);
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(s->app);
    Py_VISIT(s->loop);
    Py_VISIT(s->report_failure);
    Py_VISIT(s->create_task);
    Py_VISIT(s->task_type);
    Py_VISIT(s->task_kwargs);
    Py_VISIT(s->get_task_factory);
    Py_VISIT(s->create_future);
    Py_VISIT(s->call_soon);
    Py_VISIT(s->run_scheduled);
    if (s->access) {
        Py_VISIT(s->access->sink);
        Py_VISIT(s->access->flush);
    }
    Py_VISIT(s->error_log);
    Py_VISIT(s->state);
    Py_VISIT(s->on_request_limit);
    Py_VISIT(s->wsgi_environ);
    return 0;
}

int server_clear(PyObject* self) {
    auto* s = reinterpret_cast<server_object*>(self);
    Py_CLEAR(s->app);
    Py_CLEAR(s->loop);
    Py_CLEAR(s->report_failure);
    Py_CLEAR(s->create_task);
    Py_CLEAR(s->task_type);
    Py_CLEAR(s->task_kwargs);
    Py_CLEAR(s->get_task_factory);
    Py_CLEAR(s->create_future);
    Py_CLEAR(s->call_soon);
    Py_CLEAR(s->run_scheduled);
    if (s->access) {
        Py_CLEAR(s->access->sink);
        Py_CLEAR(s->access->flush);
    }
    Py_CLEAR(s->error_log);
    Py_CLEAR(s->state);
    Py_CLEAR(s->root_path);
    Py_CLEAR(s->on_request_limit);
    Py_CLEAR(s->wsgi_environ);
    return 0;
}

void server_dealloc(PyObject* self) {
    auto* s = reinterpret_cast<server_object*>(self);
    PyObject_GC_UnTrack(self);
    if (s->engine) core::set_log_sink(nullptr, nullptr, core::log_level::info);
    if (s->thread && s->thread->running()) {
        // Normally stopped by stop_engine_thread(); if not, without the GIL: the engine thread
        // may be waiting for it (a log line) and would never finish its phase.
        Py_BEGIN_ALLOW_THREADS s->thread->stop();
        Py_END_ALLOW_THREADS
    }
    s->thread.~unique_ptr();  // nothing runs the engine from here on
    s->wsgi.~unique_ptr();    // before the engine, whose loop watches its eventfd
    s->engine.~unique_ptr();  // closes every connection; exchanges still alive are detached
    s->scopes.~unique_ptr();
    s->held.~unique_ptr();
    s->cfg.~unique_ptr();
    server_clear(self);
    s->access.~unique_ptr();  // after server_clear, which drops its references
    PyTypeObject* type = Py_TYPE(self);
    type->tp_free(self);
    Py_DECREF(type);
}

PyMethodDef server_methods[] = {
    {"add_listener", server_add_listener, METH_O,
     "add_listener(sock_or_fd): accept connections on a bound, listening socket."},
    {"add_internal_listener", server_add_internal_listener, METH_O,
     "add_internal_listener(sock_or_fd): serve only /-/ endpoints there (--metrics-bind)."},
    {"fileno", server_fileno, METH_NOARGS, "The engine's epoll fd, for loop.add_reader()."},
    {"on_readable", server_on_readable, METH_NOARGS, "Run one engine I/O phase (reader callback)."},
    {"run_scheduled", server_run_scheduled, METH_NOARGS, "Flush work the app side buffered."},
    {"stop_accepting", server_stop_accepting, METH_NOARGS, "Stop accepting new connections."},
    {"set_ready", server_set_ready, METH_O, "set_ready(bool): what /-/ready answers (200/503)."},
    {"set_tls", server_set_tls, METH_O,
     "set_tls(TlsContext): connections accepted from now on use this certificate."},
    {"release_requests", server_release_requests, METH_NOARGS,
     "The app's startup completed: start the requests held until now (hold_requests=True)."},
    {"shutdown_connections", server_shutdown_connections, METH_NOARGS,
     "Close idle connections now and the others after their current response."},
    {"close_all", server_close_all, METH_NOARGS, "Close every connection now."},
    {"cancel_all", server_cancel_all, METH_NOARGS, "Cancel the Task of every running app."},
    {"_wsgi_work", server_wsgi_work, METH_NOARGS,
     "Run WSGI calls until _wsgi_stop() (the target of each WSGI thread)."},
    {"start_engine_thread", server_start_engine_thread, METH_NOARGS,
     "WSGI: run the engine on a thread of its own from now on (not from asyncio)."},
    {"stop_engine_thread", server_stop_engine_thread, METH_NOARGS,
     "WSGI: stop the engine's thread (after the drain)."},
    {"_wsgi_stop", server_wsgi_stop, METH_NOARGS,
     "WSGI threads return once the calls already queued have run."},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef server_getset[] = {
    {"connection_count", server_get_connections, nullptr, "Open connections.", nullptr},
    {"active_requests", server_get_active, nullptr, "Apps still running.", nullptr},
    {"requests_total", server_get_requests_total, nullptr, "Requests handed to the app so far.",
     nullptr},
    {"wsgi_running", server_get_wsgi_running, nullptr, "WSGI calls a thread is running now.",
     nullptr},
    {"wsgi_stalled", server_get_wsgi_stalled, nullptr,
     "Seconds requests have waited with every WSGI thread busy and none taken (0: not).", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

PyType_Slot server_slots[] = {
    {Py_tp_new, reinterpret_cast<void*>(server_new)},
    {Py_tp_init, reinterpret_cast<void*>(server_init)},
    {Py_tp_dealloc, reinterpret_cast<void*>(server_dealloc)},
    {Py_tp_traverse, reinterpret_cast<void*>(server_traverse)},
    {Py_tp_clear, reinterpret_cast<void*>(server_clear)},
    {Py_tp_methods, server_methods},
    {Py_tp_getset, server_getset},
    {Py_tp_doc,
     const_cast<char*>(
         "Server(app, loop, report_failure, *, root_path='', state=None, keep_alive=5.0, "
         "server_header=True, date_header=True, access_log=None, error_log=None, log_level=20, "
         "...)\n\n"
         "One worker's HTTP engine. Internal: use coachwhip.run().")},
    {0, nullptr}};

PyType_Spec server_spec = {"coachwhip._core.Server", sizeof(server_object), 0,
                           Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC, server_slots};

}  // namespace

void log_error(server_object* srv, int level, std::string_view message) {
    if (!srv || !srv->error_log || srv->error_log == Py_None) {
        // PySys_WriteStderr's format has no precision for %s: pass a terminated copy.
        PySys_WriteStderr("coachwhip: %s\n", std::string(message).c_str());
        return;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);  // logging must not clobber an exception being raised
    py::ref text(PyUnicode_DecodeUTF8(message.data(), static_cast<Py_ssize_t>(message.size()),
                                      "backslashreplace"));
    py::ref lvl(PyLong_FromLong(level));
    py::ref r(text && lvl
                  ? PyObject_CallFunctionObjArgs(srv->error_log, lvl.get(), text.get(), nullptr)
                  : nullptr);
    if (!r) PyErr_WriteUnraisable(srv->error_log);
    PyErr_Restore(type, value, tb);
}

bool init_server_type(PyObject* module) {
    PyObject* type = PyType_FromModuleAndSpec(module, &server_spec, nullptr);
    if (!type) return false;
    int r = PyModule_AddObjectRef(module, "Server", type);
    Py_DECREF(type);
    return r == 0;
}

}  // namespace coachwhip::bridge
