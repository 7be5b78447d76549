"""The TXT record built from what a proxy or device is, and what a browser makes of it."""

from __future__ import annotations

import pytest

from pybrid.discovery.records import (
    SERVICE_TYPE,
    TXT_MAX,
    Advert,
    Target,
    ZeroconfMissing,
    choice_text,
    need_zeroconf,
    ordered,
)


def test_txt_says_what_a_chooser_needs():
    advert = Advert(name="lab proxy", port=5732, kind="proxy", version="0.1.0",
                    macs=("00-00-00-00-00-01", "00-00-00-00-00-02"), auth=True)
    assert advert.properties() == {
        "product": "pybrid-twisted", "version": "0.1.0", "kind": "proxy", "auth": "required",
        "carriers": "2", "macs": "00-00-00-00-00-01,00-00-00-00-00-02",
    }
    assert advert.service_name() == "lab proxy." + SERVICE_TYPE
    assert advert.server() == "lab-proxy-5732.local."
    assert Advert(name="d", port=1, kind="device", version="v", tls=True).properties() == {
        "product": "pybrid-twisted", "version": "v", "kind": "device", "auth": "none",
        "carriers": "0", "tls": "yes"}


def test_many_macs_fit_one_txt_string_and_the_count_tells_the_rest():
    macs = tuple(f"00-00-00-00-00-{i:02X}" for i in range(40))
    txt = Advert(name="big", port=1, kind="proxy", version="v", macs=macs).properties()
    assert len("macs=" + txt["macs"]) <= TXT_MAX
    assert txt["carriers"] == "40" and txt["macs"].startswith("00-00-00-00-00-00,")
    assert 0 < len(txt["macs"].split(",")) < 40


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"name": "a.b"}, "instance name"), ({"name": ""}, "instance name"),
    ({"name": "x" * 64}, "instance name"), ({"port": 0}, "port"), ({"kind": "toaster"}, "kind"),
])
def test_bad_adverts_are_refused(kwargs, needle):
    base = {"name": "n", "port": 5732, "kind": "proxy", "version": "v"}
    with pytest.raises(ValueError, match=needle):
        Advert(**{**base, **kwargs})


def test_target_from_our_txt_and_from_a_bare_service():
    ours = Target.from_service(
        "lab proxy." + SERVICE_TYPE, "10.0.0.5", 5732,
        {b"product": b"pybrid-twisted", b"version": b"0.1.0", b"kind": b"proxy",
         b"auth": b"required", b"macs": b"AA,BB", b"tls": b"yes"})
    assert (ours.name, ours.kind, ours.macs, ours.auth, ours.tls, ours.ours) == (
        "lab proxy", "proxy", ("AA", "BB"), True, True, True)
    bare = Target.from_service("LUCIDAC-1." + SERVICE_TYPE, "10.0.0.6", 5732, {b"x": None})
    assert (bare.kind, bare.auth, bare.macs, bare.ours) == ("device", None, (), False)
    assert bare.address == "10.0.0.6:5732"


def test_proxies_first_and_the_bypass_said():
    device = Target("a-device", "10.0.0.6", 5732, "device", macs=("AA",))
    proxy = Target("z-proxy", "10.0.0.5", 5732, "proxy", macs=("AA",))
    targets = ordered([device, proxy, device])
    assert targets == [proxy, device]
    text = choice_text(targets)
    assert text.index("1. 10.0.0.5:5732") < text.index("2. 10.0.0.6:5732")
    assert "bypasses a proxy's session management" in text
    assert "10.0.0.6:5732 is also served by a proxy" in text
    assert "bypasses" not in choice_text([proxy])


def test_without_zeroconf_the_message_says_what_to_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "zeroconf", None)
    with pytest.raises(ZeroconfMissing, match=r"pip install -e '\.\[discovery\]'"):
        need_zeroconf()
