"""TensorBoard scalars that survive kill -9: each `write` is on disk when it returns.

tensorboardX's SummaryWriter hands events to a background thread through a queue, and its
`flush()` does not drain that queue, so a killed run loses the points it logged last.
This writes the same event files (tensorboardX's record writer and protos) synchronously;
`read_scalars` reads them back (tests, notebooks), without TensorBoard.
"""

from __future__ import annotations

import os
import pathlib
import re
import struct
import time

from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto import event_pb2
from tensorboardX.summary import scalar


class ScalarLog:
  """Scalars of a run, in `logdir/events.out.tfevents.*` (one new file per writer)."""

  def __init__(self, logdir: str | os.PathLike):
    pathlib.Path(logdir).mkdir(parents=True, exist_ok=True)
    # The pid keeps a resumed run that starts within the same second from reusing
    # (and truncating) the file of the run before it.
    self._events = EventsWriter(os.path.join(logdir, "events"), f".{os.getpid()}")

  def write(self, step: int, scalars: dict[str, float]) -> None:
    """Appends `scalars` at `step` and flushes them to the OS (kept if the process dies)."""
    now = time.time()
    for tag, value in scalars.items():
      self._events.write_event(event_pb2.Event(wall_time=now, step=step,
                                               summary=scalar(tag, float(value))))
    self._events.flush()

  def close(self) -> None:
    self._events.close()


def tensorboard_tag(name: str) -> str:
  r"""The tag `name` is stored under: tensorboardX keeps only [-/\w.] (valid/recall@20 is
  shown as valid/recall_20)."""
  return re.sub(r"[^-/\w.]", "_", name).lstrip("/")


def read_scalars(logdir: str | os.PathLike, name: str) -> dict[int, float]:
  """{step: value} of the scalar `name` in `logdir`'s event files (TFRecord framing, no CRC
  check; a torn record at the end of a file, from a killed run, is skipped)."""
  tag, found = tensorboard_tag(name), {}
  for path in sorted(pathlib.Path(logdir).glob("events.out.tfevents.*")):
    data, at = path.read_bytes(), 0
    while at + 12 <= len(data):
      (length,) = struct.unpack("<Q", data[at:at + 8])
      record = data[at + 12:at + 12 + length]
      at += 12 + length + 4
      if len(record) < length:
        break
      event = event_pb2.Event.FromString(record)
      for value in event.summary.value:
        if value.tag == tag:
          found[event.step] = value.simple_value
  return found
