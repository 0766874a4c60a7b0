import numpy as np
import pytest
from transformers import BertConfig, BertModel

from bigmodel_lab.checks import check_count, check_max_length, check_name, max_positions


def test_counts_accept_ints_numpy_ints_and_none():
    assert check_count("n", 3) == 3 and check_count("n", np.int64(4)) == 4
    assert check_count("n", None) is None


@pytest.mark.parametrize("value, fix", [("100", "n=100"), (2.5, "n=100"), (True, "n=100")])
def test_a_count_of_another_type_says_what_to_pass(value, fix):
    with pytest.raises(TypeError, match=fix):
        check_count("n", value)


def test_a_list_where_one_name_goes_says_load_one_at_a_time():
    with pytest.raises(TypeError, match="Load one at a time"):
        check_name("name", ["a", "b"], ("a",))


def test_max_length_is_checked_against_the_position_table():
    model = BertModel(BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=16, max_position_embeddings=32))
    assert max_positions(model) == 32 and check_max_length(model, 32) == 32
    with pytest.raises(ValueError, match="max_length=32 or less"):
        check_max_length(model, 33)
