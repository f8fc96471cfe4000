"""The official sliding-window rule of batch-overlapped temporal denoising."""

from __future__ import annotations


def window_stride(window_size: int, overlap: int) -> int:
    """s = ws - os, the distance between window starts. Requires ws > os >= 0."""
    if window_size < 1 or overlap < 0 or window_size <= overlap:
        raise ValueError(
            f"window_size ({window_size}) must be > overlap ({overlap}) >= 0 and window_size >= 1"
        )
    return window_size - overlap


def official_windows(length: int, window_size: int, overlap: int) -> list[tuple[int, int]]:
    """Windows ``[j, min(j + ws, L))`` for ``j = 0, s, 2s, ...`` while ``j < L``.

    The last window is simply shorter; e.g. L=119, ws=16, os=4 gives 10 windows, the
    last (108, 119); L=100 gives a last window (96, 100) lying inside (84, 100).
    Returns half-open (start, end) pairs; empty for L = 0.
    """
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    stride = window_stride(window_size, overlap)
    return [(start, min(start + window_size, length)) for start in range(0, length, stride)]
