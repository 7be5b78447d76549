"""The proxy daemon (``twistd pybrid-proxy``): one TCP front for several LUCIDAC/REDAC backends.

Backend specifications (the ``-b`` option) are parsed by :mod:`pybrid.proxy.backendfile`.
"""
