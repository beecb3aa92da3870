"""Guest drivers: the Python scripts baked into the disk image and run by the gem5 runscript.

The scripts in this directory (``hf.py``, ``vllm_driver.py``, ``layer.py`` plus their siblings
``markers.py`` and ``common.py``) are self-contained: stdlib + torch + transformers (+ vLLM)
only, because layerlab is not installed in the guest. The image stage copies this directory to
``GUEST_DIR``; the host side (gem5 configs, orchestrator) builds the command line with
``guest_argv`` so both sides agree on flag names.
"""

from __future__ import annotations

from pathlib import Path

from foundation.errors import InputError, unknown_name

#: Where the image stage installs these scripts inside the guest.
GUEST_DIR = "/opt/layerlab/drivers"
#: Where the image stage installs the shipped model config.json files (for the ``layer`` driver).
GUEST_CONFIG_DIR = "/opt/layerlab/model_configs"
#: Where the image stage installs a recipe's model files (``GUEST_MODEL_DIR/<model name>``).
GUEST_MODEL_DIR = "/opt/layerlab/models"
#: The guest's Python (the images ship python3; the scripts need no virtualenv).
GUEST_PYTHON = "python3"
#: Driver name → script file in this directory.
DRIVERS = {"hf": "hf.py", "vllm": "vllm_driver.py", "layer": "layer.py"}
#: Files the image must contain for the drivers to run.
GUEST_FILES = ("hf.py", "vllm_driver.py", "layer.py", "markers.py", "common.py")
HERE = Path(__file__).resolve().parent


def script_path(driver: str) -> Path:
    """The host copy of a driver script (what the image stage copies into ``GUEST_DIR``)."""
    if driver not in DRIVERS:
        raise unknown_name("driver", driver, DRIVERS)
    return HERE / DRIVERS[driver]


def guest_argv(
    driver: str, options: dict[str, object] | None = None, python: str = GUEST_PYTHON
) -> list[str]:
    """argv that runs ``driver`` in the guest, e.g. ``guest_argv("layer", {"config": p, "context": 1024})``.

    Option names use underscores (``decode_steps``) and become ``--decode-steps``; ``True``
    becomes a bare flag, ``False``/``None`` drops the option. The result is an argv list: the
    caller quotes it for the runscript (``shlex.join``), never a shell string built from user text.
    """
    if driver not in DRIVERS:
        raise unknown_name("driver", driver, DRIVERS)
    argv = [python, f"{GUEST_DIR}/{DRIVERS[driver]}"]
    for key, value in (options or {}).items():
        if not key.replace("_", "").isalnum():
            raise InputError(f"driver option {key!r}: only letters, digits and underscores")
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        else:
            argv += [flag, str(value)]
    return argv
