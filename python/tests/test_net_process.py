"""What evloop inherits from asyncio's selector loop, running on the native
fd watchers: TCP streams, a protocol server, subprocesses."""

import asyncio
import sys


def test_tcp_echo_with_streams(loop):
    async def handle(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        payload = bytes(range(256)) * 1024  # 256 KiB: several reads and drains
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        echoed = await reader.read()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return echoed, payload

    echoed, payload = loop.run_until_complete(main())
    assert echoed == payload


def test_many_concurrent_connections(loop):
    async def handle(reader, writer):
        line = await reader.readline()
        writer.write(line.upper())
        await writer.drain()
        writer.close()

    async def client(port, i):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello %d\n" % i)
        answer = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return answer

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        answers = await asyncio.gather(*(client(port, i) for i in range(50)))
        server.close()
        await server.wait_closed()
        return answers

    assert loop.run_until_complete(main()) == [b"HELLO %d\n" % i for i in range(50)]


def test_subprocess_pipes_and_exit_code(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; sys.stdout.write(sys.stdin.read().upper()); sys.exit(3)",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate(b"from the parent")
        return out, proc.returncode

    assert loop.run_until_complete(main()) == (b"FROM THE PARENT", 3)


def test_run_in_executor(loop):
    import threading

    async def main():
        return await loop.run_in_executor(None, threading.get_ident)

    assert loop.run_until_complete(main()) != threading.get_ident()
