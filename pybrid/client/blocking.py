"""Blocking use of the client: Jupyter notebooks, scripts and ``python -i``, no reactor code.

    from pybrid.client import blocking

    computer = blocking.connect("127.0.0.1:5732")        # cell 1
    result = computer.run(0.01, channels=4)               # cell 2 (Ctrl-C / "interrupt" stops it)
    computer.close()                                      # cell 3

Design note
-----------
The Deferred API (:mod:`pybrid.client`) stays the core; this module only runs it.  The reactor
runs in a background thread started by **crochet** (the ``notebook`` extra) on first use, and
each call here schedules the Deferred-returning operation in that thread and waits for it on the
caller's thread with a bound.  We measured both recipes that work in Jupyter
(``benchmarks/notebook_layer.py``, figures in ``docs/client.md``): a ping round trip costs
about the same either way (the thread hop is tens of µs against a network round trip), so the
choice rests on behaviour:

* one code path for notebooks, scripts and ``python -i`` — the asyncio reactor needs Jupyter's
  running loop and ``await`` in every cell, and a second recipe for scripts;
* **KeyboardInterrupt**: the kernel's interrupt (SIGINT) lands in the main thread, which here
  only waits on an event, so we catch it, cancel the operation in the reactor thread (a run's
  cancellation sends ``stop_run_command``), wait a bounded moment for the cancellation to
  finish, and re-raise; the connection stays usable.  With the asyncio reactor the interrupt
  lands inside Jupyter's own loop, wherever it happens to be;
* re-running cells: the reactor is started once per process and never stopped, so there is no
  ``ReactorNotRestartable`` and no ``SystemExit``.

This is the one module of :mod:`pybrid.client` that uses the global reactor: it is where an
application picks its reactor, as ``pybrid-run``'s ``main`` does with ``task.react``.

Re-running a notebook's connect cell must not queue the new session behind the old one on a
proxy, so :func:`connect` closes an earlier connection to the same target made here (``replace``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import attrs

from pybrid.client.computer import Computer
from pybrid.client.connect import BUSY_TIMEOUT, CONNECT_TIMEOUT, DEFAULT_PORT
from pybrid.client.connect import connect as _connect
from pybrid.client.errors import ClientError, ConnectionLost
from pybrid.client.results import IC_TIME, RUN_TIMEOUT_HEADROOM, RunResult
from pybrid.client.topology import Carrier
from pybrid.proto import pb
from pybrid.version import install_hint

#: Seconds a cancelled operation gets to finish its cancellation (send ``stop_run_command``).
CANCEL_GRACE = 5.0
#: Seconds added to an operation's own timeout before the caller stops waiting for it.
MARGIN = 30.0

_lock = threading.Lock()
_open: dict[str, BlockingComputer] = {}
_simulators: dict[tuple[Any, ...], Simulator] = {}


class OperationTimeout(ClientError, TimeoutError):
    """The reactor thread did not finish an operation in time (it was cancelled)."""


def _crochet() -> Any:
    try:
        import crochet
    except ImportError:
        raise ClientError(
            "pybrid.client.blocking needs crochet: " + install_hint("notebook", "crochet")
        ) from None
    return crochet


def reactor() -> Any:
    """The reactor, running in its background thread (started on the first call)."""
    crochet = _crochet()
    crochet.setup()  # idempotent: the reactor thread starts once per process
    from twisted.internet import reactor as _reactor

    return _reactor


def call(fn: Callable[..., Any], *args: Any, timeout: float | None = None, **kw: Any) -> Any:
    """Run ``fn(reactor, *args, **kw)`` (a Deferred or a value) in the reactor thread; wait.

    Interrupting (KeyboardInterrupt) or running out of ``timeout`` seconds cancels the Deferred
    and waits up to :data:`CANCEL_GRACE` seconds for the cancellation to complete.  The real
    exception of the operation is raised as it is.
    """
    crochet = _crochet()
    r = reactor()
    eventual = crochet.run_in_reactor(lambda: fn(r, *args, **kw))()
    try:
        return eventual.wait(timeout)
    except crochet.TimeoutError:
        _cancel(crochet, eventual)
        name = getattr(fn, "__name__", "operation")
        raise OperationTimeout(f"{name} did not finish within {timeout:g} s; cancelled") from None
    except KeyboardInterrupt:
        _cancel(crochet, eventual)
        raise


def _cancel(crochet: Any, eventual: Any) -> None:
    eventual.cancel()
    try:
        eventual.wait(CANCEL_GRACE)
    except (Exception, crochet.TimeoutError):
        pass  # the cancellation itself is the outcome; the caller gets its own exception


def connect_bound(options: dict[str, Any], *, discover: bool = False) -> float:
    """Seconds :func:`connect` waits for :func:`pybrid.client.connect` with ``options``."""
    own = options.get("connect_timeout", CONNECT_TIMEOUT) + options.get("busy_timeout",
                                                                          BUSY_TIMEOUT)
    return own + MARGIN + (10.0 if discover else 0.0)  # the browse window and resolving


def run_own_timeout(op_time: float, options: dict[str, Any]) -> float:
    """The run's own deadline as :meth:`Computer.run` sets it from ``options``."""
    return options.get("timeout") or (options.get("ic_time", IC_TIME) + op_time
                                      + RUN_TIMEOUT_HEADROOM)


def connect(
    host: str | None = None,
    port: int = DEFAULT_PORT,
    *,
    replace: bool = True,
    auth_token: str | None = None,
    **options: Any,
) -> BlockingComputer:
    """Connect (blocking) and return a :class:`BlockingComputer`.

    Takes the options of :func:`pybrid.client.connect` except ``reactor``.  ``auth_token``
    defaults to ``$PYBRID_AUTH_TOKEN`` or ``$PYBRID_AUTHENTICATION``.  With ``replace`` an
    earlier connection to the same target made by this function is closed first.  Without
    ``host`` the target is discovered (mDNS, a few seconds; see :func:`pybrid.client.connect`).
    """
    if auth_token is None:
        auth_token = os.environ.get("PYBRID_AUTH_TOKEN") or os.environ.get(
            "PYBRID_AUTHENTICATION"
        )
    key = f"{host}|{port}"
    with _lock:
        previous = _open.pop(key, None) if replace else None
    if previous is not None:
        previous.close()
    timeout = connect_bound(options, discover=host is None)

    def open_(r: Any) -> Any:
        return _connect(host, port, reactor=r, auth_token=auth_token, **options)

    computer = BlockingComputer(call(open_, timeout=timeout), key)
    if replace:
        with _lock:
            _open[key] = computer
    return computer


@attrs.define(eq=False)
class BlockingComputer:
    """A :class:`~pybrid.client.computer.Computer` whose operations block and return results.

    Each method waits for the Deferred of the same name (same arguments, see ``docs/client.md``);
    ``on_chunk`` callbacks of :meth:`run` are called in the reactor thread.  ``computer`` is the
    Deferred-based object for anything not wrapped here.
    """

    computer: Computer
    _key: str = ""

    # -- what the connection knows -------------------------------------------------------------

    @property
    def target(self) -> str:
        return self.computer.target

    @property
    def topology(self) -> str:
        return self.computer.topology

    @property
    def carriers(self) -> tuple[Carrier, ...]:
        return self.computer.carriers

    @property
    def wiring(self) -> tuple[pb.WiringSpecification, ...]:
        return self.computer.wiring

    @property
    def specification(self) -> pb.Module:
        return self.computer.specification

    @property
    def data_lane(self) -> str | None:
        return self.computer.data_lane

    @property
    def connected(self) -> bool:
        return self.computer.connected

    def __repr__(self) -> str:
        state = "connected" if self.connected else "closed"
        macs = ", ".join(c.mac for c in self.carriers)
        return f"<BlockingComputer {self.target} {self.topology} [{macs}] {state}>"

    # -- operations ----------------------------------------------------------------------------

    def _do(self, name: str, *args: Any, bound: float, **kw: Any) -> Any:
        if not self.computer.connected:
            raise ConnectionLost(f"the connection to {self.target} is closed; connect again")

        def op(_r: Any) -> Any:
            return getattr(self.computer, name)(*args, **kw)

        op.__name__ = name
        return call(op, timeout=bound)

    def _request_bound(self) -> float:
        control = self.computer.control
        return control.request_timeout + control.busy_timeout + MARGIN

    def run(self, op_time: float, **options: Any) -> RunResult:
        """Run and return the :class:`RunResult`; an interrupt stops the run on the device."""
        bound = run_own_timeout(op_time, options) + self._request_bound()
        result: RunResult = self._do("run", op_time, bound=bound, **options)
        return result

    def extract(self, entity: str | None = None, **options: Any) -> pb.Module:
        module: pb.Module = self._do("extract", entity, bound=self._request_bound(), **options)
        return module

    def reset(self, **options: Any) -> Any:
        return self._do("reset", bound=self._request_bound(), **options)

    def configure(self, module: Any, **options: Any) -> Any:
        return self._do("configure", module, bound=self._request_bound(), **options)

    def calibrate(self, **options: Any) -> None:
        bound = options.get("timeout", 10.0) + self._request_bound()
        self._do("calibrate", bound=bound, **options)

    def overload_status(self) -> pb.OverloadStatus:
        status: pb.OverloadStatus = self._do("overload_status", bound=self._request_bound())
        return status

    def ping(self, kind: str = "generic", timeout: float | None = None) -> float:
        """Round-trip time in seconds."""
        bound = (timeout or self.computer.control.request_timeout) + MARGIN
        rtt: float = self._do("ping", kind, bound=bound, timeout=timeout)
        return rtt

    def close(self) -> None:
        """Close the connection (ends the session on a proxy); closing twice is harmless."""
        with _lock:
            if _open.get(self._key) is self:
                del _open[self._key]
        if self.computer.connected:
            call(lambda _r: self.computer.close(), timeout=MARGIN)

    def __enter__(self) -> BlockingComputer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@attrs.define(eq=False)
class Simulator:
    """A :class:`~pybrid.device.SimulatedDevice` listening on loopback in the reactor thread."""

    device: Any
    host: str
    port: int

    @property
    def target(self) -> str:
        """``"host:port"``, ready for :func:`connect`."""
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        with _lock:
            for key, sim in list(_simulators.items()):
                if sim is self:
                    del _simulators[key]
        call(lambda _r: self.device.stop(), timeout=MARGIN)


def simulator(carriers: int = 1, *, interface: str = "127.0.0.1", **config: Any) -> Simulator:
    """A simulated device in this process (port 0 on loopback), for trying things out.

    Calling it again with the same arguments returns the same running device, so a notebook
    cell that starts it can be re-run.  ``config`` are :class:`~pybrid.device.DeviceConfig`
    fields.
    """
    from pybrid.device import DeviceConfig, SimulatedDevice

    key = (carriers, interface, tuple(sorted(config.items())))
    with _lock:
        if key in _simulators:
            return _simulators[key]
    cfg = DeviceConfig(carriers=carriers, **config)

    def start(r: Any) -> Simulator:
        dev = SimulatedDevice(reactor=r, config=cfg)
        dev.listen(0, interface=interface)
        return Simulator(dev, interface, dev.port)

    sim: Simulator = call(start, timeout=MARGIN)
    with _lock:
        _simulators[key] = sim
    return sim


__all__ = [
    "BlockingComputer",
    "OperationTimeout",
    "Simulator",
    "call",
    "connect",
    "reactor",
    "simulator",
]
