"""`mmrec demo` is reproducible: the same seed on the same machine prints the same table
and writes the same comparison, bit for bit."""

import json

from mmrec import demo


def test_two_demo_runs_with_the_same_seed_print_the_same_table(tiny_config, tmp_path, capsys):
  tiny_config.train.steps = 20  # short: sameness, not quality
  tables, rows = [], []
  for run in ("a", "b"):
    workdir = tmp_path / run
    rows.append(demo.run(tiny_config, workdir))
    out = capsys.readouterr().out
    tables.append(out[out.index("== full-ranking metrics"):out.index("mmrec demo finished")])
    assert json.loads((workdir / "comparison.json").read_text()) == rows[-1]
  assert tables[0] == tables[1]
  assert rows[0] == rows[1]  # every metric, not only the printed digits
  assert set(rows[0]) == {"popularity", "two_tower_multimodal", "two_tower_id_only"}
