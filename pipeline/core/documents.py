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
from collections.abc import Iterable
from typing import Any

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
