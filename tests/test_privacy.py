"""Redaction of emails, phone numbers and URLs."""

import pytest

from bigmodel_lab import privacy


@pytest.mark.parametrize("text, expected", [
    ("write to jane.doe+films@example.co.uk today", "write to [EMAIL] today"),
    ("see http://www.imdb.com/title/tt0363163/.", "see [URL]."),
    ("(more at www.example.org)", "(more at [URL])"),
    ("his page imdb.com/user/ur1234567 lists it", "his page [URL] lists it"),
    ("call 555-123-4567 or (555) 123 4567", "call [PHONE] or [PHONE]"),
    ("from abroad: +44 20 7946 0958", "from abroad: [PHONE]"),
])
def test_personal_data_is_replaced_by_placeholders(text, expected):
    assert privacy.redact(text) == expected


@pytest.mark.parametrize("text", [
    "rated 7/10 in 1999", "it made $12.000.000", "a 2-3 loss", "runtime 1:45:30",
    "the 555 best films", "Mr. Smith goes to Washington.",
    "I bought it on Amazon.com last week", "rated 8/10 on IMDb.com",
])
def test_ordinary_review_text_is_left_alone(text):
    assert privacy.redact(text) == text


def test_counts_before_and_after_redaction():
    texts = ["mail a@b.com and visit www.x.com", "no personal data here", "555-123-4567"]
    redacted, before, after = privacy.redact_all(texts)
    assert before == {"email": 1, "url": 1, "phone": 1, "texts_with_any": 2}
    assert after == {"email": 0, "url": 0, "phone": 0, "texts_with_any": 0}
    assert redacted[1] == texts[1]


def test_an_email_is_counted_once_not_also_as_a_url():
    assert privacy.count_pii(["a@imdb.com"])["url"] == 0


def test_non_text_input_says_what_to_fix():
    with pytest.raises(TypeError, match="pass str"):
        privacy.redact(123)


REVIEWS = [f"Review number {i}: a fine film with a weak ending." for i in range(40)]


def test_planted_emails_and_phones_are_all_caught_names_are_not():
    texts, truth = privacy.plant_pii(REVIEWS, n=30, seed=1)
    assert len(texts) == 30 and {k for k, _ in truth} == {"email", "phone", "name"}
    assert all(value in text for text, (_, value) in zip(texts, truth))
    scores = privacy.redaction_scores(texts, truth)
    assert scores["email"]["recall"] == 1.0 and scores["email"]["precision"] == 1.0
    assert scores["phone"]["recall"] == 1.0 and scores["phone"]["precision"] == 1.0
    assert scores["name"]["recall"] == 0.0  # regular expressions do not find names


def test_redaction_scores_count_a_placeholder_on_ordinary_text_as_a_false_positive():
    texts, truth = privacy.plant_pii(REVIEWS, n=3, seed=0)

    def overeager(text):  # also "redacts" the review number as a phone
        return privacy.redact(text).replace("Review number", "[PHONE]")

    scores = privacy.redaction_scores(texts, truth, overeager)
    assert scores["phone"]["placeholders"] == 3 + scores["phone"]["caught"]
    assert scores["phone"]["precision"] < 1.0


def test_plant_pii_says_when_there_are_too_few_clean_texts():
    with pytest.raises(ValueError, match="smaller n"):
        privacy.plant_pii(["mail a@b.com", "ok"], n=2)
