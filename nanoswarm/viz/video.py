"""Videos of a swarm flight: a 3D view of the drones, their goals, the columns and fading trails, at real time.

Drawn with matplotlib's 3D axes on an off-screen Agg canvas, not pybullet's TinyRenderer: TinyRenderer
draws meshes only (no lines, markers or text reach its off-screen image), so trails, goal crosses, labels
and a clock would need geometry of their own, while matplotlib draws all of them, needs no OpenGL and is
already a dependency. The artists are made once and moved every frame (`Scene.show`), which keeps a frame
at a few tens of milliseconds on one core.

Real time: a video of a record lasting D seconds has round(D * fps) frames played at fps, so it lasts as
long as the flight; each frame shows the last sample at or before its time (records are 100 Hz from the
simulator, the telemetry rate from a flight). GIFs store frame delays in hundredths of a second, so a GIF
keeps real time only at an fps that divides 100 (10, 20, 25, 50): others are refused rather than played
slow. MP4s are encoded with the ffmpeg binary that the imageio-ffmpeg wheel bundles.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from mpl_toolkits.mplot3d.art3d import Line3DCollection
from PIL import Image

from nanoswarm.sim.dynamics import MOTOR_X_SIGN, MOTOR_Y_SIGN
from nanoswarm.viz.errors import RenderError
from nanoswarm.viz.figures import setup_3d
from nanoswarm.viz.record import SwarmRecord, drone_colors

VIDEO_FORMATS = (".gif", ".mp4")
VIDEO_SIZE = (640, 480)  # pixels; even, as H.264's 4:2:0 colour needs; a 10 s GIF stays well under 2 MB
TRAIL_S = 1.5            # s of path behind each drone, fading out
TRAIL_POINTS = 30        # at most this many points per trail: enough for a smooth curve, cheap to draw
GIF_PALETTE_FRAMES = 4   # frames whose colours make the GIF's one shared palette


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    frames: int
    fps: int
    seconds: float       # how long it plays: frames / fps, the flight's duration up to the cap
    width: int
    height: int


def quat_to_matrix(quat: np.ndarray) -> np.ndarray:
    """Body-to-world rotation matrices (..., 3, 3) of (w, x, y, z) quaternions (sim.dynamics' convention)."""
    w, x, y, z = np.moveaxis(quat / np.linalg.norm(quat, axis=-1, keepdims=True), -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], -2)


class Scene:
    """The artists of one video, made once; `show(time)` moves them to the record's state at that time."""

    def __init__(self, record: SwarmRecord, width: int, height: int, dpi: int = 100):
        self.record = record
        self.fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
        self.canvas = FigureCanvasAgg(self.fig)
        ax = self.fig.add_axes((0.0, 0.0, 1.0, 0.93), projection="3d")
        setup_3d(ax, record)
        ax.view_init(elev=25, azim=-60)
        ax.tick_params(labelsize=7)
        m = record.drones
        self.colors = np.array(drone_colors(m))
        # X frame: two arms from rotor to opposite rotor (M1-M3, M2-M4), as long as the drone is wide.
        reach = record.collision_radius / np.sqrt(2.0)
        self.rotors = reach * np.stack([MOTOR_X_SIGN, MOTOR_Y_SIGN, np.zeros(4)], -1)   # (4, 3) body frame
        self.arms = Line3DCollection([], colors=np.repeat(self.colors, 2, axis=0), linewidths=2.5)
        self.trails = Line3DCollection([], linewidths=1.5)
        ax.add_collection3d(self.arms, autolim=False)
        ax.add_collection3d(self.trails, autolim=False)
        self.shadows, = ax.plot([], [], [], "o", color="0.55", ms=3, alpha=0.6)
        self.bodies = [ax.plot([], [], [], "o", color=c, ms=4)[0] for c in self.colors]
        self.goals = [ax.plot([], [], [], "x", color=c, ms=7, mew=1.5, alpha=0.7)[0] for c in self.colors]
        self.clock = self.fig.text(0.02, 0.95, "", fontsize=10, family="monospace")
        self.fig.text(0.98, 0.95, record.title, fontsize=9, ha="right")

    def show(self, time: float) -> None:
        rec = self.record
        k = rec.sample_at(time)
        pos = rec.pos[k]                                                   # (M, 3)
        rot = quat_to_matrix(rec.quat[k]) if rec.quat is not None else np.broadcast_to(np.eye(3), (rec.drones, 3, 3))
        tips = pos[:, None, :] + np.einsum("mij,rj->mri", rot, self.rotors)   # (M, 4, 3) rotor positions
        self.arms.set_segments(np.stack([tips[:, [0, 2]], tips[:, [1, 3]]], 1).reshape(-1, 2, 3))
        self._trails(k)
        self.shadows.set_data_3d(pos[:, 0], pos[:, 1], np.zeros(rec.drones))
        for artists, points in ((self.bodies, pos), (self.goals, rec.goals[k])):
            for artist, p in zip(artists, points):
                artist.set_data_3d(p[0:1], p[1:2], p[2:3])
        self.clock.set_text(f"t = {time:6.2f} s")   # differs every frame: Pillow merges identical GIF frames

    def _trails(self, k: int) -> None:
        rec = self.record
        first = int(np.searchsorted(rec.t, rec.t[k] - TRAIL_S))
        idx = np.unique(np.linspace(first, k, TRAIL_POINTS).round().astype(int))
        if len(idx) < 2:
            self.trails.set_segments([])
            return
        path = rec.pos[idx].transpose(1, 0, 2)                             # (M, P, 3)
        segments = np.stack([path[:, :-1], path[:, 1:]], 2).reshape(-1, 2, 3)
        fade = np.linspace(0.05, 0.9, len(idx) - 1)
        colors = np.repeat(self.colors, len(idx) - 1, axis=0)
        colors[:, 3] = np.tile(fade, rec.drones)
        self.trails.set_segments(segments)
        self.trails.set_color(colors)

    def frame(self, time: float) -> np.ndarray:
        """The picture (H, W, 3) uint8 at `time`."""
        self.show(time)
        self.canvas.draw()
        return np.asarray(self.canvas.buffer_rgba())[..., :3].copy()


def frame_times(record: SwarmRecord, fps: int, seconds: float | None) -> np.ndarray:
    """Times (s since the start) of a real-time video's frames: round(duration * fps) of them."""
    duration = record.duration if seconds is None else min(record.duration, seconds)
    return np.arange(max(1, round(duration * fps))) / fps


def render_video(record: SwarmRecord, out: str | Path, fps: int = 20, seconds: float | None = None) -> VideoInfo:
    """Write the flight of `record` to `out` (.gif or .mp4) at real time, up to `seconds` of it."""
    out = Path(out)
    write = video_writer(out, fps)
    times = frame_times(record, fps, seconds)
    width, height = VIDEO_SIZE
    scene = Scene(record, width, height)
    out.parent.mkdir(parents=True, exist_ok=True)
    write((scene.frame(t) for t in times), out, fps)
    return VideoInfo(path=out, frames=len(times), fps=fps, seconds=len(times) / fps, width=width, height=height)


Writer = Callable[[Iterator[np.ndarray], Path, int], None]


def video_writer(out: Path, fps: int) -> Writer:
    """The writer for `out`'s format, refusing what would not play at real time or cannot be written here."""
    if out.suffix == ".gif":
        if fps <= 0 or 100 % fps:
            raise RenderError(f"--fps {fps}: GIF frame delays are whole hundredths of a second, so a GIF plays at "
                              "real time only at an fps that divides 100; use 10, 20, 25 or 50, or write an .mp4")
        return _write_gif
    if out.suffix == ".mp4":
        if importlib.util.find_spec("imageio_ffmpeg") is None:
            raise RenderError("writing an .mp4 needs ffmpeg from the imageio-ffmpeg package: "
                              "pip install imageio-ffmpeg (or write a .gif)")
        return _write_mp4
    raise RenderError(f"cannot write a video to '{out}': give a file ending in {' or '.join(VIDEO_FORMATS)}")


def _write_gif(frames: Iterator[np.ndarray], out: Path, fps: int) -> None:
    """A looping GIF. All frames share one palette taken from a few early frames, without dithering, so the
    parts of the picture that do not move stay byte-identical and Pillow stores only what changed."""
    frames = iter(frames)
    first = [next(frames)]
    for frame in frames:
        first.append(frame)
        if len(first) == GIF_PALETTE_FRAMES:
            break
    palette = Image.fromarray(np.concatenate(first, axis=0)).quantize(colors=255, method=Image.Quantize.MEDIANCUT)

    def indexed(frame: np.ndarray) -> Image.Image:
        return Image.fromarray(frame).quantize(palette=palette, dither=Image.Dither.NONE)

    images = [indexed(f) for f in first] + [indexed(f) for f in frames]
    images[0].save(out, save_all=True, append_images=images[1:], duration=1000 // fps, loop=0)


def _write_mp4(frames: Iterator[np.ndarray], out: Path, fps: int) -> None:
    import imageio_ffmpeg

    frames = iter(frames)
    first = next(frames)
    writer = imageio_ffmpeg.write_frames(str(out), (first.shape[1], first.shape[0]), fps=fps, codec="libx264",
                                         pix_fmt_out="yuv420p", macro_block_size=2, quality=7)
    writer.send(None)
    try:
        writer.send(first)
        for frame in frames:
            writer.send(frame)
    finally:
        writer.close()
