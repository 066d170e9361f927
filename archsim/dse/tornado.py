"""A tornado chart of a sensitivity run: each assumption's change of the run's latency and energy
at each factor of its range (blue below 1, red above), the field moving most on top."""

from __future__ import annotations

from pathlib import Path

from archsim.dse.plots import _save, plt


def plot_tornado(swings, title: str, stem: Path, most: int = 20) -> list[Path]:
    shown = swings[:most][::-1]  # barh draws bottom-up: the largest last, on top
    fig, axes = plt.subplots(1, 2, sharey=True, figsize=(9, 0.3 * len(shown) + 1.4))
    for ax, series, label in ((axes[0], "latency", "latency change (%)"), (axes[1], "energy", "energy change (%)")):
        for y, s in enumerate(shown):
            for factor, value in zip(s.factors, getattr(s, series)):
                if value is not None:
                    ax.barh(y, (value - 1) * 100, color="#c44e52" if factor > 1 else "#4c72b0", alpha=0.7)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlabel(label)
    axes[0].set_yticks(range(len(shown)), [s.field for s in shown])
    fig.suptitle(f"{title}: each assumption x{', x'.join(f'{f:g}' for f in shown[0].factors)} "
                 "(blue: lower, red: higher)" if shown else title)
    return _save(fig, stem)
