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
  _check_readme_block(tmp_path / "b", tables[1])


def _check_readme_block(workdir, printed):
  """tools/readme_results.py puts the printed table, and the run's time, into the README
  block, and leaves the rest of the README as it was."""
  import importlib.util
  import pathlib
  path = pathlib.Path(__file__).resolve().parent.parent / "tools" / "readme_results.py"
  spec = importlib.util.spec_from_file_location("readme_results", path)
  tool = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tool)
  new = tool.block(workdir)
  table = printed.split("\n", 1)[1].strip()  # the lines after the "== full-ranking" header
  assert table in new
  seconds = json.loads((workdir / demo.RUN_FILE).read_text())["seconds"]
  assert f"finished in {seconds:.0f} s" in new
  readme = f"intro\n{tool.START}\nold table\n{tool.END}\noutro\n"
  assert tool.rewrite(readme, new) == f"intro\n{new}\noutro\n"
  rows = json.loads((workdir / "comparison.json").read_text())
  for name, m in rows.items():  # every model's recall@20 with its interval, as computed
    assert (f"| {name} | {m['recall@20']:.4f} [{m['recall@20/ci_low']:.4f}, "
            f"{m['recall@20/ci_high']:.4f}] |") in new
