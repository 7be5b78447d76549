"""PartService: a part with start()/stop() as a child service."""

from __future__ import annotations

from twisted.application import service

from pybrid.wire.services import PartService


class Part:
    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    def start(self) -> None:
        self.log.append(f"start {self.name}")

    def stop(self) -> None:
        self.log.append(f"stop {self.name}")


def test_a_privileged_part_starts_in_privileged_start_and_only_once():
    log: list[str] = []
    parent = service.MultiService()
    PartService(Part(log, "tap"), privileged=True).setServiceParent(parent)
    PartService(Part(log, "lane")).setServiceParent(parent)
    parent.privilegedStartService()
    assert log == ["start tap"]  # a socket bound before the daemon forks
    parent.startService()
    assert log == ["start tap", "start lane"]
    parent.stopService()
    assert log[2:] == ["stop lane", "stop tap"]  # reverse order: the taps outlive the lanes
