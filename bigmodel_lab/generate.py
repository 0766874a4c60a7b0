"""Text generation for the book's `GPT` and the Llama-family `Decoder`, with a KV cache.

A decoding step turns the last position's logits into one token:

    repetition penalty  logits of tokens already present: divided by r if > 0, times r if < 0
    temperature         logits / T: T < 1 sharpens, T > 1 flattens, T = 0 means greedy
    top-k               keep the k largest logits
    top-p (nucleus)     keep the smallest set of tokens whose probabilities sum to >= p
    sample              draw from the softmax of what is left

(the order and the rules of `transformers`' logits processors; tests compare them one by one).
Without a cache every new token re-runs the model over the whole prefix: O(T^2) work for T
tokens. With a cache each layer keeps the keys and values of the tokens already seen, so a
new token costs one position's worth of work plus attending over the cache. Batched prompts are
left-padded (`encode_prompts`), so every row's next token sits in the last column.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .decoder import Decoder
from .transformer import GPT


def apply_repetition_penalty(logits: torch.Tensor, input_ids: torch.Tensor, penalty: float
                             ) -> torch.Tensor:
    """CTRL's penalty (Keskar et al. 2019): tokens in `input_ids` (B, T) get logit / penalty if
    positive, logit * penalty if negative, so either way they become less likely (penalty > 1)."""
    if penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0 (1.0 = off), got {penalty}.")
    seen = torch.gather(logits, 1, input_ids)  # (B, T)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits.scatter(1, input_ids, seen)


def apply_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Set every logit below the k-th largest of its row to -inf."""
    if k < 1:
        raise ValueError(f"top_k must be >= 1 (None = off), got {k}.")
    kth = torch.topk(logits, min(k, logits.shape[-1])).values[:, -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def apply_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering (Holtzman et al. 2020): keep the most likely tokens until their
    probabilities sum to at least p; the most likely token is always kept."""
    if not 0 < p <= 1:
        raise ValueError(f"top_p must be in (0, 1] (1.0 = off), got {p}.")
    # Ascending order, as transformers' TopPLogitsWarper: drop the tail whose mass <= 1 - p.
    sorted_logits, order = torch.sort(logits, descending=False)
    tail_mass = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop = tail_mass <= 1 - p
    drop[:, -1] = False  # the most likely token stays
    return logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))


def process_logits(logits: torch.Tensor, input_ids: torch.Tensor | None = None,
                   temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                   repetition_penalty: float | None = None) -> torch.Tensor:
    """The (B, V) logits after every knob, in transformers' order (penalty, T, top-k, top-p)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}.")
    logits = logits.float()
    if repetition_penalty is not None and repetition_penalty != 1.0 and input_ids is not None:
        logits = apply_repetition_penalty(logits, input_ids, repetition_penalty)
    if temperature not in (0, 1):
        logits = logits / temperature
    if top_k is not None:
        logits = apply_top_k(logits, top_k)
    if top_p is not None and top_p < 1.0:
        logits = apply_top_p(logits, top_p)
    return logits


def next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
               generator: torch.Generator | None = None, top_p: float | None = None,
               repetition_penalty: float | None = None, input_ids: torch.Tensor | None = None
               ) -> torch.Tensor:
    """Pick one token per row from (B, V) logits: (B, 1). temperature=0 means greedy (argmax,
    after the repetition penalty); otherwise sample from softmax of the processed logits."""
    logits = process_logits(logits, input_ids, temperature, top_k, top_p, repetition_penalty)
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # (B, 1)
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)  # (B, 1)


def _check_fits(model, prompt_len: int, max_new_tokens: int, use_cache: bool) -> None:
    n_ctx = model.config.context_length
    if (use_cache or isinstance(model, Decoder)) and prompt_len + max_new_tokens > n_ctx:
        raise ValueError(
            f"prompt ({prompt_len}) + max_new_tokens ({max_new_tokens}) exceeds the "
            f"context_length {n_ctx}; generate fewer tokens"
            + (" or use_cache=False (which crops)." if isinstance(model, GPT) else ".")
        )


@torch.no_grad()
def generate(
    model: GPT | Decoder,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    top_p: float | None = None,
    repetition_penalty: float | None = None,
    stop_tokens: Sequence[int] = (),
    attention_mask: torch.Tensor | None = None,
    pad_token_id: int = 0,
) -> torch.Tensor:
    """Extend (B, T) `input_ids` by up to `max_new_tokens` tokens; returns (B, T + new).

    A row that emits one of `stop_tokens` keeps it and is padded with `pad_token_id` after;
    generation ends when every row has stopped. `attention_mask` (B, T) marks left padding
    (Decoder only: the book's GPT has learned absolute positions and takes no mask).
    `use_cache=False` recomputes the whole prefix each step (the GPT crops it to its context);
    both give the same tokens (tests/test_generate.py).
    """
    model.eval()
    B, T = input_ids.shape
    _check_fits(model, T, max_new_tokens, use_cache)
    is_decoder = isinstance(model, Decoder)
    if attention_mask is not None and bool(attention_mask.all()):
        attention_mask = None  # no padding: the fast path needs no mask at all
    if attention_mask is not None and not is_decoder:
        raise ValueError("The book's GPT takes no attention_mask (its learned positions cannot skip "
                         "padding): pass prompts of equal length, one at a time, or use a Decoder.")
    positions = None
    if attention_mask is not None:  # positions count real tokens only, as transformers does
        positions = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
    ids = input_ids
    stops = torch.tensor(list(stop_tokens), dtype=torch.long, device=ids.device)
    done = torch.zeros(B, 1, dtype=torch.bool, device=ids.device)
    if use_cache:
        cache = model.new_cache(B, T + max_new_tokens) if is_decoder else model.new_cache()
    step = ids
    for _ in range(max_new_tokens):
        kwargs = {}
        if is_decoder and attention_mask is not None:
            kwargs = dict(attention_mask=attention_mask,
                          position_ids=positions[:, -step.shape[1]:] if use_cache else positions)
        if use_cache:
            logits = model(step, cache=cache, **kwargs).logits[:, -1]  # (B, V)
        else:
            window = ids if is_decoder else ids[:, -model.config.context_length:]
            logits = model(window, **kwargs).logits[:, -1]
        nxt = next_token(logits, temperature, top_k, generator, top_p, repetition_penalty, ids)
        if len(stops):
            nxt = nxt.masked_fill(done, pad_token_id)
            done = done | torch.isin(nxt, stops)
        ids = torch.cat([ids, nxt], dim=1)
        step = nxt
        if attention_mask is not None:
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones(B, 1)], dim=1)
            positions = torch.cat([positions, positions[:, -1:] + 1], dim=1)
        if len(stops) and bool(done.all()):
            break
    return ids


# --- prompts and text --------------------------------------------------------------------


def chat_messages(prompt: str | list[dict], system: str | None = None) -> list[dict]:
    """A user prompt (or a list of {"role", "content"} messages) as chat messages."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return ([{"role": "system", "content": system}] if system else []) + messages


def encode_prompts(tokenizer, prompts: str | Sequence, chat: bool = True,
                   system: str | None = None) -> dict[str, torch.Tensor]:
    """Token ids and attention mask (B, T) of one or more prompts, left-padded.

    With `chat`, each prompt goes through the tokenizer's chat template (system and user turns,
    then the assistant header the model continues from), as an instruct model was trained."""
    if isinstance(prompts, str) or (prompts and isinstance(prompts[0], dict)):
        prompts = [prompts]
    if chat:
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("This tokenizer has no chat template; pass chat=False for plain text.")
        texts = [tokenizer.apply_chat_template(chat_messages(p, system), tokenize=False,
                                               add_generation_prompt=True) for p in prompts]
    else:
        texts = list(prompts)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # every row's last token in the last column
    try:
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not chat)
    finally:
        tokenizer.padding_side = side
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def generate_text(model: Decoder, tokenizer, prompts: str | Sequence, max_new_tokens: int = 64,
                  chat: bool = True, system: str | None = None, seed: int | None = None,
                  **knobs) -> list[str]:
    """The continuations (decoded, without the prompt) of a batch of prompts. `knobs` go to
    `generate` (temperature, top_k, top_p, repetition_penalty); generation stops at EOS."""
    enc = {k: v.to(model.device) for k, v in encode_prompts(tokenizer, prompts, chat, system).items()}
    generator = torch.Generator(model.device).manual_seed(seed) if seed is not None else None
    stops = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    out = generate(model, enc["input_ids"], max_new_tokens, attention_mask=enc["attention_mask"],
                   stop_tokens=stops, pad_token_id=tokenizer.pad_token_id or 0,
                   generator=generator, **knobs)
    return tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


@torch.no_grad()
def next_token_probs(model, tokenizer, prompt: str, chat: bool = True, **knobs) -> torch.Tensor:
    """Probabilities (V,) of the next token after `prompt`, after the knobs (temperature,
    top_k, top_p, repetition_penalty); temperature 0 puts all mass on the argmax."""
    ids = encode_prompts(tokenizer, prompt, chat)["input_ids"].to(model.device)
    logits = model(ids).logits[:, -1].float()
    temperature = knobs.pop("temperature", 1.0)
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1])[0].float()
    return process_logits(logits, ids, temperature, **knobs).softmax(-1)[0]


# --- speed --------------------------------------------------------------------------------


def tokens_per_second(model: GPT | Decoder, input_ids: torch.Tensor, max_new_tokens: int,
                      use_cache: bool, repeats: int = 1) -> float:
    """Generated tokens per second (greedy, best of `repeats`), on `bandwidth.clock`: CPU time
    when pinned to one core, else wall time."""
    from .bandwidth import clock

    device = input_ids.device
    now = clock(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = now()
        generate(model, input_ids, max_new_tokens, use_cache=use_cache)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, now() - t0)
    return input_ids.shape[0] * max_new_tokens / best
