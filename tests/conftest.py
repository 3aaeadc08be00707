"""Shared fixtures: the tiny embedded shop and a tiny model trained on it, once per session."""

import pytest

from mmrec.configs import two_tower
from mmrec.data import sources


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("data")
  cfg = two_tower.get_config("tiny")
  cfg.data.data_dir = str(path)
  sources.build(cfg.data, path)
  return path


@pytest.fixture
def tiny_config(tiny_data_dir):
  """The tiny two-tower config reading the session's tiny shop."""
  cfg = two_tower.get_config("tiny")
  cfg.data.data_dir = str(tiny_data_dir)
  cfg.train.log_every = 10
  cfg.train.checkpoint_every = 10
  return cfg


@pytest.fixture(scope="session")
def tiny_workdir(tiny_data_dir, tmp_path_factory):
  """A WORKDIR with a tiny two-tower trained for 20 steps (config.json, checkpoints), for
  commands that reuse a trained model; tests must not change its config or checkpoints."""
  from mmrec.training import two_tower as train_lib
  workdir = tmp_path_factory.mktemp("tiny_workdir")
  cfg = two_tower.get_config("tiny")
  cfg.data.data_dir = str(tiny_data_dir)
  cfg.train.steps = 20
  cfg.train.checkpoint_every = 10
  train_lib.train(cfg, workdir)
  return workdir
