"""Triton kernels of the FlashAttention-2 algorithm: a forward pass and a three-kernel backward pass.

Every kernel works on one batch element and one head at a time, with tiles of ``BLOCK_M`` query rows and
``BLOCK_N`` key rows. The same code serves dense batches (``IS_VARLEN=False``: sequence ``b`` starts at
``b * stride_batch``) and packed ones (``IS_VARLEN=True``: sequence ``b`` is rows ``cu_seqlens[b]:cu_seqlens[b+1]``),
so a packed batch is never padded to its longest sequence; programs beyond a short sequence return at once.

Conventions shared by all kernels:

- scores are kept in base 2: ``s = (q . k) * scale * log2(e)``, so ``exp2`` replaces ``exp``;
- the log-sum-exp the forward saves is kept in two parts, in one float32 tensor [2, rows]: the row maximum ``m``
  and ``log2(l)`` of the row sum ``l`` (base 2; it never leaves this module's Python wrapper). The backward
  recomputes ``p = exp2((s - m) - log2(l))``: ``s - m`` is exact for the keys that carry the weight, so a row whose
  whole weight sits on one key (``l = 1``) gets ``p = 1`` exactly for it, however large the logits. Summed into
  one number, ``m + log2(l)`` would round ``log2(l)`` away below half a unit of ``m`` (3e-5 at ``m = 1000``);
- a key is visible to query row ``i`` when it is inside its sequence, allowed by the key-padding mask, and (causal)
  ``j <= i + diag`` with ``diag = 0`` (top-left) or ``Sk - Sq`` (bottom-right);
- a row that sees no key gets output 0 and ``(m, log2 l) = (0, +inf)``, so its recomputed ``p`` is exactly 0: its
  dQ is 0 and it adds nothing to dK or dV, with no NaN (``-inf - inf`` is ``-inf``);
- masked scores are set to ``-inf`` (never to a large finite number), so masked keys get exactly zero probability,
  hence exactly zero dK and dV;
- a sliding window (``HAS_WINDOW``; ``left``, ``right`` >= 0, the wrapper turns an unbounded side into one longer
  than any sequence) also hides key ``j`` from row ``i`` unless ``i + woff - left <= j <= i + woff + right``, with
  ``woff = Sk - Sq`` of the sequence (bottom-right, as flash-attn's ``window_size``), on top of the other rules;
- a softcap (``HAS_SOFTCAP``) turns each scaled score ``z`` into ``cap * tanh(z / cap)`` before any masking (the
  base-2 score is that times log2(e)); the backward multiplies dS by its slope ``1 - tanh^2(z / cap)``;
- loops over key (or query) blocks run in up to three phases: blocks every row of the tile sees in full, without
  any visibility arithmetic, and before and after them the blocks on the window's left edge, on the causal diagonal,
  on the window's right edge or at the sequence end, with it. Blocks no row of the tile sees are not visited.

``UPCAST`` casts the operands of every ``tl.dot`` to float32; the wrapper sets it only under the Triton interpreter
(``TRITON_INTERPRET=1``, how CI runs these kernels on CPUs) for bfloat16, which the interpreter cannot multiply.
``PRECISION`` is ``tl.dot``'s ``input_precision``: "ieee" for float32 inputs (the default, tf32, would round them
to 10-bit mantissas), "tf32" (ignored) for 16-bit ones.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = 1.4426950408889634  # log2(e): exp(x) == exp2(x * LOG2E)

# Integer arguments that change from call to call with the shapes: Triton would otherwise compile a variant for each
# value equal to 1 or divisible by 16, which costs compile time and buys nothing (the per-row statistics and the mask
# are read one scalar per row or key; the tiles' strides, multiples of the head dim, stay specialised). Names a
# kernel lacks are ignored.
_RUNTIME_INTS = ["seqlen_q", "seqlen_k", "bottom_right", "group", "n_heads", "group_pairs", "descending", "win_left",
                 "win_right", "stride_lse_b", "stride_lse_h", "stride_lse_part", "stride_delta_b", "stride_delta_h",
                 "stride_mask_b", "stride_mask_s"]


@triton.jit
def _dot(a, b, UPCAST: tl.constexpr, PRECISION: tl.constexpr):
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _tanh_and_slope(x):
    """tanh(x) and its derivative 1 - tanh(x)^2, both to float32 rounding for every x.

    Written with exp2 (libdevice's tanh does not exist under the interpreter). Near 0, 1 - exp(-2|x|) would cancel,
    so |x| < 1/4 takes the odd Taylor polynomial (its first left-out term is below 1e-8 of tanh there); elsewhere
    tanh = (1 - e) / (1 + e) with e = exp(-2|x|), and the slope is 4e / (1 + e)^2, which does not cancel near
    tanh = 1 as 1 - tanh^2 would.
    """
    magnitude = tl.abs(x)
    e = tl.exp2(magnitude * -2.8853900817779268)  # exp(-2|x|) = 2^(-2 |x| log2(e))
    x2 = x * x
    small = x * (1.0 + x2 * (-0.3333333333333333 + x2 * (0.13333333333333333 + x2 * (-0.05396825396825397
                                                                                    + x2 * 0.021869488536155203))))
    large = (1.0 - e) / (1.0 + e)
    near_zero = magnitude < 0.25
    t = tl.where(near_zero, small, tl.where(x < 0, -large, large))
    slope = tl.where(near_zero, 1.0 - t * t, 4.0 * e / ((1.0 + e) * (1.0 + e)))
    return t, slope


@triton.jit
def _unscaled_scores(q, k_t, softcap_scale, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
                     HAS_SOFTCAP: tl.constexpr):
    """A tile's scores before the factor ``qk_scale`` (``q.k``, or ``tanh(q.k * softcap_scale)``) and
    d(score)/d(scaled score) for the backward (1 without a softcap)."""
    qk = _dot(q, k_t, UPCAST, PRECISION)
    if HAS_SOFTCAP:
        return _tanh_and_slope(qk * softcap_scale)
    else:
        return qk, 1.0


@triton.jit
def _scores(q, k_t, qk_scale, softcap_scale, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
            HAS_SOFTCAP: tl.constexpr):
    """The base-2 scores of a tile and d(score)/d(scaled score) for the backward (1 without a softcap).

    Without a softcap, ``qk_scale`` is scale * log2(e). With one, ``softcap_scale`` is scale / cap and ``qk_scale``
    cap * log2(e): ``cap * tanh(scale * q.k / cap)`` in base 2."""
    unscaled, slope = _unscaled_scores(q, k_t, softcap_scale, UPCAST, PRECISION, HAS_SOFTCAP)
    return unscaled * qk_scale, slope


@triton.jit
def _sequence(CU, b, dense_length, IS_VARLEN: tl.constexpr):
    """(first row, length) of sequence ``b``: from cu_seqlens when packed, else (0, the dense length)."""
    if IS_VARLEN:
        first = tl.load(CU + b)
        length = tl.load(CU + b + 1) - first
        start = first.to(tl.int64)  # packed totals times the row stride can pass 2**31
    else:
        start = 0
        length = dense_length
    return start, length


@triton.jit
def _softmax_grad(p, dp, delta):
    """dS = P * (dP - delta), with dS = 0 exactly where P = 1.

    P = 1 means the row's whole weight sits on this key: the forward's row sum was 1, so every other key's P is 0
    or below half a unit of 1 (the two-part log-sum-exp keeps this exact). Then O is that key's V (up to the same
    rounding) and dP - delta = dO . (V - O) is 0, or of rounding size; computed, it would be only the difference of
    two dot products that round differently. The exact 0 matters for a row that sees a single key: its output does
    not depend on q or k, so its dQ and that key's dK are exactly 0, as the definition's are.
    """
    return tl.where(p == 1.0, 0.0, p * (dp - delta[:, None]))


@triton.jit
def _program_tile(n_tiles, n_heads, group_pairs, descending):
    """(tile, head, batch element) of this program in a 1-D grid of ``n_tiles`` programs per (batch, head) pair.

    Programs start roughly in the order of their id. The pairs are taken ``group_pairs`` at a time (the last group
    may be smaller); inside a group the id runs over the tiles, from the last one if ``descending``, and fastest
    over the group's pairs. Under a causal mask a tile's work grows (forward, dQ) or shrinks (dK/dV) with its index:
    the longest tiles of a group then start first and the grid ends on short programs, instead of one long program
    running on while the other multiprocessors idle. A group's pairs run side by side, so the wrapper sizes the
    group for the tensors they stream to share L2. ``group_pairs = 1`` with ascending tiles is the plain order of a
    grid (tiles, heads, batch)."""
    pid = tl.program_id(0)
    n_pairs = tl.num_programs(0) // n_tiles
    first = pid // (group_pairs * n_tiles) * group_pairs
    size = tl.minimum(group_pairs, n_pairs - first)
    rank = pid - first * n_tiles
    tile = rank // size
    if descending:
        tile = n_tiles - 1 - tile
    pair = first + rank % size
    return tile, pair % n_heads, pair // n_heads


@triton.jit
def _window_visibility(visible, rows, cols, woff, win_left, win_right):
    """``visible`` [rows, cols] and the sliding window: ``row + woff - left <= col <= row + woff + right``."""
    centre = rows[:, None] + woff
    return visible & (cols[None, :] >= centre - win_left) & (cols[None, :] <= centre + win_right)


@triton.jit
def _key_range(start_m, len_q, len_k, diag, woff, win_left, win_right, BLOCK_M: tl.constexpr,
               BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr):
    """Key blocks of query rows [start_m, start_m + BLOCK_M): (lo, full_lo, full_hi, hi).

    Keys in [lo, hi) are seen by some row (lo a multiple of BLOCK_N); the blocks in [full_lo, full_hi) by every row
    (both multiples of BLOCK_N; an empty range when full_hi <= full_lo). The rest of [lo, hi) needs masking."""
    hi = len_k
    full_hi = len_k
    if CAUSAL:
        # keys seen by some row of the tile end at the last row's diagonal; keys seen by every row, at the first's
        hi = tl.minimum(hi, tl.maximum(start_m + BLOCK_M + diag, 0))
        full_hi = tl.minimum(hi, tl.maximum(start_m + diag + 1, 0))
    lo = 0
    full_lo = 0
    if HAS_WINDOW:
        hi = tl.minimum(hi, tl.maximum(start_m + BLOCK_M + woff + win_right, 0))
        full_hi = tl.minimum(full_hi, tl.maximum(start_m + woff + win_right + 1, 0))
        lo = tl.minimum(tl.maximum(start_m + woff - win_left, 0), hi) // BLOCK_N * BLOCK_N
        full_lo = tl.cdiv(tl.maximum(start_m + BLOCK_M - 1 + woff - win_left, 0), BLOCK_N) * BLOCK_N
    full_hi = full_hi // BLOCK_N * BLOCK_N
    return lo, full_lo, full_hi, hi


@triton.jit
def _key_block_visibility(s, rows, cols, seqlen_k, diag, kpm_row, stride_mask_s, woff, win_left, win_right,
                          CAUSAL: tl.constexpr, HAS_KPM: tl.constexpr, MASKED: tl.constexpr,
                          HAS_WINDOW: tl.constexpr):
    """``s`` [BLOCK_M, BLOCK_N] with invisible keys set to -inf."""
    if MASKED:
        visible = cols[None, :] < seqlen_k
        if CAUSAL:
            visible = visible & (cols[None, :] <= rows[:, None] + diag)
        if HAS_WINDOW:
            visible = _window_visibility(visible, rows, cols, woff, win_left, win_right)
        s = tl.where(visible, s, float("-inf"))
    if HAS_KPM:
        keep = tl.load(kpm_row + cols * stride_mask_s, mask=cols < seqlen_k, other=0) != 0
        s = tl.where(keep[None, :], s, float("-inf"))
    return s


# ---- forward ---------------------------------------------------------------------------------------------------


@triton.jit
def _forward_key_blocks(acc, row_sum, row_max, q, k_base, v_base, kpm_row, rows, offs_n, offs_d,
                        stride_k_s, stride_v_s, stride_mask_s, lo, hi, seqlen_k, diag, qk_scale, softcap_scale,
                        woff, win_left, win_right,
                        BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, HAS_KPM: tl.constexpr,
                        MASKED: tl.constexpr, UPCAST: tl.constexpr, PRECISION: tl.constexpr,
                        HAS_WINDOW: tl.constexpr, HAS_SOFTCAP: tl.constexpr, MAX_BEFORE_SCALE: tl.constexpr,
                        MASK_FULL_LOADS: tl.constexpr):
    """Online softmax over key blocks [lo, hi): rescale the running sum and output whenever the max grows.

    With ``MAX_BEFORE_SCALE`` (qk_scale > 0), in blocks without any masking, the row max is taken before the scores
    are scaled and scaled once per row: rounding ``x * qk_scale`` is monotone in x, so that equals the max of the
    scaled scores exactly, and each score takes its factor inside its exponent's ``x * qk_scale - shift``, which the
    GPU compiler fuses into one multiply-add as it did before: the same numbers with one product per score fewer.
    Masked blocks scale first: there the select between product and subtraction keeps two roundings, as in the
    backward's recomputation, which is what gives a row whose weight sits on one key p = 1 exactly."""
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        in_seq = cols < seqlen_k
        k_ptrs = k_base + cols[None, :] * stride_k_s + offs_d[:, None]
        v_ptrs = v_base + cols[:, None] * stride_v_s + offs_d[None, :]
        # blocks without masking end at or before the sequence's last key (_key_range): their loads need no bound
        if MASKED or MASK_FULL_LOADS:
            k_t = tl.load(k_ptrs, mask=in_seq[None, :], other=0.0)
        else:
            k_t = tl.load(k_ptrs)
        s, _slope = _unscaled_scores(q, k_t, softcap_scale, UPCAST, PRECISION, HAS_SOFTCAP)
        if MAX_BEFORE_SCALE and not (MASKED or HAS_KPM):
            exponent_scale = qk_scale
        else:
            s = s * qk_scale
            exponent_scale = 1.0
        s = _key_block_visibility(s, rows, cols, seqlen_k, diag, kpm_row, stride_mask_s, woff, win_left, win_right,
                                  CAUSAL, HAS_KPM, MASKED, HAS_WINDOW)
        new_max = tl.maximum(row_max, tl.max(s, 1) * exponent_scale)
        # a row that has seen no visible key yet keeps max -inf: subtract 0 instead, so exp2(-inf) stays 0, not NaN
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        p = tl.exp2(s * exponent_scale - shift[:, None])
        correction = tl.exp2(row_max - shift)
        row_sum = row_sum * correction + tl.sum(p, 1)
        if MASKED or MASK_FULL_LOADS:
            v = tl.load(v_ptrs, mask=in_seq[:, None], other=0.0)
        else:
            v = tl.load(v_ptrs)
        acc = acc * correction[:, None] + _dot(p.to(v.dtype), v, UPCAST, PRECISION)
        row_max = new_max
    return acc, row_sum, row_max


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def attention_forward_kernel(
    Q, K, V, O, LSE, KPM, CU_Q, CU_K,
    stride_q_b, stride_q_s, stride_q_h,
    stride_k_b, stride_k_s, stride_k_h,
    stride_v_b, stride_v_s, stride_v_h,
    stride_o_b, stride_o_s, stride_o_h,
    stride_lse_b, stride_lse_h, stride_lse_part,
    stride_mask_b, stride_mask_s,
    seqlen_q, seqlen_k, group, qk_scale, softcap_scale, bottom_right, win_left, win_right,
    n_heads, group_pairs, descending,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_KPM: tl.constexpr, IS_VARLEN: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr, HAS_WINDOW: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
    MAX_BEFORE_SCALE: tl.constexpr, MASK_FULL_LOADS: tl.constexpr,
):
    """One program: BLOCK_M query rows of one head of one sequence. Writes O and the two-part log-sum-exp."""
    pid_m, head, b = _program_tile(tl.cdiv(seqlen_q, BLOCK_M), n_heads, group_pairs, descending)
    q_start, len_q = _sequence(CU_Q, b, seqlen_q, IS_VARLEN)
    k_start, len_k = _sequence(CU_K, b, seqlen_k, IS_VARLEN)
    start_m = pid_m * BLOCK_M
    if start_m >= len_q:
        return
    kv_head = head // group  # grouped-query attention: `group` query heads share one kv head
    b64 = b.to(tl.int64)
    q_base = Q + b64 * stride_q_b + q_start * stride_q_s + head * stride_q_h
    k_base = K + b64 * stride_k_b + k_start * stride_k_s + kv_head * stride_k_h
    v_base = V + b64 * stride_v_b + k_start * stride_v_s + kv_head * stride_v_h
    kpm_row = KPM + b64 * stride_mask_b

    rows = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    q = tl.load(q_base + rows[:, None] * stride_q_s + offs_d[None, :], mask=rows[:, None] < len_q, other=0.0)

    woff = len_k - len_q
    diag = woff * bottom_right
    lo, full_lo, full_hi, hi = _key_range(start_m, len_q, len_k, diag, woff, win_left, win_right, BLOCK_M, BLOCK_N,
                                          CAUSAL, HAS_WINDOW)

    row_max = tl.full([BLOCK_M], float("-inf"), tl.float32)
    row_sum = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    if HAS_WINDOW:  # the window's left edge (blocks some rows see in part)
        acc, row_sum, row_max = _forward_key_blocks(
            acc, row_sum, row_max, q, k_base, v_base, kpm_row, rows, offs_n, offs_d, stride_k_s, stride_v_s,
            stride_mask_s, lo, tl.minimum(full_lo, hi), len_k, diag, qk_scale, softcap_scale, woff, win_left,
            win_right, BLOCK_N, CAUSAL, HAS_KPM, True, UPCAST, PRECISION, HAS_WINDOW, HAS_SOFTCAP,
            MAX_BEFORE_SCALE, MASK_FULL_LOADS)
    acc, row_sum, row_max = _forward_key_blocks(
        acc, row_sum, row_max, q, k_base, v_base, kpm_row, rows, offs_n, offs_d, stride_k_s, stride_v_s,
        stride_mask_s, full_lo, full_hi, len_k, diag, qk_scale, softcap_scale, woff, win_left, win_right, BLOCK_N,
        CAUSAL, HAS_KPM, False, UPCAST, PRECISION, HAS_WINDOW, HAS_SOFTCAP, MAX_BEFORE_SCALE, MASK_FULL_LOADS)
    acc, row_sum, row_max = _forward_key_blocks(
        acc, row_sum, row_max, q, k_base, v_base, kpm_row, rows, offs_n, offs_d, stride_k_s, stride_v_s,
        stride_mask_s, tl.maximum(full_hi, full_lo), hi, len_k, diag, qk_scale, softcap_scale, woff, win_left,
        win_right, BLOCK_N, CAUSAL, HAS_KPM, True, UPCAST, PRECISION, HAS_WINDOW, HAS_SOFTCAP,
            MAX_BEFORE_SCALE, MASK_FULL_LOADS)

    seen = row_sum > 0
    out = acc / tl.where(seen, row_sum, 1.0)[:, None]
    log_sum = tl.where(seen, tl.log2(tl.where(seen, row_sum, 1.0)), float("inf"))
    in_seq = rows < len_q
    o_base = O + b64 * stride_o_b + q_start * stride_o_s + head * stride_o_h
    tl.store(o_base + rows[:, None] * stride_o_s + offs_d[None, :], out.to(O.dtype.element_ty), mask=in_seq[:, None])
    lse_base = LSE + b64 * stride_lse_b + head * stride_lse_h + q_start
    tl.store(lse_base + rows, tl.where(seen, row_max, 0.0), mask=in_seq)
    tl.store(lse_base + stride_lse_part + rows, log_sum, mask=in_seq)


# ---- backward --------------------------------------------------------------------------------------------------


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def attention_backward_preprocess_kernel(
    O, DO, DELTA, CU_Q, LSE, LSE_SUM,
    stride_o_b, stride_o_s, stride_o_h,
    stride_do_b, stride_do_s, stride_do_h,
    stride_delta_b, stride_delta_h, stride_lse_part,
    seqlen_q,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, IS_VARLEN: tl.constexpr, SINGLE_LSE: tl.constexpr,
):
    """delta = rowsum(dO * O) in float32, the term the softmax's backward subtracts: dS = P * (dP - delta).

    With ``SINGLE_LSE`` also ``m + log2(l)`` per row into LSE_SUM (same strides as delta and the lse's parts)."""
    pid_m, head, b = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    q_start, len_q = _sequence(CU_Q, b, seqlen_q, IS_VARLEN)
    start_m = pid_m * BLOCK_M
    if start_m >= len_q:
        return
    b64 = b.to(tl.int64)
    rows = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    in_seq = rows < len_q
    o_base = O + b64 * stride_o_b + q_start * stride_o_s + head * stride_o_h
    do_base = DO + b64 * stride_do_b + q_start * stride_do_s + head * stride_do_h
    o = tl.load(o_base + rows[:, None] * stride_o_s + offs_d[None, :], mask=in_seq[:, None], other=0.0)
    do = tl.load(do_base + rows[:, None] * stride_do_s + offs_d[None, :], mask=in_seq[:, None], other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)
    tl.store(DELTA + b64 * stride_delta_b + head * stride_delta_h + q_start + rows, delta, mask=in_seq)
    if SINGLE_LSE:
        lse_rows = b64 * stride_delta_b + head * stride_delta_h + q_start + rows
        row_max = tl.load(LSE + lse_rows, mask=in_seq, other=0.0)
        log_sum = tl.load(LSE + stride_lse_part + lse_rows, mask=in_seq, other=0.0)
        tl.store(LSE_SUM + lse_rows, row_max + log_sum, mask=in_seq)  # +inf for a row that sees no key


@triton.jit
def _row_lse(lse_base, lse_sum_base, stride_lse_part, rows, in_seq, SINGLE_LSE: tl.constexpr):
    """The rows' log-sum-exp as the backward uses it: (m + log2 l, unused 0) with ``SINGLE_LSE``, else (m, log2 l).
    Rows past the sequence get log2 l (or the sum) +inf, so their p is exactly 0."""
    if SINGLE_LSE:
        return tl.load(lse_sum_base + rows, mask=in_seq, other=float("inf")), 0.0
    else:
        return (tl.load(lse_base + rows, mask=in_seq, other=0.0),
                tl.load(lse_base + stride_lse_part + rows, mask=in_seq, other=float("inf")))


@triton.jit
def _probabilities(s, row_max, log_sum, SINGLE_LSE: tl.constexpr):
    """p = exp2(s - lse) of a [rows, keys] tile: one subtraction per score with ``SINGLE_LSE``, else two."""
    if SINGLE_LSE:
        return tl.exp2(s - row_max[:, None])
    else:
        return tl.exp2((s - row_max[:, None]) - log_sum[:, None])


@triton.jit
def _dkdv_query_blocks(dk, dv, k_t, v_t, q_base, do_base, lse_base, lse_sum_base, delta_base, keep, cols, offs_m,
                       offs_d, stride_q_s, stride_do_s, stride_lse_part, lo, hi, len_q, diag, qk_scale, softcap_scale,
                       woff, win_left, win_right,
                       BLOCK_M: tl.constexpr, CAUSAL_MASK: tl.constexpr, HAS_KPM: tl.constexpr,
                       UPCAST: tl.constexpr, PRECISION: tl.constexpr, WINDOW_MASK: tl.constexpr,
                       HAS_SOFTCAP: tl.constexpr, SINGLE_LSE: tl.constexpr):
    """Accumulate one head's contributions to dK and dV of one key tile over query blocks [lo, hi).

    Scores are recomputed exactly as the forward computed them (q times transposed k, same operand roles), so the
    recomputed p matches the forward's log-sum-exp to the last bit where the hardware allows; a transposed product
    (k times transposed q) rounds differently, and near-one-hot rows (large logits) then lose float32 accuracy in dV.
    Rows past the sequence load q = dO = 0 and log2(l) = +inf, so their p is exactly 0.

    dO's load and dP come after dV's product (version 7's order): on an H200 forward+backward ran 1% faster than
    with dP before the softmax (versions 8-9; notes, version 10).
    """
    for start_m in range(lo, hi, BLOCK_M):
        rows = start_m + offs_m
        in_seq = rows < len_q
        q = tl.load(q_base + rows[:, None] * stride_q_s + offs_d[None, :], mask=in_seq[:, None], other=0.0)
        row_max, log_sum = _row_lse(lse_base, lse_sum_base, stride_lse_part, rows, in_seq, SINGLE_LSE)
        s, slope = _scores(q, k_t, qk_scale, softcap_scale, UPCAST, PRECISION, HAS_SOFTCAP)
        if CAUSAL_MASK:
            s = tl.where(cols[None, :] <= rows[:, None] + diag, s, float("-inf"))
        if WINDOW_MASK:
            s = tl.where(_window_visibility(rows[:, None] >= 0, rows, cols, woff, win_left, win_right), s,
                         float("-inf"))
        if HAS_KPM:
            s = tl.where(keep[None, :], s, float("-inf"))
        p = _probabilities(s, row_max, log_sum, SINGLE_LSE)
        do = tl.load(do_base + rows[:, None] * stride_do_s + offs_d[None, :], mask=in_seq[:, None], other=0.0)
        dv += _dot(tl.trans(p.to(do.dtype)), do, UPCAST, PRECISION)
        delta = tl.load(delta_base + rows, mask=in_seq, other=0.0)
        dp = _dot(do, v_t, UPCAST, PRECISION)
        ds = _softmax_grad(p, dp, delta)
        if HAS_SOFTCAP:  # through cap * tanh(s / cap)
            ds = ds * slope
        dk += _dot(tl.trans(ds.to(q.dtype)), q, UPCAST, PRECISION)
    return dk, dv


@triton.jit
def _query_blocks(lo, full_lo, len_q, BLOCK_M: tl.constexpr):
    """(lo, full_lo) of dK/dV's query rows clamped to [0, len_q]: lo rounded down, full_lo (>= lo) up to BLOCK_M."""
    lo = tl.minimum(tl.maximum(lo, 0), len_q) // BLOCK_M * BLOCK_M
    return lo, tl.cdiv(tl.minimum(tl.maximum(full_lo, lo), len_q), BLOCK_M) * BLOCK_M


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def attention_backward_dkdv_kernel(
    Q, K, V, DO, LSE, LSE_SUM, DELTA, DK, DV, KPM, CU_Q, CU_K,
    stride_q_b, stride_q_s, stride_q_h,
    stride_k_b, stride_k_s, stride_k_h,
    stride_v_b, stride_v_s, stride_v_h,
    stride_do_b, stride_do_s, stride_do_h,
    stride_dk_b, stride_dk_s, stride_dk_h,
    stride_dv_b, stride_dv_s, stride_dv_h,
    stride_lse_b, stride_lse_h, stride_lse_part,
    stride_mask_b, stride_mask_s,
    seqlen_q, seqlen_k, group, qk_scale, softcap_scale, sm_scale, bottom_right, win_left, win_right,
    n_heads, group_pairs, descending,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_KPM: tl.constexpr, IS_VARLEN: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr, HAS_WINDOW: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
    SINGLE_LSE: tl.constexpr,
):
    """One program: dK and dV of BLOCK_N keys of one kv head, summed over the query heads of its group.

    One program owns each dK/dV tile and loops over the whole group itself, so there are no atomic adds: the
    summation order is fixed and the result is bit-identical from run to run.
    """
    pid_n, kv_head, b = _program_tile(tl.cdiv(seqlen_k, BLOCK_N), n_heads, group_pairs, descending)
    q_start, len_q = _sequence(CU_Q, b, seqlen_q, IS_VARLEN)
    k_start, len_k = _sequence(CU_K, b, seqlen_k, IS_VARLEN)
    start_n = pid_n * BLOCK_N
    if start_n >= len_k:
        return
    b64 = b.to(tl.int64)
    cols = start_n + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    in_seq = cols < len_k
    k_base = K + b64 * stride_k_b + k_start * stride_k_s + kv_head * stride_k_h
    v_base = V + b64 * stride_v_b + k_start * stride_v_s + kv_head * stride_v_h
    k_t = tl.load(k_base + cols[None, :] * stride_k_s + offs_d[:, None], mask=in_seq[None, :], other=0.0)
    v_t = tl.load(v_base + cols[None, :] * stride_v_s + offs_d[:, None], mask=in_seq[None, :], other=0.0)
    if HAS_KPM:
        keep = tl.load(KPM + b64 * stride_mask_b + cols * stride_mask_s, mask=in_seq, other=0) != 0
    else:
        keep = in_seq

    woff = len_k - len_q
    diag = woff * bottom_right
    # query rows [lo, hi) see some key of the tile; the blocks in [full_lo, full_hi) see all of them
    lo = 0
    full_lo = 0
    hi = len_q
    full_hi = len_q
    # (clamped inside each branch: with neither, lo = full_lo = 0 stay constants and the first loop is compiled out)
    if CAUSAL:
        # the first query row that sees key j is j - diag; rows from the last key's first row on see the whole tile
        lo, full_lo = _query_blocks(tl.maximum(start_n - diag, 0), start_n + BLOCK_N - 1 - diag, len_q, BLOCK_M)
    if HAS_WINDOW:
        # row i sees key j when j - woff - right <= i <= j - woff + left
        lo, full_lo = _query_blocks(tl.maximum(lo, start_n - woff - win_right),
                                    tl.maximum(full_lo, start_n + BLOCK_N - 1 - woff - win_right), len_q, BLOCK_M)
        hi = tl.minimum(len_q, tl.maximum(start_n + BLOCK_N - woff + win_left, 0))
        full_hi = tl.minimum(hi, tl.maximum(start_n - woff + win_left + 1, 0)) // BLOCK_M * BLOCK_M

    dk = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], tl.float32)
    for member in range(0, group):
        head = kv_head * group + member
        q_base = Q + b64 * stride_q_b + q_start * stride_q_s + head * stride_q_h
        do_base = DO + b64 * stride_do_b + q_start * stride_do_s + head * stride_do_h
        lse_base = LSE + b64 * stride_lse_b + head * stride_lse_h + q_start
        lse_sum_base = LSE_SUM + b64 * stride_lse_b + head * stride_lse_h + q_start
        delta_base = DELTA + b64 * stride_lse_b + head * stride_lse_h + q_start
        dk, dv = _dkdv_query_blocks(dk, dv, k_t, v_t, q_base, do_base, lse_base, lse_sum_base, delta_base, keep, cols,
                                    offs_m, offs_d, stride_q_s, stride_do_s, stride_lse_part, lo,
                                    tl.minimum(full_lo, hi), len_q, diag, qk_scale, softcap_scale, woff, win_left, win_right,
                                    BLOCK_M, CAUSAL, HAS_KPM, UPCAST, PRECISION, HAS_WINDOW, HAS_SOFTCAP, SINGLE_LSE)
        dk, dv = _dkdv_query_blocks(dk, dv, k_t, v_t, q_base, do_base, lse_base, lse_sum_base, delta_base, keep, cols,
                                    offs_m, offs_d, stride_q_s, stride_do_s, stride_lse_part, full_lo, full_hi,
                                    len_q, diag, qk_scale, softcap_scale, woff, win_left, win_right,
                                    BLOCK_M, False, HAS_KPM, UPCAST, PRECISION, False, HAS_SOFTCAP, SINGLE_LSE)
        if HAS_WINDOW:  # the rows past the window's left edge of the tile's first key
            dk, dv = _dkdv_query_blocks(dk, dv, k_t, v_t, q_base, do_base, lse_base, lse_sum_base, delta_base, keep,
                                        cols, offs_m, offs_d, stride_q_s, stride_do_s, stride_lse_part,
                                        tl.maximum(full_hi, full_lo), hi, len_q, diag, qk_scale, softcap_scale, woff,
                                        win_left, win_right, BLOCK_M, CAUSAL, HAS_KPM, UPCAST, PRECISION,
                                        HAS_WINDOW, HAS_SOFTCAP, SINGLE_LSE)

    dk_base = DK + b64 * stride_dk_b + k_start * stride_dk_s + kv_head * stride_dk_h
    dv_base = DV + b64 * stride_dv_b + k_start * stride_dv_s + kv_head * stride_dv_h
    tl.store(dk_base + cols[:, None] * stride_dk_s + offs_d[None, :], (dk * sm_scale).to(DK.dtype.element_ty),
             mask=in_seq[:, None])
    tl.store(dv_base + cols[:, None] * stride_dv_s + offs_d[None, :], dv.to(DV.dtype.element_ty),
             mask=in_seq[:, None])


@triton.jit
def _dq_key_blocks(dq, q, do, row_max, log_sum, delta, k_base, v_base, kpm_row, rows, offs_n, offs_d,
                   stride_k_s, stride_v_s, stride_mask_s, lo, hi, len_k, diag, qk_scale, softcap_scale, woff,
                   win_left, win_right,
                   BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, HAS_KPM: tl.constexpr, MASKED: tl.constexpr,
                   UPCAST: tl.constexpr, PRECISION: tl.constexpr, HAS_WINDOW: tl.constexpr,
                   HAS_SOFTCAP: tl.constexpr, SINGLE_LSE: tl.constexpr):
    """Accumulate dQ of one query tile over key blocks [lo, hi): dQ += dS K with dS = P * (dP - delta)."""
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        in_seq = cols < len_k
        # scores exactly as the forward computes them (see _dkdv_query_blocks)
        k_t = tl.load(k_base + cols[None, :] * stride_k_s + offs_d[:, None], mask=in_seq[None, :], other=0.0)
        v_t = tl.load(v_base + cols[None, :] * stride_v_s + offs_d[:, None], mask=in_seq[None, :], other=0.0)
        s, slope = _scores(q, k_t, qk_scale, softcap_scale, UPCAST, PRECISION, HAS_SOFTCAP)
        s = _key_block_visibility(s, rows, cols, len_k, diag, kpm_row, stride_mask_s, woff, win_left, win_right,
                                  CAUSAL, HAS_KPM, MASKED, HAS_WINDOW)
        p = _probabilities(s, row_max, log_sum, SINGLE_LSE)
        dp = _dot(do, v_t, UPCAST, PRECISION)
        if SINGLE_LSE:  # one-key rows already have p = 0 (see attention_backward_dq_kernel)
            ds = p * (dp - delta[:, None])
        else:
            ds = _softmax_grad(p, dp, delta)
        if HAS_SOFTCAP:
            ds = ds * slope
        dq += _dot(ds.to(k_t.dtype), tl.trans(k_t), UPCAST, PRECISION)
    return dq


@triton.jit(do_not_specialize=_RUNTIME_INTS)
def attention_backward_dq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ, KPM, CU_Q, CU_K,
    stride_q_b, stride_q_s, stride_q_h,
    stride_k_b, stride_k_s, stride_k_h,
    stride_v_b, stride_v_s, stride_v_h,
    stride_do_b, stride_do_s, stride_do_h,
    stride_dq_b, stride_dq_s, stride_dq_h,
    stride_lse_b, stride_lse_h, stride_lse_part,
    stride_mask_b, stride_mask_s,
    seqlen_q, seqlen_k, group, qk_scale, softcap_scale, sm_scale, bottom_right, win_left, win_right,
    n_heads, group_pairs, descending,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, HAS_KPM: tl.constexpr, IS_VARLEN: tl.constexpr,
    UPCAST: tl.constexpr, PRECISION: tl.constexpr, HAS_WINDOW: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
    SINGLE_LSE: tl.constexpr,
):
    """One program: dQ of BLOCK_M query rows of one head (its own tile: no atomics)."""
    pid_m, head, b = _program_tile(tl.cdiv(seqlen_q, BLOCK_M), n_heads, group_pairs, descending)
    q_start, len_q = _sequence(CU_Q, b, seqlen_q, IS_VARLEN)
    k_start, len_k = _sequence(CU_K, b, seqlen_k, IS_VARLEN)
    start_m = pid_m * BLOCK_M
    if start_m >= len_q:
        return
    kv_head = head // group
    b64 = b.to(tl.int64)
    rows = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    in_seq = rows < len_q
    q_base = Q + b64 * stride_q_b + q_start * stride_q_s + head * stride_q_h
    do_base = DO + b64 * stride_do_b + q_start * stride_do_s + head * stride_do_h
    q = tl.load(q_base + rows[:, None] * stride_q_s + offs_d[None, :], mask=in_seq[:, None], other=0.0)
    do = tl.load(do_base + rows[:, None] * stride_do_s + offs_d[None, :], mask=in_seq[:, None], other=0.0)
    lse_base = LSE + b64 * stride_lse_b + head * stride_lse_h + q_start
    row_max = tl.load(lse_base + rows, mask=in_seq, other=0.0)
    log_sum = tl.load(lse_base + stride_lse_part + rows, mask=in_seq, other=float("inf"))
    if SINGLE_LSE:
        # one number, m + log2(l), and +inf for a row whose weight sits on one key (l = 1): its p is then 0 for every
        # key, so its dS, hence its dQ, is exactly 0 (as the definition's: such a row's output does not depend on q)
        # without the P = 1 test per score that _softmax_grad makes
        row_max = tl.where(log_sum == 0.0, float("inf"), row_max + log_sum)
    delta = tl.load(DELTA + b64 * stride_lse_b + head * stride_lse_h + q_start + rows, mask=in_seq, other=0.0)
    k_base = K + b64 * stride_k_b + k_start * stride_k_s + kv_head * stride_k_h
    v_base = V + b64 * stride_v_b + k_start * stride_v_s + kv_head * stride_v_h
    kpm_row = KPM + b64 * stride_mask_b

    woff = len_k - len_q
    diag = woff * bottom_right
    lo, full_lo, full_hi, hi = _key_range(start_m, len_q, len_k, diag, woff, win_left, win_right, BLOCK_M, BLOCK_N,
                                          CAUSAL, HAS_WINDOW)

    dq = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
    if HAS_WINDOW:
        dq = _dq_key_blocks(dq, q, do, row_max, log_sum, delta, k_base, v_base, kpm_row, rows, offs_n, offs_d,
                            stride_k_s, stride_v_s, stride_mask_s, lo, tl.minimum(full_lo, hi), len_k, diag, qk_scale,
                            softcap_scale, woff, win_left, win_right, BLOCK_N, CAUSAL, HAS_KPM, True, UPCAST,
                            PRECISION, HAS_WINDOW, HAS_SOFTCAP, SINGLE_LSE)
    dq = _dq_key_blocks(dq, q, do, row_max, log_sum, delta, k_base, v_base, kpm_row, rows, offs_n, offs_d, stride_k_s,
                        stride_v_s, stride_mask_s, full_lo, full_hi, len_k, diag, qk_scale, softcap_scale, woff,
                        win_left, win_right, BLOCK_N, CAUSAL, HAS_KPM, False, UPCAST, PRECISION, HAS_WINDOW,
                        HAS_SOFTCAP, SINGLE_LSE)
    dq = _dq_key_blocks(dq, q, do, row_max, log_sum, delta, k_base, v_base, kpm_row, rows, offs_n, offs_d, stride_k_s,
                        stride_v_s, stride_mask_s, tl.maximum(full_hi, full_lo), hi, len_k, diag, qk_scale,
                        softcap_scale, woff, win_left, win_right, BLOCK_N, CAUSAL, HAS_KPM, True, UPCAST, PRECISION,
                        HAS_WINDOW, HAS_SOFTCAP, SINGLE_LSE)
    dq_base = DQ + b64 * stride_dq_b + q_start * stride_dq_s + head * stride_dq_h
    tl.store(dq_base + rows[:, None] * stride_dq_s + offs_d[None, :], (dq * sm_scale).to(DQ.dtype.element_ty),
             mask=in_seq[:, None])
