// coachwhip::bridge::asgi — the coroutine each request's asyncio Task runs.
//
// Why: the Task used to run a Python coroutine, `run_http(app, scope, exchange)`, whose only job
// was `await app(...)` inside a try block and reporting the outcome. Every Task step then
// resumed two Python frames, the wrapper's and the app's; callgrind put the wrapper at ~3k
// instructions per request (10% of scenario 1). A runner is that wrapper in C: a coroutine-like
// object whose am_send drives the app's awaitable directly.
//
// Contract, matching what run_http did:
// - the app's awaitable completes: `exchange._finish(result)` (checks the response is complete);
// - it raises CancelledError (the server cancelled it at shutdown): `exchange._fail()`, and the
//   CancelledError propagates, so the Task ends cancelled;
// - it raises anything else: `report(exc)` (Python: logs it, unless the client disconnected),
//   `exchange._fail()` (500, or close), and the Task ends normally; KeyboardInterrupt and
//   SystemExit propagate after that.
//
// It is a coroutine as asyncio sees it: am_await/am_send plus send(), throw() and close()
// methods (registered with collections.abc.Coroutine by coachwhip._asgi), and cr_running,
// cr_frame, cr_suspended, cr_await and cr_code that answer for the app's coroutine, so
// inspect.getcoroutinestate() and anyio's checks on a task's coroutine keep working.
#pragma once

#include "bridge/py.hpp"

namespace coachwhip::bridge::asgi {

bool init_runner_type(PyObject* module);

// A new runner for the app's return value `awaitable` (borrowed), or nullptr with TypeError when
// it is not awaitable. `exchange` and `report` are borrowed and kept.
PyObject* make_runner(PyObject* awaitable, PyObject* exchange, PyObject* report);

// Runs the runner's first step now, as the Task `task` (created for `runner` and not stepped
// yet) would, in `context` (the Context the Task was created with): asyncio.current_task() is
// `task` meanwhile. Whatever the step yields or however the run ends is kept and handed to the
// Task's own first step, which then does exactly what it would have done after running the step
// itself: wait on the yielded future, reschedule after a bare yield, finish, or end with the
// exception. A cancel() or close() before that step reaches the app where it waits.
//
// Why: with a Task per request the app ran one loop iteration later, after every other request
// in the batch had been parsed and scheduled; running it at once, while its request is hot in
// the caches, measured ~1 us less per FastAPI request (bench/NOTES.md, optimisation 17).
// Python 3.12's eager tasks do the same; 3.11 has no API for it, hence this.
//
// When another task is current already (delivery from inside a coroutine), nothing runs now and
// the Task takes its first step from the loop. Returns false with an exception set when leaving
// the task failed.
bool step_eagerly(PyObject* runner, PyObject* task, PyObject* context, PyObject* loop);

// What a runner does when the app failed: reports the current exception with `report(exc)`
// and calls exchange._fail(). Clears the exception unless it must propagate (CancelledError,
// KeyboardInterrupt, SystemExit), in which case it is left set and true is returned.
bool handle_app_failure(PyObject* exchange, PyObject* report);

}  // namespace coachwhip::bridge::asgi
