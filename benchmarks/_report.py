"""The results table of ``benchmarks/compare.py``: headline figures, ratios and goals.

:func:`table` turns the raw per-target results (what :func:`compare.measure` returned) into
the printed table: one row per metric, columns ours / reference / direct, the ratio
ours / reference and, for our proxy, whether each goal holds; then notes on why the rate search
stopped, how the queued clients were answered and anything odd.
"""

from __future__ import annotations

import os
import platform
import statistics
from typing import Any

TARGETS = ("ours", "ref", "direct")
LABELS = {"ours": "pybrid-proxy", "ref": "reference", "direct": "direct"}


def _get(results: dict[str, Any], target: str, *path: str) -> Any:
    value: Any = results.get(target)
    for key in path:
        if not isinstance(value, dict) or "error" in value:
            return None
        value = value.get(key)
    return value


def _med(values: Any) -> float | None:
    if not isinstance(values, list) or not values:
        return None
    return float(statistics.median(values))


def figures(results: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per metric, per target: the headline number."""
    rows: dict[str, dict[str, float | None]] = {}

    def per(name: str, fn: Any) -> None:
        rows[name] = {t: (fn(t) if t in results else None) for t in TARGETS}

    per("p1", lambda t: _get(results, t, "p1", "best"))
    per("cpu_rate", lambda t: _get(results, t, "p1", "cpu_at_rate"))
    per("cpu_best", lambda t: _get(results, t, "p1", "cpu_at_best"))
    per("p3", lambda t: _ms(_med(results[t].get("p3"))))
    per("p4", lambda t: _ms(_med(_get(results, t, "p4", "seconds"))))
    per("p5_session", lambda t: _ms(_med(_get(results, t, "p5", "session"))))
    per("p5_idle", lambda t: _ms(_med(_get(results, t, "p5", "idle"))))
    per("p5_standalone", lambda t: _ms(_med(_get(results, t, "p5", "standalone"))))
    per("p5_forwarded", lambda t: _ms(_med(_get(results, t, "p5", "forwarded"))))
    direct = rows["p5_session"].get("direct")
    rows["p5_delta"] = {t: (v - direct if v is not None and direct is not None else None)
                        for t, v in rows["p5_session"].items() if t != "direct"}
    direct_fw = rows["p5_forwarded"].get("direct")
    rows["p5_fw_delta"] = {t: (v - direct_fw if v is not None and direct_fw is not None else None)
                           for t, v in rows["p5_forwarded"].items() if t != "direct"}
    per("rcvbuf", lambda t: _rcvbuf(results, t))
    per("rss_idle", lambda t: _mb(_get(results, t, "rss_start", "VmRSS")))
    per("rss_after_p1", lambda t: _mb(_get(results, t, "rss_after_p1", "VmRSS")))
    per("rss_peak_p1", lambda t: _mb(_get(results, t, "rss_after_p1", "VmHWM")))
    per("rss_queued", lambda t: _mb(_get(results, t, "p6_queued", "during", "VmRSS")))
    per("rss_growth", lambda t: _growth(results, t))
    return rows


def _lower_bound(results: dict[str, Any], t: str) -> bool:
    p1 = _get(results, t, "p1")
    return bool(p1 and p1.get("best") and (p1.get("device_limited")
                                           or p1.get("first_failed") is None))


def _rcvbuf(results: dict[str, Any], t: str) -> float | None:
    sizes = results.get(t, {}).get("udp_rcvbuf")
    return max(sizes) / (1 << 20) if sizes else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def _mb(kib: int | None) -> float | None:
    return None if kib is None else kib * 1024 / 1e6


def _growth(results: dict[str, Any], t: str) -> float | None:
    before = _get(results, t, "p6_cycles", "before", "VmRSS")
    after = _get(results, t, "p6_cycles", "after", "VmRSS")
    return None if before is None or after is None else (after - before) / 1024


GOALS: list[tuple[str, str, Any]] = [
    ("p1", "≥ 35 000 and ≥ 10 × ref",
     lambda v, r: v is not None and v >= 35_000 and (r is None or v >= 10 * r)),
    ("p3", "< 50 ms", lambda v, r: v is not None and v < 50),
    ("p4", "< 5 ms", lambda v, r: v is not None and v < 5),
    ("p5_delta", "≤ 0.3 ms", lambda v, r: v is not None and v <= 0.3),
    ("rss_queued", "< 100 MB", lambda v, r: v is not None and v < 100),
    ("rss_growth", "< 5 MiB", lambda v, r: v is not None and v < 5),
]


def table(results: dict[str, Any], cpu_rate: int, clients: int, cycles: int) -> str:
    rows = figures(results)
    goals = {name: (text, check) for name, text, check in GOALS}
    spec: list[tuple[str, str, str]] = [
        ("p1", "P1 loss-free rate (datagrams/s)", "{:,.0f}"),
        ("rcvbuf", "proxy UDP SO_RCVBUF granted (MiB)", "{:.0f}"),
        ("cpu_rate", f"CPU s / 1000 datagrams @ {cpu_rate:,}/s", "{:.4f}"),
        ("cpu_best", "CPU s / 1000 datagrams @ P1 rate", "{:.4f}"),
        ("p3", "P3 ref-client connect (ms, median)", "{:,.1f}"),
        ("p4", "P4 session handover (ms, median)", "{:.2f}"),
        ("p5_session", "P5 ping in session (ms, median)", "{:.3f}"),
        ("p5_delta", "P5 ping minus direct (ms)", "{:+.3f}"),
        ("p5_idle", "   no device held, back to back (ms)", "{:.3f}"),
        ("p5_standalone", "   standalone ping incl. connect (ms)", "{:.3f}"),
        ("p5_forwarded", "   forwarded request RTT (ms)", "{:.3f}"),
        ("p5_fw_delta", "   forwarded minus direct (ms)", "{:+.3f}"),
        ("rss_idle", "P6 RSS at start (MB)", "{:.1f}"),
        ("rss_queued", f"P6 RSS, {clients} clients queued (MB)", "{:.1f}"),
        ("rss_growth", f"P6 RSS growth, {cycles} cycles (MiB)", "{:+.2f}"),
        ("rss_after_p1", "   RSS after the P1 search (MB)", "{:.1f}"),
        ("rss_peak_p1", "   peak RSS (VmHWM) by then (MB)", "{:.1f}"),
    ]
    header = (f"{'metric':<40} {'ours':>11} {'reference':>11} {'direct':>11} "
              f"{'ours/ref':>9}  goal (ours)")
    lines = [header, "-" * len(header)]
    verdicts = []
    for key, label, fmt in spec:
        vals = rows.get(key, {})
        cells = [fmt.format(vals[t]) if vals.get(t) is not None else "—" for t in TARGETS]
        if key == "p1":  # the device or the ladder, not the path, ended it: a lower bound
            cells = [("≥" + c if _lower_bound(results, t) else c)
                     for t, c in zip(TARGETS, cells, strict=True)]
        ours, ref = vals.get("ours"), vals.get("ref")
        ratio = f"{ours / ref:.2f}" if ours is not None and ref not in (None, 0) else "—"
        if (key.startswith("p5_") and key != "p5_session") or key == "rss_growth":
            ratio = "—"
        goal = ""
        if key in goals and "ours" in results:
            text, check = goals[key]
            if ours is None:
                goal = f"{text}: not measured"
                verdicts.append((key, False))
            else:
                ok = check(ours, ref)
                goal = f"{text}: {'holds' if ok else 'MISSED'}"
                verdicts.append((key, ok))
        lines.append(f"{label:<40} {cells[0]:>11} {cells[1]:>11} {cells[2]:>11} "
                     f"{ratio:>9}  {goal}")
    notes = []
    for t in TARGETS:
        p1 = _get(results, t, "p1")
        if p1:
            fail = p1.get("first_failed")
            last = next((s for s in reversed(p1["steps"])
                         if not s["ok"] and s["rate"] == fail), None)
            why = last["why"] if last else ""
            if last and last["device_behind_only"]:
                why += " — the load generator's limit, not a loss"
            notes.append(f"{LABELS[t]}: data by {p1['lane']}; first failed step "
                         f"{fail if fail else '— (none up to the top of the ladder)'}"
                         + (f" ({why})" if fail else ""))
        q = _get(results, t, "p6_queued")
        if q:
            notes.append(f"{LABELS[t]}: {q['clients']} extra clients answered "
                         f"{q['outcomes']} in {q['seconds']:.1f} s")
        p4 = _get(results, t, "p4")
        if p4 and p4.get("notes"):
            notes.append(f"{LABELS[t]}: handover notes {p4['notes']}")
        lost = _get(results, t, "p5", "standalone_lost")
        if lost:
            notes.append(f"{LABELS[t]}: {lost} standalone pings got no pong (closed first)")
        if results.get(t, {}).get("alive") is False:
            notes.append(f"{LABELS[t]}: the proxy process had exited by the end")
        if results.get(t, {}).get("error"):
            first = results[t]["error"].strip().splitlines()
            notes.append(f"{LABELS[t]}: NOT MEASURED — {first[0] if first else '?'} "
                         f"… {first[-1] if first else ''}")
    lines += ["", *notes]
    if verdicts:
        held = [k for k, ok in verdicts if ok]
        missed = [k for k, ok in verdicts if not ok]
        lines.append(f"goals holding: {', '.join(held) or 'none'}; "
                     f"missed: {', '.join(missed) or 'none'}")
    return "\n".join(lines)


def machine() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} × {model}, Python {platform.python_version()}, {platform.system()}"
