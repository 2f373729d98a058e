"""Training config: defaults, YAML, dotted overrides, unknown keys, numbers written as 1e-4."""

import pytest

from videogen.training.config import load_config


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("train:\n  learning_rate: 1e-4\n  max_steps: 10\nmodel:\n  transformer: {dim: 32, num_heads: 2}\n")
    cfg = load_config(path, ["train.learning_rate=2e-4", "data.height=32", "model.transformer.num_layers=3",
                             "validation.prompts=[a, b]", "train.ema_decay=null"])
    assert cfg["train"]["learning_rate"] == 2e-4 and isinstance(cfg["train"]["learning_rate"], float)
    assert cfg["train"]["max_steps"] == 10 and cfg["data"]["height"] == 32
    assert cfg["model"]["transformer"] == {"dim": 32, "num_heads": 2, "num_layers": 3}
    assert cfg["validation"]["prompts"] == ["a", "b"] and cfg["train"]["ema_decay"] is None
    assert cfg["data"]["width"] == 64  # defaults fill what the file leaves out
    no_file = load_config(None, ["train.learning_rate=3E-5"])
    assert no_file["train"]["learning_rate"] == 3e-5


@pytest.mark.parametrize("override, message", [
    ("train.max_stepz=3", "unknown config key 'train.max_stepz'"),
    ("trian.max_steps=3", "unknown config key 'trian'"),
    ("train.max_steps", "must look like key.sub=value"),
    ("task=unet", "task must be 'dit', 'vae', 'camera' or 'trajectory'"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [override])


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
