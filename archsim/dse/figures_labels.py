"""Labels beside the points of a scatter that overprint neither each other nor the markers
(``archsim.dse.plots``' Pareto figure)."""

from __future__ import annotations

import numpy as np
from matplotlib.text import Text

_NEAR = [(5, 4), (5, -4), (-5, 4), (-5, -4), (0, 8), (0, -8), (8, 14), (-8, -14), (8, -14), (-8, 14)]
# further out, joined to the point by a thin line
_FAR = [(d * sx, e * sy) for d, e in ((14, 26), (30, 12), (0, 34), (40, 30), (10, 48)) for sx in (1, -1) for sy in (1, -1)]


def place_labels(fig, labels: list) -> None:
    """``labels``: (axes, (x, y), text, text style) in the order they are placed, and (axes,
    n x 2 array, None, None) for a panel's markers (placed before its labels). Each label goes
    at the first offset from its point where it stays in its panel and covers no marker or
    earlier label; else at the one covering the fewest. The layout is then fixed: the boxes
    checked are the boxes drawn."""
    if len(labels) <= sum(text is None for _, _, text, _ in labels):
        return
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed: dict = {}
    radius = 3.5 * fig.dpi / 72  # a marker's half width, in pixels
    for ax, xy, text, style in labels:
        frame_box = ax.get_window_extent(renderer)
        taken = placed.setdefault(ax, [np.zeros((0, 4))])
        if text is None:  # the panel's markers
            points = ax.transData.transform(xy[np.isfinite(xy).all(axis=1)])
            taken.append(np.column_stack([points - radius, points + radius]))
            continue
        best = None
        for dx, dy in _NEAR + _FAR:
            far = (dx, dy) not in _NEAR
            note = ax.annotate(text, xy, xytext=(dx, dy), textcoords="offset points", ha="left" if dx > 0 else
                               "right" if dx < 0 else "center", va="bottom" if dy > 0 else "top", **style,
                               arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "grey", "shrinkA": 0, "shrinkB": 3}
                               if far else None)
            note.get_window_extent(renderer)  # places it; then its text's box, without the line
            box = Text.get_window_extent(note, renderer)
            inside = (frame_box.x0 <= box.x0 and box.x1 <= frame_box.x1 and frame_box.y0 <= box.y0
                      and box.y1 <= frame_box.y1)
            score = (not inside, int(_overlaps(box, np.vstack(taken)).sum()))
            if best is None or score < best[0]:
                if best is not None:
                    best[1].remove()
                best = (score, note, box)
            else:
                note.remove()
            if score == (False, 0):
                break
        taken.append(np.array([best[2].extents]))
    fig.set_layout_engine("none")


def _overlaps(box, boxes: np.ndarray) -> np.ndarray:
    """Which of ``boxes`` (x0, y0, x1, y1 rows) ``box`` overlaps."""
    return (boxes[:, 0] < box.x1) & (box.x0 < boxes[:, 2]) & (boxes[:, 1] < box.y1) & (box.y0 < boxes[:, 3])
