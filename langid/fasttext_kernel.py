"""The compiled loop of :mod:`babelsieve.langid.fasttext_inference` (numba, cached on disk after the first use).

Kept in its own module so that importing the language-ID package does not import numba.
Each function mirrors one fastText / libstdc++ routine; the float32/float64 casts are where fastText's
C++ converts, and must stay where they are for the scores to be identical.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_F32 = np.float32
_PREFETCH_AHEAD = 6  # rows of a document's input rows prefetched ahead of the one being summed


@intrinsic
def _prefetch(typingctx, arr, i, j):
    """``llvm.prefetch`` (read, high locality) of the address of ``arr[i, j]``: a hint, no effect on results."""
    sig = types.void(arr, i, j)

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = [context.cast(builder, args[k], signature.args[k], types.intp) for k in (1, 2)]
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, inline="always")
def _fnv_step(h: int, b: int) -> int:
    # fastText hashes each byte as a signed char widened to uint32
    if b >= 128:
        b = b | 0xFFFFFF00
    return ((h ^ b) * 16777619) & 0xFFFFFFFF


@njit(cache=True, inline="always")
def _sext32(h):
    """A 32-bit hash read back as int32 and widened to uint64 (two's complement), as fastText's
    ``uint64_t h = hashes[i]`` over a ``vector<int32_t>`` does."""
    if h >= 2147483648:
        return np.uint64(h) | np.uint64(0xFFFFFFFF00000000)
    return np.uint64(h)


@njit(cache=True, inline="always")
def _std_log(x):
    """fastText's ``std_log(real x)``: ``log(x + 1e-5)`` in double, returned as float32."""
    return _F32(math.log(np.float64(x) + 1e-5))


@njit(cache=True)
def _push_heap(hs, hn, hole, top, vs, vn):
    """libstdc++ ``__push_heap`` with fastText's ``comparePairs`` (``a.first > b.first``)."""
    parent = (hole - 1) // 2
    while hole > top and hs[parent] > vs:
        hs[hole] = hs[parent]
        hn[hole] = hn[parent]
        hole = parent
        parent = (hole - 1) // 2
    hs[hole] = vs
    hn[hole] = vn


@njit(cache=True)
def _pop_heap(hs, hn, length):
    """libstdc++ ``__pop_heap(first, first + length - 1, first + length - 1)``: front moves to the end."""
    last = length - 1
    vs = hs[last]
    vn = hn[last]
    hs[last] = hs[0]
    hn[last] = hn[0]
    # __adjust_heap(first, 0, last, value)
    n = last
    hole = 0
    second = 0
    while second < (n - 1) // 2:
        second = 2 * (second + 1)
        if hs[second] > hs[second - 1]:
            second -= 1
        hs[hole] = hs[second]
        hn[hole] = hn[second]
        hole = second
    if (n & 1) == 0 and n >= 2 and second == (n - 2) // 2:
        second = 2 * (second + 1)
        hs[hole] = hs[second - 1]
        hn[hole] = hn[second - 1]
        hole = second - 1
    _push_heap(hs, hn, hole, 0, vs, vn)


@njit(cache=True)
def _heap_add(hs, hn, size, k, score, node):
    """``heap.push_back; push_heap; if size > k: pop_heap; pop_back`` -> new size."""
    hs[size] = score
    hn[size] = node
    size += 1
    _push_heap(hs, hn, size - 1, 0, score, node)
    if size > k:
        _pop_heap(hs, hn, size)
        size -= 1
    return size


@njit(cache=True)
def _sort_heap(hs, hn, size):
    while size > 1:
        _pop_heap(hs, hn, size)
        size -= 1


@njit(cache=True)
def _dot_row(rows, r, hidden):
    d = _F32(0.0)
    for j in range(hidden.shape[0]):
        d = d + rows[r, j] * hidden[j]
    return d


@njit(cache=True)
def _hs_predict(output_rows, left, right, nlabels, hidden, k, threshold, hs, hn, stack_node, stack_score):
    """``HierarchicalSoftmaxLoss::dfs`` from the root, as an explicit stack (same visiting order)."""
    log_thr = _std_log(threshold)
    size = 0
    sp = 0
    stack_node[0] = 2 * nlabels - 2
    stack_score[0] = _F32(0.0)
    sp = 1
    while sp > 0:
        sp -= 1
        node = stack_node[sp]
        score = stack_score[sp]
        if score < log_thr:
            continue
        if size == k and score < hs[0]:
            continue
        if left[node] == -1 and right[node] == -1:
            size = _heap_add(hs, hn, size, k, score, node)
            continue
        f = _dot_row(output_rows, node - nlabels, hidden)
        f = _F32(1.0 / np.float64(_F32(1.0) + math.exp(-f)))
        # left gets log(1 - f), right log(f); right is pushed first so that it is visited after the
        # whole left subtree, as in the recursion
        stack_node[sp] = right[node]
        stack_score[sp] = score + _std_log(f)
        stack_node[sp + 1] = left[node]
        stack_score[sp + 1] = score + _std_log(_F32(1.0 - np.float64(f)))
        sp += 2
    _sort_heap(hs, hn, size)
    return size


@njit(cache=True)
def _softmax_predict(output_cols, nlabels, hidden, k, threshold, out, hs, hn):
    """``SoftmaxLoss::computeOutput`` + ``Loss::findKBest``.

    ``output_cols`` is the output matrix transposed: all the dot products advance one dimension at a time,
    so each label's sum is still fastText's sequential ``d += w[j] * h[j]`` (same roundings, same order), but
    the labels are independent lanes the CPU computes side by side instead of one long dependency chain."""
    for i in range(nlabels):
        out[i] = _F32(0.0)
    for j in range(hidden.shape[0]):
        h = hidden[j]
        for i in range(nlabels):
            out[i] = out[i] + output_cols[j, i] * h
    mx = out[0]
    for i in range(nlabels):
        if out[i] > mx:
            mx = out[i]
    z = _F32(0.0)
    for i in range(nlabels):
        out[i] = _F32(math.exp(np.float64(out[i] - mx)))
        z = z + out[i]
    for i in range(nlabels):
        out[i] = out[i] / z
    return _softmax_select(out, nlabels, k, threshold, hs, hn)


@njit(cache=True)
def _ova_predict(output_cols, nlabels, hidden, k, threshold, out, hs, hn, sigmoid_table):
    """``OneVsAllLoss`` (``BinaryLogisticLoss::computeOutput``): each label's dot product through fastText's
    table sigmoid (``Loss::sigmoid``: 512 steps on [-8, 8], index computed in float32), then
    ``Loss::findKBest`` as for softmax."""
    for i in range(nlabels):
        out[i] = _F32(0.0)
    for j in range(hidden.shape[0]):
        h = hidden[j]
        for i in range(nlabels):
            out[i] = out[i] + output_cols[j, i] * h
    for i in range(nlabels):
        x = out[i]
        if x < _F32(-8.0):
            out[i] = _F32(0.0)
        elif x > _F32(8.0):
            out[i] = _F32(1.0)
        else:
            t = _F32(_F32(_F32(_F32(x + _F32(8.0)) * _F32(512.0)) / _F32(8.0)) / _F32(2.0))
            out[i] = sigmoid_table[np.int64(t)]
    return _softmax_select(out, nlabels, k, threshold, hs, hn)


@njit(cache=True)
def _softmax_select(out, nlabels, k, threshold, hs, hn):
    """``Loss::findKBest`` over the softmax output + ``sort_heap``."""
    size = 0
    for i in range(nlabels):
        if out[i] < threshold:
            continue
        s = _std_log(out[i])
        if size == k and s < hs[0]:
            continue
        size = _heap_add(hs, hn, size, k, s, i)
    _sort_heap(hs, hn, size)
    return size


@njit(cache=True)
def _find_entry(buf, s, e, h, entry_bytes, entry_offsets, entry_hash, table):
    """The entry id of the token ``buf[s:e]`` (fastText hash ``h``), -1 if not in the dictionary. A table slot
    holds ``(hash & 0x7FFFFFFF) << 32 | id`` (-1: empty), so a probe rejects other words without reading
    ``entry_hash``; the bytes decide."""
    mask = table.shape[0] - 1
    j = h & mask
    n = e - s
    key = h & 0x7FFFFFFF
    while True:
        slot = table[j]
        if slot < 0:
            return -1
        idx = slot & 0xFFFFFFFF
        if (slot >> 32) == key and entry_offsets[idx + 1] - entry_offsets[idx] == n:
            base = entry_offsets[idx]
            same = True
            for t in range(n):
                if entry_bytes[base + t] != buf[s + t]:
                    same = False
                    break
            if same:
                return idx
        j = (j + 1) & mask


@njit(cache=True)
def _add_subwords(word, n_bytes, minn, maxn, bucket, ngram_row, rows, nrows):
    """``computeSubwords(word)``: the input row of each kept bucket appended to ``rows`` -> new row count."""
    for i in range(n_bytes):
        if (word[i] & 0xC0) == 0x80:
            continue
        h = 2166136261
        j = i
        n = 1
        while j < n_bytes and n <= maxn:
            h = _fnv_step(h, word[j])
            j += 1
            while j < n_bytes and (word[j] & 0xC0) == 0x80:
                h = _fnv_step(h, word[j])
                j += 1
            if n >= minn and not (n == 1 and (i == 0 or j == n_bytes)):
                row = ngram_row[h % bucket]
                if row >= 0:
                    rows[nrows] = row
                    nrows += 1
            n += 1
    return nrows


@njit(cache=True, inline="always")
def _is_sep(c):
    # readWord's separators: ' ' '\n' '\r' '\t' '\v' '\f' '\0'
    return c == 32 or c == 10 or c == 13 or c == 9 or c == 11 or c == 12 or c == 0


@njit(cache=True, nogil=True)
def predict_batch(
    buf, starts, entry_bytes, entry_offsets, entry_hash, table, ngram_row, input_rows, output_rows, output_cols,
    left, right, prefix, eos_id, nwords, nlabels, minn, maxn, bucket, loss_kind, k, threshold, top1_fallback,
    counts, label_ids, probs, word_ngrams, eos_hash, sigmoid_table, dense_buckets,
):
    """fastText ``predictLine`` for each document ``buf[starts[i]:starts[i + 1]]``; with ``top1_fallback``, a
    document with no prediction above ``threshold`` gets ``predictLine(k=1, threshold=0)`` computed from the
    same hidden vector (what a second fastText call on the same line returns, without a second pass).

    ``loss_kind``: 0 softmax, 1 hierarchical softmax, 2 one-vs-all. ``word_ngrams > 1``: after the tokens'
    rows come the word n-gram buckets of ``Dictionary::addWordNgrams`` (the hashes of the line's word tokens,
    ``</s>`` included, as sign-extended 64-bit values combined ``h * 116049371 + next``, ``% bucket``)."""
    dim = input_rows.shape[1]
    hidden = np.zeros(dim, np.float32)
    maxlen = 0
    for i in range(starts.shape[0] - 1):
        if starts[i + 1] - starts[i] > maxlen:
            maxlen = starts[i + 1] - starts[i]
    word = np.empty(maxlen + 2, np.uint8)
    # a document's input rows, gathered before they are summed (the loads of many rows are then in flight at
    # once): at most one row per token plus maxn n-grams per byte of "<" token ">"
    rows = np.empty((3 * maxlen + 4) * (maxn + 1) + 4, np.int32)
    hs = np.empty(nlabels + 2, np.float32)
    hn = np.empty(nlabels + 2, np.int32)
    stack_node = np.empty(2 * nlabels + 2, np.int32)
    stack_score = np.empty(2 * nlabels + 2, np.float32)
    out = np.empty(nlabels, np.float32)
    # the 32-bit hash of each word token of a document, sign-extended to 64 bits (fastText keeps them in a
    # vector<int32_t> and widens each to uint64_t)
    word_hashes = np.empty(maxlen + 2 if word_ngrams > 1 else 1, np.uint64)
    nwng = max(word_ngrams - 1, 0) * (maxlen + 2)
    if nwng:
        rows = np.empty(rows.shape[0] + nwng, np.int32)
    npre = prefix.shape[0]
    for doc in range(starts.shape[0] - 1):
        pos = starts[doc]
        end = starts[doc + 1]
        if pos == end:  # predictLine: nothing to read, no prediction
            continue
        for d in range(dim):
            hidden[d] = _F32(0.0)
        nrows = 0
        nhash = 0
        while True:
            # readWord
            while pos < end and _is_sep(buf[pos]) and buf[pos] != 10:
                pos += 1
            if pos >= end:
                break
            if buf[pos] == 10:
                s = -1  # the end-of-sentence token
                pos += 1
            else:
                s = pos
                h = 2166136261  # the token's hash, computed in the same pass that finds its end
                while pos < end:
                    c = buf[pos]
                    if _is_sep(c):
                        break
                    h = _fnv_step(h, c)
                    pos += 1
            if s < 0:
                idx = eos_id
                is_eos = True
                h = eos_hash
            else:
                idx = _find_entry(buf, s, pos, h, entry_bytes, entry_offsets, entry_hash, table)
                n = pos - s
                is_eos = n == 4 and buf[s] == 60 and buf[s + 1] == 47 and buf[s + 2] == 115 and buf[s + 3] == 62
            if idx >= nwords:  # a label of the dictionary
                pass
            elif idx >= 0:  # a word of the dictionary: its row, then its n-grams
                if word_ngrams > 1:
                    word_hashes[nhash] = _sext32(h)
                    nhash += 1
                rows[nrows] = idx
                nrows += 1
                if not is_eos and maxn > 0:
                    n = pos - s
                    word[0] = 60
                    word[1 : n + 1] = buf[s:pos]
                    word[n + 1] = 62
                    nrows = _add_subwords(word, n + 2, minn, maxn, bucket, ngram_row, rows, nrows)
            elif not is_eos:
                n = pos - s
                labelled = n >= npre
                if labelled:
                    for t in range(npre):
                        if buf[s + t] != prefix[t]:
                            labelled = False
                            break
                if not labelled:
                    if word_ngrams > 1:
                        word_hashes[nhash] = _sext32(h)
                        nhash += 1
                    if maxn > 0:  # computeSubwords adds nothing when maxn is 0
                        word[0] = 60
                        word[1 : n + 1] = buf[s:pos]
                        word[n + 1] = 62
                        nrows = _add_subwords(word, n + 2, minn, maxn, bucket, ngram_row, rows, nrows)
            elif word_ngrams > 1:  # "</s>" itself, not in the dictionary: still a word token for the n-grams
                word_hashes[nhash] = _sext32(h)
                nhash += 1
            if is_eos:
                break
        if word_ngrams > 1:  # Dictionary::addWordNgrams
            ub = np.uint64(bucket)
            mult = np.uint64(116049371)
            for i in range(nhash):
                wh = word_hashes[i]
                for j in range(i + 1, min(nhash, i + word_ngrams)):
                    wh = wh * mult + word_hashes[j]
                    b = np.int64(wh % ub)
                    # not pruned: bucket b is row nwords + b (no lookup in a bucket-sized table)
                    row = nwords + b if dense_buckets else ngram_row[b]
                    if row >= 0:
                        rows[nrows] = row
                        nrows += 1
        if nrows == 0:
            continue
        for t in range(nrows):  # Model::computeHidden: addRowToVector in order
            if t + _PREFETCH_AHEAD < nrows:
                # the rows of a large model are random reads from memory: ask for the one some steps ahead
                # now, so its cache misses overlap with the sums in between (prefetches change no result)
                ra = rows[t + _PREFETCH_AHEAD]
                for d in range(0, dim, 16):
                    _prefetch(input_rows, ra, d)
            r = rows[t]
            for d in range(dim):
                hidden[d] = hidden[d] + input_rows[r, d]
        scale = _F32(1.0 / nrows)
        for d in range(dim):
            hidden[d] = hidden[d] * scale
        if loss_kind == 2:
            size = _ova_predict(output_cols, nlabels, hidden, k, threshold, out, hs, hn, sigmoid_table)
            if size == 0 and top1_fallback:
                size = _softmax_select(out, nlabels, 1, _F32(0.0), hs, hn)
        elif loss_kind == 1:
            size = _hs_predict(output_rows, left, right, nlabels, hidden, k, threshold, hs, hn, stack_node,
                               stack_score)
            if size == 0 and top1_fallback:
                size = _hs_predict(output_rows, left, right, nlabels, hidden, 1, _F32(0.0), hs, hn, stack_node,
                                   stack_score)
        else:
            size = _softmax_predict(output_cols, nlabels, hidden, k, threshold, out, hs, hn)
            if size == 0 and top1_fallback:
                size = _softmax_select(out, nlabels, 1, _F32(0.0), hs, hn)
        counts[doc] = size
        for t in range(size):
            label_ids[doc, t] = hn[t]
            probs[doc, t] = _F32(math.exp(hs[t]))
