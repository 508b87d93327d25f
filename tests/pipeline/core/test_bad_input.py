"""Bad input gets a clear message and loses nothing else."""

from __future__ import annotations

import json
import subprocess

import polars as pl

from support.data import BABELSIEVE, SAMPLE_WARC, data_file, gzip_members, make_warc

BASE = ["--no-progress", "--workers", "2", "--only", "extract", "--set", "langid.backend=none",
        "--set", "extract.url_filter=false"]


def _run(out, inputs, *extra):
    cmd = [BABELSIEVE, "run", "--output", str(out), *BASE, *extra]
    for i in inputs:
        cmd += ["--input", str(i)]
    return subprocess.run(cmd, capture_output=True, text=True)


def _manifest(out, task_id):
    return json.loads((out / "_manifests" / "extract" / f"{task_id}.json").read_text())


def test_not_a_warc_fails_its_shard_only_and_exit_code_says_so(tmp_path):
    bogus = tmp_path / "notes.warc.gz"
    bogus.write_text("this is a text file, not a WARC\n" * 20)
    out = tmp_path / "out"
    r = _run(out, [SAMPLE_WARC, bogus])
    assert r.returncode == 1
    assert "not a WARC file" in r.stderr and "notes.warc.gz" in r.stderr
    assert _manifest(out, "00000")["stats"]["docs_out"] > 30  # the good shard finished
    assert not (out / "_manifests" / "extract" / "00001.json").exists()
    # --keep-going: same report, exit 0; the good shard is not redone (cached).
    r2 = _run(out, [SAMPLE_WARC, bogus], "--keep-going")
    assert r2.returncode == 0 and "not a WARC file" in r2.stderr


def test_truncated_warc_processes_complete_records_and_reports_cut(tmp_path):
    out = tmp_path / "out"
    r = _run(out, [data_file("sample-truncated.warc.gz")])
    assert r.returncode == 0, r.stderr
    stats = _manifest(out, "00000")["stats"]
    assert stats["responses"] == 5  # every complete response (tests/data/README.md: 5, then the cut 6th)
    assert stats["problem_counts"]["truncated_record"] == 1
    assert any("bhaskar.com" in p["detail"] for p in stats["problems"])
    assert "truncated_record=1" in r.stderr


def test_corrupt_record_is_skipped_and_the_rest_processed(tmp_path):
    data = SAMPLE_WARC.read_bytes()
    members = gzip_members(data)
    clean = _run(tmp_path / "clean", [SAMPLE_WARC])
    assert clean.returncode == 0
    # Corrupt the middle of the 10th member (a response record).
    start = sum(len(m) for m in members[:10])
    broken = bytearray(data)
    for i in range(start + len(members[10]) // 2, start + len(members[10]) // 2 + 8):
        broken[i] ^= 0x5A
    bad = tmp_path / "broken.warc.gz"
    bad.write_bytes(bytes(broken))
    r = _run(tmp_path / "out", [bad])
    assert r.returncode == 0, r.stderr
    stats = _manifest(tmp_path / "out", "00000")["stats"]
    clean_stats = _manifest(tmp_path / "clean", "00000")["stats"]
    assert stats["problem_counts"] == {"corrupt_gzip_member": 1}
    assert stats["responses"] == clean_stats["responses"] - 1
    assert stats["docs_out"] >= clean_stats["docs_out"] - 1


def test_huge_page_non_html_and_wrong_charset_records(tmp_path):
    huge = b"<html><body>" + b"<p>spam paragraph of text</p>" * 1_800_000 + b"</body></html>"  # ~50 MB
    assert len(huge) > 50_000_000
    good = ("<html><head><title>t</title></head><body><article><p>"
            + "Это обычная страница с достаточно длинным текстом для извлечения. " * 20
            + "</p></article></body></html>").encode("cp1251")
    warc = tmp_path / "mixed.warc.gz"
    warc.write_bytes(make_warc([
        ("https://example.org/huge", huge, "text/html; charset=utf-8"),
        ("https://example.org/img.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "image/png"),
        ("https://example.org/ru", good, "text/html; charset=utf-8"),  # label says utf-8, bytes are cp1251
        ("https://example.org/ok", good, "text/html; charset=windows-1251"),
    ]))
    out = tmp_path / "out"
    r = _run(out, [warc])
    assert r.returncode == 0, r.stderr
    stats = _manifest(out, "00000")["stats"]
    assert stats["skipped"]["html_too_large"] == 1 and stats["skipped"]["not_html"] == 1
    df = pl.read_parquet(str(out / "extract" / "**" / "*.parquet"))
    texts = dict(zip(df["url"].to_list(), df["text"].to_list(), strict=True))
    assert "обычная страница" in texts["https://example.org/ok"]
    # The mislabelled page: the header's utf-8 is trusted, so its cp1251 letters become U+FFFD (kept,
    # not a crash) while the ASCII punctuation and spacing survive.
    ru = texts["https://example.org/ru"]
    assert ru.startswith("\ufffd\ufffd\ufffd \ufffd\ufffd\ufffd\ufffd\ufffd\ufffd\ufffd ")
    assert "обычная" not in ru and ru.count(".") == 20


def test_url_filter_removes_blocklisted_domains_and_keeps_them_aside(tmp_path):
    page = b"<html><body><article><p>" + b"Some ordinary words in a paragraph. " * 30 + b"</p></article></body></html>"
    warc = tmp_path / "urls.warc.gz"
    warc.write_bytes(make_warc([
        ("https://www.pornhub.com/view", page, "text/html"),
        ("https://example.org/fine", page, "text/html"),
    ]))
    out = tmp_path / "out"
    r = _run(out, [warc], "--set", "extract.url_filter=true")
    assert r.returncode == 0, r.stderr
    removed = pl.read_parquet(str(out / "removed" / "extract" / "url" / "*.parquet"))
    assert removed["url"].to_list() == ["https://www.pornhub.com/view"]
    assert removed["removal_reason"].to_list() == ["url:domain"]
    kept = pl.read_parquet(str(out / "extract" / "**" / "*.parquet"))
    assert kept["url"].to_list() == ["https://example.org/fine"]


# --------------------------------------------------------------------------------------------
# The per-page limits fire: extract.time_limit_s and extract.memory_limit_mb
# --------------------------------------------------------------------------------------------
def _ordinary(word: str) -> bytes:
    sentence = f"Обычная страница с текстом про {word}. "
    return f"<html><body><article><p>{sentence * 40}</p></article></body></html>".encode()


def _limits_warc(tmp_path, name, special: bytes):
    warc = tmp_path / f"{name}.warc.gz"
    warc.write_bytes(make_warc([
        ("https://example.org/before", _ordinary("кошек"), "text/html; charset=utf-8"),
        (f"https://example.org/{name}", special, "text/html; charset=utf-8"),
        ("https://example.org/after", _ordinary("собак"), "text/html; charset=utf-8"),
    ]))
    return warc


def test_extraction_time_limit_skips_the_slow_page_only(tmp_path):
    # 20,000 linked paragraphs, 2.1 MB: about 2 s of trafilatura CPU time; the limit is 0.1 s.
    slow = ("<html><body>" + "".join(f"<div class='c{i % 7}'><p>word {i} and some more text here, with "
                                     f"punctuation.</p><a href='/x{i}'>link</a></div>" for i in range(20_000))
            + "</body></html>").encode()
    out = tmp_path / "out"
    r = _run(out, [_limits_warc(tmp_path, "slow", slow)], "--set", "extract.time_limit_s=0.1")
    assert r.returncode == 0, r.stderr
    m = _manifest(out, "00000")
    assert m["stats"]["skipped"] == {"extraction_timeout": 1}, m["stats"]
    urls = pl.read_parquet(str(out / "extract" / "**" / "*.parquet"))["url"].to_list()
    assert sorted(urls) == ["https://example.org/after", "https://example.org/before"]


def test_extraction_time_limit_control_the_same_page_passes_with_the_default_limit(tmp_path):
    """Negative control: without the 0.1 s limit the slow page is extracted (so the skip above is
    the limit's doing)."""
    slow = ("<html><body>" + "".join(f"<div class='c{i % 7}'><p>word {i} and some more text here, with "
                                     f"punctuation.</p><a href='/x{i}'>link</a></div>" for i in range(20_000))
            + "</body></html>").encode()
    out = tmp_path / "out"
    r = _run(out, [_limits_warc(tmp_path, "slow", slow)], "--set", "extract.time_limit_s=600")
    assert r.returncode == 0, r.stderr
    assert _manifest(out, "00000")["stats"]["skipped"] == {}
    assert len(pl.read_parquet(str(out / "extract" / "**" / "*.parquet"))) == 3


# 3,000,000 paragraphs (24 MB; max_html_bytes raised for it): trafilatura's trees for it need several GB of
# address space (600,000 of them took 700 MB: VmPeak 348 MB -> 1063 MB), an ordinary page a few MB. The cap
# leaves a worker ample room for everything else: a cap close to a worker's own needs fails the task
# instead (Arrow cannot allocate when the task writes its Parquet), which is not what is tested here.
BIG = b"<html><body>" + b"<p>a</p>" * 3_000_000 + b"</body></html>"
BIG_SETS = ["--set", "extract.max_html_bytes=100000000", "--set", "extract.time_limit_s=300"]
MEMORY_LIMIT_MB = 2000


def test_extraction_memory_limit_skips_the_big_page_only(tmp_path):
    out = tmp_path / "out"
    r = _run(out, [_limits_warc(tmp_path, "big", BIG)], *BIG_SETS,
             "--set", f"extract.memory_limit_mb={MEMORY_LIMIT_MB}")
    assert r.returncode == 0, r.stderr
    m = _manifest(out, "00000")
    assert m["stats"]["skipped"] == {"extraction_memory": 1}, m["stats"]
    urls = pl.read_parquet(str(out / "extract" / "**" / "*.parquet"))["url"].to_list()
    assert sorted(urls) == ["https://example.org/after", "https://example.org/before"]


def test_extraction_memory_limit_control_a_smaller_page_passes_under_the_same_limit(tmp_path):
    """Negative control: under the same cap, a page of the same shape 1/30 the size is extracted, so the
    skip above is the cap meeting the big page (not a cap too small for any page)."""
    out = tmp_path / "out"
    small = b"<html><body>" + b"<p>a</p>" * 100_000 + b"</body></html>"
    r = _run(out, [_limits_warc(tmp_path, "small", small)], *BIG_SETS,
             "--set", f"extract.memory_limit_mb={MEMORY_LIMIT_MB}")
    assert r.returncode == 0, r.stderr
    assert "extraction_memory" not in _manifest(out, "00000")["stats"]["skipped"]
    assert len(pl.read_parquet(str(out / "extract" / "**" / "*.parquet"))) >= 2
