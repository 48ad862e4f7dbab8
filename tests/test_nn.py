"""zoo.nn against naive references: attention, RoPE, GQA, causality, KV-cache decoding."""

import math

import pytest
import torch

from zoo.nn import Attention, RotaryEmbedding, Transformer, TransformerConfig, apply_rotary, grid_positions

torch.manual_seed(0)


def naive_attention(q, k, v, allowed=None):
    """softmax(Q K^T / sqrt(d)) V with an explicit N x N matrix; allowed: bool, True = may attend."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return scores.softmax(dim=-1) @ v


def naive_rotary(x, cos, sin):
    """RoFormer's rotation of pairs (x_i, x_{i+d/2}), written out: x (B, T, H, d), cos/sin (T, d/2) or (B, T, d/2)."""
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def split_heads(x, n):
    B, T, C = x.shape
    return x.view(B, T, n, C // n).transpose(1, 2)


def reference_self_attention(attn: Attention, x, allowed=None, rope=None):
    H, Hkv, d = attn.n_heads, attn.n_kv_heads, attn.head_dim
    q, k, v = attn.qkv(x).split([H * d, Hkv * d, Hkv * d], dim=-1)
    if rope is not None:  # rotate each head's (B, T, d) slice with the naive formula (no autograd Function)
        B, T = x.shape[:2]
        q, k = (naive_rotary(t.view(B, T, -1, d), *rope).flatten(2) for t in (q, k))
    q, k, v = split_heads(q, H), split_heads(k, Hkv), split_heads(v, Hkv)
    # GQA reference: materialise each K/V head once per query head of its group.
    k, v = k.repeat_interleave(H // Hkv, dim=1), v.repeat_interleave(H // Hkv, dim=1)
    y = naive_attention(q, k, v, allowed)
    return attn.proj(y.transpose(1, 2).reshape(x.shape[0], x.shape[1], H * d))


@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_attention_matches_naive_causal_bidirectional_and_padding(n_kv_heads):
    attn = Attention(dim=32, n_heads=4, n_kv_heads=n_kv_heads, head_dim=8)
    x = torch.randn(3, 11, 32)
    causal = torch.ones(11, 11, dtype=torch.bool).tril()
    torch.testing.assert_close(attn(x, is_causal=True), reference_self_attention(attn, x, causal),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(attn(x), reference_self_attention(attn, x), atol=1e-5, rtol=1e-5)
    keep = torch.ones(3, 11, dtype=torch.bool)
    keep[0, 7:] = False  # right padding
    keep[1, :4] = False  # left padding
    padding = keep[:, None, None, :]
    torch.testing.assert_close(attn(x, mask=padding), reference_self_attention(attn, x, padding),
                               atol=1e-5, rtol=1e-5)
    both = padding & causal
    both = both | torch.eye(11, dtype=torch.bool)  # fully padded query rows see themselves (no NaN)
    torch.testing.assert_close(attn(x, mask=both), reference_self_attention(attn, x, both), atol=1e-5, rtol=1e-5)


def test_cross_attention_matches_naive_with_context_padding():
    attn = Attention(dim=32, n_heads=4, n_kv_heads=2, head_dim=8, cross=True, context_dim=24)
    x, context = torch.randn(2, 5, 32), torch.randn(2, 9, 24)
    keep = torch.ones(2, 9, dtype=torch.bool)
    keep[1, 6:] = False
    q = split_heads(attn.q(x), 4)
    k, v = attn.kv(context).chunk(2, dim=-1)
    k, v = split_heads(k, 2).repeat_interleave(2, 1), split_heads(v, 2).repeat_interleave(2, 1)
    expected = attn.proj(naive_attention(q, k, v, keep[:, None, None, :]).transpose(1, 2).reshape(2, 5, 32))
    torch.testing.assert_close(attn(x, mask=keep[:, None, None, :], context=context), expected,
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("n_kv_heads", [4, 2])
def test_attention_with_rope_matches_the_written_out_rotation_in_values_and_gradients(n_kv_heads):
    """zoo rotates queries and keys in one call with a hand-written backward; check both against autograd of
    RoFormer's formula, and the backward alone with gradcheck."""
    attn = Attention(dim=32, n_heads=4, n_kv_heads=n_kv_heads, head_dim=8).double()
    x = torch.randn(2, 9, 32, dtype=torch.float64, requires_grad=True)
    rope = tuple(t.double() for t in RotaryEmbedding(8)(torch.arange(3, 12)))
    ours = attn(x, rope=rope, is_causal=True)
    reference = reference_self_attention(attn, x, torch.ones(9, 9, dtype=torch.bool).tril(), rope)
    torch.testing.assert_close(ours, reference, atol=1e-10, rtol=1e-10)
    grad = torch.randn_like(ours)
    for a, b in zip(torch.autograd.grad(ours, (x, attn.qkv.weight), grad),
                    torch.autograd.grad(reference, (x, attn.qkv.weight), grad)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)
    per_row = tuple(t.double() for t in RotaryEmbedding(8)(torch.tensor([[0, 1, 2], [5, 6, 7]])))
    heads = torch.randn(2, 3, 6, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: apply_rotary(t, *per_row), (heads,))


def test_rope_scores_depend_only_on_offset_and_preserve_norms():
    """The lecture's identity: (W_m q)^T (W_n k) = q^T W_(n-m) k, and W_m is orthogonal."""
    rope = RotaryEmbedding(head_dim=16)
    q, k = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)

    def rotated(x, position):
        cos, sin = rope(torch.tensor([position]))
        return apply_rotary(x[None, None, None], cos.double(), sin.double())[0, 0, 0]

    for m, n in [(0, 3), (5, 8), (100, 103), (2, 2), (7, 50), (57, 104)]:
        score = rotated(q, m) @ rotated(k, n)
        torch.testing.assert_close(score, rotated(q, 0) @ rotated(k, n - m), atol=1e-5, rtol=1e-5)
        assert torch.allclose(rotated(q, m).norm(), q.norm(), atol=1e-6)
    # Not a trivial identity: a different offset gives a different score.
    assert abs(float(rotated(q, 0) @ rotated(k, 3) - rotated(q, 0) @ rotated(k, 4))) > 1e-3


def test_rope2d_scores_depend_only_on_row_and_column_offsets():
    rope = RotaryEmbedding(head_dim=16, axes=2)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(pq, pk):
        cq, sq = rope(torch.tensor([pq]))
        ck, sk = rope(torch.tensor([pk]))
        return float((apply_rotary(q, cq, sq) * apply_rotary(k, ck, sk)).sum())

    assert score((1, 2), (4, 7)) == pytest.approx(score((0, 0), (3, 5)), abs=1e-5)
    assert score((1, 2), (4, 7)) != pytest.approx(score((0, 0), (5, 3)), abs=1e-3)
    assert grid_positions(2, 3).tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]


@pytest.mark.parametrize("n_kv_heads", [1, 2])
def test_gqa_equals_mha_with_repeated_kv_heads(n_kv_heads):
    """A GQA layer equals an MHA layer whose K/V projection rows are the GQA ones repeated per group."""
    dim, H, d = 32, 4, 8
    gqa = Attention(dim, H, n_kv_heads, d)
    mha = Attention(dim, H, H, d)
    wq, wk, wv = gqa.qkv.weight.split([H * d, n_kv_heads * d, n_kv_heads * d])
    repeat = lambda w: w.view(n_kv_heads, d, dim).repeat_interleave(H // n_kv_heads, dim=0).reshape(H * d, dim)
    with torch.no_grad():
        mha.qkv.weight.copy_(torch.cat([wq, repeat(wk), repeat(wv)]))
        mha.proj.weight.copy_(gqa.proj.weight)
    x = torch.randn(2, 13, dim)
    torch.testing.assert_close(gqa(x, is_causal=True), mha(x, is_causal=True), atol=1e-6, rtol=1e-5)


def tiny(**overrides) -> Transformer:
    config = TransformerConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64, **overrides)
    return Transformer(config).eval()


def test_causality_future_tokens_never_change_the_past():
    model = tiny()
    x = torch.randn(2, 16, 32)
    y = model(x)
    x2 = x.clone()
    x2[:, 9:] = torch.randn(2, 7, 32)
    y2 = model(x2)
    torch.testing.assert_close(y2[:, :9], y[:, :9], atol=0, rtol=0)
    assert not torch.allclose(y2[:, 9:], y[:, 9:])
    # And a bidirectional stack does see the future (the test above can fail).
    bidirectional = tiny(causal=False)
    assert not torch.allclose(bidirectional(x2)[:, :9], bidirectional(x)[:, :9])


@pytest.mark.parametrize("chunks", [[1] * 12, [5, 3, 4], [12]])
def test_kv_cache_decoding_equals_full_forward(chunks):
    model = tiny()
    x = torch.randn(3, 12, 32)
    full = model(x)
    cache = model.make_cache(batch=3)
    outputs, start = [], 0
    for size in chunks:
        outputs.append(model(x[:, start:start + size], cache=cache))
        start += size
    torch.testing.assert_close(torch.cat(outputs, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 12


def test_left_padded_batch_with_cache_equals_each_row_alone():
    """Ragged prompts: left padding plus per-row RoPE positions give every row its unpadded result."""
    model = tiny()
    lengths = [7, 4, 1]
    rows = [torch.randn(1, n + 5, 32) for n in lengths]  # prompt of n tokens, then 5 decoded tokens
    width = max(lengths)
    x = torch.zeros(3, width, 32)
    mask = torch.zeros(3, width, dtype=torch.bool)
    for i, n in enumerate(lengths):
        x[i, width - n:] = rows[i][0, :n]
        mask[i, width - n:] = True
    cache = model.make_cache(batch=3)
    prefill = model(x, mask=mask, cache=cache)
    steps = [model(torch.cat([r[:, n + s:n + s + 1] for r, n in zip(rows, lengths)]), cache=cache)
             for s in range(5)]
    for i, n in enumerate(lengths):
        alone = model(rows[i])
        torch.testing.assert_close(prefill[i, width - n:], alone[0, :n], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(torch.cat([s[i] for s in steps]), alone[0, n:], atol=1e-5, rtol=1e-5)
    # Without a cache, the same left-padded batch gives the same answers (positions count real tokens).
    torch.testing.assert_close(model(x, mask=mask)[mask], prefill[mask], atol=1e-5, rtol=1e-5)


def test_cross_attention_cache_computes_context_once_and_matches():
    model = tiny(cross_attention=True, context_dim=24)
    x, context = torch.randn(2, 6, 32), torch.randn(2, 9, 24)
    full = model(x, context=context)
    cache = model.make_cache(batch=2)
    steps = [model(x[:, :2], context=context, cache=cache)]
    k_first = cache.layers[0].cross_kv[0]
    steps += [model(x[:, t:t + 1], cache=cache) for t in range(2, 6)]  # context no longer needed
    assert cache.layers[0].cross_kv[0] is k_first
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_adaln_zero_blocks_start_as_identity_and_respond_to_conditioning():
    model = tiny(adaln=True, cond_dim=16, causal=False, final_norm=False)
    x, cond = torch.randn(2, 5, 32), torch.randn(2, 16)
    torch.testing.assert_close(model(x, cond=cond), x)  # adaLN-Zero: every block is the identity at init
    torch.nn.init.normal_(model.blocks[0].modulation[-1].weight, std=0.1)
    assert not torch.allclose(model(x, cond=cond), model(x, cond=torch.randn(2, 16)))


def test_bad_configs_and_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="allowed: geglu, swiglu, gelu"):
        TransformerConfig(mlp="relu")
    with pytest.raises(ValueError, match="n_kv_heads"):
        TransformerConfig(n_heads=4, n_kv_heads=3)
    with pytest.raises(ValueError, match="max_seq_len"):
        tiny()(torch.randn(1, 65, 32))
    with pytest.raises(ValueError, match="cross-attention"):
        tiny(cross_attention=True)(torch.randn(1, 3, 32))
    with pytest.raises(ValueError, match="explicit positions"):
        tiny(positions="rope2d", causal=False)(torch.randn(1, 4, 32))


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")
def test_prepacked_linears_match_nn_linear_and_are_undone_on_exit():
    from zoo.nn.packed import prepacked_linears

    model = torch.nn.Sequential(torch.nn.Linear(48, 96), torch.nn.GELU(), torch.nn.Linear(96, 32, bias=False))
    x = torch.randn(3, 5, 48)
    with torch.inference_mode():
        expected = model(x)
        with prepacked_linears(model, rows=3):
            assert all("forward" in layer.__dict__ for layer in (model[0], model[2]))
            packed = model(x)
            one_row = model(x[:1, :1])
        torch.testing.assert_close(packed, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(one_row, expected[:1, :1], atol=1e-5, rtol=1e-5)
        with pytest.raises(RuntimeError, match="inside"), prepacked_linears(model):
            raise RuntimeError("an error inside the block")
    assert not any("forward" in layer.__dict__ for layer in model)
    torch.testing.assert_close(model(x), expected)  # plain nn.Linear again, autograd included
    with torch.autocast("cpu", dtype=torch.bfloat16), prepacked_linears(model):  # autocast: left alone
        assert not any("forward" in layer.__dict__ for layer in model)


def test_mlp_width_follows_hidden_dim_then_mlp_ratio_then_the_per_kind_default():
    assert TransformerConfig(dim=128).mlp_hidden == 384  # gated: 8/3 * dim, rounded up to a multiple of 64
    assert TransformerConfig(dim=128, mlp="gelu").mlp_hidden == 512
    assert TransformerConfig(dim=96, mlp_ratio=2.0).mlp_hidden == 192
    assert TransformerConfig(dim=96, mlp_ratio=2.0, hidden_dim=100).mlp_hidden == 100
    block = Transformer(TransformerConfig(dim=32, n_layers=1, mlp_ratio=1.5)).blocks[0]
    assert tuple(block.mlp.gate_up.weight.shape) == (2 * 48, 32) and tuple(block.mlp.down.weight.shape) == (32, 48)
    with pytest.raises(ValueError, match="mlp_ratio None or > 0"):
        TransformerConfig(mlp_ratio=0.0)
    with pytest.raises(ValueError, match="hidden_dim must be None or >= 1"):
        TransformerConfig(hidden_dim=-4)


def test_attention_dropout_defaults_to_dropout_and_can_be_set_apart():
    """TransformerConfig.attention_dropout (None: dropout) drops attention probabilities; 0 with residual dropout on
    leaves the attention output deterministic in training mode, as GPT-2's attn_pdrop / resid_pdrop split allows."""
    from zoo.errors import InputError
    from zoo.nn.transformer import Block

    x = torch.randn(2, 8, 32)

    def attention_outputs(config):
        torch.manual_seed(0)
        block = Block(config).train()
        return [block.attn(x, is_causal=True) for _ in range(2)]

    shared = TransformerConfig(dim=32, n_heads=4, dropout=0.5, positions="none")
    a, b = attention_outputs(shared)
    assert shared.attn_dropout == 0.5 and not torch.allclose(a, b)  # the probabilities are dropped, afresh per call
    apart = TransformerConfig(dim=32, n_heads=4, dropout=0.5, attention_dropout=0.0, positions="none")
    a, b = attention_outputs(apart)
    assert apart.attn_dropout == 0.0 and torch.equal(a, b)
    for bad in (-0.1, 1.0):
        with pytest.raises(InputError, match="attention_dropout must be in"):
            TransformerConfig(attention_dropout=bad)
