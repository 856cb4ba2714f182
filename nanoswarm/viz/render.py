"""`nanoswarm render SOURCE --out FILE`: one verb for every picture of a run, chosen by what SOURCE is:

- a flight folder (it has events.jsonl; `nanoswarm fly` writes one): a video of the logged flight;
- a training run folder (it has tb/; `nanoswarm train` writes one): its training curves as a PNG;
- a checkpoint file or a shipped policy name (swarm8): one episode flown in the simulator, as a video.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from nanoswarm.viz.errors import RenderError
from nanoswarm.viz.record import SwarmRecord
from nanoswarm.viz.video import VideoInfo, render_video, video_writer


@dataclass(frozen=True)
class Rendered:
    kind: str                    # "flight", "checkpoint" or "run"
    path: Path
    video: VideoInfo | None      # None for training curves


def source_kind(source: str) -> str:
    """What `source` is: "flight", "run" or "checkpoint"; a folder that is neither is refused here."""
    path = Path(source)
    if path.is_dir():
        if (path / "events.jsonl").is_file():
            return "flight"
        if (path / "tb").is_dir():
            return "run"
        raise RenderError(f"'{source}' is a folder but neither a flight log (no events.jsonl: `nanoswarm fly --log "
                          "DIR` writes one) nor a training run (no tb/: `nanoswarm train --out DIR` writes one); "
                          "give one of those, or a checkpoint file")
    from nanoswarm.training.checkpoint import PRETRAINED_DIR, CheckpointError, resolve_checkpoint

    try:
        resolve_checkpoint(source)
    except CheckpointError:
        shipped = sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt"))
        raise RenderError(f"'{source}' does not exist: give a checkpoint file, a shipped policy {shipped}, a flight "
                          "folder or a training run folder") from None
    return "checkpoint"


def checkpoint_record(checkpoint: str, scenario: str | None = None, episode: int = 0, seed: int = 0,
                      seconds: float | None = None, device: str | None = None) -> SwarmRecord:
    """Episode `episode` of seed `seed` flown by the checkpoint's deterministic policy, cut to `seconds`
    (the episode is flown only that long, since nothing after it would be shown)."""
    from nanoswarm.training.checkpoint import load_policy
    from nanoswarm.training.evaluate import eval_env_config, evaluate_policy

    if episode < 0:
        raise RenderError(f"--episode {episode}: episodes count from 0")
    policy, data = load_policy(checkpoint)
    config = eval_env_config(data, scenario=scenario, device=device)
    if seconds is not None and seconds < config.episode_s:
        config = dataclasses.replace(config, episode_s=seconds)
    result = evaluate_policy(policy.to(config.device), config, episode + 1, seed=seed, record=episode + 1)
    record = result.trajectories.records()[episode]
    record.title = f"{Path(checkpoint).stem}: {config.scenario}, seed {seed}, episode {episode}"
    return record


def render(source: str, out: str | Path, fps: int = 20, seconds: float | None = None, scenario: str | None = None,
           episode: int = 0, seed: int = 0, device: str | None = None) -> Rendered:
    """Draw `source` into `out`; scenario, episode, seed and device apply to a checkpoint only."""
    out = Path(out)
    kind = source_kind(source)
    if kind == "run":
        from nanoswarm.viz.curves import plot_training_curves

        if out.suffix != ".png":
            raise RenderError(f"'{source}' is a training run, drawn as its training curves: give --out a file "
                              f"ending in .png, not '{out.name}'")
        return Rendered(kind, plot_training_curves(source, out), None)
    video_writer(out, fps)   # a bad --out or --fps is refused before anything is flown or read
    if kind == "flight":
        from nanoswarm.firmware_bridge.flight_record import read_flight

        record = read_flight(Path(source)).record
    else:
        record = checkpoint_record(source, scenario, episode, seed, seconds, device)
    video = render_video(record, out, fps=fps, seconds=seconds)
    return Rendered(kind, video.path, video)
