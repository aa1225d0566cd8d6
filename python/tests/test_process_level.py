"""Ctrl-C, fork, loops dropped on other threads, and the entry points.
Each case runs in a child interpreter so that what it does to the
process (signals, fork, GC) cannot disturb the test runner."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

LOOPS = {
    "asyncio": "asyncio.SelectorEventLoop",
    "evloop": "evloop.new_event_loop",
}


@pytest.fixture(params=sorted(LOOPS))
def factory_expr(request):
    return LOOPS[request.param]


def child(code, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_for_line(proc, expected):
    line = proc.stdout.readline()
    assert line.strip() == expected, (line, proc.stderr.read() if proc.poll() is not None else "")


@pytest.mark.parametrize("busy", [False, True], ids=["waiting", "busy"])
def test_ctrl_c_propagates_keyboard_interrupt(factory_expr, busy):
    # The loop is either blocked in its poll (waiting) or running callbacks
    # non-stop (busy) when SIGINT arrives.
    proc = child(
        f"""
        import asyncio, evloop, sys
        async def main():
            print("ready", flush=True)
            while True:
                await asyncio.sleep({0 if busy else 3600})
        with asyncio.Runner(loop_factory={factory_expr}) as runner:
            try:
                runner.run(main())
            except KeyboardInterrupt:
                print("interrupted", flush=True)
                raise
        """
    )
    wait_for_line(proc, "ready")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert out.strip() == "interrupted"
    assert proc.returncode in (1, -signal.SIGINT), err
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    assert "Exception ignored" not in err, err


def test_ctrl_c_in_plain_run_forever(factory_expr):
    proc = child(
        f"""
        import asyncio, evloop
        loop = {factory_expr}()
        loop.call_soon(lambda: print("ready", flush=True))
        try:
            loop.run_forever()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
        assert not loop.is_running()
        loop.close()
        """
    )
    wait_for_line(proc, "ready")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert (out.strip(), proc.returncode, err) == ("interrupted", 0, "")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_child_after_fork_runs_a_new_loop(factory_expr):
    proc = child(
        f"""
        import asyncio, evloop, os
        async def main():
            pid = os.fork()
            if pid == 0:
                # The parent's loop is "running" in the copied memory; the
                # child must still be able to make and run its own.
                asyncio.events._set_running_loop(None)
                child_loop = {factory_expr}()
                try:
                    value = child_loop.run_until_complete(asyncio.sleep(0.001, "child ok"))
                    child_loop.close()
                    os.write(1, (value + "\\n").encode())
                    os._exit(0)
                except BaseException as e:
                    os.write(2, repr(e).encode())
                    os._exit(1)
            _, status = await asyncio.get_running_loop().run_in_executor(None, os.waitpid, pid, 0)
            return os.waitstatus_to_exitcode(status)
        loop = {factory_expr}()
        print("parent", loop.run_until_complete(main()), flush=True)
        loop.close()
        """
    )
    out, err = proc.communicate(timeout=60)
    lines = sorted(out.split("\n"))
    assert lines == ["", "child ok", "parent 0"], (out, err)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_closing_an_inherited_loop_in_the_child_leaves_the_parents_fds(factory_expr):
    # The child shares the parent's epoll instance: closing its copy of the
    # loop must not unregister the parent's fd watchers. evloop's copy also
    # refuses to run in the child (asyncio's runs, on the shared epoll).
    proc = child(
        f"""
        import asyncio, evloop, os, socket
        loop = {factory_expr}()
        a, b = socket.socketpair()
        got = loop.create_future()
        loop.add_reader(b.fileno(), lambda: got.done() or got.set_result(b.recv(10)))
        pid = os.fork()
        if pid == 0:
            try:
                if "evloop" in "{factory_expr}":
                    try:
                        loop.run_until_complete(asyncio.sleep(0))
                        os.write(2, b"an inherited evloop loop ran")
                        os._exit(1)
                    except RuntimeError as e:
                        assert "parent process" in str(e), e
                loop.close()
                os._exit(0)
            except BaseException as e:
                os.write(2, repr(e).encode())
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status), flush=True)
        a.send(b"ping")
        print("parent", loop.run_until_complete(asyncio.wait_for(got, 10)).decode(), flush=True)
        loop.remove_reader(b.fileno())
        loop.close()
        """
    )
    out, err = proc.communicate(timeout=60)
    assert out.split("\n") == ["child 0", "parent ping", ""], (out, err)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_process_pool_with_fork_from_a_running_loop(factory_expr):
    # multiprocessing's fork start method forks from inside the running
    # loop; each worker makes and runs its own loop, and the parent exits
    # cleanly afterwards (CPython's test_get_event_loop_new_process).
    proc = child(
        f"""
        import asyncio, concurrent.futures, evloop, multiprocessing, warnings
        warnings.simplefilter("ignore", DeprecationWarning)

        def in_worker():
            async def doit():
                return "hello"
            lp = {factory_expr}()
            asyncio.set_event_loop(lp)
            try:
                return lp.run_until_complete(doit())
            finally:
                asyncio.set_event_loop(None)
                lp.close()

        async def main():
            ctx = multiprocessing.get_context("fork")
            with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
                loop = asyncio.get_running_loop()
                jobs = [loop.run_in_executor(pool, in_worker) for _ in range(4)]
                return await asyncio.gather(*jobs)

        loop = {factory_expr}()
        print(*loop.run_until_complete(main()), flush=True)
        loop.close()
        """
    )
    out, err = proc.communicate(timeout=60)
    assert (out.split(), proc.returncode) == (["hello"] * 4, 0), err


def test_loop_dropped_on_another_thread_does_not_crash(factory_expr):
    proc = child(
        f"""
        import asyncio, evloop, gc, threading
        loops = [{factory_expr}() for _ in range(3)]
        loops[0].run_until_complete(asyncio.sleep(0))
        loops[1].close()
        def drop():
            loops.clear()
            gc.collect()
        t = threading.Thread(target=drop)
        t.start()
        t.join()
        gc.collect()
        print("alive", flush=True)
        """
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip() == "alive"
    assert "panicked" not in err and "Fatal" not in err, err


def test_entry_points():
    proc = child(
        """
        import asyncio, sys, evloop
        async def main():
            return type(asyncio.get_running_loop()).__module__
        print(evloop.run(main()))
        evloop.install()
        print(asyncio.run(main()))
        loop = asyncio.new_event_loop()
        print(type(loop).__module__)
        loop.close()
        asyncio.set_event_loop_policy(None)
        if sys.version_info >= (3, 12):
            print(asyncio.run(main(), loop_factory=evloop.new_event_loop))
        else:
            print("evloop._loop")
        """
    )
    out, err = proc.communicate(timeout=60)
    assert out.split() == ["evloop._loop"] * 4, err


def test_transports_left_open_at_exit_end_quietly(factory_expr):
    # A program that exits with connections open: the interpreter's
    # shutdown frees them; nothing but ResourceWarnings (ignored by
    # default) may come out, and the exit status is 0.
    proc = child(
        f"""
        import asyncio, evloop
        loop = {factory_expr}()
        async def main():
            server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
            tr, _ = await loop.create_connection(asyncio.Protocol, *server.sockets[0].getsockname())
            for _ in range(5):
                await asyncio.sleep(0)
            print(sorted(tr._extra), flush=True)
        loop.run_until_complete(main())
        """
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip() == "['peername', 'sockname']" or out.strip() == "['peername', 'socket', 'sockname']"
    assert "Exception ignored" not in err, err
