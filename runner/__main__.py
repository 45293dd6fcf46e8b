"""``python -m runner``: Hydra composes the config, then one run (or one per sweep point) executes.

Exit codes: 0 success; 1 Hydra's own errors (bad override, unknown group or key, wrong type);
2 invalid config value or input file; 3 unexpected error (a bug; its traceback is shown);
130 interrupted by SIGINT, 143 by SIGTERM. A sweep exits with the worst of its jobs' codes.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from runner.config import RunConf, register_configs
from runner.errors import EXIT_CONFIG, EXIT_INTERNAL, EXIT_OK, ConfigError, Interrupted
from runner.guard import check_command_line, split_command_line
from runner.jobs import config_digest, default_threads, prepare_run_dir

register_configs()
log = logging.getLogger("runner")

# Overrides added to every command line unless the user gives them: the saved config of a run
# (``--config-path <run dir>/.hydra``) carries no ``hydra:`` node, and a re-run must still log to
# runner.log in the same format.
HYDRA_DEFAULTS = ("hydra.job.name=runner", "hydra/job_logging=runner")

exit_code = EXIT_OK


def _typed_config(cfg: DictConfig) -> dict:
    """The config checked against the schema (again, for re-runs of saved configs) as a dict."""
    try:
        # Composed from the package's configs, it is typed already; a saved config is plain.
        typed = cfg if OmegaConf.get_type(cfg) is RunConf else OmegaConf.merge(OmegaConf.structured(RunConf), cfg)
        return OmegaConf.to_container(typed, resolve=True)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", "") or ""
        message = str(err).splitlines()[0]
        raise ConfigError(f"{key}: {message}" if key else message, key=key) from None


def _fail(err: BaseException, code: int) -> None:
    global exit_code
    exit_code = max(exit_code, code)
    line = f"error: {err}" if isinstance(err, ConfigError) else f"error: {type(err).__name__}: {err}"
    log.error(line)
    print(line, file=sys.stderr, flush=True)


def _on_sigterm(signum: int, frame: object) -> None:
    raise Interrupted("interrupted by SIGTERM")


@hydra.main(version_base=None, config_path="pkg://runner.conf", config_name="config")
def task(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    run_dir = hydra_cfg.runtime.output_dir
    debug = bool(cfg.get("debug", False)) or os.environ.get("HYDRA_FULL_ERROR") == "1"
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    from runner.app import run  # here, not at the top: --help and --cfg need none of it

    try:
        plain = _typed_config(cfg)
        if not prepare_run_dir(Path(run_dir), config_digest(plain), multirun=multirun):
            print(f"job {hydra_cfg.job.num}: already completed in {run_dir}; skipped", flush=True)
            return
        if plain["threads"] is None and multirun:
            plain["threads"] = default_threads(hydra_cfg.get("launcher"))
        run(plain, run_dir, base_dir=hydra_cfg.runtime.cwd)
    except ConfigError as err:
        if debug:
            raise
        _fail(err, EXIT_CONFIG)
    except Exception as err:  # a bug, not bad input: keep the traceback
        if debug:
            raise
        traceback.print_exc()
        _fail(err, EXIT_INTERNAL)


def _with_defaults(argv: list[str]) -> list[str]:
    given = {arg.split("=", 1)[0].lstrip("+~") for arg in argv if "=" in arg}
    mode = "hydra.mode=MULTIRUN" if split_command_line(argv)[2] else "hydra.mode=RUN"
    extra = [d for d in (*HYDRA_DEFAULTS, mode) if d.split("=", 1)[0] not in given]
    # Hydra's parser takes the overrides as one run of arguments: join the user's, if any.
    at = next((i for i, arg in enumerate(argv) if "=" in arg and not arg.startswith("-")), len(argv))
    return argv[:at] + extra + argv[at:]


def _mode_from_command_line() -> None:
    """Lets Hydra take the run mode from the ``hydra.mode`` override instead of composing for it.

    Hydra 1.3 composes the whole config once only to read ``hydra.mode`` and then again to run;
    each composition of the runner's config costs 60-100 ms of a 0.4-0.6 s start. The runner always puts the mode on the command line
    (``-m`` or not, as its checks before Hydra assume too), so the first composition is skipped;
    a mode set inside a config file is overridden by the command line's, as Hydra does for
    ``-m`` itself.
    """
    from hydra._internal.hydra import Hydra

    compose_for_mode = Hydra.get_mode

    def get_mode(self, config_name, overrides):
        given = [arg.partition("=")[2] for arg in overrides if arg.partition("=")[0] == "hydra.mode"]
        if given and given[-1] in RunMode.__members__:
            return RunMode[given[-1]]
        return compose_for_mode(self, config_name, overrides)

    Hydra.get_mode = get_mode


def main() -> None:
    try:
        check_command_line(sys.argv[1:], Path.cwd())
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(EXIT_CONFIG)
    sys.argv = [sys.argv[0], *_with_defaults(sys.argv[1:])]
    _mode_from_command_line()
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        task()
    except (KeyboardInterrupt, Interrupted) as err:
        sigterm = isinstance(err, Interrupted)
        print(f"error: interrupted by {'SIGTERM' if sigterm else 'SIGINT'}", file=sys.stderr, flush=True)
        sys.exit(128 + (signal.SIGTERM if sigterm else signal.SIGINT))
    from runner import sweep

    sys.exit(max(exit_code, sweep.exit_code))


if __name__ == "__main__":
    main()
