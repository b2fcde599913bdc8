"""PNG plots of a SOAR run's curves, from the rows of its metrics.jsonl.

One figure, three panels sharing the outer-step axis:
- teacher reward: per dataset (dots) and the step mean;
- promotion: the moving average the decision is taken on, the threshold tau, promotions marked;
- Q_R accuracy: baseline student, mean and best trained student.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

CURVES_FILE = "soar_curves.png"


def _series(rows: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(row["step"], row[key]) for row in rows if key in row]
    return [s for s, _ in points], [v for _, v in points]


def plot_soar_curves(rows: Sequence[dict], tau: float, out_dir: Path, title: str = "") -> Path:
    """Write the run's curves to out_dir/soar_curves.png; returns the path."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on clusters or in CI
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rows = sorted((row for row in rows if "reward/mean" in row), key=lambda row: row["step"])
    if not rows:
        raise ValueError("no SOAR steps in the metrics (a run without a teacher has no such curves)")
    fig, (reward_ax, promo_ax, acc_ax) = plt.subplots(3, 1, figsize=(8, 9), sharex=True)

    datasets = sorted({key for row in rows for key in row if key.startswith("reward/dataset_")})
    for key in datasets:
        reward_ax.scatter(*_series(rows, key), s=12, alpha=0.5, color="tab:blue")
    reward_ax.plot(*_series(rows, "reward/mean"), color="tab:blue", label="mean over datasets")
    reward_ax.axhline(0.0, color="grey", linewidth=0.8)
    reward_ax.set_ylabel("teacher reward")
    reward_ax.legend(loc="upper left")

    promo_ax.plot(*_series(rows, "promotion/moving_average"), color="tab:orange", label="moving average")
    promo_ax.axhline(tau, color="tab:red", linestyle="--", label=f"tau = {tau:g}")
    promoted = [row["step"] for row in rows if row.get("promotion/promoted")]
    for step in promoted:
        promo_ax.axvline(step, color="tab:green", alpha=0.4)
    promo_ax.plot([], [], color="tab:green", alpha=0.4, label=f"promotion ({len(promoted)})")
    promo_ax.set_ylabel("reward moving average")
    promo_ax.legend(loc="upper left")

    for key, label in (
        ("student/q_r_acc_baseline", "baseline student"),
        ("student/q_r_acc_mean", "trained students, mean"),
        ("student/q_r_acc_best", "trained students, best"),
    ):
        acc_ax.plot(*_series(rows, key), marker=".", label=label)
    acc_ax.set_ylabel("greedy accuracy on Q_R")
    acc_ax.set_xlabel("outer step")
    acc_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    acc_ax.legend(loc="upper left")

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CURVES_FILE
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
