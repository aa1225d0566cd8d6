"""The Python servers of the evloop peer suite.

  python servers.py echo --loop asyncio|uvloop [--port 0]
      asyncio Protocol echo server (the cross-process echo and the 10k idle
      connections memory probe).
  python servers.py http --loop uvloop [--port 0]
      HTTP/1.1 hello world on an asyncio Protocol with httptools' parser,
      keep-alive, answering {"message": "Hello World"} as the evloop
      http_hello example and the tokio+hyper server do.

Each prints "listening on 127.0.0.1:PORT" once it accepts, then serves
until killed.
"""

import argparse
import asyncio
import resource

BODY = b'{"message": "Hello World"}'
RESPONSE = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n" + BODY
)


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class Http(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, parsed with httptools."""

    def __init__(self):
        import httptools

        self.parser = httptools.HttpRequestParser(self)
        self.error = httptools.HttpParserError
        self.transport = None
        self.out = []

    def connection_made(self, transport):
        self.transport = transport

    # httptools callbacks
    def on_message_complete(self):
        if self.parser.should_keep_alive():
            self.out.append(RESPONSE)
        else:
            self.out.append(RESPONSE.replace(b"keep-alive", b"close"))
            self.close_after = True

    def data_received(self, data):
        self.close_after = False
        try:
            self.parser.feed_data(data)
        except self.error:
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            self.transport.close()
            return
        if self.out:
            # Answers to pipelined requests go out in one write.
            self.transport.write(b"".join(self.out) if len(self.out) > 1 else self.out[0])
            self.out.clear()
        if self.close_after:
            self.transport.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["echo", "http"])
    ap.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, 65536), hard))

    if args.loop == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    factory = Echo if args.kind == "echo" else Http
    server = loop.run_until_complete(
        loop.create_server(factory, "127.0.0.1", args.port, backlog=1024)
    )
    port = server.sockets[0].getsockname()[1]
    print(f"listening on 127.0.0.1:{port}", flush=True)
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
