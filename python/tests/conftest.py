"""Every test that takes ``loop`` (or ``loop_factory``) runs twice: on
asyncio's own loop and on evloop's, so evloop is held to asyncio's
behaviour, not to its own idea of it."""

import asyncio

import pytest

import evloop

FACTORIES = {
    "asyncio": asyncio.SelectorEventLoop,
    "evloop": evloop.new_event_loop,
}


@pytest.fixture(params=sorted(FACTORIES))
def loop_factory(request):
    return FACTORIES[request.param]


@pytest.fixture
def loop(loop_factory):
    lp = loop_factory()
    yield lp
    if lp.is_running():  # a failed test left it running: nothing to do
        return
    lp.run_until_complete(lp.shutdown_asyncgens())
    lp.close()


@pytest.fixture
def loop_class(loop_factory):
    """The class of the loops `loop_factory` makes (for subclassing)."""
    lp = loop_factory()
    lp.close()
    return type(lp)
