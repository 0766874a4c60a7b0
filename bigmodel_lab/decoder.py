"""The Llama-family decoder: the book's GPT (Part II) with a few `TransformerConfig` switches.

    GPT-2 (transformer.GPT)            Llama / SmolLM2 (this module)        switch
    LayerNorm: centre, scale, shift    RMSNorm: scale only                  norm="rmsnorm"
    Linear -> GELU -> Linear           SwiGLU: down(silu(gate x) * up x)    activation="swiglu"
    learned positions added to x       rotary positions on q and k          position_embedding="rope"
    one K/V head per query head        a K/V head shared by a group         num_kv_heads < num_heads
    biases in every Linear             none                                 bias=False

Everything else is the GPT of Part II: pre-norm blocks, a final norm, causal self-attention,
an output layer tied to the token embeddings. `Decoder(config)` reads every switch, so GPT-2's
layout (`norm="layernorm"`, `activation="gelu_tanh"`, learned positions) builds here too.
`DecoderCache` is the KV cache, preallocated once so a new token writes in place.
Weights of a Hugging Face `LlamaForCausalLM` load with `convert.decoder_from_pretrained`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import scaled_dot_product_attention
from .transformer import FeedForward, TransformerConfig, TransformerOutput


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight (Zhang & Sennrich 2019).

    LayerNorm's mean subtraction and bias are dropped: re-scaling alone keeps the residual
    stream's size in check and costs one reduction instead of two. Computed in fp32, as Llama does.
    """

    def __init__(self, size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def make_norm(config: TransformerConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.hidden_size, config.layer_norm_eps)
    return nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps, bias=config.bias)


class SwiGLU(nn.Module):
    """Gated feed-forward (Shazeer 2020): down(silu(gate(x)) * up(x)).

    One branch decides, per hidden unit, how much of the other passes. Three matrices instead of
    two, so Llama picks intermediate_size near 8/3 * hidden to keep GPT-2's parameter count.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        h, f, b = config.hidden_size, config.ffn_size, config.bias
        self.gate_proj = nn.Linear(h, f, bias=b)
        self.up_proj = nn.Linear(h, f, bias=b)
        self.down_proj = nn.Linear(f, h, bias=b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # (B, T, F) inside


def rope_tables(n_positions: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (n_positions, head_dim) in the "rotate half" layout of `positional.rope_cos_sin`.

    Angles are computed in fp32 the way the reference Llama code does, so the logits match it to
    the last bits; `positional.rope_cos_sin` computes them in fp64 (they differ by < 1e-5).
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    angles = torch.arange(n_positions).float()[:, None] * inv_freq  # (T, hs/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, hs)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (i, i + hs/2) pair of x (B, nh, T, hs) by its position's angle."""
    return x * cos + rotate_half(x) * sin


class DecoderCache:
    """The KV cache: keys and values of every layer, preallocated as (B, n_kv, max_length, hs).

    A new token's keys and values are written in place at `length` (no torch.cat, no new
    memory per step); attention reads the first `length + T` positions. Bytes per token:
    2 (K and V) * layers * n_kv * hs * bytes per number, which is why grouped-query attention
    (fewer K/V heads) shrinks it.
    """

    def __init__(self, config: TransformerConfig, batch_size: int, max_length: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        shape = (batch_size, config.kv_heads, max_length, config.head_size)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.num_layers)]
        self.length = 0
        self.max_length = max_length

    def __len__(self) -> int:
        return self.length

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, n_kv, T, hs) after the cached tokens; return all (B, n_kv, length + T, hs)."""
        end = self.length + k.shape[2]
        if end > self.max_length:
            raise ValueError(f"The cache holds {self.max_length} positions and {end} are needed; "
                             "make it with a larger max_length (prompt + max_new_tokens).")
        self.keys[layer][:, :, self.length:end] = k
        self.values[layer][:, :, self.length:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def nbytes(self) -> int:
        """Bytes the cache holds for the `length` positions filled so far (all rows of the batch)."""
        k = self.keys[0]
        return 2 * len(self.keys) * k.shape[0] * k.shape[1] * self.length * k.shape[3] * k.element_size()


class GroupedQueryAttention(nn.Module):
    """Causal self-attention in which each K/V head serves num_heads / num_kv_heads query heads.

    With num_kv_heads == num_heads this is GPT-2's multi-head attention; with 1 it is multi-query
    attention (Shazeer 2019). Queries keep all their heads, so the model still looks in
    num_heads directions, while the KV cache shrinks by num_heads / num_kv_heads (Ainslie et al.
    2023). Rotary positions rotate q and k before the dot product.
    """

    def __init__(self, config: TransformerConfig, layer: int):
        super().__init__()
        c, hs = config, config.head_size
        self.num_heads, self.num_kv_heads, self.head_size = c.num_heads, c.kv_heads, hs
        self.q_proj = nn.Linear(c.hidden_size, c.num_heads * hs, bias=c.bias)
        self.k_proj = nn.Linear(c.hidden_size, c.kv_heads * hs, bias=c.bias)
        self.v_proj = nn.Linear(c.hidden_size, c.kv_heads * hs, bias=c.bias)
        self.o_proj = nn.Linear(c.num_heads * hs, c.hidden_size, bias=c.bias)
        self.layer, self.backend, self.attention_dropout = layer, c.attention_backend, c.attention_dropout

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None,
                mask: torch.Tensor | None, cache: DecoderCache | None = None) -> torch.Tensor:
        """x (B, T, C); rope: cos, sin (B, 1, T, hs); mask: bool (B, 1, T, T_k), True = may
        attend, or None for plain causal attention over x alone."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
        k = self.k_proj(x).view(B, T, self.num_kv_heads, self.head_size).transpose(1, 2)  # (B, nkv, T, hs)
        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.head_size).transpose(1, 2)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # (B, nkv, T_k, hs)
        dropout_p = self.attention_dropout if self.training else 0.0
        gqa = self.num_kv_heads != self.num_heads
        if self.backend == "fused":
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                               is_causal=mask is None and T > 1, enable_gqa=gqa)
        else:  # Part I's function: repeat each K/V head for its group of query heads
            group = self.num_heads // self.num_kv_heads
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # (B, nh, T_k, hs)
            if mask is None and T > 1:
                mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            y, _ = scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=dropout_p)
        y = y.transpose(1, 2).reshape(B, T, self.num_heads * self.head_size)  # (B, T, nh * hs)
        return self.o_proj(y)


class DecoderBlock(nn.Module):
    """Pre-norm layer, as GPT-2: x = x + Attn(Norm(x)); x = x + FFN(Norm(x))."""

    def __init__(self, config: TransformerConfig, layer: int):
        super().__init__()
        self.norm_1 = make_norm(config)
        self.attn = GroupedQueryAttention(config, layer)
        self.norm_2 = make_norm(config)
        self.mlp = SwiGLU(config) if config.activation == "swiglu" else FeedForward(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, rope, mask, cache: DecoderCache | None = None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm_1(x), rope, mask, cache))
        return x + self.drop(self.mlp(self.norm_2(x)))


class ReadOrderLinear(nn.Module):
    """`nn.Linear` with its weight stored transposed, (in, out) contiguous: y = x @ W_t + b.

    At batch 1 a step multiplies one row vector by each matrix. With W_t in (in, out) order
    the kernel streams memory in the order it computes (row i of W_t, scaled by x_i, adds to
    the output), which on the book's CPU reads the weights about 1.3-1.6x faster than the
    (out, in) order `nn.Linear` keeps (`convert.read_order_layout`; benchmarks/bench_decoder.py).
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.weight_t = nn.Parameter(weight.detach().t().contiguous(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.weight_t
        return y if self.bias is None else y + self.bias


class TransposedEmbedding(nn.Module):
    """Token embedding read from a tied output layer's (hidden, vocab) matrix, so that one copy
    of the 49,152 x 576 table serves both: looking up a token reads one (strided) column."""

    def __init__(self, head: ReadOrderLinear):
        super().__init__()
        self.weight_t = head.weight_t  # the same Parameter: tied, counted once

    @property
    def weight(self) -> torch.Tensor:
        return self.weight_t.t()  # (vocab, hidden), a view

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(input_ids, self.weight)


def causal_padding_mask(attention_mask: torch.Tensor | None, past: int, t_q: int,
                        device: torch.device) -> torch.Tensor:
    """Bool (B or 1, 1, T_q, T_k): query i (position past + i) may see keys 0..past + i that are
    real tokens (attention_mask (B, T_k), 1 = real). Each query also sees itself, so a padding
    row is never all False (an all-masked softmax row is NaN, and NaN * 0 would leak)."""
    t_k = past + t_q
    q_pos = torch.arange(past, t_k, device=device)[:, None]
    k_pos = torch.arange(t_k, device=device)[None, :]
    mask = (k_pos <= q_pos)[None, None]  # (1, 1, T_q, T_k)
    if attention_mask is not None:
        mask = (mask & attention_mask[:, None, None, :t_k].bool()) | (k_pos == q_pos)
    return mask


class Decoder(nn.Module):
    """Decoder-only causal LM built from the config's switches (Llama with `from_llama`).

    `decoder(input_ids, attention_mask).logits` is (B, T, V), as `LlamaForCausalLM` returns.
    Positions default to past..past + T - 1 (as transformers does in a forward call);
    `generate` passes `position_ids` that skip left padding.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        c = config
        self.config = c
        self.embed = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position = nn.Embedding(c.context_length, c.hidden_size) if c.position_embedding == "learned" else None
        if c.position_embedding == "rope":
            cos, sin = rope_tables(c.context_length, c.head_size, c.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        elif c.position_embedding != "learned":
            raise ValueError(f"Decoder takes position_embedding 'rope' or 'learned', got {c.position_embedding!r}.")
        self.drop = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(DecoderBlock(c, i) for i in range(c.num_layers))
        self.norm = make_norm(c)
        self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)
        self.apply(_init_weights)
        if c.tie_embeddings:
            self.lm_head.weight = self.embed.weight  # logits = h E^T: one matrix reads and writes tokens

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def new_cache(self, batch_size: int, max_length: int) -> DecoderCache:
        return DecoderCache(self.config, batch_size, max_length, self.embed.weight.dtype, self.device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, cache: DecoderCache | None = None,
                labels: torch.Tensor | None = None) -> TransformerOutput:
        """input_ids (B, T): the new tokens only when `cache` holds the earlier ones.
        attention_mask (B, T_past + T): 1 = real token, 0 = padding. labels as in `GPT`."""
        B, T = input_ids.shape
        past = len(cache) if cache is not None else 0
        if past + T > self.config.context_length:
            raise ValueError(f"{past + T} positions exceed context_length={self.config.context_length}; "
                             "shorten the prompt or generate fewer tokens.")
        if position_ids is None:
            position_ids = torch.arange(past, past + T, device=input_ids.device)[None]  # (1, T)
        x = self.embed(input_ids)  # (B, T, C)
        rope = None
        if self.position is not None:
            x = x + self.position(position_ids)
        else:
            rope = self.rope_cos[position_ids][:, None], self.rope_sin[position_ids][:, None]  # (B, 1, T, hs)
        x = self.drop(x)
        padded = attention_mask is not None and not bool(attention_mask.all())
        # Without padding, plain causal attention needs no mask (SDPA's is_causal), and one new
        # token after a cache may see every cached key.
        mask = None
        if padded or (past and T > 1):
            mask = causal_padding_mask(attention_mask if padded else None, past, T, x.device)
        for layer in self.layers:
            x = layer(x, rope, mask, cache)
        if cache is not None:
            cache.length += T
        x = self.norm(x)
        logits = self.lm_head(x)  # (B, T, V)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                   labels[:, 1:].reshape(-1), ignore_index=-100)
        return TransformerOutput(last_hidden_state=x, logits=logits, loss=loss)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def kv_cache_bytes_per_token(config: TransformerConfig, bytes_per_number: int = 4) -> int:
    """2 (K and V) * layers * K/V heads * head size * bytes: what one more token adds to the cache."""
    return 2 * config.num_layers * config.kv_heads * config.head_size * bytes_per_number
