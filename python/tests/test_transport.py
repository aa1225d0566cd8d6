"""The stream transport's read path (asyncio's socket transport on
asyncio's loop, the native one on evloop's): every test runs on both loops
and expects the same. More in test_stream_transport.py."""

import asyncio
import contextvars

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
