"""Extract stage: one task per WARC shard.

WARC records -> HTTP 200 HTML responses -> URL filter -> charset decoding -> trafilatura
(favour precision) -> language ID -> per-language minimum score -> one Parquet file per shard,
``extract/<task_id>.parquet``, sorted by ``lang_script`` with each language in its own row groups
(the manifest entry lists them: later stages plan and read per language, with no file per language).
Removed documents (URL filter, language score) are kept under ``removed/extract/<reason>/``;
records that are not documents (requests, non-HTML, errors) are counted with their reason in the task's statistics.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from babelsieve.extraction.html_text import ExtractionTimeout, TextExtractor, decode_html, is_html, time_limit
from babelsieve.extraction.warc import (
    MAX_HTTP_HEADER_BYTES,
    NotAWarcError,
    RecordSkipped,
    WarcRecord,
    iter_records,
    parse_http_response,
)
from babelsieve.pipeline.core import storage
from babelsieve.pipeline.core.documents import (
    DOCUMENT_SCHEMA,
    REMOVED_EXTRA,
    partition_by_language,
    table_from_rows,
    write_language_parts,
    write_table,
)
from babelsieve.pipeline.core.inputs import dump_from_path, expand_inputs, storage_options_for
from babelsieve.pipeline.core.tasks import Stage, Task, TaskOutput

REMOVED_SCHEMA = DOCUMENT_SCHEMA.append(REMOVED_EXTRA)
_MAX_PROBLEMS_LISTED = 50
_IS_PART_OF = re.compile(r"isPartOf:\s*(\S+)")


class ExtractStage(Stage):
    name = "extract"
    plan_selects = True  # a shard range: extract tasks of other ranges stay valid

    def plan(self) -> list[Task]:
        shards = expand_inputs(self.config.inputs.paths, self.config.inputs.shards, self.storage_options)
        if not shards:
            raise ValueError("no input shards: give --input PATH_OR_URL or inputs.paths in the config")
        # Task ids are positions in the full listing, so a shard range keeps the same names.
        offset = 0
        if self.config.inputs.shards:
            start = self.config.inputs.shards.split(":")[0].strip()
            offset = int(start) if start else 0
        return [Task(self.name, f"{offset + i:05d}", (url,)) for i, url in enumerate(shards)]

    def run(self, task: Task) -> TaskOutput:
        (url,) = task.inputs
        cfg = self.config.extract
        opts = storage_options_for(url, self.storage_options)
        extractor = TextExtractor(cfg.favour_precision, cfg.deduplicate, cfg.time_limit_s, cfg.extractor)
        blocklist = None
        if cfg.url_filter:
            from babelsieve.filters.url_filter import url_blocklist

            blocklist = url_blocklist()
        dump = dump_from_path(url) or self.config.inputs.dump or ""
        skipped: Counter[str] = Counter()
        problems: list[Any] = []
        docs: list[dict[str, Any]] = []
        removed: list[dict[str, Any]] = []
        n_records = n_responses = 0

        fs, path = storage.filesystem(url, opts)
        # A record longer than this cannot hold a page within max_html_bytes (the factor 2 allows
        # for chunked-encoding overhead): the reader keeps only its head.
        max_record = 2 * cfg.max_html_bytes + MAX_HTTP_HEADER_BYTES + (1 << 20)
        with fs.open(path, "rb") as f:
            try:
                records = iter_records(f, problems, max_record_bytes=max_record, record_time_limit_s=cfg.time_limit_s)
                for rec in records:
                    n_records += 1
                    if rec.type == "warcinfo" and not dump:
                        m = _IS_PART_OF.search(rec.block[:65536].decode("utf-8", "replace"))
                        dump = dump_from_path(m.group(1)) or m.group(1) if m else dump
                        continue
                    if rec.type != "response":
                        continue
                    n_responses += 1
                    outcome = self._guarded_record(rec, url, dump, blocklist, extractor, problems)
                    if isinstance(outcome, str):
                        skipped[outcome] += 1
                    elif outcome.get("removal_reason"):
                        removed.append(outcome)
                    else:
                        docs.append(outcome)
            except NotAWarcError as e:
                raise NotAWarcError(f"{url}: {e}") from None

        kept, lid_removed = identify_languages(docs, self.config)
        removed.extend(lid_removed)
        stats = _task_stats(n_records, n_responses, kept, removed, skipped, problems)
        return self._publish(task, kept, removed, stats)

    def _guarded_record(self, rec: WarcRecord, url: str, dump: str, blocklist: Any, extractor: TextExtractor,
                        problems: list[Any]) -> dict[str, Any] | str:
        """:meth:`_record` behind the one guard of a record: whatever its bytes do (a bomb, a bad charset,
        a parser bug, a slow page), that record is skipped with a reason, never the shard."""
        target = rec.headers.get("warc-target-uri", "").strip().strip("<>")
        try:
            with time_limit(self.config.extract.time_limit_s):
                return self._record(rec, target, url, dump, blocklist, extractor, problems)
        except ExtractionTimeout:
            problems.append(_problem(rec.offset, "extraction_timeout", target))
            return "extraction_timeout"
        except RecordSkipped as e:
            problems.append(_problem(rec.offset, e.reason, f"{e.detail} ({target})"))
            return e.reason
        except MemoryError:
            problems.append(_problem(rec.offset, "extraction_memory", target))
            return "extraction_memory"
        except Exception as e:  # noqa: BLE001 - hostile bytes in one record cost that record only
            problems.append(_problem(rec.offset, "extraction_error", f"{type(e).__name__}: {e} ({target})"))
            return "extraction_error"

    def _record(self, rec: WarcRecord, target: str, url: str, dump: str, blocklist: Any, extractor: TextExtractor,
                problems: list[Any]) -> dict[str, Any] | str:
        """One response record -> a document row, a removed row (with ``removal_reason``), or the
        name of the reason it is skipped. Raises for the caller's per-record guard."""
        cfg = self.config.extract
        http = parse_http_response(rec.block, max_body_bytes=cfg.max_html_bytes, decode_body=rec.complete)
        if http is None:
            return "not_http"
        if http.status != 200:
            return f"http_{http.status}"
        ctype = http.headers.get("content-type", "")
        if not is_html(ctype):
            return "not_html"
        if not rec.complete or len(http.body) > cfg.max_html_bytes:
            size = rec.length if not rec.complete else len(http.body)
            problems.append(_problem(rec.offset, "html_too_large", f"{size} bytes ({target})"))
            return "html_too_large"
        for p in http.problems:
            problems.append(_problem(rec.offset, "http_body_problem", f"{p} ({target})"))
        row = {
            "id": rec.headers.get("warc-record-id", ""),
            "dump": dump,
            "url": target,
            "date": rec.headers.get("warc-date", ""),
            "file_path": url,
        }
        rejected: list[str] = []
        html, _ = decode_html(http.body, ctype, rejected)
        for name in rejected:
            problems.append(_problem(rec.offset, "charset_not_text", f"charset {name!r} ignored ({target})"))
        if blocklist is not None:
            reason = blocklist.reason(target)
            if reason:
                return {**row, "text": html, "removal_reason": f"url:{reason}"}
        text = extractor.extract(html, bounded=False)
        if not text or len(text) < cfg.min_text_chars:
            return "extraction_empty"
        return {**row, "text": text}

    def _publish(self, task: Task, kept: list[dict[str, Any]], removed: list[dict[str, Any]],
                 stats: dict[str, Any]) -> TaskOutput:
        files = []
        parts = partition_by_language(table_from_rows(kept))
        if parts:  # one file for all the shard's languages, a row group run per language
            url = storage.join(self.layout.stage_dir("extract"), f"{task.task_id}.parquet")
            files.append({**write_language_parts(url, parts, self.storage_options), "kind": "documents"})
        by_reason: dict[str, list[dict[str, Any]]] = {}
        for r in removed:
            by_reason.setdefault(r["removal_reason"].split(":")[0], []).append(r)
        for reason in sorted(by_reason):
            rows = by_reason[reason]
            for r in rows:
                r.setdefault("lang_script", "und")
                r.setdefault("language", "und")
            entry = write_table(
                storage.join(self.layout.removed_dir("extract", reason), f"{task.task_id}.parquet"),
                table_from_rows(rows, REMOVED_SCHEMA),
                self.storage_options,
            )
            files.append({**entry, "kind": "removed", "reason": reason})
        return TaskOutput(files=files, stats=stats)


def _task_stats(n_records: int, n_responses: int, kept: list[dict[str, Any]], removed: list[dict[str, Any]],
                skipped: Counter[str], problems: list[Any]) -> dict[str, Any]:
    """An extract task's statistics: records read, documents kept/removed/skipped and why, problems."""
    return {
        "records": n_records,
        "responses": n_responses,
        "docs_in": n_responses,
        "docs_out": len(kept),
        "removed": dict(Counter(r["removal_reason"].split(":")[0] for r in removed)),
        "skipped": dict(skipped),
        "problems": [p if isinstance(p, dict) else _problem(p.offset, p.reason, p.detail) for p in problems][
            :_MAX_PROBLEMS_LISTED
        ],
        "problem_counts": dict(Counter((p["reason"] if isinstance(p, dict) else p.reason) for p in problems)),
        "languages": dict(sorted(Counter(d["lang_script"] for d in kept).items())),
    }


def _problem(offset: int, reason: str, detail: str) -> dict[str, Any]:
    return {"offset": offset, "reason": reason, "detail": detail[:300]}


_GLOTLID_MODELS: dict[str, Any] = {}


def _glotlid_from(url: str) -> Any:
    """A GlotLID backend for a model file given by path or URL (cached per process)."""
    if url not in _GLOTLID_MODELS:
        from babelsieve.langid.lid import GlotLIDBackend
        from babelsieve.langid.models import pull_glotlid

        local = "://" not in url or url.startswith("file://")
        path = url.removeprefix("file://") if local else str(pull_glotlid(url=url))
        _GLOTLID_MODELS[url] = GlotLIDBackend(path)
    return _GLOTLID_MODELS[url]


def identify_languages(docs: list[dict[str, Any]], config: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Label documents in one batch and apply each language's minimum score.

    Returns (kept, removed); removed rows carry ``removal_reason='language_score'``.
    """
    lid = config.langid
    if lid.backend == "none" or not docs:
        for d in docs:
            d.update(language="und", language_script="", language_score=0.0, top_langs="{}", lang_script="und")
        return docs, []
    from babelsieve.langid.language_table import get_language
    from babelsieve.langid.lid import identify

    backend: Any = None if lid.backend == "auto" else lid.backend
    if lid.model:
        backend = _glotlid_from(lid.model)
    preds = identify([d["text"] for d in docs], backend=backend, threshold=lid.top_langs_threshold)
    kept, removed = [], []
    for d, p in zip(docs, preds, strict=True):  # identify: one prediction per text
        code, _, script = p.label.partition("_")
        d.update(
            language=code,
            language_script=script,
            language_score=round(float(p.score), 6),
            top_langs=json.dumps({f"{k}_score": round(float(v), 6) for k, v in p.top_langs.items()}, sort_keys=True),
            lang_script=p.label,
        )
        minimum = lid.min_score.get(p.label)
        if minimum is None:
            entry = get_language(p.label)
            # FineWeb2's minimums are GlotLID probabilities; lid.176 has its own (language table).
            minimum = entry.language_score if p.backend == "glotlid" else entry.lid176_score
        if d["language_score"] < minimum:
            removed.append({**d, "removal_reason": f"language_score:{p.label}<{minimum}"})
        else:
            kept.append(d)
    return kept, removed
