import torch

from bigmodel_lab import exercises_llm as ex
from bigmodel_lab.decoder import kv_cache_bytes_per_token
from bigmodel_lab.generate import apply_repetition_penalty, apply_top_p


def test_reference_answers_pass():
    assert ex.check_rms_norm(lambda x, w, eps: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w)
    assert ex.check_top_p(apply_top_p)
    assert ex.check_kv_cache_bytes(kv_cache_bytes_per_token)
    assert ex.check_repetition_penalty(apply_repetition_penalty)


def test_common_mistakes_get_a_hint():
    layer_norm = ex.check_rms_norm(lambda x, w, eps: torch.nn.functional.layer_norm(x, (8,), w, eps=eps))
    assert not layer_norm and "mean" in layer_norm.message
    half = ex.check_kv_cache_bytes(lambda c, b: c.num_layers * c.kv_heads * c.head_size * b)
    assert not half and "values" in half.message
    queries = ex.check_kv_cache_bytes(lambda c, b: 2 * c.num_layers * c.num_heads * c.head_size * b)
    assert not queries and "query heads" in queries.message
    greedy = ex.check_top_p(lambda logits, p: logits.masked_fill(logits < logits.max(-1, keepdim=True).values, float("-inf")))
    assert not greedy and "too few" in greedy.message
    divide = ex.check_repetition_penalty(lambda lg, ids, r: lg.scatter(1, ids, lg.gather(1, ids) / r))
    assert not divide and "negative" in divide.message


def test_unfinished_exercises_do_not_raise():
    def todo(*args):
        raise NotImplementedError

    for check in (ex.check_rms_norm, ex.check_top_p, ex.check_kv_cache_bytes, ex.check_repetition_penalty):
        assert not check(todo, quiet=True)
    assert not ex.check_rms_norm(lambda *a: None, quiet=True)
