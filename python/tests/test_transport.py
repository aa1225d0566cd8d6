"""The stream transport's read path (asyncio's socket transport on
asyncio's loop, the native one on evloop's): every test runs on both loops
and expects the same. More in test_stream_transport.py."""

import asyncio
import contextvars
import sys

import pytest

request_id = contextvars.ContextVar("request_id", default=None)


class Recorder(asyncio.Protocol):
    def __init__(self):
        self.events = []
        self.closed = asyncio.get_running_loop().create_future()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.events.append(("data", bytes(data), request_id.get()))

    def eof_received(self):
        self.events.append(("eof",))

    def connection_lost(self, exc):
        self.events.append(("lost", type(exc).__name__ if exc else None))
        self.closed.set_result(None)


async def connected_pair(loop, protocol_factory):
    """A server transport (writer side) and a client protocol."""
    accepted = loop.create_future()

    class Server(asyncio.Protocol):
        def connection_made(self, transport):
            accepted.set_result(transport)

    server = await loop.create_server(Server, "127.0.0.1", 0)
    _, client = await loop.create_connection(protocol_factory, *server.sockets[0].getsockname())
    peer = await accepted
    return server, peer, client


async def settle(loop, predicate):
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


def test_data_eof_and_close_in_the_protocols_context(loop):
    async def main():
        request_id.set("req-1")  # create_connection's reader copies this context
        server, peer, client = await connected_pair(loop, Recorder)
        peer.write(b"hello ")
        peer.write(b"world")
        await settle(loop, lambda: sum(len(e[1]) for e in client.events if e[0] == "data") == 11)
        peer.write_eof()
        await settle(loop, lambda: ("eof",) in client.events)
        await client.closed
        peer.close()
        server.close()
        await server.wait_closed()
        data = b"".join(e[1] for e in client.events if e[0] == "data")
        contexts = {e[2] for e in client.events if e[0] == "data"}
        return data, contexts, client.events[-2:]

    data, contexts, tail = loop.run_until_complete(main())
    assert data == b"hello world"
    assert contexts == {"req-1"}
    assert tail == [("eof",), ("lost", None)]


def test_pause_and_resume_reading(loop):
    async def main():
        server, peer, client = await connected_pair(loop, Recorder)
        client.transport.pause_reading()
        assert not client.transport.is_reading()
        peer.write(b"held")
        for _ in range(20):
            await asyncio.sleep(0)
        held = list(client.events)
        client.transport.resume_reading()
        await settle(loop, lambda: client.events)
        client.transport.close()
        await client.closed
        peer.close()
        server.close()
        await server.wait_closed()
        return held, client.events[0][:2]

    held, first = loop.run_until_complete(main())
    assert held == []
    assert first == ("data", b"held")


def test_switching_to_a_buffered_protocol(loop):
    class Buffered(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(64)
            self.got = bytearray()

        def get_buffer(self, sizehint):
            return self.buf

        def buffer_updated(self, nbytes):
            self.got += self.buf[:nbytes]

        def connection_lost(self, exc):
            pass

    async def main():
        server, peer, client = await connected_pair(loop, Recorder)
        peer.write(b"one")
        await settle(loop, lambda: client.events)
        buffered = Buffered()
        client.transport.set_protocol(buffered)
        peer.write(b"two")
        await settle(loop, lambda: buffered.got)
        client.transport.close()
        peer.close()
        server.close()
        await server.wait_closed()
        return client.events[0][1], bytes(buffered.got)

    assert loop.run_until_complete(main()) == (b"one", b"two")


def test_an_exception_in_data_received_is_a_fatal_error(loop):
    reported = []
    loop.set_exception_handler(lambda lp, ctx: reported.append(ctx["message"]))

    class Failing(Recorder):
        def data_received(self, data):
            raise ValueError("bad data")

    async def main():
        server, peer, client = await connected_pair(loop, Failing)
        peer.write(b"x")
        await client.closed
        peer.close()
        server.close()
        await server.wait_closed()
        return client.events

    assert loop.run_until_complete(main()) == [("lost", "ValueError")]
    assert reported == ["Fatal error: protocol.data_received() call failed."]


def test_keyboard_interrupt_in_data_received_ends_the_run(loop):
    class Interrupting(Recorder):
        def data_received(self, data):
            raise KeyboardInterrupt

    async def main():
        server, peer, client = await connected_pair(loop, Interrupting)
        peer.write(b"x")
        await asyncio.sleep(10)

    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(main())
    for task in asyncio.all_tasks(loop):
        task.cancel()
    loop.run_until_complete(asyncio.sleep(0))


def test_a_failing_connection_made_is_reported_and_the_connection_goes_on(loop):
    # asyncio queues connection_made, the start of reading and the
    # waiter's result as three handles: the first failing leaves the
    # other two to run (evloop runs the three as one entry).
    reported = []
    loop.set_exception_handler(lambda lp, ctx: reported.append(ctx))

    class Failing(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            raise ValueError("bad start")

    async def main():
        server, peer, client = await connected_pair(loop, Failing)
        peer.write(b"still read")
        await settle(loop, lambda: client.events)
        peer.close()
        await client.closed
        server.close()
        await server.wait_closed()
        return client.events

    events = loop.run_until_complete(main())
    assert [e[:2] for e in events] == [("data", b"still read"), ("eof",), ("lost", None)]
    assert len(reported) == 1
    ctx = reported[0]
    assert ctx["message"].startswith("Exception in callback ")
    # Outside debug mode, Python 3.13's reprs leave the arguments out.
    assert ("Failing.connection_made()" if sys.version_info >= (3, 13) else "Failing.connection_made(<") in ctx["message"]
    assert type(ctx["exception"]) is ValueError
    assert "handle" in ctx and "Failing.connection_made" in repr(ctx["handle"])


def test_reads_do_not_see_what_connection_made_sets_in_its_context(loop):
    # Each of asyncio's queued calls runs in its own copy of the context
    # the transport was made in.
    seen = {}

    class Setting(Recorder):
        def connection_made(self, transport):
            super().connection_made(transport)
            request_id.set("set by connection_made")

        def connection_lost(self, exc):
            seen["lost"] = request_id.get()
            super().connection_lost(exc)

    async def main():
        request_id.set("req-2")
        server, peer, client = await connected_pair(loop, Setting)
        seen["task"] = request_id.get()
        peer.write(b"x")
        await settle(loop, lambda: client.events)
        client.transport.close()
        await client.closed
        peer.close()
        server.close()
        await server.wait_closed()
        return client.events

    events = loop.run_until_complete(main())
    assert events[0] == ("data", b"x", "req-2")
    assert seen == {"task": "req-2", "lost": "req-2"}


def test_keyboard_interrupt_in_connection_made_ends_the_run_and_the_connection_lives_on(loop):
    class Interrupting(Recorder):
        interrupt = True

        def connection_made(self, transport):
            super().connection_made(transport)
            if Interrupting.interrupt:
                Interrupting.interrupt = False
                raise KeyboardInterrupt

    async def main():
        server, peer, client = await connected_pair(loop, Interrupting)
        peer.write(b"after")
        await settle(loop, lambda: client.events)
        client.transport.close()
        await client.closed
        peer.close()
        server.close()
        await server.wait_closed()
        return client.events

    task = loop.create_task(main())
    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(task)
    # The run ended; running the loop again finishes the connection.
    events = loop.run_until_complete(task)
    assert [e[:2] for e in events] == [("data", b"after"), ("lost", None)]


def test_a_failing_connection_lost_is_reported_as_its_handle(loop):
    reported = []
    loop.set_exception_handler(lambda lp, ctx: reported.append(ctx))

    class Failing(Recorder):
        def connection_lost(self, exc):
            super().connection_lost(exc)
            raise ValueError("bad end")

    async def main():
        server, peer, client = await connected_pair(loop, Failing)
        client.transport.close()
        await client.closed
        fd_closed = client.transport.get_extra_info("socket").fileno() == -1
        peer.close()
        server.close()
        await server.wait_closed()
        return fd_closed

    assert loop.run_until_complete(main())
    assert len(reported) == 1
    shown = "_call_connection_lost()" if sys.version_info >= (3, 13) else "_call_connection_lost(None)"
    assert shown in reported[0]["message"]
    assert type(reported[0]["exception"]) is ValueError
    assert "handle" in reported[0]


def test_debug_mode_turned_on_while_a_start_is_queued(loop):
    # Two connections in the backlog are accepted in one batch: the second
    # protocol's factory turns debug mode on while the first transport's
    # start is queued; it still runs, timed as debug mode times handles.
    import socket

    made = []

    class Server(asyncio.Protocol):
        def __init__(self):
            if made or len(factories) == 2:
                loop.set_debug(True)

        def connection_made(self, transport):
            made.append(transport)
            transport.write(b"hi")
            transport.close()

    factories = []

    def factory():
        factories.append(None)
        return Server()

    async def main():
        server = await loop.create_server(factory, "127.0.0.1", 0)
        address = server.sockets[0].getsockname()
        clients = [socket.create_connection(address) for _ in range(2)]
        await settle(loop, lambda: len(made) == 2)
        got = [c.recv(2) for c in clients]
        for c in clients:
            c.close()
        server.close()
        await server.wait_closed()
        return got

    assert loop.run_until_complete(main()) == [b"hi", b"hi"]
    assert loop.get_debug()
    loop.set_debug(False)
