"""evloop's asyncio event loop: asyncio's Unix selector loop with its engine
(scheduling, timers, fd watchers, threadsafe calls and the run loop)
replaced by evloop's Rust core.

Invariant: the core is the only ready queue and the only timer heap.
``self._ready`` and ``self._scheduled`` (asyncio's) stay empty, and every
fd watcher, asyncio's own transports' included, is a core fd watcher: the
selector asyncio builds is never polled.
"""

import asyncio
import inspect
import io
import os
import selectors
import socket
import sys
import threading
from asyncio import (
    base_events,
    constants,
    events,
    exceptions,
    format_helpers,
    futures,
    sslproto,
    transports,
    trsock,
    unix_events,
)

from . import _evloop

__all__ = ("EventLoop", "EventLoopPolicy", "VirtualTimeLoop", "new_event_loop")

# Native handles: asyncio's API and reprs; each is the core's queued entry.
Handle = _evloop.Handle
TimerHandle = _evloop.TimerHandle

# What the native sock_* calls return when they have to wait.
_Future = futures.Future
_check_ssl_socket = base_events._check_ssl_socket


def _native_attr(name, doc):
    return property(lambda self: getattr(self._native, name), doc=doc)


class _SocketTransport(transports._FlowControlMixin, transports.Transport):
    """The stream transport of evloop's TCP and Unix connections and
    servers (and under TLS, of asyncio's SSL protocol): an
    ``asyncio.Transport`` whose engine is native
    (``_evloop.StreamTransport``, ``python/src/transport.rs``).

    The API's methods are the native object's, bound into the instance
    the first time each is looked up (``_ENGINE_METHODS``), so a
    ``write`` runs no Python frame and making a transport binds nothing.
    """

    max_size = 256 * 1024  # the most one read takes (asyncio's)
    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE

    _sock = _native_attr("_sock", "the socket, until the connection is lost")
    _sock_fd = _native_attr("_sock_fd", "the socket's fd")
    _loop = _native_attr("_loop", "the loop, until the connection is lost")
    _protocol = _native_attr("_protocol", "the protocol, until the connection is lost")
    _server = _native_attr("_server", "the server that accepted it, if any")
    _closing = _native_attr("_closing", "close() or abort() was called")
    _conn_lost = _native_attr("_conn_lost", "connection_lost is scheduled (or ran), plus writes after")
    _eof = _native_attr("_eof", "write_eof() was called")
    _paused = _native_attr("_paused", "pause_reading() was called")
    _protocol_paused = _native_attr("_protocol_paused", "the protocol's writing is paused")
    _empty_waiter = _native_attr("_empty_waiter", "the future sendfile waits on")

    def __init__(self, loop, sock, protocol, waiter=None, extra=None, server=None):
        # Natively (python/src/transport.rs, init_stream_transport): sets
        # _extra, _rawsock and _thread (what __repr__ reads,
        # which the GC may call on any thread, where the native half
        # cannot be touched), makes the engine (_native) and starts it as
        # asyncio's constructor does. The native accept loop makes its transports the same way
        # without running this method.
        _evloop.init_stream_transport(self, loop, sock, protocol, waiter, extra, server)

    # The API's methods, the engine's: each class attribute is an
    # _evloop.EngineMethod, which binds the engine's method into the
    # instance on first use (no Python frame per call, and a transport
    # binds only what it uses).
    _ENGINE_METHODS = (
        "write",
        "writelines",
        "close",
        "is_closing",
        "get_extra_info",
        "pause_reading",
        "resume_reading",
        "get_write_buffer_size",
        "write_eof",
        "can_write_eof",
        "abort",
        "is_reading",
        "set_protocol",
        "get_protocol",
        "get_write_buffer_limits",
        "set_write_buffer_limits",
        "_force_close",
        "_fatal_error",
        "_call_connection_lost",
        "_make_empty_waiter",
        "_reset_empty_waiter",
    )

    def __repr__(self):
        native = self.__dict__.get("_native")
        info = [self.__class__.__name__]
        if native is None or threading.get_ident() != self._thread:
            return f"<{info[0]} fd={self._rawsock.fileno()}>"
        if native._sock is None:
            info.append("closed")
        elif native._closing:
            info.append("closing")
        info.append(f"fd={native._sock_fd}")
        lp = native._loop
        if lp is not None and not lp.is_closed():
            info.append("read=polling" if native._read_polling else "read=idle")
            state = "polling" if native._write_polling else "idle"
            info.append(f"write=<{state}, bufsize={native.get_write_buffer_size()}>")
        return "<{}>".format(" ".join(info))

    # No __del__: a transport collected with its socket open is freed by
    # the GC with its engine, whose finalizer warns (ResourceWarning) and
    # closes the socket, as asyncio's __del__ does (python/src/transport.rs,
    # warn_unclosed); a closed one is freed without a finalizer call.


for _name in _SocketTransport._ENGINE_METHODS:
    setattr(_SocketTransport, _name, _evloop.EngineMethod(_name))
del _name


class _DatagramTransport(transports.Transport, transports.DatagramTransport):
    """The datagram transport of evloop's ``create_datagram_endpoint``: an
    ``asyncio.DatagramTransport`` (and ``asyncio.Transport``, as asyncio's
    own is) whose methods are those of the native
    transport it holds (``_evloop.DatagramTransport``), bound to it as
    instance attributes, so that ``sendto`` runs no Python frame.
    ``get_extra_info`` is asyncio's (``socket`` is asyncio's
    ``TransportSocket``, which never detaches or closes the fd)."""

    def __init__(self, loop, sock, protocol, address, extra):
        super().__init__(extra)
        native = _evloop.DatagramTransport(loop, sock, protocol, address, extra, self)
        self._native = native
        self.sendto = native.sendto
        self.close = native.close
        self.abort = native.abort
        self.is_closing = native.is_closing
        self.get_write_buffer_size = native.get_write_buffer_size
        self.get_write_buffer_limits = native.get_write_buffer_limits
        self.set_write_buffer_limits = native.set_write_buffer_limits
        self.get_protocol = native.get_protocol
        self.set_protocol = native.set_protocol
        self._start_reading = native._start_reading

    @property
    def _sock(self):
        # asyncio's attribute (the socket; None once closed), which code
        # and tests read.
        return self._native._sock

    @property
    def _protocol(self):
        return self._native.get_protocol()

    def __repr__(self):
        return repr(self._native)


# create_connection's keyword options on this Python version (3.12 added
# all_errors), each with the value that means "not used".
_CONNECT_OPTIONS = {
    name: parameter.default
    for name, parameter in inspect.signature(base_events.BaseEventLoop.create_connection).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
}


def _default_connect_options(options):
    """Whether every option given to create_connection is one it takes,
    at its default (``ssl=False`` counts as no TLS, as asyncio reads it)."""
    for name, value in options.items():
        default = _CONNECT_OPTIONS.get(name, _CONNECT_OPTIONS)
        if value is default or (name == "ssl" and value is False):
            continue
        if default.__class__ in (int, bool) and value.__class__ in (int, bool) and value == default:
            continue
        return False
    return True


class _NativeWatchers(selectors.BaseSelector):
    """What asyncio reads of its loop's selector (``get_key``, ``get_map``:
    transports' reprs, a few tests), answered from the native fd watchers.
    Never polled and never registered with: the core does both."""

    def __init__(self, readers, writers):
        self._readers = readers
        self._writers = writers

    def get_key(self, fileobj):
        fd = selectors._fileobj_to_fd(fileobj)
        reader = self._readers.get(fd)
        writer = self._writers.get(fd)
        if reader is None and writer is None:
            raise KeyError(f"{fileobj!r} is not registered")
        events = (selectors.EVENT_READ if reader else 0) | (selectors.EVENT_WRITE if writer else 0)
        return selectors.SelectorKey(fileobj, fd, events, (reader, writer))

    def get_map(self):
        return {fd: self.get_key(fd) for fd in {*self._readers, *self._writers}}

    def register(self, fileobj, events, data=None):
        raise RuntimeError("evloop watches fds natively: use add_reader/add_writer")

    def unregister(self, fileobj):
        raise RuntimeError("evloop watches fds natively: use remove_reader/remove_writer")

    def select(self, timeout=None):
        raise RuntimeError("evloop's core polls; this selector is a view")

    def close(self):
        pass


class EventLoop(_evloop.LoopBase, unix_events._UnixSelectorEventLoop):
    """An asyncio event loop on evloop's Rust core.

    Everything asyncio's Unix selector loop does works unchanged (sockets,
    transports, servers, TLS, subprocesses, signals, the executor, DNS);
    scheduling, timers, fd watchers, ``call_soon_threadsafe`` and the run
    loop itself are native. ``time``, ``call_soon``, ``call_later`` and
    ``call_at`` are methods of the native base class (``_evloop.LoopBase``),
    so a call runs no Python frame; in debug mode the scheduling calls go
    through the checking versions below (``_call_soon_debug``...).
    """

    def __init__(self, selector=None, *, _core=None):
        # Before asyncio's __init__: it registers the self-pipe's reader.
        self._core = _core if _core is not None else _evloop.Core()
        self._core.set_loop(self)
        self._set_core(self._core)
        self._remote = self._core.remote()
        self._readers = {}
        self._writers = {}
        if selector is not None:
            # asyncio's signature takes a selector; the core polls instead.
            selector.close()
        super().__init__(_NativeWatchers(self._readers, self._writers))

    # ------------------------------------------------------------ running

    def _run_once(self):
        # asyncio's run_forever (inherited: running-loop bookkeeping,
        # asyncgen hooks, stop/_stopping) calls this until _stopping; one
        # native call runs the core's run_forever until stop().
        if self._stopping:
            self._core.stop()
        self._core.run_until_stopped(self)

    def stop(self):
        super().stop()
        self._core.stop()

    def _run_handle_debug(self, handle):
        # asyncio's debug-mode dispatch: time each callback, warn about
        # slow ones with the callback's repr.
        try:
            self._current_handle = handle
            t0 = self.time()
            handle._run()
            dt = self.time() - t0
            if dt >= self.slow_callback_duration:
                base_events.logger.warning(
                    "Executing %s took %.3f seconds",
                    base_events._format_handle(handle),
                    dt,
                )
        finally:
            self._current_handle = None

    def set_debug(self, enabled):
        super().set_debug(enabled)
        self._core.set_debug(bool(enabled))
        self._set_native_debug(bool(enabled))

    def close(self):
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        super().close()
        self._readers.clear()
        self._writers.clear()
        # On another thread (the GC finalizing a loop made elsewhere) the
        # core cannot be touched: it is left as it is, and leaked, with
        # its cross-thread door shut, when the last reference goes.
        if self._core.is_owner_thread():
            self._core.close()

    # ---------------------------------------------------- time, scheduling

    def _call_soon_debug(self, callback, *args, context=None):
        self._check_closed()
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_soon")
        handle = self._core.call_soon(callback, *args, context=context)
        if self._debug:
            handle._source_traceback = format_helpers.extract_stack(sys._getframe(1))
        return handle

    def _call_soon(self, callback, args, context):
        handle = self._core.call_soon(callback, *args, context=context)
        if self._debug:
            handle._source_traceback = format_helpers.extract_stack(sys._getframe(1))
        return handle

    def _add_callback(self, handle):
        # Signal handlers and I/O callbacks asyncio queues itself.
        if not handle._cancelled:
            self._core.call_handle(handle)

    def _call_later_debug(self, delay, callback, *args, context=None):
        self._check_closed()
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_later")
        timer = self._core.call_later(delay, callback, *args, context=context)
        if self._debug:
            timer._source_traceback = format_helpers.extract_stack(sys._getframe(1))
        return timer

    def _call_at_debug(self, when, callback, *args, context=None):
        self._check_closed()
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_at")
        timer = self._core.call_at(when, callback, *args, context=context)
        if self._debug:
            timer._source_traceback = format_helpers.extract_stack(sys._getframe(1))
        return timer

    def call_soon_threadsafe(self, callback, *args, context=None):
        self._check_closed()
        if self._debug:
            self._check_callback(callback, "call_soon_threadsafe")
        handle = self._remote.call_soon_threadsafe(self, callback, args, context)
        if self._debug:
            handle._source_traceback = format_helpers.extract_stack(sys._getframe(1))
        return handle

    # ------------------------------------------------------- fd watchers
    # asyncio's public add_reader/add_writer (inherited) check that no
    # transport owns the fd, then call these, as its transports do.

    def _add_reader(self, fd, callback, *args):
        self._check_closed()
        fd = selectors._fileobj_to_fd(fd)
        handle = events.Handle(callback, args, self, None)
        self._core.add_reader(fd, handle)
        old = self._readers.pop(fd, None)
        self._readers[fd] = handle
        if old is not None:
            old.cancel()
        return handle

    def _remove_reader(self, fd):
        if self.is_closed():
            return False
        fd = selectors._fileobj_to_fd(fd)
        handle = self._readers.pop(fd, None)
        removed = self._core.is_owner_thread() and self._core.remove_reader(fd)
        if handle is not None:
            handle.cancel()
        return removed or handle is not None

    def _add_writer(self, fd, callback, *args):
        self._check_closed()
        fd = selectors._fileobj_to_fd(fd)
        handle = events.Handle(callback, args, self, None)
        self._core.add_writer(fd, handle)
        old = self._writers.pop(fd, None)
        self._writers[fd] = handle
        if old is not None:
            old.cancel()
        return handle

    def _remove_writer(self, fd):
        if self.is_closed():
            return False
        fd = selectors._fileobj_to_fd(fd)
        handle = self._writers.pop(fd, None)
        removed = self._core.is_owner_thread() and self._core.remove_writer(fd)
        if handle is not None:
            handle.cancel()
        return removed or handle is not None

    # ------------------------------------------------------------ sock_*
    # asyncio's argument checks here, the rest native (_evloop.Core
    # sock_*): the operation is tried at once; if the socket is not
    # ready, the core returns a pending future and retries the operation
    # itself whenever the socket is ready, as asyncio's _sock_* callbacks.

    async def sock_recv(self, sock, n):
        _check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        r = self._core.sock_recv(sock, n)
        if r.__class__ is _Future:
            return await r
        return r

    async def sock_recv_into(self, sock, buf):
        _check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        r = self._core.sock_recv_into(sock, buf)
        if r.__class__ is _Future:
            return await r
        return r

    async def sock_recvfrom(self, sock, bufsize):
        _check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        r = self._core.sock_recvfrom(sock, bufsize)
        if r.__class__ is _Future:
            return await r
        return r

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        _check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        if not nbytes:
            nbytes = len(buf)
        r = self._core.sock_recvfrom_into(sock, buf, nbytes)
        if r.__class__ is _Future:
            return await r
        return r

    async def sock_sendall(self, sock, data):
        _check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        r = self._core.sock_sendall(sock, data)
        if r is not None:
            return await r

    async def sock_sendto(self, sock, data, address):
        _check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        r = self._core.sock_sendto(sock, data, address)
        if r.__class__ is _Future:
            return await r
        return r

    async def sock_connect(self, sock, address):
        _check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        if sock.family == socket.AF_INET or (base_events._HAS_IPv6 and sock.family == socket.AF_INET6):
            resolved = await self._ensure_resolved(
                address, family=sock.family, type=sock.type, proto=sock.proto, loop=self
            )
            _, _, _, _, address = resolved[0]
        fut = self._core.sock_connect(sock, address)
        if fut is not None:
            try:
                return await fut
            finally:
                # As asyncio: break the cycle through the traceback.
                fut = None

    async def sock_accept(self, sock):
        _check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        r = self._core.sock_accept(sock)
        if r.__class__ is _Future:
            return await r
        return r

    # ------------------------------------------------ stream transports
    # asyncio's create_connection, create_server, create_unix_connection,
    # create_unix_server and connect_accepted_socket all make their
    # transports here: evloop's native one.

    async def create_connection(self, protocol_factory, host=None, port=None, **options):
        # asyncio's (inherited) for everything but the common call: an
        # IP-literal host, an int port and every option at its default,
        # outside debug mode. That one is one native operation
        # (python/src/connect.rs): the socket, its connect, then the
        # protocol and the transport, awaited as one future done with
        # (transport, protocol) once connection_made ran (asyncio's
        # coroutine awaits the connect, then the transport's waiter).
        # Where the steps asyncio's path calls are replaced (a subclass's
        # or a mock's sock_connect or _make_socket_transport, a patched
        # socket module), that path runs.
        # (Debug mode and a loop or loop class with its own sock_connect or
        # _make_socket_transport are checked natively, the class's verdict
        # remembered until the class changes.)
        if base_events.socket is not socket or (options and not _default_connect_options(options)):
            return await super().create_connection(protocol_factory, host, port, **options)
        opening = self._core.create_connection(self, host, port, protocol_factory, _SocketTransport)
        if opening is None:
            return await super().create_connection(protocol_factory, host, port, **options)
        try:
            return await opening.future
        except BaseException:
            # Cancelled (or closed): the socket or the transport goes, as
            # asyncio's create_connection closes them.
            opening.abandon()
            raise
        finally:
            # As asyncio: break the cycle through the traceback.
            opening = None

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        return _SocketTransport(self, sock, protocol, waiter, extra, server)

    def _start_serving(
        self,
        protocol_factory,
        sock,
        sslcontext=None,
        server=None,
        backlog=100,
        ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
    ):
        # A server without TLS is served natively (python/src/accept.rs):
        # the listener's reader is the native accept loop itself, with no
        # asyncio Handle, Context.run or _accept_connection frame per
        # readiness event. TLS, debug mode (whose handles are timed) and a
        # loop subclass's own _accept_connection take asyncio's reader.
        serving = (
            protocol_factory,
            sock,
            sslcontext,
            server,
            backlog,
            ssl_handshake_timeout,
            ssl_shutdown_timeout,
        )
        if (
            sslcontext
            or self._debug
            or "_accept_connection" in self.__dict__
            or type(self)._accept_connection is not EventLoop._accept_connection
        ):
            return super()._start_serving(*serving)
        self._check_closed()
        fd = selectors._fileobj_to_fd(sock.fileno())
        self._core.start_serving(fd, sock, protocol_factory, server, backlog, self._native_transport_class(), serving)
        old = self._readers.pop(fd, None)
        if old is not None:
            old.cancel()
        return None

    def _native_transport_class(self):
        # evloop's transport class, made natively, unless a loop subclass
        # makes its own transports (_make_socket_transport): then None.
        if type(self)._make_socket_transport is EventLoop._make_socket_transport:
            return _SocketTransport
        return None

    def _accept_out_of_resources(self, exc, *serving):
        # Out of fds or memory: as asyncio, stop accepting for a while
        # (Linux keeps reporting the listener ready).
        sock = serving[1]
        self.call_exception_handler(
            {
                "message": "socket.accept() out of system resource",
                "exception": exc,
                "socket": trsock.TransportSocket(sock),
            }
        )
        self._remove_reader(sock.fileno())
        self.call_later(constants.ACCEPT_RETRY_DELAY, self._start_serving, *serving)

    def _accept_connection(
        self,
        protocol_factory,
        sock,
        sslcontext=None,
        server=None,
        backlog=100,
        ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
    ):
        # asyncio's accept loop, native (python/src/accept.rs): up to
        # `backlog` connections per readiness event, a plain connection's
        # protocol and transport made there and then rather than by a
        # task per connection (nothing is awaited for it: the waiter
        # asyncio awaits is only done one pass after connection_made).
        # TLS connections keep asyncio's task, which waits for the
        # handshake.
        serving = (
            protocol_factory,
            sock,
            sslcontext,
            server,
            backlog,
            ssl_handshake_timeout,
            ssl_shutdown_timeout,
        )
        if sslcontext:
            return super()._accept_connection(*serving)
        exc = self._core.accept_connections(sock, protocol_factory, server, backlog, self._native_transport_class())
        if exc is not None:
            self._accept_out_of_resources(exc, *serving)
        return None

    def _make_ssl_transport(
        self,
        rawsock,
        protocol,
        sslcontext,
        waiter=None,
        *,
        server_side=False,
        server_hostname=None,
        extra=None,
        server=None,
        ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
    ):
        # TLS stays asyncio's: its SSLProtocol (a BufferedProtocol) runs
        # over the native transport, and the app gets its app transport.
        ssl_protocol = sslproto.SSLProtocol(
            self,
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        _SocketTransport(self, rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport

    # ---------------------------------------------------------- datagrams

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        # asyncio's create_datagram_endpoint (inherited: every argument)
        # calls this with the socket ready; the transport is native
        # (_evloop.DatagramTransport), made as asyncio's __init__ makes
        # its own. In debug mode asyncio's Python transport is used, so
        # that its callbacks are timed like every other.
        if self._debug:
            return super()._make_datagram_transport(sock, protocol, address, waiter, extra)
        self._ensure_fd_no_transport(sock)
        extra = dict(extra) if extra else {}
        extra["socket"] = trsock.TransportSocket(sock)
        try:
            extra["sockname"] = sock.getsockname()
        except OSError:
            extra["sockname"] = None
        if "peername" not in extra:
            try:
                extra["peername"] = sock.getpeername()
            except OSError:
                extra["peername"] = None
        transport = _DatagramTransport(self, sock, protocol, address, extra)
        self._transports[sock.fileno()] = transport
        self.call_soon(protocol.connection_made, transport)
        # Only start reading once connection_made() has run.
        self.call_soon(transport._start_reading)
        if waiter is not None:
            self.call_soon(futures._set_result_unless_cancelled, waiter, None)
        return transport

    # ------------------------------------------------------ sock_sendfile

    async def _sock_sendfile_native(self, sock, file, offset, count):
        # asyncio's checks (base_events.sock_sendfile checked the
        # arguments; SendfileNotAvailableError makes it fall back to
        # reading the file and sock_sendall), then sendfile(2) natively.
        # Looked up through asyncio's module, as asyncio does (tests
        # patch it).
        if not hasattr(unix_events.os, "sendfile"):
            raise exceptions.SendfileNotAvailableError("os.sendfile() is not available")
        try:
            fileno = file.fileno()
        except (AttributeError, io.UnsupportedOperation):
            raise exceptions.SendfileNotAvailableError("not a regular file")
        try:
            fsize = os.fstat(fileno).st_size
        except OSError:
            raise exceptions.SendfileNotAvailableError("not a regular file")
        blocksize = count if count else fsize
        if not blocksize:
            return 0  # empty file
        r = self._core.sock_sendfile(sock, file, fileno, offset, count or 0, blocksize)
        if r.__class__ is _Future:
            return await r
        return r

    def _process_events(self, event_list):
        # Never called: the core dispatches fd events itself.
        raise AssertionError("evloop's core dispatches I/O events")


class VirtualTimeLoop(EventLoop):
    """An evloop loop on a virtual clock, for tests: ``time()`` moves only
    when the loop jumps it or ``advance_time`` does, so a one-hour timeout
    is tested in microseconds.

    Once nothing is ready and no I/O arrived for ``autojump_threshold``
    real seconds (default 0), the clock jumps to the next timer, as trio's
    autojump clock does; with ``autojump_threshold=None`` it never jumps
    (drive it with ``advance_time`` and ``run_until_idle``). Use it with
    ``asyncio.Runner(loop_factory=evloop.VirtualTimeLoop)`` or as a
    pytest fixture. Real I/O still works; with the default threshold a
    timer may fire before a reply that is still on its way (real time
    does not count): raise the threshold for tests that mix both.
    """

    def __init__(self, selector=None, *, autojump_threshold=0.0):
        core = _evloop.Core(virtual_time=True, autojump_threshold=autojump_threshold)
        super().__init__(selector, _core=core)

    def advance_time(self, seconds):
        """Moves the clock forward by ``seconds`` (>= 0); timers that become
        due run on the loop's next pass (``run_until_idle`` runs them)."""
        self._core.advance_time(seconds)

    def run_until_idle(self):
        """Runs passes until one runs nothing: every ready callback and due
        timer has run, and what they scheduled, without waiting for I/O or
        moving the clock."""
        self._core.set_idle_mode(True)
        try:
            self.run_forever()
        finally:
            self._core.set_idle_mode(False)


class EventLoopPolicy(unix_events.DefaultEventLoopPolicy):
    """The default asyncio policy, making evloop loops."""

    _loop_factory = EventLoop


def new_event_loop():
    """A new evloop event loop (for ``asyncio.Runner(loop_factory=...)``
    and, on 3.12+, ``asyncio.run(main, loop_factory=...)``)."""
    return EventLoop()
