"""evloop's Python package against its peers: asyncio's own loop, uvloop
and rloop, on the same workloads, interleaved round by round.

    bench/python/peers.sh [--quick]          # makes the venv, builds evloop (release), runs this
    python bench/python/peers.py [--quick] [--rounds N] [--only ROW,...] [--markdown FILE]

Each round runs every workload once on every peer (fresh loop each time),
so a burst of load from elsewhere hits all the peers of that round alike.
For each row it prints each peer's median and, for each peer, the median
over the rounds of the paired ratio evloop/peer (evloop's throughput over
the peer's in the same round: above 1.00 evloop is faster).

Every workload checks its own result (callbacks counted, bytes echoed and
compared) and raises if it is wrong; the GC is off in the timed regions.
A peer that lacks an operation shows n/a.
"""

import argparse
import asyncio
import gc
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time

perf = time.perf_counter


def peer_factories():
    import evloop

    found = {"evloop": evloop.new_event_loop, "asyncio": asyncio.SelectorEventLoop}
    try:
        import uvloop

        found["uvloop"] = uvloop.new_event_loop
    except ImportError:
        pass
    try:
        import rloop

        found["rloop"] = rloop.new_event_loop
    except ImportError:
        pass
    return found


class NotAvailable(Exception):
    """The peer does not have the operation the workload needs."""


class Timed:
    def __enter__(self):
        gc.collect()
        gc.disable()
        self.t0 = perf()
        return self

    def __exit__(self, *exc):
        self.seconds = perf() - self.t0
        gc.enable()


# -- loop workloads: return seconds per operation -------------------------

def call_soon(loop, n):
    count = [0]

    def cb():
        count[0] += 1

    with Timed() as t:
        for _ in range(n):
            loop.call_soon(cb)
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert count[0] == n, count
    return t.seconds / n


def call_later_cancel(loop, n):
    def cb():
        raise AssertionError("a cancelled timer ran")

    delays = [0.001 + (i * 7919 % 10000) / 1000.0 for i in range(n)]  # 1 ms to 10 s
    with Timed() as t:
        for d in delays:
            loop.call_later(d, cb).cancel()
        loop.call_soon(loop.stop)
        loop.run_forever()
    return t.seconds / n


def sleep0_chain(loop, n):
    async def chain():
        for _ in range(n):
            await asyncio.sleep(0)
        return n

    with Timed() as t:
        assert loop.run_until_complete(chain()) == n
    return t.seconds / n


def _message(size):
    return bytes(range(256)) * (size // 256) + bytes(size % 256)


def sock_roundtrip(loop, n, size=1024):
    """loop.sock_sendall / sock_recv over loopback TCP: the client sends
    SIZE bytes, the server echoes them, the client reads them all back."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    client = socket.socket()
    client.setblocking(False)
    msg = _message(size)

    async def serve():
        conn, _ = await loop.sock_accept(listener)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while data := await loop.sock_recv(conn, 65536):
                await loop.sock_sendall(conn, data)
        finally:
            conn.close()

    async def main():
        server = loop.create_task(serve())
        await loop.sock_connect(client, listener.getsockname())
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with Timed() as t:
            for i in range(n):
                await loop.sock_sendall(client, msg)
                got = bytearray()
                while len(got) < size:
                    chunk = await loop.sock_recv(client, 65536)
                    assert chunk, "server closed early"
                    got += chunk
                if i % 64 == 0:
                    assert got == msg
        client.close()
        await server
        return t.seconds

    try:
        return loop.run_until_complete(main()) / n
    except NotImplementedError as e:
        raise NotAvailable(str(e)) from e
    finally:
        listener.close()
        client.close()


def streams_roundtrip(loop, n, size=1024):
    msg = _message(size)

    async def handle(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        with Timed() as t:
            for i in range(n):
                writer.write(msg)
                await writer.drain()
                got = await reader.readexactly(size)
                if i % 64 == 0:
                    assert got == msg
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return t.seconds

    return loop.run_until_complete(main()) / n


class _EchoServer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class _EchoClient(asyncio.Protocol):
    def __init__(self, loop, msg, n):
        self.loop, self.msg, self.n = loop, msg, n
        self.left, self.done = n, loop.create_future()
        self.got, self.received = bytearray(), 0

    def connection_made(self, transport):
        self.transport = transport

    def start(self):
        self.t0 = perf()
        self.transport.write(self.msg)

    def data_received(self, data):
        self.received += len(data)
        if self.left % 64 == 0:
            self.got += data
        if self.received < len(self.msg):
            return
        assert self.received == len(self.msg), "echoed more than was sent"
        if self.left % 64 == 0:
            assert self.got == self.msg
            self.got = bytearray()
        self.received = 0
        self.left -= 1
        if self.left:
            self.transport.write(self.msg)
        else:
            self.done.set_result(perf() - self.t0)


def protocol_echo(loop, n, size):
    msg = _message(size)

    async def main():
        server = await loop.create_server(_EchoServer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        transport, client = await loop.create_connection(
            lambda: _EchoClient(loop, msg, n), "127.0.0.1", port)
        gc.collect()
        gc.disable()
        try:
            client.start()
            seconds = await client.done
        finally:
            gc.enable()
        transport.close()
        server.close()
        await server.wait_closed()
        return seconds

    return loop.run_until_complete(main()) / n


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class _UdpClient(asyncio.DatagramProtocol):
    def __init__(self, loop, msg, n):
        self.msg, self.left, self.done = msg, n, loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def start(self):
        self.t0 = perf()
        self.transport.sendto(self.msg)

    def datagram_received(self, data, addr):
        if self.left % 64 == 0:
            assert data == self.msg
        self.left -= 1
        if self.left:
            self.transport.sendto(self.msg)
        else:
            self.done.set_result(perf() - self.t0)

    def error_received(self, exc):
        self.done.set_exception(exc)


def udp_echo(loop, n, size=1024):
    """create_datagram_endpoint over loopback: a connected client sends
    SIZE bytes, an unconnected server echoes them to the sender; one
    datagram in flight (UDP drops nothing on an idle loopback)."""
    msg = _message(size)

    async def main():
        server, _ = await loop.create_datagram_endpoint(_UdpEcho, local_addr=("127.0.0.1", 0))
        transport, client = await loop.create_datagram_endpoint(
            lambda: _UdpClient(loop, msg, n), remote_addr=server.get_extra_info("sockname"))
        gc.collect()
        gc.disable()
        try:
            client.start()
            seconds = await client.done
        finally:
            gc.enable()
        transport.close()
        server.close()
        return seconds

    try:
        return loop.run_until_complete(main()) / n
    except NotImplementedError as e:
        raise NotAvailable(str(e)) from e


def sock_sendfile(loop, n, size=1 << 20):
    """loop.sock_sendfile of a SIZE-byte temp file over loopback TCP, read
    back with sock_recv_into on the same loop; seconds per file."""
    import tempfile

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    client = socket.socket()
    client.setblocking(False)
    data = _message(size)

    async def drain(conn, total):
        buf = bytearray(1 << 18)
        got = 0
        while got < total:
            k = await loop.sock_recv_into(conn, buf)
            assert k, "sender closed early"
            got += k
        return got

    async def main(f):
        connect = loop.create_task(loop.sock_connect(client, listener.getsockname()))
        conn, _ = await loop.sock_accept(listener)
        await connect
        with conn, Timed() as t:
            for _ in range(n):
                reader = loop.create_task(drain(conn, size))
                try:
                    sent = await loop.sock_sendfile(client, f, 0, size)
                except BaseException:
                    reader.cancel()  # a peer without sock_sendfile: n/a
                    raise
                assert sent == size and await reader == size
        return t.seconds

    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        try:
            return loop.run_until_complete(main(f)) / n
        except NotImplementedError as e:
            raise NotAvailable(str(e)) from e
        finally:
            listener.close()
            client.close()


class _Hello(asyncio.Protocol):
    def connection_made(self, transport):
        transport.write(b"hi")
        transport.close()


class _Caller(asyncio.Protocol):
    def __init__(self, done):
        self.done = done

    def data_received(self, data):
        assert data == b"hi"

    def connection_lost(self, exc):
        self.done.set_result(None)


def connect_accept(loop, n):
    """A connection's whole life, one at a time: create_connection to a
    create_server on the same loop, whose protocol writes 2 bytes and
    closes; the client waits for connection_lost. Seconds per connection
    (the server's accept, socket and transport making included)."""

    async def main():
        server = await loop.create_server(_Hello, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        async def one():
            done = loop.create_future()
            await loop.create_connection(lambda: _Caller(done), "127.0.0.1", port)
            await done

        try:
            # A peer whose connection never ends (rloop 0.5: no
            # connection_lost after the server's close) is n/a.
            await asyncio.wait_for(one(), 5)
        except asyncio.TimeoutError:
            server.close()
            raise NotAvailable("the client never saw the connection lost") from None
        with Timed() as t:
            for _ in range(n):
                await one()
        server.close()
        await server.wait_closed()
        return t.seconds

    return loop.run_until_complete(main()) / n


# Row name -> (workload, ops in a full run, unit shown).
LOOP_ROWS = {
    "call_soon 10^6 then run": (call_soon, 1_000_000, "ns"),
    "call_later + cancel": (call_later_cancel, 200_000, "ns"),
    "sleep(0) chain": (sleep0_chain, 100_000, "ns"),
    "sock_sendall/sock_recv 1 KiB": (sock_roundtrip, 20_000, "us"),
    "streams round trip 1 KiB": (streams_roundtrip, 20_000, "us"),
    "Protocol echo 1 KiB": (lambda lp, n: protocol_echo(lp, n, 1024), 20_000, "us"),
    "Protocol echo 10 KiB": (lambda lp, n: protocol_echo(lp, n, 10 * 1024), 10_000, "us"),
    "Protocol echo 100 KiB": (lambda lp, n: protocol_echo(lp, n, 100 * 1024), 2_000, "us"),
    "UDP echo 1 KiB (datagram endpoint)": (udp_echo, 20_000, "us"),
    "sock_sendfile 1 MiB": (sock_sendfile, 1_000, "us"),
    "connect, accept, close (create_server)": (connect_accept, 2_000, "us"),
}


# -- servers under wrk: the server in a child process per peer -------------

HELLO = b'{"message":"Hello World"}'


async def raw_asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            pass
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": HELLO})


def serve(kind, peer, sock_fd):
    """The child: uvicorn on PEER's loop, serving on the inherited socket."""
    import uvicorn

    if kind == "fastapi":
        from fastapi import FastAPI

        app = FastAPI()

        @app.get("/")
        async def root():
            return {"message": "Hello World"}
    else:
        app = raw_asgi
    sock = socket.socket(fileno=sock_fd)
    config = uvicorn.Config(app, log_level="error", access_log=False, lifespan="off")
    loop = peer_factories()[peer]()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(uvicorn.Server(config).serve(sockets=[sock]))


def wrk_row(kind, peer, seconds, wrk):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    child = subprocess.Popen([sys.executable, __file__, "--serve", kind, peer, str(sock.fileno())],
                             pass_fds=[sock.fileno()])
    sock.close()
    try:
        _wait_http(port)
        cpu0 = _cpu_seconds(child.pid)
        out = subprocess.run([wrk, "-t1", "-c32", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
                             capture_output=True, text=True, check=True).stdout
        cpu = _cpu_seconds(child.pid) - cpu0
    finally:
        child.terminate()
        child.wait(10)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    if requests == 0 or "Socket errors" in out or "Non-2xx" in out:
        raise AssertionError(f"wrk against {peer}: {out}")
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))
    # Seconds per request, like the loop rows; and the server's CPU
    # seconds per request, which the machine's other load moves less.
    return 1.0 / rps, cpu / requests


def _cpu_seconds(pid):
    """User plus system CPU time of process PID so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime: fields 14 and 15 of stat(5), the 12th and 13th after the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_http(port, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not answer")
        time.sleep(0.05)


WRK_ROWS = {"uvicorn raw ASGI (wrk)": "asgi", "uvicorn FastAPI (wrk)": "fastapi"}


# -- the driver --------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the ops, 3 rounds, 1 s wrk")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--only", help="rows whose name contains one of these words (comma-separated)")
    parser.add_argument("--markdown", help="also write the table as markdown to this file")
    parser.add_argument("--benchmarks", metavar="BENCHMARKS.md",
                        help="write the results as that file's Python section (replacing it)")
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve[0], args.serve[1], int(args.serve[2]))

    rounds = args.rounds or (3 if args.quick else 5)
    scale = 10 if args.quick else 1
    wrk_seconds = 1 if args.quick else 3
    factories = peer_factories()
    peers = list(factories)
    wrk = shutil.which("wrk")
    rows = dict(LOOP_ROWS)
    if wrk:
        rows.update({name: None for name in WRK_ROWS})
    if args.only:
        words = [w.strip().lower() for w in args.only.split(",")]
        rows = {k: v for k, v in rows.items() if any(w in k.lower() for w in words)}
    results = {(row, p): [] for row in rows for p in peers}
    cpu = {(row, p): [] for row in rows if rows[row] is None for p in peers}
    start = time.monotonic()
    for r in range(rounds):
        print(f"round {r + 1}/{rounds}", file=sys.stderr, flush=True)
        for row, spec in rows.items():
            for peer in peers:
                try:
                    if spec is None:
                        value, per_request = wrk_row(WRK_ROWS[row], peer, wrk_seconds, wrk)
                        cpu[(row, peer)].append(per_request)
                    else:
                        workload, ops, _ = spec
                        loop = factories[peer]()
                        try:
                            value = workload(loop, max(1, ops // scale))
                        finally:
                            loop.close()
                except NotAvailable:
                    value = None
                results[(row, peer)].append(value)
    report(rows, peers, results, cpu, rounds, time.monotonic() - start, args)
    if not wrk:
        print("wrk not found: the uvicorn rows were not run (bench/python/peers.sh installs it)")


def report(rows, peers, results, cpu, rounds, seconds, args):
    versions = {"python": sys.version.split()[0]}
    for mod in ("uvloop", "rloop", "uvicorn", "fastapi"):
        try:
            versions[mod] = __import__(mod).__version__
        except (ImportError, AttributeError):
            pass
    head = (f"Python {versions.pop('python')}, {rounds} rounds{' (--quick)' if args.quick else ''}, "
            f"load average {os.getloadavg()[0]:.2f}, {seconds:.0f} s; "
            + ", ".join(f"{k} {v}" for k, v in versions.items()))
    others = [p for p in peers if p != "evloop"]
    lines = [head, "",
             "| workload | " + " | ".join(peers) + " | " + " | ".join(f"evloop/{p}" for p in others) + " |",
             "|---" * (1 + len(peers) + len(others)) + "|"]
    for row, spec in rows.items():
        unit = spec[2] if spec else "rps"
        cells = []
        for p in peers:
            values = [v for v in results[(row, p)] if v is not None]
            if not values:
                cells.append("n/a")
            elif unit == "rps":
                cells.append(f"{1 / statistics.median(values):,.0f} req/s")
            else:
                scale = 1e9 if unit == "ns" else 1e6
                cells.append(f"{statistics.median(values) * scale:,.1f} {'ns' if unit == 'ns' else 'µs'}")
        for p in others:
            ratio = paired(results, row, p)
            cells.append(f"{ratio:.2f}×" if ratio is not None else "n/a")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    wrk_rows = [row for row in rows if rows[row] is None]
    if wrk_rows:
        lines += ["", "The uvicorn server's CPU time (user + system, `/proc/PID/stat`) per request during "
                  "the same wrk runs: medians, then the paired ratio peer/evloop (above 1.00× evloop "
                  "uses less CPU per request).", "",
                  "| server CPU per request | " + " | ".join(peers) + " | "
                  + " | ".join(f"{p}/evloop" for p in others) + " |",
                  "|---" * (1 + len(peers) + len(others)) + "|"]
        for row in wrk_rows:
            cells = []
            for p in peers:
                values = cpu[(row, p)]
                cells.append(f"{statistics.median(values) * 1e6:,.1f} µs" if values else "n/a")
            for p in others:
                ratio = paired(cpu, row, p)
                cells.append(f"{ratio:.2f}×" if ratio is not None else "n/a")
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += [""] + targets(rows, results)
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    if args.benchmarks:
        write_section(args.benchmarks, text, args)


def paired(results, row, peer):
    pairs = [p / ev for ev, p in zip(results[(row, "evloop")], results.get((row, peer), []))
             if ev is not None and p is not None]
    return statistics.median(pairs) if pairs else None


def targets(rows, results):
    """The issue's targets, judged on the median paired ratio: above
    asyncio and at or above uvloop on every row, at or above rloop on the
    sock_*, Protocol echo and streams rows."""
    out = []
    for row in rows:
        wanted = [("asyncio", 1.0, ">"), ("uvloop", 1.0, ">=")]
        if row.startswith(("sock_sendall", "Protocol echo", "streams")):
            wanted.append(("rloop", 1.0, ">="))
        for peer, bound, op in wanted:
            ratio = paired(results, row, peer)
            if ratio is None:
                continue
            ok = ratio > bound if op == ">" else ratio >= bound
            out.append(f"- {'PASS' if ok else 'FAIL'}: {row}, evloop/{peer} {ratio:.2f}× (target {op} {bound:.2f}×)")
    return ["Targets (evloop above asyncio and at or above uvloop on every row; at or above rloop "
            "on sock_*, Protocol echo and streams):", ""] + out


BEGIN = "<!-- python-peers: written by bench/python/peers.py --benchmarks; bench/run.sh keeps it -->"
END = "<!-- /python-peers -->"


def write_section(path, table, args):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        sha = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        if subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                          capture_output=True, text=True).stdout.strip():
            sha += " (with uncommitted changes)"
    except (OSError, subprocess.CalledProcessError):
        sha = "unknown"
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    section = "\n".join([
        BEGIN,
        "## Python: evloop-asyncio against asyncio, uvloop and rloop",
        "",
        f"`bench/python/peers.sh{' --quick' if args.quick else ''}` (or `bench/run.sh --python`), "
        f"{when}, git {sha}. evloop's Python package (release build) and its peers in one process, "
        "a fresh loop per workload, peers interleaved round by round. Each peer's median per "
        "operation (per round trip for the echoes; requests per second under `wrk -t1 -c32` for "
        "the uvicorn rows, server in its own process), then the median over the rounds of the "
        "paired ratio evloop/peer: evloop's throughput over the peer's in the same round, "
        "above 1.00× evloop is faster. What each row does: the docstrings of "
        "`bench/python/peers.py`.",
        "",
        table,
        END,
    ])
    try:
        with open(path) as f:
            old = f.read()
    except FileNotFoundError:
        old = ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        new = head + section + rest.split(END, 1)[1]
    else:
        new = old.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(new)


if __name__ == "__main__":
    sys.exit(main())
