"""Charset decoding order and the per-document time bound."""

from __future__ import annotations

import time

import pytest

from babelsieve.extraction.html_text import ExtractionTimeout, TextExtractor, decode_html, time_limit

RU = "Всеобщая декларация прав человека"


def test_header_charset_wins_over_meta():
    body = f"<html><head><meta charset='utf-8'></head><body>{RU}</body></html>".encode("koi8-r")
    text, enc = decode_html(body, "text/html; charset=KOI8-R")
    assert RU in text and enc == "koi8-r"


def test_meta_used_when_header_has_no_charset():
    body = (
        "<html><head><meta http-equiv='Content-Type' content='text/html; charset=windows-1251'></head>"
        f"<p>{RU}</p>"
    ).encode("cp1251")
    text, _ = decode_html(body, "text/html")
    assert RU in text


def test_utf8_page_mislabelled_as_latin1_is_read_as_utf8():
    body = f"<p>{RU}</p>".encode()
    text, enc = decode_html(body, "text/html; charset=iso-8859-1")
    assert RU in text and enc == "utf-8"


PL = "Kolejne organizacje sprzeciwiają się skandalicznym i bezpodstawnym atakom. Zażółć gęślą jaźń. "


def test_utf8_page_with_one_broken_byte_under_a_legacy_label_is_read_as_utf8():
    """The radiomaryja.pl page of the benchmark (test_bench_disagreements.py): UTF-8 with one bad byte,
    labelled mac_latin2. Following the label turned every Polish letter into mojibake."""
    body = f"<p>{PL * 20}</p>".encode() + b"<p>bad \xc3( byte</p>"
    text, enc = decode_html(body, "text/html; charset=mac_latin2")
    assert enc == "utf-8" and PL * 20 in text and text.count("\ufffd") == 1


def test_legacy_text_that_is_valid_utf8_here_and_there_keeps_its_label():
    """Negative control: cp1251 Russian with one pair that happens to be valid UTF-8 ("Рџ" = D0 9F = "П")
    breaks UTF-8 at nearly every other letter, far more than 1 per 100 valid characters."""
    body = f"<p>Рџ {RU * 5}</p>".encode("cp1251")
    assert body.decode("utf-8", errors="replace").count("П") == 1
    text, enc = decode_html(body, "text/html; charset=windows-1251")
    assert enc == "cp1251" and RU * 5 in text


def test_detection_when_nothing_is_declared():
    body = ("<p>" + "日本語のテキストです。" * 30 + "</p>").encode("shift_jis")
    text, _ = decode_html(body, "text/html")
    assert "日本語のテキスト" in text


def test_utf16_header_is_trusted():
    body = "<html><p>hello world</p></html>".encode("utf-16-le")
    text, enc = decode_html(body, "text/html; charset=utf-16le")
    assert "hello world" in text


def test_undecodable_bytes_are_replaced_not_raised():
    text, _ = decode_html(b"<p>ok \xff\xfe\xfa broken</p>", "text/html; charset=utf-8")
    assert "ok" in text and "\ufffd" in text


def test_unknown_charset_label_falls_back():
    text, _ = decode_html(b"<p>plain text</p>", "text/html; charset=x-no-such-charset")
    assert "plain text" in text


def test_time_limit_interrupts_python_work():
    """The limit fires: an endless loop ends with ExtractionTimeout. The loop stops by itself after
    60 s of CPU time (so a broken limit fails the test instead of hanging it); CPU time, not wall
    time, bounds how late the limit may fire (the machine may be loaded)."""
    c0 = time.process_time()
    with pytest.raises(ExtractionTimeout):
        with time_limit(0.2):
            while time.process_time() - c0 < 60:
                sum(range(1000))
    assert time.process_time() - c0 < 30


def _slow_page() -> str:
    """A page that takes trafilatura about 2 s of CPU time (20,000 linked paragraphs, 2.1 MB; measured
    on a 2-core machine). The old deep-tree page (200,000 nested divs) took only 0.4 s."""
    body = "".join(f"<div class='c{i % 7}'><p>word {i} and some more text here, with "
                   f"punctuation.</p><a href='/x{i}'>link</a></div>" for i in range(20_000))
    return "<html><body>" + body + "</body></html>"


def test_pathological_deep_tree_is_cut_by_the_time_limit():
    ex = TextExtractor(time_limit_s=0.1)
    c0 = time.process_time()
    with pytest.raises(ExtractionTimeout):
        ex.extract(_slow_page())
    assert time.process_time() - c0 < 30  # generous: unbounded, the page takes far longer on any machine


def test_the_limit_is_what_cuts_the_slow_page():
    """Negative control of the test above: with a limit it cannot reach, the same page completes, so
    the ExtractionTimeout above came from the limit and not from the page itself."""
    text = TextExtractor(time_limit_s=600).extract(_slow_page())
    assert "word 19999 and some more text here" in text


def test_a_limit_that_fires_while_lxml_parses_is_still_a_timeout():
    """trafilatura wraps its lxml parse in ``except Exception`` (logging "lxml parsing failed"): a
    timeout raised there as an ordinary Exception was swallowed, the page counted as empty and, had it
    landed in a later ``except Exception``, the rest of the page would have run with no limit at all.
    A 5 ms limit on a 2 MB page fires inside that parse."""
    for _ in range(3):
        with pytest.raises(ExtractionTimeout):
            TextExtractor(time_limit_s=0.005).extract(_slow_page())
