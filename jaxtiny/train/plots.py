"""PNG helpers: image grids and line plots (matplotlib, Agg backend)."""

from __future__ import annotations

import io
from typing import Mapping, Optional, Sequence

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from jaxtiny import fileio


def save_figure(fig, path: str) -> None:
  """Writes a matplotlib figure as PNG atomically and closes it."""
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
  plt.close(fig)
  fileio.atomic_write_bytes(path, buf.getvalue())


def tile_images(images: np.ndarray, ncols: Optional[int] = None,
                pad: int = 1) -> np.ndarray:
  """Tiles images [N, H, W(, C)] into one array [rows*(H+pad)-pad, ...].

  Float images are expected in [0, 1]; uint8 in [0, 255]. Returns float32 in
  [0, 1] with 1 (white) padding.
  """
  images = np.asarray(images)
  if images.dtype == np.uint8:
    images = images.astype(np.float32) / 255.0
  if images.ndim == 3:
    images = images[..., None]
  n, h, w, c = images.shape
  ncols = ncols or int(np.ceil(np.sqrt(n)))
  nrows = int(np.ceil(n / ncols))
  grid = np.ones((nrows * (h + pad) - pad, ncols * (w + pad) - pad, c), np.float32)
  for i in range(n):
    r, q = divmod(i, ncols)
    grid[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = \
        np.clip(images[i], 0.0, 1.0)
  return grid[..., 0] if c == 1 else grid


def save_image_grid(path: str, images: np.ndarray, ncols: Optional[int] = None,
                    title: Optional[str] = None,
                    row_labels: Optional[Sequence[str]] = None) -> None:
  """Saves images [N, H, W(, C)] as a PNG grid."""
  grid = tile_images(images, ncols)
  fig, ax = plt.subplots(figsize=(max(2, grid.shape[1] / 28), max(2, grid.shape[0] / 28)))
  ax.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0, vmax=1,
            interpolation="nearest")
  ax.set_xticks([])
  if row_labels:
    h = grid.shape[0] / len(row_labels)
    ax.set_yticks([h * (i + 0.5) for i in range(len(row_labels))])
    ax.set_yticklabels(row_labels)
  else:
    ax.set_yticks([])
  if title:
    ax.set_title(title)
  save_figure(fig, path)


def save_line_plot(path: str, series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                   xlabel: str = "step", ylabel: str = "", title: Optional[str] = None,
                   logy: bool = False, logx: bool = False) -> None:
  """Saves named (x, y) series as a PNG line plot."""
  fig, ax = plt.subplots(figsize=(6, 4))
  for name, (x, y) in series.items():
    ax.plot(np.asarray(x), np.asarray(y), label=name, marker="." if len(x) < 30 else None)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  if logy:
    ax.set_yscale("log")
  if logx:
    ax.set_xscale("log")
  if title:
    ax.set_title(title)
  if len(series) > 1:
    ax.legend()
  ax.grid(alpha=0.3)
  save_figure(fig, path)


def save_xy_panels(path: str, panels: Mapping[str, Mapping[str, tuple[Sequence[float],
                                                                    Sequence[float]]]],
                   xlabel: str, logx: bool = False, title: Optional[str] = None,
                   logy: Sequence[str] = ()) -> None:
  """Side-by-side panels sharing the x axis: {ylabel: {series: (x, y)}}, each
  series drawn as points joined in x order (markers for short series); the
  panels named in `logy` get a log y axis."""
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
  for ax, (ylabel, series) in zip(axes[0], panels.items()):
    for name, (x, y) in series.items():
      order = np.argsort(np.asarray(x, np.float64))
      ax.plot(np.asarray(x)[order], np.asarray(y)[order],
              marker="o" if len(order) < 30 else None, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
      ax.set_xscale("log")
    if ylabel in logy:
      ax.set_yscale("log")
    if len(series) > 1:
      ax.legend()
    ax.grid(alpha=0.3)
  if title:
    fig.suptitle(title)
  save_figure(fig, path)


def save_grouped_bars(path: str, categories: Sequence[str],
                      series: Mapping[str, tuple[Sequence[float], Optional[Sequence[float]]]],
                      xlabel: str = "", ylabel: str = "", title: Optional[str] = None,
                      ylim: Optional[tuple[float, float]] = None) -> None:
  """Bar chart, one group of bars per category and one bar per series:
  {name: (heights, error bars or None)}, NaN heights left empty."""
  fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(categories) * max(1, len(series))), 4))
  width = 0.8 / max(1, len(series))
  x = np.arange(len(categories))
  for i, (name, (heights, errors)) in enumerate(series.items()):
    ax.bar(x - 0.4 + width * (i + 0.5), np.asarray(heights, np.float64), width,
           yerr=None if errors is None else np.asarray(errors, np.float64),
           capsize=2, label=name)
  ax.set_xticks(x)
  ax.set_xticklabels(categories)
  ax.set_ylabel(ylabel)
  if ylim:
    ax.set_ylim(*ylim)
  if title:
    ax.set_title(title)
  if xlabel:
    ax.set_xlabel(xlabel)
  if len(series) > 1:  # Below the axes, clear of the bars.
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.15),
              ncol=min(2, len(series)))
  ax.grid(axis="y", alpha=0.3)
  save_figure(fig, path)
