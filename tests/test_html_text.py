"""Charset decoding order and the per-document time bound."""

from __future__ import annotations

import time

import pytest

from babelsieve.pipeline.html_text import ExtractionTimeout, TextExtractor, decode_html, time_limit

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
    t0 = time.perf_counter()
    with pytest.raises(ExtractionTimeout):
        with time_limit(0.2):
            while True:
                sum(range(1000))
    assert time.perf_counter() - t0 < 2


def test_pathological_deep_tree_is_bounded():
    html = "<html><body>" + "<div>" * 200_000 + "text" + "</div>" * 200_000 + "</body></html>"
    ex = TextExtractor(time_limit_s=5)
    t0 = time.perf_counter()
    try:
        ex.extract(html)
    except ExtractionTimeout:
        pass
    assert time.perf_counter() - t0 < 8
