"""Rejection sampling of the teacher's valid pairs."""

from __future__ import annotations

import itertools

import pytest

from soar_orl.formats import QAPair, Rejection
from soar_orl.teacher.sampling import RejectionSamplingError, rejection_sample


def scripted_sampler(outcomes: str):
    """A sampler over a repeating script: 'v' = valid, 'm' = missing tag, 'b' = no boxed answer.

    Outputs are (index, kind) so tests can see which ones were kept; `calls` records batch sizes.
    """
    counter = itertools.count()
    calls: list[int] = []

    def sample(k: int) -> list[tuple[int, str]]:
        calls.append(k)
        return [(i, outcomes[i % len(outcomes)]) for i in itertools.islice(counter, k)]

    return sample, calls


def parse(output: tuple[int, str]) -> QAPair | Rejection:
    index, kind = output
    return {"v": QAPair(f"q{index}", str(index)), "m": Rejection.MISSING_TAG, "b": Rejection.NO_BOXED_ANSWER}[
        kind
    ]


def test_keeps_the_first_target_valid_outputs_in_order() -> None:
    sample, calls = scripted_sampler("vmvb")  # half valid
    result = rejection_sample(sample, parse, target=6, max_attempts_factor=8)
    assert [index for index, _ in result.outputs] == [0, 2, 4, 6, 8, 10]
    assert result.pairs == [QAPair(f"q{i}", str(i)) for i in (0, 2, 4, 6, 8, 10)]
    # First batch asks for 6 and gets 3 valid; the second asks for 3 / 0.5 = 6 more.
    assert calls == [6, 6]
    assert result.stats.attempts == 12 and result.stats.valid == 6
    assert result.stats.rejections == {
        "missing_tag": 3,
        "empty_question": 0,
        "no_boxed_answer": 3,
        "over_long": 0,
        "unparseable_answer": 0,
    }
    assert result.stats.valid_rate == 0.5
    assert result.stats.metrics()["teacher/valid_rate"] == 0.5
    assert result.stats.metrics()["teacher/rejected/missing_tag"] == 3.0


def test_surplus_of_the_last_batch_is_dropped() -> None:
    sample, calls = scripted_sampler("vvvvvvvm")
    result = rejection_sample(sample, parse, target=8, max_attempts_factor=8)
    assert len(result.pairs) == 8
    assert result.stats.valid == 9  # one surplus valid output seen in the second batch
    assert calls == [8, 2]


def test_gives_up_at_the_cap_with_the_reasons() -> None:
    sample, calls = scripted_sampler("mmmbv" + "m" * 45)  # 1 valid in the first 20
    with pytest.raises(RejectionSamplingError) as error:
        rejection_sample(sample, parse, target=4, max_attempts_factor=5)
    assert calls == [4, 16]  # no valid output in the first batch: ask for the rest of the cap
    message = str(error.value)
    assert "needed 4 valid outputs" in message and "cap of 20 samples" in message
    assert "missing_tag=18" in message and "no_boxed_answer=1" in message and "1 valid of 20" in message
    assert error.value.stats.attempts == 20
    assert len(error.value.pairs) == 1  # the valid one it did see, for callers that can use fewer


def test_a_teacher_that_never_succeeds_uses_the_whole_budget_in_few_calls() -> None:
    sample, calls = scripted_sampler("m")
    with pytest.raises(RejectionSamplingError):
        rejection_sample(sample, parse, target=10, max_attempts_factor=8)
    assert calls == [10, 70]


def test_bad_inputs() -> None:
    sample, _ = scripted_sampler("v")
    with pytest.raises(ValueError):
        rejection_sample(sample, parse, target=0, max_attempts_factor=8)
    with pytest.raises(RuntimeError, match="no outputs"):
        rejection_sample(lambda k: [], parse, target=1, max_attempts_factor=8)
    with pytest.raises(ValueError):
        rejection_sample(sample, parse, target=1, max_attempts_factor=0)


# ---------------------------------------------------------------------------- eval/sampling.py layout

def test_tensor_parallel_grows_only_when_the_weights_do_not_fit_one_gpu() -> None:
    from soar_orl.eval.sampling import tensor_parallel_size

    gib = 2**30
    assert tensor_parallel_size(6 * gib, 80 * gib) == 1  # a 3B model in bf16 on an 80 GB GPU
    assert tensor_parallel_size(140 * gib, 80 * gib) == 4  # 70B in bf16: 35 GiB per GPU <= 40 GiB
    assert tensor_parallel_size(140 * gib, 0) == 1  # unknown memory (declared GPUs on CPU)


def test_engines_are_the_gpus_divided_by_the_tensor_parallel_size() -> None:
    from soar_orl.eval.sampling import data_parallel_engines

    assert data_parallel_engines(32, 1) == 32 and data_parallel_engines(32, 4) == 8 and data_parallel_engines(6, 4) == 1
    with pytest.raises(ValueError, match="cannot hold one engine"):
        data_parallel_engines(2, 4)
