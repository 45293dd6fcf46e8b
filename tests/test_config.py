"""Every shipped config composes, resolves against the schema, and yields a valid plan."""

from __future__ import annotations

from importlib import resources

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from runner.app import make_plan
from runner.config import register_configs
from runner.errors import ConfigError

register_configs()


def shipped(group: str) -> list[str]:
    folder = resources.files("runner.conf") / group
    return sorted(p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml"))


def compose_cfg(*overrides: str):
    with initialize_config_module(config_module="runner.conf", version_base=None):
        return compose(config_name="config", overrides=list(overrides))


@pytest.mark.parametrize("network", shipped("network"))
def test_every_network_config_makes_a_valid_plan(network, tmp_path):
    cfg = compose_cfg(f"network={network}")
    plan = make_plan(OmegaConf.to_container(cfg, resolve=True), base_dir=str(tmp_path))
    assert len(plan.layers) == len(cfg.network.layers)
    for before, after in zip(plan.layers, plan.layers[1:]):
        assert after.prev == before.n
    assert [s.kind for s in plan.layers][-1] == "output"


@pytest.mark.parametrize("dataset", shipped("dataset"))
def test_every_dataset_config_composes(dataset, tmp_path):
    import numpy as np

    overrides = [f"dataset={dataset}", "network.layers.0.prev=null"]  # the width comes from the data
    if dataset == "file":
        np.save(tmp_path / "x.npy", np.zeros((3, 100)))
        overrides.append(f"dataset.path={tmp_path / 'x.npy'}")
    cfg = compose_cfg(*overrides)
    plan = make_plan(OmegaConf.to_container(cfg, resolve=True), base_dir=str(tmp_path))
    assert plan.source.features == plan.layers[0].prev


def test_layer_defaults_are_filled_in(tmp_path):
    cfg = compose_cfg("wb_width=0.3", "+network.layers.2.wb_width=2.0", "network.layers.2.name=null")
    plan = make_plan(OmegaConf.to_container(cfg, resolve=True), base_dir=str(tmp_path))
    assert [s.kind for s in plan.layers] == ["middle", "middle", "output"]
    assert [s.wb_width for s in plan.layers] == [0.3, 0.3, 2.0]
    assert [s.name for s in plan.layers] == ["h1", "h2", "layer2"]
    assert [s.prev for s in plan.layers] == [100, 100, 100]


def test_schema_rejects_wrong_types_at_compose_time():
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg("network.layers.0.n=abc")
    assert "network.layers[0].n" in str(err.value.__cause__) or "abc" in str(err.value.__cause__)
    with pytest.raises(ConfigCompositionException):
        compose_cfg("seed=one")



def test_layer_keys_outside_the_schema_are_refused(tmp_path):
    # Hydra's "+" adds keys even to typed nodes; the plan refuses them, _target_ included.
    cfg = compose_cfg("+network.layers.0._target_=os.system")
    with pytest.raises(ConfigError, match=r"network.layers\[0\]._target_: not a layer key; accepted: n, prev"):
        make_plan(OmegaConf.to_container(cfg, resolve=True), base_dir=str(tmp_path))


def test_kernels_auto_compiles_only_runs_large_enough(monkeypatch):
    from runner import build

    monkeypatch.setattr(build, "compiled_available", lambda: True)
    big = build.COMPILED_MIN_VALUES
    rows = -(-big // 500)            # the fewest rows of five 100-wide GELU layers that reach it
    gelu = [(100, "GELU")] * 5
    assert build.use_compiled("auto", rows=rows, layers=gelu)
    assert not build.use_compiled("auto", rows=rows - 1, layers=gelu)
    # piecewise-linear layers gain only the bias pass: 16 times the rows
    assert not build.use_compiled("auto", rows=rows, layers=[(100, "ReLU")] * 5)
    assert build.use_compiled("auto", rows=16 * rows, layers=[(100, "ReLU")] * 5)
    # a layer without a compiled loop adds nothing; one GELU layer of five counts alone
    assert not build.use_compiled("auto", rows=100 * rows, layers=[(100, "Mish")] * 5)
    mixed = [(100, "ReLU")] * 4 + [(100, "GELU")]
    at = -(-big // (4 * 100 // 16 + 100))    # 125 weighted values a row
    assert build.use_compiled("auto", rows=at, layers=mixed)
    assert not build.use_compiled("auto", rows=at - 1, layers=mixed)
    assert build.use_compiled("compiled", rows=1, layers=[(1, "Mish")])
    assert not build.use_compiled("numpy", rows=big, layers=gelu)
    monkeypatch.setattr(build, "compiled_available", lambda: False)
    assert not build.use_compiled("auto", rows=big, layers=gelu)
