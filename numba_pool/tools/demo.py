"""``numba-pool demo``: pool one image every way and draw the results side by side.

The point of the picture (Zeiler & Fergus's): max pooling keeps texture and
edges, average pooling keeps the smooth background and blurs the texture,
stochastic pooling sits between (sampling in training, a weighted average at
inference). Without ``--image`` the scene is generated here: textured patches
and sharp shapes on a smooth background, so nothing is downloaded.
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import functional as nb
from ._usage import MissingExtra, UsageError

DEMO_EXTRA = 'pip install "numba-pool[demo]"'


class UnreadableImage(UsageError):
    """The --image file exists but is not an image Pillow can read (or would not be safe to decode)."""


def output_path(out: Path) -> Path:
    """The file the figure goes to: ``out``, with ``.png`` added when it has no extension (as savefig does).

    Raises UsageError for an extension matplotlib cannot write, before any work is done.
    """
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; give a file name")
    if not out.suffix:
        return out.with_name(out.name + ".png")
    formats = _matplotlib_formats()
    if out.suffix[1:].lower() not in formats:
        raise UsageError(f"--out {out}: cannot write a {out.suffix} file; use one of {', '.join('.' + f for f in formats)}")
    return out


def _matplotlib_formats() -> list[str]:
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise MissingExtra(f"drawing the figure needs matplotlib: {DEMO_EXTRA}") from None
    return sorted(FigureCanvasBase.get_supported_filetypes())


def check_window(kernel: int, image: np.ndarray) -> None:
    """Every pooling in the demo needs a window that fits in the image (there is no padding)."""
    height, width = image.shape[1:]
    if kernel > min(height, width):
        raise UsageError(
            f"--kernel {kernel} is larger than the image ({height}x{width}); choose at most {min(height, width)}"
        )


def default_scene(size: int = 192) -> np.ndarray:
    """An RGB scene, (3, size, size) float32 in [0, 1]: textures and edges on a smooth background."""
    y, x = np.mgrid[0:size, 0:size] / size
    scene = np.stack([0.55 + 0.25 * x, 0.45 + 0.2 * np.sin(3 * y), 0.7 - 0.3 * y])  # a smooth background
    quarter = size // 4
    checks = ((np.arange(size)[:, None] // 3 + np.arange(size)[None, :] // 3) % 2).astype(float)
    stripes = (np.sin(np.arange(size) * 2.2)[None, :] > 0).astype(float) * np.ones((size, 1))
    noise = np.random.default_rng(0).random((size, size))
    patches = [(checks, (quarter // 2, quarter // 2)), (stripes, (quarter // 2, 2 * quarter + quarter // 2)),
               (noise, (2 * quarter + quarter // 2, quarter // 2))]
    for texture, (top, left) in patches:
        box = (slice(top, top + quarter), slice(left, left + quarter))
        scene[(slice(None),) + box] = 0.15 + 0.7 * texture[box]
    disc = (y - 0.7) ** 2 + (x - 0.72) ** 2 < 0.12**2
    scene[:, disc] = np.array([0.95, 0.85, 0.2])[:, None]
    return scene.astype(np.float32)


def load_image(path: Path, max_megapixels: float = math.inf, report=print) -> np.ndarray:
    """An image file as (3, H, W) float32 in [0, 1], read with Pillow, downscaled to at most ``max_megapixels``.

    Pillow refuses images over twice its ``Image.MAX_IMAGE_PIXELS`` (decompression bombs): a usage error here.
    """
    try:
        from PIL import Image
    except ImportError:
        raise MissingExtra(f"reading --image needs Pillow: {DEMO_EXTRA}") from None
    try:
        with warnings.catch_warnings():
            # between Pillow's warning and error limits an image is decoded, then downscaled below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image = _downscaled(image, max_megapixels, path, report)
                rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    except Image.DecompressionBombError as error:
        raise UnreadableImage(f"refusing to decode {path}: {error}") from None
    except OSError as error:  # Pillow's UnidentifiedImageError is one
        raise UnreadableImage(f"cannot read {path} as an image ({error})") from None
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


def _downscaled(image, max_megapixels: float, path: Path, report):
    """``image``, or a copy shrunk (aspect kept) to at most ``max_megapixels``, saying so."""
    width, height = image.size
    if width * height <= max_megapixels * 1e6:
        return image
    scale = math.sqrt(max_megapixels * 1e6 / (width * height))
    image.thumbnail((max(1, int(width * scale)), max(1, int(height * scale))))  # JPEGs decode at a reduced size
    report(
        f"downscaled {path} from {height}x{width} to {image.size[1]}x{image.size[0]} "
        f"(the demo takes at most {max_megapixels:g} megapixels)"
    )
    return image


@dataclass
class Pooled:
    title: str
    image: np.ndarray  # (3, h, w)
    milliseconds: float  # median of the timed runs, after a first call (which may compile)
    first_call_seconds: float


def _timed(function, repeats: int = 5):
    started = time.perf_counter()
    result = function()
    first = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return result, statistics.median(times) * 1e3, first


def pool_every_way(image: np.ndarray, kernel: int, stride: int, seed: int = 0) -> list[Pooled]:
    """The image pooled by max, average, stochastic (training and inference) and global average pooling."""
    ways = [
        ("max pooling", lambda: nb.max_pool2d(image, kernel, stride)),
        ("average pooling", lambda: nb.avg_pool2d(image, kernel, stride)),
        ("stochastic, training (a sample)", lambda: nb.stochastic_pool2d(image, kernel, stride, seed=seed)),
        ("stochastic, inference (expected value)", lambda: nb.stochastic_pool2d(image, kernel, stride, training=False)),
        ("global average pooling", lambda: nb.global_avg_pool2d(image, keepdims=True)),
    ]
    results = []
    for title, function in ways:
        pooled, milliseconds, first = _timed(function)
        results.append(Pooled(title, pooled, milliseconds, first))
    return results


def draw(image: np.ndarray, results: list[Pooled], kernel: int, stride: int, out: Path) -> None:
    """One PNG: the whole images on top, a zoom on the textured corner below."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: works without a display
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtra(f"drawing the figure needs matplotlib: {DEMO_EXTRA}") from None
    panels = [("input", image)] + [(r.title, r.image) for r in results]
    figure, axes = plt.subplots(2, len(panels), figsize=(3.1 * len(panels), 6.6))
    for column, (title, picture) in enumerate(panels):
        rgb = np.clip(picture.transpose(1, 2, 0), 0, 1)
        if rgb.shape[:2] == (1, 1):
            rgb = np.broadcast_to(rgb, (8, 8, 3))  # the global average: one colour per image
        zoom = rgb[: max(1, rgb.shape[0] // 2), : max(1, rgb.shape[1] // 2)]
        for row, shown in enumerate((rgb, zoom)):
            axes[row, column].imshow(shown, interpolation="nearest")
            axes[row, column].set_xticks([])
            axes[row, column].set_yticks([])
        axes[0, column].set_title(f"{title}\n{picture.shape[1]}x{picture.shape[2]}", fontsize=9)
    axes[1, 0].set_ylabel("top-left quarter, enlarged", fontsize=9)
    figure.suptitle(f"numba_pool: kernel {kernel}, stride {stride}", fontsize=11)
    figure.tight_layout()
    figure.savefig(out, dpi=80)
    plt.close(figure)


def run(image_path: Path | None, out: Path, kernel: int, stride: int, report=print, max_megapixels: float = math.inf) -> None:
    image = default_scene() if image_path is None else load_image(image_path, max_megapixels, report)
    check_window(kernel, image)
    report(f"image: {'generated scene' if image_path is None else image_path} {image.shape[1]}x{image.shape[2]} RGB")
    results = pool_every_way(image, kernel, stride)
    report(f"{'pooling':40} {'time':>11}   first call (loads or compiles the kernel)")
    for result in results:
        report(f"{result.title:40} {result.milliseconds:8.3f} ms   {result.first_call_seconds:.2f} s")
    draw(image, results, kernel, stride, out)
    report(f"wrote {out}")
