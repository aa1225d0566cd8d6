"""Datagram endpoints (``loop.create_datagram_endpoint``), native on
evloop: every test runs on asyncio's loop and on evloop's and expects the
same."""

import asyncio
import gc
import os
import socket
import sys
import warnings
import weakref

import evloop
import pytest


def skip_asyncio_313(loop, why):
    """asyncio's own datagram transport on Python 3.13 does not do what
    these tests hold evloop to (and evloop does): its variant is skipped."""
    if sys.version_info >= (3, 13) and not isinstance(loop, evloop.EventLoop):
        pytest.skip(f"asyncio's datagram transport on 3.13: {why}")


class Recorder(asyncio.DatagramProtocol):
    """Keeps every call the transport makes, in order."""

    def __init__(self):
        loop = asyncio.get_running_loop()
        self.transport = None
        self.events = []
        self.datagrams = []
        self.errors = []
        self.lost = loop.create_future()
        self.arrived = asyncio.Event()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def datagram_received(self, data, addr):
        self.datagrams.append((data, addr))
        self.arrived.set()

    def error_received(self, exc):
        self.errors.append(exc)
        self.arrived.set()

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append("lost")
        self.lost.set_result(exc)


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


def fd_count():
    return len(os.listdir("/proc/self/fd"))


def test_echo_many_datagrams(loop):
    async def main():
        server, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        address = server.get_extra_info("sockname")
        client, proto = await loop.create_datagram_endpoint(Recorder, remote_addr=address)
        for i in range(500):
            proto.arrived.clear()
            client.sendto(b"%d" % i)
            await proto.arrived.wait()
        client.close()
        server.close()
        await proto.lost
        return proto.datagrams, address

    datagrams, address = loop.run_until_complete(main())
    assert [d for d, _ in datagrams] == [b"%d" % i for i in range(500)]
    assert {a for _, a in datagrams} == {address}


def test_unconnected_endpoint_sends_to_any_address(loop):
    async def main():
        a, pa = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        b, pb = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        a.sendto(b"to b", b.get_extra_info("sockname"))
        await pb.arrived.wait()
        data, sender = pb.datagrams[0]
        b.sendto(b"reply", sender)
        await pa.arrived.wait()
        a.close()
        b.close()
        await pa.lost
        await pb.lost
        return pa.datagrams, pb.datagrams, a.get_extra_info("sockname")

    got_a, got_b, a_name = loop.run_until_complete(main())
    assert got_b == [(b"to b", a_name)]
    assert got_a[0][0] == b"reply"


def test_refused_datagram_on_a_connected_endpoint_is_error_received(loop):
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    address = probe.getsockname()
    probe.close()  # nobody listens there now: the kernel answers ICMP

    async def main():
        transport, proto = await loop.create_datagram_endpoint(Recorder, remote_addr=address)
        transport.sendto(b"anyone?")
        await asyncio.wait_for(proto.arrived.wait(), 10)
        transport.close()
        await proto.lost
        return proto

    proto = loop.run_until_complete(main())
    assert proto.datagrams == []
    assert len(proto.errors) == 1
    assert isinstance(proto.errors[0], ConnectionRefusedError)
    assert proto.events == ["made", "lost"]


def test_extra_info_and_argument_checks(loop):
    async def main():
        server, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        address = server.get_extra_info("sockname")
        client, proto = await loop.create_datagram_endpoint(Recorder, remote_addr=address)
        try:
            sock = client.get_extra_info("socket")
            # A view of the socket: usable, but it does not close the fd.
            assert sock.getsockname() == client.get_extra_info("sockname")
            assert sock.fileno() >= 0
            assert client.get_extra_info("peername") == address
            assert server.get_extra_info("peername") is None
            assert client.get_extra_info("nothing", "default") == "default"
            assert client.get_protocol() is proto
            assert client.get_write_buffer_size() == 0
            with pytest.raises(TypeError):
                client.sendto("text")
            with pytest.raises(ValueError):
                client.sendto(b"x", ("127.0.0.1", 1))
            client.sendto(b"ok", address)  # the remote address itself is fine
            await proto.arrived.wait()
            assert proto.datagrams == [(b"ok", address)]
            client.set_write_buffer_limits(high=1000)
            assert client.get_write_buffer_limits() == (250, 1000)
            with pytest.raises(ValueError):
                client.set_write_buffer_limits(high=1, low=2)
            assert not client.is_closing()
        finally:
            client.close()
            server.close()
        assert client.is_closing()
        await proto.lost
        assert sock.fileno() == -1  # closed with the transport

    loop.run_until_complete(main())


def test_reuse_port_allow_broadcast_and_sock(loop):
    async def main():
        t1, p1 = await loop.create_datagram_endpoint(
            Recorder, local_addr=("127.0.0.1", 0), reuse_port=True, allow_broadcast=True
        )
        sock = t1.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
        # A second endpoint on the same port, thanks to SO_REUSEPORT.
        t2, p2 = await loop.create_datagram_endpoint(
            Recorder, local_addr=t1.get_extra_info("sockname"), reuse_port=True
        )
        own = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        own.bind(("127.0.0.1", 0))
        t3, p3 = await loop.create_datagram_endpoint(Recorder, sock=own)
        assert t3.get_extra_info("sockname") == own.getsockname()
        t3.sendto(b"from sock=", t1.get_extra_info("sockname"))
        waits = [asyncio.ensure_future(p1.arrived.wait()), asyncio.ensure_future(p2.arrived.wait())]
        await asyncio.wait(waits, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()
        for t in (t1, t2, t3):
            t.close()
        for p in (p1, p2, p3):
            await p.lost
        return p1.datagrams + p2.datagrams, own

    got, own = loop.run_until_complete(main())
    assert [d for d, _ in got] == [b"from sock="]
    assert own.fileno() == -1  # the transport closed the socket it was given


def unix_pair(tmp_path, loop, **kwargs):
    """A Unix datagram endpoint connected to a plain socket that reads
    only when the test says so: its queue fills, and sends then block."""
    peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    peer.bind(str(tmp_path / "peer"))
    peer.setblocking(False)
    endpoint = loop.create_datagram_endpoint(
        Recorder,
        family=socket.AF_UNIX,
        local_addr=str(tmp_path / "endpoint"),
        remote_addr=str(tmp_path / "peer"),
        **kwargs,
    )
    return peer, endpoint


def drain(sock):
    got = []
    while True:
        try:
            got.append(sock.recv(65536))
        except BlockingIOError:
            return got


def fill(transport):
    """Sends until the socket refuses and the transport starts queueing."""
    sent = 0
    while transport.get_write_buffer_size() == 0:
        transport.sendto(b"%08d" % sent + b"." * 992)
        sent += 1
        assert sent < 100_000, "the socket never refused a datagram"
    return sent


def test_buffer_full_then_drained_with_flow_control(loop, tmp_path):
    skip_asyncio_313(loop, "its buffer size stays above 0 once all is sent")
    peer, endpoint = unix_pair(tmp_path, loop)

    async def main():
        transport, proto = await endpoint
        transport.set_write_buffer_limits(high=4000, low=1000)
        sent = fill(transport)
        for i in range(sent, sent + 10):
            transport.sendto(b"%08d" % i + b"." * 992)
        total = sent + 10
        assert transport.get_write_buffer_size() > 4000
        assert proto.events == ["made", "pause"]
        got = []
        while len(got) < total:
            got += drain(peer)
            await asyncio.sleep(0)
        assert transport.get_write_buffer_size() == 0
        assert proto.events == ["made", "pause", "resume"]
        transport.close()
        await proto.lost
        return got, total

    with peer:
        got, total = loop.run_until_complete(main())
    assert [g[:8] for g in got] == [b"%08d" % i for i in range(total)]


def test_close_with_pending_sends_sends_them_first(loop, tmp_path):
    skip_asyncio_313(loop, "its buffer size stays above 0 once all is sent")
    peer, endpoint = unix_pair(tmp_path, loop)

    async def main():
        transport, proto = await endpoint
        sent = fill(transport)
        transport.sendto(b"last")
        transport.close()
        assert transport.is_closing()
        await asyncio.sleep(0)
        assert not proto.lost.done()  # still sending what was queued
        got = []
        while not proto.lost.done():
            got += drain(peer)
            await asyncio.sleep(0)
        got += drain(peer)
        return got, sent, proto

    with peer:
        got, sent, proto = loop.run_until_complete(main())
    assert len(got) == sent + 1
    assert got[-1] == b"last"
    assert proto.lost.result() is None
    assert proto.transport.get_write_buffer_size() == 0


def test_abort_drops_pending_sends(loop, tmp_path):
    peer, endpoint = unix_pair(tmp_path, loop)

    async def main():
        transport, proto = await endpoint
        sent = fill(transport)
        transport.sendto(b"never")
        transport.abort()
        assert await proto.lost is None
        return drain(peer), sent, transport

    with peer:
        got, sent, transport = loop.run_until_complete(main())
    assert b"never" not in got
    assert len(got) < sent + 1


def test_a_failing_datagram_received_goes_to_the_exception_handler(loop):
    class Failing(Recorder):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            raise RuntimeError("protocol bug")

    caught = []
    loop.set_exception_handler(lambda lp, context: caught.append(context))

    async def main():
        transport, proto = await loop.create_datagram_endpoint(Failing, local_addr=("127.0.0.1", 0))
        me = transport.get_extra_info("sockname")
        transport.sendto(b"one", me)
        transport.sendto(b"two", me)
        while len(proto.datagrams) < 2:
            proto.arrived.clear()
            await proto.arrived.wait()
        transport.close()
        await proto.lost
        return proto

    proto = loop.run_until_complete(main())
    assert [d for d, _ in proto.datagrams] == [b"one", b"two"]  # the transport kept going
    assert len(caught) == 2
    assert all(isinstance(c["exception"], RuntimeError) for c in caught)


def test_thousand_endpoints_leave_no_fd_and_no_protocol(loop):
    skip_asyncio_313(loop, "the process ends with one fd fewer than it started")
    async def main():
        refs = []
        for _ in range(1000):
            transport, proto = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
            refs.append(weakref.ref(proto))
            transport.close()
            await proto.lost
            del transport, proto
        return refs

    loop.run_until_complete(asyncio.sleep(0))
    baseline = fd_count()
    refs = loop.run_until_complete(main())
    loop.run_until_complete(asyncio.sleep(0))
    gc.collect()
    assert fd_count() == baseline
    assert all(r() is None for r in refs)


def test_an_unclosed_transport_warns_and_closes_its_socket(loop_factory):
    loop = loop_factory()

    async def main():
        transport, proto = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        return transport.get_extra_info("socket").fileno()

    fd = loop.run_until_complete(main())
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()  # drops the loop's hold on its fds' watchers
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) and "unclosed transport" in str(w.message) for w in caught)
    with pytest.raises(OSError):
        os.fstat(fd)


def test_protocol_runs_in_the_context_the_endpoint_was_made_in(loop):
    import contextvars

    var = contextvars.ContextVar("var", default="unset")

    class Seeing(Recorder):
        def datagram_received(self, data, addr):
            super().datagram_received(var.get(), addr)

    async def make():
        var.set("at creation")
        return await loop.create_datagram_endpoint(Seeing, local_addr=("127.0.0.1", 0))

    async def main():
        transport, proto = await asyncio.ensure_future(make())
        var.set("elsewhere")
        transport.sendto(b"x", transport.get_extra_info("sockname"))
        await proto.arrived.wait()
        transport.close()
        await proto.lost
        return proto.datagrams[0][0]

    assert loop.run_until_complete(main()) == "at creation"


def test_set_protocol_sends_later_datagrams_to_the_new_protocol(loop):
    async def main():
        transport, first = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        second = Recorder()
        transport.set_protocol(second)
        assert transport.get_protocol() is second
        transport.sendto(b"x", transport.get_extra_info("sockname"))
        await second.arrived.wait()
        transport.close()
        await second.lost
        return first, second

    first, second = loop.run_until_complete(main())
    assert first.datagrams == [] and not first.lost.done()
    assert [d for d, _ in second.datagrams] == [b"x"]


def test_sendto_takes_bytes_bytearray_and_memoryview(loop):
    async def main():
        server, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
        address = server.get_extra_info("sockname")
        client, proto = await loop.create_datagram_endpoint(Recorder, remote_addr=address)
        other, mine = await loop.create_datagram_endpoint(Recorder, local_addr=("127.0.0.1", 0))
        payloads = [b"bytes", bytearray(b"bytearray"), memoryview(b"..memoryview")[2:]]
        for data in payloads:
            proto.arrived.clear()
            client.sendto(data)
            await proto.arrived.wait()
            mine.arrived.clear()
            other.sendto(data, address)  # unconnected: to an address
            await mine.arrived.wait()
        for t in (client, other, server):
            t.close()
        await proto.lost
        await mine.lost
        return [d for d, _ in proto.datagrams], [d for d, _ in mine.datagrams]

    connected, unconnected = loop.run_until_complete(main())
    assert connected == unconnected == [b"bytes", b"bytearray", b"memoryview"]


def test_senders_are_named_as_python_names_them(loop):
    # Every 127/8 address is the loopback on Linux: senders whose octets
    # have one, two and three digits (and 0 and 255), alternating so that
    # neither the endpoint's last sender nor the last host name converted
    # may be reused by mistake.
    hosts = ["127.0.0.1", "127.10.200.5", "127.255.0.99", "127.0.0.1", "127.1.2.3", "127.10.200.5"]
    senders = {}
    for host in set(hosts):
        senders[host] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        senders[host].bind((host, 0))
    ports = {host: s.getsockname()[1] for host, s in senders.items()}

    class Collect(asyncio.DatagramProtocol):
        def __init__(self):
            self.got = asyncio.Queue()

        def datagram_received(self, data, addr):
            self.got.put_nowait((data.decode(), addr))

    async def main():
        transport, proto = await loop.create_datagram_endpoint(Collect, local_addr=("127.0.0.1", 0))
        here = transport.get_extra_info("sockname")
        got = []
        for host in hosts:
            senders[host].sendto(host.encode(), here)
            got.append(await proto.got.get())
        transport.close()
        return got

    try:
        got = loop.run_until_complete(main())
    finally:
        for s in senders.values():
            s.close()
    assert got == [(h, (h, ports[h])) for h in hosts]
    assert all(type(addr[0]) is str for _, addr in got)
