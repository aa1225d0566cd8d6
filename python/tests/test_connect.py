"""create_connection: evloop's native path for an IP-literal host (the
socket, its connect and the transport made without asyncio's resolving
coroutines) gives what asyncio's gives. Every test runs on asyncio's loop
and on evloop's."""

import asyncio
import errno
import gc
import os
import socket
import warnings

import pytest

import evloop


class Client(asyncio.Protocol):
    def __init__(self):
        self.transport = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.lost.set_result(exc)


class Server(asyncio.Protocol):
    made = None

    def connection_made(self, transport):
        self.transport = transport
        if Server.made is not None and not Server.made.done():
            Server.made.set_result(transport)


def lowest_free_fd():
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


def fd_is_open(fd):
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def free_port():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens there now
    return port


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_an_ip_literal_connection_has_asyncios_socket_and_extra_info(loop, host):
    try:
        probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        probe.bind((host, 0))
        probe.close()
    except OSError:
        pytest.skip(f"cannot bind {host}")

    async def main():
        Server.made = loop.create_future()
        server = await loop.create_server(Server, host, 0)
        port = server.sockets[0].getsockname()[1]
        transport, client = await loop.create_connection(Client, host, port)
        accepted = await Server.made
        sock = transport.get_extra_info("socket")
        peer_sock = accepted.get_extra_info("socket")
        seen = {
            "family": sock.family,
            "type": sock.type,
            "proto": sock.proto,
            "timeout": sock.gettimeout(),
            "inheritable": os.get_inheritable(sock.fileno()),
            "nodelay": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0,
            "peer nodelay": peer_sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0,
            "sockname": transport.get_extra_info("sockname") == sock.getsockname(),
            "peername": transport.get_extra_info("peername") == server.sockets[0].getsockname(),
            "peer's peername": accepted.get_extra_info("peername") == sock.getsockname(),
            "peer's sockname": accepted.get_extra_info("sockname") == peer_sock.getsockname(),
            "protocol": transport.get_protocol() is client and client.transport is transport,
        }
        transport.close()
        await client.lost
        server.close()
        await server.wait_closed()
        return seen

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    assert loop.run_until_complete(main()) == {
        "family": family,
        "type": socket.SOCK_STREAM,
        "proto": socket.IPPROTO_TCP,
        "timeout": 0.0,
        "inheritable": False,
        "nodelay": True,
        "peer nodelay": True,
        "sockname": True,
        "peername": True,
        "peer's peername": True,
        "peer's sockname": True,
        "protocol": True,
    }


def test_options_given_at_their_defaults_connect_the_same(loop):
    async def main():
        server = await loop.create_server(Server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, client = await loop.create_connection(
            Client, "127.0.0.1", port, ssl=None, family=0, proto=0, flags=0, local_addr=None
        )
        peername = transport.get_extra_info("peername")
        transport.close()
        await client.lost
        server.close()
        await server.wait_closed()
        return peername, port

    peername, port = loop.run_until_complete(main())
    assert peername == ("127.0.0.1", port)


def test_a_refused_connection_raises_what_asyncio_raises_and_leaks_no_fd(loop):
    port = free_port()

    def refused(lp):
        try:
            lp.run_until_complete(lp.create_connection(asyncio.Protocol, "127.0.0.1", port))
        except ConnectionRefusedError as e:
            return e.errno, str(e)
        raise AssertionError("connected")

    reference = asyncio.SelectorEventLoop()
    try:
        expected = refused(reference)
    finally:
        reference.close()
    fd = lowest_free_fd()
    assert refused(loop) == expected
    assert expected[0] == errno.ECONNREFUSED
    assert not fd_is_open(fd)


def test_a_cancelled_connect_closes_its_socket(loop):
    # A listener nobody accepts on: no fd is made on the server side that
    # could take the client's number once it is closed.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    async def main():
        fd = lowest_free_fd()
        connecting = asyncio.ensure_future(loop.create_connection(Client, *listener.getsockname()))
        await asyncio.sleep(0)  # the socket is made and its connect started
        opened = fd_is_open(fd)
        connecting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await connecting
        return opened, fd_is_open(fd)

    with listener:
        assert loop.run_until_complete(main()) == (True, False)


def test_a_failing_protocol_factory_raises_and_its_socket_is_closed(loop):
    def broken():
        raise ZeroDivisionError

    async def main():
        server = await loop.create_server(Server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        fd = lowest_free_fd()
        with pytest.raises(ZeroDivisionError):
            await loop.create_connection(broken, "127.0.0.1", port)
        server.close()
        await server.wait_closed()
        return fd

    with warnings.catch_warnings():
        # asyncio leaves the socket to the GC (ResourceWarning there).
        warnings.simplefilter("ignore", ResourceWarning)
        fd = loop.run_until_complete(main())
        gc.collect()
    assert not fd_is_open(fd)


def test_a_loop_subclass_makes_the_transports_and_connects_its_own_way(loop_factory):
    made = []
    connects = []

    base = loop_factory if isinstance(loop_factory, type) else evloop.EventLoop

    class Loop(base):
        def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
            made.append("server" if server is not None else "client")
            return super()._make_socket_transport(sock, protocol, waiter, extra=extra, server=server)

        async def sock_connect(self, sock, address):
            connects.append(address)
            return await super().sock_connect(sock, address)

    lp = Loop()

    async def main():
        Server.made = lp.create_future()
        server = await lp.create_server(Server, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, client = await lp.create_connection(Client, "127.0.0.1", port)
        await Server.made
        transport.close()
        await client.lost
        server.close()
        await server.wait_closed()
        return port

    try:
        port = lp.run_until_complete(main())
    finally:
        lp.close()
    assert sorted(made) == ["client", "server"]
    assert connects == [("127.0.0.1", port)]


def test_the_loop_maps_the_fd_to_its_transport_weakly(loop):
    async def main():
        accepted = loop.create_future()

        def serve():
            protocol = Client()
            accepted.set_result(protocol)
            return protocol

        server = await loop.create_server(serve, "127.0.0.1", 0)
        transport, client = await loop.create_connection(Client, *server.sockets[0].getsockname())
        peer = await accepted
        fd = transport.get_extra_info("socket").fileno()
        peer_fd = peer.transport.get_extra_info("socket").fileno()
        mapped = loop._transports.get(fd) is transport and loop._transports.get(peer_fd) is peer.transport
        transport.close()
        await client.lost
        await peer.lost  # the peer read the end of the stream and closed
        server.close()
        await server.wait_closed()
        return mapped, fd, peer_fd

    mapped, fd, peer_fd = loop.run_until_complete(main())
    gc.collect()
    assert mapped
    assert fd not in loop._transports and peer_fd not in loop._transports
    # The entries themselves went (the weak references' callbacks ran).
    assert {fd, peer_fd}.isdisjoint(loop._transports.data)


def test_evloop_binds_a_transports_methods_on_first_use(loop):
    if not isinstance(loop, evloop.EventLoop):
        pytest.skip("evloop's transport")

    async def main():
        server = await loop.create_server(Server, "127.0.0.1", 0)
        transport, client = await loop.create_connection(Client, *server.sockets[0].getsockname())
        before = "get_write_buffer_size" in transport.__dict__
        size = transport.get_write_buffer_size()
        after = transport.__dict__.get("get_write_buffer_size")
        same = transport.get_write_buffer_size is after
        transport.close()
        await client.lost
        server.close()
        await server.wait_closed()
        return before, size, after is not None, same

    assert loop.run_until_complete(main()) == (False, 0, True, True)


@pytest.mark.parametrize("where", ["protocol_factory", "connection_made"])
def test_a_call_cancelled_once_the_transport_is_made_closes_it(loop, where):
    # Cancelled from inside the call's own steps: the transport that was
    # made gets connection_made, then connection_lost, and its socket is
    # closed; the call raises CancelledError.
    events = []

    class Cancelling(asyncio.Protocol):
        def __init__(self):
            if where == "protocol_factory":
                task.cancel()

        def connection_made(self, transport):
            events.append("made")
            self.sock = transport.get_extra_info("socket")
            if where == "connection_made":
                task.cancel()

        def connection_lost(self, exc):
            events.append(("lost", exc))
            lost.set_result(self.sock)

    async def main():
        nonlocal task, lost
        lost = loop.create_future()
        server = await loop.create_server(Server, "127.0.0.1", 0)
        task = loop.create_task(loop.create_connection(Cancelling, *server.sockets[0].getsockname()))
        with pytest.raises(asyncio.CancelledError):
            await task
        sock = await lost  # closed just after connection_lost
        server.close()
        await server.wait_closed()
        return sock.fileno()

    task = lost = None
    assert loop.run_until_complete(main()) == -1
    assert events == ["made", ("lost", None)]


def test_the_factory_and_connection_made_see_the_callers_context(loop):
    import contextvars

    var = contextvars.ContextVar("var")
    seen = []

    class Seeing(asyncio.Protocol):
        def __init__(self):
            seen.append(("factory", var.get(None)))

        def connection_made(self, transport):
            seen.append(("made", var.get(None)))
            self.transport = transport

    async def main():
        server = await loop.create_server(Server, "127.0.0.1", 0)
        var.set("caller's")
        transport, _ = await loop.create_connection(Seeing, *server.sockets[0].getsockname())
        transport.close()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(main())
    assert seen == [("factory", "caller's"), ("made", "caller's")]


def test_a_new_transports_mapping_given_to_the_loop_is_the_one_written(loop):
    import weakref

    async def connect_once():
        peers = []

        def serve():
            peers.append(Client())
            return peers[-1]

        server = await loop.create_server(serve, "127.0.0.1", 0)
        transport, client = await loop.create_connection(Client, *server.sockets[0].getsockname())
        fd = transport.get_extra_info("socket").fileno()
        mapped = loop._transports.get(fd) is transport
        transport.close()
        await client.lost
        await peers[0].lost  # the peer read the end of the stream and closed
        server.close()
        await server.wait_closed()
        return mapped

    first = loop.run_until_complete(connect_once())
    old = loop._transports
    loop._transports = weakref.WeakValueDictionary()
    second = loop.run_until_complete(connect_once())
    assert (first, second) == (True, True)
    gc.collect()
    assert len(old) == 0 and len(loop._transports) == 0


def test_a_sock_connect_given_to_the_loop_class_later_is_used(loop_class):
    # The native path remembers that the loop class keeps the loop's own
    # connect steps; a class given its own sock_connect afterwards is seen.
    cls = loop_class

    class Sub(cls):
        pass

    used = []

    async def own_connect(self, sock, address):
        used.append(address)
        return await cls.sock_connect(self, sock, address)

    lp = Sub()
    try:

        async def once():
            server = await lp.create_server(asyncio.Protocol, "127.0.0.1", 0)
            transport, client = await lp.create_connection(Client, *server.sockets[0].getsockname())
            transport.close()
            await client.lost
            server.close()
            await server.wait_closed()

        lp.run_until_complete(once())
        assert used == []
        Sub.sock_connect = own_connect
        lp.run_until_complete(once())
        assert len(used) == 1
    finally:
        lp.close()
