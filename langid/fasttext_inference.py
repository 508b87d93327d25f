"""fastText supervised-model prediction in compiled code (numba), bit for bit what fastText computes.

Why: on extracted web pages, fastText's own C++ ``predict`` is nearly all of language-ID time (the
Python around it is a few per cent), so the stage cannot be much faster than the C++ call. That call
spends its time on a ``std::string`` per character n-gram, a hash-map lookup per n-gram in the pruned
model's bucket map and a stream read per byte. Here the same arithmetic runs over one byte buffer per
batch: n-gram hashes are extended a character at a time (FNV-1a is a running hash, so each longer n-gram
costs one more step), pruned buckets are looked up in a dense array, the input rows of quantised
models are decoded once at load.

What makes the results identical (``tests/langid/test_fasttext_inference.py`` compares labels *and* float32
scores with fastText on real pages, UDHR lines, random Unicode and models trained in the test):

* the same tokens (``readWord``: ASCII whitespace and NUL separate, ``\\n`` is the end-of-sentence token
  ``</s>`` and ends the line; a token equal to ``</s>`` ends it too; tokens with the label prefix are
  dropped), the same word ids, the same n-grams (UTF-8 characters, ``<`` ``>`` around the word, lengths
  ``minn..maxn``, FNV-1a over sign-extended bytes, ``% bucket``, the pruned-bucket map);
* the same float32 arithmetic in the same order: rows summed in token order, times ``float(1.0 / n)``;
  sequential float32 dot products; hierarchical softmax's depth-first walk with fastText's
  ``1. / (1 + exp(-f))`` and ``log(x + 1e-5)`` in the precisions its C++ uses, or softmax with its
  max-shift; the result heap with libstdc++'s ``push_heap``/``pop_heap``/``sort_heap`` (so ties come
  out in fastText's order); probabilities ``expf(score)``.

Models it takes: ``supervised`` with ``hs``, ``softmax`` or ``ova`` (one-vs-all) loss, dense or
product-quantised input (``.ftz``, also with ``qnorm``), dense output, any ``wordNgrams`` (word n-gram
buckets hashed as ``Dictionary::addWordNgrams`` does: what quality classifiers such as DCLM's use), any
``dim``. Anything else (``ns`` loss, unsupervised models) raises :class:`UnsupportedModel` at load and the
caller keeps using the fastText binding.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["FastTextArrays", "UnsupportedModel", "load_fasttext_arrays", "predict_lines"]

_MAGIC = 793712314
_EOS = b"</s>"
_LOSS_HS, _LOSS_SOFTMAX, _LOSS_OVA = 1, 3, 4  # fastText's loss_name enum
_LOSS_KIND = {_LOSS_SOFTMAX: 0, _LOSS_HS: 1, _LOSS_OVA: 2}  # the kernel's loss_kind
_MODEL_SUPERVISED = 3


class UnsupportedModel(ValueError):
    """The model file uses a feature this module does not implement (use the fastText binding)."""


@dataclass
class FastTextArrays:
    """A supervised fastText model as flat arrays for :func:`predict_lines`."""

    labels: list[str]  # without the label prefix
    label_prefix: bytes
    dim: int
    minn: int
    maxn: int
    bucket: int
    nwords: int
    loss: int  # fastText's loss_name: 1 hs, 3 softmax, 4 ova (one-vs-all)
    entry_bytes: np.ndarray  # uint8: every dictionary entry's UTF-8 bytes, concatenated
    entry_offsets: np.ndarray  # int64 [size + 1]
    entry_hash: np.ndarray  # int64: fastText's hash of each entry
    word_table: np.ndarray  # int64 open-addressing table (power-of-two size): (hash & 0x7FFFFFFF) << 32 | id, -1 empty
    ngram_row: np.ndarray  # int32 [bucket]: input row of each n-gram bucket, -1 if pruned away
    input_rows: np.ndarray  # float32 [rows, dim]
    output_rows: np.ndarray  # float32 [rows, dim]
    output_cols: np.ndarray  # float32 [dim, rows]: the output matrix transposed (softmax), else [1, 1]
    tree_left: np.ndarray  # int32 [2 * nlabels - 1] (hierarchical softmax), -1 for leaves
    tree_right: np.ndarray
    eos_id: int
    dense_buckets: bool = False  # not pruned: n-gram bucket b is input row nwords + b
    word_ngrams: int = 1  # fastText's wordNgrams: n-grams of up to this many word tokens are input rows too
    mapping: object = None  # the open mmap that ``input_rows`` points into (dense models), else None


class _Reader:
    """Sequential reads from a memory-mapped model file."""

    def __init__(self, data):
        self.data = data
        self.pos = 0
        self.mapped = False  # a returned view points into ``data``

    def unpack(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise UnsupportedModel("model file ends early")
        vals = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return vals if len(vals) > 1 else vals[0]

    def array(self, dtype, count: int) -> np.ndarray:
        dt = np.dtype(dtype)
        end = self.pos + dt.itemsize * count
        if count < 0 or end > len(self.data):
            raise UnsupportedModel("model file ends early")
        arr = np.frombuffer(self.data, dtype=dt, count=count, offset=self.pos).copy()
        self.pos = end
        return arr

    def view(self, dtype, count: int) -> np.ndarray:
        """Like :meth:`array`, without the copy (read-only, valid while the map is open)."""
        dt = np.dtype(dtype)
        end = self.pos + dt.itemsize * count
        if count < 0 or end > len(self.data):
            raise UnsupportedModel("model file ends early")
        arr = np.frombuffer(self.data, dtype=dt, count=count, offset=self.pos)
        self.pos = end
        self.mapped = True
        return arr

    def cstring(self) -> bytes:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise UnsupportedModel("model file ends early")
        s = self.data[self.pos : end]
        self.pos = end + 1
        return s


def fasttext_hash(word: bytes) -> int:
    """fastText's ``Dictionary::hash``: 32-bit FNV-1a over the bytes taken as signed chars."""
    h = 2166136261
    for b in word:
        h = ((h ^ (b | 0xFFFFFF00 if b >= 128 else b)) * 16777619) & 0xFFFFFFFF
    return h


def _huffman_tree(counts: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """fastText's ``HierarchicalSoftmaxLoss::buildTree`` (labels sorted by decreasing count)."""
    osz = len(counts)
    size = 2 * osz - 1
    count = [10**15] * size
    count[:osz] = counts
    left = np.full(size, -1, np.int32)
    right = np.full(size, -1, np.int32)
    leaf, node = osz - 1, osz
    for i in range(osz, size):
        mini = [0, 0]
        for j in range(2):
            if leaf >= 0 and count[leaf] < count[node]:
                mini[j] = leaf
                leaf -= 1
            else:
                mini[j] = node
                node += 1
        left[i], right[i] = mini
        count[i] = count[mini[0]] + count[mini[1]]
    return left, right


def load_fasttext_arrays(path: str | Path, private_matrix: bool = False) -> FastTextArrays:
    """Parse a fastText ``.bin``/``.ftz`` model file (format version 12) into :class:`FastTextArrays`.

    A dense input matrix stays in the file's pages (read-only, shared by every process of a machine that
    maps the file). ``private_matrix=True`` copies it into this process's memory on 2 MB pages where the
    kernel allows (``MADV_HUGEPAGE``): fewer TLB misses for the random row reads (a GlotLID-shaped model
    on web pages: 152 -> 194 docs/s here) for one copy per process, as fastText's binding holds.
    """
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        arrays = _parse(_Reader(mm), str(path))
        if arrays.mapping is not None and private_matrix:
            arrays.input_rows, arrays.mapping = _private_copy(arrays.input_rows), None
    except BaseException:
        mm.close()
        raise
    if arrays.mapping is None:
        mm.close()
    return arrays


def _private_copy(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` copied into anonymous memory, asking for transparent huge pages."""
    region = mmap.mmap(-1, max(matrix.nbytes, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            region.madvise(mmap.MADV_HUGEPAGE)
        except OSError:  # not supported here: ordinary pages
            pass
    out = np.frombuffer(region, dtype=matrix.dtype, count=matrix.size).reshape(matrix.shape)
    out[...] = matrix
    return out


def _parse(r: _Reader, path: str) -> FastTextArrays:
    magic, version = r.unpack("ii")
    if magic != _MAGIC or version > 12:
        raise UnsupportedModel(f"{path}: not a fastText model of format version <= 12")
    (dim, _ws, _epoch, _min_count, _neg, word_ngrams, loss, model, bucket, minn, maxn, _lr_update) = r.unpack(
        "12i"
    )
    r.unpack("d")  # t
    if version == 11 and model == _MODEL_SUPERVISED:
        maxn = 0  # fastText's loadModel: supervised models of format 11 have no character n-grams
    if model != _MODEL_SUPERVISED or loss not in _LOSS_KIND:
        raise UnsupportedModel("only supervised models with hs, softmax or one-vs-all loss")
    size, nwords, nlabels = r.unpack("iii")
    _ntokens, pruneidx_size = r.unpack("qq")
    words, counts, types = [], [], []
    for _ in range(size):
        words.append(r.cstring())
        c, t = r.unpack("qb")
        counts.append(c)
        types.append(t)
    prune = r.array(np.int32, 2 * max(pruneidx_size, 0)).reshape(-1, 2)
    quant_input = r.unpack("?")
    if quant_input:
        qnorm, m, n, codesize = r.unpack("?qqi")
        codes = r.array(np.uint8, codesize)
        pq_dim, nsubq, dsub, lastdsub = r.unpack("iiii")
        centroids = r.array(np.float32, pq_dim * 256)
        norms = np.ones(m, np.float32)
        if qnorm:  # each row's norm is quantised too: a row is norm * its centroids (float32 product)
            norm_codes = r.array(np.uint8, m)
            r.unpack("iiii")  # the norm quantiser: dim 1, one sub-quantiser
            norms = r.array(np.float32, 256)[norm_codes]
        input_rows = np.empty((m, n), np.float32)
        codes = codes.reshape(m, nsubq)
        for s in range(nsubq):
            d = lastdsub if s == nsubq - 1 else dsub
            base = s * 256 * dsub
            cents = centroids[base : base + 256 * d].reshape(256, d)
            input_rows[:, s * dsub : s * dsub + d] = norms[:, None] * cents[codes[:, s]]
    else:
        m, n = r.unpack("qq")
        # a dense input matrix (GlotLID: ~1.6 GB) stays in the file's pages: read-only, shared by all the
        # worker processes of a machine, instead of one copy per process
        input_rows = r.view(np.float32, m * n).reshape(m, n)
    qout = r.unpack("?")
    if quant_input and qout:
        raise UnsupportedModel("quantised output matrix")
    om, on = r.unpack("qq")
    output_rows = r.array(np.float32, om * on).reshape(om, on)
    # the kernel indexes these arrays without bounds checks: refuse a file whose parts do not fit together
    n_rows = nwords + (bucket if pruneidx_size < 0 else max(pruneidx_size, 0))
    if (
        n != dim
        or on != dim
        or dim <= 0
        or nwords + nlabels != size
        or nlabels < 1
        or om != nlabels
        or m < n_rows
        or (len(prune) and (prune[:, 0].min() < 0 or prune[:, 0].max() >= bucket or prune[:, 1].min() < 0
                            or nwords + prune[:, 1].max() >= m))
        or (quant_input and (pq_dim != dim or (nsubq - 1) * dsub + lastdsub != dim or codesize != m * nsubq))
        or bucket < 0
        or (bucket == 0 and (maxn > 0 or word_ngrams > 1))
    ):
        raise UnsupportedModel(f"{path}: inconsistent model file (sizes of its parts do not fit together)")

    offsets = np.zeros(size + 1, np.int64)
    offsets[1:] = np.cumsum([len(w) for w in words])
    entry_hash = np.array([fasttext_hash(w) for w in words], np.int64)
    table_size = 1 << max(4, (2 * size).bit_length())
    table = np.full(table_size, -1, np.int64)
    for i, h in enumerate(entry_hash.tolist()):
        j = h & (table_size - 1)
        while table[j] != -1:
            j = (j + 1) & (table_size - 1)
        table[j] = ((h & 0x7FFFFFFF) << 32) | i

    if pruneidx_size < 0:  # not pruned: bucket b is row nwords + b
        ngram_row = np.arange(nwords, nwords + max(bucket, 1), dtype=np.int32)
    else:
        ngram_row = np.full(max(bucket, 1), -1, np.int32)
        if len(prune):
            ngram_row[prune[:, 0]] = nwords + prune[:, 1]
    label_counts = [c for c, t in zip(counts, types, strict=True) if t == 1]  # one entry per dictionary word
    if loss == _LOSS_HS:
        left, right = _huffman_tree(label_counts)
    else:
        left = right = np.full(1, -1, np.int32)
    prefix = b"__label__"
    labels = [
        w.decode("utf-8", "replace").removeprefix(prefix.decode()) for w, t in zip(words, types, strict=True) if t == 1
    ]
    eos_id = words.index(_EOS) if _EOS in words else -1
    return FastTextArrays(
        labels=labels,
        label_prefix=prefix,
        dim=dim,
        minn=minn,
        maxn=maxn,
        bucket=bucket,
        nwords=nwords,
        loss=loss,
        entry_bytes=np.frombuffer(b"".join(words), np.uint8).copy(),
        entry_offsets=offsets,
        entry_hash=entry_hash,
        word_table=table,
        ngram_row=ngram_row,
        input_rows=input_rows,
        output_rows=np.ascontiguousarray(output_rows),
        output_cols=np.ascontiguousarray(output_rows.T) if loss != _LOSS_HS else np.zeros((1, 1), np.float32),
        tree_left=left,
        tree_right=right,
        eos_id=eos_id,
        word_ngrams=max(word_ngrams, 1),
        dense_buckets=pruneidx_size < 0,
        mapping=r.data if r.mapped else None,
    )


_kernel = None
_sigmoid_table = None


def _fasttext_sigmoid_table() -> np.ndarray:
    """fastText's ``t_sigmoid_`` (``Loss::Loss``): ``1.0 / (1.0 + std::exp(-x))`` with ``x`` float32 and
    ``std::exp`` the float overload (``expf``) of the C library fastText is linked with, the rest in double.
    ``expf`` comes from the system's libm through ctypes so the table is the binding's to the last bit
    (fallback: double ``exp`` rounded to float32, which agrees with a correctly rounded ``expf``)."""
    global _sigmoid_table
    if _sigmoid_table is None:
        import ctypes
        import ctypes.util
        import math

        try:
            libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
            libm.expf.restype = ctypes.c_float
            libm.expf.argtypes = [ctypes.c_float]
            expf = libm.expf
        except (OSError, AttributeError):  # no C library to ask: round the double result
            def expf(v: float) -> float:
                return float(np.float32(math.exp(v)))
        table = np.empty(513, np.float32)
        for i in range(513):
            x = np.float32(np.float32(i * 16) / np.float32(512)) - np.float32(8)
            table[i] = np.float32(1.0 / (1.0 + float(expf(float(-x)))))
        _sigmoid_table = table
    return _sigmoid_table


def _get_kernel():
    global _kernel
    if _kernel is None:
        from babelsieve.langid import fasttext_kernel

        _kernel = fasttext_kernel.predict_batch
    return _kernel


def predict_lines(
    model: FastTextArrays, lines: list[str], k: int = -1, threshold: float = 0.0, top1_fallback: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fastText's ``multilinePredict(lines, k, threshold)`` for lines that each end with ``"\\n"``.

    ``top1_fallback``: a line with no label above ``threshold`` gets fastText's ``k=1, threshold=0``
    prediction instead (computed from the same pass).

    Returns ``(counts, label_ids, probs)``: document ``i`` has ``counts[i]`` predictions, best first,
    in rows ``i`` of the ``[len(lines), max_k]`` arrays (``probs`` float32, as fastText returns them).
    """
    # (lone surrogates, which fastText's binding refuses, are kept as their bytes)
    data = [s.encode("utf-8", "surrogatepass") for s in lines]
    lengths = np.fromiter((len(b) for b in data), np.int64, len(data))
    starts = np.zeros(len(data) + 1, np.int64)
    np.cumsum(lengths, out=starts[1:])
    buf = np.frombuffer(b"".join(data), np.uint8) if data else np.zeros(0, np.uint8)
    nlabels = len(model.labels)
    kk = nlabels if k < 0 else min(k, nlabels)
    counts = np.zeros(len(data), np.int32)
    label_ids = np.zeros((len(data), max(kk, 1)), np.int32)
    probs = np.zeros((len(data), max(kk, 1)), np.float32)
    if len(data):
        _get_kernel()(
            buf, starts, model.entry_bytes, model.entry_offsets, model.entry_hash, model.word_table,
            model.ngram_row, model.input_rows, model.output_rows, model.output_cols, model.tree_left, model.tree_right,
            np.frombuffer(model.label_prefix, np.uint8), model.eos_id, model.nwords, nlabels,
            model.minn, model.maxn, model.bucket, _LOSS_KIND[model.loss], kk, np.float32(threshold),
            top1_fallback, counts, label_ids, probs, model.word_ngrams, fasttext_hash(_EOS),
            _fasttext_sigmoid_table(), model.dense_buckets,
        )
    return counts, label_ids, probs

