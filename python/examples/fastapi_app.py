"""The FastAPI demo on evloop: ``GET /`` -> ``{"message": "Hello World"}``.

Run with:  python python/examples/fastapi_app.py [PORT]     (default 8000)
or:        uvicorn fastapi_app:app --loop evloop:new_event_loop
           (from python/examples/; uvicorn 0.36+ takes a loop factory)
Needs:     pip install fastapi uvicorn
"""

import sys

import uvicorn
from fastapi import FastAPI

import evloop

app = FastAPI()


@app.get("/")
async def root():
    return {"message": "Hello World"}


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info")
    evloop.run(uvicorn.Server(config).serve())
