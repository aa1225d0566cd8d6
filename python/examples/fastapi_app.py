"""The FastAPI demo on evloop: ``GET /`` -> ``{"message": "Hello World"}``.

Run with:  python python/examples/fastapi_app.py [PORT [uvicorn|hypercorn]]
           (default: 8000, uvicorn)
or:        uvicorn fastapi_app:app --loop evloop:new_event_loop
           (from python/examples/; uvicorn 0.36+ takes a loop factory)
Needs:     pip install fastapi uvicorn     (or hypercorn)
"""

import sys

from fastapi import FastAPI

import evloop

app = FastAPI()


@app.get("/")
async def root():
    return {"message": "Hello World"}


def main(port, server):
    if server == "hypercorn":
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.accesslog = "-"
        evloop.run(serve(app, config))
    elif server == "uvicorn":
        import uvicorn

        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info")
        evloop.run(uvicorn.Server(config).serve())
    else:
        raise SystemExit(f"unknown server {server!r}: uvicorn or hypercorn")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8000, sys.argv[2] if len(sys.argv) > 2 else "uvicorn")
