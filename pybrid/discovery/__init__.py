"""Zeroconf (mDNS/DNS-SD) discovery, as the reference client does it: ``_lucijsonl._tcp.local.``.

* :mod:`pybrid.discovery.records` — what an advertisement carries (TXT keys) and what a
  browser makes of it (:class:`~pybrid.discovery.records.Target`); no zeroconf import.
* :mod:`pybrid.discovery.advertise` — :class:`AdvertiseService`, the Twisted service the proxy
  and the simulated device add as a child (``--advertise``).
* :mod:`pybrid.discovery.browse` — :func:`browse` and :func:`find_target`, what ``connect()``
  and every command use when no host is given (its :class:`DiscoveryError` is a
  ``ConnectError``: exit code 2).

python-zeroconf is the optional ``discovery`` extra; it runs its own thread (its asyncio loop),
so nothing here blocks the reactor: registering, browsing and unregistering are handed to a
thread and answered through ``reactor.callFromThread``.
"""

from pybrid.discovery.records import SERVICE_TYPE, Advert, Target, ZeroconfMissing, need_zeroconf

__all__ = ["SERVICE_TYPE", "Advert", "Target", "ZeroconfMissing", "need_zeroconf"]
