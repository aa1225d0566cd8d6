"""Micro benchmarks of the native paths, evloop against asyncio (and uvloop
when installed), interleaved round by round; prints the median of each and
the ratio to asyncio (and, with uvloop, evloop's speed relative to it).

Run with:  python python/benchmarks/micro.py [ROUNDS]     (default 7)
Numbers, not tests: build the package in release mode first
(`pip install ./python`, or `PROFILE=release python/ci.sh`).
"""

import asyncio
import statistics
import sys
import time

import evloop

N = 1_000_000


def call_soon_batch(loop):
    # call_soon of N callbacks, then run them all.
    def cb():
        pass

    t0 = time.perf_counter()
    for _ in range(N):
        loop.call_soon(cb)
    loop.call_soon(loop.stop)
    loop.run_forever()
    return time.perf_counter() - t0


def call_later_cancel(loop):
    def cb():
        pass

    t0 = time.perf_counter()
    for _ in range(N // 4):
        loop.call_later(10.0, cb).cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    return (time.perf_counter() - t0) * 4


def sleep0_chain(loop):
    async def chain():
        for _ in range(N // 10):
            await asyncio.sleep(0)

    t0 = time.perf_counter()
    loop.run_until_complete(chain())
    return (time.perf_counter() - t0) * 10


def threadsafe_batch(loop):
    def cb():
        pass

    t0 = time.perf_counter()
    for _ in range(N // 4):
        loop.call_soon_threadsafe(cb)
    loop.call_soon(loop.stop)
    loop.run_forever()
    return (time.perf_counter() - t0) * 4


WORKLOADS = [call_soon_batch, call_later_cancel, sleep0_chain, threadsafe_batch]


def peers():
    found = {"asyncio": asyncio.SelectorEventLoop, "evloop": evloop.new_event_loop}
    try:
        import uvloop

        found["uvloop"] = uvloop.new_event_loop
    except ImportError:
        pass
    return found


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    factories = peers()
    results = {(w.__name__, p): [] for w in WORKLOADS for p in factories}
    for _ in range(rounds):
        for w in WORKLOADS:
            for name, factory in factories.items():
                loop = factory()
                results[(w.__name__, name)].append(w(loop))
                loop.close()
    print(f"Python {sys.version.split()[0]}, {rounds} rounds, ns per operation (median), ratio to asyncio")
    for w in WORKLOADS:
        base = statistics.median(results[(w.__name__, "asyncio")])
        cells = []
        for name in factories:
            med = statistics.median(results[(w.__name__, name)])
            cells.append(f"{name} {med / N * 1e9:7.1f} ns ({base / med:4.2f}x)")
        if "uvloop" in factories:
            # The target: evloop at or above uvloop (>= 1.00).
            ratio = statistics.median(results[(w.__name__, "uvloop")]) / statistics.median(
                results[(w.__name__, "evloop")]
            )
            cells.append(f"evloop/uvloop {ratio:4.2f}x")
        print(f"{w.__name__:18} " + "  ".join(cells))


if __name__ == "__main__":
    main()
