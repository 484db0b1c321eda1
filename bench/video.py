"""Videos of a policy in the real simulator: frames from ``envs.render``, encoded while they are made.

:func:`record_video` runs episodes of a policy on a one-env batch, draws a frame every ``60 / fps`` control
steps (the control step is 1/60 s, so videos play in real time), overlays the episode, step, simulated
time and return, streams each frame to ffmpeg (``imageio-ffmpeg``, whose wheel ships the binary; MP4 or
GIF by the file's suffix) and writes the per-step rewards beside the video (``FILE.csv``). Files are
written under a temporary name and renamed when complete, so an interrupted recording leaves nothing.

:func:`evaluation_video` is what a training run calls at an evaluation point (``RUN_DIR/videos/``).
"""

from __future__ import annotations

from bench import headless

headless.select_gl_backend()  # before the first import of mujoco (envs imports it)

import csv  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from matplotlib.ft2font import FT2Font, LoadFlags  # noqa: E402

import envs  # noqa: E402
from algos.atomic import atomic_write_bytes  # noqa: E402
from bench.presets import env_overrides  # noqa: E402
from envs.render import CAMERAS, EnvRenderer  # noqa: E402

Policy = Callable[[torch.Tensor], torch.Tensor]
CONTROL_HZ = 60
"""Control steps per simulated second (every task's control step is 1/60 s)."""
FPS_CHOICES = (10, 12, 15, 20, 30, 60)
"""Frame rates that draw every k-th control step for a whole k."""
FORMATS = {".mp4": {"codec": "libx264", "quality": 7}, ".gif": {"codec": "gif", "pix_fmt_out": "pal8"}}
# One palette per GIF from all its frames (ffmpeg keeps them, not this process), ordered dithering.
GIF_FILTER = "split[a][b];[a]palettegen=stats_mode=diff[p];[b][p]paletteuse=dither=bayer:bayer_scale=4"
STEP_COLUMNS = ("episode", "step", "time_s", "reward", "return", "frame")


class VideoError(RuntimeError):
    """Recording cannot start (missing encoder package, no OpenGL); the message is one line."""


@dataclass
class EpisodeSummary:
    episode: int
    steps: int
    """Control steps taken (the episode ended, or the step limit was reached)."""
    ret: float
    """Undiscounted return over those steps."""
    terminated: bool
    frames: int


class Overlay:
    """White text on a dark band in the top-left corner of a frame (matplotlib's bundled monospace font)."""

    def __init__(self, height: int) -> None:
        self.font = FT2Font(font_manager.findfont("DejaVu Sans Mono"))
        self.font.set_size(max(9.0, height / 40), 72)

    def draw(self, frame: np.ndarray, lines: list[str]) -> np.ndarray:
        y = 4
        for line in lines:
            self.font.set_text(line, 0.0, flags=LoadFlags.FORCE_AUTOHINT)
            self.font.draw_glyphs_to_bitmap(antialiased=True)
            alpha = np.asarray(self.font.get_image(), dtype=np.float32)[..., None] / 255.0
            h, w = min(alpha.shape[0], frame.shape[0] - y), min(alpha.shape[1], frame.shape[1] - 6)
            region = frame[y : y + h + 2, 2 : w + 10]
            region[:] = (region * 0.45).astype(np.uint8)  # darken the band behind the text
            glyphs = frame[y + 1 : y + 1 + h, 6 : 6 + w]
            glyphs[:] = (glyphs * (1.0 - alpha[:h, :w]) + 255.0 * alpha[:h, :w]).astype(np.uint8)
            y += h + 4
        return frame


def _ffmpeg():
    try:
        import imageio_ffmpeg
    except ImportError as error:
        raise VideoError(
            "writing videos needs imageio-ffmpeg: pip install 'warpbench[video]' (or imageio imageio-ffmpeg)"
        ) from error
    return imageio_ffmpeg


def check_video_path(path: str | Path) -> Path:
    """``path`` if its suffix is a supported format, else ValueError naming the valid suffixes."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"unsupported video file {path.name!r}; valid suffixes: {', '.join(FORMATS)}")
    return path


class VideoWriter:
    """Streams RGB frames into ``path`` through ffmpeg; the file appears only when :meth:`close` succeeds."""

    def __init__(self, path: str | Path, width: int, height: int, fps: int) -> None:
        self.path = check_video_path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix.lower()}")
        options = dict(FORMATS[self.path.suffix.lower()])
        if self.path.suffix.lower() == ".gif":
            options["output_params"] = ["-filter_complex", GIF_FILTER, "-loop", "0"]
        self._stream = _ffmpeg().write_frames(
            str(self.partial),
            (width, height),
            fps=fps,
            macro_block_size=1,
            ffmpeg_log_level="error",
            **options,
        )
        self._stream.send(None)
        self.frames = 0

    def append(self, frame: np.ndarray) -> None:
        self._stream.send(np.ascontiguousarray(frame))
        self.frames += 1

    def close(self) -> None:
        self._stream.close()
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        try:
            self._stream.close()
        finally:
            self.partial.unlink(missing_ok=True)


def record_video(
    env: Any,
    policy: Policy,
    path: str | Path,
    *,
    episodes: int = 1,
    steps: int | None = None,
    width: int = 640,
    height: int = 480,
    camera: str = "track",
    fps: int | None = None,
    title: str = "",
) -> list[EpisodeSummary]:
    """Record ``episodes`` episodes of ``policy`` on env 0 of ``env`` into ``path`` (.mp4 or .gif).

    Each episode starts from ``env.reset()`` and runs until it terminates, is truncated, or has taken
    ``steps`` control steps (default: the env's episode length). Frames: the start state, every ``60 / fps``
    steps (``fps`` default: 30 for MP4, 20 for GIF) and the last step. The state after an episode's final
    step is not drawn: the env resets inside that step. Per-step rewards go to ``path`` with suffix ``.csv``.
    """
    path = check_video_path(path)
    fps = fps or (20 if path.suffix.lower() == ".gif" else 30)
    if fps not in FPS_CHOICES:
        raise ValueError(f"fps must be one of {', '.join(map(str, FPS_CHOICES))}, got {fps}")
    if episodes < 1 or (steps is not None and steps < 1):
        raise ValueError("episodes and steps must be >= 1")
    if width % 2 or height % 2:
        raise ValueError(f"width and height must be even (the MP4 encoder needs it), got {width}x{height}")
    if camera not in CAMERAS:
        raise ValueError(f"unknown camera {camera!r}; valid: {', '.join(CAMERAS)}")
    steps = steps or env.max_episode_steps
    stride = CONTROL_HZ // fps
    try:
        renderer = EnvRenderer(env, width, height, camera)
    except Exception as error:  # a missing GL library surfaces as several exception types
        raise VideoError(headless.gl_error_message(error)) from error
    try:
        writer = VideoWriter(path, width, height, fps)
    except BaseException:
        renderer.close()
        raise
    overlay = Overlay(height)
    rows: list[dict[str, Any]] = []
    summaries = []

    def draw(episode: int, step: int, ret: float, actions: torch.Tensor | None) -> None:
        text = [title, f"episode {episode + 1}/{episodes}  step {step}  t {step / CONTROL_HZ:5.2f} s"]
        text.append(f"return {ret:9.1f}")
        writer.append(overlay.draw(renderer.frame(env, 0, actions), [line for line in text if line]))

    try:
        with torch.no_grad():
            for episode in range(episodes):
                obs, ret, terminated, step = env.reset(), 0.0, False, 0
                first_frame = writer.frames
                draw(episode, step, ret, None)
                while step < steps:
                    actions = policy(obs)
                    obs, reward, term, trunc, _ = env.step(actions)
                    step += 1
                    ret += float(reward[0])
                    done = bool(term[0] or trunc[0])
                    drawn = not done and (step % stride == 0 or step == steps)
                    if drawn:
                        draw(episode, step, ret, actions)
                    rows.append(
                        {
                            "episode": episode,
                            "step": step,
                            "time_s": step / CONTROL_HZ,
                            "reward": float(reward[0]),
                            "return": ret,
                            "frame": writer.frames - 1 if drawn else "",
                        }
                    )
                    if done:
                        terminated = bool(term[0])
                        break
                summaries.append(EpisodeSummary(episode, step, ret, terminated, writer.frames - first_frame))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        renderer.close()
    table = io.StringIO()
    csv_writer = csv.DictWriter(table, fieldnames=STEP_COLUMNS, lineterminator="\n")
    csv_writer.writeheader()
    csv_writer.writerows(rows)
    atomic_write_bytes(path.with_suffix(".csv"), table.getvalue().encode())
    return summaries


def evaluation_video(
    run_dir: str | Path,
    config: dict[str, Any],
    policy: Policy,
    env_steps: int,
    *,
    seed: int,
    device: str = "cpu",
    steps: int | None = None,
    width: int = 320,
    height: int = 240,
) -> Path:
    """One episode of ``policy`` into ``RUN_DIR/videos/env_steps_<n>.mp4``; returns the path.

    For ``bench.run --video`` at each evaluation point: ``config`` is the run's ``config.json`` content (its
    env and env settings), ``policy`` the deterministic evaluation policy, ``seed`` the env's seed, ``steps``
    a cap on the episode (default: a whole episode). The recording's env is its own, so training and
    evaluation random streams are untouched.
    """
    env = envs.make(config["env"], num_envs=1, device=device, seed=seed, **env_overrides(config["settings"]))
    path = Path(run_dir) / "videos" / f"env_steps_{env_steps:012d}.mp4"
    title = f"{config['algo']} {config['env']} seed {config['seed']}  env-steps {env_steps:,}"
    record_video(env, policy, path, steps=steps, width=width, height=height, title=title)
    return path
