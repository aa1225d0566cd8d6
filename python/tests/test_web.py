"""The FastAPI demo (``GET /`` -> ``{"message": "Hello World"}``) served on
the loop under test by uvicorn and by hypercorn, checked with an httpx
client, with an aiohttp client and with wrk; and an aiohttp client against
aiohttp's own server. Server and clients share the one loop, so the loop
carries both ends. Each test skips where its packages are missing
(python/ci.sh installs them all, and wrk with apt-get)."""

import asyncio
import contextlib
import os
import pathlib
import re
import shutil
import socket
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "examples"))

HELLO = {"message": "Hello World"}


def listening_socket():
    # Bound and listening before the server starts: clients queue in the
    # backlog, so no test waits for a "started" flag.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock, sock.getsockname()[1]


def demo_app():
    pytest.importorskip("fastapi")
    from fastapi_app import app

    return app


@contextlib.asynccontextmanager
async def uvicorn_serving(app):
    uvicorn = pytest.importorskip("uvicorn")
    sock, port = listening_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        yield port
    finally:
        server.should_exit = True
        await serving
        sock.close()


@contextlib.asynccontextmanager
async def hypercorn_serving(app):
    pytest.importorskip("hypercorn")
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sock, port = listening_socket()
    config = Config()
    config.bind = [f"fd://{os.dup(sock.fileno())}"]  # hypercorn owns (and closes) the dup
    config.accesslog = config.errorlog = None
    stop = asyncio.Event()
    serving = asyncio.ensure_future(serve(app, config, shutdown_trigger=stop.wait))
    try:
        yield port
    finally:
        stop.set()
        await serving
        sock.close()


async def httpx_gets(port, count):
    httpx = pytest.importorskip("httpx")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        return await asyncio.gather(*(client.get("/") for _ in range(count)))


@pytest.mark.parametrize("serving", [uvicorn_serving, hypercorn_serving], ids=["uvicorn", "hypercorn"])
def test_fastapi_demo_with_httpx(loop, serving):
    app = demo_app()

    async def main():
        async with serving(app) as port:
            return await httpx_gets(port, 20)

    responses = loop.run_until_complete(main())
    assert [r.status_code for r in responses] == [200] * 20
    assert all(r.json() == HELLO for r in responses)
    assert all(r.headers["content-type"] == "application/json" for r in responses)


def test_fastapi_demo_unknown_path_is_404(loop):
    app = demo_app()

    async def main():
        async with uvicorn_serving(app) as port:
            httpx = pytest.importorskip("httpx")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                return await client.get("/nowhere")

    assert loop.run_until_complete(main()).status_code == 404


def test_aiohttp_client_against_uvicorn(loop):
    aiohttp = pytest.importorskip("aiohttp")
    app = demo_app()

    async def main():
        async with uvicorn_serving(app) as port:
            async with aiohttp.ClientSession() as session:
                async def get():
                    async with session.get(f"http://127.0.0.1:{port}/") as response:
                        return response.status, await response.json()

                return await asyncio.gather(*(get() for _ in range(20)))

    assert loop.run_until_complete(main()) == [(200, HELLO)] * 20


def test_aiohttp_client_against_aiohttp_server(loop):
    aiohttp = pytest.importorskip("aiohttp")
    from aiohttp import web

    async def hello(request):
        return web.json_response(HELLO)

    async def echo(request):
        return web.Response(body=await request.read())

    async def main():
        app = web.Application()
        app.router.add_get("/", hello)
        app.router.add_post("/echo", echo)
        runner = web.AppRunner(app)
        await runner.setup()
        sock, port = listening_socket()
        site = web.SockSite(runner, sock)
        await site.start()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/") as response:
                    hello_answer = (response.status, await response.json())
                body = os.urandom(1 << 20)  # 1 MiB: many reads and writes each way
                async with session.post(f"http://127.0.0.1:{port}/echo", data=body) as response:
                    echoed = await response.read()
        finally:
            await runner.cleanup()
            sock.close()
        return hello_answer, echoed == body

    assert loop.run_until_complete(main()) == ((200, HELLO), True)


WRK = shutil.which("wrk")


@pytest.mark.skipif(WRK is None, reason="wrk is not installed (python/ci.sh installs it with apt-get as root)")
def test_wrk_against_uvicorn(loop):
    # wrk runs as a subprocess of the loop under test while that loop
    # serves it: 1 s, 8 connections; every request must get an answer.
    app = demo_app()

    async def main():
        async with uvicorn_serving(app) as port:
            proc = await asyncio.create_subprocess_exec(
                WRK, "-t1", "-c8", "-d1s", "--latency", f"http://127.0.0.1:{port}/",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await proc.communicate()
            return proc.returncode, out.decode()

    status, report = loop.run_until_complete(main())
    assert status == 0, report
    requests = re.search(r"(\d+) requests in", report)
    assert requests and int(requests.group(1)) > 0, report
    assert "Socket errors" not in report, report  # wrk prints the line only when there are any
    assert "Non-2xx" not in report, report
