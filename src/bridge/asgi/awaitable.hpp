// coachwhip::bridge::asgi — an awaitable that is already complete.
//
// Why: most `await receive()` and `await send()` calls have nothing to wait for (the body is
// already buffered, the write was accepted). Returning an asyncio Future for those would cost a
// Future object plus a trip through the event loop per call. `ready(value)` returns a tiny
// object whose `__await__` finishes at once with `value`: the awaiting coroutine continues in
// the same step, the event loop never sees it.
//
// Protocol: tp_as_async.am_await returns the object itself; am_send (Python >= 3.10, used by
// the SEND opcode through PyIter_Send) returns PYGEN_RETURN with the value; tp_iternext raises
// StopIteration(value) for callers that use the iterator protocol. Awaiting it twice gives None
// the second time, like a finished coroutine would refuse to run again. `ready(None)` returns
// one shared, stateless instance (no allocation per send()).
#pragma once

#include "bridge/py.hpp"

namespace coachwhip::bridge::asgi {

bool init_ready_type(PyObject* module);
// Returns a new reference to an awaitable completing with `value` (stolen).
PyObject* ready(PyObject* value);

}  // namespace coachwhip::bridge::asgi
