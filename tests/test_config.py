"""Settings are validated before any work, and TOML + flags merge in a fixed order."""

from __future__ import annotations

import pytest

from lpfl.config import ConfigError, RunConfig, load_toml, make_config


@pytest.mark.parametrize(
    ("overrides", "flag"),
    [
        ({"bits": 1}, "--bits"),
        ({"bits": 17}, "--bits"),
        ({"bits": 24}, "--bits"),
        ({"alpha": 0.0}, "--alpha"),
        ({"alpha": -1.0}, "--alpha"),
        ({"participation": 0.0}, "--participation"),
        ({"participation": 1.5}, "--participation"),
        ({"dataset": "mnist"}, "--dataset"),
        ({"model": "vgg"}, "--model"),
        ({"clients": 0}, "--clients"),
        ({"rounds": 0}, "--rounds"),
        ({"moving_average": 1.0}, "--moving-average"),
        ({"rounding": "up"}, "--rounding"),
        ({"weight_block": "C"}, "--weight-block"),
        ({"lr": 0.0}, "--lr"),
        ({"lr": float("inf")}, "--lr"),
        ({"alpha": float("nan")}, "--alpha"),
        ({"fedftg_lr": float("inf")}, "--fedftg-lr"),
        ({"seed": -1}, "--seed"),
        ({"seed": 2**64}, "--seed"),
    ],
)
def test_invalid_values_name_their_flag(overrides, flag):
    with pytest.raises(ConfigError, match=f"^{flag}:"):
        make_config(**overrides)


def test_defaults_are_the_reference_setting():
    cfg = RunConfig()
    assert (cfg.clients, cfg.participation, cfg.batch_size, cfg.lr, cfg.optimizer) == (
        80,
        0.4,
        32,
        1e-3,
        "adam",
    )
    assert (cfg.bits, cfg.moving_average, cfg.weight_block, cfg.act_block) == (
        8,
        0.9,
        "BC",
        "tensor",
    )
    assert cfg.clients_per_round == 32


def test_toml_then_flags(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('dataset = "fmnist"\nbatch-size = 64\nlr = 1\nmoving_average = 0.5\n')
    assert load_toml(path)["lr"] == 1.0
    cfg = make_config(str(path), batch_size=16)
    assert (cfg.dataset, cfg.batch_size, cfg.lr, cfg.moving_average) == ("fmnist", 16, 1.0, 0.5)


def test_toml_errors_are_clear(tmp_path):
    bad_key = tmp_path / "k.toml"
    bad_key.write_text("bitz = 8\n")
    with pytest.raises(ConfigError, match="unknown key 'bitz'"):
        make_config(str(bad_key))
    bad_type = tmp_path / "t.toml"
    bad_type.write_text('bits = "eight"\n')
    with pytest.raises(ConfigError, match="--bits: expected int"):
        make_config(str(bad_type))
    broken = tmp_path / "b.toml"
    broken.write_text("bits = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        make_config(str(broken))
    with pytest.raises(ConfigError, match="no such file"):
        make_config(str(tmp_path / "missing.toml"))


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("LPFL_DATA", str(tmp_path))
    assert RunConfig().resolved_data_dir() == tmp_path
    assert RunConfig(data_dir="/x").resolved_data_dir().as_posix() == "/x"
    monkeypatch.delenv("LPFL_DATA")
    assert RunConfig().resolved_data_dir().parts[-2:] == (".cache", "lpfl")
