"""The bootstrap's Poisson sampler."""

from __future__ import annotations

import numpy as np

from leaderboard.rating.poisson import _PoissonTable


def test_the_poisson_sampler_draws_the_poisson_distribution() -> None:
    from scipy import stats

    means = np.array([0, 1, 4, 40, 2500])
    many = _PoissonTable(means).draw(np.random.default_rng(0), 200_000).astype(np.int64)
    # One mean alone takes another path (16-bit buckets), the style bootstrap's Poisson(1) weights.
    one = _PoissonTable(np.ones(1, dtype=np.int64)).draw(np.random.default_rng(1), 2_000_000)

    assert (many[:, 0] == 0).all()
    for draws, mean in [
        *((many[:, c], m) for c, m in enumerate(means[1:], 1)),
        (one[:, 0].astype(np.int64), 1),
    ]:
        observed = np.bincount(draws - draws.min())
        values = np.arange(observed.size) + draws.min()
        expected = stats.poisson.pmf(values, mean) * draws.size
        keep = expected > 5
        chi2 = float(np.sum((observed[keep] - expected[keep]) ** 2 / expected[keep]))
        assert stats.chi2.sf(chi2, keep.sum() - 1) > 1e-4, mean
