"""From an experiment variant to the runs it needs, as rendered run directories.

The graph, per variant: a boot checkpoint (once per machine + image + kernel + gem5) -> a census
that restores it and skips every kernel with the driver's markers on -> one sliced run per
(step, layer[, module]) asked for, each restoring the checkpoint with the census's window and
per-kernel dumps. Sliced runs can only be rendered once the census's kernel map exists, so the
conductor asks for them when the census is done.

Run directories have readable labels under the workspace:
``boot/<machine>``, ``<model>/<shape>/<machine>/census``, ``<model>/<shape>/<machine>/step1-layer3``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foundation.errors import InputError
from foundation.gem5_names import GEM5_VERSIONS, gem5_profile
from foundation.vocabulary import SKIP_ALL
from orchestrator.spec import Experiment

#: Where the guest driver writes its marker table; `m5 writefile` copies it into gem5's outdir.
GUEST_MARKER_TABLE = "/tmp/layerlab_markers.json"
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class RunPlan:
    """One run to render: its kind, readable label, directory and render options."""

    kind: str  # boot | census | slice
    label: str
    run_dir: Path
    options: dict[str, Any]
    timeout_s: float
    parent_label: str | None = None
    slice_at: tuple[int, int, str | None] | None = None  # (step, layer, module) of a slice


def _path(value: str | None, base: Path) -> str | None:
    if value is None:
        return None
    path = Path(os.path.expandvars(value)).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def gem5_source(spec: Experiment, base: Path) -> tuple[str, bool]:
    """The gem5 tree runs import configs/ from, and whether it is a real tree preflight can use.

    ``source: auto`` takes ``$LAYERLAB_GEM5_SRC``, else the reference tree of the profile in
    ``../shared/gem5_src`` beside the checkout, else the test double's fake tree (no preflight).
    """
    source = spec.gem5.source
    if source and source != "auto":
        return _path(source, base) or "", True
    if os.environ.get("LAYERLAB_GEM5_SRC"):
        return os.environ["LAYERLAB_GEM5_SRC"], True
    profile = gem5_profile(spec.gem5.profile)
    trees = Path(os.environ.get("LAYERLAB_GEM5_SRC_DIR") or REPO.parent / "shared" / "gem5_src")
    tree = trees / GEM5_VERSIONS[profile].reference_tree
    if (tree / "src" / "base" / "version.cc").is_file():
        return str(tree), True
    return str(REPO / "tests" / "gem5_double" / "fake_gem5_src"), False


def inputs(spec: Experiment, base: Path) -> dict[str, Any]:
    """Kernel, disk and root partition: from the image manifest, or the image's own fields."""
    image = spec.image
    if image.manifest:
        from disk_images.manifest import check_profile, read_manifest  # the image stage's hand-over

        manifest = read_manifest(_path(image.manifest, base))
        check_profile(manifest, spec.gem5.profile)
        return {
            "kernel": str(manifest.kernel),
            "disk": str(manifest.disk),
            "root_partition": manifest.root_partition,
        }
    if not (image.disk and image.kernel):
        raise InputError("image: give manifest (from `make image`) or both disk and kernel")
    return {
        "kernel": _path(image.kernel, base),
        "disk": _path(image.disk, base),
        "root_partition": image.root_partition,
    }


def guest_command(spec: Experiment) -> tuple[str, ...]:
    """The guest driver's argv: the same for the census and every slice (indices stay valid)."""
    from workloads.drivers import GUEST_CONFIG_DIR, guest_argv
    from workloads.models import CONFIG_DIR

    shapes = spec.shapes
    common: dict[str, Any] = {
        "prompt_len": shapes.prompt_len,
        "decode_steps": shapes.decode_steps,
        "batch": shapes.batch,
        "dtype": shapes.dtype,
        "markers": "gem5",
        "marker_table": GUEST_MARKER_TABLE,
    }
    if spec.driver == "layer":
        name = Path(spec.model).stem if spec.model.endswith(".json") else spec.model
        if not (CONFIG_DIR / f"{name}.json").is_file():
            raise InputError(
                f"model: the layer driver needs a shipped config; {name!r} is not in {CONFIG_DIR}"
            )
        options = {
            "config": f"{GUEST_CONFIG_DIR}/{name}.json",
            "num_layers": shapes.num_layers or 1,
            "phases": shapes.phases,
            "context": shapes.context,
            **common,
        }
    else:
        from workloads import drivers

        model_dir = getattr(drivers, "GUEST_MODEL_DIR", "/opt/layerlab/models")
        options = {"model_dir": f"{model_dir}/{spec.model}", **common}
        if shapes.num_layers and spec.driver == "hf":
            options["layers"] = shapes.num_layers
    return tuple(guest_argv(spec.driver, options))


def machine_label(spec: Experiment) -> str:
    from foundation.gem5_names import gem5_device

    parts = [gem5_device(spec.hardware.device), gem5_profile(spec.gem5.profile)]
    knobs = spec.hardware.knobs
    parts.append(f"cu{knobs.get('num_cus', 40 if gem5_device(spec.hardware.device) == 'mi300x' else 4)}")
    for key in sorted(set(knobs) - {"num_cus"}):
        parts.append(f"{key}{str(knobs[key]).replace('.', 'p')}")
    if spec.gem5.script_style == "stdlib":
        parts.append("stdlib")
    return "-".join(parts)


def shape_label(spec: Experiment) -> str:
    s = spec.shapes
    text = f"{s.phases}-B{s.batch}-S{s.prompt_len}-C{s.context}-D{s.decode_steps}"
    return text + (f"-L{s.num_layers}" if s.num_layers else "")


def model_label(spec: Experiment) -> str:
    return Path(spec.model).stem if spec.model.endswith(".json") else spec.model


def _gpu_overrides(spec: Experiment) -> dict[str, Any]:
    from orchestrator.knobs import GPU_KNOBS

    fields = {field: kind for field, kind, _ in GPU_KNOBS.values()}
    out = {}
    for key, value in spec.hardware.knobs.items():
        if key not in fields:
            from foundation.errors import unknown_name

            raise unknown_name("hardware.knobs knob", key, fields)
        out[key] = fields[key](str(value)) if isinstance(value, str) and fields[key] is not str else value
    return out


def _memo(memo: dict | None, key: tuple, make: Any) -> Any:
    """``make()``, once per ``key`` when a memo is given (the variants of one experiment share
    their inputs, gem5 tree and guest; a matrix of 250 variants need not look them up 250 times)."""
    if memo is None:
        return make()
    if key not in memo:
        memo[key] = make()
    return memo[key]


def render_options(spec: Experiment, base: Path, memo: dict | None = None) -> dict[str, Any]:
    """make_params options shared by every run of the variant (machine, inputs, gem5)."""
    gem5 = spec.gem5
    source, _real = _memo(memo, ("source", gem5.source, gem5.profile, base), lambda: gem5_source(spec, base))
    binary = _path(gem5.binary, base) if gem5.binary else "gem5.opt"
    return {
        "profile": gem5.profile,
        "device": spec.hardware.device,
        "gpu_overrides": _gpu_overrides(spec),
        "script_style": gem5.script_style,
        "cpu_type": gem5.cpu,
        "gem5_src": source,
        "gem5_binary": binary,
        "docker_image": gem5.container,
        **_memo(memo, ("inputs", spec.image, gem5.profile, base), lambda: inputs(spec, base)),
    }


def root_runs(
    spec: Experiment, base: Path, workspace: Path, variant: str = "", memo: dict | None = None
) -> list[RunPlan]:
    """The boot checkpoint (if the spec boots once) and the census of a variant.

    ``memo``: a dict the caller keeps for the variants of one experiment (see ``_memo``).
    """
    options = render_options(spec, base, memo)
    machine = machine_label(spec) + (f"-{variant}" if variant and variant not in machine_label(spec) else "")
    stem = f"{model_label(spec)}/{shape_label(spec)}/{machine}"
    runs: list[RunPlan] = []
    guest = _memo(memo, ("guest", spec.driver, spec.model, spec.shapes), lambda: guest_command(spec))
    census_opts = {**options, "guest_command": guest, "skip_until": SKIP_ALL}
    if spec.boot_checkpoint:
        boot_dir = workspace / "boot" / machine
        runs.append(
            RunPlan(
                "boot",
                f"boot/{machine}",
                boot_dir,
                {**options, "checkpoint_dir": str(boot_dir / "checkpoint"), "guest_command": ()},
                spec.timeouts.boot_s,
            )
        )
        census_opts["restore_dir"] = str(boot_dir / "checkpoint")
    runs.append(
        RunPlan(
            "census",
            f"{stem}/census",
            workspace / stem / "census",
            census_opts,
            spec.timeouts.census_s,
            parent_label=runs[0].label if runs else None,
        )
    )
    return runs


def slice_runs(spec: Experiment, census: RunPlan) -> list[RunPlan]:
    """One sliced run per (step, layer, module) of the spec, beside its census."""
    out = []
    for step in spec.slices.steps:
        for layer in spec.slices.layers:
            for module in spec.slices.modules:
                name = f"step{step}-layer{layer}" + (f"-{module}" if module else "")
                out.append(
                    RunPlan(
                        "slice",
                        census.label.rsplit("/", 1)[0] + f"/{name}",
                        census.run_dir.parent / name,
                        {},
                        spec.timeouts.slice_s,
                        parent_label=census.label,
                        slice_at=(step, layer, module),
                    )
                )
    return out
