"""One metrics interface: metrics.jsonl always, TensorBoard and W&B when configured, and one
readable line per outer step on the console."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from soar_orl.config import LoggingConfig

log = logging.getLogger("soar")

CONSOLE_KEYS = (
    ("reward/mean", "reward"),
    ("promotion/moving_average", "avg"),
    ("promotion/count", "promotions"),
    ("teacher/valid_rate", "valid"),
    ("student/q_r_acc_baseline", "acc_base"),
    ("student/q_r_acc_best", "acc_best"),
    ("time/step", "s"),
)


class MetricsLogger:
    def __init__(self, run_dir: Path, cfg: LoggingConfig) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.tensorboard = None
        self.wandb = None
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(log_dir=str(run_dir))
        if cfg.wandb_project:
            import wandb

            self.wandb = wandb.init(project=cfg.wandb_project, name=run_dir.name, dir=str(run_dir), resume="allow")

    def log(self, step: int, row: dict[str, Any]) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps({"step": step, **row}) + "\n")
        scalars = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and k != "step"}
        if self.tensorboard is not None:
            for key, value in scalars.items():
                self.tensorboard.add_scalar(key, value, step)
            self.tensorboard.flush()
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)
        shown = " | ".join(f"{name} {scalars[key]:.3g}" for key, name in CONSOLE_KEYS if key in scalars)
        log.info("step %d | %s", step, shown)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()
