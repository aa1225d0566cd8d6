"""Accepting connections: ``sock_accept`` and servers' accept loop (native
on evloop, ``python/src/accept.rs``) give the same sockets, addresses and
error handling as asyncio's ``socket.accept()``-based ones."""

import asyncio
import errno
import os
import resource
import socket
import tempfile
import warnings

import pytest

import evloop
from asyncio import constants


def listening(family=socket.AF_INET, address=("127.0.0.1", 0)):
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(8)
    listener.setblocking(False)
    return listener


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_sock_accept_makes_the_socket_socket_accept_makes(loop, family):
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6")
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    try:
        listener = listening(family, (host, 0))
    except OSError:
        pytest.skip(f"cannot listen on {host}")
    client = socket.socket(family, socket.SOCK_STREAM)

    async def main():
        accept = asyncio.ensure_future(loop.sock_accept(listener))
        await asyncio.sleep(0)
        assert not accept.done()
        client.connect(listener.getsockname())
        conn, address = await accept
        with conn:
            assert type(conn) is socket.socket
            assert (conn.family, conn.type, conn.proto) == (listener.family, listener.type, listener.proto)
            assert conn.family is socket.AddressFamily(family)  # an enum, as Python's own
            assert conn.gettimeout() == 0
            assert not os.get_inheritable(conn.fileno())
            assert address == client.getsockname()
            assert conn.getpeername() == address
            client.sendall(b"ping")
            assert await loop.sock_recv(conn, 10) == b"ping"

    with listener, client:
        loop.run_until_complete(main())


def test_sock_accept_names_unix_peers_as_python_does(loop):
    with tempfile.TemporaryDirectory() as tmp:
        listener = listening(socket.AF_UNIX, os.path.join(tmp, "server"))
        named = os.path.join(tmp, "client")
        abstract = b"\0evloop-accept-test-%d" % os.getpid()
        clients = []

        async def accept_from(bind):
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            clients.append(client)
            if bind is not None:
                client.bind(bind)
            client.connect(listener.getsockname())
            conn, address = await loop.sock_accept(listener)
            conn.close()
            return address

        async def main():
            assert await accept_from(None) == ""  # unnamed, the usual client
            assert await accept_from(named) == named
            assert await accept_from(abstract) == abstract

        try:
            with listener:
                loop.run_until_complete(main())
        finally:
            for c in clients:
                c.close()


def test_a_listener_of_a_socket_subclass_gets_its_own_accept_called(loop):
    calls = []

    class Counting(socket.socket):
        def accept(self):
            calls.append("accept")
            return super().accept()

    listener = Counting(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    client = socket.socket()

    async def main():
        accept = asyncio.ensure_future(loop.sock_accept(listener))
        await asyncio.sleep(0)
        client.connect(listener.getsockname())
        conn, _ = await accept
        conn.close()

    with listener, client:
        loop.run_until_complete(main())
    assert calls[-1] == "accept"


def test_a_server_takes_a_lone_connection_with_one_accept_and_a_burst_whole(loop):
    # evloop takes a lone connection with one accept() and no second one
    # that finds none (EAGAIN costs the kernel a socket made and freed);
    # a listener ready again at the next poll gets asyncio's batch, which
    # drains it. asyncio always batches until the listener is drained.
    calls = []

    class Counting(socket.socket):
        def accept(self):
            try:
                pair = super().accept()
            except BlockingIOError:
                calls.append("none")
                raise
            calls.append("one")
            return pair

    listener = Counting(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.setblocking(False)
    made = []
    clients = []

    class Served(asyncio.Protocol):
        def connection_made(self, transport):
            made.append(transport)
            if waiter is not None and len(made) >= wanted and not waiter.done():
                waiter.set_result(None)

    waiter, wanted = None, 0

    async def until(n):
        nonlocal waiter, wanted
        waiter, wanted = loop.create_future(), n
        if len(made) < n:
            await asyncio.wait_for(waiter, 10)

    async def main():
        server = await loop.create_server(Served, sock=listener)
        address = listener.getsockname()
        for i in range(1, 4):  # lone connections, each served before the next
            clients.append(socket.create_connection(address))
            await until(i)
            # A pass that waits (a timer): the loop polls, and the listener
            # is not ready at that poll. (With callbacks ready the loop
            # polls only every 250 µs: the next connection could otherwise
            # come at the next poll, which makes it a burst.)
            await asyncio.sleep(0.001)
        lone = list(calls)
        calls.clear()
        for _ in range(20):  # a burst: all waiting before the loop looks
            clients.append(socket.create_connection(address))
        await until(23)
        server.close()
        for t in made:
            t.close()
        await server.wait_closed()
        return lone

    try:
        lone = loop.run_until_complete(main())
    finally:
        for c in clients:
            c.close()
    assert len(made) == 23
    assert calls.count("one") == 20
    if isinstance(loop, evloop.EventLoop):
        assert lone == ["one"] * 3
        # One taken alone, then the rest in one batch that ends drained.
        assert calls == ["one"] * 20 + ["none"]
    else:
        assert lone == ["one", "none"] * 3
        assert calls == ["one"] * 20 + ["none"]


def test_a_cancelled_sock_accept_leaves_the_connection_for_the_next(loop):
    listener = listening()
    client = socket.socket()

    async def main():
        first = asyncio.ensure_future(loop.sock_accept(listener))
        await asyncio.sleep(0)
        first.cancel()
        client.connect(listener.getsockname())
        await asyncio.sleep(0)
        conn, address = await loop.sock_accept(listener)
        conn.close()
        return address

    with listener, client:
        assert loop.run_until_complete(main()) == client.getsockname()


def test_a_server_serves_each_connection_with_a_protocol_of_its_own(loop):
    made = []

    class Greeter(asyncio.Protocol):
        def connection_made(self, transport):
            made.append(transport.get_extra_info("peername"))
            transport.write(b"hello %d" % len(made))
            transport.close()

    async def main():
        server = await loop.create_server(Greeter, "127.0.0.1", 0)
        address = server.sockets[0].getsockname()
        clients = [socket.socket() for _ in range(3)]
        for c in clients:
            c.connect(address)  # all three wait in the backlog together
            c.setblocking(False)
        greetings = sorted([await loop.sock_recv(c, 100) for c in clients])
        names = sorted(c.getsockname() for c in clients)
        for c in clients:
            c.close()
        server.close()
        await server.wait_closed()
        return greetings, names

    greetings, names = loop.run_until_complete(main())
    assert greetings == [b"hello 1", b"hello 2", b"hello 3"]
    assert sorted(made) == names


def test_a_failing_protocol_factory_closes_the_connection_and_is_reported_in_debug_mode(loop):
    reported = []
    loop.set_exception_handler(lambda lp, context: reported.append(context))
    loop.set_debug(True)

    def factory():
        raise ZeroDivisionError("no protocol")

    async def main():
        server = await loop.create_server(factory, "127.0.0.1", 0)
        client = socket.socket()
        client.connect(server.sockets[0].getsockname())
        client.setblocking(False)
        with client:
            while not any("transport creation" in c["message"] for c in reported):
                await asyncio.sleep(0)
            if isinstance(loop, evloop.EventLoop):
                # evloop closes the connection at once (asyncio leaves it
                # to the GC): the client reads its end.
                assert await asyncio.wait_for(loop.sock_recv(client, 10), 5) == b""
        server.close()
        await server.wait_closed()

    with warnings.catch_warnings():
        # asyncio's own loop leaves the socket to the GC, which warns.
        warnings.simplefilter("ignore", ResourceWarning)
        loop.run_until_complete(asyncio.wait_for(main(), 5))
    [context] = [c for c in reported if "transport creation" in c["message"]]
    assert context["message"] == "Error on transport creation for incoming connection"
    assert isinstance(context["exception"], ZeroDivisionError)


def test_a_server_out_of_fds_backs_off_and_accepts_again(loop, monkeypatch):
    monkeypatch.setattr(constants, "ACCEPT_RETRY_DELAY", 0.01)
    reported = loop.create_future()
    served = loop.create_future()

    def handler(lp, context):
        if not reported.done():
            reported.set_result(context)

    loop.set_exception_handler(handler)

    class Served(asyncio.Protocol):
        def connection_made(self, transport):
            transport.close()
            if not served.done():
                served.set_result(None)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    async def main():
        server = await loop.create_server(Served, "127.0.0.1", 0)
        client = socket.socket()
        client.connect(server.sockets[0].getsockname())  # waits in the backlog
        # No fd below the limit is free: accepting fails with EMFILE.
        lowest_free = os.open(os.devnull, os.O_RDONLY)
        os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
        try:
            context = await asyncio.wait_for(reported, 5)
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert context["message"] == "socket.accept() out of system resource"
        assert isinstance(context["exception"], OSError)
        assert context["exception"].errno == errno.EMFILE
        # Past the back-off, the waiting connection is served.
        await asyncio.wait_for(served, 5)
        client.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())



def test_protocols_are_made_in_the_context_the_server_started_in(loop):
    import contextvars

    var = contextvars.ContextVar("var", default="unset")
    seen = []

    class Seen(asyncio.Protocol):
        def __init__(self):
            seen.append(("factory", var.get()))

        def connection_made(self, transport):
            seen.append(("made", var.get()))
            var.set("changed by the protocol")
            transport.close()

    async def start():
        var.set("at create_server")
        return await loop.create_server(Seen, "127.0.0.1", 0)

    async def main():
        server = await loop.create_task(start())
        for _ in range(2):
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
            assert await reader.read() == b""
            writer.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(asyncio.wait_for(main(), 5))
    # Each connection sees the server's context, not what an earlier
    # connection's protocol set in its own copy.
    assert seen == [("factory", "at create_server"), ("made", "at create_server")] * 2


def test_an_accept_error_is_reported_and_the_loop_goes_on(loop):
    class Broken(socket.socket):
        def accept(self):
            raise RuntimeError("accept is broken")

    reported = loop.create_future()

    def handler(lp, context):
        if not reported.done():
            reported.set_result(context)

    loop.set_exception_handler(handler)
    listener = Broken(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)

    async def main():
        server = await loop.create_server(asyncio.Protocol, sock=listener)
        client = socket.socket()
        client.connect(listener.getsockname())
        with client:
            context = await asyncio.wait_for(reported, 5)
            server.close()
            await server.wait_closed()
        await asyncio.sleep(0)
        return context

    context = loop.run_until_complete(main())
    assert isinstance(context["exception"], RuntimeError)
    assert context["message"].startswith("Exception in callback")


def test_a_failing_protocol_factory_leaves_the_server_serving(loop):
    made = []

    def factory():
        if not made:
            made.append("failed")
            raise ZeroDivisionError("no protocol")
        made.append("served")
        return asyncio.Protocol()

    async def main():
        server = await loop.create_server(factory, "127.0.0.1", 0)
        address = server.sockets[0].getsockname()
        for _ in range(2):
            reader, writer = await asyncio.open_connection(*address)
            while len(made) < 1 + (_ == 1):
                await asyncio.sleep(0)
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()

    with warnings.catch_warnings():
        # asyncio's own loop leaves the failed socket to the GC, which warns.
        warnings.simplefilter("ignore", ResourceWarning)
        loop.run_until_complete(asyncio.wait_for(main(), 5))
    assert made == ["failed", "served"]


def test_a_server_counts_its_connections_as_asyncio_does(loop):
    # Python 3.12's wait_closed waits for the connections a closed server
    # still has (3.11's returns at once); evloop keeps asyncio's count.
    import sys

    accepted = []

    class Keep(asyncio.Protocol):
        def connection_made(self, transport):
            accepted.append(transport)

    async def main():
        server = await loop.create_server(Keep, "127.0.0.1", 0)
        tr, _ = await loop.create_connection(asyncio.Protocol, *server.sockets[0].getsockname())
        while not accepted:
            await asyncio.sleep(0)
        server.close()
        waiting = asyncio.ensure_future(server.wait_closed())
        for _ in range(5):
            await asyncio.sleep(0)
        before = waiting.done()
        accepted[0].close()
        await asyncio.wait_for(waiting, 5)
        tr.close()
        return before

    assert loop.run_until_complete(main()) is (sys.version_info < (3, 12))
