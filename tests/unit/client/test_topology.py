"""Topology from extract replies, target strings, and .apb files."""

import pytest

from pybrid.client.apb import apb_bytes, load_apb, parse_apb, save_apb
from pybrid.client.errors import ApbError
from pybrid.client.topology import find_carriers, parse_target
from pybrid.proto import pb

CARRIER, DEVICE, CLUSTER = pb.Entity.CARRIER, pb.Entity.DEVICE, pb.Entity.CLUSTER


def spec(entity):
    return pb.Item(entity_specification=pb.EntitySpecification(entity=entity))


def carrier(mac, loc=None):
    e = pb.Entity(id="/" + mac, class_=CARRIER, children=[pb.Entity(id="/0", class_=CLUSTER)])
    if loc is not None:
        e.location_v0.stack, e.location_v0.carrier = loc
    return e


def test_a_carrier_root_is_one_carrier():
    (c,) = find_carriers(pb.Module(items=[spec(carrier("04-E9-E5-14-74-BF", (0, 3)))]))
    assert (c.mac, c.path, c.location) == ("04-E9-E5-14-74-BF", "/04-E9-E5-14-74-BF", (0, 3))


def test_carrier_children_of_a_device_root():
    root = pb.Entity(id="/00-00-00-00-00-00", class_=DEVICE,
                     children=[carrier("00-00-00-00-00-00"), carrier("00-00-00-00-00-01"),
                               pb.Entity(id="/X", class_=CLUSTER)])
    found = find_carriers(pb.Module(items=[spec(root)]))
    assert [c.mac for c in found] == ["00-00-00-00-00-00", "00-00-00-00-00-01"]
    assert found[0].location is None


def test_one_specification_per_proxy_backend_and_wiring_is_ignored():
    wire = pb.Item(wiring_specification=pb.WiringSpecification())
    items = [spec(carrier("AA-00-00-00-00-01", (0, 0))), wire,
             spec(carrier("AA-00-00-00-00-02", (0, 1))), spec(carrier("AA-00-00-00-00-01"))]
    assert [c.mac for c in find_carriers(pb.Module(items=items))] == [
        "AA-00-00-00-00-01", "AA-00-00-00-00-02"]


def test_no_specification_no_carrier():
    assert find_carriers(pb.Module()) == []


@pytest.mark.parametrize("host,port,expected", [
    ("127.0.0.1", 5732, (None, "127.0.0.1", 5732)),
    ("lucidac.local", 1, (None, "lucidac.local", 1)),
    ("10.0.0.5:5733", 5732, (None, "10.0.0.5", 5733)),
    ("::1", 5732, (None, "::1", 5732)),
    ("[::1]:7000", 5732, (None, "::1", 7000)),
    ("[fe80::1]", 9, (None, "fe80::1", 9)),
    ("tcp:host=127.0.0.1:port=5732", 1, ("tcp:host=127.0.0.1:port=5732", "", 0)),
    ("tcp:127.0.0.1:5732", 1, ("tcp:127.0.0.1:5732", "", 0)),
    ("unix:path=/run/x.sock", 1, ("unix:path=/run/x.sock", "", 0)),
])
def test_parse_target(host, port, expected):
    assert parse_target(host, port) == expected


def module():
    m = pb.Module()
    item = m.items.add()
    item.entity.path = "/00-00-00-00-00-00/0/M0"
    item.adc_config.channels.add(idx=3, gain=1.0, probe=2)
    return m


def test_apb_round_trip(tmp_path):
    path = tmp_path / "circuit.apb"
    save_apb(module(), path)
    assert load_apb(path) == module()
    f = pb.File()
    f.ParseFromString(path.read_bytes())
    assert (f.version.major, f.version.minor, f.version.patch) == (0, 1, 0)


def test_apb_rejects_newer_versions_garbage_and_other_suffixes(tmp_path):
    newer = pb.File(version=pb.Version(major=0, minor=2, patch=0), module=module())
    with pytest.raises(ApbError, match=r"0\.2\.0"):
        parse_apb(newer.SerializeToString())
    with pytest.raises(ApbError, match=r"not an \.apb"):
        parse_apb(b"\xff\xff\xff\xff")
    with pytest.raises(ApbError, match="no module"):
        parse_apb(pb.File(version=pb.Version(minor=1)).SerializeToString())
    with pytest.raises(ApbError, match=r"only \.apb"):
        load_apb(tmp_path / "circuit.json")
    with pytest.raises(ApbError, match="cannot read"):
        load_apb(tmp_path / "missing.apb")
    # an unset version (0.0.0) is older, and accepted
    assert parse_apb(pb.File(module=module()).SerializeToString()) == module()
    assert parse_apb(apb_bytes(module())) == module()


def test_the_status_lines_say_what_direct_and_the_tcp_lane_mean():
    from pybrid.client.topology import Carrier, describe_carriers, describe_data_lane
    from pybrid.proxy.runs.dispatch import UDP_REFUSAL

    one = (Carrier("00-00-5e-00-53-01", pb.Entity()),)
    assert describe_carriers(one).startswith("1 carrier 00-00-5e-00-53-01 (topology 'direct': ")
    assert "a proxy with one backend" in describe_carriers(one)
    two = (*one, Carrier("00-00-5e-00-53-02", pb.Entity()))
    assert describe_carriers(two) == ("2 carriers 00-00-5e-00-53-01, 00-00-5e-00-53-02 "
                                      "(topology 'proxy': several carriers)")
    through_proxy = describe_data_lane("tcp", UDP_REFUSAL)
    assert through_proxy.startswith("data over this TCP connection (UDP refused: ")
    assert "clients of a proxy always get run data over TCP" in through_proxy
    assert describe_data_lane("udp") == "data by UDP (sent straight to this client)"
    assert describe_data_lane("tcp") == "data over this TCP connection"
