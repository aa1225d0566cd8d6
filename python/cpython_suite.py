"""Runs CPython's own asyncio tests (``test.test_asyncio``, shipped with the
interpreter) with evloop injected as the loop every test gets, and checks
the outcome against ``cpython-expected-failures.txt``.

    python python/cpython_suite.py                  # every module, 2 at a time
    python python/cpython_suite.py test_tasks test_streams
    python python/cpython_suite.py --jobs 1 --stall 60 --timeout 600

Each module runs in its own subprocess. A test that makes no progress for
``--stall`` seconds (a hang), or a child that dies (a crash), is recorded as
a failure of the test it was in; the module is then resumed after that test,
so one hang costs one stall, not the module's other tests, and never blocks
CI. ``--timeout`` bounds a module's total time the same way.

Prints one row per module (run, passed, failed, skipped, the number of
evloop loops the module created, seconds) and the pass rate of the tests
that ran. Exit status 1 when a test fails that the list does not name, or
when a listed test now passes (remove it from the list: it may only
shrink); 0 otherwise. The last line is ``cpython: N passed, N failed, N
skipped``, where "failed" counts the failures the list does not expect.

The expected-failure list: one test id per line, optionally followed by
the Python versions it applies to (``3.12``), then ``#`` and the reason.
"""

import argparse
import faulthandler
import importlib
import asyncio
import asyncio.unix_events as unix_events
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import unittest
from concurrent.futures import ThreadPoolExecutor

HERE = pathlib.Path(__file__).resolve().parent
# Run as a script, its folder (python/) comes first on sys.path, and
# python/evloop/ there has no compiled module: drop it, so that `import
# evloop` is the installed package.
if sys.path and pathlib.Path(sys.path[0] or ".").resolve() == HERE:
    del sys.path[0]
PACKAGE = "test.test_asyncio"
# Run first: the longest modules, so that two workers finish together.
HEAVY = ["test_tasks", "test_events", "test_subprocess", "test_ssl", "test_sendfile",
         "test_unix_events", "test_streams", "test_base_events", "test_sslproto"]
VERSION = "%d.%d" % sys.version_info[:2]
# Seconds a child may take to exit once its last test is done; past that
# it is killed and "<module>.@exit" fails (threads or children left
# behind that the interpreter waits for at exit).
EXIT_GRACE = 15.0


# -- the child: one module, one outcome line per test ---------------------

def inject(counter):
    """Makes evloop the loop of every way a test gets one: the
    ``SelectorEventLoop`` class itself, and the default policy's factory
    (``new_event_loop``, ``asyncio.run``, ``Runner``, IsolatedAsyncioTestCase)."""
    import evloop

    class CountingLoop(evloop.EventLoop):
        def __init__(self, *args, **kwargs):
            counter[0] += 1
            super().__init__(*args, **kwargs)

    CountingLoop.__name__ = CountingLoop.__qualname__ = "EvloopLoop"
    asyncio.SelectorEventLoop = CountingLoop
    unix_events.SelectorEventLoop = CountingLoop
    unix_events._UnixDefaultEventLoopPolicy._loop_factory = CountingLoop
    if hasattr(asyncio, "EventLoop"):  # 3.13+
        asyncio.EventLoop = CountingLoop


def flatten(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from flatten(item)
        else:
            yield item


class Recorder(unittest.TestResult):
    """Writes a JSON line when a test starts and one per outcome, flushed at
    once, so the parent knows which test a hang or a crash happened in."""

    def __init__(self, out, counter, stall):
        super().__init__()
        self.out = out
        self.counter = counter
        self.stall = stall

    def emit(self, test, outcome, err=None):
        line = {"id": test.id(), "outcome": outcome, "loops": self.counter[0]}
        if err is not None:
            line["tb"] = self._exc_info_to_string(err, test) if isinstance(err, tuple) else err
        self.out.write(json.dumps(line) + "\n")
        self.out.flush()

    def startTest(self, test):
        super().startTest(test)
        # Where a hang is, in the module's log, before the parent kills it.
        faulthandler.dump_traceback_later(max(1.0, self.stall - 3), exit=False)
        self.out.write(json.dumps({"id": test.id(), "outcome": "start"}) + "\n")
        self.out.flush()

    def addSuccess(self, test):
        self.emit(test, "pass")

    def addFailure(self, test, err):
        self.emit(test, "fail", err)

    def addError(self, test, err):
        self.emit(test, "fail", err)

    def addSubTest(self, test, subtest, err):
        if err is not None:
            self.emit(test, "fail", err)

    def addSkip(self, test, reason):
        self.emit(test, "skip", None)

    def addExpectedFailure(self, test, err):
        self.emit(test, "pass")  # CPython's own @expectedFailure: as CPython expects

    def addUnexpectedSuccess(self, test):
        self.emit(test, "fail", "unexpected success")


def child(module, out_path, skip_ids, stall):
    counter = [0]
    inject(counter)
    with open(out_path, "a") as out:
        name = f"{PACKAGE}.{module}"
        try:
            suite = unittest.defaultTestLoader.loadTestsFromName(name)
        except unittest.SkipTest as e:
            out.write(json.dumps({"id": name, "outcome": "module-skip", "tb": str(e)}) + "\n")
            return 0
        except Exception:
            out.write(json.dumps({"id": name, "outcome": "fail", "tb": traceback.format_exc()}) + "\n")
            return 0
        tests = [t for t in flatten(suite) if t.id() not in skip_ids]
        result = Recorder(out, counter, stall)
        unittest.TestSuite(tests).run(result)
        out.write(json.dumps({"id": name, "outcome": "done", "loops": counter[0]}) + "\n")
    faulthandler.dump_traceback_later(max(1.0, EXIT_GRACE - 3), exit=False)
    return 0


# -- the parent: modules in parallel, each resumed after a hang or crash --

def discover():
    pkg = importlib.import_module(PACKAGE)
    folder = pathlib.Path(pkg.__file__).parent
    names = sorted(p.stem for p in folder.glob("test_*.py"))
    return sorted(names, key=lambda n: (HEAVY.index(n) if n in HEAVY else len(HEAVY), n))


def expected_failures(path):
    """The list's ids that apply to this Python version, with reasons."""
    ids = {}
    for line in path.read_text().splitlines():
        body, _, reason = line.partition("#")
        fields = body.split()
        if not fields:
            continue
        versions = fields[1:]
        if versions and VERSION not in versions:
            continue
        ids[fields[0]] = reason.strip()
    return ids


class ModuleRun:
    def __init__(self, module):
        self.module = module
        self.outcomes = {}  # test id -> worst outcome seen ("pass" < "skip" < "fail")
        self.tracebacks = {}
        self.loops = 0
        self.seconds = 0.0
        self.skipped_module = None
        self.notes = []

    def record(self, test_id, outcome, tb=None):
        rank = {"pass": 0, "skip": 1, "fail": 2}
        if rank[outcome] >= rank[self.outcomes.get(test_id, "pass")] or test_id not in self.outcomes:
            self.outcomes[test_id] = outcome
        if tb:
            self.tracebacks.setdefault(test_id, tb)

    def count(self, outcome):
        return sum(1 for o in self.outcomes.values() if o == outcome)


def run_module(module, work, stall, timeout, log_lock):
    run = ModuleRun(module)
    out_path = work / f"{module}.jsonl"
    log_path = work / f"{module}.log"
    skip_ids = set()
    start = time.monotonic()
    while True:
        lines_before = _read_lines(out_path)
        skip_file = work / f"{module}.skip"
        skip_file.write_text("\n".join(sorted(skip_ids)))
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--package", PACKAGE, "--stall", str(stall),
                 "--exit-grace", str(EXIT_GRACE), "--child", module, str(out_path), str(skip_file)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)  # its own process group: killed whole
            killed = None
            last_size, last_change, finished = -1, time.monotonic(), False
            while proc.poll() is None:
                time.sleep(0.2)
                size = out_path.stat().st_size if out_path.exists() else 0
                now = time.monotonic()
                if size != last_size:
                    last_size, last_change = size, now
                    finished = _last_outcome(out_path) in ("done", "module-skip")
                if finished and now - last_change > EXIT_GRACE:
                    killed = f"still running {EXIT_GRACE:.0f} s after its last test"
                elif now - last_change > stall:
                    killed = f"no progress for {stall:.0f} s"
                elif now - start > timeout:
                    killed = f"module over its {timeout:.0f} s timeout"
                if killed:
                    _kill_group(proc)
                    break
            proc.wait()
            _kill_group(proc)  # whatever the test left behind in the group
        lines = _read_lines(out_path)[len(lines_before):]
        started, done = None, False
        run.loops += max([line.get("loops", 0) for line in lines] or [0])
        for line in lines:
            outcome = line["outcome"]
            if outcome == "start":
                started = line["id"]
                skip_ids.add(started)
            elif outcome == "done":
                done = True
            elif outcome == "module-skip":
                run.skipped_module = line["tb"]
                done = True
            else:
                run.record(line["id"], outcome, line.get("tb"))
                if line["id"] == started:
                    started = None
        if done and not killed:
            if proc.returncode != 0:
                why = f"exit status {proc.returncode} after the last test"
                run.record(f"{PACKAGE}.{module}.@exit", "fail", why)
                run.notes.append(f"@exit: {why}")
            break
        why = killed or f"process died (status {proc.returncode})"
        if done:
            # Hung or died at exit: its own id, so that the list can name it.
            run.record(f"{PACKAGE}.{module}.@exit", "fail", why)
            run.notes.append(f"@exit: {why}")
            break
        if started is None:
            # Outside any test: at import or in a module fixture.
            run.record(f"{PACKAGE}.{module}", "fail", why + " outside a test")
            run.notes.append(why + " outside a test")
            break
        run.record(started, "fail", why)
        run.notes.append(f"{started.rsplit('.', 1)[-1]}: {why}")
        if time.monotonic() - start > timeout:
            run.notes.append("the module's remaining tests were not run")
            break
        # Resume after the test it was in (that one and the finished ones skipped).
    run.seconds = time.monotonic() - start
    with log_lock:
        print(f"  {module}: {len(run.outcomes)} tests, {run.seconds:.0f} s", flush=True)
    return run


def _last_outcome(path):
    if not path.exists():
        return None
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, 2) - 4096))
        tail = f.read().decode(errors="replace").strip().splitlines()
    try:
        return json.loads(tail[-1])["outcome"] if tail else None
    except ValueError:
        return None


def _read_lines(path):
    if not path.exists():
        return []
    lines = []
    for raw in path.read_text().splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:  # a line cut short by a kill
            pass
    return lines


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def module_of(test_id):
    """The module part of a test id of PACKAGE ("" for another id)."""
    prefix = PACKAGE + "."
    return test_id[len(prefix):].split(".")[0] if test_id.startswith(prefix) else ""


def main():
    global PACKAGE, EXIT_GRACE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="test_asyncio modules (default: all)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--stall", type=float, default=90.0,
                        help="seconds without a finished test before it counts as a hang")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per module")
    parser.add_argument("--exit-grace", type=float, default=EXIT_GRACE,
                        help="seconds a module's process may take to exit after its last test")
    parser.add_argument("--expected", type=pathlib.Path, default=HERE / "cpython-expected-failures.txt",
                        help="the expected-failure list")
    parser.add_argument("--package", default=PACKAGE,
                        help="the package of test modules (another one: to test this runner)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    PACKAGE, EXIT_GRACE = args.package, args.exit_grace
    if args.child:
        module, out_path, skip_file = args.child
        skip_ids = set(pathlib.Path(skip_file).read_text().split())
        return child(module, out_path, skip_ids, args.stall)

    modules = args.modules or discover()
    expected = expected_failures(args.expected)
    began = time.monotonic()
    print(f"CPython {sys.version.split()[0]}: {PACKAGE} on evloop, {len(modules)} modules, "
          f"{args.jobs} at a time", flush=True)
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="cpython-suite-") as tmp:
        work = pathlib.Path(tmp)
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(run_module, m, work, args.stall, args.timeout, lock) for m in modules]
            runs = [f.result() for f in futures]
        logs = {r.module: (work / f"{r.module}.log").read_text(errors="replace")
                if (work / f"{r.module}.log").exists() else "" for r in runs}

    runs.sort(key=lambda r: r.module)
    print(f"{'module':24} {'run':>5} {'passed':>6} {'failed':>6} {'skipped':>7} {'loops':>6} {'secs':>5}")
    totals = [0, 0, 0, 0]
    for r in runs:
        run, passed, failed, skipped = len(r.outcomes), r.count("pass"), r.count("fail"), r.count("skip")
        for i, n in enumerate((run, passed, failed, skipped)):
            totals[i] += n
        note = f"  module skipped: {r.skipped_module}" if r.skipped_module else ""
        note += "".join(f"  [{n}]" for n in r.notes)
        print(f"{r.module:24} {run:5} {passed:6} {failed:6} {skipped:7} {r.loops:6} {r.seconds:5.0f}{note}")
    run, passed, failed, skipped = totals
    rate = 100.0 * passed / max(1, run - skipped)
    print(f"{'total':24} {run:5} {passed:6} {failed:6} {skipped:7}   "
          f"{rate:.2f}% of the {run - skipped} tests that ran passed "
          f"({time.monotonic() - began:.0f} s)")

    failed_ids = {i for r in runs for i, o in r.outcomes.items() if o == "fail"}
    seen_ids = {i for r in runs for i in r.outcomes}
    tracebacks = {i: tb for r in runs for i, tb in r.tracebacks.items()}
    unexpected = sorted(failed_ids - set(expected))
    ran_modules = {m for m in modules}
    now_pass = sorted(i for i in expected if i not in failed_ids
                      and (i in seen_ids or module_of(i) in ran_modules))
    for test_id in unexpected:
        print(f"\nUNEXPECTED FAILURE: {test_id}\n{tracebacks.get(test_id, '').rstrip()}")
        module = module_of(test_id)
        if module in logs and tracebacks.get(test_id, "").startswith(("no progress", "process died", "exit status", "module over")):
            tail = "\n".join(logs[module].splitlines()[-15:])
            print(f"  (last lines of the module's output)\n{tail}")
    for test_id in now_pass:
        print(f"NOW PASSES: {test_id} -- remove it from {args.expected.name}: the list may only shrink")
    xfailed = len(failed_ids & set(expected))
    print(f"\n{xfailed} expected failures (listed in {args.expected.name}), "
          f"{len(unexpected)} unexpected, {len(now_pass)} listed but passing")
    print(f"cpython: {passed} passed, {len(unexpected)} failed, {skipped} skipped")
    return 1 if unexpected or now_pass else 0


if __name__ == "__main__":
    sys.exit(main())
