"""python/cpython_suite.py itself, on a made-up package of test modules: a
hang and a crash are failures of the test they happened in and the module
goes on after them; a process that hangs at exit is ``MODULE.@exit``; an
unlisted failure and a listed test that passes both fail the run."""

import os
import pathlib
import subprocess
import sys
import textwrap

RUNNER = pathlib.Path(__file__).resolve().parent.parent / "cpython_suite.py"

MODULES = {
    "test_fine": """
        import unittest

        class Fine(unittest.TestCase):
            def test_one(self):
                pass

            @unittest.skip("not here")
            def test_skipped(self):
                pass

            def test_fails(self):
                self.fail("on purpose")
        """,
    "test_hang": """
        import time, unittest

        class Hang(unittest.TestCase):
            def test_a_before(self):
                pass

            def test_b_hangs(self):
                time.sleep(3600)

            def test_c_after(self):
                pass
        """,
    "test_crash": """
        import os, unittest

        class Crash(unittest.TestCase):
            def test_a_dies(self):
                os._exit(3)

            def test_b_after(self):
                pass
        """,
    "test_exit": """
        import threading, time, unittest

        class Exit(unittest.TestCase):
            def test_leaves_a_thread(self):
                # Not a daemon: the interpreter waits for it at exit.
                threading.Thread(target=time.sleep, args=(3600,)).start()
        """,
}


def run_runner(tmp_path, expected):
    pkg = tmp_path / "fakesuite"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    for name, body in MODULES.items():
        (pkg / f"{name}.py").write_text(textwrap.dedent(body))
    listing = tmp_path / "expected.txt"
    listing.write_text(textwrap.dedent(expected))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, str(RUNNER), "--package", "fakesuite", "--expected", str(listing),
         "--stall", "3", "--exit-grace", "2", "--jobs", "2"],
        capture_output=True, text=True, env=env, timeout=120)
    return proc.returncode, proc.stdout


def row(output, module):
    line = next(line for line in output.splitlines() if line.startswith(module + " "))
    return [int(x) for x in line.split()[1:6]]  # run passed failed skipped loops


def test_hangs_crashes_and_exit_hangs_are_failures_and_the_module_goes_on(tmp_path):
    status, out = run_runner(tmp_path, """
        fakesuite.test_fine.Fine.test_fails   # on purpose
        fakesuite.test_hang.Hang.test_b_hangs  # sleeps
        fakesuite.test_crash.Crash.test_a_dies  # exits
        fakesuite.test_exit.@exit   # a thread left behind
        """)
    assert status == 0, out
    assert row(out, "test_fine")[:4] == [3, 1, 1, 1]
    assert row(out, "test_hang")[:4] == [3, 2, 1, 0]  # test_c_after ran after the hang
    assert "test_b_hangs: no progress for 3 s" in out
    assert row(out, "test_crash")[:4] == [2, 1, 1, 0]
    assert "process died (status 3)" in out
    assert row(out, "test_exit")[:4] == [2, 1, 1, 0]
    assert "@exit: still running 2 s after its last test" in out
    assert out.rstrip().splitlines()[-1] == "cpython: 5 passed, 0 failed, 1 skipped"


def test_unlisted_failure_and_listed_pass_fail_the_run(tmp_path):
    status, out = run_runner(tmp_path, """
        fakesuite.test_fine.Fine.test_one        # listed, but passes
        fakesuite.test_hang.Hang.test_b_hangs  # sleeps
        fakesuite.test_crash.Crash.test_a_dies  3.0  # another Python version only
        fakesuite.test_exit.@exit
        """)
    assert status == 1, out
    assert "UNEXPECTED FAILURE: fakesuite.test_fine.Fine.test_fails" in out
    assert "AssertionError: on purpose" in out
    assert "UNEXPECTED FAILURE: fakesuite.test_crash.Crash.test_a_dies" in out
    assert "NOW PASSES: fakesuite.test_fine.Fine.test_one" in out
    assert out.rstrip().splitlines()[-1] == "cpython: 5 passed, 2 failed, 1 skipped"
