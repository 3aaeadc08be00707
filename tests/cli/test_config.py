"""mmrec.cli.config: packaged config names, and every field overridable from the command
line (None defaults and tuples included), each value read with its field's type."""

import pathlib

import pytest

from mmrec.cli import config as config_lib
from mmrec.cli.config import UsageError
from mmrec.configs import movielens, pretrain, tpu, two_tower
from mmrec.data import split
from mmrec.data.importers import FORMATS

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_packaged_names_give_the_modules_configs():
  assert config_lib.packaged_configs() == ["movielens", "pretrain", "tpu", "two_tower"]
  config, filename = config_lib.load("two_tower:tiny,id_only")
  assert config == two_tower.get_config("tiny,id_only") and filename == two_tower.__file__
  assert config_lib.load("movielens:ml100k")[0] == movielens.get_config("ml100k")
  assert config_lib.load("pretrain")[0] == pretrain.get_config()  # no arg: the default
  # a TPU target by name equals its file in tpu_configs/ (the launch script's)
  by_file = config_lib.load(str(ROOT / "tpu_configs" / "v4_8.py") + ":tiny")[0]
  assert config_lib.load("tpu:v4_8,tiny")[0] == by_file == tpu.get_config("v4_8,tiny")


def test_a_file_path_loads_as_the_same_config(tmp_path):
  path = tmp_path / "mine.py"
  path.write_text("from mmrec.configs import two_tower\n\n"
                  "def get_config(arg='tiny'):\n  c = two_tower.get_config(arg)\n"
                  "  c.train.steps = 7\n  return c\n")
  config, filename = config_lib.load(f"{path}:small")
  want = two_tower.get_config("small")
  want.train.steps = 7
  assert config == want and filename == str(path)


def _overridden(*pairs):
  config = two_tower.get_config("tiny")
  config_lib.apply(config, list(pairs))
  return config


@pytest.mark.parametrize("field, text, want", [
    ("data.split.cut_times", "(1.6e9, 1.7e9)", (1.6e9, 1.7e9)),  # None by default
    ("data.split.cut_times", "None", None),
    ("train.frozen_encoders", "()", ()),
    ("train.frozen_encoders", "text,image", ("text", "image")),
    ("train.frozen_encoders", "('text',)", ("text",)),
    ("eval.ks", "5,10", (5, 10)),
    ("eval.ks", "20", (20,)),
    ("train.steps", "12", 12),
    ("train.learning_rate", "3e-4", 3e-4),
    ("train.learning_rate", "1", 1.0),
    ("model.use_id", "false", False),
    ("model.use_id", "True", True),
    ("model.text.width", "16", 16),  # a dict in the config file
    ("model.warm_start.checkpoint", "runs/pt", "runs/pt"),
    ("data.protocol", "temporal", "temporal"),
])
def test_overrides_take_the_fields_type(field, text, want):
  node, name = config_lib.resolve(_overridden((field, text)), field)
  assert node[name] == want and type(node[name]) is type(want)


def test_every_field_can_be_overridden_with_its_own_value():
  config = two_tower.get_config("small")
  fields = []

  def walk(node, prefix):
    for key, value in node.items():
      if hasattr(value, "items"):
        walk(value, f"{prefix}{key}.")
      else:
        fields.append((f"{prefix}{key}", value))

  walk(config, "")
  assert ("data.split.cut_times", None) in fields and len(fields) > 80
  for field, value in fields:
    text = ",".join(map(repr, value)) if isinstance(value, tuple) and value else repr(value)
    if isinstance(value, str):
      text = value
    copy = two_tower.get_config("small")
    config_lib.apply(copy, [(field, text)])
    assert copy == config, field


@pytest.mark.parametrize("field, text, message", [
    ("train.stpes", "3", "--config.train.stpes: no field 'stpes' in config.train; did you mean "
     "'steps'?"),
    ("modle.embed_dim", "3", "--config.modle.embed_dim: no field 'modle' in config; did you "
     "mean 'model'?"),
    ("train.steps.x", "3", "--config.train.steps.x: config.train.steps is a value, not a section"),
    ("train.steps", "1.5", "--config.train.steps=1.5: expected an integer (it is 60 now)"),
    ("model.use_id", "maybe", "--config.model.use_id=maybe: expected true or false (it is True "
     "now)"),
    ("model.text", "3", "--config.model.text is a section; override its fields, e.g. "
     "--config.model.text.embed_norm=VALUE"),
    ("eval.split", "vaild", "--config.eval.split=vaild: choose from valid, test; did you mean "
     "'valid'?"),
])
def test_bad_overrides_say_what_is_wrong(field, text, message):
  with pytest.raises(UsageError) as e:
    _overridden((field, text))
  assert str(e.value) == message


def test_choices_are_those_the_code_accepts():
  assert config_lib.CHOICES["data.size"] == two_tower.SIZES
  assert set(config_lib.CHOICES["data.protocol"]) == set(split.PROTOCOLS)
  assert config_lib.CHOICES["data.import_.format"] == FORMATS


def test_split_overrides_takes_both_spellings():
  rest, overrides = config_lib.split_overrides(
      ["--workdir=w", "--config.train.steps=5", "--config.eval.split", "valid", "--k", "3"])
  assert rest == ["--workdir=w", "--k", "3"]
  assert overrides == [("train.steps", "5"), ("eval.split", "valid")]
  with pytest.raises(UsageError, match=r"--config.train.steps: give a value"):
    config_lib.split_overrides(["--config.train.steps"])


@pytest.mark.parametrize("spec, hint", [
    ("two_tower:smal", "did you mean 'small'?"), ("two_tower:tiny,minlm", "did you mean 'minilm'?"),
    ("movielens:ml1n", "did you mean 'ml1m'?"), ("two_towers", "did you mean 'two_tower'?"),
    ("pretrain:small,image_txt", "did you mean 'image_text'?")])
def test_unknown_names_in_a_config_spec_get_a_suggestion(spec, hint):
  with pytest.raises(UsageError) as e:
    config_lib.load(spec)
  assert str(e.value).startswith(f"--config {spec}: ") and hint in str(e.value)
