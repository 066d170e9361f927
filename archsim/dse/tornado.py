"""A tornado chart of a sensitivity run: each assumption's change of the run's latency and energy
at each factor of its range (blue below 1, red above), the field moving most on top; against a
baseline, two more panels: the change of the speedup and of the energy gain over it."""

from __future__ import annotations

from pathlib import Path

from archsim.dse.plots import _save, plt


def _changes(swing, series: str) -> list[tuple[float, float | None]]:
    """(factor, % change) of one figure: the run's own ratios, or the comparison's against its
    unchanged value."""
    if series in ("latency", "energy"):
        return [(f, None if v is None else (v - 1) * 100) for f, v in zip(swing.factors, getattr(swing, series))]
    unchanged = swing.speedup if series == "versus" else swing.energy_gain
    return [(f, None if v is None else (v / unchanged - 1) * 100) for f, v in zip(swing.factors, getattr(swing, series))]


def plot_tornado(swings, title: str, stem: Path, most: int = 20) -> list[Path]:
    shown = swings[:most][::-1]  # barh draws bottom-up: the largest last, on top
    panels = [("latency", "latency change (%)"), ("energy", "energy change (%)")]
    if any(v is not None for s in shown for v in s.versus):
        panels += [("versus", "speedup change (%)"), ("energy_versus", "energy-gain change (%)")]
    fig, axes = plt.subplots(1, len(panels), sharey=True, figsize=(4.5 * len(panels), 0.3 * len(shown) + 1.4))
    for ax, (series, label) in zip(axes, panels):
        for y, s in enumerate(shown):
            for factor, value in _changes(s, series):
                if value is not None:
                    ax.barh(y, value, color="#c44e52" if factor > 1 else "#4c72b0", alpha=0.7)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(label)
    axes[0].set_yticks(range(len(shown)), [s.field for s in shown])
    fig.suptitle(f"{title}: each assumption x{', x'.join(f'{f:g}' for f in shown[0].factors)} "
                 "(blue: lower, red: higher)" if shown else title)
    return _save(fig, stem)
