"""Brownian paths for adaptive SDE stepping: RSwM3 (Rejection Sampling with Memory), and replayable paths.

RSwM3 (Rackauckas & Nie 2017; ``solver-facts.md`` §5) keeps the Brownian path consistent when steps are
rejected: an attempted step's increment is never redrawn — on rejection it is split by a Brownian bridge,
the part beyond the shortened step is kept as *future information* (stack S1) and reused by later steps, so
the law of the path is unchanged by the step-size controller.  Two Wiener processes are carried: W (the
noise) and the independent Z needed by the SRI methods' I_(1,0) approximation; both are bridged alike.

Stacks are arrays of rows ``[a, b, ΔW_0 .. ΔW_{m-1}, ΔZ_0 .. ΔZ_{m-1}]`` (a time interval and the
increments of W and Z over it; absolute times, so that no round-off in summed lengths can leave slivers of
the path unused); S1 holds the not-yet-used future (its top row is the nearest), S2 the pieces that compose the
step being attempted (in time order, top = latest).  The kernels return the stack arrays because a push may
have to grow them; ``cnt = [len(S1), len(S2)]``; ``cur = [t, t_new, ΔW, ΔZ]`` is the attempted step's increment.

Random numbers come from an explicitly seeded xoshiro256** generator whose state (4 × uint64) is an array
handed to the kernels (:func:`rng_state` derives it from an integer seed, or from draws of a NumPy
Generator), with Box–Muller normals; handing the compiled loop a NumPy Generator instead costs ~0.1 ms of
argument typing per call.

Reproducibility.  Before the first step the path's values at the *anchor* times (the save times and the
end of the span) are drawn from the generator, in time order, and put on S1.  Every step increment is
then built from these by Brownian bridges (RSwM3's "future information"), so for a given seed W and Z at
the anchor times — in particular W(t1) — are the same whatever the tolerance or rejection pattern; the path
between anchors is sampled where the steps need it.  Bridges use the length of the interval the bridged
increment was drawn over (the old dt; DiffEqNoiseProcess PR #307).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit


@dataclass
class SDEPath:
    """A recorded (or user-given) noise path on a grid: step boundaries ``t`` (N+1,), increments of W and Z
    over each step ``dW``, ``dZ`` (N, m), with m = state size (diagonal noise) or 1 (scalar noise).

    Passing it back as ``solve_sde(..., path=...)`` replays exactly these steps and increments.
    """

    t: np.ndarray
    dW: np.ndarray
    dZ: np.ndarray

    @property
    def dt(self) -> np.ndarray:
        return np.diff(self.t)

    def W(self) -> np.ndarray:
        """W at every grid time (N+1, m), W(t0) = 0."""
        return np.vstack([np.zeros((1, self.dW.shape[1])), np.cumsum(self.dW, axis=0)])

    def Z(self) -> np.ndarray:
        return np.vstack([np.zeros((1, self.dZ.shape[1])), np.cumsum(self.dZ, axis=0)])

    def W_at(self, times) -> np.ndarray:
        """W at grid times (each must be a grid point to within 1e-12 relative)."""
        idx = grid_indices(self.t, np.atleast_1d(np.asarray(times, dtype=np.float64)), "times")
        return self.W()[idx]

    def Z_at(self, times) -> np.ndarray:
        """Z (the second Wiener process) at grid times."""
        idx = grid_indices(self.t, np.atleast_1d(np.asarray(times, dtype=np.float64)), "times")
        return self.Z()[idx]


def grid_indices(grid, times, name):
    """Indices of ``times`` in the sorted ``grid`` (each within 1e-12·max(1,|t|)); ValueError naming ``name``."""
    idx = np.searchsorted(grid, times)
    out = np.empty(times.size, dtype=np.int64)
    for k, (ts, i) in enumerate(zip(times, idx, strict=True)):
        best = None
        for j in (i - 1, i):
            if 0 <= j < grid.size and abs(grid[j] - ts) <= 1e-12 * max(1.0, abs(ts)):
                best = j
        if best is None:
            raise ValueError(f"{name}: time {ts!r} is not on the path's grid of step boundaries")
        out[k] = best
    return out


_MASK64 = (1 << 64) - 1


def _splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = x
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x, z ^ (z >> 31)


def rng_state(seed=None, rng=None):
    """The xoshiro256** state (uint64[4]) for an integer ``seed`` (expanded by splitmix64), or seeded from
    one draw of the NumPy Generator ``rng`` (which is consumed), or from fresh OS entropy if both are None."""
    if rng is not None:
        seed = int(rng.integers(0, 2**63, dtype=np.int64))
    elif seed is None:
        seed = int(np.random.SeedSequence().entropy) & _MASK64
    x = int(seed) & _MASK64
    out = np.empty(4, dtype=np.uint64)
    for k in range(4):
        x, out[k] = _splitmix64(x)
    return out


@njit(cache=True, inline="always")
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@njit(cache=True)
def next_uint64(s):
    """xoshiro256** (Blackman & Vigna): the next 64-bit output; advances the state ``s`` (uint64[4])."""
    result = _rotl(s[1] * np.uint64(5), 7) * np.uint64(9)
    t = s[1] << np.uint64(17)
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = _rotl(s[3], 45)
    return result


@njit(cache=True)
def next_uniform(s):
    """A double in (0, 1): the top 53 bits, offset by half an ulp (never 0, never 1)."""
    return (float(next_uint64(s) >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def next_normal(s):
    """A standard normal by Box–Muller (one of the pair; two uniforms per draw)."""
    u1 = next_uniform(s)
    u2 = next_uniform(s)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@njit(cache=True)
def normals(s, n):
    """n standard normals (for tests and callers outside the kernels)."""
    out = np.empty(n)
    for k in range(n):
        out[k] = next_normal(s)
    return out


@njit(cache=True)
def _push(S, cnt, k, row):
    """Push ``row`` on stack k (0: S1, 1: S2) stored in S; returns S (a grown copy when full)."""
    if cnt[k] == S.shape[0]:
        S2 = np.empty((max(2 * S.shape[0], 4), S.shape[1]))
        S2[: cnt[k]] = S[: cnt[k]]
        S = S2
    S[cnt[k]] = row
    cnt[k] += 1
    return S


@njit(cache=True)
def _split(row, t_cut, rng, first, rest):
    """Split the piece ``row`` = [a, b, increments...] at a < t_cut < b by the Brownian bridge over its own
    length L = b - a: with q = (t_cut - a)/L, the first part's increments are q·Δ + sqrt((1-q)·q·L)·ξ (one ξ
    per process), the rest the difference."""
    a = row[0]
    b = row[1]
    L = b - a
    q = (t_cut - a) / L
    sd = math.sqrt(max((1.0 - q) * q * L, 0.0))
    first[0] = a
    first[1] = t_cut
    rest[0] = t_cut
    rest[1] = b
    for k in range(2, row.size):
        first[k] = q * row[k] + sd * next_normal(rng)
        rest[k] = row[k] - first[k]


@njit(cache=True)
def rswm_init(stops, t0, m, rng):
    """Fresh RSwM3 state with the path drawn at the anchor times ``stops`` (sorted, > t0) on S1.

    Returns (S1, S2, cnt, cur)."""
    w = 2 + 2 * m
    n_a = stops.size
    S1 = np.empty((max(2 * n_a, 8), w))
    S2 = np.empty((8, w))
    cnt = np.zeros(2, np.int64)
    cur = np.zeros(w)
    rows = np.empty((n_a, w))
    prev = t0
    for a in range(n_a):  # drawn forward in time: the anchors are the seed's first draws
        rows[a, 0] = prev
        rows[a, 1] = stops[a]
        sd = math.sqrt(max(stops[a] - prev, 0.0))
        for k in range(2, w):
            rows[a, k] = sd * next_normal(rng)
        prev = stops[a]
    for a in range(n_a - 1, -1, -1):
        if rows[a, 1] > rows[a, 0]:
            S1 = _push(S1, cnt, 0, rows[a])
    return S1, S2, cnt, cur


@njit(cache=True)
def rswm_setup(S1, S2, cnt, t, t_new, rng, cur):
    """Build the increment of the attempted step [t, t_new] into ``cur`` (RSwM3 ``setup_next_step``).

    Stored future pieces are popped from S1 while they end by t_new; a piece reaching beyond t_new is split
    by a bridge (remainder back on S1); past the stored future a fresh N(0, t_new - pos) is drawn.  The
    pieces that compose the step go on S2.  Returns (S1, S2).
    """
    w = cur.size
    cnt[1] = 0
    for k in range(w):
        cur[k] = 0.0
    pos = t
    piece = np.empty(w)
    rest = np.empty(w)
    while cnt[0] > 0 and pos < t_new:
        top = S1[cnt[0] - 1]
        if top[1] <= t_new:
            for k in range(w):
                piece[k] = top[k]
            cnt[0] -= 1
        else:
            _split(top, t_new, rng, piece, rest)
            cnt[0] -= 1
            S1 = _push(S1, cnt, 0, rest)
        S2 = _push(S2, cnt, 1, piece)
        for k in range(2, w):
            cur[k] += piece[k]
        pos = piece[1]
    if pos < t_new:  # beyond all stored information: fresh draw
        sd = math.sqrt(t_new - pos)
        piece[0] = pos
        piece[1] = t_new
        for k in range(2, w):
            piece[k] = sd * next_normal(rng)
        S2 = _push(S2, cnt, 1, piece)
        for k in range(2, w):
            cur[k] += piece[k]
    cur[0] = t
    cur[1] = t_new
    return S1, S2


@njit(cache=True)
def rswm_reject(S1, S2, cnt, t_new, rng, cur):
    """Shorten the attempted step [cur[0], cur[1]] to end at t_new (RSwM3 ``reject_step!``).

    Walks back through the pieces of the step (S2): those wholly after t_new move to S1 (the future), the
    piece straddling t_new is split by a bridge over its own length.  ``cur`` becomes the sum of the
    remaining pieces.  Returns (S1, S2).
    """
    w = cur.size
    piece = np.empty(w)
    rest = np.empty(w)
    while cnt[1] > 0:
        top = S2[cnt[1] - 1]
        if top[0] >= t_new:
            for k in range(w):
                piece[k] = top[k]
            cnt[1] -= 1
            S1 = _push(S1, cnt, 0, piece)
        elif top[1] > t_new:
            _split(top, t_new, rng, piece, rest)
            cnt[1] -= 1
            S1 = _push(S1, cnt, 0, rest)
            S2 = _push(S2, cnt, 1, piece)
            break
        else:
            break
    for k in range(2, w):
        cur[k] = 0.0
    for r in range(cnt[1]):
        for k in range(2, w):
            cur[k] += S2[r, k]
    cur[1] = t_new
    return S1, S2


class RSwM3:
    """A Python handle on the RSwM3 kernels (the solver loop calls the kernels directly).

    ``rng``: an integer seed, a NumPy Generator (one draw seeds the kernels' generator) or a state array
    from :func:`rng_state`.

    ``propose(dt)`` → (ΔW, ΔZ) of the next attempted step; ``reject(dt_new)`` → the increments of the
    shortened step; ``accept()`` moves the current time and W, Z to the end of the step.
    """

    def __init__(self, m, rng, t0=0.0, anchors=()):
        self.m = int(m)
        if isinstance(rng, np.random.Generator):
            rng = rng_state(rng=rng)
        elif not (isinstance(rng, np.ndarray) and rng.dtype == np.uint64 and rng.shape == (4,)):
            rng = rng_state(seed=rng)
        self.rng = rng
        self.t = float(t0)
        self.W = np.zeros(self.m)
        self.Z = np.zeros(self.m)
        stops = np.ascontiguousarray(np.asarray(anchors, dtype=np.float64).reshape(-1))
        self._S1, self._S2, self._cnt, self._cur = rswm_init(stops, self.t, self.m, rng)

    def _increments(self):
        m = self.m
        return self._cur[2 : 2 + m].copy(), self._cur[2 + m :].copy()

    @property
    def dt(self):
        """Length of the attempted step."""
        return float(self._cur[1] - self._cur[0])

    def propose(self, dt):
        self._S1, self._S2 = rswm_setup(self._S1, self._S2, self._cnt, self.t, self.t + float(dt), self.rng, self._cur)
        return self._increments()

    def reject(self, dt_new):
        self._S1, self._S2 = rswm_reject(self._S1, self._S2, self._cnt, self.t + float(dt_new), self.rng, self._cur)
        return self._increments()

    def accept(self):
        dW, dZ = self._increments()
        self.t = float(self._cur[1])
        self.W += dW
        self.Z += dZ
        return dW, dZ
