"""Small writes a stream transport makes in one loop pass: on evloop, a
transport that wrote more than once in a pass holds its next small writes
until the end of the pass and sends them in one ``send`` (an HTTP server's
head and body in one segment). Everything asyncio's loop shows stays the
same: the order of the bytes, the buffer size, what close, write_eof and
abort send, and the errors."""

import asyncio
import socket

import evloop
import pytest


class Recorder(asyncio.Protocol):
    def __init__(self):
        self.lost = asyncio.get_running_loop().create_future()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        pass

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


def in_passes(loop, *steps):
    """Runs each step in a loop pass of its own (each queues the next);
    a future done with their results."""
    done = loop.create_future()
    results = []

    def run(i):
        try:
            results.append(steps[i]())
        except BaseException as e:  # pragma: no cover - reported by the test
            done.set_exception(e)
            return
        if i + 1 < len(steps):
            loop.call_soon(run, i + 1)
        else:
            done.set_result(results)

    loop.call_soon(run, 0)
    return done


def arrived(sock):
    """What the raw peer has received so far, without waiting."""
    try:
        return sock.recv(1 << 20)
    except BlockingIOError:
        return b""


def read_all(sock, n):
    sock.settimeout(10)
    got = b""
    while len(got) < n:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        got += chunk
    return got


@pytest.fixture
def pair(loop):
    """(transport, protocol, raw peer socket) over a socketpair."""
    a, b = socket.socketpair()
    b.setblocking(False)
    tr, proto = loop.run_until_complete(loop.connect_accepted_socket(Recorder, a))
    yield tr, proto, b
    tr.abort()
    loop.run_until_complete(asyncio.sleep(0))
    b.close()


def two_writes(tr, tag):
    def step():
        tr.write(b"head" + tag)
        tr.write(b"body" + tag)

    return step


def test_writes_of_a_pass_wait_for_its_end_and_arrive_together(loop, pair):
    tr, _, b = pair
    native = isinstance(loop, evloop.EventLoop)

    def corked_pass():
        tr.write(b"head2;")
        seen = arrived(b)  # evloop: not sent yet; asyncio: sent at once
        tr.write(b"body2;")
        return seen

    results = loop.run_until_complete(in_passes(
        loop,
        two_writes(tr, b"1;"),  # two writes in a pass: the next are corked
        lambda: arrived(b),
        corked_pass,
        lambda: arrived(b),
    ))
    assert results[1] == b"head1;body1;"
    assert results[2] == (b"" if native else b"head2;")
    assert results[3] == (b"head2;body2;" if native else b"body2;")


def test_a_transport_that_writes_once_per_pass_sends_at_once_again(loop, pair):
    tr, _, b = pair

    def single(tag):
        def step():
            tr.write(tag)
            return arrived(b)

        return step

    results = loop.run_until_complete(in_passes(
        loop, two_writes(tr, b"1;"), single(b"a;"), lambda: arrived(b), single(b"b;"), single(b"c;")))
    if isinstance(loop, evloop.EventLoop):
        # The first single write is still corked; the pass it ends shows the
        # transport writes once per pass, and later writes go at once.
        assert results[1:] == [b"head1;body1;", b"a;", b"b;", b"c;"]
    else:
        assert results[1:] == [b"head1;body1;a;", b"", b"b;", b"c;"]


def test_the_buffer_size_counts_no_corked_bytes(loop, pair):
    tr, _, b = pair

    def query():
        tr.write(b"x" * 100)
        return tr.get_write_buffer_size(), arrived(b)

    results = loop.run_until_complete(in_passes(loop, two_writes(tr, b";"), query))
    assert results[1] == (0, b"head;body;" + b"x" * 100)


@pytest.mark.parametrize("end", ["close", "write_eof", "abort"])
def test_close_write_eof_and_abort_send_the_corked_writes_first(loop, pair, end):
    tr, proto, b = pair

    def finish():
        tr.write(b"last")
        getattr(tr, end)()

    loop.run_until_complete(in_passes(loop, two_writes(tr, b";"), finish))
    if end != "write_eof":
        assert loop.run_until_complete(asyncio.wait_for(proto.lost, 10)) is None
    assert read_all(b, 100) == b"head;body;last"  # then the end of the stream
    assert tr.is_closing() == (end != "write_eof")


def test_a_run_that_ends_sends_its_last_passes_writes(loop, pair):
    tr, _, b = pair

    async def main():
        await in_passes(loop, two_writes(tr, b"1;"))
        tr.write(b"a;")
        tr.write(b"b;")

    loop.run_until_complete(main())
    assert read_all(b, 16) == b"head1;body1;a;b;"


def test_a_big_write_after_corked_ones_keeps_the_order(loop, pair):
    tr, proto, b = pair
    big = bytes(range(256)) * 4096  # 1 MiB, more than the socket takes

    def mixed():
        tr.write(b"small1;")
        tr.write(b"small2;")
        tr.write(big)
        tr.write(b";tail")

    async def main():
        await in_passes(loop, two_writes(tr, b";"), mixed)
        got = bytearray()
        expected = b"head;body;small1;small2;" + big + b";tail"
        while len(got) < len(expected):
            got += await loop.sock_recv(b, 1 << 20)
        return bytes(got) == expected, tr.get_write_buffer_size()

    assert loop.run_until_complete(main()) == (True, 0)


def test_a_peer_gone_before_the_corked_send_loses_the_connection(loop, pair):
    tr, proto, b = pair

    def write_to_the_closed_peer():
        b.close()
        tr.write(b"a")
        tr.write(b"b")

    loop.run_until_complete(in_passes(loop, two_writes(tr, b";"), write_to_the_closed_peer))
    exc = loop.run_until_complete(asyncio.wait_for(proto.lost, 10))
    assert isinstance(exc, (BrokenPipeError, ConnectionResetError))
    assert tr.is_closing()
