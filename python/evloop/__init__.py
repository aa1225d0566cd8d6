"""evloop: a drop-in asyncio event loop on evloop's Rust core.

    import asyncio, evloop
    evloop.run(main())                                        # like asyncio.run
    asyncio.run(main(), loop_factory=evloop.new_event_loop)   # Python 3.12+
    evloop.install()                                          # policy, for older code
    asyncio.Runner(loop_factory=evloop.VirtualTimeLoop)       # virtual time, for tests
"""

import asyncio as _asyncio

from ._loop import EventLoop, EventLoopPolicy, Handle, TimerHandle, VirtualTimeLoop, new_event_loop

__all__ = (
    "EventLoop",
    "EventLoopPolicy",
    "Handle",
    "TimerHandle",
    "VirtualTimeLoop",
    "new_event_loop",
    "install",
    "run",
)
__version__ = "0.1.0"


def install():
    """Makes evloop the loop asyncio creates (``asyncio.new_event_loop``,
    ``asyncio.run`` without ``loop_factory``), by setting its policy."""
    _asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main, *, debug=None):
    """Runs the coroutine ``main`` on a new evloop loop, as ``asyncio.run``
    does: the loop is closed afterwards, leftover tasks cancelled, async
    generators and the default executor shut down."""
    with _asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
