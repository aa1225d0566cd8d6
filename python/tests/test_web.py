"""The FastAPI demo served by uvicorn, checked with an httpx client, all on
the loop under test (skipped where fastapi/uvicorn/httpx are missing;
python/ci.sh installs them)."""

import asyncio
import pathlib
import socket
import sys

import pytest

fastapi = pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "examples"))
from fastapi_app import app  # noqa: E402


def test_fastapi_hello_world_under_uvicorn(loop):
    async def main():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        server = uvicorn.Server(config)
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                responses = await asyncio.gather(*(client.get("/") for _ in range(20)))
        finally:
            server.should_exit = True
            await serving
            sock.close()
        return responses

    responses = loop.run_until_complete(main())
    assert {r.status_code for r in responses} == {200}
    assert all(r.json() == {"message": "Hello World"} for r in responses)
