"""Freed-memory reuse on the CPU: page faults avoided, settings restored, opt-outs."""

import resource
import sys

import numpy as np
import pytest
import torch

from slicelearn import SliceCNNRegressor
from slicelearn.allocator import _glibc, retain_freed_memory

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or _glibc() is None,
    reason="the reuse applies to glibc's malloc on Linux only",
)


def _page_faults_of_fresh_blocks(repeats: int = 5) -> int:
    """Minor page faults while allocating, touching and freeing 64 MiB tensors."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(repeats):
        block = torch.empty(16 * 2**20, dtype=torch.float32)
        block.fill_(1.0)
        del block
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_freed_blocks_are_reused_inside_and_returned_after():
    unmapped = _page_faults_of_fresh_blocks()
    # 5 fresh 64 MiB blocks fault in every page: 16384 each, or 32 if 2 MiB huge pages.
    assert unmapped > 5 * 16
    with retain_freed_memory() as applied:
        assert applied
        # The first blocks map their pages once (and small Python objects may
        # land on the heap between them); later ones reuse those pages.
        _page_faults_of_fresh_blocks(6)
        reused = _page_faults_of_fresh_blocks()
    assert reused < unmapped / 2
    # Afterwards glibc's thresholds are back: big blocks are mapped afresh again.
    assert _page_faults_of_fresh_blocks() > unmapped / 4


def test_blocks_nest_and_user_settings_win(monkeypatch):
    unmapped = _page_faults_of_fresh_blocks()
    with retain_freed_memory() as outer:
        with retain_freed_memory() as inner:
            assert outer and inner
        # The inner block's end must not undo the outer block's setting.
        _page_faults_of_fresh_blocks(6)
        assert _page_faults_of_fresh_blocks() < unmapped / 2
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    with retain_freed_memory() as applied:
        assert not applied


def test_cpu_fit_and_predict_restore_the_allocator():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 12, 32, 32)).astype(np.float32)
    y = np.linspace(20, 70, 6).astype(np.float32)
    est = SliceCNNRegressor(
        encoder="cnn2d",
        weights=None,
        max_epochs=1,
        batch_size=3,
        train_split=None,
        verbose=0,
        device="cpu",
    )
    first = est.fit(X, y).predict(X)
    assert np.isfinite(first).all()
    # fit and predict restored glibc's thresholds: big blocks are mapped afresh.
    assert _page_faults_of_fresh_blocks() > 5 * 16
