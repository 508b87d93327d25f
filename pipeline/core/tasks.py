"""The task model: stages are lists of tasks; a task writes files, then its manifest.

* A :class:`Task` is a pure function of (input files, stage config). Same inputs + same config
  -> same bytes, whichever engine runs it and however often.
* :func:`execute_task` is the only thing an engine calls. It skips a task whose manifest is
  *current* (see :func:`check_manifest`), refuses one whose manifest has a different config hash,
  runs the stage, publishes the outputs atomically and writes the manifest **last**: the manifest
  is the only proof of completion, so a task killed at any point is simply run again. Files the
  task's previous manifest listed and the new one does not are deleted after the new manifest is
  written (write, then retire).
* A manifest is current when it has the run's config hash, the task's :meth:`Task.identity` (its
  inputs, by path relative to the output and by the sha256/size the upstream manifests recorded,
  and its parameters) and every file it lists exists with the recorded size.
* Paths in manifests are relative to the output root (version 2), so an output can be copied or
  moved and resumed there. Version-1 manifests (paths as given) are still read, never trusted as
  current: their tasks are rerun.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import struct
import sys
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.config import PipelineConfig
from babelsieve.pipeline.core.documents import InputPiece, language_pieces
from babelsieve.pipeline.core.layout import RunLayout
from babelsieve.pipeline.stages import stage_class

MANIFEST_VERSION = 2
# the manifest index (_index/<stage>.json.gz): gzip JSON lines, a header line then one manifest per line
INDEX_VERSION = 2
# keys of a manifest file entry that hold a path below the output root
_PATH_KEYS = ("path", "source")


class ConfigMismatchError(RuntimeError):
    """An output location holds results of a run with a different configuration."""


class TaskFailedError(RuntimeError):
    """A task raised; carries the stage, task id and the original message."""


@dataclass(frozen=True)
class Task:
    """One unit of work. ``task_id`` is unique within its stage and sorts in a stable order."""

    stage: str
    task_id: str
    inputs: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    # Content of the inputs as recorded by the upstream manifests (:func:`files_digest`); empty for
    # inputs outside the output (WARC shards, previous runs' signatures), known by path only.
    input_digest: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["inputs"] = list(self.inputs)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Task:
        return cls(stage=d["stage"], task_id=d["task_id"], inputs=tuple(d["inputs"]), params=d.get("params", {}),
                   input_digest=d.get("input_digest", ""))

    def identity(self, output: str) -> str:
        """What the task reads: its inputs (paths relative to ``output``, plus their recorded content),
        its parameters. A manifest made for another identity is not this task's result."""
        blob = json.dumps({"inputs": [relative_path(output, p) for p in self.inputs], "params": self.params,
                           "input_digest": self.input_digest}, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


_NUMS = struct.Struct("<qq")  # rows, bytes of a FileEntry (-1: absent)
_PIECE = struct.Struct("<qqq")  # first row group, row groups, file bytes (-1: absent) of one language of a file


def _compact_int(v: Any) -> int | None:
    """``v`` when it can be packed in a FileEntry's numbers (a non-negative int64, not a bool), else None."""
    return v if type(v) is int and 0 <= v < (1 << 63) else None


class FileEntry(Mapping):
    """One file entry of a manifest, held compactly for planning: a read-only mapping equal to the dict it
    was made from (``e["path"]``, ``e.get("rows")``, ``dict(e)``), at about a third of its memory.

    The driver holds one per upstream file (~21 million extract files at 90,000 shards): ``path`` as one
    string, ``lang_script`` and ``kind`` interned (a few thousand distinct values shared by all entries),
    ``rows``, ``bytes`` and the sha256 packed into one bytes object (16 + 32 bytes instead of three
    objects of ~180 bytes), and any other key (``partition``, ``languages``, ``file_range``, a row-group
    index, ...) or a value of an unusual type in ``extra``, unchanged. A value is returned as it was
    recorded (the sha256 as hex): digests and task identities made from entries are the dicts' own."""

    __slots__ = ("path", "lang_script", "kind", "_packed", "_piece", "extra")
    _FIELDS = ("path", "bytes", "sha256", "kind", "rows", "lang_script", "row_groups", "file_bytes")

    def __init__(self, entry: Mapping[str, Any]):
        extra: dict[str, Any] = {}
        path = entry.get("path")
        lang = entry.get("lang_script")
        kind = entry.get("kind")
        self.path = path if type(path) is str else None
        self.lang_script = sys.intern(lang) if type(lang) is str else None
        self.kind = sys.intern(kind) if type(kind) is str else None
        rows = _compact_int(entry.get("rows"))
        nbytes = _compact_int(entry.get("bytes"))
        sha = entry.get("sha256")
        digest = b""
        if type(sha) is str and len(sha) == 64:
            try:
                digest = bytes.fromhex(sha)
            except ValueError:
                pass
            if digest.hex() != sha:  # upper case or spaces: kept as recorded, in ``extra``
                digest = b""
        # one language of a multi-language file (documents.language_pieces): its row groups and the file's size
        rgs, fbytes = entry.get("row_groups"), entry.get("file_bytes")
        piece = (type(rgs) is list and len(rgs) == 2 and all(_compact_int(x) is not None for x in rgs)
                 and (fbytes is None or _compact_int(fbytes) is not None) and "file_bytes" in entry)
        self._piece = _PIECE.pack(rgs[0], rgs[1], -1 if fbytes is None else fbytes) if piece else None
        for k, v in entry.items():
            if k == "path" and self.path is not None or k == "lang_script" and self.lang_script is not None \
                    or k == "kind" and self.kind is not None or k == "rows" and rows is not None \
                    or k == "bytes" and nbytes is not None or k == "sha256" and digest \
                    or k in ("row_groups", "file_bytes") and piece:
                continue
            extra[k] = v
        self._packed = _NUMS.pack(-1 if rows is None else rows, -1 if nbytes is None else nbytes) + digest
        self.extra = extra or None

    def _value(self, key: str) -> Any:
        """The value of ``key``; raises KeyError when the entry has none."""
        if key == "path":
            v: Any = self.path
        elif key == "lang_script":
            v = self.lang_script
        elif key == "kind":
            v = self.kind
        elif key == "rows" or key == "bytes":
            v = _NUMS.unpack_from(self._packed)[0 if key == "rows" else 1]
            v = None if v < 0 else v
        elif key == "sha256":
            v = self._packed[16:].hex() if len(self._packed) > 16 else None
        elif key in ("row_groups", "file_bytes") and self._piece is not None:
            first, count, fbytes = _PIECE.unpack(self._piece)
            if key == "row_groups":
                return [first, count]
            if fbytes < 0:  # recorded as None
                return None
            v = fbytes
        else:
            v = None
        if v is None:
            if self.extra is not None and key in self.extra:
                return self.extra[key]
            raise KeyError(key)
        return v

    def __getitem__(self, key: str) -> Any:
        return self._value(key)

    def get(self, key: str, default: Any = None) -> Any:
        """``entry[key]`` or ``default`` (like ``dict.get``; fast for the compact fields)."""
        try:
            return self._value(key)
        except KeyError:
            return default

    def __iter__(self) -> Iterator[str]:
        for k in self._FIELDS:
            try:
                self._value(k)
            except KeyError:
                continue
            if self.extra is None or k not in self.extra:
                yield k
        if self.extra is not None:
            yield from self.extra

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"FileEntry({dict(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:  # picklable (engines ship params; tests copy)
        return FileEntry, (dict(self),)


def _entry_path(entry: Mapping[str, Any]) -> str:
    return entry.path if type(entry) is FileEntry and entry.path is not None else entry["path"]


def files_digest(entries: Sequence[Mapping[str, Any]]) -> str:
    """Digest of upstream manifest file entries by content (sha256, bytes, rows), in the given order.

    Paths are left out on purpose: the task's relative input paths are part of its identity already."""
    blob = json.dumps([[e.get("sha256"), e.get("bytes"), e.get("rows")] for e in entries], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def entry_language(entry: Mapping[str, Any]) -> str:
    """The ``lang_script`` of a manifest file entry (``und`` when it has none)."""
    if type(entry) is FileEntry and entry.lang_script:
        return entry.lang_script
    return entry.get("lang_script") or "und"


def plan_work_groups(entries: Iterable[Mapping[str, Any]], target_documents: int, target_bytes: int,
                     max_inputs: int) -> list[list[Any]]:
    """Group upstream file entries into tasks by work: the shared planner of every stage after extract.

    Entries (manifest file entries with ``path``, ``lang_script``, ``rows``, ``bytes``) are sorted by
    (language, path) and packed in that order; a group closes once it holds ``target_documents`` rows
    or ``target_bytes`` bytes or ``max_inputs`` files. So a big language is split into groups of about
    the target, long-tail languages share a group, a file is never split, and a group's languages are a
    contiguous run of the sorted language list. The grouping depends only on the set of entries (their
    paths and recorded sizes): never on the engine, the workers or the order manifests were listed in,
    so a rerun over the same upstream outputs plans the same tasks, and a run after added shards plans
    the tasks a single run over all shards would (docs/runs.md).

    Entries may be dicts or compact :class:`FileEntry` records (:func:`completed_files`); the groups hold
    the given objects."""
    groups: list[list[Any]] = []
    cur: list[Any] = []
    docs = nbytes = 0
    # (language, path) order by two stable sorts on keys the entries already hold (no key tuple per entry)
    for e in sorted(sorted(entries, key=_entry_path), key=entry_language):
        cur.append(e)
        if type(e) is FileEntry:  # the compact fields without a dict lookup (~21 M entries at 90,000 shards)
            rows, size = _NUMS.unpack_from(e._packed)
            docs += rows if rows > 0 else int((e.extra or {}).get("rows") or 0)
            nbytes += size if size > 0 else int((e.extra or {}).get("bytes") or 0)
        else:
            docs += int(e.get("rows") or 0)
            nbytes += int(e.get("bytes") or 0)
        if docs >= target_documents or nbytes >= target_bytes or len(cur) >= max_inputs:
            groups.append(cur)
            cur, docs, nbytes = [], 0, 0
    if cur:
        groups.append(cur)
    return groups


def work_sized_tasks(stage: str, entries: Iterable[Mapping[str, Any]], config: PipelineConfig,
                     files_per_entry: int = 1, params: dict[str, Any] | None = None,
                     first_params: dict[str, Any] | None = None) -> list[Task]:
    """Tasks of ``stage`` over ``entries`` grouped by :func:`plan_work_groups` with ``config.tasks``.

    Task ``i`` (id ``%06d``) reads its group's paths in sorted (language, path) order; its params hold
    ``lang_scripts`` (the language of each input, aligned with ``inputs``) plus ``params``; its
    identity includes the recorded content of every input. ``files_per_entry`` > 1 when a task also
    reads companion files per entry (the fan-in cap counts them); ``first_params`` go to task 0 only
    (a stage-wide summary). Stages run the result with :func:`inputs_by_language`."""
    tc = config.tasks
    cap = max(1, tc.max_input_files // files_per_entry)
    groups = plan_work_groups(entries, tc.target_documents, tc.target_bytes, cap)
    return [Task(stage, f"{i:06d}", tuple(e["path"] for e in g),
                 {"lang_scripts": [entry_language(e) for e in g], **piece_params(g), **(params or {}),
                  **((first_params or {}) if i == 0 else {})}, files_digest(g))
            for i, g in enumerate(groups)]


def piece_params(entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """When any entry is one language of a multi-language file
    (:func:`~babelsieve.pipeline.core.documents.language_pieces`): ``row_groups`` = first row group and
    count of each input, flat (``[f0, c0, f1, c1, ...]``; -1, -1 for a whole file: a task's params hold
    up to ~1,000 inputs and the driver holds every task's, so no list per input) and ``file_bytes``."""
    flat: list[int] = []
    sizes: list[int | None] = []
    for e in entries:
        rg = e.get("row_groups")
        flat += [int(rg[0]), int(rg[1])] if rg is not None else [-1, -1]
        sizes.append(e.get("file_bytes") if rg is not None else None)
    return {"row_groups": flat, "file_bytes": sizes} if any(x >= 0 for x in flat) else {}


def task_pieces(task: Task, inputs: tuple[str, ...] | None = None) -> list[InputPiece]:
    """The task's inputs as pieces (path, row groups, file size), aligned with ``inputs`` (default: all)."""
    paths = task.inputs if inputs is None else inputs
    flat = task.params.get("row_groups")
    sizes = task.params.get("file_bytes") or [None] * len(paths)
    if not flat:
        return [InputPiece(p) for p in paths]
    return [InputPiece(p, (flat[2 * i], flat[2 * i + 1]) if flat[2 * i] >= 0 else None, sizes[i])
            for i, p in enumerate(paths)]


def inputs_by_language(task: Task) -> list[tuple[str, list[InputPiece]]]:
    """(language, input pieces) of a :func:`work_sized_tasks` task, in input order (languages sorted).
    A task of the one-file-per-task plans of earlier versions has ``lang_script`` instead."""
    langs = task.params.get("lang_scripts") or [task.params.get("lang_script") or "und"] * len(task.inputs)
    out: list[tuple[str, list[InputPiece]]] = []
    for lang, piece in zip(langs, task_pieces(task), strict=True):
        if out and out[-1][0] == lang:
            out[-1][1].append(piece)
        else:
            out.append((lang, [piece]))
    return out


def relative_path(output: str, path: str) -> str:
    """``path`` relative to the output root when it lies below it; else unchanged (external input)."""
    root = output.rstrip("/") + "/"
    return path[len(root):] if path.startswith(root) else path


def _is_relative(path: str) -> bool:
    return "://" not in path and not path.startswith("/")


def manifest_to_storage(output: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as stored: paths below ``output`` relative to it, ``version`` 2."""
    m = dict(manifest)
    m["version"] = MANIFEST_VERSION
    m["inputs"] = [relative_path(output, p) for p in m.get("inputs", [])]
    m["files"] = [{k: (relative_path(output, v) if k in _PATH_KEYS and isinstance(v, str) else v)
                   for k, v in f.items()} for f in m.get("files", [])]
    return m


def manifest_from_storage(output: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """A stored manifest with its relative paths resolved below ``output`` (where it is now).

    Version-1 manifests kept paths as given (absolute, or relative to the working directory of the
    run): they are returned unchanged and never counted as current (:func:`check_manifest`)."""
    if not isinstance(manifest, dict) or manifest.get("version", 1) < 2:
        return manifest
    m = dict(manifest)

    def resolve(p: Any) -> Any:
        return storage.join(output, p) if isinstance(p, str) and _is_relative(p) else p

    m["inputs"] = [resolve(p) for p in m.get("inputs", [])]
    m["files"] = [{k: (resolve(v) if k in _PATH_KEYS else v) for k, v in f.items()} for f in m.get("files", [])]
    return m


@dataclass
class TaskOutput:
    """What a stage's ``run`` returns: published files (manifest entries) and statistics."""

    files: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


class Stage(ABC):
    """A pipeline stage. ``plan`` runs on the driver, ``run`` in a worker (any engine)."""

    name: ClassVar[str]
    # True when plan() selects some of the stage's tasks (extract: a shard range), so tasks outside
    # the plan are kept; False when it lists every task the current upstream outputs call for.
    plan_selects: ClassVar[bool] = False

    def __init__(self, config: PipelineConfig):
        self.config = config

    @property
    def storage_options(self) -> dict[str, Any]:
        return self.config.storage_options

    @property
    def layout(self) -> RunLayout:
        """The paths of this run's output."""
        return RunLayout(self.config.output)

    @abstractmethod
    def plan(self) -> list[Task]:
        """The tasks of this stage, given the completed outputs of earlier stages."""

    @abstractmethod
    def run(self, task: Task) -> TaskOutput:
        """Do the work of one task and publish its files (not its manifest)."""

    def finish(self, results: list[dict[str, Any]]) -> None:  # noqa: B027 - optional hook
        """Driver-side step after all tasks of the stage (e.g. merge statistics)."""


def manifest_url(config: PipelineConfig, stage: str, task_id: str) -> str:
    return RunLayout(config.output).manifest(stage, task_id)


def read_manifest(config: PipelineConfig, stage: str, task_id: str) -> dict[str, Any] | None:
    """The task's manifest with paths resolved below the output, or None (one GET: no HEAD first)."""
    url = manifest_url(config, stage, task_id)
    try:
        return manifest_from_storage(config.output, storage.read_json(url, config.storage_options))
    except FileNotFoundError:
        return None


def index_url(config: PipelineConfig, stage: str) -> str:
    """The stage's manifest index: every completed manifest of the stage in one object (gzip JSON)."""
    return RunLayout(config.output).manifest_index(stage)


def _stamp(entry: dict[str, Any]) -> str:
    """What a listing says about one manifest object, enough to see that it was rewritten: the S3 ETag
    (MD5 of the bytes of a single PUT), else size, modification time and inode (a rewrite is a rename
    of a new file, so a new inode)."""
    etag = entry.get("ETag") or entry.get("etag")
    if etag:
        return f"{entry.get('size')}:{str(etag).strip(chr(34))}"
    return f"{entry.get('size')}:{entry.get('mtime')}:{entry.get('ino')}"


def _list_stamps(config: PipelineConfig, stage: str) -> dict[str, str]:
    """task_id -> stamp of every manifest of ``stage`` (one LIST per 1,000 manifests on S3)."""
    base = RunLayout(config.output).manifests_dir(stage)
    fs, path = storage.filesystem(base, config.storage_options)
    try:
        # the folder is flat: one listing (s3fs's find would add a HEAD and a LIST when it is empty)
        listing = fs.ls(path, detail=True)
    except (FileNotFoundError, OSError):
        return {}
    out = {}
    for entry in listing:
        leaf = str(entry.get("name", "")).rstrip("/").rsplit("/", 1)[-1]
        if leaf.endswith(".json") and ".tmp-" not in leaf and entry.get("type") != "directory":
            out[leaf[: -len(".json")]] = _stamp(entry)
    return dict(sorted(out.items()))


# The index this driver wrote last, per URL (only one driver writes an output's indexes: it holds the
# output's lock), so the next stage's planner does not fetch what the driver just PUT. Only a cache: every
# entry is still checked against a fresh listing (iter_manifests). Keyed by process, so a forked worker never
# trusts its parent's copy; small indexes only.
_INDEX_CACHE: dict[str, tuple[int, bytes]] = {}
_INDEX_CACHE_MAX_BYTES = 64 << 20


def _remember_index(url: str, blob: bytes) -> None:
    if len(blob) <= _INDEX_CACHE_MAX_BYTES:
        _INDEX_CACHE[url] = (os.getpid(), blob)
    else:
        _INDEX_CACHE.pop(url, None)


class _IndexReader:
    """The stage's index read as a stream: (task_id, stamp, stored manifest) one line at a time, in task
    order, so the driver never holds more than one manifest of it (a whole-document index of 90,000
    extract manifests is gigabytes of JSON). ``usable`` turns False when the index is absent, of another
    version (version 1 was one JSON document: treated as absent, the next driver rewrites it), truncated,
    corrupt or out of order; the rest is then read manifest by manifest, as without an index."""

    HEADER_LIMIT = 1 << 16  # the header line is short; a version-1 index has no newline to find

    def __init__(self, config: PipelineConfig, stage: str, open_index: bool = True):
        self.usable = False
        self._lines: Iterator[bytes] | None = None
        self._last = ""
        self._handles: list[Any] = []
        if not open_index:
            return
        try:
            url = index_url(config, stage)
            hit = _INDEX_CACHE.get(url)
            # compressed bytes in memory (one GET, no HEAD: a missing index costs one request), decompressed
            # and parsed one line at a time
            raw = io.BytesIO(hit[1] if hit is not None and hit[0] == os.getpid()
                             else storage.read_bytes(url, config.storage_options))
            self._handles.append(raw)
            f = gzip.GzipFile(fileobj=raw, mode="rb")
            self._handles.append(f)
            header = json.loads(f.readline(self.HEADER_LIMIT))
            if isinstance(header, dict) and header.get("version") == INDEX_VERSION and header.get("stage") == stage:
                self._lines = iter(f)
                self.usable = True
        except (FileNotFoundError, OSError, ValueError, EOFError):
            pass  # no index (or an unreadable one): every manifest is read, and the next driver rewrites it
        if not self.usable:
            self.close()

    def __iter__(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        while self.usable and self._lines is not None:
            try:
                line = next(self._lines)
            except StopIteration:
                break
            except (OSError, ValueError, EOFError):  # truncated or corrupt from here on
                break
            try:
                rec = json.loads(line)
                task_id, stamp, manifest = rec["task_id"], rec["stamp"], rec["manifest"]
            except (ValueError, KeyError, TypeError):
                break
            if not (isinstance(task_id, str) and isinstance(stamp, str) and isinstance(manifest, dict)) \
                    or task_id <= self._last:
                break  # not an index this code wrote: trust none of the rest
            self._last = task_id
            yield task_id, stamp, manifest
        self.usable = False
        self.close()

    def close(self) -> None:
        for h in reversed(self._handles):
            try:
                h.close()
            except (OSError, ValueError):
                pass
        self._handles = []


class _IndexWriter:
    """Builds a version-2 index (gzip JSON lines, one manifest per line in task order) as manifests are
    read, compressed on the fly: the driver holds the compressed index, not the manifests."""

    def __init__(self, stage: str):
        self._buf = io.BytesIO()
        self._gz = gzip.GzipFile(fileobj=self._buf, mode="wb", compresslevel=3, mtime=0)
        self._gz.write(json.dumps({"version": INDEX_VERSION, "stage": stage}, sort_keys=True).encode() + b"\n")

    def add(self, task_id: str, stamp: str, manifest: dict[str, Any]) -> None:
        """One line: the stored (unresolved) manifest with the listing's stamp."""
        self._gz.write(json.dumps({"task_id": task_id, "stamp": stamp, "manifest": manifest}, sort_keys=True,
                                  separators=(",", ":")).encode() + b"\n")

    def publish(self, config: PipelineConfig, stage: str) -> None:
        """Write the index (one PUT)."""
        self._gz.close()
        storage.publish_bytes(index_url(config, stage), self._buf.getvalue(), config.storage_options)
        _remember_index(index_url(config, stage), self._buf.getvalue())


def _iter_stored_manifests(config: PipelineConfig, stage: str,
                           write_index: bool = False) -> Iterator[tuple[str, dict[str, Any]]]:
    """(task_id, stored manifest: paths as written) of every listed manifest of ``stage``, in task order;
    see :func:`iter_manifests`. The listing and the index are both sorted by task id, so they are merged
    as two streams."""
    stamps = _list_stamps(config, stage)
    index = _IndexReader(config, stage, open_index=bool(stamps))  # no manifest listed: nothing to take from it
    changed = not index.usable
    entries = iter(index)
    pending = next(entries, None)
    writer = _IndexWriter(stage) if write_index else None
    for task_id, stamp in stamps.items():
        while pending is not None and pending[0] < task_id:  # indexed, no longer listed (retired, deleted)
            changed = True
            pending = next(entries, None)
        raw = None
        if pending is not None and pending[0] == task_id:
            if pending[1] == stamp:
                raw = pending[2]
            pending = next(entries, None)
        if raw is None:
            try:
                raw = storage.read_json(manifest_url(config, stage, task_id), config.storage_options)
            except FileNotFoundError:  # deleted since the listing
                changed = True
                continue
            changed = True
        if writer is not None:
            writer.add(task_id, stamp, raw)
        yield task_id, raw
    if pending is not None:  # index entries after the last listed manifest
        changed = True
    index.close()
    if writer is not None and changed:
        writer.publish(config, stage)


def iter_manifests(config: PipelineConfig, stage: str,
                   write_index: bool = False) -> Iterator[tuple[str, dict[str, Any]]]:
    """(task_id, manifest with paths resolved) of every manifest of ``stage``, in task order, from one
    listing and the stage's index instead of one read per manifest; one resolved manifest at a time.

    The listing is the truth (a manifest is the proof of completion): a manifest in the index whose
    stamp (:func:`_stamp`) still matches the listing is taken from the index; every other listed
    manifest is read (one GET), and index entries without a listed manifest are ignored. So a task
    that was rerun, retired or deleted by hand is never served from a stale index. The index is read
    as a stream, one line per manifest (:class:`_IndexReader`): memory does not grow with it. With
    ``write_index`` (the driver, which holds the output's lock) the index is rewritten at the end when
    it was out of date: one PUT per stage instead of one GET per manifest for every later reader."""
    for task_id, raw in _iter_stored_manifests(config, stage, write_index):
        yield task_id, manifest_from_storage(config.output, raw)


def write_manifest_index(config: PipelineConfig, stage: str) -> None:
    """Rewrite the stage's index if it is out of date (the driver, after a stage), streaming the manifests."""
    for _ in _iter_stored_manifests(config, stage, write_index=True):
        pass


def load_manifests(config: PipelineConfig, stage: str, write_index: bool = False) -> dict[str, dict[str, Any]]:
    """Every manifest of ``stage``: task_id -> manifest (paths resolved); see :func:`iter_manifests`."""
    return dict(iter_manifests(config, stage, write_index))


def publish_manifest(config: PipelineConfig, manifest: dict[str, Any]) -> None:
    """Write a task's manifest (paths made relative to the output root)."""
    url = manifest_url(config, manifest["stage"], manifest["task_id"])
    storage.publish_json(url, manifest_to_storage(config.output, manifest), config.storage_options)


class FileSizes:
    """Sizes of published files, for verifying manifests. With ``by_listing`` (the driver checks many
    tasks) each directory is listed once -- one LIST instead of a HEAD per file on object storage.

    The listings are held per directory as {file name: size} with the names interned: the same task id
    names a file in each of its ~230 language directories, so at 21 million files (90,000 shards) the
    cache costs a dict slot and a size per file, not a full path string each."""

    def __init__(self, storage_options: dict[str, Any] | None, by_listing: bool = False, root: str | None = None):
        self.storage_options = storage_options
        self.by_listing = by_listing
        self.root = root.rstrip("/") + "/" if root else None
        self._dirs: dict[str, dict[str, int]] = {}
        self._trees: set[str] = set()
        self._by_url_dir: dict[str, dict[str, int]] = {}

    def _hold(self, listing: Iterable[tuple[str, Any]]) -> None:
        """Cache (path, listing entry) pairs of files by directory."""
        for name, entry in listing:
            if entry.get("type") == "directory":
                continue
            parent, _, leaf = name.rstrip("/").rpartition("/")
            self._dirs.setdefault(parent, {})[sys.intern(leaf)] = int(entry.get("size") or 0)

    def size(self, url: str) -> int | None:
        """Size of ``url`` in bytes, None when it does not exist."""
        if self.by_listing:
            url_dir, _, leaf = url.rstrip("/").rpartition("/")
            held = self._by_url_dir.get(url_dir)  # one filesystem lookup per directory, not per file
            if held is None:
                held = self._by_url_dir[url_dir] = self._listed_dir(url)
            return held.get(leaf)
        fs, path = storage.filesystem(url, self.storage_options)
        try:
            return int(fs.size(path))
        except (FileNotFoundError, OSError):
            return None

    def _listed_dir(self, url: str) -> dict[str, int]:
        """{file name: size} of the directory holding ``url``, from a listing."""
        fs, path = storage.filesystem(url, self.storage_options)
        parent = path.rstrip("/").rpartition("/")[0]
        if (self.root and url.startswith(self.root) and "/" in url[len(self.root):]
                and storage.protocol_of(url) not in ("file", "local")):
            # on an object store below the output root: list the whole top-level prefix (a stage's outputs,
            # e.g. every extract/lang_script=*/ directory) in one paged listing, not one listing per
            # directory (a request each). A local disk lists per directory: no requests to save, and
            # the listing's details are held one directory at a time
            top = url[: len(self.root) + url[len(self.root):].index("/")]
            if top not in self._trees:
                self._trees.add(top)
                tfs, tpath = storage.filesystem(top, self.storage_options)
                try:
                    self._hold(tfs.find(tpath, detail=True).items())
                except (FileNotFoundError, OSError):
                    pass
            return self._dirs.setdefault(parent, {})
        if parent not in self._dirs:
            try:
                listing = fs.ls(parent, detail=True)
            except (FileNotFoundError, OSError):
                listing = []
            self._dirs[parent] = {}
            self._hold((e["name"], e) for e in listing)
        return self._dirs[parent]


def missing_files(config: PipelineConfig, manifest: dict[str, Any], sizes: FileSizes | None = None) -> list[str]:
    """Files a manifest lists that are gone or whose size differs from the recorded one."""
    sizes = sizes or FileSizes(config.storage_options)
    bad = []
    for f in manifest.get("files", []):
        got = sizes.size(f["path"])
        if got is None or (f.get("bytes") is not None and got != int(f["bytes"])):
            bad.append(f["path"])
    return bad


def check_manifest(config: PipelineConfig, manifest: dict[str, Any] | None, task: Task | None = None,
                   sizes: FileSizes | None = None) -> bool:
    """True when the manifest proves ``task`` complete: same config hash, same identity (inputs and
    parameters), every listed file present with its recorded size. Raises if another config made it.

    Without ``task`` only the config hash is checked (readers that do not plan)."""
    if manifest is None:
        return False
    if manifest.get("config_hash") != config.content_hash():
        raise ConfigMismatchError(
            f"{config.output} holds task {manifest.get('stage')}/{manifest.get('task_id')} made with config "
            f"{manifest.get('config_hash')}, but this run's config is {config.content_hash()}. "
            "Outputs of different configs are never mixed: choose a new --output, or delete the old one."
        )
    if task is None:
        return True
    if manifest.get("version", 1) < 2 or manifest.get("identity") != task.identity(config.output):
        return False
    return not missing_files(config, manifest, sizes)


def retire_files(config: PipelineConfig, old: dict[str, Any] | None, keep: list[dict[str, Any]]) -> None:
    """Delete the files of an old manifest that ``keep`` does not list (only below the output root:
    a version-1 manifest of a copied output may still name the original's files)."""
    if not old:
        return
    root = config.output.rstrip("/") + "/"
    kept = {f["path"] for f in keep}
    for f in old.get("files", []):
        p = f.get("path")
        if isinstance(p, str) and p.startswith(root) and p not in kept:
            storage.remove(p, config.storage_options, recursive=False)


def retire_stale(config: PipelineConfig, manifest: dict[str, Any] | None) -> None:
    """Delete a manifest that is not current for its task (other inputs, or files missing), and its
    files: the task is about to be rerun, and until it succeeds no later stage may plan from it."""
    if manifest is None:
        return
    retire_files(config, manifest, [])
    storage.remove(manifest_url(config, manifest["stage"], manifest["task_id"]), config.storage_options,
                   recursive=False)


def retire_unplanned(config: PipelineConfig, stage: Stage, tasks: list[Task]) -> int:
    """Delete the manifests (and files) of ``stage``'s tasks that its plan no longer has.

    A global stage's plan covers every completed upstream output, so a task it no longer plans was
    made from a superseded set (e.g. a filter task of a dedup file whose index moved when shards were
    added); left in place, later stages would read its files. Stages whose plan is a selection (a
    shard range of extract) keep their other tasks (:func:`completed_files` leaves out those whose
    files are missing). Returns how many tasks were retired."""
    if stage.plan_selects:
        return 0
    planned = {t.task_id for t in tasks}
    n = 0
    try:
        existing = load_manifests(config, stage.name)
    except storage.CorruptFileError:
        existing = {}
        for task_id in _list_stamps(config, stage.name):  # one of them is unreadable: go one by one
            try:
                existing[task_id] = read_manifest(config, stage.name, task_id) or {}
            except (ValueError, OSError):
                existing[task_id] = {}
    for task_id, m in existing.items():
        if task_id in planned:
            continue
        if isinstance(m, dict) and m.get("config_hash") not in (None, config.content_hash()):
            continue  # another config's task: check_manifest refuses the run elsewhere; never delete it
        retire_files(config, m if isinstance(m, dict) and m else None, [])
        storage.remove(manifest_url(config, stage.name, task_id), config.storage_options, recursive=False)
        n += 1
    return n


def execute_task(task_dict: dict[str, Any], config_json: str,
                 before_run: Callable[[PipelineConfig, Task], None] | None = None) -> dict[str, Any]:
    """Run one task (or skip it if already complete). Picklable entry point for every engine.

    ``before_run`` (the engines' test harness: :mod:`babelsieve.pipeline.engines.fault_injection`) is
    called just before the stage runs; what it raises fails the task like an error of the stage.

    Returns a result dict: {stage, task_id, status: done|cached, stats, files, seconds}.
    Raises :class:`TaskFailedError` when the stage raised, so engines can retry.
    """
    config = PipelineConfig.model_validate_json(config_json)
    task = Task.from_dict(task_dict)
    existing = read_manifest(config, task.stage, task.task_id)
    if check_manifest(config, existing, task):
        assert existing is not None
        return {
            "stage": task.stage,
            "task_id": task.task_id,
            "status": "cached",
            "stats": existing.get("stats", {}),
            "files": existing.get("files", []),
            "seconds": 0.0,
        }
    t0 = time.perf_counter()
    try:
        if before_run is not None:
            before_run(config, task)
        stage = stage_class(task.stage)(config)
        out = stage.run(task)
    except Exception as e:  # noqa: BLE001 - reported with the task's identity, then re-raised
        raise TaskFailedError(
            f"{task.stage}/{task.task_id} ({', '.join(task.inputs[:2])}): {type(e).__name__}: {e}\n"
            + traceback.format_exc(limit=6)
        ) from None
    seconds = time.perf_counter() - t0
    manifest = {
        "version": MANIFEST_VERSION,
        "stage": task.stage,
        "task_id": task.task_id,
        "inputs": list(task.inputs),
        "params": task.params,
        "input_digest": task.input_digest,
        "identity": task.identity(config.output),
        "config_hash": config.content_hash(),
        "files": out.files,
        "stats": out.stats,
        "seconds": round(seconds, 3),
    }
    publish_manifest(config, manifest)
    retire_files(config, existing, out.files)  # after the new manifest: a failure leaves a consistent state
    return {
        "stage": task.stage,
        "task_id": task.task_id,
        "status": "done",
        "stats": out.stats,
        "files": out.files,
        "seconds": seconds,
    }


def completed_files(config: PipelineConfig, stage: str, kind: str | None = None) -> list[FileEntry]:
    """All files published by completed tasks of ``stage`` (from manifests), in task order, as compact
    read-only :class:`FileEntry` mappings (``f["path"]``, ``f.get("rows")``; ``dict(f)`` for a dict).

    ``kind`` filters on the manifest entry's ``kind`` field (e.g. "documents", "removed"). A file that
    holds several languages is given as one entry per language (``row_groups``, ``rows`` and ``bytes``
    of that language). A manifest
    whose files are not all there with their recorded sizes is left out: no later task is planned
    from it (e.g. an extract task of another shard range whose file was deleted; that range's next
    run redoes it). Sizes come from one listing per directory. Manifests are streamed (one at a time)
    and only the compact entries are kept: ~300 bytes per file instead of ~850 as dicts.
    """
    files: list[FileEntry] = []
    sizes = FileSizes(config.storage_options, by_listing=True, root=config.output)
    config_hash = config.content_hash()
    for _, raw in _iter_stored_manifests(config, stage):
        if raw.get("config_hash") != config_hash:
            continue
        entries = [FileEntry(f) for f in manifest_from_storage(config.output, raw).get("files", [])]
        if _missing_entries(entries, sizes):
            continue
        for f in entries:
            if kind is not None and f.get("kind") != kind:
                continue
            if f.get("language_row_groups"):  # a multi-language file: one compact entry per language
                files.extend(FileEntry(piece) for piece in language_pieces(f))
            else:
                files.append(f)
    return files


def _missing_entries(entries: list[FileEntry], sizes: FileSizes) -> bool:
    """True when a file of ``entries`` is gone or its size differs from the recorded one
    (:func:`missing_files` on compact entries)."""
    for f in entries:
        got = sizes.size(f["path"])
        recorded = f.get("bytes")
        if got is None or (recorded is not None and got != int(recorded)):
            return True
    return False


def run_marker(config: PipelineConfig) -> dict[str, Any]:
    """The content of ``_run.json``: config hash and config, with the output root as ``.`` (the
    directory holding the marker), so a copied or moved output carries no path to the original."""
    saved = config.public_dict()  # credentials redacted: _run.json is published with the data
    saved["output"] = "."
    return {"config_hash": config.content_hash(), "config": saved}
