"""asyncio / uvloop side of the evloop peer suite.

The same workloads as bench/src/micro/ and bench/src/io/, written against the
asyncio loop API. Two ways to run it:

  python micro.py --loop uvloop --worker      # driven by `evloop-bench suite`: one
                                              # command per line on stdin
  python micro.py --loop asyncio [NAME ...]   # standalone, prints ns/op

Worker commands (one reply line each: "ok NS", "na", or "err MESSAGE"):
  micro NAME OPS        a loop micro benchmark, OPS operations
  echo SIZE N           in-process echo ping-pong, N round trips of SIZE bytes
  bulk TOTAL            bulk transfer of TOTAL bytes with flow control
  versions              "ok python=... uvloop=..."

Rules: the garbage collector is off during every timed region (collected
right before); every workload checks its own result and raises if wrong.
"""

import asyncio
import gc
import os
import sys
import time

perf_ns = time.perf_counter_ns

TASK_BATCH = 5000
TALK_DRAIN = 10000


def new_loop(kind):
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    if kind == "asyncio":
        return asyncio.new_event_loop()
    raise SystemExit(f"unknown loop {kind!r}")


class Timed:
    """Times a region with the GC off."""

    def __enter__(self):
        gc.collect()
        gc.disable()
        self.start = perf_ns()
        return self

    def __exit__(self, *exc):
        self.ns = perf_ns() - self.start
        gc.enable()
        return False


def delays(ops):
    """The harness's xorshift64 delays (1 ms to ~10 s), made before timing."""
    state = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    out = []
    for _ in range(ops):
        state ^= (state << 13) & mask
        state ^= state >> 7
        state ^= (state << 17) & mask
        out.append((1000 + state % 10_000_000) / 1e6)
    return out


# ----------------------------------------------------------------- micro


def call_soon_batch(loop, ops):
    n = 0

    def cb():
        nonlocal n
        n += 1

    with Timed() as t:
        for _ in range(ops):
            loop.call_soon(cb)
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert n == ops, (n, ops)
    return t.ns


def call_soon_chain(loop, ops):
    n = 0

    def step():
        nonlocal n
        n += 1
        if n < ops:
            loop.call_soon(step)
        else:
            loop.stop()

    with Timed() as t:
        loop.call_soon(step)
        loop.run_forever()
    assert n == ops, (n, ops)
    return t.ns


def timer_schedule_cancel(loop, ops):
    fired = 0

    def cb():
        nonlocal fired
        fired += 1

    ds = delays(ops)
    call_later = loop.call_later
    with Timed() as t:
        for d in ds:
            call_later(d, cb).cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert fired == 0
    return t.ns


def timer_fire(loop, ops):
    n = 0

    def cb():
        nonlocal n
        n += 1
        if n == ops:
            loop.stop()

    with Timed() as t:
        for _ in range(ops):
            loop.call_later(0, cb)
        loop.run_forever()
    assert n == ops
    return t.ns


def yield_now(loop, ops):
    async def body():
        turns = 0
        for _ in range(ops):
            await asyncio.sleep(0)
            turns += 1
        return turns

    with Timed() as t:
        turns = loop.run_until_complete(body())
    assert turns == ops
    return t.ns


def sleep_zero(loop, ops):
    # asyncio.sleep(0) is a bare yield (see yield_now); any positive delay
    # goes through a future and a call_later timer, as evloop's sleep does.
    async def body():
        turns = 0
        for _ in range(ops):
            await asyncio.sleep(1e-9)
            turns += 1
        return turns

    with Timed() as t:
        turns = loop.run_until_complete(body())
    assert turns == ops
    return t.ns


def future_roundtrip(loop, ops):
    async def body():
        s = 0
        for i in range(ops):
            fut = loop.create_future()
            loop.call_soon(fut.set_result, i)
            s += await fut
        return s

    with Timed() as t:
        s = loop.run_until_complete(body())
    assert s == ops * (ops - 1) // 2
    return t.ns


def task_spawn(loop, ops):
    ran = [0]

    async def tiny(i):
        ran[0] += 1
        return i

    total = 0
    done = 0
    with Timed() as t:
        while done < ops:
            n = min(TASK_BATCH, ops - done)
            tasks = [loop.create_task(tiny(i)) for i in range(done, done + n)]
            loop.call_soon(loop.stop)
            loop.run_forever()
            for task in tasks:
                total += task.result()
            done += n
    assert ran[0] == ops
    assert total == ops * (ops - 1) // 2
    return t.ns


def run_until_complete(loop, ops):
    async def trivial(i):
        return i

    total = 0
    with Timed() as t:
        for i in range(ops):
            total += loop.run_until_complete(trivial(i))
    assert total == ops * (ops - 1) // 2
    return t.ns


def talk_run_until_complete(loop, ops):
    done = 0
    with Timed() as t:
        for _ in range(ops):
            loop.run_until_complete(asyncio.sleep(0))
            done += 1
    assert done == ops
    return t.ns


def talk_call_soon(loop, ops):
    n = 0

    def cb():
        nonlocal n
        n += 1

    with Timed() as t:
        i = 0
        while i < ops:
            k = min(TALK_DRAIN, ops - i)
            for _ in range(k):
                loop.call_soon(cb)
            loop.call_soon(loop.stop)
            loop.run_forever()
            i += k
    assert n == ops
    return t.ns


def talk_call_later0(loop, ops):
    n = 0
    target = 0

    def cb():
        nonlocal n
        n += 1
        if n == target:
            loop.stop()

    with Timed() as t:
        i = 0
        while i < ops:
            k = min(TALK_DRAIN, ops - i)
            target = i + k
            for _ in range(k):
                loop.call_later(0, cb)
            loop.run_forever()
            i += k
    assert n == ops
    return t.ns


MICRO = {
    f.__name__: f
    for f in [
        call_soon_batch,
        call_soon_chain,
        timer_schedule_cancel,
        timer_fire,
        yield_now,
        sleep_zero,
        future_roundtrip,
        task_spawn,
        run_until_complete,
        talk_run_until_complete,
        talk_call_soon,
        talk_call_later0,
    ]
}

DEFAULT_OPS = {
    "call_soon_batch": 200_000,
    "call_soon_chain": 100_000,
    "timer_schedule_cancel": 200_000,
    "timer_fire": 100_000,
    "yield_now": 100_000,
    "sleep_zero": 100_000,
    "future_roundtrip": 100_000,
    "task_spawn": 50_000,
    "run_until_complete": 50_000,
    "talk_run_until_complete": 20_000,
    "talk_call_soon": 200_000,
    "talk_call_later0": 200_000,
}

# -------------------------------------------------------------------- I/O


def pattern(size):
    return bytes(i % 251 for i in range(size))


class EchoServer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class EchoClient(asyncio.Protocol):
    """Sends the message, waits for all of it to come back, repeats.

    Each chunk must continue the message where the previous one stopped; the
    last round trip is compared byte for byte (as EchoCheck in common.rs)."""

    def __init__(self, msg):
        self.msg = msg
        self.size = len(msg)
        self.got = 0
        self.left = 0
        self.last = bytearray()
        self.done = None

    def connection_made(self, transport):
        self.transport = transport

    def start(self, round_trips, done):
        self.left = round_trips
        self.done = done
        self.got = 0
        self.last = bytearray()
        self.transport.write(self.msg)

    def data_received(self, data):
        n = len(data)
        if self.got + n > self.size or data[0] != self.msg[self.got]:
            raise AssertionError("echo chunk out of place")
        if self.left == 1:
            self.last += data
        self.got += n
        if self.got < self.size:
            return
        self.got = 0
        self.left -= 1
        if self.left:
            self.transport.write(self.msg)
        else:
            if bytes(self.last) != self.msg:
                self.done.set_exception(AssertionError("last echo differs"))
            else:
                self.done.set_result(None)


def echo(loop, size, round_trips):
    msg = pattern(size)
    server = loop.run_until_complete(loop.create_server(EchoServer, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    transport, client = loop.run_until_complete(
        loop.create_connection(lambda: EchoClient(msg), "127.0.0.1", port)
    )
    warm = loop.create_future()
    client.start(50, warm)
    loop.run_until_complete(warm)
    done = loop.create_future()
    with Timed() as t:
        client.start(round_trips, done)
        loop.run_until_complete(done)
    transport.close()
    server.close()
    loop.run_until_complete(server.wait_closed())
    return t.ns


CHUNK = 64 * 1024


class BulkServer(asyncio.Protocol):
    def __init__(self, total):
        self.total = total
        self.count = 0

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.count += len(data)
        if self.count == self.total:
            self.transport.write(self.count.to_bytes(8, "little"))
        elif self.count > self.total:
            raise AssertionError("bulk overrun")


class BulkClient(asyncio.Protocol):
    """Writes 64 KiB chunks while the write buffer is at most its high-water
    mark (asyncio's default, 64 KiB); resume_writing writes more."""

    def __init__(self, total):
        self.total = total
        self.sent = 0
        self.chunk = pattern(CHUNK)
        self.ack = bytearray()
        self.done = None

    def connection_made(self, transport):
        self.transport = transport

    def begin(self, done):
        self.done = done
        self.pump()

    def pump(self):
        t = self.transport
        high = t.get_write_buffer_limits()[1]
        while self.sent < self.total and t.get_write_buffer_size() <= high:
            n = min(CHUNK, self.total - self.sent)
            t.write(self.chunk if n == CHUNK else self.chunk[:n])
            self.sent += n

    def pause_writing(self):
        pass

    def resume_writing(self):
        self.pump()

    def data_received(self, data):
        self.ack += data
        if len(self.ack) == 8:
            self.done.set_result(int.from_bytes(self.ack, "little"))


def bulk(loop, total):
    server = loop.run_until_complete(
        loop.create_server(lambda: BulkServer(total), "127.0.0.1", 0)
    )
    port = server.sockets[0].getsockname()[1]
    transport, client = loop.run_until_complete(
        loop.create_connection(lambda: BulkClient(total), "127.0.0.1", port)
    )
    done = loop.create_future()
    with Timed() as t:
        client.begin(done)
        count = loop.run_until_complete(done)
    assert count == total, (count, total)
    transport.close()
    server.close()
    loop.run_until_complete(server.wait_closed())
    return t.ns


# ----------------------------------------------------------------- memory


def rss_kib():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out["VmRSS"], out["VmHWM"]


def mem_timers(loop, n):
    """n pending call_later timers; RSS before and after (KiB)."""
    fired = [0]

    def cb():
        fired[0] += 1

    before = rss_kib()[0]
    call_later = loop.call_later
    made = 0
    for i in range(n):
        call_later(3600 + i * 1e-6, cb)  # the handle is dropped, as in evloop's probe
        made += 1
    loop.call_soon(loop.stop)
    loop.run_forever()
    rss, hwm = rss_kib()
    assert fired[0] == 0 and made == n
    if hasattr(loop, "_scheduled"):
        assert len(loop._scheduled) == n
    return before, rss, hwm


# ----------------------------------------------------------------- driver


def versions(kind):
    parts = [f"python={sys.version.split()[0]}"]
    if kind == "uvloop":
        import uvloop

        parts.append(f"uvloop={uvloop.__version__}")
    try:
        import httptools

        parts.append(f"httptools={httptools.__version__}")
    except ImportError:
        pass
    return " ".join(parts)


def worker(kind):
    loop = new_loop(kind)
    asyncio.set_event_loop(loop)
    out = sys.stdout
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            cmd = words[0]
            if cmd == "quit":
                break
            elif cmd == "versions":
                reply = "ok " + versions(kind)
            elif cmd == "micro":
                f = MICRO.get(words[1])
                reply = "na" if f is None else f"ok {f(loop, int(words[2]))}"
            elif cmd == "echo":
                reply = f"ok {echo(loop, int(words[1]), int(words[2]))}"
            elif cmd == "bulk":
                reply = f"ok {bulk(loop, int(words[1]))}"
            elif cmd == "mem_timers":
                reply = "ok " + " ".join(map(str, mem_timers(loop, int(words[1]))))
            else:
                reply = f"err unknown command {cmd!r}"
        except Exception as e:  # reported to the driver, which fails the run
            reply = f"err {type(e).__name__}: {e}".replace("\n", " ")
        out.write(reply + "\n")
        out.flush()
    loop.close()


def main():
    args = sys.argv[1:]
    kind = "asyncio"
    if "--loop" in args:
        i = args.index("--loop")
        kind = args[i + 1]
        del args[i : i + 2]
    if "--worker" in args:
        worker(kind)
        return
    names = args or list(MICRO)
    loop = new_loop(kind)
    asyncio.set_event_loop(loop)
    print(f"{kind}: {versions(kind)}; ns per op, median of 5 after one warm-up")
    for name in names:
        ops = DEFAULT_OPS[name]
        MICRO[name](loop, ops)
        samples = sorted(MICRO[name](loop, ops) / ops for _ in range(5))
        print(f"{name:<26} {samples[2]:>10.1f}  ({samples[0]:.1f}-{samples[-1]:.1f})")
    loop.close()


if __name__ == "__main__":
    main()
