"""Checks of the command line made before Hydra starts.

Hydra instantiates any ``_target_`` it finds in its own config (callbacks, for instance), and it
writes a run's ``.hydra/`` before the task starts. So two things are checked first:

* no override and no YAML file of a user-given config directory names a ``_target_`` outside the
  short list of Hydra's own plugins and the runner's callback: configs build layers,
  activations and datasets by registry name only, and a config file received from someone else
  cannot make the runner import or call anything;
* an explicit ``hydra.run.dir`` that already holds a run is refused before Hydra writes into it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

from runner.errors import ConfigError
from runner.jobs import run_dir_taken
from runner.record import RECORD

ALLOWED_TARGET_PREFIXES = ("hydra._internal.", "hydra_plugins.")
ALLOWED_TARGETS = {"runner.sweep.SweepSummary"}


def target_allowed(target: Any) -> bool:
    return isinstance(target, str) and (target in ALLOWED_TARGETS or target.startswith(ALLOWED_TARGET_PREFIXES))


def _targets(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            # logging's dictConfig calls "()" factories and imports handler "class"es: the same risk.
            if key in ("_target_", "()") or (key == "class" and not str(value).startswith("logging.")):
                yield where, value
            else:
                yield from _targets(value, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _targets(value, f"{path}[{i}]")


def check_config_dir(folder: Path) -> None:
    """Refuses any ``_target_`` (or logging factory) outside the allowed ones under ``folder``."""
    import yaml

    files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.suffix in (".yaml", ".yml"))
    for file in files:
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue  # Hydra reports unreadable configs itself
        for where, target in _targets(data):
            if not target_allowed(target):
                raise ConfigError(
                    f"{file}: {where}={target} is refused: configs name layers, activations and datasets "
                    f"by registry name, never by import path", key=where)


def split_command_line(argv: list[str]) -> tuple[dict[str, str], list[str], bool]:
    """``(options with values, overrides, multirun)`` of a Hydra command line."""
    with_value = {"--config-path": "config_path", "-cp": "config_path", "--config-dir": "config_dir",
                  "-cd": "config_dir", "--config-name": "config_name", "-cn": "config_name"}
    options: dict[str, str] = {}
    overrides: list[str] = []
    multirun = False
    args = iter(argv)
    for arg in args:
        name, eq, value = arg.partition("=")
        if name in with_value:
            options[with_value[name]] = value if eq else next(args, "")
        elif arg in ("-m", "--multirun"):
            multirun = True
        elif not arg.startswith("-"):
            overrides.append(arg)
    return options, overrides, multirun


# Launcher options and the plugin (and the extra of this package) that provides each.
LAUNCHER_PLUGINS = {
    "joblib": ("hydra_plugins.hydra_joblib_launcher", "hydra-joblib-launcher", "parallel"),
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher", "cluster"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher", "cluster"),
    "slurm_cpu": ("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher", "cluster"),
}


def check_launcher(choice: str) -> None:
    """A launcher whose plugin is not installed gets the name of the extra that installs it."""
    import importlib.util

    if choice in LAUNCHER_PLUGINS:
        module, dist, extra = LAUNCHER_PLUGINS[choice]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(f"hydra/launcher={choice}: needs the {dist} plugin, which is not installed; "
                              f"install it with: pip install 'fwdrunner[{extra}]'", key="hydra/launcher")


def check_command_line(argv: list[str], cwd: Path) -> None:
    options, overrides, multirun = split_command_line(argv)
    for arg in overrides:
        key, _, value = arg.lstrip("+~").partition("=")
        if key == "hydra/launcher":
            check_launcher(value)
    for arg in overrides:
        if "_target_" in arg:
            key = arg.split("=", 1)[0]
            raise ConfigError(f"{arg}: a _target_ is refused; configs name layers, activations and datasets "
                              f"by registry name, never by import path", key=key)
    for option in ("config_path", "config_dir"):
        folder = options.get(option)
        if folder and not folder.startswith("pkg://") and (cwd / folder).exists():
            check_config_dir(cwd / folder)
    dir_key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = [arg.partition("=")[2] for arg in overrides if arg.partition("=")[0] == dir_key]
    folder = given[-1] if given else "outputs"
    if not multirun and given and (cwd / folder / RECORD).exists():
        raise run_dir_taken(folder)
    if not INFO_FLAGS.intersection(argv):
        check_writable(cwd / folder, f"{dir_key}={folder}" if given else f"{cwd} (where outputs/ goes)",
                       create=bool(given))


# Flags with which Hydra prints and exits: nothing is written, nothing to check.
INFO_FLAGS = {"--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc",
              "--version"}


def check_writable(folder: Path, what: str, *, create: bool) -> None:
    """Checks that the run can write in ``folder``; creates it first when ``create`` (Hydra would)."""
    if "${" in str(folder):
        return  # an interpolation: Hydra resolves it
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"{what}: cannot create the directory ({err.strerror})", key=what) from None
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not (existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)):
        raise ConfigError(f"{what}: {existing} is not a writable directory", key=what)
