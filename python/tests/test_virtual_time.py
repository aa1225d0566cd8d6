"""evloop's virtual-time loop (none of asyncio, uvloop or rloop has one).
The behaviour tests still run on asyncio's loop too where they can: what
they assert about results must hold on a real clock as well."""

import asyncio
import socket
import threading
import time

import pytest

import evloop


def test_one_hour_timeout_runs_in_a_blink():
    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(7200), timeout=3600)
        return loop.time() - t0

    started = time.monotonic()
    with asyncio.Runner(loop_factory=evloop.VirtualTimeLoop) as runner:
        elapsed = runner.run(main())
    # Within asyncio's own early-firing tolerance (its clock resolution).
    assert 3600 - 1e-9 <= elapsed < 3600 + 1e-6
    assert time.monotonic() - started < 5


def test_timers_keep_their_order_and_times():
    loop = evloop.VirtualTimeLoop()
    seen = []
    for delay in (30, 10, 20, 10):
        loop.call_later(delay, lambda d=delay: seen.append((d, loop.time())))
    t0 = loop.time()
    loop.call_later(31, loop.stop)
    loop.run_forever()
    assert [d for d, _ in seen] == [10, 10, 20, 30]
    assert [round(t - t0, 6) for _, t in seen] == [10, 10, 20, 30]
    loop.close()


def test_advance_time_and_run_until_idle_without_autojump():
    loop = evloop.VirtualTimeLoop(autojump_threshold=None)
    fired = []
    for secs in (1, 2, 3):
        loop.call_later(secs, fired.append, secs)
    loop.call_soon(fired.append, "soon")
    loop.run_until_idle()
    assert fired == ["soon"]
    loop.advance_time(2)
    loop.run_until_idle()
    assert fired == ["soon", 1, 2]
    loop.advance_time(10)
    loop.run_until_idle()
    assert fired == ["soon", 1, 2, 3]
    with pytest.raises(ValueError):
        loop.advance_time(-1)
    loop.close()


def test_cancelled_timers_are_not_jumped_to():
    loop = evloop.VirtualTimeLoop()
    t0 = loop.time()
    loop.call_later(1000, print).cancel()
    loop.call_later(5, loop.stop)
    loop.run_forever()
    assert round(loop.time() - t0, 6) == 5
    loop.close()


def test_threads_and_io_still_wake_it():
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        threading.Thread(target=lambda: (time.sleep(0.05), a.send(b"x"))).start()
        data = await loop.sock_recv(b, 1)
        value = await loop.run_in_executor(None, lambda: "from a thread")
        a.close()
        b.close()
        return data, value

    with asyncio.Runner(loop_factory=lambda: evloop.VirtualTimeLoop(autojump_threshold=None)) as r:
        assert r.run(main()) == (b"x", "from a thread")


def test_real_loop_refuses_virtual_time_calls():
    loop = evloop.new_event_loop()
    with pytest.raises(AttributeError):
        loop.advance_time(1)
    with pytest.raises(RuntimeError):
        loop._core.advance_time(1)
    loop.close()
