"""Loading a Hugging Face Llama-family checkpoint into the from-scratch `decoder.Decoder`.

The model definitions live in `decoder.py`; this module only maps names and checks shapes,
as `transformer.load_bert_weights` does for the encoder. `decoder_from_pretrained(source)`
takes a `LlamaForCausalLM`, its state dict, or a model folder (config.json + safetensors).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .decoder import Decoder, ReadOrderLinear, TransposedEmbedding, rope_tables
from .transformer import TransformerConfig

# Checkpoint keys the Decoder has no use for (rotary tables are recomputed from theta).
IGNORED_LLAMA_KEYS = ("model.rotary_emb.", "rotary_emb.inv_freq")


def llama_config_fields(llama_config: Any) -> dict:
    """TransformerConfig fields from a LlamaConfig, a config.json path or a dict of its fields."""
    if isinstance(llama_config, (str, Path)):
        path = Path(llama_config)
        llama_config = json.loads((path / "config.json" if path.is_dir() else path).read_text())
    if not isinstance(llama_config, dict):
        llama_config = llama_config.to_dict()
    get = llama_config.get
    rope = get("rope_parameters") or get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type != "default":
        raise ValueError(f"rope_type={rope_type!r} (scaled rotary positions) is not built here; "
                         "use a checkpoint with default RoPE (SmolLM2, TinyLlama, Llama 2).")
    if get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act={get('hidden_act')!r}: the Llama SwiGLU uses silu.")
    heads, hidden = get("num_attention_heads"), get("hidden_size")
    if get("head_dim") not in (None, hidden // heads):
        raise ValueError(f"head_dim={get('head_dim')} differs from hidden_size / num_heads = "
                         f"{hidden // heads}; this Decoder ties the two.")
    return dict(
        vocab_size=get("vocab_size"), context_length=get("max_position_embeddings"),
        num_layers=get("num_hidden_layers"), num_heads=heads, hidden_size=hidden,
        intermediate_size=get("intermediate_size"),
        num_kv_heads=get("num_key_value_heads") or heads,
        rope_theta=float(rope.get("rope_theta", get("rope_theta") or 10000.0)),
        layer_norm_eps=get("rms_norm_eps"), tie_embeddings=bool(get("tie_word_embeddings")),
        bias=bool(get("attention_bias", False)) or bool(get("mlp_bias", False)),
        norm="rmsnorm", activation="swiglu", position_embedding="rope", norm_position="pre",
        dropout=0.0, attention_dropout=float(get("attention_dropout") or 0.0),
        attention_backend="fused",
    )


def llama_key_map(num_layers: int) -> dict[str, str]:
    """Our Decoder's state_dict keys -> LlamaForCausalLM's."""
    m = {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
         "lm_head.weight": "lm_head.weight"}
    parts = {
        "norm_1": "input_layernorm", "norm_2": "post_attention_layernorm",
        "attn.q_proj": "self_attn.q_proj", "attn.k_proj": "self_attn.k_proj",
        "attn.v_proj": "self_attn.v_proj", "attn.o_proj": "self_attn.o_proj",
        "mlp.gate_proj": "mlp.gate_proj", "mlp.up_proj": "mlp.up_proj",
        "mlp.down_proj": "mlp.down_proj",
    }
    for i in range(num_layers):
        for ours, theirs in parts.items():
            for p in ("weight", "bias"):
                m[f"layers.{i}.{ours}.{p}"] = f"model.layers.{i}.{theirs}.{p}"
    return m


def _llama_state_dict(source: Any) -> dict[str, torch.Tensor]:
    if isinstance(source, nn.Module):
        return source.state_dict()
    if isinstance(source, dict):
        return source
    from safetensors.torch import load_file

    path = Path(source)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not files or not all(f.exists() for f in files):
        raise FileNotFoundError(
            f"No safetensors checkpoint at {path}; pass a LlamaForCausalLM, its state_dict, or a "
            "model folder saved with save_pretrained (config.json + model.safetensors)."
        )
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(str(f)))
    return state


def _matched_state(decoder: Decoder, source: Any) -> dict[str, torch.Tensor]:
    """{Decoder key: checkpoint tensor} for every Decoder parameter, shapes checked; the errors
    name the key and the fix."""
    state = _llama_state_dict(source)
    c = decoder.config
    if c.tie_embeddings and "lm_head.weight" not in state:  # tied checkpoints may omit it
        state = {**state, "lm_head.weight": state.get("model.embed_tokens.weight")}
    mapping = llama_key_map(c.num_layers)
    matched = {}
    for key, tensor in decoder.state_dict().items():
        theirs = mapping.get(key)
        if theirs is None:
            raise KeyError(f"Decoder parameter {key!r} has no LlamaForCausalLM counterpart; build "
                           "the Decoder with TransformerConfig.from_llama(<its config>).")
        if state.get(theirs) is None:
            raise KeyError(f"Checkpoint is missing {theirs!r} (needed for Decoder {key!r}). Is it a "
                           f"LlamaForCausalLM checkpoint with {c.num_layers} layers? Build the "
                           "Decoder with TransformerConfig.from_llama(<the checkpoint's config>).")
        if state[theirs].shape != tensor.shape:
            raise ValueError(f"Shape mismatch at {theirs!r}: checkpoint {tuple(state[theirs].shape)} "
                             f"vs Decoder {key!r} {tuple(tensor.shape)}. Build the Decoder with "
                             "TransformerConfig.from_llama(<the checkpoint's config.json>).")
        matched[key] = state[theirs]
    used = set(mapping.values())
    extra = [k for k in state if k not in used and not k.startswith(IGNORED_LLAMA_KEYS)]
    if extra:
        raise KeyError(f"Checkpoint key {extra[0]!r} has no place in the Decoder ({len(extra)} "
                       "unused keys); is it a Llama-family (LlamaForCausalLM) checkpoint?")
    return matched


@torch.no_grad()
def load_llama_weights(decoder: Decoder, source: Any) -> Decoder:
    """Copy a LlamaForCausalLM checkpoint into `decoder` (in place). Every Decoder parameter must
    be found with the same shape; otherwise the error names the key and the fix."""
    for key, tensor in _matched_state(decoder, source).items():
        decoder.get_parameter(key).copy_(tensor)
    return decoder


def _assemble(config: TransformerConfig, state: dict[str, torch.Tensor]) -> Decoder:
    """A Decoder whose parameters ARE the given tensors (built on the meta device: no random
    init, no copy), tied again and with its rotary tables computed."""
    with torch.device("meta"):
        decoder = Decoder(config)
    decoder.load_state_dict(state, assign=True)
    if config.tie_embeddings:
        decoder.lm_head.weight = decoder.embed.weight
    device = decoder.embed.weight.device
    if config.position_embedding == "rope":
        cos, sin = rope_tables(config.context_length, config.head_size, config.rope_theta)
        dtype = decoder.embed.weight.dtype  # as transformers: fp32 angles, cast to the weights' dtype
        decoder.rope_cos, decoder.rope_sin = cos.to(device, dtype), sin.to(device, dtype)
    return decoder


def shallow_copy(decoder: Decoder) -> Decoder:
    """A new Decoder module tree over the same weight tensors (no memory copied), so a tool that
    replaces modules in place (a quantizer) leaves `decoder` as it was."""
    state = {k: v for k, v in decoder.state_dict().items()}
    return _assemble(decoder.config, state).train(decoder.training)


def quantize_dynamic_int8(decoder: Decoder) -> Decoder:
    """`compress.quantize_dynamic_int8` for the decoder without its deep copy: every nn.Linear
    becomes a dynamic int8 Linear (the fp32 model is kept; only the int8 weights are new memory).
    The embedding stays fp32; the tied output layer gets its own int8 copy."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated (see compress)
        return torch.ao.quantization.quantize_dynamic(shallow_copy(decoder).eval(), {nn.Linear},
                                                      dtype=torch.qint8, inplace=True)


def read_order_layout(decoder: Decoder) -> Decoder:
    """Store every matrix of `decoder` transposed (`decoder.ReadOrderLinear`), in place, the
    layout a batch-1 decoding step reads fastest on a CPU. Same outputs up to float rounding
    (the products are summed in another order), same memory: each matrix is replaced one at a
    time, and a tied embedding reads its rows from the transposed output layer. For inference
    only (the weights are frozen). Weights loaded through a memory map stay mapped until all
    of them are replaced: load with `models.load_causal_lm(mmap=False)` to keep the peak at
    one model plus one matrix."""
    tied = decoder.lm_head.weight is decoder.embed.weight
    with torch.no_grad():
        for module in list(decoder.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, nn.Linear) and not (tied and child is decoder.lm_head):
                    setattr(module, name, ReadOrderLinear(child.weight, child.bias))
        if tied:
            decoder.lm_head = ReadOrderLinear(decoder.embed.weight)
            decoder.embed = TransposedEmbedding(decoder.lm_head)
        fresh = {m.weight_t.data_ptr() for m in decoder.modules() if isinstance(m, ReadOrderLinear)}
        for p in decoder.parameters():  # norms and biases: own copies, so no file map outlives it
            if p.data_ptr() not in fresh:
                p.data = p.data.clone()
    return decoder.eval()


def decoder_from_pretrained(source: Any, **overrides: Any) -> Decoder:
    """A `Decoder` in eval mode with the weights of `source`: a `transformers.LlamaForCausalLM`,
    its state dict (pass `config=` its LlamaConfig then) or a model folder.

    The Decoder takes the checkpoint's tensors as they are (no copy, same dtype and device): it
    shares them with a `LlamaForCausalLM` source, so building it costs no memory and no time."""
    config = overrides.pop("config", None)
    if config is None:
        if isinstance(source, nn.Module):
            config = source.config
        elif isinstance(source, dict):
            raise ValueError("A bare state dict carries no shapes: pass config=<its LlamaConfig> "
                             "too, e.g. decoder_from_pretrained(state, config=model.config).")
        else:
            config = Path(source)
            if not (config / "config.json").exists():
                raise FileNotFoundError(f"{source} holds no config.json: pass a folder saved with "
                                        "save_pretrained, a LlamaForCausalLM or its state dict.")
    cfg = config if isinstance(config, TransformerConfig) else TransformerConfig.from_llama(config, **overrides)
    with torch.device("meta"):
        shapes = Decoder(cfg)
    decoder = _assemble(cfg, _matched_state(shapes, source))
    return decoder.eval()
