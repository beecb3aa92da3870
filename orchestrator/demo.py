"""The main job a newcomer meets first (`make demo` = `layerlab demo`).

Four parts, each printed under its own heading, so a first run on a fresh machine shows the
whole toolkit and ends with what a real run still needs:

1. the analytical estimate of the default layer: one decoder layer of one decode step of
   Llama-3.2-1B (batch 1, 1024 tokens of context) on gem5's stock MI300X machine, with its chart;
2. the plan of the quick-start experiment (``experiments/llama-3.2-1b-decode-mi300x.yaml``):
   the boot checkpoint and the census rendered into ``<out>/plan`` and preflighted against a
   real gem5 tree when one is found (``$LAYERLAB_GEM5_SRC``, or ``../shared/gem5_src``); the
   sliced run's window is only known once the census has run, so it is listed, not rendered;
3. when ``layerlab doctor`` passes for that experiment (gem5 binary, tree, KVM, image): the real
   experiment end to end (boot, census, one sliced layer, collect) and its report;
4. otherwise: the self-test experiment through the gem5 TEST DOUBLE and its report — titled as a
   pipeline self-test, its cycles from a stand-in, not from gem5 — then doctor's list of what is
   missing and the commands that provide it.

gem5, its tree and the image come from ``$LAYERLAB_GEM5``, ``$LAYERLAB_GEM5_SRC`` and
``$LAYERLAB_IMAGE`` (a manifest from ``make image``), else from the quick-start spec's defaults.
Exit status 0 when the path taken finished (the self-test path on a machine without gem5 too).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
QUICKSTART = EXPERIMENTS / "llama-3.2-1b-decode-mi300x.yaml"
SELFTEST = EXPERIMENTS / "selftest.yaml"

#: The default layer of part 1 (the quick-start experiment's layer, estimated).
ESTIMATE_ARGS = (
    "estimate", "--model", "llama-3.2-1b", "--hardware", "gem5-mi300x", "--phase", "decode",
    "--batch", "1", "--context", "1024",
)  # fmt: skip


def _layerlab(*args: str) -> int:
    """One layerlab command in its own process, its output going straight to the terminal."""
    return subprocess.call([sys.executable, "-m", "orchestrator", *args], cwd=REPO)


def _heading(say: Callable[[str], None], number: int, text: str) -> None:
    say("")
    say(f"== {number}. {text}")


def quickstart_spec(out: Path) -> Path:
    """The quick-start spec with gem5 and the image taken from the environment, as a file in
    ``out`` (absolute paths, so it runs from there): what parts 2 and 3 use."""
    data = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    gem5 = data.setdefault("gem5", {})
    if os.environ.get("LAYERLAB_GEM5"):
        gem5["binary"] = os.environ["LAYERLAB_GEM5"]
    if os.environ.get("LAYERLAB_GEM5_SRC"):
        gem5["source"] = os.environ["LAYERLAB_GEM5_SRC"]
    if os.environ.get("LAYERLAB_IMAGE"):
        data["image"] = {"manifest": os.environ["LAYERLAB_IMAGE"]}
    for section, key in (("gem5", "binary"), ("gem5", "source"), ("image", "manifest")):
        value = data.get(section, {}).get(key)
        if value and value != "auto":
            path = Path(os.path.expandvars(value)).expanduser()
            data[section][key] = str(path if path.is_absolute() else (QUICKSTART.parent / path).resolve())
    target = out / "quickstart.yaml"
    from foundation import atomic

    atomic.write_text(target, yaml.safe_dump(data, sort_keys=False))
    return target


def doctor_checks(spec_path: Path) -> list:
    """doctor's checks for the experiment (the same as `layerlab doctor --spec`)."""
    from orchestrator.doctor import run_checks
    from orchestrator.plan import _path
    from orchestrator.spec import load_spec

    spec, base = load_spec(spec_path)
    manifest = _path(spec.image.manifest, base)
    return run_checks(
        binary=_path(spec.gem5.binary, base),
        source=_path(spec.gem5.source, base) if spec.gem5.source not in (None, "auto") else None,
        profile=spec.gem5.profile,
        cpu=spec.gem5.cpu,
        docker_image=spec.gem5.container,
        manifest=manifest if manifest and Path(manifest).is_file() else None,
        disk=_path(spec.image.disk, base),
        kernel=_path(spec.image.kernel, base),
        workspace=str(spec_path.parent),
    )


def plan(spec_path: Path, out: Path, say: Callable[[str], None], real_inputs: bool) -> bool:
    """Render the boot and census runs of the spec into ``out`` and preflight them.

    Without an image (a fresh machine) the kernel and disk are empty placeholder files in
    ``out``, said as such: the plan shows what would run and that the configs build in the
    gem5 tree; its run_ids name those placeholders, not a real image.
    """
    from gem5_configs.params import make_params
    from gem5_configs.render import render_run
    from orchestrator.plan import gem5_source, root_runs, slice_runs
    from orchestrator.spec import load_spec

    spec, base = load_spec(spec_path)
    if not real_inputs:
        holder = out / "placeholder-inputs"
        holder.mkdir(parents=True, exist_ok=True)
        for name in ("vmlinux", "disk.img"):
            (holder / name).touch()
        spec = spec.model_copy(
            update={"image": spec.image.model_copy(update={"manifest": None, "disk": str(holder / "disk.img"), "kernel": str(holder / "vmlinux")})}
        )  # fmt: skip
        say(f"no image configured: kernel and disk are empty placeholders in {holder}")
    given = spec.gem5.source
    if (
        given not in (None, "auto")
        and not (Path(os.path.expandvars(given)).expanduser() / "configs").is_dir()
    ):
        spec = spec.model_copy(update={"gem5": spec.gem5.model_copy(update={"source": "auto"})})
        say(f"gem5 source tree {given} not found: the plan uses the reference tree of the profile")
    source, real_tree = gem5_source(spec, base)
    runs = root_runs(spec, base, out)
    ok = True
    boot_run_id = None
    for run in runs:
        options = dict(run.options)
        if run.kind == "census" and boot_run_id is not None:
            # The checkpoint the boot run will write, named as the boot run will name it.
            from foundation import atomic

            marker = Path(options["restore_dir"]) / "layerlab_checkpoint.json"
            marker.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_text(marker, f'{{"run_id": "{boot_run_id}", "planned": true}}\n')
        rendered = render_run(make_params(**options))
        rendered.write(run.run_dir)
        if run.kind == "boot":
            boot_run_id = rendered.run_id
        verdict = "not preflighted (no real gem5 tree found: set LAYERLAB_GEM5_SRC)"
        if real_tree:
            from orchestrator.commands.preflight import check_run

            report = check_run(run.run_dir, source)
            verdict = "preflight ok" if report["ok"] else "preflight FAILED (see preflight/preflight.log)"
            ok &= bool(report["ok"])
        say(f"  {run.label}")
        say(f"      run {rendered.run_id} in {run.run_dir}: {verdict}")
    census = runs[-1]
    for sliced in slice_runs(spec, census):
        step, layer, module = sliced.slice_at  # type: ignore[misc]
        say(f"  {sliced.label}")
        where = f"step {step}, layer {layer}" + (f", {module}" if module else "")
        say(f"      rendered after the census: the window of {where} comes from its kernel map")
    return ok


def run_experiment(spec_path: Path, workspace: Path, say: Callable[[str], None]) -> int:
    from orchestrator.conductor import Conductor

    conductor = Conductor(spec_path, workspace=workspace, reporter=lambda m: say(f"  {m}"))
    code = conductor.run()
    from orchestrator.commands.status import print_status

    print_status(conductor.store, conductor.spec.name, "table")
    return code


def main(out: Path, say: Callable[[str], None] = print) -> int:
    from foundation.errors import InputError

    if out.exists() and not out.is_dir():
        raise InputError(f"--out: {out} exists and is not a directory (the demo writes a folder)")
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    _heading(say, 1, "the analytical estimate of the default layer (Llama-3.2-1B decode, gem5's MI300X)")
    sys.stdout.flush()
    if _layerlab(*ESTIMATE_ARGS, "--plot", str(out / "roofline.png")) != 0:
        return 1

    spec_path = quickstart_spec(out)
    checks = doctor_checks(spec_path)
    ready = all(c.ok for c in checks if c.required)
    image_ok = next((c.ok for c in checks if c.name == "image"), False)

    _heading(say, 2, f"the plan of the quick-start experiment ({QUICKSTART.relative_to(REPO)})")
    if not plan(spec_path, out / "plan", say, real_inputs=image_ok):
        say("the plan does not preflight: see the run's preflight/preflight.log")
        return 1

    if ready:
        _heading(say, 3, "the quick-start experiment on gem5 (layerlab doctor passes)")
        code = run_experiment(spec_path, out / "quickstart", say)
        if code != 0:
            say(
                f"the experiment did not finish: `layerlab status {spec_path} --workspace {out / 'quickstart'}`"
            )
            return code
        sys.stdout.flush()
        return _layerlab(
            "report", str(spec_path), "--workspace", str(out / "quickstart"), "--out", str(out / "report")
        )

    _heading(
        say, 3, "no real gem5 run here: the pipeline SELF-TEST on the gem5 test double (not a simulation)"
    )
    code = run_experiment(SELFTEST, out / "selftest", say)
    if code != 0:
        return code
    sys.stdout.flush()
    code = _layerlab(
        "report", str(SELFTEST), "--workspace", str(out / "selftest"), "--out", str(out / "selftest-report")
    )
    if code != 0:
        return code

    _heading(say, 4, "what a real run still needs (layerlab doctor)")
    for c in checks:
        if not c.ok:
            mark = "FAIL" if c.required else "note"
            say(f"  {mark}  {c.name:12} {c.detail}")
            if c.fix:
                say(f"        {'':12} fix: {c.fix}")
    say("then: make image BASE=... KERNEL=...; export LAYERLAB_GEM5=... LAYERLAB_GEM5_SRC=... "
        "LAYERLAB_IMAGE=<manifest>; make demo")  # fmt: skip
    return 0
