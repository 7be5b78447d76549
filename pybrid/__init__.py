"""pybrid-twisted: a Twisted networking stack for anabrid's LUCIDAC and REDAC analog computers."""
