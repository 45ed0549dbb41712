"""Read an offline W&B run from its own records: the ``run-<id>.wandb`` file that wandb 0.31 writes.

The file is a LevelDB-style log (https://github.com/google/leveldb/blob/main/doc/log_format.md): a 7-byte header
(``:W&B``, magic ``0xBEE1``, version 0), then 32 KiB blocks of chunks, each ``crc32 (4) | length (2) | type (1) |
data``, where a record too long for its block is split into FIRST, MIDDLE and LAST chunks. Every record is a
``wandb.proto.wandb_internal_pb2.Record`` (the protobuf definitions that wandb ships). wandb 0.31 no longer ships a
Python reader of this file, hence this one; it checks every chunk's CRC so a misread fails loudly.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2

BLOCK = 32768
HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def read_records(path: str | Path) -> list[wandb_internal_pb2.Record]:
    data = Path(path).read_bytes()
    assert data[: len(HEADER)] == HEADER, f"{path} does not start with the W&B log header"
    records, pending, position = [], b"", len(HEADER)
    while position + 7 <= len(data):
        room = BLOCK - position % BLOCK
        if room < 7:  # the block's trailer: too short for a chunk header
            position += room
            continue
        checksum, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0 and length == 0:  # zero padding up to the end of the block
            position += room
            continue
        chunk = data[position + 7 : position + 7 + length]
        assert zlib.crc32(bytes([kind]) + chunk) == checksum, f"bad CRC at byte {position} of {path}"
        position += 7 + length
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def _nested_set(target: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value


def _items_to_dict(items: Any) -> dict[str, Any]:
    """``HistoryItem``/``SummaryItem``/``ConfigItem`` lists to a nested dict of JSON values."""
    result: dict[str, Any] = {}
    for item in items:
        keys = list(item.nested_key) if item.nested_key else [item.key]
        _nested_set(result, keys, json.loads(item.value_json))
    return result


def _merge(target: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


@dataclass
class OfflineRun:
    """What an offline run recorded: its history rows, its final summary, its config and its metric definitions."""

    folder: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: list[wandb_internal_pb2.MetricRecord] = field(default_factory=list)

    @classmethod
    def load(cls, run_folder: str | Path) -> OfflineRun:
        """``run_folder``: the ``offline-run-...`` folder (``run.settings.sync_dir``)."""
        folder = Path(run_folder)
        (path,) = folder.glob("run-*.wandb")
        run = cls(folder=folder)
        for record in read_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "history":
                run.history.append(_items_to_dict(record.history.item))
            elif kind == "summary":
                _merge(run.summary, _items_to_dict(record.summary.update))
                for removed in record.summary.remove:
                    run.summary.pop(removed.key, None)
            elif kind == "config":
                _merge(run.config, _items_to_dict(record.config.update))
            elif kind == "run":
                _merge(run.config, _items_to_dict(record.run.config.update))
            elif kind == "metric":
                run.metrics.append(record.metric)
        return run

    def rows_with(self, key: str) -> list[dict[str, Any]]:
        return [row for row in self.history if key in row]

    def table(self, key: str) -> dict[str, Any]:
        """The W&B Table logged under ``key``, read from the file its history entry points to."""
        (row,) = self.rows_with(key)
        entry = row[key]
        assert entry["_type"] == "table-file", entry
        return json.loads((self.folder / "files" / entry["path"]).read_text())

    def media_file(self, key: str) -> Path:
        (row,) = self.rows_with(key)
        return self.folder / "files" / row[key]["path"]


def finish_and_load(run_folder: str | Path) -> OfflineRun:
    """Finish the current W&B run, stop W&B's service process (so the ``.wandb`` file is complete and closed), and
    read the run. ``wandb.finish()`` alone can return before the service has written the file's last records."""
    import wandb

    wandb.finish()
    wandb.teardown()
    return OfflineRun.load(run_folder)
