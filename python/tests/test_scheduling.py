"""call_soon, call_later, call_at, cancel, handles and stop/run semantics."""

import asyncio
import contextvars
import re
import sys

import pytest

import evloop


def test_call_soon_runs_in_order(loop):
    order = []
    for i in range(5):
        loop.call_soon(order.append, i)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert order == [0, 1, 2, 3, 4]


def test_callbacks_scheduled_by_a_callback_run_in_the_next_pass(loop):
    order = []

    def first():
        order.append("first")
        loop.call_soon(order.append, "scheduled by first")

    loop.call_soon(first)
    loop.call_soon(order.append, "second")
    loop.call_soon(loop.stop)
    loop.run_forever()
    # stop() ends the pass it runs in: what `first` scheduled waits.
    assert order == ["first", "second"]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert order[-1] == "scheduled by first"


def test_call_soon_and_threadsafe_share_one_fifo(loop):
    order = []
    loop.call_soon(order.append, 1)
    loop.call_soon_threadsafe(order.append, 2)
    loop.call_soon(order.append, 3)
    loop.call_soon_threadsafe(order.append, 4)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert order == [1, 2, 3, 4]


def test_stop_before_run_forever_runs_one_pass(loop):
    ran = []
    loop.call_soon(ran.append, 1)
    # A far timer must not make the single pass wait for it.
    loop.call_later(3600, ran.append, "never")
    loop.stop()
    t0 = loop.time()
    loop.run_forever()
    assert ran == [1]
    assert loop.time() - t0 < 60
    assert not loop.is_running()


def test_timers_fire_by_deadline_then_fifo(loop):
    order = []
    # Wide gaps: `b`'s deadline counts from when call_later runs, so a
    # descheduled test process (a loaded CI machine) must not push it
    # past `c`'s.
    now = loop.time()
    loop.call_later(0.1, order.append, "b")
    loop.call_at(now + 0.2, order.append, "c")
    loop.call_at(now + 0.01, order.append, "a1")
    loop.call_at(now + 0.01, order.append, "a2")
    loop.call_at(now + 0.3, loop.stop)
    loop.run_forever()
    assert order == ["a1", "a2", "b", "c"]


def test_timer_never_fires_early(loop):
    seen = []
    when = loop.time() + 0.02

    def check():
        seen.append(loop.time())
        loop.stop()

    loop.call_at(when, check)
    loop.run_forever()
    # asyncio itself may run a timer up to its clock resolution early.
    assert seen[0] >= when - loop._clock_resolution


def test_cancelled_handles_and_timers_do_not_run(loop):
    ran = []
    h = loop.call_soon(ran.append, "h")
    t = loop.call_later(0.001, ran.append, "t")
    h.cancel()
    t.cancel()
    assert h.cancelled() and t.cancelled()
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert ran == []


def test_timer_cancelled_from_another_callback(loop):
    ran = []
    t = loop.call_later(0.01, ran.append, "timer")
    loop.call_soon(t.cancel)
    loop.call_later(0.02, loop.stop)
    loop.run_forever()
    assert ran == []


def test_handle_api_and_reprs(loop):
    def cb(x):
        pass

    # evloop's handles are native (as uvloop's): asyncio's API, not its class.
    h = loop.call_soon(cb, 1)
    assert isinstance(h, (asyncio.Handle, evloop.Handle))
    # Outside debug mode, Python 3.13's reprs leave the arguments out.
    shown = r"cb\(\)" if sys.version_info >= (3, 13) else r"cb\(1\)"
    assert re.match(r"<Handle .*" + shown, repr(h)), repr(h)
    assert h._callback is cb and h._args == (1,) and h._loop is loop
    assert not h.cancelled()
    t = loop.call_later(10, cb, 2)
    assert isinstance(t, (asyncio.TimerHandle, evloop.TimerHandle))
    assert isinstance(t, type(h)) or isinstance(t, asyncio.Handle)
    assert abs(t.when() - (loop.time() + 10)) < 1
    assert "when=" in repr(t)
    t.cancel()
    assert t.cancelled()
    assert "cancelled" in repr(t)
    assert t._callback is None, "a cancelled handle lets go of its callback"
    if sys.version_info >= (3, 12):
        assert h.get_context() is not None
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_handle_reprs_match_asyncio(loop):
    def cb(x, y):
        pass

    ours = loop.call_soon(cb, 1, "two")
    theirs = asyncio.Handle(cb, (1, "two"), loop)
    assert repr(ours) == repr(theirs)
    timer = loop.call_at(loop.time() + 100, cb, 1, "two")
    twin = asyncio.TimerHandle(timer.when(), cb, (1, "two"), loop)
    assert repr(timer) == repr(twin)
    timer.cancel()
    twin.cancel()
    assert repr(timer) == repr(twin)
    ours.cancel()
    theirs.cancel()
    assert repr(ours) == repr(theirs)


def test_cancel_keeps_the_repr_in_debug_mode_only(loop):
    def cb(x):
        pass

    h = loop.call_soon(cb, 1)
    t = loop.call_later(60, cb, 2)
    h.cancel()
    t.cancel()
    assert repr(h) == "<Handle cancelled>"
    assert re.fullmatch(r"<TimerHandle cancelled when=[0-9.e+]+>", repr(t)), repr(t)
    loop.set_debug(True)
    h = loop.call_soon(cb, 3)
    t = loop.call_later(60, cb, 4)
    h.cancel()
    t.cancel()
    # asyncio remembers the repr of the cancelled handle, callback and all.
    assert repr(h).startswith("<Handle cancelled ") and "cb(3) at " in repr(h), repr(h)
    assert re.match(r"<TimerHandle cancelled when=[0-9.e+]+ .*cb\(4\) at ", repr(t)), repr(t)
    loop.set_debug(False)
    h = loop.call_soon(cb, 5)
    h.cancel()
    assert repr(h) == "<Handle cancelled>"


def test_a_handle_fits_cpythons_96_byte_size_class():
    # One handle is made per call_soon: its debug-mode fields are boxed so
    # that the object, GC header included, takes 96 bytes (the 112-byte
    # class touched a quarter of a cache line more per queued handle).
    lp = evloop.new_event_loop()
    try:
        handle = lp.call_soon(print)
        assert sys.getsizeof(handle) <= 96
        lp.set_debug(True)
        debug = lp.call_soon(print)
        debug.cancel()  # keeps its repr, in the boxed fields
        assert repr(debug).startswith("<Handle cancelled")
        assert sys.getsizeof(debug) == sys.getsizeof(handle)
        handle.cancel()
    finally:
        lp.close()


def test_timer_handles_compare_by_deadline(loop):
    def cb():
        pass

    a = loop.call_at(loop.time() + 10, cb)
    b = loop.call_at(loop.time() + 20, cb)
    assert a < b and b > a and a <= b and b >= a and a != b
    assert sorted([b, a]) == [a, b]
    assert a == a and hash(a) == hash(a.when())
    a.cancel()
    b.cancel()


def test_a_callback_may_cancel_its_own_handle(loop):
    ran = []
    holder = {}

    def cb():
        ran.append(holder["h"].cancelled())
        holder["h"].cancel()

    holder["h"] = loop.call_soon(cb)
    holder["t"] = loop.call_later(0, lambda: (ran.append("timer"), holder["t"].cancel()))
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert ran == [False, "timer"]


def test_cancelled_timers_are_freed_at_once(loop):
    import gc
    import weakref

    class Token:
        def __call__(self):
            pass

    token = Token()
    ref = weakref.ref(token)
    timer = loop.call_later(3600, token)
    del token
    assert ref() is not None
    timer.cancel()
    gc.collect()
    assert ref() is None, "cancel() let go of the callback"
    if hasattr(loop, "_core"):
        assert loop._core.timer_count() == 0


def _run_one_pass(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_a_run_handle_nobody_holds_frees_its_callback_at_once(loop):
    # No collection needed: the loop's reference was the last one.
    import gc
    import weakref

    class Token:
        def __call__(self):
            pass

    token = Token()
    ref = weakref.ref(token)
    loop.call_soon(token)
    del token
    gc.disable()
    try:
        _run_one_pass(loop)
        assert ref() is None, "the handle and its callback went with the loop's reference"
    finally:
        gc.enable()


def test_a_run_handle_nobody_holds_lets_go_of_its_arguments_and_context(loop):
    import gc

    ctx = contextvars.copy_context()
    arg = object()
    before = (sys.getrefcount(ctx), sys.getrefcount(arg))
    loop.call_soon(lambda a: None, arg, context=ctx)
    assert sys.getrefcount(ctx) > before[0] and sys.getrefcount(arg) > before[1]
    gc.disable()
    try:
        _run_one_pass(loop)
        assert (sys.getrefcount(ctx), sys.getrefcount(arg)) == before
    finally:
        gc.enable()


def test_call_soon_takes_asyncios_arguments(loop):
    var = contextvars.ContextVar("var", default="unset")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in ctx")
    seen = []

    def record(*args):
        seen.append((args, var.get()))

    loop.call_soon(record)
    loop.call_soon(record, 1)
    loop.call_soon(record, 1, 2, 3)
    loop.call_soon(record, 4, context=ctx)
    loop.call_soon(callback=record, context=ctx)
    loop.call_soon(record, 5, context=None)
    # A keyword name made at run time is not the interned string.
    loop.call_soon(record, 6, **{"".join(["con", "text"]): ctx})
    loop.call_soon(*[record, 7], **{"context": ctx})
    _run_one_pass(loop)
    assert seen == [
        ((), "unset"),
        ((1,), "unset"),
        ((1, 2, 3), "unset"),
        ((4,), "in ctx"),
        ((), "in ctx"),
        ((5,), "unset"),
        ((6,), "in ctx"),
        ((7,), "in ctx"),
    ]


def test_call_soon_refuses_bad_arguments_as_asyncio_and_queues_nothing(loop):
    ran = []
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'callback'"):
        loop.call_soon()
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'callback'"):
        loop.call_soon(context=None)
    with pytest.raises(TypeError, match="got an unexpected keyword argument 'ctx'"):
        loop.call_soon(ran.append, 1, ctx=None)
    with pytest.raises(TypeError, match="got multiple values for argument 'callback'"):
        loop.call_soon(ran.append, callback=ran.append)
    _run_one_pass(loop)
    assert ran == []


def test_call_soon_signature_is_asyncios(loop):
    import inspect

    params = inspect.signature(loop.call_soon).parameters
    assert [(p.name, p.kind) for p in params.values()] == [
        ("callback", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("args", inspect.Parameter.VAR_POSITIONAL),
        ("context", inspect.Parameter.KEYWORD_ONLY),
    ]


def test_a_run_handle_held_by_its_own_callback_is_collected(loop):
    # handle -> callback -> holder -> handle: a cycle the GC must break
    # (evloop's handles are not GC-tracked: the loop lets go for them).
    import gc
    import weakref

    class Token:
        def __call__(self):
            pass

    token = Token()
    ref = weakref.ref(token)
    token.handle = loop.call_soon(token)
    del token
    _run_one_pass(loop)
    gc.collect()
    assert ref() is None, "the cycle through the handle was collected"


def test_callbacks_run_in_their_context(loop):
    var = contextvars.ContextVar("var", default="default")
    seen = []
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in ctx")
    loop.call_soon(lambda: seen.append(var.get()), context=ctx)
    var.set("at call_soon time")
    loop.call_soon(lambda: seen.append(var.get()))
    var.set("later")
    loop.call_later(0.001, lambda: seen.append(var.get()), context=ctx)
    loop.call_later(0.002, loop.stop)
    loop.run_forever()
    assert seen == ["in ctx", "at call_soon time", "in ctx"]
    var.set("default")


def test_closed_loop_refuses_scheduling(loop_factory):
    lp = loop_factory()
    lp.close()
    lp.close()  # idempotent
    assert lp.is_closed()
    for schedule in (
        lambda: lp.call_soon(print),
        lambda: lp.call_later(1, print),
        lambda: lp.call_soon_threadsafe(print),
    ):
        with pytest.raises(RuntimeError, match="closed"):
            schedule()


def test_close_drops_pending_callbacks(loop_factory):
    lp = loop_factory()
    ran = []
    lp.call_soon(ran.append, 1)
    lp.call_later(0, ran.append, 2)
    lp.close()
    assert ran == []


def test_run_until_complete_and_is_running(loop):
    async def main():
        assert loop.is_running()
        await asyncio.sleep(0)
        return "done"

    assert not loop.is_running()
    assert loop.run_until_complete(main()) == "done"
    assert not loop.is_running()


def test_run_until_complete_while_running_fails(loop):
    async def main():
        coro = asyncio.sleep(0)
        with pytest.raises(RuntimeError):
            loop.run_until_complete(coro)
        coro.close()

    loop.run_until_complete(main())


def test_sleep_chains(loop):
    async def chain(n):
        for _ in range(n):
            await asyncio.sleep(0)
        await asyncio.sleep(0.001)
        return n

    async def main():
        return await asyncio.gather(*(chain(i) for i in range(50)))

    assert loop.run_until_complete(main()) == list(range(50))


def test_wait_for_timeout(loop):
    async def main():
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), 0.01)

    loop.run_until_complete(main())


def test_unclosed_loop_is_collected_with_a_resource_warning(loop_factory):
    import gc
    import weakref

    lp = loop_factory()
    lp.run_until_complete(asyncio.sleep(0))
    ref = weakref.ref(lp)
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        del lp
        gc.collect()
    assert ref() is None


def test_unclosed_loop_with_pending_callbacks_and_timers_is_collected(loop_factory):
    # The loop is referenced only from its own queued handles (each
    # handle's _loop): the GC must see those references to collect it.
    import gc
    import weakref

    lp = loop_factory()
    lp.call_soon(print, "never runs")
    lp.call_later(3600, print, "never runs")
    lp.call_at(lp.time() + 7200, lp.stop)
    ref = weakref.ref(lp)
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        del lp
        gc.collect()
    assert ref() is None


def test_running_loop_used_from_another_thread_raises_asyncios_error(loop):
    import threading

    loop.set_debug(True)  # asyncio checks threads in debug mode only
    errors = []

    def other():
        for call in (lambda: loop.call_soon(print), lambda: loop.call_later(1, print)):
            try:
                call()
            except RuntimeError as e:
                errors.append(str(e))

    def from_the_loop():
        t = threading.Thread(target=other)
        t.start()
        t.join()
        loop.stop()

    loop.call_soon(from_the_loop)
    loop.run_forever()
    assert errors == ["Non-thread-safe operation invoked on an event loop other than the current one"] * 2


def test_evloop_refuses_other_threads_outside_debug_mode_too():
    import threading

    lp = evloop.new_event_loop()
    errors = []

    def other():
        for call in (lambda: lp.call_soon(print), lambda: lp.call_at(0, print), lambda: lp._core.ready_count()):
            try:
                call()
            except RuntimeError as e:
                errors.append(str(e))
        # call_soon_threadsafe is the door for other threads.
        lp.call_soon_threadsafe(lp.stop)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert errors == ["Non-thread-safe operation invoked on an event loop other than the current one"] * 3
    lp.run_forever()
    lp.close()


def test_loop_dropped_on_another_thread_does_not_crash(loop_factory):
    # Made (and left unclosed, with work queued) in a worker thread, then
    # dropped on this one: no crash and no unraisable error. (asyncio's
    # loop is then collected; evloop's is leaked whole, as its core cannot
    # be read off its own thread: a documented difference.)
    import gc
    import threading
    import warnings

    made = []

    def worker():
        lp = loop_factory()
        lp.call_soon(print, "never runs")
        lp.call_later(3600, print, "never runs")
        made.append(lp)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    unraisable = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            made.clear()
            gc.collect()
    finally:
        sys.unraisablehook = old_hook
    assert [u.exc_value for u in unraisable] == []


def test_handles_can_be_made_directly_as_asyncios(loop):
    Handle = evloop.Handle if isinstance(loop, evloop.EventLoop) else asyncio.Handle
    TimerHandle = evloop.TimerHandle if isinstance(loop, evloop.EventLoop) else asyncio.TimerHandle
    ran = []
    h = Handle(ran.append, ("handle",), loop)
    h._run()
    t = TimerHandle(5.0, ran.append, ("timer",), loop, contextvars.copy_context())
    t._run()
    assert ran == ["handle", "timer"]
    assert t.when() == 5.0 and not t.cancelled()
    h.cancel()
    assert h.cancelled()


def test_debug_mode_checks_every_scheduling_call(loop):
    loop.set_debug(True)
    for call in (
        lambda: loop.call_soon(1),
        lambda: loop.call_later(1, 1),
        lambda: loop.call_at(loop.time() + 1, 1),
    ):
        with pytest.raises(TypeError):
            call()
    loop.set_debug(False)
    ran = []
    loop.call_soon(ran.append, "soon")
    loop.call_later(0, ran.append, "later")
    loop.call_at(loop.time(), ran.append, "at")
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert ran == ["soon", "later", "at"]


def test_a_subclass_may_override_the_scheduling_calls(loop_factory):
    seen = []
    base = loop_factory()
    base.close()

    class Loop(type(base)):
        def call_soon(self, callback, *args, context=None):
            seen.append("call_soon")
            return super().call_soon(callback, *args, context=context)

        def call_later(self, delay, callback, *args, context=None):
            seen.append("call_later")
            return super().call_later(delay, callback, *args, context=context)

    lp = Loop()
    try:
        lp.run_until_complete(asyncio.sleep(0.001))
    finally:
        lp.close()
    assert "call_soon" in seen and "call_later" in seen


def test_time_follows_the_monotonic_clock(loop):
    import time

    before = time.monotonic()
    now = loop.time()
    after = time.monotonic()
    assert before - 0.001 <= now <= after + 0.001


def test_debug_mode_and_create_future_agree_whichever_way_debug_is_set(loop):
    # get_debug(), the _debug attribute asyncio's own code reads, and what
    # the scheduling calls do are one setting, however it was changed.
    seen = []
    assert loop.get_debug() is False and not loop._debug
    loop.set_debug(True)
    seen.append((loop.get_debug(), bool(loop._debug)))
    fut = loop.create_future()
    handle = loop.call_soon(lambda: None)
    seen.append((fut.get_loop() is loop, fut._source_traceback is not None, handle._source_traceback is not None))
    loop._debug = False  # as asyncio's set_debug does it
    fut2 = loop.create_future()
    handle2 = loop.call_soon(lambda: None)
    seen.append((loop.get_debug(), fut2._source_traceback, handle2._source_traceback))
    fut.cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [(True, True), (True, True, True), (False, None, None)]
    assert isinstance(fut2, asyncio.Future) and not fut2.done()
