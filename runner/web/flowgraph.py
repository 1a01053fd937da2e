"""A workflow run drawn as SVG on the server: its jobs in columns by depth (the root first),
each box coloured by what became of its step, an arrow from each parent labelled with the
outcome it waits for (success, failure, always)."""

from __future__ import annotations

from html import escape
from typing import Any

BOX_W, BOX_H = 170, 48
GAP_X, GAP_Y = 90, 26
MARGIN = 20
COLOURS = {  # fill, stroke by the step's outcome (or status while it has none)
    "ok": ("#dcfce7", "#16a34a"), "failed": ("#fee2e2", "#dc2626"),
    "interrupted": ("#fee2e2", "#dc2626"), "rehearsal_failed": ("#fee2e2", "#dc2626"),
    "rejected": ("#f3f4f6", "#6b7280"),
    "expired": ("#f3f4f6", "#6b7280"), "blacked out": ("#f3f4f6", "#111827"),
    "not run": ("#f9fafb", "#9ca3af"), "running": ("#e0f2fe", "#0284c7"),
    "pending": ("#fef9c3", "#ca8a04"), "awaiting_approval": ("#fef9c3", "#ca8a04"),
    "waiting": ("#ffffff", "#9ca3af"),
}
EDGE = {"success": "#16a34a", "failure": "#dc2626", "always": "#6b7280"}


def _depths(steps: list[dict[str, Any]]) -> dict[str, int]:
    depth = {s["job"]: 0 for s in steps}
    for _ in range(len(steps)):  # longest path from the root: at most one pass per job
        for step in steps:
            for parent in step["after"]:
                if parent["job"] in depth:
                    depth[step["job"]] = max(depth[step["job"]], depth[parent["job"]] + 1)
    return depth


def render(document: dict[str, Any]) -> str:
    """The SVG of runner.schedule.listing.workflow_document()."""
    steps = document["steps"]
    depth = _depths(steps)
    columns: dict[int, list[str]] = {}
    for step in steps:
        columns.setdefault(depth[step["job"]], []).append(step["job"])
    place: dict[str, tuple[float, float]] = {}
    for col, jobs in sorted(columns.items()):
        for row, job in enumerate(jobs):
            place[job] = (MARGIN + col * (BOX_W + GAP_X), MARGIN + row * (BOX_H + GAP_Y))
    width = MARGIN * 2 + (max(columns, default=0) + 1) * (BOX_W + GAP_X) - GAP_X
    height = MARGIN * 2 + max((len(j) for j in columns.values()), default=1) * \
        (BOX_H + GAP_Y) - GAP_Y
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
           f'width="{width}" height="{height}" role="img" aria-label="workflow '
           f'{escape(document["id"])}" font-family="sans-serif" font-size="12">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/>'
           '</marker></defs>']
    for step in steps:
        x2, y2 = place[step["job"]]
        for parent in step["after"]:
            if parent["job"] not in place:
                continue
            x1, y1 = place[parent["job"]]
            colour = EDGE.get(parent["when"], "#6b7280")
            sx, sy, ex, ey = x1 + BOX_W, y1 + BOX_H / 2, x2, y2 + BOX_H / 2
            out.append(f'<path class="edge" data-from="{escape(parent["job"])}" '
                       f'data-to="{escape(step["job"])}" d="M{sx},{sy} C{sx + 40},{sy} '
                       f'{ex - 40},{ey} {ex},{ey}" fill="none" stroke="{colour}" '
                       'stroke-width="1.5" marker-end="url(#arrow)"/>')
            out.append(f'<text x="{(sx + ex) / 2}" y="{(sy + ey) / 2 - 4}" '
                       f'text-anchor="middle" fill="{colour}">{escape(parent["when"])}</text>')
    for step in steps:
        x, y = place[step["job"]]
        state = step["outcome"] or step["status"]
        fill, stroke = COLOURS.get(state, COLOURS["waiting"])
        out.append(f'<g class="step" data-job="{escape(step["job"])}" '
                   f'data-state="{escape(state)}">')
        out.append(f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" '
                   f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>')
        out.append(f'<text x="{x + 10}" y="{y + 19}" font-weight="bold">'
                   f'{escape(step["job"][:22])}</text>')
        out.append(f'<text x="{x + 10}" y="{y + 36}" fill="#374151">'
                   f'{escape(state.replace("_", " "))}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)
