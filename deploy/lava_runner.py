"""Run a NetX ``.net`` file on Lava: the CPU simulator (``Loihi2SimCfg(select_tag='fixed_pt')``)
or Loihi 2 hardware (``Loihi2HwCfg``, needs Intel's Loihi runtime).

This module is the supervisor; :mod:`snn2loihi.deploy.lava_drivers` holds what runs inside
the child (the request, the per-sample and global-clock drivers, the result).

Lava runs in a child interpreter (``python -m snn2loihi.deploy.lava_runner REQUEST_DIR``) that
leads its own session and process group: Lava's worker processes live in that group, and the
parent kills the whole group after the run, on errors, on a timeout and on Ctrl-C, so no Lava
process is ever left behind. Request and result travel as ``.npy``/JSON files in a temp folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from snn2loihi.deploy.lava_drivers import LavaRequest, LavaResult, run_in_process
from snn2loihi.errors import LavaRunError, LavaUnavailableError, Snn2LoihiError
from snn2loihi.netx_io import read_network, write_network
from snn2loihi.schema import NetXNetwork

log = logging.getLogger(__name__)

_RESULT_KEYS = ("spikes", "u", "v")


def _save_result(result: LavaResult, folder: Path) -> None:
    """Write a LavaResult as one .npy per array plus an index (child side)."""
    meta = {"layer_indices": result.layer_indices, "counts": {}, "records": list(result.records)}
    for key, arr in result.records.items():
        np.save(folder / f"record_{key}.npy", arr)
    for key in _RESULT_KEYS:
        arrays = getattr(result, key)
        meta["counts"][key] = len(arrays)
        for k, arr in enumerate(arrays):
            np.save(folder / f"{key}_{k}.npy", arr)
    (folder / "result.json").write_text(json.dumps(meta))


def _load_result(folder: Path) -> LavaResult:
    meta = json.loads((folder / "result.json").read_text())
    arrays = {
        key: [np.load(folder / f"{key}_{k}.npy") for k in range(meta["counts"][key])]
        for key in _RESULT_KEYS
    }
    records = {key: np.load(folder / f"record_{key}.npy") for key in meta.get("records", [])}
    return LavaResult(layer_indices=meta["layer_indices"], records=records, **arrays)


def _die_with_parent(parent: int, folder: Path, done: threading.Event, poll: float = 0.5):
    """Child side: when the parent is gone (killed with SIGKILL, say), remove the run folder and
    kill this process group (the child and Lava's workers), so nothing outlives the command.

    The watcher is not a daemon: an interpreter that ends while it cleans up waits for it. It
    returns at once when ``done`` is set (the run ended while the parent lives).
    """

    def watch() -> None:
        while os.getppid() == parent:
            if done.wait(poll):
                return
        # Move the folder away first: the run's own writes into it then fail instead of racing
        # the removal; then remove it (retried, in case a file was still being created).
        doomed = folder.with_name(folder.name + ".orphaned")
        try:
            folder.rename(doomed)
        except OSError:
            doomed = folder
        for _ in range(5):
            shutil.rmtree(doomed, ignore_errors=True)
            if not doomed.exists():
                break
            time.sleep(0.05)
        os.killpg(0, signal.SIGKILL)

    watcher = threading.Thread(target=watch, name="snn2loihi-parent-watch")
    watcher.start()
    return watcher


def _child_main(folder: Path, parent: int) -> int:
    """Child entry point: read the request, run Lava, write the result or the error."""
    done = threading.Event()
    _die_with_parent(parent, folder, done)
    try:
        request = LavaRequest.from_json((folder / "request.json").read_text())
        records = folder / "records"
        records.mkdir()
        result = run_in_process(request, np.load(folder / "x.npy"), records)
        shutil.rmtree(records)
        _save_result(result, folder)
        return 0
    except Exception as exc:
        kind = type(exc).__name__ if isinstance(exc, Snn2LoihiError) else "LavaRunError"
        message = str(exc) if isinstance(exc, Snn2LoihiError) else f"{type(exc).__name__}: {exc}"
        try:
            (folder / "error.json").write_text(json.dumps({"kind": kind, "message": message}))
        except OSError:  # the folder is gone: the parent gave up on this run
            pass
        return 1
    finally:
        done.set()


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the child's whole process group (Lava's workers included) and reap the child."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(5.0)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # stragglers of the group may outlive their leader
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def run_lava(
    path: str | Path | None,
    x: np.ndarray,
    *,
    graded: bool,
    probe_all: bool = False,
    record_state: bool | str = False,
    backend: str = "lava",
    timeout: float | None = None,
    net: NetXNetwork | None = None,
    clock: dict | None = None,
    name: str | None = None,
) -> LavaResult:
    """Run samples ``x`` (N, T, *input_shape) through the ``.net`` file on Lava.

    ``path`` None: the network ``net`` (required then) is written into the run's own folder,
    which the Lava child removes if the command is killed, so no file outlives it; ``name``
    then names it in errors.

    ``graded`` sends the input as 8-bit graded messages (``input_message_bits=8``), else as
    spikes. ``probe_all`` returns every layer's spikes, not only the output; ``record_state``
    also returns ``u`` and ``v`` of every probed layer (``"last"``: of the output layer only). ``timeout`` (seconds, None = no limit)
    bounds the whole run, compilation included; on expiry :class:`LavaRunError` is raised.
    ``net`` (the file's records, if already read) supplies the input shape of slayer files.
    ``clock``: run on the global clock instead (each sample its own run, as netx builds the
    network): ``{"drive", "steps", "reset_interval", "reset_offset", "record"}`` (see
    :mod:`snn2loihi.deploy.timeline`); the result's ``records`` then hold every built layer.
    """
    if path is None and net is None:
        raise ValueError("run_lava needs the .net file or the network")
    if path is not None:
        path = Path(path).resolve()
        net = net if net is not None else read_network(path)
    shown = name or path or "the network"
    with tempfile.TemporaryDirectory(prefix="snn2loihi-lava-") as tmp:
        folder = Path(tmp)
        if path is None:
            path = write_network(net, folder / "model.net")
        request = LavaRequest(
            str(path),
            tuple(net.input_shape),
            bool(graded),
            probe_all,
            record_state,
            backend,
            **({"clock": "global", **clock} if clock else {}),
        )
        np.save(folder / "x.npy", np.asarray(x))
        (folder / "request.json").write_text(request.to_json())
        _run_child(folder, timeout, shown)
        return _load_result(folder)


def _run_child(folder: Path, timeout: float | None, shown: object) -> None:
    """Run the Lava child on the request in ``folder`` (its own session and process group,
    killed whole when this returns or raises); raise its error, or :class:`LavaRunError` on
    expiry of ``timeout`` or a child that failed without one."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "snn2loihi.deploy.lava_runner", str(folder), str(os.getpid())],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise LavaRunError(
                f"{shown}: the Lava run exceeded the timeout of {timeout:g} s and was stopped"
            ) from None
    finally:
        _kill_group(proc)
    if (folder / "error.json").exists():
        err = json.loads((folder / "error.json").read_text())
        raise _ERRORS.get(err["kind"], LavaRunError)(err["message"])
    if proc.returncode != 0 or not (folder / "result.json").exists():
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] if stderr else []
        raise LavaRunError(
            f"{shown}: the Lava process failed (exit code {proc.returncode}){': ' + tail[0] if tail else ''}"
        )


_ERRORS = {cls.__name__: cls for cls in (LavaRunError, LavaUnavailableError, Snn2LoihiError)}

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(_child_main(Path(sys.argv[1]), int(sys.argv[2])))
