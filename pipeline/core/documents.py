"""The document schema and Parquet reading/writing.

Columns follow FineWeb2's published dataset, in its order and with its types (``text, id, dump,
url, date, file_path, language, language_score, language_script, minhash_cluster_size,
top_langs``), so outputs are drop-in for its users. As in FineWeb2, ``language`` is the ISO 639-3
code (``rus``) and ``language_script`` the ISO 15924 script (``Cyrl``). Our own extra column
``lang_script`` holds the pair (``rus_Cyrl``), which is the partition key of every stage's output
(directories ``lang_script=rus_Cyrl``). Signal columns added by the filter stage and
``removal_reason`` on removed documents come after; the final stages (finalize, rebalance) keep
only :data:`FINAL_SCHEMA` and the classify stage's ``quality_*`` columns, plus the ``sig_*`` ones when
``finalize.keep_signals`` is set (:func:`final_columns`).

No data file has zero rows: a task with nothing to keep for a language writes no file for it
(:func:`write_table` refuses an empty table), because ``datasets`` cannot read a Parquet file
without a row group.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from babelsieve.pipeline.core import storage

DOCUMENT_SCHEMA = pa.schema(
    [
        pa.field("text", pa.string()),
        pa.field("id", pa.string()),
        pa.field("dump", pa.string()),
        pa.field("url", pa.string()),
        pa.field("date", pa.string()),
        pa.field("file_path", pa.string()),
        pa.field("language", pa.string()),
        pa.field("language_score", pa.float64()),
        pa.field("language_script", pa.string()),
        pa.field("minhash_cluster_size", pa.int64()),
        pa.field("top_langs", pa.string()),  # JSON object {"rus_Cyrl_score": 0.98, ...} as in FineWeb2
        pa.field("lang_script", pa.string()),
    ]
)

# FineWeb2's published columns (names, order, Arrow types) and ours; what the final stages write.
FINEWEB2_SCHEMA = pa.schema(list(DOCUMENT_SCHEMA)[:11])
FINAL_SCHEMA = DOCUMENT_SCHEMA
SIGNAL_PREFIX = "sig_"
# the classify stage's scores (quality_<name>) and buckets (quality_<name>_bucket): kept in the final output
QUALITY_PREFIX = "quality_"

REMOVED_EXTRA = pa.field("removal_reason", pa.string())

# Row-group size and compression are fixed so equal tables give equal bytes.
_PARQUET_OPTIONS = dict(compression="zstd", compression_level=3, row_group_size=10_000, write_statistics=True)


def empty_table(schema: pa.Schema = DOCUMENT_SCHEMA) -> pa.Table:
    return schema.empty_table()


def table_from_rows(rows: list[dict[str, Any]], schema: pa.Schema = DOCUMENT_SCHEMA) -> pa.Table:
    """Build a table with exactly ``schema`` (missing columns become nulls)."""
    cols = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.table(cols, schema=schema)


def table_to_parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    # No pandas metadata and a fixed writer config: byte-identical output for identical tables.
    pq.write_table(table.replace_schema_metadata(None), buf, **_PARQUET_OPTIONS)
    return buf.getvalue()


def write_table(url: str, table: pa.Table, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Publish one Parquet file atomically; return its manifest entry (path, bytes, sha256, rows).

    Raises ``ValueError`` for a table without rows: a Parquet file with no row group breaks
    ``datasets`` (``BatchSize must be greater than 0``), so a caller with nothing to keep writes no file.
    """
    if table.num_rows == 0:
        raise ValueError(f"refusing to write a Parquet file without rows: {url}")
    entry = storage.publish_bytes(url, table_to_parquet_bytes(table), storage_options)
    entry["rows"] = table.num_rows
    return entry


def write_language_parts(url: str, parts: list[tuple[str, pa.Table]],
                         storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Publish the languages of one task as one Parquet file: each language's rows in its own row
    groups, languages in the given (sorted) order; return the manifest entry with ``language_row_groups`` =
    ``[[lang_script, first_row_group, row_group_count, rows, compressed_bytes], ...]``.

    One file per task instead of one per (task, language): at snapshot scale a shard holds ~230
    languages, and a file per language is a PUT, a GET and a listing entry each. A reader of one
    language reads only its row groups (:class:`PieceReader`)."""
    parts = [(lang, t) for lang, t in parts if t.num_rows]
    if not parts:
        raise ValueError(f"refusing to write a Parquet file without rows: {url}")
    schema = parts[0][1].schema.remove_metadata()
    buf = io.BytesIO()
    options = {k: v for k, v in _PARQUET_OPTIONS.items() if k != "row_group_size"}
    with pq.ParquetWriter(buf, schema, **options) as writer:
        for _, table in parts:
            writer.write_table(table.replace_schema_metadata(None).cast(schema),
                               row_group_size=_PARQUET_OPTIONS["row_group_size"])
    data = buf.getvalue()
    md = pq.ParquetFile(io.BytesIO(data)).metadata
    languages, rg = [], 0
    for lang, table in parts:
        first, rows = rg, 0
        while rows < table.num_rows:  # the writer splits a language into groups of row_group_size
            rows += md.row_group(rg).num_rows
            rg += 1
        nbytes = sum(md.row_group(g).column(c).total_compressed_size
                     for g in range(first, rg) for c in range(md.num_columns))
        languages.append([lang, first, rg - first, table.num_rows, nbytes])
    entry = storage.publish_bytes(url, data, storage_options)
    entry["rows"] = sum(t.num_rows for _, t in parts)
    entry["language_row_groups"] = languages
    return entry


def language_pieces(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-language pieces of a manifest file entry, for planning: a file written by
    :func:`write_language_parts` gives one entry per language (``lang_script``, ``rows``, ``bytes``
    of its row groups, ``row_groups`` = [first, count], ``file_bytes``); any other entry is its own piece."""
    langs = entry.get("language_row_groups")
    if not langs:
        return [entry]
    base = {k: v for k, v in entry.items() if k != "language_row_groups"}
    return [{**base, "lang_script": lang, "row_groups": [first, count], "rows": rows, "bytes": nbytes,
             "file_bytes": entry.get("bytes")} for lang, first, count, rows, nbytes in langs]


class InputPiece(NamedTuple):
    """One input of a task: a file, or the row groups [first, first + count) of one language in it
    (``file_bytes``: the size of the whole file, from its manifest)."""

    path: str
    row_groups: tuple[int, int] | None = None
    file_bytes: int | None = None


# A multi-language file up to this size is fetched whole (one GET) however little of it a task needs;
# a bigger one is read by ranges: its footer, then the task's row groups with coalesced reads.
WHOLE_FILE_BYTES = 8 << 20


class PieceReader:
    """Reads a task's input pieces; a file is opened once per task, at its first piece, for all the
    task's pieces in it. A small multi-language file is one GET; a big one is read by ranges (footer,
    then only the task's row groups, so a long-tail language never downloads a shard's other languages);
    a single-language file is one GET, as :func:`read_table`."""

    def __init__(self, pieces: Iterable[InputPiece], storage_options: dict[str, Any] | None = None,
                 columns: list[str] | None = None):
        self._pieces = list(pieces)
        self._uses = Counter(p.path for p in self._pieces)
        self._storage_options = storage_options
        self._columns = columns
        self._ready: dict[InputPiece, pa.Table] = {}

    def read(self, piece: InputPiece) -> pa.Table:
        if piece in self._ready:
            return self._ready.pop(piece)
        if piece.row_groups is None:
            return read_table(piece.path, self._storage_options, self._columns)
        mine = [p for p in self._pieces if p.path == piece.path and p != piece]
        if piece.file_bytes is not None and piece.file_bytes <= WHOLE_FILE_BYTES:
            pf = _parquet_file(piece.path, io.BytesIO(_fetch(piece.path, self._storage_options)))
            return self._split(pf, piece, mine)
        try:
            if piece.file_bytes is None:  # not recorded: ask the store (one HEAD)
                fs, path = storage.filesystem(piece.path, self._storage_options)
                size = int(fs.size(path))
            else:
                size = piece.file_bytes
            # each read is one ranged GET of what pyarrow asks for (footer, then the coalesced row groups)
            with storage.RangeReader(piece.path, size, self._storage_options) as f:
                return self._split(_parquet_file(piece.path, f, pre_buffer=True), piece, mine)
        except OSError as e:
            raise ValueError(f"unreadable Parquet file {piece.path}: {e}") from e

    def _split(self, pf: pq.ParquetFile, piece: InputPiece, others: list[InputPiece]) -> pa.Table:
        for p in others:
            self._ready[p] = _row_groups(pf, p, self._columns)
        return _row_groups(pf, piece, self._columns)

    def concat(self, pieces: list[InputPiece]) -> pa.Table:
        """The pieces' rows concatenated in order."""
        tables = [self.read(p) for p in pieces]
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="default")


def _fetch(url: str, storage_options: dict[str, Any] | None) -> bytes:
    try:
        return storage.read_bytes(url, storage_options)
    except OSError as e:
        raise ValueError(f"unreadable Parquet file {url}: {e}") from e


def _parquet_file(url: str, source: Any, pre_buffer: bool = False) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(source, pre_buffer=pre_buffer)
    except (pa.ArrowInvalid, OSError) as e:
        raise ValueError(f"unreadable Parquet file {url}: {e}") from e


def _row_groups(pf: pq.ParquetFile, piece: InputPiece, columns: list[str] | None) -> pa.Table:
    first, count = piece.row_groups or (0, pf.metadata.num_row_groups)
    if first < 0 or count < 1 or first + count > pf.metadata.num_row_groups:
        raise ValueError(f"{piece.path} has {pf.metadata.num_row_groups} row groups, not [{first}, +{count})")
    try:
        return pf.read_row_groups(list(range(first, first + count)), columns=columns)
    except (pa.ArrowInvalid, OSError) as e:
        raise ValueError(f"unreadable Parquet file {piece.path}: {e}") from e


def final_columns(table: pa.Table, keep_signals: bool = False) -> pa.Table:
    """The columns a final stage publishes: :data:`FINAL_SCHEMA` in its order and types, then the
    classify stage's ``quality_*`` columns in their order, then (with ``keep_signals``) the ``sig_*``
    columns in their order. Other columns are dropped."""
    cols = [table.column(f.name).cast(f.type) if f.name in table.column_names
            else pa.nulls(table.num_rows, f.type) for f in FINAL_SCHEMA]
    fields = list(FINAL_SCHEMA)
    prefixes = (QUALITY_PREFIX, SIGNAL_PREFIX) if keep_signals else (QUALITY_PREFIX,)
    for prefix in prefixes:
        for name in table.column_names:
            if name.startswith(prefix):
                cols.append(table.column(name))
                fields.append(table.schema.field(name))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


def read_table(url: str, storage_options: dict[str, Any] | None = None, columns: list[str] | None = None) -> pa.Table:
    """Read one Parquet file. Raises ``ValueError`` naming the file when it is unreadable."""
    try:
        data = storage.read_bytes(url, storage_options)
        return pq.read_table(io.BytesIO(data), columns=columns)
    except (pa.ArrowInvalid, OSError) as e:
        raise ValueError(f"unreadable Parquet file {url}: {e}") from e


def partition_by_language(table: pa.Table) -> Iterable[tuple[str, pa.Table]]:
    """Split a table by ``lang_script`` in sorted label order, keeping row order inside each part."""
    if table.num_rows == 0:
        return []
    labels = table.column("lang_script").to_pylist()
    out = []
    for lab in sorted(set(labels)):
        mask = pa.array([x == lab for x in labels])
        out.append((lab, table.filter(mask)))
    return out


def language_dir(base: str, lang_script: str) -> str:
    return storage.join(base, f"lang_script={lang_script}")
