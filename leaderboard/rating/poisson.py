"""Poisson draws for the bootstrap: one table sampler per set of integer means, redrawn every round."""

from __future__ import annotations

import numpy as np
import scipy.special

# Guide buckets per entry of a Poisson table (rounded up to a power of two): more buckets, fewer draws
# that land on a step of the CDF and need a search, but a larger table to gather from.
_GUIDE_BUCKETS = 16
# Poisson means from this up are drawn by numpy's sampler rather than from a table.
_TABLE_MAX_MEAN = 1000


class _PoissonTable:
    """Draws Poisson(c) for a fixed vector of integer means c, many rounds at a time, by inversion.

    numpy's Generator.poisson runs a rejection sampler per draw; the bootstrap redraws the same means
    every round, so a CDF table per distinct mean with a guide table into it (indexed search, Devroye
    1986, III.2.4) makes most draws one lookup. Each draw inverts one
    32-bit uniform (half of a raw 64-bit output of the generator, the cheapest random numbers numpy
    has) against the CDF rounded down to multiples of 2**-32: every value's probability is exact to
    within 2**-32, and each table covers c ± (8 sqrt(c) + 12), cutting tails of probability below
    2e-15. A table has a power of two of guide buckets, so a uniform's bucket is a bit shift; a
    bucket that holds no step of the CDF gives the value outright, and only the few draws (about 2%)
    that land in one that does are finished by a short search. Means of _TABLE_MAX_MEAN and more,
    rare, are drawn by numpy's own sampler.
    """

    def __init__(self, means: np.ndarray) -> None:
        means = np.asarray(means, dtype=np.int64)
        # Means this large are few on any board but would each need a table of thousands of entries:
        # they are drawn by numpy instead (exact too), their table slot standing at 0.
        self._large = np.flatnonzero(means >= _TABLE_MAX_MEAN)
        self._large_means = means[self._large]
        values, which = np.unique(np.where(means >= _TABLE_MAX_MEAN, 0, means), return_inverse=True)
        reach = np.ceil(8 * np.sqrt(values) + 12).astype(np.int64)
        first = np.maximum(values - reach, 0)
        sizes = values + reach - first + 1
        starts = np.cumsum(sizes) - sizes
        owner = np.repeat(np.arange(values.size), sizes)
        value = np.arange(int(sizes.sum())) - np.repeat(starts - first, sizes)
        cdf = scipy.special.pdtr(value, values[owner])
        # thresholds[t]: how many 32-bit uniforms u give a value <= the one at t; the last takes the rest.
        self._thresholds = np.minimum(np.floor(cdf * 2.0**32), 2.0**32).astype(np.int64)
        self._thresholds[starts + sizes - 1] = 1 << 32
        # At most 4096 buckets a table (16 KB): tables near _TABLE_MAX_MEAN search a little more often.
        bits = np.clip(np.ceil(np.log2(_GUIDE_BUCKETS * sizes)), 1, 12).astype(np.int64)
        self._one_table = values.size == 1
        if self._one_table:
            # One table (the style bootstrap's Poisson(1) per battle): 2**16 buckets, so that a bucket
            # is a raw 16-bit number, half the random bits, no shift, and far fewer draws to search.
            bits[:] = 16
        buckets = np.left_shift(1, bits)
        bucket_starts = np.cumsum(buckets) - buckets
        # Bucket b of a table holds the uniforms from b << s to (b + 1) << s - 1 (s = 32 - bits), and a
        # draw stops past every threshold <= u: so, counted within the table, it stops at position
        # low[b] = #{t: ceil(t / 2**s) <= b} for the least u and high[b] = #{t: t >> s <= b} for the
        # greatest. Both are cumulative counts, in one bincount over slots 0..buckets of each table.
        shift = np.repeat(32 - bits, sizes)
        slot = np.repeat(bucket_starts + np.arange(values.size), sizes)
        span = int(buckets.sum()) + values.size
        ceiling = slot + ((self._thresholds + (1 << shift) - 1) >> shift)
        floor = slot + (self._thresholds >> shift)
        inside = np.ones(span, dtype=bool)
        inside[bucket_starts + np.arange(values.size) + buckets] = False  # the extra slot per table
        positions = []
        for counted in (ceiling, floor):
            total = np.cumsum(np.bincount(counted, minlength=span))
            before = np.concatenate([[0], total])[bucket_starts + np.arange(values.size)]
            positions.append((total - np.repeat(before, buckets + 1))[inside] + np.repeat(starts, buckets))
        low, high = positions
        offset = np.repeat(starts - first, buckets)  # table position minus the value it stands for
        if sizes.sum() >= 1 << 24:
            # Not before some 80M battles on one board, spread over thousands of distinct cell sizes.
            raise ValueError("too many distinct Poisson means for one table")
        # float32 so that draws feed float32 arithmetic without a conversion; -1 - position marks a
        # bucket holding a step of the CDF (positions stay below 2**24, exact in float32).
        self._answer = np.where(low == high, low - offset, -1 - low).astype(np.float32)
        # Index-sized, so that buckets are computed as the indices np.take wants (it would convert
        # 32-bit ones first, an extra pass over every draw).
        self._shift = (32 - bits)[which].astype(np.intp)
        self._bucket_start = bucket_starts[which].astype(np.intp)
        self._offset = (starts - first)[which]

    def draw(self, rng: np.random.Generator, rounds: int) -> np.ndarray:
        """(rounds, len(means)) float32 draws (whole numbers).

        Rounds-major because every step broadcasts a per-mean vector: along the last axis numpy runs
        one long inner loop, along the first it would run one short loop per mean.
        """
        cells = self._shift.size
        if self._one_table:
            bucket = rng.bit_generator.random_raw((rounds * cells + 3) // 4).view(np.uint16)
            bucket = bucket[: rounds * cells].reshape(rounds, cells)
        else:
            raw = rng.bit_generator.random_raw((rounds * cells + 1) // 2)
            u = raw.view(np.uint32)[: rounds * cells].reshape(rounds, cells)
            bucket = np.right_shift(u, self._shift, dtype=np.intp)
            bucket += self._bucket_start
        draws = np.take(self._answer, bucket)
        flat = draws.reshape(-1)
        todo = np.flatnonzero(flat < 0)
        if todo.size:
            # Step through the CDF from the bucket's first position to the one u stops at.
            position = (-1.0 - flat[todo]).astype(np.int64)
            if self._one_table:
                # Where u lies within its bucket is uniform and independent of the bucket: fresh bits.
                low = rng.bit_generator.random_raw((todo.size + 3) // 4).view(np.uint16)[: todo.size]
                target = (bucket.reshape(-1)[todo].astype(np.int64) << 16) + low
            else:
                target = u.reshape(-1)[todo].astype(np.int64)
            going = np.arange(todo.size)
            while going.size:
                going = going[self._thresholds[position[going]] <= target[going]]
                position[going] += 1
            flat[todo] = position - self._offset[todo % cells]
        if self._large.size:
            draws[:, self._large] = rng.poisson(self._large_means, (rounds, self._large.size))
        return draws
