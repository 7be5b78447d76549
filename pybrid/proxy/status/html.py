"""The status snapshot as one self-contained, auto-refreshing HTML page.

No scripts and no external assets: a little inline CSS and a ``<meta http-equiv="refresh">``.
Every value that comes from the outside world (peers, backend names, log messages) goes through
:func:`html.escape`; unknown values (``None``) show as "n/a".
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Iterable, Sequence

from pybrid.proxy.status.model import BackendStatus, ProxyStatus, SessionStatus

CONTENT_TYPE = "text/html; charset=utf-8"
NA = '<span class="na">n/a</span>'

_CSS = """
:root{--fg:#1d2330;--muted:#667085;--line:#e4e7ec;--bg:#f6f7f9;--card:#fff;--ok:#067647;
--okbg:#dcfae6;--bad:#b42318;--badbg:#fee4e2;--warn:#b54708;--warnbg:#fef0c7;--accent:#3538cd}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:#101828;color:#fff;padding:14px 24px;display:flex;align-items:center;
gap:14px;flex-wrap:wrap}
header h1{font-size:19px;margin:0;font-weight:650;letter-spacing:.2px}
header .meta{color:#d0d5dd;font-size:13px}
main{padding:16px 24px 8px;display:grid;gap:16px;
grid-template-columns:repeat(auto-fit,minmax(480px,1fr))}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:14px 16px;
overflow-x:auto;min-width:0}
section.wide{grid-column:1/-1}
h2{font-size:15px;margin:0 0 10px;font-weight:650}
h3{font-size:13px;margin:14px 0 6px;color:var(--muted);font-weight:600}
table{border-collapse:collapse;width:100%;font-size:13px}
th{text-align:left;color:var(--muted);font-weight:600;border-bottom:1px solid var(--line);
padding:5px 8px;white-space:nowrap}
td{border-bottom:1px solid var(--line);padding:5px 8px;vertical-align:top}
tr:last-child td{border-bottom:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td code{white-space:nowrap}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.pill{display:inline-block;padding:1px 9px;border-radius:999px;font-size:12px;font-weight:600}
.ok{background:var(--okbg);color:var(--ok)}.bad{background:var(--badbg);color:var(--bad)}
.warn{background:var(--warnbg);color:var(--warn)}.idle{background:#eef2f6;color:#475467}
.na,.empty,.muted{color:var(--muted)}.empty{font-style:italic}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 14px;margin:0}
dt{color:var(--muted)}dd{margin:0}
.counters{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:6px 16px}
.counters div{display:flex;justify-content:space-between;border-bottom:1px dotted var(--line)}
.counters span:last-child{font-variant-numeric:tabular-nums}
td.msg{word-break:break-word}
.banner{margin:16px 24px 0;padding:10px 16px;border-radius:10px;background:var(--badbg);
color:var(--bad);border:1px solid #fda29b}.banner ul{margin:4px 0 0;padding-left:20px}
footer{padding:4px 24px 18px;color:var(--muted);font-size:12px}
a{color:var(--accent)}
"""


def e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _opt(value: object | None) -> str:
    return NA if value is None else e(value)


def clock_time(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%H:%M:%S")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return NA
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def count(value: int | None) -> str:
    return NA if value is None else f"{value:,}".replace(",", "\u202f")


def per_second(value: float | None, unit: str = "") -> str:
    if value is None:
        return NA
    text = f"{value:,.0f}".replace(",", "\u202f") if value >= 100 else f"{value:.1f}"
    return f"{text} {unit}" if unit else text


def size(value: float | None, suffix: str = "") -> str:
    if value is None:
        return NA
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}{suffix}"
    return f"{value:.0f} B{suffix}"


def size_iec(value: float | None) -> str:
    """Buffer sizes, in the powers of two they are configured in."""
    if value is None:
        return NA
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.0f} B"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int],
           empty: str, wrap: int | None = None) -> str:
    """A table; columns in ``numeric`` align right, column ``wrap`` may break long words."""

    def cls(i: int) -> str:
        return ' class="num"' if i in numeric else (' class="msg"' if i == wrap else "")

    body = "".join(
        "<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    if not body:
        return f'<p class="empty">{e(empty)}</p>'
    head = "".join(f"<th{cls(i)}>{e(h)}</th>" for i, h in enumerate(headers))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _wide(title: str, *parts: str) -> str:
    """A full-width section of the page: its heading, then ``parts``."""
    return f'<section class="wide"><h2>{e(title)}</h2>{"".join(parts)}</section>'


def _state(backend: BackendStatus) -> str:
    css = "ok" if backend.healthy else ("warn" if backend.state == "handshake" else "bad")
    return f'<span class="pill {css}">{e(backend.state)}</span>'


def _backends(status: ProxyStatus) -> str:
    rows = [
        (f"<code>{e(b.name)}</code>", _state(b), _opt(b.location),
         "<br>".join(f"<code>{e(c)}</code>" for c in b.carriers) or NA, _opt(b.data_mode),
         per_second(b.datagram_rate), size(b.byte_rate, "/s"),
         count(None if i is None else i.kernel_drops), count(None if i is None else i.foreign),
         count(b.connects))
        for b, i in ((b, b.intake) for b in status.backends)
    ]
    table = _table(("backend", "state", "location", "carriers", "data lane", "datagrams/s",
                    "rate", "kernel drops", "foreign", "connects"), rows, {5, 6, 7, 8, 9},
                   "no backends configured")
    wires = "".join(f"<li><code>{e(s)}</code> \u2192 <code>{e(t)}</code></li>"
                    for s, t in status.wires)
    wiring = f"<ul>{wires}</ul>" if wires else '<p class="empty">no wires between carriers</p>'
    intakes = ", ".join(f"{e(b.name)} \u2190 <code>{e(i.address)}</code>"
                        f" (SO_RCVBUF {size_iec(i.rcvbuf)})"
                        for b, i in ((b, b.intake) for b in status.backends) if i and i.address)
    extra = f'<p class="muted">UDP intakes: {intakes}</p>' if intakes else ""
    return _wide("Backends", table, extra, "<h3>Wiring</h3>", wiring)


def _session(status: ProxyStatus) -> str:
    s = status.active
    if s is None:
        card = '<p class="empty">no active session</p>'
    else:
        runs = "<br>".join(
            f"<code>{e(r.id)}</code><br>{count(r.chunks)} chunks \u00b7 "
            f"{_opt(r.finished)}/{_opt(r.carriers)} carriers done" for r in s.runs
        ) or '<span class="muted">none running</span>'
        since = NA if s.since is None else (
            f"{clock_time(s.since)} UTC ({duration(status.now - s.since)} ago)")
        card = (
            f"<dl><dt>peer</dt><dd><code>{e(s.peer)}</code></dd>"
            f"<dt>session</dt><dd><code>{e(s.id)}</code></dd>"
            f"<dt>active since</dt><dd>{since}</dd>"
            f"<dt>current run</dt><dd>{runs}</dd>"
            f"<dt>to client</dt><dd>{per_second(s.frame_rate, 'frames/s')} \u00b7 "
            f"{size(s.byte_rate, '/s')}</dd>"
            f"<dt>client buffer</dt><dd>{_buffer(s)}</dd>"
            f"<dt>requests</dt><dd>{count(s.forwarded)} forwarded</dd>"
            f"<dt>dropped frames</dt><dd>{count(s.dropped)}</dd></dl>"
        )
    queue_rows = [
        (str(i), f"<code>{e(q.peer)}</code>", f"<code>{e(q.id)}</code>",
         NA if q.since is None else duration(status.now - q.since), count(q.busy_replies))
        for i, q in enumerate(status.queue, 1)
    ]
    queue = _table(("#", "peer", "session", "waiting", "busy replies"), queue_rows, {0, 3, 4},
                   "nobody is waiting")
    idle = ", ".join(f"<code>{e(i.peer)}</code>" for i in status.idle)
    idle_line = f'<p class="muted">idle (not queued): {idle}</p>' if idle else ""
    return (f"<section><h2>Active session</h2>{card}</section>"
            f"<section><h2>Queue</h2>{queue}{idle_line}</section>")


def _buffer(s: SessionStatus) -> str:
    if s.buffered is None:
        return NA
    text = size_iec(s.buffered)
    return text if s.buffer_limit is None else f"{text} of {size_iec(s.buffer_limit)}"


def _carriers(status: ProxyStatus) -> str:
    rows = [
        (f"<code>{e(c.path)}</code>", f"<code>{e(c.backend)}</code>", _opt(c.location),
         per_second(c.chunk_rate), count(c.chunks), count(c.gaps))
        for c in status.carriers
    ]
    table = _table(("carrier", "backend", "location", "chunks/s", "chunks", "gaps"), rows,
                   {3, 4, 5}, "no carriers known yet (no backend reached)")
    return _wide("Carriers", table)


def _monitor(status: ProxyStatus) -> str:
    tap = status.monitor
    if tap is None:
        return ""
    rows = [(f"<code>{e(g.group)}:{g.port}</code>", count(g.sent), size_iec(g.bytes),
             count(g.dropped_busy), count(g.dropped_error)) for g in tap.groups]
    table = _table(("group", "sent", "bytes", "dropped (busy)", "dropped (error)"), rows,
                   {1, 2, 3, 4}, "no monitor groups")
    skipped = (f'<p class="muted">{count(tap.emitted)} datagrams emitted; not sent to any '
               f"group: {count(tap.oversize)} oversize, {count(tap.not_running)} while not "
               f"running, {count(tap.invalid)} invalid</p>")
    return _wide("Monitor tap", table, skipped)


def _shm(status: ProxyStatus) -> str:
    """``--shm-tap`` taps (pybrid.proxy.taps.shm.tap.ShmTapStatus); nothing without one."""
    if not status.shm_taps:
        return ""
    rows = [(f"<code>{e(t.name)}</code>", e(t.state), count(t.frames_written),
             count(t.frames_dropped), count(t.dropped_yielded), count(t.detaches),
             e(t.last_error))
            for t in status.shm_taps]
    table = _table(("shm tap", "state", "written", "dropped", "of which yielded", "detaches",
                    "last error"), rows, {2, 3, 4, 5}, "")
    return _wide("Shared-memory taps", table)


def _nats(status: ProxyStatus) -> str:
    """``--nats`` export (pybrid.proxy.taps.nats.child.NatsExportStatus); nothing without it."""
    n = status.nats
    if n is None:
        return ""
    rows = [(e(", ".join(n.servers)), e(n.stream), e(n.state), count(n.stored),
             count(n.dropped), count(n.failed), count(n.not_sent), count(n.yielded),
             count(n.queue), count(n.runs_ended), count(n.incomplete), count(n.restarts),
             e(n.last_error))]
    table = _table(("servers", "stream", "state", "stored", "dropped", "failed",
                    "not sent to the bridge", "… the proxy behind", "queued", "runs ended",
                    "incomplete", "restarts", "last error"), rows,
                   {3, 4, 5, 6, 7, 8, 9, 10, 11}, "")
    return _wide("NATS export", table)


def _live_process(status: ProxyStatus) -> str:
    """``--live-process`` (pybrid.proxy.taps.live.child.LiveProcessStatus); nothing without."""
    p = status.live_process
    if p is None:
        return ""
    rows = [(e(str(p.pid or "–")), "ready" if p.ready else "starting", count(p.viewers),
             count(p.handed), count(p.served_here), count(p.sent), count(p.not_sent),
             count(p.restarts))]
    table = _table(("pid", "state", "viewers", "handed over", "served by the proxy",
                    "chunks sent", "not sent (behind)", "restarts"), rows,
                   {2, 3, 4, 5, 6, 7}, "")
    return _wide("Live process", table)


def _counters(status: ProxyStatus) -> str:
    if not status.counters:
        return ""
    items = "".join(f"<div><span>{e(k.replace('_', ' '))}</span><span>{count(v)}</span></div>"
                    for k, v in sorted(status.counters.items()))
    return _wide("Counters", f'<div class="counters">{items}</div>')


def _recent_runs(status: ProxyStatus) -> str:
    """The last runs that ended, newest first (pybrid.proxy.runs.history)."""
    css = {"done": "ok", "error": "bad", "aborted": "warn"}
    rows = [
        (f'<span class="mono">{clock_time(r.ended)}</span>',
         f"<code>{e(r.id)}</code>" + (f'<br><span class="muted mono">{e(r.proxy_id)}</span>'
                                      if r.proxy_id != r.id else ""),
         f"<code>{e(r.peer)}</code>", duration(r.duration), count(r.carriers), count(r.chunks),
         count(r.missing),
         f'<span class="pill {css.get(r.result, "bad")}">{e(r.result)}</span>'
         + (f" {e(r.reason)}" if r.reason else ""))
        for r in reversed(status.recent_runs)
    ]
    body = _table(("ended (UTC)", "run (client's id; proxy's)", "client", "duration",
                   "carriers", "chunks", "missing", "result"), rows, {3, 4, 5, 6},
                  "no run has ended yet", wrap=7)
    return _wide("Last runs", body)


def _banner(status: ProxyStatus) -> str:
    """Why no session is served, at the top of the page (nothing while the cluster is ready)."""
    problems = status.readiness.problems
    if not problems:
        return ""
    items = "".join(f"<li>{e(p)}</li>" for p in problems)
    return (f'<div class="banner" role="alert"><strong>No session is served: the cluster is '
            f"{e(status.readiness.state)}.</strong><ul>{items}</ul></div>")


def _errors(status: ProxyStatus) -> str:
    rows = [
        (f'<span class="mono">{clock_time(x.time)}</span>',
         f'<span class="pill {"warn" if x.level == "warn" else "bad"}">{e(x.level)}</span>',
         f"<code>{e(x.namespace.rsplit('.', 1)[-1])}</code>", e(x.text))
        for x in status.errors
    ]
    body = _table(("time (UTC)", "level", "module", "message"), rows, set(),
                  "no warnings or errors logged", wrap=3)
    return _wide("Recent warnings and errors", body)


def render(status: ProxyStatus, refresh: float = 2.0) -> str:
    """The whole page."""
    badge = ('<span class="pill ok">all backends ready</span>' if status.healthy
             else f'<span class="pill bad">{e(status.readiness.state)}</span>')
    open_sessions = (status.active is not None) + len(status.queue) + len(status.idle)
    limit = "" if status.max_sessions is None else f"/{status.max_sessions}"
    timeout = status.session_timeout
    meta = " \u00b7 ".join((
        f"listening on <code>{_opt(status.listen)}</code>",
        f"up {duration(status.uptime)}",
        f"auth {'on' if status.auth else 'off'}",
        f"sessions {open_sessions}{limit}",
        f"session timeout {'n/a' if timeout is None else f'{timeout:g} s'}",
        f"version <code>{e(status.version)}</code>",
    ))
    title = f"pybrid-proxy {status.listen or ''}".strip()
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{refresh:g}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>pybrid-proxy</h1>{badge}<span class=\"meta\">{meta}</span></header>"
        f"{_banner(status)}<main>{_backends(status)}{_carriers(status)}{_session(status)}"
        f"{_recent_runs(status)}{_monitor(status)}{_shm(status)}{_nats(status)}{_live_process(status)}"
        f"{_counters(status)}{_errors(status)}</main>"
        f"<footer>Snapshot {clock_time(status.now)} UTC, refreshed every {refresh:g} s \u00b7 "
        '<a href="status.json">status.json</a> \u00b7 <a href="metrics">metrics</a> \u00b7 '
        '<a href="live">live view</a></footer>'
        "</body></html>\n"
    )
