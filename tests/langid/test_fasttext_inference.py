"""The compiled fastText predictor (``langid/fasttext_inference.py``) against fastText's own binding:
same labels, same order, same float32 probabilities, bit for bit — on the embedded lid.176.ftz and on
models trained here with each supported setting (hs / softmax / one-vs-all, word n-grams, dim 256, dense /
quantised, with / without qnorm, pruned), on real text (UDHR lines in 113 labels, the filter fixture's web
pages) and on inputs made to hit fastText's tokenizer corners."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys

import numpy as np
import pytest

from babelsieve.langid.fasttext_inference import UnsupportedModel, load_fasttext_arrays, predict_lines
from babelsieve.langid.lid import Lid176Backend, identify, prepare_text
from babelsieve.langid.models import lid176_path

from support.data import TEST_DATA, read_jsonl_gz

FIXTURE = TEST_DATA / "filter_fixture.jsonl.gz"


# tests/data/lid-dev-udhr.jsonl.gz: 2,241 lines, grouped by label; the models train on the first 1,600
# and are compared on the other 641 (labels they mostly never saw: low-confidence predictions).
UDHR_TRAIN = 1600


def _udhr(n: int | None = None) -> list[str]:
    return [r["text"] for r in read_jsonl_gz("lid-dev-udhr.jsonl.gz")[:n]]


def _pages() -> list[str]:
    with gzip.open(FIXTURE, "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def _corner_cases() -> list[str]:
    rnd = random.Random(7)
    alphabet = "abcé日本語ру́сскийअ\u0301 \t\r\v\f\0<>/_-.,'\"😀\u200d\U0001F468"
    texts = [
        "",
        " ",
        "\t\r\v\f",
        "hello",
        "</s>",
        "before </s> after the end-of-sentence token",
        "__label__en this line starts with a label token",
        "__label__ __label__xx __labe __label__en__label__",
        "mid\0null\0bytes",
        "x" * 20_000,
        "é" * 5_000,
        "日本語のテキスト" * 300,
        "a\rb\tc\vd\fe",
        "<<>> <> < > >< ééé\u0301\u0301",
        "😀 😀😀 \U0001F468\u200d\U0001F469\u200d\U0001F467",
        "line one\nline two after an inner newline",
        "\n",
    ]
    for _ in range(300):
        n = rnd.randint(0, 120)
        texts.append("".join(rnd.choice(alphabet) for _ in range(n)))
    return texts


def _binding(path):
    import fasttext
    import fasttext.FastText as ft

    ft.eprint = lambda *a, **k: None
    return fasttext.load_model(str(path)).f


def _assert_same(path, texts, settings=((-1, 0.0), (-1, 0.01), (1, 0.0), (3, 0.0), (-1, 0.5), (2, 0.2))):
    f = _binding(path)
    arrays = load_fasttext_arrays(path)
    # the binding reads up to the first "\n" (its end of line): give both exactly one line each
    lines = [t.split("\n")[0] + "\n" for t in texts]
    compared = 0
    for k, thr in settings:
        want_labels, want_probs = f.multilinePredict(lines, k, thr, "strict")
        counts, ids, probs = predict_lines(arrays, lines, k, thr)
        for i, line in enumerate(lines):
            got_labels = [arrays.labels[j] for j in ids[i, : counts[i]]]
            assert got_labels == [lab[9:] for lab in want_labels[i]], (k, thr, line[:80])
            want = np.asarray(want_probs[i], np.float32)
            assert np.array_equal(probs[i, : counts[i]], want), (k, thr, line[:80], probs[i, : counts[i]], want)
            compared += int(counts[i])
    assert compared > len(texts)  # predictions were made, not only empty lists


def test_lid176_same_as_fasttext_on_real_text():
    _assert_same(lid176_path(), _udhr(1500) + _pages())


def test_lid176_same_as_fasttext_on_tokenizer_corners():
    _assert_same(lid176_path(), _corner_cases())


@pytest.mark.parametrize("which", ["lid176", "softmax_dense"])
def test_top1_fallback_is_a_second_fasttext_call(which, request):
    """predict_lines(top1_fallback=True): lines with nothing above the threshold get exactly what fastText's
    multilinePredict(k=1, threshold=0) returns for them; the other lines are unchanged."""
    path = lid176_path() if which == "lid176" else request.getfixturevalue("trained")[which]
    f = _binding(path)
    arrays = load_fasttext_arrays(path)
    lines = [t + "\n" for t in _udhr(600)] + [c.split("\n")[0] + "\n" for c in _corner_cases()[:80]]
    counts, ids, probs = predict_lines(arrays, lines, -1, 0.9, top1_fallback=True)
    plain_labels, plain_probs = f.multilinePredict(lines, -1, 0.9, "strict")
    top_labels, top_probs = f.multilinePredict(lines, 1, 0.0, "strict")
    fell_back = 0
    for i in range(len(lines)):
        want_l, want_p = (plain_labels[i], plain_probs[i]) if len(plain_labels[i]) else (top_labels[i], top_probs[i])
        fell_back += not len(plain_labels[i])
        assert [arrays.labels[j] for j in ids[i, : counts[i]]] == [lab[9:] for lab in want_l]
        assert np.array_equal(probs[i, : counts[i]], np.asarray(want_p, np.float32))
    assert fell_back > 20  # the fallback was really exercised


TRAINERS = {
    "softmax_dense": "loss='softmax'",
    "hs_dense": "loss='hs'",
    "hs_quantised_qnorm": "loss='hs'; quantize=dict(qnorm=True, cutoff=3000)",
    "softmax_quantised": "loss='softmax'; quantize=dict(qnorm=False, cutoff=0)",
    # what quality classifiers use: word n-grams (DCLM: bigrams, dim 256, no character n-grams), one-vs-all
    "softmax_bigrams": "loss='softmax', wordNgrams=2",
    "ova_bigrams": "loss='ova', wordNgrams=2",
    "hs_trigrams": "loss='hs', wordNgrams=3",
    "dclm_shaped": "loss='softmax', wordNgrams=2, dim=256, minn=0, maxn=0",
    "ova_no_subwords": "loss='ova', minn=0, maxn=0",
    "bigrams_quantised": "loss='softmax', wordNgrams=2; quantize=dict(qnorm=True, cutoff=2000)",
    "negative_sampling": "loss='ns'",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Small supervised models trained on UDHR lines, one per setting, each in a fresh process
    (fastText training in a process that already ran numpy/fastText code occasionally hits NaN)."""
    d = tmp_path_factory.mktemp("ftmodels")
    rows = read_jsonl_gz("lid-dev-udhr.jsonl.gz")
    label_key = next(k for k in ("label", "lang", "language") if k in rows[0])
    train = d / "train.txt"
    with open(train, "w", encoding="utf-8") as f:
        for r in rows[:UDHR_TRAIN]:
            f.write(f"__label__{r[label_key]} {r['text'].replace(chr(10), ' ')}\n")
    out = {}
    for name, spec in TRAINERS.items():
        loss_args, _, quant = spec.partition("; quantize=")
        path = d / (name + (".ftz" if quant else ".bin"))
        base = dict(epoch=3, lr=0.5, dim=12, minn=2, maxn=5, bucket=50000, thread=1, seed=3, verbose=0)
        code = (
            "import fasttext, sys\n"
            f"m = fasttext.train_supervised(sys.argv[1], **{{**{base!r}, **dict({loss_args})}})\n"
            + (f"m.quantize(input=sys.argv[1], retrain=False, dsub=2, **{quant})\n" if quant else "")
            + "m.save_model(sys.argv[2])\n"
        )
        subprocess.run([sys.executable, "-c", code, str(train), str(path)], check=True, timeout=300)
        out[name] = path
    return out


@pytest.mark.parametrize("name", ["softmax_dense", "hs_dense", "hs_quantised_qnorm", "softmax_quantised",
                                  "softmax_bigrams", "ova_bigrams", "hs_trigrams", "dclm_shaped", "ova_no_subwords",
                                  "bigrams_quantised"])
def test_trained_models_same_as_fasttext(trained, name):
    texts = _udhr()[UDHR_TRAIN:] + _pages()[:150] + _corner_cases()[:120]
    _assert_same(trained[name], texts)


def test_dense_input_matrix_stays_in_the_file_pages(trained):
    """A dense model's input matrix is a read-only view of the mapped file (shared by the workers of
    a machine), a quantised one is decoded into memory."""
    dense = load_fasttext_arrays(trained["softmax_dense"])
    assert dense.mapping is not None and not dense.input_rows.flags.writeable
    quant = load_fasttext_arrays(trained["softmax_quantised"])
    assert quant.mapping is None and quant.input_rows.flags.writeable
    private = load_fasttext_arrays(trained["softmax_dense"], private_matrix=True)  # BABELSIEVE_LID_MATRIX=private
    assert private.mapping is None and private.input_rows.flags.writeable
    assert np.array_equal(private.input_rows, dense.input_rows)
    lines = [t + "\n" for t in _udhr(200)]
    for got, want in zip(predict_lines(private, lines, -1, 0.0), predict_lines(dense, lines, -1, 0.0), strict=True):
        assert np.array_equal(got, want)


def test_unsupported_and_broken_models_are_refused(trained, tmp_path):
    with pytest.raises(UnsupportedModel, match="hs, softmax or one-vs-all"):
        load_fasttext_arrays(trained["negative_sampling"])
    data = lid176_path().read_bytes()
    cut = tmp_path / "cut.ftz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnsupportedModel, match="ends early"):
        load_fasttext_arrays(cut)
    bad = bytearray(data)
    bad[72:76] = (5).to_bytes(4, "little")  # nlabels (after the 64-byte header, size and nwords): parts disagree
    wrong = tmp_path / "wrong.ftz"
    wrong.write_bytes(bytes(bad))
    with pytest.raises(UnsupportedModel, match="inconsistent|ends early"):
        load_fasttext_arrays(wrong)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(UnsupportedModel):
        load_fasttext_arrays(junk)


def test_backend_falls_back_to_the_binding_with_identical_predictions(trained, monkeypatch):
    """identify() gives the same Predictions through the compiled predictor and through fastText's
    binding (BABELSIEVE_LID_INFERENCE=fasttext), and a model the predictor refuses still works."""
    texts = _udhr(400) + _pages()[:60] + _corner_cases()[:60]
    prepared = [prepare_text(t) for t in texts]
    monkeypatch.setenv("BABELSIEVE_LID_INFERENCE", "compiled")
    fast = Lid176Backend()
    fast_preds = fast.predict(prepared)
    assert fast._compiled and fast._model is None  # the binding was never loaded
    monkeypatch.setenv("BABELSIEVE_LID_INFERENCE", "fasttext")
    slow = Lid176Backend()
    assert slow.compiled is None
    assert fast_preds == slow.predict(prepared)
    assert fast.labels() == slow.labels()

    from babelsieve.langid.lid import GlotLIDBackend

    for name in ("softmax_dense", "hs_quantised_qnorm"):  # the GlotLID backend on models of each kind
        monkeypatch.setenv("BABELSIEVE_LID_INFERENCE", "compiled")
        compiled = GlotLIDBackend(trained[name]).predict(prepared)
        monkeypatch.setenv("BABELSIEVE_LID_INFERENCE", "fasttext")
        assert compiled == GlotLIDBackend(trained[name]).predict(prepared), name
    monkeypatch.delenv("BABELSIEVE_LID_INFERENCE")

    refused = GlotLIDBackend(trained["negative_sampling"])
    assert refused.compiled is None  # refused at load: the binding answers
    preds = identify(texts[:50], backend=refused)
    assert len(preds) == 50 and all(p.backend == "glotlid" for p in preds)


def test_auto_mode_switches_to_the_compiled_predictor_after_the_break_even(monkeypatch):
    """Unset BABELSIEVE_LID_INFERENCE: the binding for the first COMPILED_AFTER_CHARS characters of a
    process, then the compiled predictor; the predictions do not change at the switch."""
    from babelsieve.langid import lid

    monkeypatch.delenv("BABELSIEVE_LID_INFERENCE", raising=False)
    monkeypatch.setattr(lid, "COMPILED_AFTER_CHARS", 60_000)
    texts = [prepare_text(t) for t in _pages()[:120]]
    b = Lid176Backend()
    first = b.predict(texts[:5])
    assert b._compiled is False and b._model is not None  # binding only so far
    preds = first + [p for i in range(5, 120, 10) for p in b.predict(texts[i : i + 10])]
    assert b._compiled and b._model is None  # switched on the way, binding released
    monkeypatch.setenv("BABELSIEVE_LID_INFERENCE", "fasttext")
    assert preds == Lid176Backend().predict(texts)


def test_a_failing_kernel_falls_back_to_the_binding(monkeypatch, caplog):
    """If the compiled predictor raises (e.g. numba cannot compile on a machine), the backend warns once and
    answers through fastText's binding, with the same predictions."""
    from babelsieve.langid import fasttext_inference

    texts = [prepare_text(t) for t in _pages()[:30]]
    monkeypatch.setenv("BABELSIEVE_LID_INFERENCE", "fasttext")
    want = Lid176Backend().predict(texts)
    monkeypatch.setenv("BABELSIEVE_LID_INFERENCE", "compiled")
    b = Lid176Backend()

    def broken(*a, **k):
        raise RuntimeError("no LLVM here")

    monkeypatch.setattr(fasttext_inference, "predict_lines", broken)
    with caplog.at_level("WARNING", logger="babelsieve.langid"):
        assert b.predict(texts) == want
    assert b._compiled is None and "no LLVM here" in caplog.text
