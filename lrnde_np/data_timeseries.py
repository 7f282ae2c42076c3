"""Irregularly sampled time series: Chen et al.'s spiral data set and a PhysioNet 2012 Challenge reader.

Both produce a :class:`TimeSeriesSet`: a common time grid ``t`` (T,), values and masks (N, T, D) (mask 1 =
observed; unobserved values are 0), and, for synthetic data, the noise-free ``truth``.  A minibatch is cut
down to the union of its series' observation times by :meth:`TimeSeriesSet.batch`.

**Spirals** (Chen et al., 2018, §5.1 and their ``examples/latent_ode.py``): two base spirals on
``n_total`` = 1000 equally spaced times in [0, 6π] — counter-clockwise r = a + b·τ around (5, 0), clockwise
r = a + 50b/(6π + 1 − τ) around (−5, 0), a = 0, b = 0.3 — each series a window of ``n_window + n_extrap``
consecutive base points from a random start (≥ n_window, as the original), exactly half of them clockwise,
with Gaussian noise of std ``noise_std`` = 0.3 on the values.  Times are relative to the window's start.
``n_obs`` of the first ``n_window`` (= 100) times are observed per series, drawn without replacement; the
last ``n_extrap`` times are for extrapolation (never observed).  Everything is drawn from ``seed``.

**PhysioNet 2012** (set-a style files): one text file per patient, a header ``Time,Parameter,Value``, then
rows ``HH:MM,Name,value``.  The 37 time-varying variables of Rubanova et al. (2019) are kept (the static
descriptors RecordID, Age, Gender, Height, ICUType are skipped; Weight is a variable); negative values
(−1 = missing in the challenge files) are dropped; times beyond 48 h are dropped; values are averaged within
bins of ``resolution`` hours (default 1 h → 49 times, the paper's 49 save points) and times are scaled to
[0, 1].  Per-variable min–max normalization with statistics from the given records (or passed in, e.g. the
training split's).  A missing directory, an empty one, a bad header or a malformed row raises ValueError
naming the file (and line).
"""

from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass, field

import numpy as np

# ------------------------------------------------------------------------------------------------------------


@dataclass
class TimeSeriesSet:
    """Series on a common grid.  ``values``/``mask``/``truth`` are (N, T, D); ``info`` holds per-set notes."""

    t: np.ndarray
    values: np.ndarray
    mask: np.ndarray
    truth: np.ndarray | None = None
    names: tuple = ()
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self.t = np.asarray(self.t, dtype=np.float64)
        self.values = np.asarray(self.values, dtype=np.float64)
        self.mask = np.asarray(self.mask, dtype=np.float64)
        if self.values.ndim != 3 or self.values.shape != self.mask.shape or self.values.shape[1] != self.t.size:
            raise ValueError(
                f"values/mask: expected (N, {self.t.size}, D) arrays of one shape, got "
                f"{self.values.shape} and {self.mask.shape}"
            )

    def __len__(self):
        return self.values.shape[0]

    @property
    def n_features(self) -> int:
        return self.values.shape[2]

    def subset(self, idx) -> TimeSeriesSet:
        idx = np.asarray(idx)
        return TimeSeriesSet(
            self.t,
            self.values[idx],
            self.mask[idx],
            None if self.truth is None else self.truth[idx],
            self.names,
            dict(self.info),
        )

    def batch(self, idx, window=None):
        """(t_union, values, mask) of the series ``idx`` restricted to the times where at least one of them is
        observed (within the first ``window`` grid times when given)."""
        idx = np.asarray(idx)
        mask = self.mask[idx] if window is None else self.mask[idx, :window]
        values = self.values[idx] if window is None else self.values[idx, :window]
        keep = np.flatnonzero(mask.any(axis=(0, 2)))
        if keep.size == 0:
            raise ValueError("idx: the selected series have no observations")
        return self.t[keep], values[:, keep], mask[:, keep]


def split_indices(n, fractions, seed):
    """A seeded permutation of range(n) cut into consecutive parts of the given fractions (the last part
    takes the rest)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    cuts = np.cumsum([int(round(f * n)) for f in fractions[:-1]])
    return np.split(perm, cuts)


# ------------------------------------------------------------------------------------------------------------
# Spirals.


def spiral_base(n_total=1000, stop=6 * math.pi, a=0.0, b=0.3):
    """(τ, counter-clockwise (n_total, 2), clockwise (n_total, 2)) base spirals of Chen's example."""
    tau = np.linspace(0.0, stop, n_total)
    zs_cw = stop + 1.0 - tau
    r_cw = a + b * 50.0 / zs_cw
    cw = np.stack([r_cw * np.cos(zs_cw) - 5.0, r_cw * np.sin(zs_cw)], axis=1)
    r_cc = a + b * tau
    cc = np.stack([r_cc * np.cos(tau) + 5.0, r_cc * np.sin(tau)], axis=1)
    return tau, cc, cw


def spiral_timeseries(
    n_spirals=1000,
    n_obs=100,
    seed=0,
    n_window=100,
    n_extrap=100,
    n_total=1000,
    noise_std=0.3,
    stop=6 * math.pi,
    a=0.0,
    b=0.3,
) -> TimeSeriesSet:
    """Chen's noisy spirals with ``n_obs`` irregular observations per series; see the module docstring.

    ``info['clockwise']`` marks the clockwise series, ``info['n_window']`` the observation window length.
    """
    for name, v in (("n_spirals", n_spirals), ("n_window", n_window), ("n_total", n_total)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    if isinstance(n_extrap, bool) or not isinstance(n_extrap, (int, np.integer)) or n_extrap < 0:
        raise ValueError(f"n_extrap: expected a non-negative int, got {n_extrap!r}")
    if isinstance(n_obs, bool) or not isinstance(n_obs, (int, np.integer)) or not 1 <= n_obs <= n_window:
        raise ValueError(f"n_obs: expected an int in 1…{n_window}, got {n_obs!r}")
    length = n_window + n_extrap
    if n_window + length > n_total:
        raise ValueError(
            f"n_total: {n_total} base points cannot hold a start offset of {n_window} plus a window of {length}"
        )
    if not noise_std >= 0:
        raise ValueError(f"noise_std: expected a non-negative number, got {noise_std!r}")
    rng = np.random.default_rng(seed)
    tau, cc, cw = spiral_base(n_total, stop, a, b)
    clockwise = rng.permutation(np.arange(n_spirals) < n_spirals // 2)
    starts = rng.integers(n_window, n_total - length + 1, size=n_spirals)
    truth = np.stack([(cw if clockwise[i] else cc)[starts[i] : starts[i] + length] for i in range(n_spirals)])
    values = truth + noise_std * rng.standard_normal(truth.shape)
    mask = np.zeros_like(truth)
    for i in range(n_spirals):
        mask[i, rng.choice(n_window, n_obs, replace=False)] = 1.0
    t = tau[:length] - tau[0]
    info = dict(
        clockwise=clockwise,
        starts=starts,
        n_window=int(n_window),
        n_obs=int(n_obs),
        noise_std=float(noise_std),
        seed=int(seed),
    )
    return TimeSeriesSet(t, values * mask, mask, truth, ("x", "y"), info)


# ------------------------------------------------------------------------------------------------------------
# PhysioNet 2012.

PHYSIONET_VARIABLES = (
    "Albumin",
    "ALP",
    "ALT",
    "AST",
    "Bilirubin",
    "BUN",
    "Cholesterol",
    "Creatinine",
    "DiasABP",
    "FiO2",
    "GCS",
    "Glucose",
    "HCO3",
    "HCT",
    "HR",
    "K",
    "Lactate",
    "Mg",
    "MAP",
    "MechVent",
    "Na",
    "NIDiasABP",
    "NIMAP",
    "NISysABP",
    "PaCO2",
    "PaO2",
    "pH",
    "Platelets",
    "RespRate",
    "SaO2",
    "SysABP",
    "Temp",
    "TroponinI",
    "TroponinT",
    "Urine",
    "WBC",
    "Weight",
)
PHYSIONET_DESCRIPTORS = ("RecordID", "Age", "Gender", "Height", "ICUType")
PHYSIONET_HOURS = 48.0


def _parse_time(text, path, line):
    parts = text.strip().split(":")
    if len(parts) != 2:
        raise ValueError(f"{path}, line {line}: time {text!r} is not HH:MM")
    try:
        hours, minutes = int(parts[0]), int(parts[1])
    except ValueError:
        raise ValueError(f"{path}, line {line}: time {text!r} is not HH:MM") from None
    if hours < 0 or not 0 <= minutes < 60:
        raise ValueError(f"{path}, line {line}: time {text!r} is out of range")
    return hours + minutes / 60.0


def read_physionet_file(path):
    """Rows ``(hours, variable, value)`` of one patient file (variables outside the 37 are skipped, negative
    values dropped).  Raises ValueError naming the file and line of a malformed row."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text file ({exc.reason})") from exc
    if not lines or [c.strip() for c in lines[0].split(",")] != ["Time", "Parameter", "Value"]:
        raise ValueError(
            f"{path}, line 1: expected the header 'Time,Parameter,Value', got {lines[0] if lines else ''!r}"
        )
    known = set(PHYSIONET_VARIABLES)
    rows = []
    for number, text in enumerate(lines[1:], start=2):
        if not text.strip():
            continue
        cells = text.split(",")
        if len(cells) != 3:
            raise ValueError(f"{path}, line {number}: expected 3 comma-separated fields, got {len(cells)}: {text!r}")
        hours = _parse_time(cells[0], path, number)
        name = cells[1].strip()
        try:
            value = float(cells[2])
        except ValueError:
            raise ValueError(f"{path}, line {number}: value {cells[2].strip()!r} of {name!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{path}, line {number}: value {cells[2].strip()!r} of {name!r} is not finite")
        if name in PHYSIONET_DESCRIPTORS or name == "":
            if name == "":
                raise ValueError(f"{path}, line {number}: empty parameter name")
            continue
        if name not in known:
            raise ValueError(f"{path}, line {number}: unknown parameter {name!r}")
        if value < 0 or hours > PHYSIONET_HOURS:
            continue
        rows.append((hours, name, value))
    return rows


def load_physionet(directory, resolution=1.0, stats=None, max_files=None) -> TimeSeriesSet:
    """Every ``*.txt`` patient file in ``directory`` (sorted by name) on a grid of ``resolution`` hours.

    ``stats``: (min, max) arrays of length 37 to normalize with (default: computed from these records;
    variables never observed get min 0, max 1).  ``info['stats']`` returns the ones used, ``info['files']``
    the files read.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ValueError(
            f"data: {directory!r} is not a directory (expected PhysioNet 2012 patient files "
            f"'<RecordID>.txt', e.g. the challenge's set-a)"
        )
    files = sorted(glob.glob(os.path.join(directory, "*.txt")))
    if max_files is not None:
        files = files[: int(max_files)]
    if not files:
        raise ValueError(
            f"data: no '*.txt' patient files in {directory!r} (expected the PhysioNet 2012 challenge's set-a files)"
        )
    if not (isinstance(resolution, (int, float)) and 0 < resolution <= PHYSIONET_HOURS):
        raise ValueError(f"resolution: expected hours in (0, {PHYSIONET_HOURS:g}], got {resolution!r}")
    n_bins = int(math.floor(PHYSIONET_HOURS / resolution + 1e-9)) + 1
    D = len(PHYSIONET_VARIABLES)
    column = {name: j for j, name in enumerate(PHYSIONET_VARIABLES)}
    sums = np.zeros((len(files), n_bins, D))
    counts = np.zeros((len(files), n_bins, D))
    for i, path in enumerate(files):
        for hours, name, value in read_physionet_file(path):
            k = int(round(hours / resolution))
            sums[i, k, column[name]] += value
            counts[i, k, column[name]] += 1
    mask = (counts > 0).astype(np.float64)
    raw = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    if stats is None:
        lo = np.array([raw[..., j][mask[..., j] > 0].min() if mask[..., j].any() else 0.0 for j in range(D)])
        hi = np.array([raw[..., j][mask[..., j] > 0].max() if mask[..., j].any() else 1.0 for j in range(D)])
    else:
        lo, hi = (np.asarray(s, dtype=np.float64) for s in stats)
        if lo.shape != (D,) or hi.shape != (D,):
            raise ValueError(f"stats: expected two arrays of length {D}")
    span = np.where(hi > lo, hi - lo, 1.0)
    values = np.where(mask > 0, (raw - lo) / span, 0.0)
    t = np.arange(n_bins) * resolution / PHYSIONET_HOURS
    info = dict(stats=(lo, hi), files=tuple(os.path.basename(f) for f in files), resolution=float(resolution))
    return TimeSeriesSet(t, values, mask, None, PHYSIONET_VARIABLES, info)
