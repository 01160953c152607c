"""Key ages against their schedules: a page, its chart as SVG (no script), and the evidence
export it links to (evidence.py, over the status app's own copy of the state branch).

A credential's key age is the time since its last completed rotation, as the schedule measures
it (`timeline.last_done`, what `velvet due` and the index page use); overdue is the schedule's
own answer. The chart draws one bar per credential: its age against its schedule (a tick), red
when overdue, amber past four fifths of the schedule, and a mark where revocation debt is
still open. The same numbers are in the page's table, for people who do not read charts.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from velvet_runner import evidence
from velvet_runner.errors import InputError, WebBadRequest, WebNotFound, WebUnavailable
from velvet_runner.manifest import Credential, Manifest
from velvet_runner.web.api import context
from velvet_runner.web.state import Context, Summary, credential_label

WARN_AT = 0.8  # of the schedule: amber from here on
MEDIA = {"md": "text/markdown", "csv": "text/csv", "json": "application/json"}
# The chart's geometry (user units of its viewBox).
WIDTH, LABEL, ROW, TOP, RIGHT = 1000, 220, 34, 40, 290
COLOURS = {"ok": "#15803d", "warn": "#b45309", "overdue": "#b91c1c", "unknown": "#6b7280"}


@dataclass(frozen=True)
class KeyAge:
    name: str
    schedule: str | None
    schedule_hours: int | None
    age: timedelta | None  # None: never rotated by Velvet
    next_due: datetime | None
    unscheduled: str | None
    overdue: bool
    open_debt: int

    @property
    def tone(self) -> str:
        if self.overdue:
            return "overdue"
        if self.age is None or not self.schedule_hours:
            return "unknown"
        hours = self.age.total_seconds() / 3600
        return "warn" if hours >= WARN_AT * self.schedule_hours else "ok"

    @property
    def label(self) -> str:
        if self.age is None:
            age, against = "never rotated by Velvet", (
                f"; schedule {self.schedule}" if self.schedule else "")
        else:
            age, against = f"age {_days(self.age)}", f" of {self.schedule}" if self.schedule else ""
        state = {"overdue": ", OVERDUE", "warn": ", due soon"}.get(self.tone, "")
        debt = f", {self.open_debt} debt open" if self.open_debt else ""
        return f"{age}{against}{state}{debt}"


def _days(delta: timedelta) -> str:
    days = delta.total_seconds() / 86400
    return f"{days:.0f}d" if days >= 10 else f"{days:.1f}d"


def key_ages(ctx: Context) -> list[KeyAge]:
    """Every credential the manifest names (and any other the branch has jobs of), now."""
    now = ctx.now()
    manifest: Manifest | None = None
    with contextlib.suppress(WebUnavailable):
        manifest = ctx.manifest.get()
    names: list[tuple[str, Credential | None]] = (
        [(c.name, c) for c in manifest.credentials] if manifest else [])
    listed = {n for n, _ in names}
    names += [(n, None) for n in ctx.state.credentials() if n not in listed]
    out = []
    for name, cred in names:
        s: Summary = ctx.summarise(name, cred)
        scheduled = cred is not None and s.unscheduled is None
        out.append(KeyAge(
            name=name, schedule=cred.schedule if cred else None,
            schedule_hours=cred.schedule_hours if cred else None,
            age=now - s.last_done_at if s.last_done_at else None, next_due=s.next_due,
            unscheduled=s.unscheduled if cred else "not in the manifest",
            overdue=scheduled and (s.next_due is None or s.next_due <= now),
            open_debt=s.open_debt))
    return out


def chart(rows: list[KeyAge]) -> str:
    """The SVG: presentation attributes only (no style element, no script), so it renders the
    same as an image under the app's content security policy."""
    hours = [r.age.total_seconds() / 3600 for r in rows if r.age is not None]
    hours += [float(r.schedule_hours) for r in rows if r.schedule_hours]
    span = max([*hours, 24.0]) * 1.1
    plot = WIDTH - LABEL - RIGHT
    height = TOP + ROW * max(1, len(rows)) + 30

    def x(h: float) -> float:
        return LABEL + plot * min(h, span) / span

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-labelledby="title desc" '
        'font-family="system-ui, sans-serif" font-size="13">',
        '<title id="title">Key ages against their schedules</title>',
        '<desc id="desc">One bar per credential: the time since its last completed rotation. '
        'The tick is its schedule; red is overdue, amber is past four fifths of the schedule, '
        'a red diamond marks open revocation debt.</desc>',
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="{LABEL}" y="22" fill="#374151">key age (days) — the tick is the '
        'schedule</text>']
    for i, row in enumerate(rows):
        y = TOP + i * ROW
        tone = COLOURS[row.tone]
        parts.append(f'<g data-credential="{escape(row.name)}" data-tone="{row.tone}">')
        parts.append(f'<text x="{LABEL - 8}" y="{y + 18}" text-anchor="end" '
                     f'fill="#111827">{escape(row.name)}</text>')
        if row.age is not None:
            end = x(row.age.total_seconds() / 3600)
            parts.append(f'<rect class="age" x="{LABEL}" y="{y + 6}" width="{end - LABEL:.1f}"'
                         f' height="{ROW - 14}" fill="{tone}"/>')
        else:
            parts.append(f'<rect class="age" x="{LABEL}" y="{y + 6}" width="{plot:.1f}" '
                         f'height="{ROW - 14}" fill="none" stroke="{tone}" '
                         'stroke-dasharray="4 3"/>')
            end = LABEL + plot
        if row.schedule_hours:
            tick = x(float(row.schedule_hours))
            parts.append(f'<line class="schedule" x1="{tick:.1f}" x2="{tick:.1f}" y1="{y + 2}" '
                         f'y2="{y + ROW - 4}" stroke="#111827" stroke-width="2"/>')
        if row.open_debt:
            cx, cy = LABEL + plot + 10, y + 17
            parts.append(f'<path class="debt" d="M{cx} {cy - 7} L{cx + 7} {cy} L{cx} {cy + 7} '
                         f'L{cx - 7} {cy} Z" fill="#b91c1c"><title>{row.open_debt} '
                         'revocation debt open</title></path>')
        parts.append(f'<text x="{LABEL + plot + 22}" y="{y + 18}" fill="{tone}">'
                     f'{escape(row.label)}</text>')
        parts.append("</g>")
    for days in _ticks(span / 24):
        tx = x(days * 24)
        parts.append(f'<text x="{tx:.1f}" y="{height - 8}" text-anchor="middle" '
                     f'fill="#6b7280">{days}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _ticks(days: float) -> list[int]:
    step = next(s for s in (1, 7, 15, 30, 60, 90, 180, 365, 730) if days / s <= 8)
    return list(range(0, int(days) + 1, step))


# --- endpoints -----------------------------------------------------------------------------


def key_ages_page(request: Request) -> HTMLResponse:
    from velvet_runner.web.pages import render

    ctx = context(request)
    rows = key_ages(ctx)
    return render(ctx, "key_ages.html", "Key ages", rows=rows, now=ctx.now(),
                  formats=list(evidence.FORMATS))


def key_ages_svg(request: Request) -> Response:
    ctx = context(request)
    return Response(chart(key_ages(ctx)), media_type="image/svg+xml")


def evidence_export(request: Request) -> Response:
    """`velvet evidence` from the app's copy of the branch: ?format=md|csv|json, ?since=90d,
    ?credential=NAME. The same head gives the same bytes (its time is the "as of")."""
    ctx = context(request)
    query = request.query_params
    fmt = query.get("format", "md")
    if fmt not in MEDIA:
        raise WebBadRequest(f"format must be one of {', '.join(MEDIA)}")
    since, name = query.get("since"), query.get("credential")
    key = ("evidence", fmt, since or "", name or "")
    manifest_key = ctx.manifest.stat_key()
    cached = ctx.state.page(key, manifest_key)
    if cached is not None:
        return cached
    try:
        evidence.parse_since(since)
    except InputError:
        raise WebBadRequest("since must be an interval such as 90d, 12w or 36h") from None
    if name is not None and not ctx.known(name):
        raise WebNotFound(credential_label(name))
    head = ctx.state.head()
    report = evidence.collect(ctx.state.store, ctx.manifest.get(), ctx.manifest.path,
                              since=since, credential=name, fetch=False)
    suffix = (report.head or "none")[:12]
    response = Response(evidence.render(report, fmt), media_type=MEDIA[fmt], headers={
        "Content-Disposition": f'inline; filename="velvet-evidence-{suffix}.{fmt}"'})
    ctx.state.remember(key, head, manifest_key, response)
    return response
