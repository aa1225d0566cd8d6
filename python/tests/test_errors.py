"""Callbacks that raise: the exception handler, KeyboardInterrupt and
SystemExit, debug mode's slow-callback report."""

import asyncio
import logging
import sys

import pytest

import evloop


def test_exception_in_callback_goes_to_the_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    def boom():
        raise ValueError("boom")

    handle = loop.call_soon(boom)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert len(contexts) == 1
    ctx = contexts[0]
    assert ctx["message"].startswith("Exception in callback")
    assert isinstance(ctx["exception"], ValueError)
    assert ctx["handle"] is handle


def test_exception_in_timer_and_reader_go_to_the_handler(loop):
    import socket

    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    a, b = socket.socketpair()

    def bad_reader():
        loop.remove_reader(b)
        raise KeyError("reader")

    loop.add_reader(b, bad_reader)
    a.send(b"x")
    loop.call_later(0.001, lambda: 1 / 0)
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    kinds = sorted(type(c["exception"]).__name__ for c in contexts)
    assert kinds == ["KeyError", "ZeroDivisionError"]
    a.close()
    b.close()


def test_default_handler_logs_and_loop_goes_on(loop, caplog):
    ran = []
    loop.call_soon(lambda: 1 / 0)
    loop.call_soon(ran.append, "after")
    loop.call_soon(loop.stop)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.run_forever()
    assert ran == ["after"]
    assert "Exception in callback" in caplog.text
    assert "ZeroDivisionError" in caplog.text


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_base_exception_stops_the_pass_rest_stays_queued(loop, exc):
    ran = []

    def raiser():
        raise exc()

    loop.call_soon(ran.append, "a")
    loop.call_soon(raiser)
    loop.call_soon(ran.append, "c")
    with pytest.raises(exc):
        loop.run_forever()
    assert ran == ["a"]
    assert not loop.is_running()
    # The rest is still queued and runs on the next run.
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == ["a", "c"]


def test_keyboard_interrupt_out_of_run_until_complete(loop):
    async def main():
        await asyncio.sleep(0)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(main())


def test_debug_mode_reports_slow_callbacks(loop, caplog):
    import time

    loop.set_debug(True)
    loop.slow_callback_duration = 0.005

    def slow_callback():
        time.sleep(0.01)

    loop.call_soon(slow_callback)
    loop.call_soon(loop.stop)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_forever()
    assert "Executing <Handle" in caplog.text
    assert "slow_callback" in caplog.text
    loop.set_debug(False)


def test_handles_after_keyboard_interrupt_keep_their_place(loop):
    ran = []

    def raiser():
        loop.call_soon(ran.append, "scheduled by the raiser")
        raise KeyboardInterrupt

    loop.call_soon(raiser)
    loop.call_soon(ran.append, "queued before")
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == ["queued before", "scheduled by the raiser"]


def test_keyboard_interrupt_keeps_one_fifo_across_threadsafe_calls(loop):
    ran = []

    def raiser():
        raise KeyboardInterrupt

    loop.call_soon(ran.append, 1)
    loop.call_soon_threadsafe(raiser)
    loop.call_soon_threadsafe(ran.append, 2)
    loop.call_soon(ran.append, 3)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert ran == [1]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == [1, 2, 3]


def test_handler_sees_the_whole_handle_nobody_else_holds(loop):
    # The loop lets go of a handle's callback once it has run: not before
    # the exception handler has seen it.
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append((repr(ctx["handle"]), ctx["handle"]._args)))

    def boom(x):
        raise ValueError(x)

    loop.call_soon(boom, 1)
    loop.call_soon(loop.stop)
    loop.run_forever()
    [(text, args)] = seen
    # Outside debug mode, Python 3.13's reprs leave the arguments out.
    shown = "boom() at " if sys.version_info >= (3, 13) else "boom(1) at "
    assert text.startswith("<Handle ") and shown in text, text
    assert args == (1,)


def test_exception_context_is_asyncios(loop):
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))

    def boom(x):
        raise ValueError(x)

    h = loop.call_soon(boom, 1)
    t = loop.call_later(0, boom, 2)
    loop.call_later(0.001, loop.stop)
    loop.run_forever()
    assert [ctx["handle"] for ctx in seen] == [h, t]
    assert [str(ctx["exception"]) for ctx in seen] == ["1", "2"]
    assert all(isinstance(ctx["exception"], ValueError) for ctx in seen)
    for ctx in seen:
        assert ctx["message"].startswith("Exception in callback "), ctx["message"]
        assert "boom(" in ctx["message"], ctx["message"]
    assert "source_traceback" not in seen[0]


def test_debug_mode_context_carries_the_source_traceback(loop):
    loop.set_debug(True)
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))

    def boom():
        raise ValueError

    loop.call_soon(boom)
    loop.call_soon(loop.stop)
    loop.run_forever()
    tb = seen[0]["source_traceback"]
    assert tb[-1].name == "test_debug_mode_context_carries_the_source_traceback", tb[-1]
    assert "created at" in repr(seen[0]["handle"]) or seen[0]["handle"]._callback is None
    loop.set_debug(False)


def test_a_callback_that_cancels_its_own_handle_then_raises_is_still_reported(loop):
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))
    holder = []

    def boom():
        holder[0].cancel()
        raise ValueError("after cancel")

    holder.append(loop.call_soon(boom))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert [str(ctx["exception"]) for ctx in seen] == ["after cancel"]
    assert seen[0]["message"].startswith("Exception in callback ")
