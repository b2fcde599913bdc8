"""The arithmetic world's pretrained teacher without training it: settings, cache keys, examples,
the per-band count of what a teacher writes, and `builtin:arith-teacher` resolving to the
committed folder."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from soar_orl.cache import content_hash
from soar_orl.eval.arith_hard import band_counts
from soar_orl.formats import QAPair
from soar_orl.tasks.arith import ArithTask
from soar_orl.tasks.arith_model import (
    EASY_BANDS,
    EDGE_BANDS,
    PretrainSettings,
    TeacherSettings,
    settings_key,
    teacher_examples,
    teacher_settings_key,
)

TASK = ArithTask()


def test_the_base_models_hash_is_unchanged() -> None:
    # Every committed split and RESULTS.md number depends on artifacts/arith-base-367a9ee687b82241.
    assert content_hash(settings_key(PretrainSettings(), TASK)) == "367a9ee687b82241"


def test_teacher_settings_validation() -> None:
    with pytest.raises(ValueError, match="bands"):
        TeacherSettings(bands=())
    for bad in ({"steps": 0}, {"batch_size": 0}, {"lr": 0.0}):
        with pytest.raises(ValueError, match="positive"):
            TeacherSettings(**bad)


def test_teacher_key_covers_its_settings_and_the_base_models() -> None:
    key = teacher_settings_key(TeacherSettings(), TASK)
    assert teacher_settings_key(TeacherSettings(), TASK) == key
    assert teacher_settings_key(TeacherSettings(steps=7), TASK) != key
    assert teacher_settings_key(TeacherSettings(bands=EDGE_BANDS), TASK) != key
    assert teacher_settings_key(TeacherSettings(base=PretrainSettings(steps=7)), TASK) != key


def test_teacher_examples_are_right_teacher_pairs_of_every_band_uniformly() -> None:
    settings = TeacherSettings()
    examples = teacher_examples(TASK, settings, random.Random(0), 1800)
    assert teacher_examples(TASK, settings, random.Random(0), 1800) == examples  # seeded
    bands: Counter[str] = Counter()
    for prompt, response in examples:
        assert prompt == TASK.teacher_prompt()
        pair = TASK.parse_teacher_output(response)
        assert isinstance(pair, QAPair) and TASK.reference_answer(pair.question) == pair.answer
        bands[",".join(str(len(o)) for o in pair.question.split("+"))] += 1
    assert set(bands) == {band.name for band in EASY_BANDS + EDGE_BANDS}
    assert min(bands.values()) > 1800 / 9 * 0.75  # uniform over the 9 bands: 200 expected each


def test_band_counts_counts_written_and_right_pairs_per_band() -> None:
    pairs = [QAPair("12+345", "357"), QAPair("12+345", "356"), QAPair("1+2", "3"), QAPair("two", "2"),
             QAPair("100+20+3", "123"), QAPair("9+9", "018")]
    assert band_counts(TASK, pairs) == {"1,1": (2, 2), "2,3": (2, 1), "3,2,1": (1, 1)}

