"""`nanoswarm render`: videos last as long as the flight at real time, show moving drones on a non-blank
picture, training curves come from the TensorBoard logs, and every bad input is one line naming the fix."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nanoswarm.cli import main
from nanoswarm.viz.curves import read_scalars
from nanoswarm.viz.record import drone_colors

BLANK_STD = 10.0   # a frame whose pixel values vary less than this shows nothing but background


def gif_frames(path) -> tuple[list[np.ndarray], list[int]]:
    """Every frame (RGB) of a GIF and its delay in ms."""
    image = Image.open(path)
    frames, delays = [], []
    for k in range(image.n_frames):
        image.seek(k)
        frames.append(np.asarray(image.convert("RGB"), dtype=np.float64))
        delays.append(image.info["duration"])
    return frames, delays


def color_centroid(frame: np.ndarray, rgb: np.ndarray, tolerance: float = 40.0) -> tuple[int, np.ndarray]:
    """How many pixels have (about) colour `rgb`, and where their centre (x, y) is."""
    near = np.linalg.norm(frame - rgb, axis=-1) < tolerance
    ys, xs = np.nonzero(near)
    return int(near.sum()), np.array([xs.mean(), ys.mean()]) if near.any() else np.full(2, np.nan)


def test_checkpoint_gif_lasts_as_long_as_the_episode_at_real_time(tiny_checkpoint, tmp_path):
    out = tmp_path / "episode.gif"
    assert main(["render", str(tiny_checkpoint), "--out", str(out), "--fps", "20", "--seed", "1"]) == 0
    frames, delays = gif_frames(out)
    assert len(frames) == 20                       # a 1 s episode at 20 fps
    assert set(delays) == {50} and sum(delays) == 1000
    assert frames[0].shape == (480, 640, 3)
    assert min(f.std() for f in frames) > BLANK_STD
    blue = np.array(drone_colors(3)[0][:3]) * 255
    assert all(color_centroid(f, blue)[0] > 20 for f in frames), "drone 0 (and its goal) drawn in its colour"


def test_checkpoint_mp4_has_duration_times_fps_frames(tiny_checkpoint, tmp_path):
    import imageio_ffmpeg

    out = tmp_path / "episode.mp4"
    assert main(["render", str(tiny_checkpoint), "--out", str(out), "--fps", "25", "--seconds", "0.4"]) == 0
    frames = list(imageio_ffmpeg.read_frames(str(out)))
    meta, pictures = frames[0], frames[1:]
    assert meta["size"] == (640, 480) and meta["fps"] == 25
    assert len(pictures) == 10                     # 0.4 s at 25 fps
    first = np.frombuffer(pictures[0], dtype=np.uint8)
    assert first.size == 640 * 480 * 3 and first.std() > BLANK_STD


def test_flight_log_video_shows_the_drones_moving(logged_flight, tmp_path):
    out = tmp_path / "flight.gif"
    assert main(["render", str(logged_flight()), "--out", str(out), "--fps", "10", "--seconds", "1.5"]) == 0
    frames, delays = gif_frames(out)
    assert len(frames) == 15 and sum(delays) == 1500
    blue = np.array(drone_colors(8)[0][:3]) * 255
    (n0, c0), (n1, c1) = color_centroid(frames[0], blue), color_centroid(frames[-1], blue)
    assert n0 > 10 and n1 > 10
    assert np.linalg.norm(c1 - c0) > 15, "drone 1 climbed 1 m and drifted 0.75 m: its pixels must move"
    assert np.abs(frames[-1] - frames[0]).mean() > 0.5


def test_training_curves_are_drawn_from_the_tensorboard_scalars(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "run"
    with SummaryWriter(str(run / "tb")) as writer:
        for step in (300, 100, 200):                               # written out of order, read in order
            writer.add_scalar("reward", -step / 1000.0, step)
            writer.add_scalar("train/success_rate", step / 300.0, step)
    steps, values = read_scalars(run)["train/success_rate"]
    assert steps.tolist() == [100, 200, 300] and values == pytest.approx([1 / 3, 2 / 3, 1.0])
    out = tmp_path / "curves.png"
    assert main(["render", str(run), "--out", str(out)]) == 0
    image = np.asarray(Image.open(out).convert("RGB"), dtype=np.float64)
    assert image.shape == (640, 1200, 3) and image.std() > BLANK_STD


@pytest.mark.parametrize("case, words", [
    ("plain folder", ["neither a flight log", "nanoswarm fly --log", "nanoswarm train --out"]),
    ("missing", ["does not exist", "swarm8", "flight folder"]),
    ("video as png", ["cannot write a video", ".gif or .mp4"]),
    ("unknown extension", ["cannot write a video", ".gif or .mp4"]),
    ("run as gif", ["training run", ".png"]),
    ("gif at 30 fps", ["--fps 30", "10, 20, 25 or 50"]),
    ("run without scalars", ["holds no scalars"]),
    ("incomplete flight", ["not a complete flight log", "manifest.yaml"]),
])
def test_bad_input_is_one_line_naming_the_problem_and_the_fix(case, words, tmp_path, capsys, tiny_checkpoint,
                                                              logged_flight):
    (tmp_path / "plain").mkdir()
    (tmp_path / "run" / "tb").mkdir(parents=True)
    incomplete = logged_flight(name="incomplete")
    (incomplete / "manifest.yaml").unlink()
    source, out, extra = {
        "plain folder": (tmp_path / "plain", "x.gif", []),
        "missing": (tmp_path / "nowhere", "x.gif", []),
        "video as png": (tiny_checkpoint, "x.png", []),
        "unknown extension": (tiny_checkpoint, "x.avi", []),
        "run as gif": (tmp_path / "run", "x.gif", []),
        "gif at 30 fps": (tiny_checkpoint, "x.gif", ["--fps", "30"]),
        "run without scalars": (tmp_path / "run", "x.png", []),
        "incomplete flight": (incomplete, "x.gif", []),
    }[case]
    assert main(["render", str(source), "--out", str(tmp_path / out), *extra]) == 2
    text = " ".join(capsys.readouterr().out.split())
    assert "render error" in text and all(w in text for w in words), text
    assert not (tmp_path / out).exists()
