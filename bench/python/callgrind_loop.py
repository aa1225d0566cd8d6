"""One loop workload of bench/python/peers.py, N operations, for callgrind:
instruction counts per operation that repeat, where wall-clock ratios on a
busy machine do not.

    valgrind --tool=callgrind python bench/python/callgrind_loop.py call_soon evloop 120000
    valgrind --tool=callgrind python bench/python/callgrind_loop.py call_soon evloop 20000

Instructions per operation: the difference of the two totals ("I refs")
divided by 100000 (the start-up cost cancels out). Run with
PYTHONHASHSEED=0 so that dict lookups cost the same in both runs.

Workloads: call_soon (call_soon N callbacks, then run them), later_cancel
(call_later + cancel N times), sleep0 (a chain of N `await asyncio.sleep(0)`).
Loops: evloop, uvloop, rloop, asyncio.
"""

import asyncio
import gc
import sys


def new_loop(kind):
    if kind == "evloop":
        import evloop

        return evloop.new_event_loop()
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    if kind == "rloop":
        import rloop

        return rloop.new_event_loop()
    if kind == "asyncio":
        return asyncio.SelectorEventLoop()
    raise SystemExit(f"unknown loop {kind!r}")


def call_soon(loop, n):
    count = [0]

    def cb():
        count[0] += 1

    for _ in range(n):
        loop.call_soon(cb)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert count[0] == n, count


def later_cancel(loop, n):
    def cb():
        raise AssertionError("a cancelled timer ran")

    delays = [0.001 + (i * 7919 % 10000) / 1000.0 for i in range(n)]
    for d in delays:
        loop.call_later(d, cb).cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()


def sleep0(loop, n):
    async def chain():
        for _ in range(n):
            await asyncio.sleep(0)
        return n

    assert loop.run_until_complete(chain()) == n


WORKLOADS = {"call_soon": call_soon, "later_cancel": later_cancel, "sleep0": sleep0}


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in WORKLOADS:
        raise SystemExit(f"usage: {sys.argv[0]} {{{','.join(WORKLOADS)}}} LOOP N")
    workload, kind, n = WORKLOADS[sys.argv[1]], sys.argv[2], int(sys.argv[3])
    loop = new_loop(kind)
    gc.disable()
    workload(loop, n)
    loop.close()


if __name__ == "__main__":
    main()
