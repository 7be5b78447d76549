from twisted.application.service import ServiceMaker

pybridProxy = ServiceMaker(
    "pybrid-proxy",
    "pybrid.proxy.plugin",
    "Proxy that time-shares and merges LUCIDAC/REDAC devices for TCP clients",
    "pybrid-proxy",
)

pybridDevice = ServiceMaker(
    "pybrid-device",
    "pybrid.device.plugin",
    "Simulated LUCIDAC/REDAC device speaking the device protocol",
    "pybrid-device",
)
