"""What the GPU probes of this folder share: the output folder named on the command line, a JSON-lines log, timing."""
import json
import sys
import time
from pathlib import Path

import torch


def start(argv=None):
    "OUT_DIR from the command line (created), recompiles and graph breaks logged; returns `log(**record)`."
    out = Path((argv or sys.argv)[1])
    out.mkdir(parents=True, exist_ok=True)
    torch._logging.set_logs(recompiles=True, graph_breaks=True)

    def log(**record):
        "Print the record as one JSON line and append it to OUT_DIR/probe.jsonl."
        print(json.dumps(record), flush=True)
        with (out / "probe.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
    return log


EAGER_GFLOP = {}  # (size, layout): the FLOPs of the eager step, given to the compiled ones


def timed(log, fn, key, mode, iters=10, **labels):
    "Median ms of `fn()` (or its error), logged; compiled modes take the eager FLOP count of `key`."
    from lpd.bench import _attempt, measure  # the counter must not run a compiled call: it would leave it eager

    t0 = time.perf_counter()
    with torch.no_grad():
        r = _attempt(lambda: measure(fn, torch.device("cuda"), 3, iters, EAGER_GFLOP.get(key)))
    if mode == "eager" and r.get("gflop"):
        EAGER_GFLOP[key] = int(r["gflop"] * 1e9)
    log(what="step", mode=mode, **labels, setup_s=round(time.perf_counter() - t0, 1), **r)
    return r
