"""The proxy daemon (``twistd pybrid-proxy``): one TCP front for several LUCIDAC/REDAC backends.

The backend file (the ``-b`` option) is parsed by :mod:`pybrid.proxy.backendfile`.
"""
