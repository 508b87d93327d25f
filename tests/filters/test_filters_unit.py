"""Signals/decisions on hand-made and bad inputs; finalize formatters; optional C4 and KenLM."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from babelsieve.filters.apply import filter_texts, resolve_settings  # noqa: E402
from babelsieve.filters.decisions import decide  # noqa: E402
from babelsieve.filters.settings import FilterSettings, language_settings  # noqa: E402
from babelsieve.filters.signals import SIGNAL_COLUMNS, compute_signals, stopword_counts  # noqa: E402

PARA = ("Die Würde des Menschen ist unantastbar. Sie zu achten und zu schützen ist Verpflichtung aller "
        "staatlichen Gewalt. Das deutsche Volk bekennt sich darum zu unverletzlichen und unveräußerlichen "
        "Menschenrechten als Grundlage jeder menschlichen Gemeinschaft, des Friedens und der Gerechtigkeit "
        "in der Welt.")


def test_columns_stable_and_documented():
    t = compute_signals([PARA], "deu_Latn")
    assert t.column_names == SIGNAL_COLUMNS
    import babelsieve.filters.signals as mod

    for c in SIGNAL_COLUMNS:
        assert c.startswith("sig_")
        assert c.replace("{n}", "") in mod.__doc__ or c.split("_")[1] in ("top", "dup")


def test_known_values():
    text = "a b c a b c\na b c a b c\nx"
    t = compute_signals([text], words=[text.split()], stopwords=["a", "x", "q"]).to_pylist()[0]
    assert t["sig_line_dup_frac"] == 1 / 3
    assert t["sig_n_words"] == 13 and t["sig_stopword_count"] == 2
    # top 2-gram "a b" x4 = 12 chars; datatrove's greedy 5-gram scan: "abcab" at 0 new ... repeats
    assert t["sig_top_2gram_char_frac"] == 3 * 4 / len(text)
    assert t["sig_newline_word_ratio"] == 2 / 13


def test_greedy_duplicate_scan_matches_datatrove_on_tricky_sequences():
    from datatrove.pipeline.filters.gopher_repetition_filter import find_all_duplicate

    rng = np.random.default_rng(0)
    for _trial in range(300):
        vocab = ["a", "b", "ab", "ba", "c"][: rng.integers(1, 6)]
        words = [vocab[i] for i in rng.integers(0, len(vocab), rng.integers(0, 60))]
        text = " ".join(words) or " "
        sig = compute_signals([text], words=[words], stopwords=[]).to_pylist()[0]
        for n in range(5, 11):
            assert sig[f"sig_dup_{n}gram_char_frac"] == find_all_duplicate(words, n) / len(text), (words, n)


@pytest.mark.parametrize(
    "text,reason",
    [
        ("", "gopher_rep:empty"),
        ("   \n\t\n ", "fineweb_qual:empty"),
        ("12345 67890 ---- !!!! ???? ....", "gopher_rep:top_2_gram"),  # datatrove: 2-grams first
    ],
)
def test_bad_input_clear_reasons(text, reason):
    assert filter_texts([text], "deu_Latn") == [reason]


def test_none_text_is_empty():
    decisions = decide(compute_signals([None], "deu_Latn"), language_settings("deu_Latn")).to_pylist()
    assert decisions == ["gopher_rep:empty"]


def test_single_5mb_line():
    # whitespace tokens (spaCy alone needs ~1 min for 5 MB on a loaded core; the signal code is what we test)
    text = ("lorem " * 900_000)[:5_000_000]
    t = compute_signals([text, PARA], tokenize=lambda ts: [x.split() for x in ts], stopwords=["lorem"])
    sig = t.to_pylist()[0]
    assert sig["sig_text_len"] == 5_000_000 and sig["sig_n_words"] == 833_334
    s = language_settings("deu_Latn", {"dup_line_frac": 0})
    assert decide(t, s).to_pylist()[0] == "gopher_rep:top_2_gram"


def test_text_in_another_script():
    # Thai text labelled Russian: no crash, removed with a clear reason
    thai = "ประเทศไทยมีประชากรประมาณหกสิบหกล้านคน " * 5
    r = filter_texts([thai], "rus_Cyrl")[0]
    assert r is not None and r.startswith(("gopher_rep:", "fineweb_qual:", "gopher_qual:"))


def test_language_missing_from_table():
    s, note = resolve_settings("eng_Latn")
    assert not s.has_fineweb2_config and s.min_stop_words == 0 and "no FineWeb2 config" in note
    s, note = resolve_settings("not-a-label")
    assert "malformed" in note
    # A malformed label is filtered with the defaults (as a language without a FineWeb2 config): the same
    # decisions as eng_Latn on a repetitive text and on a too-short one.
    want = ["gopher_rep:duplicated_5_n_grams", "gopher_qual:gopher_short_doc"]
    assert filter_texts([PARA * 3, PARA], "not-a-label") == want
    assert filter_texts([PARA * 3, PARA], "eng_Latn") == want
    with pytest.raises(ValueError):
        language_settings("not-a-label")


def test_overrides_and_falsy_zero():
    s = language_settings("deu_Latn", {"dup_line_frac": 0, "top_n_grams": [[2, 0.5]]})
    assert s.dup_line_frac == 0 and s.top_n_grams == ((2, 0.5),)
    text = "\n".join([PARA] * 4)
    sig = compute_signals([text], "deu_Latn")
    # dup_line_frac 0 is off (falsy), as in datatrove; dup_n_grams frac 0 is NOT off
    assert decide(sig, s).to_pylist()[0] != "gopher_rep:dup_line_frac"
    s0 = FilterSettings(dup_line_frac=0, top_n_grams=(), dup_n_grams=((5, 0),))
    assert decide(sig, s0).to_pylist() == ["gopher_rep:duplicated_5_n_grams"]
    with pytest.raises(ValueError):
        language_settings("deu_Latn", {"no_such_setting": 1})


def test_stopword_recount():
    words = [["der", "die", "x"], ["y"]]
    assert stopword_counts(words, ["der", "die", "das"]).tolist() == [2, 0]


def test_finalize_matches_datatrove_and_fineweb2_order():
    from datatrove.pipeline.formatters import FTFYFormatter, PIIFormatter, SymbolLinesFormatter

    from babelsieve.filters.formatters import finalize_texts

    texts = [
        "Contact me at john.doe@gmail.com or 8.8.8.8, not 192.168.0.1 or 127.0.0.1.\r\nNext",
        "The Mona Lisa doesnÃ¢â‚¬â„¢t have eyebrows.",
        "Name | Age\n| | |\n|||\nBob | 3\n",
        "",
        "plain text without anything",
    ]
    res = finalize_texts(texts)
    ftfy_, pii, sym = FTFYFormatter(), PIIFormatter(), SymbolLinesFormatter(symbols_to_remove=["|"], replace_char="\n")
    expected = [sym.format(pii.format(ftfy_.format(t))) if t else "" for t in texts]
    assert res.texts == expected
    assert "email@example.com" in res.texts[0] and "192.168.0.1" in res.texts[0] and "127.0.0.1" in res.texts[0]
    assert "8.8.8.8" not in res.texts[0]
    assert "doesn’t" in res.texts[1]
    assert "|||" not in res.texts[2]
    assert res.changed["pii"] == 1


def test_c4_optional():
    from babelsieve.filters.optional import c4_signals

    good = "\n".join(["This is a proper sentence with words. It has two sentences here."] * 4)
    out = c4_signals(["lorem ipsum dolor sit amet is here.", "function() { return 1; } is code here.", good], "en")
    assert out[0] == "lorem_ipsum" and out[1] == "curly_bracket" and out[2] is None
    s = language_settings("deu_Latn", {"c4": True, "gopher_repetition": False, "fineweb_quality": False,
                                       "gopher_quality": False})
    from babelsieve.filters.apply import signals_for

    assert decide(signals_for(["lorem ipsum dolor sit amet is here."], s), s).to_pylist() == ["c4:lorem_ipsum"]


ARPA = """\\data\\
ngram 1=5
ngram 2=4

\\1-grams:
-1.0\t<unk>\t0
0\t<s>\t-0.30103
-0.69897\t</s>\t0
-0.30103\thallo\t-0.30103
-0.39794\twelt\t-0.30103

\\2-grams:
-0.1\t<s> hallo
-0.2\thallo welt
-0.1\twelt </s>
-0.5\thallo </s>

\\end\\
"""


def test_kenlm_perplexity_with_hand_written_arpa(tmp_path):
    kenlm = pytest.importorskip("kenlm")
    p = tmp_path / "tiny.arpa"
    p.write_text(ARPA)
    from babelsieve.filters.optional import KenLMScorer, perplexity_buckets

    sc = KenLMScorer(str(p))
    ppl = sc.perplexity(["Hallo Welt", "welt welt hallo unbekannt", ""])
    m = kenlm.Model(str(p))
    expected = round(10 ** (-m.score("hallo welt") / 3), 1)
    assert ppl[0] == expected and ppl[1] > ppl[0] and math.isnan(ppl[2])
    assert perplexity_buckets(ppl, 5, 100) == ["head" if ppl[0] < 5 else "middle",
                                               "tail" if ppl[1] >= 100 else "middle", None]
    s = language_settings("deu_Latn", {"kenlm_model": str(p), "kenlm_max_perplexity": float(ppl[0]),
                                       "gopher_repetition": False, "fineweb_quality": False, "gopher_quality": False})
    from babelsieve.filters.apply import signals_for

    decisions = decide(signals_for(["Hallo Welt", "welt welt hallo unbekannt"], s), s).to_pylist()
    assert decisions == [None, "kenlm:perplexity"]
