"""Experiment specs: one YAML file says what to simulate, on what, where, and what to slice.

A spec is data (Accel-Sim's lesson): model and guest driver, shapes, the steps / layers / modules
to slice, the machine (device + ``Gem5GpuConfig`` knobs, validated by the one validator against
the gem5 version), gem5 (binary or container, source tree, profile), the image, the backend and
its settings, timeouts, and matrix axes that expand one spec into several variants (composable
parameter sets: every combination of the axes' values).

Errors name the field and the line of the YAML file: ``spec.yaml:14: hardware.knobs.num_cus: ...``.
Relative paths in a spec are relative to the spec file, so a spec and its inputs move together.
"""

from __future__ import annotations

import copy
import itertools
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from foundation.errors import InputError

SPEC_SCHEMA = "layerlab-experiment/1"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Shapes(_Strict):
    """What the guest driver runs (its own flags: --phases, -S, -C, -D, --batch)."""

    phases: Literal["prefill", "decode", "both"] = "both"
    batch: int = Field(1, ge=1)
    prompt_len: int = Field(8, ge=1)
    context: int = Field(0, ge=0)
    decode_steps: int = Field(2, ge=0)
    dtype: Literal["bf16", "fp16", "fp32"] = "bf16"
    num_layers: int | None = Field(None, ge=1, description="layer driver: layers to stack")


class Slices(_Strict):
    """Which (step, layer[, module]) windows to simulate in detail; steps count in run order."""

    steps: list[int] = Field(default_factory=lambda: [1])
    layers: list[int] = Field(default_factory=lambda: [0])
    modules: list[str | None] = Field(default_factory=lambda: [None])

    @field_validator("steps", "layers")
    @classmethod
    def _non_negative(cls, values: list[int]) -> list[int]:
        if not values or any(v < 0 for v in values):
            raise ValueError("give at least one index, each >= 0")
        return values


class Hardware(_Strict):
    device: str = "mi300x"
    knobs: dict[str, Any] = Field(default_factory=dict)


class Gem5(_Strict):
    binary: str | None = None  # host gem5.opt (or the one mounted into a container)
    container: str | None = None  # e.g. ghcr.io/gem5/gpu-fs@sha256:...
    source: str | None = None  # gem5 source tree (configs/ imported; preflight)
    profile: str = "v24.0"
    script_style: Literal["classic", "stdlib"] = "classic"
    cpu: Literal["kvm", "atomic"] = "kvm"
    env: dict[str, str] = Field(default_factory=dict)  # extra environment for gem5 (e.g. the test double's)
    preflight: bool = True  # preflight every run against `source` before it is submitted


class Image(_Strict):
    manifest: str | None = None  # from `make image`
    disk: str | None = None
    kernel: str | None = None
    root_partition: str = "/dev/sda1"


class Backend(_Strict):
    kind: Literal["local", "docker", "ssh", "slurm"] = "local"
    jobs: int = Field(1, ge=1)  # runs at once
    cpus_per_run: int = Field(1, ge=1)
    mem_gib_per_run: float = Field(4.0, gt=0)
    settings: dict[str, Any] = Field(default_factory=dict)


class Timeouts(_Strict):
    boot_s: float = Field(7200, gt=0)
    census_s: float = Field(7200, gt=0)
    slice_s: float = Field(86400, gt=0)


class Experiment(_Strict):
    schema_: str = Field(SPEC_SCHEMA, alias="schema")
    name: str
    model: str  # shipped model name or a config.json path
    driver: Literal["hf", "vllm", "layer"] = "layer"
    engine: str | None = None  # analytical engine; default from the driver (docs/roles.md)
    shapes: Shapes = Field(default_factory=Shapes)
    slices: Slices = Field(default_factory=Slices)
    hardware: Hardware = Field(default_factory=Hardware)
    gem5: Gem5 = Field(default_factory=Gem5)
    image: Image = Field(default_factory=Image)
    backend: Backend = Field(default_factory=Backend)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    matrix: dict[str, list[Any]] = Field(default_factory=dict)
    boot_checkpoint: bool = True  # boot once and restore every run from the checkpoint

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError("letters, digits, '.', '_' and '-' only (it names folders)")
        return value

    @field_validator("schema_")
    @classmethod
    def _schema(cls, value: str) -> str:
        if value != SPEC_SCHEMA:
            raise ValueError(f"expected {SPEC_SCHEMA!r}")
        return value


# ------------------------------------------------------------------------------ loading
def _line_index(text: str) -> dict[tuple[str | int, ...], int]:
    """YAML path -> 1-based line, from the composed node tree (for errors that name the line)."""
    index: dict[tuple[str | int, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        index[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(value, (*path, str(key.value)))
                index[(*path, str(key.value))] = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return index


def _line_of(index: dict[tuple[str | int, ...], int], loc: tuple[Any, ...]) -> int | None:
    path = tuple(loc)
    while path:
        if path in index:
            return index[path]
        path = path[:-1]
    return index.get(())


def load_spec(path: str | Path) -> tuple[Experiment, Path]:
    """The validated experiment of a YAML file, and the folder its relative paths start from."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{source}: experiment spec not found") from None
    except IsADirectoryError:
        raise InputError(f"{source}: is a directory, not an experiment spec") from None
    except UnicodeDecodeError:
        raise InputError(f"{source}: not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
        index = _line_index(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise InputError(f"{source}{where}: not YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise InputError(f"{source}: an experiment spec is a YAML mapping (name:, model:, ...)")
    data.setdefault("schema", SPEC_SCHEMA)
    try:
        spec = Experiment.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc) or "(top)"
        line = _line_of(index, loc)
        where = f"{source}:{line}" if line else str(source)
        raise InputError(f"{where}: {field}: {err['msg']}") from None
    for axis in spec.matrix:
        line = _line_of(index, ("matrix", axis))
        _check_axis(spec, axis, f"{source}:{line}" if line else str(source))
    return spec, source.resolve().parent


def _check_axis(spec: Experiment, axis: str, where: str) -> None:
    values = spec.matrix[axis]
    if not values:
        raise InputError(f"{where}: matrix.{axis}: give at least one value")
    head = axis.split(".")[0]
    if head not in Experiment.model_fields or head in ("matrix", "name", "schema_"):
        raise InputError(f"{where}: matrix.{axis}: not a spec field (e.g. hardware.knobs.num_cus)")


# ------------------------------------------------------------------------------ the matrix
def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise InputError(f"matrix.{dotted}: {part} is not a mapping")
    node[parts[-1]] = value


def variants(spec: Experiment) -> list[tuple[str, Experiment]]:
    """Every combination of the matrix axes' values: (variant label, the spec with them set)."""
    if not spec.matrix:
        return [("", spec)]
    axes = list(spec.matrix)
    out = []
    base = spec.model_dump(by_alias=True, exclude={"matrix"})
    for combo in itertools.product(*(spec.matrix[a] for a in axes)):
        data = copy.deepcopy(base)
        for axis, value in zip(axes, combo, strict=True):
            _set_path(data, axis, value)
        label = "-".join(
            f"{axis.split('.')[-1]}{_label(value)}" for axis, value in zip(axes, combo, strict=True)
        )
        try:
            out.append((label, Experiment.model_validate(data)))
        except ValidationError as exc:
            err = exc.errors()[0]
            raise InputError(f"matrix {label}: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    return out


def _label(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", str(value)).strip("_")
