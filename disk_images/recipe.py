"""Image recipes: a YAML file saying what goes into a derived image (``images/*.yaml``).

A recipe names a base image and kernel (local paths, or URLs with a sha256), an optional model
directory, optional wheels, how much free space to leave, and how to touch the filesystem
(``access``, and ``docker_image`` for the docker route). Paths are relative to the recipe
file. Command-line values (``--base``, ``--kernel``; ``make image BASE=… KERNEL=…``) override the
recipe's. Errors name the field and the line: ``images/x.yaml:7: model.path: ...``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from foundation.errors import InputError

DEFAULT_RECIPE = Path(__file__).resolve().parents[1] / "images" / "default.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """A base image or kernel: a local ``path``, or a ``url`` (``.gz`` is decompressed) with ``sha256``."""

    path: str | None = None
    url: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^(sha256:)?[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _one(self) -> Source:
        if self.path and self.url:
            raise ValueError("give path or url, not both")
        if self.url and not self.sha256:
            raise ValueError("a url needs its sha256 (downloads are verified)")
        return self


class Model(_Strict):
    """Model files: a local HF snapshot or plain directory, baked in at ``GUEST_MODEL_DIR/<name>``."""

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    path: str | None = None
    hf_repo: str | None = None  # fetched on the host (token from $HF_TOKEN, never written anywhere)
    revision: str = "main"

    @model_validator(mode="after")
    def _one(self) -> Model:
        if bool(self.path) == bool(self.hf_repo):
            raise ValueError("give exactly one of path (a local directory) or hf_repo")
        return self


class Wheels(_Strict):
    """Python packages for the guest, installed into its site-packages from the host (no guest network).

    ``packages`` are fetched with ``pip download --only-binary=:all:`` for the guest's Python and
    platform; ``files`` are local wheel files (vLLM for ROCm has no registry wheel: name it here);
    ``index_url`` / ``find_links`` point pip at another index (e.g. a ROCm torch index) or, as
    paths relative to the recipe, at local folders (offline: a "simple" index, folders of wheels).
    """

    packages: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    index_url: str | None = None
    find_links: tuple[str, ...] = ()
    no_deps: bool = False


class Recipe(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    description: str = ""
    base: Source = Source()
    kernel: Source = Source()
    generation: Literal[2024, 2025] | None = None  # only when the image itself does not tell
    root_partition: int | None = Field(default=None, ge=1, le=128)  # default: the largest ext4 partition
    model: Model | None = None
    wheels: Wheels = Wheels()
    headroom_mib: int = Field(default=1024, ge=0)  # free space left in the root filesystem
    access: Literal["auto", "root", "rootless", "docker"] = "auto"
    #: The container image of the docker route (it needs sh, sleep and e2fsprogs; never pulled).
    docker_image: str | None = Field(default=None, pattern=r"^[\w./:@-]+$")

    def canonical(self) -> str:
        """The recipe as canonical JSON (what the build key hashes): what goes in, not how.

        ``docker_image`` is left out (like ``access``, which ``build`` resets): every route
        writes the same files, so the route never names a different image.
        """
        data = self.model_dump(mode="json", exclude={"docker_image"})
        return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == key), None)
            if match is None:
                match = next((k for k, v in node.value if k.value == key), None)
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
        if node is not None:
            line = node.start_mark.line + 1
    return line


def load_recipe(path: str | Path) -> tuple[Recipe, Path]:
    """``(recipe, folder its relative paths are taken from)``; ``InputError`` naming file, line and field."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"recipe {file}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise InputError(f"recipe {file}: not UTF-8 text (a recipe is YAML)") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise InputError(f"recipe {file}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise InputError(f"recipe {file}: expected a mapping of fields (name, base, kernel, ...)")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(x for x in first["loc"] if not (isinstance(x, str) and x.startswith("function-")))
        field = ".".join(str(x) for x in loc) or "(recipe)"
        line = _line_of(node, loc)
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise InputError(f"recipe {file}:{line}: {field}: {first['msg']}{more}") from None
    return recipe, file.resolve().parent
