"""One module per ``layerlab`` subcommand; each has ``register(subparsers)``.

``SUMMARIES`` is the one-line help of every command, in the order ``layerlab --help`` lists them
(data-flow order). It lives here, away from the command modules, so that ``layerlab --help``
lists every command without importing any of them (pandas, polars and numba take ~0.5 s).
"""

SUMMARIES: dict[str, str] = {
    "estimate": "analytical FLOPs, bytes and time of one decoder layer, op by op",
    "image": "inspect a GPU disk image, or build one with layerlab's drivers and a model baked in",
    "slice": "find steps and layer boundaries in a kernel trace (no markers needed)",
    "census": "kernel map (kernel index → step, layer, module) from a skip-all run with markers",
    "window": "gem5 skip/exit window for one layer of one step, from a census",
    "render": "write a gem5 GPU-FS run directory (config, guest script, params, command)",
    "preflight": "check a rendered run against a real gem5 tree's Python (no gem5 binary needed)",
    "stats": "gem5 stats.txt/h5/json as a tidy table, or the per-kernel table of a run",
    "run": "run an experiment spec: boot checkpoint, census, sliced layers, kernel tables (resumes)",
    "status": "states and results of an experiment's runs (exit 1 while any is not done)",
    "cancel": "stop an experiment's running runs (their process groups) and record them as cancelled",
    "collect": "the per-kernel tables of an experiment's sliced runs in one parquet file",
    "report": "gem5 cycles vs the analytical model: HTML page, Markdown summary, CSV/parquet tables, PNG charts",
    "calibrate": "fit per-op-class calibration factors from sliced runs, a spec or report tables "
    "(the YAML `estimate --calibration` reads)",
    "doctor": "check what a real gem5 run needs here (binary, tree, KVM, perf, docker, image, disk)",
    "demo": "the main job: the default layer's estimate, the quick-start plan, then gem5 or the self-test",
}
