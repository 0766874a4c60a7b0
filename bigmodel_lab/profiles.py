"""The smoke / cpu / gpu settings of every notebook, in one table.

A notebook never asks "am I on a GPU?"; it asks its profile. `smoke` keeps CI to seconds
per notebook, `cpu` is a real but small run for a laptop or Binder (2 cores, < 2 GB),
`gpu` is the full-size run. Each notebook's row lists only the knobs it reads, e.g.
`cfg.n_train`, `cfg.max_length`; anything not listed is an AttributeError, on purpose.
"""

from __future__ import annotations

PROFILES = ("smoke", "cpu", "gpu")

# notebook id -> profile -> settings. Keep each row short and readable.
SETTINGS: dict[str, dict[str, dict]] = {
    "00": {
        "smoke": dict(dataset="sst2", n_train=64, n_eval=64),
        "cpu": dict(dataset="sst2", n_train=2000, n_eval=None),
        "gpu": dict(dataset="sst2", n_train=2048, n_eval=872),
    },
    "01": {
        "smoke": dict(gd_steps=30, xor_epochs=200),
        "cpu": dict(gd_steps=60, xor_epochs=2000),
        "gpu": dict(gd_steps=60, xor_epochs=2000),
    },
    "02": {
        "smoke": dict(d_k_values=(4, 16, 64), n_samples=500),
        "cpu": dict(d_k_values=(4, 16, 64, 256, 1024), n_samples=5000),
        "gpu": dict(d_k_values=(4, 16, 64, 256, 1024), n_samples=20000),
    },
    "03": {
        "smoke": dict(seq_lens=(64, 128, 256), repeats=2),
        "cpu": dict(seq_lens=(128, 256, 512, 1024, 2048), repeats=5),
        "gpu": dict(seq_lens=(256, 512, 1024, 2048, 4096, 8192), repeats=10),
    },
    "04": {
        "smoke": dict(n_sentences=4, max_length=32),
        "cpu": dict(n_sentences=16, max_length=64),
        "gpu": dict(n_sentences=64, max_length=128),
    },
    "05": {
        "smoke": dict(n_docs=300, n_val_docs=60, vocab_size=512, vocab_sweep=(300, 512, 1024),
                      context=64, n_layer=2, n_head=2, n_embd=64, dropout=0.0, max_steps=30,
                      batch_size=16, lr=2e-3, eval_every=15, gen_tokens=24),
        "cpu": dict(n_docs=6000, n_val_docs=300, vocab_size=2048,
                    vocab_sweep=(512, 1024, 2048, 4096, 8192), context=128, n_layer=4, n_head=4,
                    n_embd=128, dropout=0.0, max_steps=2000, batch_size=16, lr=3e-3,
                    eval_every=400, gen_tokens=100),
        "gpu": dict(n_docs=None, n_val_docs=None, vocab_size=8192,
                    vocab_sweep=(1024, 2048, 4096, 8192, 16384), context=256, n_layer=8, n_head=8,
                    n_embd=512, dropout=0.1, max_steps=5000, batch_size=64, lr=6e-4,
                    eval_every=500, gen_tokens=200),
    },
    "06": {
        # batch_size is the batch of one optimizer step, taken in grad_accum micro-batches
        # (cpu: 2 x 16 keeps the peak memory under 2 GB).
        "smoke": dict(dataset="sst2", model="all-MiniLM-L6-v2", n_train=128, n_eval=128,
                      max_length=32, batch_size=16, grad_accum=1, epochs=1, lr=1e-4,
                      patience=1, trainer_n_train=64),
        "cpu": dict(dataset="sst2", model="all-MiniLM-L6-v2", n_train=6824, n_eval=None,
                    max_length=64, batch_size=32, grad_accum=2, epochs=2, lr=1e-4, patience=1,
                    trainer_n_train=1000),
        "gpu": dict(dataset="sst2", model="distilbert-base-uncased", n_train=None, n_eval=None,
                    max_length=128, batch_size=32, grad_accum=1, epochs=3, lr=5e-5, patience=1,
                    trainer_n_train=None),
    },
    "07": {
        "smoke": dict(dataset="imdb", model="all-MiniLM-L6-v2", n_train=64, n_eval=128,
                      max_length=64, batch_size=16, grad_accum=1, epochs=1, lr=1e-4,
                      tfidf_n_train=2000, lstm_n_train=128, lstm_max_length=64, lstm_epochs=1,
                      n_strategy_eval=64),
        # cpu: 2,000 reviews for the transformer (4,000 took 13 of the notebook's 21 min on
        # 2 cores), one LSTM epoch, 300 reviews for the strategy comparison: under 15 min.
        "cpu": dict(dataset="imdb", model="all-MiniLM-L6-v2", n_train=2000, n_eval=None,
                    max_length=256, batch_size=16, grad_accum=2, epochs=1, lr=1e-4,
                    tfidf_n_train=None, lstm_n_train=None, lstm_max_length=256, lstm_epochs=1,
                    n_strategy_eval=300),
        "gpu": dict(dataset="imdb", model="distilbert-base-uncased", n_train=None, n_eval=None,
                    max_length=512, batch_size=32, grad_accum=1, epochs=2, lr=5e-5,
                    tfidf_n_train=None, lstm_n_train=None, lstm_max_length=400, lstm_epochs=4,
                    n_strategy_eval=None),
    },
    "08": {  # pruning
        "smoke": dict(dataset="sst2", model="all-MiniLM-L6-v2", n_train=128, n_eval=128, max_length=32,
                      batch_size=16, sparsities=(0.5,), recover_steps=2, recover_lr=1e-4,
                      score_batches=2, heads_removed=(36,), bench_batch=8, bench_len=32, repeats=2),
        "cpu": dict(dataset="sst2", model="all-MiniLM-L6-v2", n_train=None, n_eval=None, max_length=64,
                    batch_size=32, sparsities=(0.1, 0.3, 0.5, 0.7, 0.9), recover_steps=200,
                    recover_lr=1e-4, score_batches=16, heads_removed=(0, 18, 36, 54), bench_batch=32,
                    bench_len=128, repeats=5),
        "gpu": dict(dataset="sst2", model="all-MiniLM-L6-v2", n_train=None, n_eval=None, max_length=128,
                    batch_size=32, sparsities=(0.1, 0.3, 0.5, 0.7, 0.9), recover_steps=300,
                    recover_lr=1e-4, score_batches=64, heads_removed=(0, 18, 36, 54), bench_batch=32,
                    bench_len=128, repeats=20),
    },
    "09": {  # quantization; gpu_dtypes: extra runs on the GPU (none in the CPU profiles)
        "smoke": dict(dataset="sst2", model="all-MiniLM-L6-v2", n_train=128, n_eval=128, max_length=32,
                      batch_size=16, bench_batch=8, bench_len=32, repeats=2, gpu_dtypes=()),
        "cpu": dict(dataset="sst2", model="all-MiniLM-L6-v2", n_train=None, n_eval=None, max_length=64,
                    batch_size=32, bench_batch=32, bench_len=128, repeats=10, gpu_dtypes=()),
        "gpu": dict(dataset="sst2", model="all-MiniLM-L6-v2", n_train=None, n_eval=None, max_length=128,
                    batch_size=32, bench_batch=32, bench_len=128, repeats=20,
                    gpu_dtypes=("fp32", "fp16", "bf16")),
    },
    "10": {  # distillation: the student keeps student_layers (2 of 6) of the teacher
        "smoke": dict(dataset="sst2", model="all-MiniLM-L6-v2", n_train=96, n_eval=64, max_length=32,
                      batch_size=16, student_layers=(0, 3), epochs=1, lr=1e-4,
                      temperature=4.0, alpha=0.9, seeds=(0,), bench_batch=8, bench_len=32,
                      repeats=2),
        "cpu": dict(dataset="sst2", model="all-MiniLM-L6-v2", n_train=None, n_eval=None, max_length=64,
                    batch_size=32, student_layers=(0, 3), epochs=2, lr=1e-4,
                    temperature=4.0, alpha=0.9, seeds=(0, 1), bench_batch=32, bench_len=128,
                    repeats=5),
        "gpu": dict(dataset="sst2", model="all-MiniLM-L6-v2", n_train=None, n_eval=None, max_length=128,
                    batch_size=32, student_layers=(0, 3), epochs=3, lr=5e-5,
                    temperature=4.0, alpha=0.9, seeds=(0, 1, 2), bench_batch=32, bench_len=128,
                    repeats=20),
    },
    # 11-12 serve and explain the Part III classifier (same model per profile as 06).
    "11": {  # deployment and cost
        "smoke": dict(dataset="sst2", model="all-MiniLM-L6-v2", n_train=128, n_eval=64,
                      max_length=32, batch_size=16, batch_sizes=(1, 8), bench_len=32, repeats=3,
                      try_compile=False, n_requests=40, concurrency=(1, 4), time_limit_s=20,
                      n_reviews=2000, cost_batch=4),
        "cpu": dict(dataset="sst2", model="all-MiniLM-L6-v2", n_train=2000, n_eval=None,
                    max_length=64, batch_size=32, batch_sizes=(1, 8, 32), bench_len=128, repeats=10,
                    try_compile=True, n_requests=300, concurrency=(1, 4, 16), time_limit_s=60,
                    n_reviews=None, cost_batch=8),
        "gpu": dict(dataset="sst2", model="distilbert-base-uncased", n_train=None, n_eval=None,
                    max_length=128, batch_size=32, batch_sizes=(1, 8, 32, 128), bench_len=128,
                    repeats=20, try_compile=True, n_requests=1000, concurrency=(1, 8, 32), time_limit_s=120,
                    n_reviews=None, cost_batch=32),
    },
    "12": {  # interpretability and limits
        "smoke": dict(dataset="sst2", model="all-MiniLM-L6-v2", n_train=128, n_eval=64,
                      max_length=32, batch_size=16, ig_steps=16, n_explain=2, n_probe=64,
                      typo_rates=(0.0, 0.2)),
        "cpu": dict(dataset="sst2", model="all-MiniLM-L6-v2", n_train=2000, n_eval=None,
                    max_length=64, batch_size=32, ig_steps=50, n_explain=4, n_probe=None,
                    typo_rates=(0.0, 0.1, 0.2, 0.4)),
        "gpu": dict(dataset="sst2", model="distilbert-base-uncased", n_train=None, n_eval=None,
                    max_length=128, batch_size=32, ig_steps=100, n_explain=6, n_probe=None,
                    typo_rates=(0.0, 0.1, 0.2, 0.4)),
    },
    "13": {"smoke": dict(), "cpu": dict(), "gpu": dict()},  # the dashboard has no knobs
    "14": {  # a real LLM from scratch; model None = the packaged SmolLM2-135M-Instruct
        "smoke": dict(model=None, check_tokens=8, gen_tokens=12, n_samples=2,
                      prompt_lengths=(8, 32), speed_tokens=4, repeats=1, bandwidth_mb=64,
                      int8=True),
        "cpu": dict(model=None, check_tokens=64, gen_tokens=48, n_samples=3,
                    prompt_lengths=(16, 64, 256), speed_tokens=16, repeats=2, bandwidth_mb=256,
                    int8=True),
        "gpu": dict(model="HuggingFaceTB/SmolLM2-1.7B-Instruct", check_tokens=64, gen_tokens=64,
                    n_samples=4, prompt_lengths=(16, 64, 256, 1024), speed_tokens=32, repeats=3,
                    bandwidth_mb=1024, int8=False),
    },
    # 15: tokens, bits per byte, Q4_1/bf16/int8, streaming service; llm None = packaged SmolLM2.
    # gpt_*: the quick tiny GPT trained when 05's checkpoint is absent. int8 is CPU-only.
    # The last variant is the one served in section 5 (bf16: fp32's quality at half the bytes).
    "15": {
        "smoke": dict(llm=None, n_bpe_docs=300, bpe_vocab=512, gpt_context=64, gpt_layers=2,
                      gpt_heads=2, gpt_embd=64, gpt_steps=30, gpt_batch=16, gpt_lr=2e-3,
                      n_eval_reviews=6, max_chars=300, n_variant_reviews=3,
                      q4_tensors=("blk.0.attn_v.weight", "blk.0.ffn_down.weight"),
                      variants=("fp32", "int8", "bf16"), speed_tokens=8, repeats=1,
                      gen_tokens=8, requests_per_client=1, concurrency=(1, 4), time_limit_s=30),
        "cpu": dict(llm=None, n_bpe_docs=6000, bpe_vocab=2048, gpt_context=128, gpt_layers=4,
                    gpt_heads=4, gpt_embd=128, gpt_steps=500, gpt_batch=16, gpt_lr=3e-3,
                    n_eval_reviews=80, max_chars=1200, n_variant_reviews=30, q4_tensors=None,
                    variants=("fp32", "int8", "bf16"), speed_tokens=32, repeats=2,
                    gen_tokens=32, requests_per_client=4, concurrency=(1, 4), time_limit_s=120),
        "gpu": dict(llm="HuggingFaceTB/SmolLM2-1.7B-Instruct", n_bpe_docs=None, bpe_vocab=8192,
                    gpt_context=256, gpt_layers=8, gpt_heads=8, gpt_embd=512, gpt_steps=5000,
                    gpt_batch=64, gpt_lr=6e-4, n_eval_reviews=500, max_chars=4000,
                    n_variant_reviews=200, q4_tensors=None, variants=("fp32", "bf16"),
                    speed_tokens=128, repeats=3, gen_tokens=128, requests_per_client=8,
                    concurrency=(1, 4, 16), time_limit_s=300),
    },
    # 16: prompting vs fine-tuning vs LoRA. dataset .. batch_size: 06's MiniLM (its quick
    # fine-tune when 06 has not run, the same as 17's). llm None = packaged SmolLM2-135M.
    # n_sens validation sentences for the template x order grid, n_test test sentences for the
    # table; lora_steps x lora_batch SFT examples; qlora only where CUDA and bitsandbytes exist.
    # cpu and smoke: fp32, which every CPU multiplies fast. bf16 is faster only on CPUs with
    # AVX512-BF16 or AMX (a forward pass 2.7x faster at stop 20) and 4-80x slower on the
    # AVX2-only EPYCs measured (runtime.bf16_slowdown), so a laptop or Binder profile cannot
    # count on it. cpu LoRA: batch 4 with activation checkpointing (fp32 on 2 AVX2 cores: 3.0 s
    # and 1.49 GB per step, glibc's default allocator; without checkpointing 1.9 GB even with
    # the lean allocator), no LoRA dropout (torch's CPU dropout took 13% of a step; one epoch of
    # a few hundred examples does not overfit). n_test 500 of the 852 test sentences keeps the
    # run under 15 min on such a CPU (each LLM setting scores about 7 sentences/s there). The
    # rehearsal keeps the gpu row's bf16.
    "16": {
        "smoke": dict(dataset="sst2", model="all-MiniLM-L6-v2", n_train=128, n_eval=64,
                      max_length=32, batch_size=16, llm=None, llm_dtype="float32",
                      shots=(0, 2), n_orders=2, n_sens=6, n_test=16, score_batch=8,
                      lora_r=8, lora_alpha=16, lora_steps=2, lora_batch=4, lora_lr=1e-3,
                      lora_dropout=0.0, checkpointing=True, qlora=False),
        "cpu": dict(dataset="sst2", model="all-MiniLM-L6-v2", n_train=2000, n_eval=None,
                    max_length=64, batch_size=32, llm=None, llm_dtype="float32",
                    shots=(0, 2, 8), n_orders=3, n_sens=48, n_test=500, score_batch=16,
                    lora_r=8, lora_alpha=16, lora_steps=100, lora_batch=4, lora_lr=1e-3,
                    lora_dropout=0.0, checkpointing=True, qlora=False),
        "gpu": dict(dataset="sst2", model="distilbert-base-uncased", n_train=None, n_eval=None,
                    max_length=128, batch_size=32, llm="HuggingFaceTB/SmolLM2-1.7B-Instruct",
                    llm_dtype="bfloat16", shots=(0, 2, 8), n_orders=3, n_sens=200,
                    n_test=None, score_batch=64, lora_r=16, lora_alpha=32, lora_steps=400,
                    lora_batch=16, lora_lr=2e-4, lora_dropout=0.05, checkpointing=False,
                    qlora=True),
    },
    # 17: DPO of an LLM towards positive continuations; the reward model is 06's classifier
    # (dataset .. batch_size: its quick fine-tune when 06 has not run).
    "17": {
        "smoke": dict(dataset="sst2", model="all-MiniLM-L6-v2", n_train=128, n_eval=64,
                      max_length=32, batch_size=16, llm=None, n_words=8, n_pair_openings=8,
                      samples_per_opening=2, n_eval_openings=8, max_new_tokens=8,
                      sample_batch=16, dpo_steps=2, batch_pairs=2, beta=0.1, lr=3e-4,
                      lora_r=8, activation_checkpointing=True, n_boot=100),
        "cpu": dict(dataset="sst2", model="all-MiniLM-L6-v2", n_train=2000, n_eval=None,
                    max_length=64, batch_size=32, llm=None, n_words=8, n_pair_openings=80,
                    samples_per_opening=4, n_eval_openings=160, max_new_tokens=20,
                    sample_batch=16, dpo_steps=50, batch_pairs=4, beta=0.1, lr=4e-4,
                    lora_r=8, activation_checkpointing=True, n_boot=1000),
        "gpu": dict(dataset="sst2", model="distilbert-base-uncased", n_train=None, n_eval=None,
                    max_length=128, batch_size=32, llm="HuggingFaceTB/SmolLM2-360M-Instruct",
                    n_words=8, n_pair_openings=1024, samples_per_opening=8,
                    n_eval_openings=500, max_new_tokens=32, sample_batch=128, dpo_steps=400,
                    batch_pairs=16, beta=0.1, lr=2e-4, lora_r=16, activation_checkpointing=False,
                    n_boot=1000),
    },
}


# The notebooks that train: `lab.setup` turns on `runtime.return_freed_memory` for them, which
# kept 07 (2.8 GB before) and 08 (2.4 GB) under Binder's 2 GB. The notebooks that only measure
# or serve (09, 11-13) keep glibc's default allocator, which is faster for inference. So does
# 16: its LoRA steps on the 135 M LLM took 6.3 s with fresh pages for every activation and
# 3.0 s without (fp32, batch 4, 2 AVX2 cores; 1.21 -> 1.49 GB), and its prompt scoring ran
# 25-35% faster; the notebook stays under 2 GB without it.
LEAN_MEMORY = ("05", "06", "07", "08", "10", "17")


# The rehearsal: BIGMODEL_LAB_REHEARSAL=1 (or BIGMODEL_LAB_PROFILE=rehearsal) runs each
# notebook's gpu-profile code on a CPU in about its smoke time. The row is the gpu row with
# one override: every size (an int, None meaning "all rows", a tuple of numbers such as a
# sweep) comes from the smoke row; everything else (model names, dtypes, variants, rates,
# switches) stays as in the gpu row, and training autocasts to bf16 on the CPU as it would
# on the GPU. Hub-only models are swapped for the offline stand-ins, with a printed note.
# Its runs are never recorded in the ledger, and its checkpoints are its own.
REHEARSAL = "rehearsal"
REHEARSAL_VAR = "BIGMODEL_LAB_REHEARSAL"
REHEARSAL_STAND_INS = {"distilbert-base-uncased": "all-MiniLM-L6-v2"}


def _is_size(value) -> bool:
    if isinstance(value, bool):
        return False
    if value is None or isinstance(value, int):
        return True
    return isinstance(value, (tuple, list)) and bool(value) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def rehearsal_settings(notebook_id: str, quiet: bool = False) -> dict:
    """The gpu row of `notebook_id` at smoke sizes, hub-only models mapped to stand-ins."""
    gpu, smoke = SETTINGS[notebook_id]["gpu"], SETTINGS[notebook_id]["smoke"]
    row = {k: smoke[k] if k in smoke and _is_size(v) else v for k, v in gpu.items()}
    for key, value in row.items():
        stand_in = REHEARSAL_STAND_INS.get(value) if isinstance(value, str) else None
        if stand_in is None and isinstance(value, str) and value.startswith("HuggingFaceTB/"):
            stand_in = smoke.get(key)  # None: the packaged SmolLM2-135M-Instruct
            note = stand_in or "the packaged SmolLM2-135M-Instruct"
        else:
            note = stand_in
        if stand_in is not None or note:
            row[key] = stand_in
            if not quiet:
                print(f"rehearsal: {key}={value!r} replaced by {note} (same code path, "
                      "offline and small)")
    return row


def settings_for(notebook_id: str, profile: str) -> dict:
    """The settings row of one notebook in one profile (validated)."""
    if profile == REHEARSAL and notebook_id in SETTINGS:
        return rehearsal_settings(notebook_id)
    if profile not in (*PROFILES, REHEARSAL):
        raise ValueError(
            f"Unknown profile {profile!r}. Valid profiles: {', '.join(PROFILES)}. "
            "Set BIGMODEL_LAB_PROFILE to one of them (or unset it to choose automatically)."
        )
    if notebook_id not in SETTINGS:
        raise ValueError(
            f"Unknown notebook id {notebook_id!r}. Known ids: {', '.join(sorted(SETTINGS))}."
        )
    return dict(SETTINGS[notebook_id][profile])
