"""call_soon_threadsafe from threads, fd watchers, signals."""

import asyncio
import os
import signal
import socket
import threading

import pytest


def test_threadsafe_calls_from_many_threads(loop):
    threads, per_thread = 4, 200
    seen = {t: [] for t in range(threads)}
    done = []
    start = threading.Barrier(threads)

    def record(t, i):
        seen[t].append(i)
        if sum(len(v) for v in seen.values()) == threads * per_thread:
            loop.stop()

    def worker(t):
        start.wait()
        for i in range(per_thread):
            loop.call_soon_threadsafe(record, t, i)
        done.append(t)

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    loop.run_forever()
    for w in workers:
        w.join()
    for t in range(threads):
        assert seen[t] == list(range(per_thread)), "each thread's calls in order"


def test_threadsafe_call_wakes_a_blocked_loop(loop):
    # Nothing is scheduled: the loop blocks in its poll until the thread
    # (which waits for the loop to be running) wakes it.
    running = threading.Event()
    loop.call_soon(running.set)

    def worker():
        running.wait()
        loop.call_soon_threadsafe(loop.stop)

    t = threading.Thread(target=worker)
    t.start()
    loop.run_forever()
    t.join()


def test_other_python_threads_run_while_the_loop_waits(loop):
    # The loop releases the GIL while it waits: a CPU-bound thread
    # finishes and wakes it.
    result = []

    def worker():
        result.append(sum(range(200_000)))
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(threading.Thread(target=worker).start)
    loop.run_forever()
    assert result == [sum(range(200_000))]


def test_add_reader_on_a_socketpair(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    got = []

    def on_readable():
        data = b.recv(100)
        got.append(data)
        if b"".join(got) == b"ping":
            loop.stop()

    loop.add_reader(b.fileno(), on_readable)
    loop.call_soon(a.send, b"ping")
    loop.run_forever()
    assert b"".join(got) == b"ping"
    assert loop.remove_reader(b.fileno()) is True
    assert loop.remove_reader(b.fileno()) is False
    a.close()
    b.close()


def test_add_writer_and_replace_reader(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    calls = []

    def on_writable():
        calls.append("w")
        loop.remove_writer(a)
        loop.stop()

    loop.add_reader(a, calls.append, "old reader")
    loop.add_reader(a, calls.append, "new reader")  # replaces
    loop.add_writer(a, on_writable)
    loop.run_forever()
    assert calls == ["w"]
    assert loop.remove_writer(a) is False
    assert loop.remove_reader(a) is True
    a.close()
    b.close()


def test_reader_on_a_transport_fd_is_refused(loop):
    async def main():
        a, b = socket.socketpair()
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.add_reader(a.fileno(), print)
        with pytest.raises(RuntimeError, match="is used by transport"):
            loop.remove_writer(a.fileno())
        transport.close()
        await asyncio.sleep(0)
        b.close()

    loop.run_until_complete(main())


def test_signal_handler_wakes_the_loop(loop):
    got = []

    def on_signal():
        got.append("usr1")
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR1, on_signal)
    # Sent from another thread while the loop is blocked: the wakeup fd
    # (asyncio's self-pipe, on a native fd watcher) wakes it.
    running = threading.Event()
    loop.call_soon(running.set)

    def sender():
        running.wait()
        os.kill(os.getpid(), signal.SIGUSR1)

    t = threading.Thread(target=sender)
    t.start()
    loop.run_forever()
    t.join()
    loop.remove_signal_handler(signal.SIGUSR1)
    assert got == ["usr1"]


def test_selector_view_reports_watchers(loop):
    import selectors

    a, b = socket.socketpair()
    with pytest.raises(KeyError):
        loop._selector.get_key(a)
    loop.add_reader(a, print)
    loop.add_writer(a, print)
    key = loop._selector.get_key(a)
    assert key.fd == a.fileno()
    assert key.events == selectors.EVENT_READ | selectors.EVENT_WRITE
    reader, writer = key.data
    assert reader._callback is print and writer._callback is print
    loop.remove_writer(a)
    assert loop._selector.get_key(a).events == selectors.EVENT_READ
    loop.remove_reader(a)
    with pytest.raises(KeyError):
        loop._selector.get_key(a)
    a.close()
    b.close()
