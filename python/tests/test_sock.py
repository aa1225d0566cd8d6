"""The low-level socket calls (``loop.sock_*``), native on evloop: every
test runs on asyncio's loop and on evloop's and expects the same."""

import asyncio
import gc
import os
import socket

import pytest


def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def test_recv_waits_for_data(loop):
    a, b = pair()

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(b, 100))
        await asyncio.sleep(0)
        assert not task.done()
        await loop.sock_sendall(a, b"hello")
        return await task

    with a, b:
        assert loop.run_until_complete(main()) == b"hello"


def test_recv_returns_at_once_when_data_is_there(loop):
    a, b = pair()
    with a, b:
        a.send(b"ready")
        assert loop.run_until_complete(loop.sock_recv(b, 3)) == b"rea"
        assert loop.run_until_complete(loop.sock_recv(b, 100)) == b"dy"


def test_large_sendall_arrives_whole_and_in_order(loop):
    a, b = pair()
    payload = os.urandom(4 * 1024 * 1024)  # far beyond the socket buffers

    async def reader():
        got = bytearray()
        while len(got) < len(payload):
            chunk = await loop.sock_recv(b, 65536)
            assert chunk
            got += chunk
        return bytes(got)

    async def main():
        read = asyncio.ensure_future(reader())
        await loop.sock_sendall(a, memoryview(payload))
        return await read

    with a, b:
        assert loop.run_until_complete(main()) == payload


def test_cancelled_recv_loses_no_data_and_leaves_no_reader(loop):
    a, b = pair()

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(b, 100))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.sleep(0)
        a.send(b"kept")
        await asyncio.sleep(0.01)
        with pytest.raises(asyncio.CancelledError):
            await task
        # The cancelled call's watcher is gone: nothing to remove.
        assert loop.remove_reader(b) is False
        return await loop.sock_recv(b, 100)

    with a, b:
        assert loop.run_until_complete(main()) == b"kept"


def test_cancelled_sendall_leaves_no_writer(loop):
    a, b = pair()

    async def main():
        task = asyncio.ensure_future(loop.sock_sendall(a, b"x" * (8 * 1024 * 1024)))
        await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        assert loop.remove_writer(a) is False

    with a, b:
        loop.run_until_complete(main())


def test_pending_sendall_holds_its_buffer(loop):
    # asyncio keeps a memoryview of the data while it sends: the
    # bytearray cannot be resized under it.
    a, b = pair()
    data = bytearray(8 * 1024 * 1024)

    async def main():
        task = asyncio.ensure_future(loop.sock_sendall(a, data))
        await asyncio.sleep(0)
        with pytest.raises(BufferError):
            data.extend(b"more")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        data.extend(b"more")  # released once cancelled

    with a, b:
        loop.run_until_complete(main())


def test_recv_into_a_memoryview_slice(loop):
    a, b = pair()
    buf = bytearray(10)

    async def main():
        task = asyncio.ensure_future(loop.sock_recv_into(b, memoryview(buf)[2:]))
        await asyncio.sleep(0)
        await loop.sock_sendall(a, b"abc")
        return await task

    with a, b:
        assert loop.run_until_complete(main()) == 3
        assert buf == b"\0\0abc" + bytes(5)


def test_recv_into_a_read_only_buffer_raises_type_error(loop):
    a, b = pair()
    with a, b:
        a.send(b"x")
        with pytest.raises(TypeError):
            loop.run_until_complete(loop.sock_recv_into(b, b"immutable"))


def test_recv_with_a_negative_size_raises_value_error(loop):
    a, b = pair()
    with a, b, pytest.raises(ValueError):
        loop.run_until_complete(loop.sock_recv(b, -1))


def test_recv_on_a_closed_socket_raises_os_error(loop):
    a, b = pair()
    b.close()
    with a, pytest.raises(OSError):
        loop.run_until_complete(loop.sock_recv(b, 10))


def test_recv_sees_the_peer_close(loop):
    a, b = pair()

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(b, 10))
        await asyncio.sleep(0)
        a.close()
        return await task

    with b:
        assert loop.run_until_complete(main()) == b""


def test_sendall_to_a_closed_peer_raises(loop):
    a, b = pair()
    b.close()
    with a, pytest.raises((BrokenPipeError, ConnectionResetError)):
        loop.run_until_complete(loop.sock_sendall(a, b"x" * 1_000_000))


def test_accept_and_connect_over_tcp(loop):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    client = socket.socket()
    client.setblocking(False)

    async def main():
        accept = asyncio.ensure_future(loop.sock_accept(listener))
        await loop.sock_connect(client, listener.getsockname())
        conn, address = await accept
        with conn:
            assert conn.gettimeout() == 0  # made non-blocking, as asyncio does
            assert address == client.getsockname()
            await loop.sock_sendall(client, b"ping")
            assert await loop.sock_recv(conn, 10) == b"ping"

    with listener, client:
        loop.run_until_complete(main())


def test_connect_refused(loop):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    address = probe.getsockname()
    probe.close()  # nobody listens there now
    client = socket.socket()
    client.setblocking(False)
    with client, pytest.raises(ConnectionRefusedError):
        loop.run_until_complete(loop.sock_connect(client, address))


def test_udp_sendto_recvfrom_and_recvfrom_into(loop):
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b):
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)

    async def main():
        recv = asyncio.ensure_future(loop.sock_recvfrom(b, 100))
        await asyncio.sleep(0)
        assert await loop.sock_sendto(a, b"one", b.getsockname()) == 3
        assert await recv == (b"one", a.getsockname())
        buf = bytearray(8)
        recv_into = asyncio.ensure_future(loop.sock_recvfrom_into(b, buf))
        await asyncio.sleep(0)
        await loop.sock_sendto(a, b"two", b.getsockname())
        assert await recv_into == (3, a.getsockname())
        assert buf[:3] == b"two"

    with a, b:
        loop.run_until_complete(main())


def test_a_socket_used_by_a_transport_is_refused(loop):
    accepted = []

    async def main():
        server = await asyncio.start_server(lambda r, w: accepted.append(w), "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        fd = writer.get_extra_info("socket").fileno()
        alias = socket.socket(fileno=fd)  # the transport's own fd
        try:
            with pytest.raises(RuntimeError, match="is used by transport"):
                await loop.sock_recv(alias, 10)
        finally:
            alias.detach()
        writer.close()
        await writer.wait_closed()
        for w in accepted:  # 3.12's wait_closed waits for the connections too
            w.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())


def test_debug_mode_refuses_a_blocking_socket(loop):
    a, b = pair()
    b.setblocking(True)
    loop.set_debug(True)
    with a, b, pytest.raises(ValueError, match="non-blocking"):
        loop.run_until_complete(loop.sock_recv(b, 10))


def test_a_socket_subclass_gets_its_own_methods_called(loop):
    calls = []

    class Counting(socket.socket):
        def recv(self, n, *args):
            calls.append(n)
            return super().recv(n, *args)

    raw_a, raw_b = socket.socketpair()
    b = Counting(fileno=raw_b.detach())
    b.setblocking(False)
    raw_a.setblocking(False)

    async def main():
        task = asyncio.ensure_future(loop.sock_recv(b, 7))
        await asyncio.sleep(0)
        await loop.sock_sendall(raw_a, b"sub")
        return await task

    with raw_a, b:
        assert loop.run_until_complete(main()) == b"sub"
    assert calls and set(calls) == {7}


def test_a_pending_recv_does_not_keep_the_loop_alive(loop_factory):
    # The loop -> pending operation -> future -> task -> coroutine -> loop
    # cycle is visible to the GC: an abandoned loop is collected.
    import warnings
    import weakref

    lp = loop_factory()
    a, b = pair()

    async def waits():
        await lp.sock_recv(b, 10)

    task = lp.create_task(waits())
    lp.run_until_complete(asyncio.sleep(0))
    assert not task.done()
    ref = weakref.ref(lp)
    del lp, task
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gc.collect()
        gc.collect()
    assert ref() is None
    a.close()
    b.close()


def test_a_blocking_socket_does_not_stall_other_threads(loop):
    # The bytes come from another Python thread: a recv that blocked with
    # the GIL held would never see them (evloop's syscalls never block).
    import threading

    a, b = socket.socketpair()  # blocking
    go = threading.Event()

    def sender():
        go.wait()
        a.sendall(b"from a thread")

    thread = threading.Thread(target=sender)
    thread.start()

    async def main():
        go.set()
        got = b""
        while len(got) < 13:
            got += await loop.sock_recv(b, 100)
        return got

    with a, b:
        assert loop.run_until_complete(main()) == b"from a thread"
    thread.join()


def test_a_reused_fd_number_is_watched_afresh(loop):
    # A sock_recv keeps its read registration for the next call on the
    # same socket; a new socket that gets the closed one's fd number must
    # still be woken.
    async def main():
        a, b = pair()
        await loop.sock_sendall(a, b"one")
        assert await loop.sock_recv(b, 10) == b"one"
        read = asyncio.ensure_future(loop.sock_recv(b, 10))
        await asyncio.sleep(0)
        await loop.sock_sendall(a, b"two")
        assert await read == b"two"
        number = b.fileno()
        b.close()
        a.close()
        c, d = pair()
        with c, d:
            assert number in (c.fileno(), d.fileno())
            reader, writer = (c, d) if c.fileno() == number else (d, c)
            read = asyncio.ensure_future(loop.sock_recv(reader, 10))
            await asyncio.sleep(0)
            await loop.sock_sendall(writer, b"three")
            return await asyncio.wait_for(read, 5)

    assert loop.run_until_complete(main()) == b"three"


def test_data_nobody_waits_for_stays_for_the_next_recv(loop):
    a, b = pair()

    async def main():
        read = asyncio.ensure_future(loop.sock_recv(b, 10))
        await asyncio.sleep(0)
        await loop.sock_sendall(a, b"first")
        assert await read == b"first"
        await loop.sock_sendall(a, b"second")  # nobody is reading now
        for _ in range(5):
            await asyncio.sleep(0)
        assert loop.remove_reader(b) is False
        return await loop.sock_recv(b, 10)

    with a, b:
        assert loop.run_until_complete(main()) == b"second"


def test_a_cancelled_recv_does_not_keep_its_socket_alive(loop):
    import warnings
    import weakref

    a, b = pair()
    ref = weakref.ref(b)

    async def main(b):
        task = asyncio.ensure_future(loop.sock_recv(b, 10))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    loop.run_until_complete(main(b))
    loop.run_until_complete(asyncio.sleep(0))
    del b
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    assert ref() is None
    a.close()


# ----------------------------------------------------------- sock_sendfile


def file_of(tmp_path, size):
    data = os.urandom(size)
    path = tmp_path / "payload"
    path.write_bytes(data)
    return data, open(path, "rb")


async def read_exactly(loop, sock, n):
    got = bytearray()
    while len(got) < n:
        chunk = await loop.sock_recv(sock, 65536)
        assert chunk, f"end of stream after {len(got)} of {n} bytes"
        got += chunk
    return bytes(got)


def test_sendfile_of_a_temp_file_with_offset_and_count(loop, tmp_path):
    a, b = pair()
    data, f = file_of(tmp_path, 1 << 20)

    async def main():
        read = asyncio.ensure_future(read_exactly(loop, b, 500_000))
        sent = await loop.sock_sendfile(a, f, 1000, 500_000)
        return sent, await read

    with a, b, f:
        sent, got = loop.run_until_complete(main())
        assert sent == 500_000
        assert got == data[1000:501_000]
        # asyncio's contract: the file's position follows what was sent.
        assert f.tell() == 501_000


def test_sendfile_without_count_sends_to_the_end(loop, tmp_path):
    a, b = pair()
    data, f = file_of(tmp_path, 300_000)

    async def main():
        read = asyncio.ensure_future(read_exactly(loop, b, len(data) - 7))
        sent = await loop.sock_sendfile(a, f, 7)
        return sent, await read

    with a, b, f:
        sent, got = loop.run_until_complete(main())
        assert (sent, got) == (len(data) - 7, data[7:])
        assert f.tell() == len(data)


def test_sendfile_of_an_empty_file_sends_nothing(loop, tmp_path):
    a, b = pair()
    _, f = file_of(tmp_path, 0)
    with a, b, f:
        assert loop.run_until_complete(loop.sock_sendfile(a, f)) == 0
        assert f.tell() == 0


def test_sendfile_of_a_non_regular_file_falls_back_to_read_and_send(loop):
    import io

    a, b = pair()
    data = os.urandom(200_000)
    buffer = io.BytesIO(data)

    async def main():
        read = asyncio.ensure_future(read_exactly(loop, b, len(data) - 10))
        sent = await loop.sock_sendfile(a, buffer, 10)
        return sent, await read

    with a, b:
        sent, got = loop.run_until_complete(main())
        assert (sent, got) == (len(data) - 10, data[10:])
        assert buffer.tell() == len(data)
        with pytest.raises(asyncio.SendfileNotAvailableError):
            loop.run_until_complete(loop.sock_sendfile(a, io.BytesIO(data), fallback=False))


def test_cancelled_sendfile_loses_no_data(loop, tmp_path):
    a, b = pair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    data, f = file_of(tmp_path, 4 << 20)  # far beyond the socket buffers

    def drain():
        got = bytearray()
        while True:
            try:
                chunk = b.recv(65536)
            except BlockingIOError:
                return bytes(got)
            got += chunk

    async def main():
        task = asyncio.ensure_future(loop.sock_sendfile(a, f))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        first = drain()
        assert 0 < len(first) < len(data)
        assert loop.remove_writer(a) is False  # the cancelled call left no writer
        if loop.__class__.__module__.startswith("evloop"):
            # evloop leaves the position after what was sent (asyncio
            # leaves it where it was): a plain retry resumes.
            assert f.tell() == len(first)
        read = asyncio.ensure_future(read_exactly(loop, b, len(data) - len(first)))
        sent = await loop.sock_sendfile(a, f, len(first))
        return first + await read, sent, len(first)

    with a, b, f:
        got, sent, before = loop.run_until_complete(main())
        assert got == data
        assert sent == len(data) - before


def test_sendfile_to_a_closed_peer_raises_and_keeps_the_position(loop, tmp_path):
    a, b = pair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    data, f = file_of(tmp_path, 4 << 20)

    async def main():
        task = asyncio.ensure_future(loop.sock_sendfile(a, f))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not task.done()
        b.close()
        with pytest.raises(OSError):
            await task
        return f.tell()

    with a, f:
        position = loop.run_until_complete(main())
        # Some bytes went before the peer closed: the position says how many.
        assert 0 < position < len(data)
