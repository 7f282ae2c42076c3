"""Running a sweep's cells on Dask: a ``LocalCluster`` of worker processes, or an existing scheduler.

Finished cells (a record with status "ok") are skipped; failed and missing ones are (re)submitted.  Each cell
runs in a worker process (one thread each, so one cell per process at a time) and writes its own record, so
the records survive the driver.  A worker that dies takes only its cell with it: the driver records the
failure (unless the cell's record says otherwise) and goes on.  Progress lines show cells done, running,
failed and an ETA.

``--scheduler ADDRESS``: the workers must import this version of ``lrnde_np`` and see the sweep directory at
the same absolute path (a shared file system), because they write the records themselves.
"""

from __future__ import annotations

import os
import sys
import time

from .grid import canonical, cell_id
from .runner import RECORD_FORMAT, atomic_write_json, read_record, record_path, run_cell, versions


def plan(cells, out_dir):
    """(to_run, finished): cells without an "ok" record are to run (missing, failed or unreadable)."""
    to_run, finished = [], []
    for cell in cells:
        rec = read_record(record_path(out_dir, cell_id(cell)))
        if rec is not None and rec.get("status") == "ok" and canonical(rec.get("cell")) == canonical(cell):
            finished.append(cell)
        else:
            to_run.append(cell)
    return to_run, finished


def _fmt_seconds(s):
    if s is None or s != s:
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


class SweepProgress:
    """Counts and ETA; one line per event to ``stream`` (stderr by default)."""

    def __init__(self, total, skipped, slots, stream=None, enabled=True):
        self.total, self.skipped, self.slots = total, skipped, max(1, slots)
        self.done = self.failed = 0
        self.durations = []
        self.start = time.perf_counter()
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled

    @property
    def remaining(self):
        return self.total - self.skipped - self.done - self.failed

    @property
    def running(self):
        return min(self.slots, self.remaining)

    def eta(self):
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        return mean * self.remaining / self.slots

    def line(self, last=""):
        return (
            f"[sweep] {self.done + self.skipped}/{self.total} done ({self.skipped} skipped), "
            f"{self.running} running, {self.failed} failed, {self.remaining} to go; ETA "
            f"{_fmt_seconds(self.eta())}; elapsed {_fmt_seconds(time.perf_counter() - self.start)}"
            + (f"  | {last}" if last else "")
        )

    def update(self, summary):
        if summary["status"] == "ok":
            self.done += 1
        else:
            self.failed += 1
        if summary.get("wall_time") is not None:
            self.durations.append(summary["wall_time"])
        if self.enabled:
            last = f"{summary['id']} {summary['status']} in {_fmt_seconds(summary.get('wall_time'))}"
            if summary.get("error"):
                last += f" ({summary['error'][:120]})"
            print(self.line(last), file=self.stream, flush=True)


def _record_lost_cell(cell, out_dir, error):
    """A cell whose worker died: write a failed record unless the worker managed to write one."""
    path = record_path(out_dir, cell_id(cell))
    rec = read_record(path)
    if rec is not None and rec.get("status") == "ok":
        return dict(id=rec["id"], status="ok", error=None, wall_time=rec.get("timing", {}).get("wall_time"))
    atomic_write_json(
        path,
        dict(
            format=RECORD_FORMAT,
            id=cell_id(cell),
            cell=cell,
            versions=versions(),
            status="failed",
            error=error,
            timing=dict(finished=time.time()),
        ),
    )
    return dict(id=cell_id(cell), status="failed", error=error, wall_time=None)


def run_sweep(
    cells, out_dir, workers=1, scheduler=None, checkpoint_every=50, progress=True, stream=None, keep_checkpoints=False
):
    """Run every cell without an "ok" record; returns dict(ran, skipped, ok, failed, summaries).

    ``workers`` processes of a new ``LocalCluster`` (one thread each), or the cluster at ``scheduler``.
    ``workers=0`` runs the cells in this process, one after another (no Dask; for debugging).
    """
    out_dir = os.path.abspath(out_dir)
    os.makedirs(os.path.join(out_dir, "cells"), exist_ok=True)
    to_run, finished = plan(cells, out_dir)
    summaries = []
    if workers == 0 and scheduler is None:
        prog = SweepProgress(len(cells), len(finished), 1, stream, progress)
        if progress:
            print(prog.line("in-process (no Dask)"), file=prog.stream, flush=True)
        for cell in to_run:
            s = run_cell(cell, out_dir, checkpoint_every, keep_checkpoints)
            summaries.append(s)
            prog.update(s)
    else:
        from dask.distributed import Client, LocalCluster, as_completed

        cluster = None
        if scheduler is None:
            cluster = LocalCluster(
                n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=":0", host="127.0.0.1"
            )  # any free port: no clash
            client = Client(cluster)
        else:
            client = Client(scheduler, timeout=30)
        try:
            slots = sum(client.nthreads().values()) or 1
            prog = SweepProgress(len(cells), len(finished), slots, stream, progress)
            if progress:
                where = scheduler or f"LocalCluster of {workers} worker process(es)"
                print(prog.line(f"on {where}"), file=prog.stream, flush=True)
            futures, cell_of = [], {}
            for cell in to_run:
                fut = client.submit(
                    run_cell,
                    cell,
                    out_dir,
                    checkpoint_every,
                    keep_checkpoints,
                    pure=False,
                    key=f"cell-{cell_id(cell)}-{time.time_ns()}",
                    retries=0,
                )
                futures.append(fut)
                cell_of[fut.key] = cell
            for fut in as_completed(futures):
                try:
                    s = fut.result()
                except Exception as exc:  # the worker died or the task could not run
                    s = _record_lost_cell(cell_of[fut.key], out_dir, f"{type(exc).__name__}: {exc}")
                summaries.append(s)
                prog.update(s)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    ok = sum(1 for s in summaries if s["status"] == "ok")
    return dict(ran=len(to_run), skipped=len(finished), ok=ok, failed=len(summaries) - ok, summaries=summaries)
