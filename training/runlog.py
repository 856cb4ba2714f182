"""What a training run tells its user while it runs and leaves behind: a live progress bar, TensorBoard
scalars and `metrics.jsonl` (one JSON object per logged update, for scripts and plots)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

PLAIN_EVERY_S = 30.0  # without a terminal (CI, nohup), a plain status line this often


def drop_records_after(path: Path, step: int) -> None:
    """Forget what a run logged after its last checkpoint: a resumed run redoes those updates."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines(keepends=True)
            if line.strip() and json.loads(line)["agent_steps"] <= step]
    path.write_text("".join(kept))


class RunLog:
    def __init__(self, out: Path | None, total_steps: int, done_steps: int, purge_step: int | None = None):
        self.console = Console(stderr=True)
        self.interactive = self.console.is_terminal
        self.writer = None
        self.jsonl = None
        if out is not None:
            from torch.utils.tensorboard import SummaryWriter  # imported late: tensorboard is slow to import
            self.writer = SummaryWriter(str(out / "tb"), purge_step=purge_step)
            if purge_step is not None:
                drop_records_after(out / "metrics.jsonl", purge_step)
            self.jsonl = open(out / "metrics.jsonl", "a")
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
            TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
            console=self.console, disable=not self.interactive)
        self.task = self.progress.add_task("train", total=total_steps, completed=done_steps, status="")
        self.last_plain = 0.0

    def __enter__(self) -> "RunLog":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()
        if self.writer is not None:
            self.writer.close()
        if self.jsonl is not None:
            self.jsonl.close()

    def update(self, step: int, record: dict[str, Any]) -> None:
        """Log one update's numbers (flat dict of floats, plus the agent step) everywhere."""
        status = (f"{record.get('agent_steps_per_s', 0) / 1e3:6.1f}k steps/s  "
                  f"reward {record.get('reward', float('nan')):+.3f}  "
                  f"success {record.get('train/success_rate', float('nan')):.2f}  "
                  f"collisions {record.get('train/collision_rate', float('nan')):.3f}")
        self.progress.update(self.task, completed=step, status=status)
        now = time.monotonic()
        if not self.interactive and now - self.last_plain >= PLAIN_EVERY_S:
            self.console.print(f"step {step:,}  {status}", highlight=False)
            self.last_plain = now
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, step)
        if self.jsonl is not None:
            self.jsonl.write(json.dumps({"agent_steps": step, **record}) + "\n")
            self.jsonl.flush()

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False)


class NullLog:
    """The log of a rank other than 0: the run's numbers are logged once, by rank 0."""

    def __enter__(self) -> "NullLog":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, step: int, record: dict[str, Any]) -> None:
        return None

    def message(self, text: str) -> None:
        return None
