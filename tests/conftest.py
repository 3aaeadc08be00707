"""Shared fixtures: the tiny embedded shop, built once per test session."""

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
