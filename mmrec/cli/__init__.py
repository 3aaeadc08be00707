"""The `mmrec` command line: `mmrec COMMAND [--config NAME[:ARG]] [--workdir DIR] [--config.a.b=V]`.

Each command registers itself with `@command(NAME, uses=FLAGS, example=...)`
(mmrec/cli/registry.py, where every flag is defined): the flags it reads (its `--help`
lists only those), and an example. A user mistake is one line, `mmrec COMMAND: what is
wrong, and what to do`, and exit status 2; `--debug` shows the traceback. Configs and
their overrides are read by mmrec/cli/config.py. The commands, by group: data.py
(data build, data import), train.py (train, pretrain, compile, evaluate, recommend),
bundle.py (export, serve, bundle verify), abtest.py, demo.py.
"""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Callable

from absl import flags

# The commands register themselves on import, in this order: the order `mmrec --help` lists.
from mmrec.cli import data, train, bundle, abtest, demo  # noqa: F401  # isort: skip
from mmrec.cli import config as config_lib
from mmrec.cli.config import UsageError
from mmrec.cli.registry import COMMANDS, CONFIG, Command
from mmrec.cli.start import start


def _usage() -> str:
  lines = ["usage: mmrec COMMAND [--config NAME[:ARG] | FILE.py[:ARG]] [--workdir DIR] "
           "[--config.FIELD=VALUE ...]", "", "commands:"]
  for name, cmd in COMMANDS.items():
    summary = textwrap.wrap(_summary(_as_command(cmd).run), 100 - 17)
    lines += [f"  {name:<14} {summary[0]}", *(f"{'':17}{line}" for line in summary[1:])]
  lines += ["", "`mmrec COMMAND --help` lists its flags, with an example."]
  return "\n".join(lines)


def _summary(run: Callable) -> str:
  """The first sentence of a command's docstring, whole."""
  text = " ".join((run.__doc__ or "").split("\n\n")[0].split())
  end = text.find(". ")
  return text if end < 0 else text[:end + 1]


def _as_command(cmd: Command | Callable) -> Command:
  """A registered Command; a plain function (an entry put in COMMANDS directly) reads all
  of the registry's flags."""
  if isinstance(cmd, Command):
    return cmd
  return Command(cmd, tuple(f.name for f in _module_flags() if f.name != "debug"), "")


def _module_flags() -> list:
  """The flags defined in mmrec/cli/registry.py (whatever name it runs under)."""
  for module_flags in flags.FLAGS.flags_by_module_dict().values():
    if any(f.name == "workdir" for f in module_flags):
      return module_flags
  return []


def _help(name: str, cmd: Command) -> str:
  doc = " ".join((cmd.run.__doc__ or "").split())
  lines = [f"usage: mmrec {name} [flags]", "", *textwrap.wrap(doc, 100)]
  if cmd.example:
    lines += ["", "example:", f"  {cmd.example}"]
  lines += ["", "flags:"]
  known = {f.name: f for f in _module_flags()}
  for flag_name in [*cmd.flags, "debug"]:
    flag = known[flag_name]
    default = "" if flag.default is None else f" (default: {flag.default!r})"
    lines += textwrap.wrap(f"--{flag.name}: {flag.help}{default}", 100, initial_indent="  ",
                           subsequent_indent="      ")
  if "config" in cmd.flags:
    lines += ["  --config.FIELD=VALUE: override any field of the config (a typo is refused, "
              "with a suggestion)"]
  return "\n".join(lines)


# Exceptions, by class name (anywhere in the class's bases), that are the user's mistake:
# printed as one line, without a traceback unless --debug.
USER_ERRORS = {"UsageError", "DataImportError", "BundleError", "CheckpointError"}
RUN_COMMANDS = ("evaluate", "export", "recommend", "abtest")  # they reuse WORKDIR/config.json
NO_JAX = ("serve", "bundle verify")  # numpy + scann only: they skip _quiet's jax and TFDS
POSITIONAL = {"data import": "format", "bundle verify": "bundle"}  # the word after the name


def main(argv: list[str] | None = None) -> None:
  argv = list(sys.argv if argv is None else argv)
  words = argv[1:3]
  name = next((n for n in COMMANDS if n.split() == words[:len(n.split())]), None)
  if name is None:
    asked = argv[1:2] in (["-h"], ["--help"])
    if argv[1:] and not asked:
      word = " ".join(w for w in words if not w.startswith("-"))
      print(f"mmrec: unknown command {word!r}{config_lib.did_you_mean(word, COMMANDS)}",
            file=sys.stderr)
    print(_usage(), file=sys.stdout if asked else sys.stderr)
    sys.exit(0 if asked else 2)
  cmd = _as_command(COMMANDS[name])
  rest = argv[1 + len(name.split()):]
  if name in POSITIONAL and rest and not rest[0].startswith("-"):
    rest = [f"--{POSITIONAL[name]}={rest[0]}", *rest[1:]]  # `mmrec data import FORMAT ...`
  if {"-h", "--help"} & set(rest):
    print(_help(name, cmd))
    return
  debug = any(a in ("--debug", "--debug=true") for a in rest)
  started = time.perf_counter()
  try:
    rest, CONFIG.overrides = config_lib.split_overrides(rest)
    _parse_flags(name, cmd, rest)
    if "config" in cmd.flags and name not in RUN_COMMANDS:
      CONFIG.value  # a bad config name or override stops here, before any work
    summary = cmd.run() if name in NO_JAX else _quiet(cmd, name)()
  except Exception as e:  # user errors become one line
    if debug or not any(c.__name__ in USER_ERRORS for c in type(e).__mro__):
      raise
    message = str(e)
    if "did you mean" not in message:
      message += config_lib.suggest_choice(message)
    print(f"mmrec {name}: {message}", file=sys.stderr)
    sys.exit(2)
  if name != "serve":
    print(f"mmrec {name}: done in {_duration(time.perf_counter() - started)}"
          + (f"; {summary}" if summary else ""))


def _parse_flags(name: str, cmd: Command, args: list[str]) -> None:
  """Parses `args` into absl's flags; an unknown flag, a bad value or another command's
  flag is a UsageError."""
  try:
    extra = flags.FLAGS([f"mmrec {name}", *args])[1:]
  except flags.UnrecognizedFlagError as e:
    raise UsageError(f"unknown flag --{e.flagname}"
                     f"{config_lib.did_you_mean(e.flagname, cmd.flags)}; "
                     f"`mmrec {name} --help` lists its flags") from None
  except flags.Error as e:
    raise UsageError(f"{e}; `mmrec {name} --help` lists its flags") from None
  from absl import logging
  logging.use_absl_handler()
  if extra:
    raise UsageError(f"unexpected argument {extra[0]!r}; flags are --NAME=VALUE")
  foreign = [f.name for f in _module_flags() if f.present and f.name not in (*cmd.flags, "debug")]
  if foreign:
    raise UsageError(f"--{foreign[0]} is not a flag of `mmrec {name}` (its flags: "
                     f"{', '.join('--' + f for f in cmd.flags)})")


def _duration(seconds: float) -> str:
  minutes, seconds = divmod(round(seconds), 60)
  return f"{minutes}m {seconds:02d}s" if minutes else f"{seconds}s"


def _quiet(cmd: Command, name: str) -> Callable[[], str | None]:
  """Keep library INFO logs, TFDS progress bars and libtpu's probing (on machines without
  a TPU) out of the job's output."""

  def run():
    from absl import logging
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    if not cmd.checks_first:
      start(distributed=name != "compile")
    return cmd.run()

  return run
