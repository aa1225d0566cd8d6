"""Runs CPython's own asyncio tests (``test.test_asyncio``, shipped with the
interpreter) with evloop injected as the loop every test gets, prints
per-module counts, and checks the failures against
``cpython-expected-failures.txt`` (one test id per line, ``#`` reason).

Run with:  python python/cpython_suite.py [MODULE...]   (default: all below)
Exit status: 0 when every failure is expected, 1 otherwise. An expected
failure that passes is reported so the list can shrink.
"""

import asyncio
import asyncio.unix_events as unix_events
import pathlib
import sys
import unittest

import evloop

MODULES = [
    "test_base_events", "test_buffered_proto", "test_context", "test_events",
    "test_futures", "test_locks", "test_pep492", "test_queues", "test_runners",
    "test_selector_events", "test_sendfile", "test_server", "test_sock_lowlevel",
    "test_ssl", "test_sslproto", "test_streams", "test_subprocess", "test_taskgroups",
    "test_tasks", "test_threads", "test_timeouts", "test_unix_events", "test_waitfor",
]

created = [0]


class CountingLoop(evloop.EventLoop):
    def __init__(self, *args, **kwargs):
        created[0] += 1
        super().__init__(*args, **kwargs)


def inject():
    # Every way a test gets a loop: SelectorEventLoop() directly, and the
    # default policy's factory (new_event_loop, asyncio.run, Runner).
    asyncio.SelectorEventLoop = CountingLoop
    unix_events.SelectorEventLoop = CountingLoop
    unix_events._UnixDefaultEventLoopPolicy._loop_factory = CountingLoop


def expected_failures():
    path = pathlib.Path(__file__).with_name("cpython-expected-failures.txt")
    ids = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            ids.add(line)
    return ids


def main():
    inject()
    modules = sys.argv[1:] or MODULES
    expected = expected_failures()
    failed_ids = set()
    totals = [0, 0, 0]
    print(f"CPython {sys.version.split()[0]}: test.test_asyncio on evloop")
    print(f"{'module':22} {'run':>5} {'failed':>6} {'skipped':>7} {'evloop loops':>12}")
    for name in modules:
        before = created[0]
        suite = unittest.defaultTestLoader.loadTestsFromName("test.test_asyncio." + name)
        with open("/dev/null", "w") as sink:
            result = unittest.TextTestRunner(stream=sink, verbosity=0).run(suite)
        bad = result.failures + result.errors + [(t, "") for t in result.unexpectedSuccesses]
        failed_ids.update(t.id() for t, _ in bad)
        totals[0] += result.testsRun
        totals[1] += len(bad)
        totals[2] += len(result.skipped)
        print(f"{name:22} {result.testsRun:5} {len(bad):6} {len(result.skipped):7} {created[0] - before:12}")
    passed = totals[0] - totals[1] - totals[2]
    rate = 100.0 * passed / max(1, totals[0] - totals[2])
    print(f"{'total':22} {totals[0]:5} {totals[1]:6} {totals[2]:7}   {rate:.2f}% of those run passed")
    unexpected = sorted(failed_ids - expected)
    fixed = sorted(i for i in expected - failed_ids if i.split(".")[2] in modules)
    for test_id in unexpected:
        print("UNEXPECTED FAILURE:", test_id)
    for test_id in fixed:
        print("now passes (drop it from the list):", test_id)
    print(f"{totals[0] - totals[1] - totals[2]} passed, {totals[1]} failed, {totals[2]} skipped")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
