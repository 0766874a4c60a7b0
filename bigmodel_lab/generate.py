"""Text generation from a `GPT`: greedy, temperature and top-k sampling, with a KV cache.

Without a cache every new token re-runs the model over the whole prefix: O(T^2) work for T
tokens. With a cache each layer keeps the keys and values of the tokens already seen, so a
new token costs one position's worth of work (plus attending over the cache).
"""

from __future__ import annotations

import time

import torch

from .transformer import GPT


def next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick one token per row from (B, V) logits. temperature=0 means greedy (argmax).

    Sampling draws from softmax(logits / temperature), restricted to the `top_k` most likely
    tokens when given: low temperature sharpens, high flattens the distribution.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}.")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # (B, 1)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, 1, generator=generator)  # (B, 1)


@torch.no_grad()
def generate(
    model: GPT,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Extend (B, T) `input_ids` by `max_new_tokens` tokens; returns (B, T + new).

    `use_cache=False` recomputes the full (cropped to the context) prefix every step;
    `use_cache=True` feeds only the newest token and reuses cached keys/values. Both give
    the same tokens (tests/test_generate.py) as long as everything fits in the context.
    """
    model.eval()
    n_ctx = model.config.context_length
    if use_cache and input_ids.shape[1] + max_new_tokens > n_ctx:
        raise ValueError(
            f"prompt ({input_ids.shape[1]}) + max_new_tokens ({max_new_tokens}) exceeds the "
            f"context_length {n_ctx}; generate fewer tokens or use_cache=False (which crops)."
        )
    ids = input_ids
    cache = model.new_cache() if use_cache else None
    step_input = ids
    for _ in range(max_new_tokens):
        if use_cache:
            logits = model(step_input, cache=cache).logits[:, -1]  # (B, V)
        else:
            logits = model(ids[:, -n_ctx:]).logits[:, -1]
        nxt = next_token(logits, temperature, top_k, generator)
        ids = torch.cat([ids, nxt], dim=1)
        step_input = nxt
    return ids


def tokens_per_second(model: GPT, input_ids: torch.Tensor, max_new_tokens: int,
                      use_cache: bool, repeats: int = 1) -> float:
    """Generated tokens per second (greedy, best of `repeats`)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        generate(model, input_ids, max_new_tokens, use_cache=use_cache)
        best = min(best, time.perf_counter() - t0)
    return input_ids.shape[0] * max_new_tokens / best
