"""pybrid-twisted: a Twisted networking stack for anabrid's LUCIDAC and REDAC analog computers."""

__version__ = "0.1.0"
