"""The walk world (tasks/walk.py): its hidden successor function, the noisy walks the base model
is pretrained on, the question and answer formats, and exact grading."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from soar_orl.formats import QAPair, Rejection, format_teacher_output
from soar_orl.tasks import build_task, builtin_world
from soar_orl.tasks.base import Graded, Outcome
from soar_orl.tasks.walk import LETTERS, WalkTask, WalkWorld, parse_question, walk_problems, walk_question
from soar_orl.tasks.walk_model import WalkPretrainSettings, base_examples, world_chars

WORLD = WalkWorld()
TASK = WalkTask(WORLD)


def test_the_successor_is_one_cycle_through_all_26_letters() -> None:
    step, letter, seen = WORLD.successor(), "a", []
    for _ in LETTERS:
        seen.append(letter)
        letter = step[letter]
    assert letter == "a" and sorted(seen) == list(LETTERS)


def test_each_noisy_letter_has_two_wrong_successors() -> None:
    step, noise = WORLD.successor(), WORLD.noise()
    assert len(noise) == WORLD.noisy_letters
    for letter, wrong in noise.items():
        assert len(set(wrong)) == 2 and step[letter] not in wrong and letter not in wrong


def test_a_true_walk_follows_the_successor_and_includes_its_start() -> None:
    step = WORLD.successor()
    walk = WORLD.walk("g", 7)
    assert len(walk) == 8 and walk[0] == "g"
    assert all(step[a] == b for a, b in zip(walk, walk[1:]))


def test_pretraining_walks_step_right_from_noisy_letters_at_the_right_share_only() -> None:
    step, noise, rng = WORLD.successor(), WORLD.noise(), random.Random(0)
    outcomes = Counter()
    for _ in range(3000):
        walk = WORLD.walk(rng.choice(LETTERS), 6, rng)
        for here, there in zip(walk, walk[1:]):
            if here in noise:
                outcomes["right" if there == step[here] else "wrong"] += 1
                assert there == step[here] or there in noise[here]
            else:
                assert there == step[here]  # a clean letter always steps right
    share = outcomes["right"] / sum(outcomes.values())
    assert abs(share - WORLD.right_share) < 0.02


def test_noisy_crossings_count_the_steps_that_leave_a_noisy_letter() -> None:
    noise = WORLD.noise()
    for start in LETTERS:
        walk = WORLD.walk(start, 10)
        assert WORLD.noisy_crossings(start, 10) == sum(letter in noise for letter in walk[:-1])


def test_the_problem_pool_holds_every_start_of_every_length_with_its_true_walk() -> None:
    problems = walk_problems(WORLD, range(3, 6))
    assert len(problems) == 3 * 26 and len({p.id for p in problems}) == len(problems)
    for problem in problems:
        start, steps = parse_question(problem.problem)
        assert problem.answer == WORLD.walk(start, steps) and problem.metadata["steps"] == steps


@pytest.mark.parametrize(("text", "parsed"), [("g07", ("g", 7)), (" a16 ", ("a", 16)), ("g7", None), ("g00", None),
                                              ("G07", None), ("g07=", None), ("", None), ("gg07", None)])
def test_questions_parse_only_in_their_one_form(text: str, parsed) -> None:
    assert parse_question(text) == parsed


def test_the_reference_answer_is_the_true_walk_of_any_well_formed_question() -> None:
    assert TASK.reference_answer(walk_question("q", 3)) == WORLD.walk("q", 3)
    assert TASK.reference_answer("q40") == WORLD.walk("q", 40)  # longer than any pretraining walk
    assert TASK.reference_answer("what is 2+2") is None


def test_grading_is_exact_on_the_last_box() -> None:
    right = WORLD.walk("g", 4)
    assert TASK.grade(f"\\boxed{{{right}}}", right) == Graded(Outcome.CORRECT, right)
    assert TASK.grade(f"\\boxed{{ {right} }}", right).outcome is Outcome.CORRECT
    assert TASK.grade(f"\\boxed{{{right[:-1]}}}", right).outcome is Outcome.WRONG  # one step short
    assert TASK.grade(f"\\boxed{{{right}}}\\boxed{{a}}", right).outcome is Outcome.WRONG
    assert TASK.grade(f"\\boxed{{{right.upper()}}}", right).outcome is Outcome.WRONG
    assert TASK.grade(right, right) == Graded(Outcome.NO_ANSWER, None)
    assert TASK.grade(f"\\boxed{{{right}", right).outcome is Outcome.NO_ANSWER  # never closed


def test_no_output_earns_more_than_an_honest_wrong_answer() -> None:
    # The verifier is exact: nothing is UNVERIFIED, so only the right walk beats WRONG.
    right = WORLD.walk("b", 3)
    hostile = ["\\boxed{}", "\\boxed{\\text{" + right + "}}", f"\\boxed{{{right}}} or \\boxed{{x}}", "\\boxed{" + "a" * 500 + "}"]
    assert {TASK.grade(text, right).outcome for text in hostile} <= {Outcome.WRONG, Outcome.NO_ANSWER}


def test_the_teacher_writes_walk_questions_with_walk_labels() -> None:
    pair = TASK.parse_teacher_output(format_teacher_output(QAPair("g02", "gxm")))
    assert pair == QAPair("g02", "gxm")
    assert TASK.parse_teacher_output(format_teacher_output(QAPair("g02", "GXM"))) is Rejection.UNPARSEABLE_ANSWER
    assert TASK.parse_teacher_output(format_teacher_output(QAPair("g02", "a" * 200))) is Rejection.OVER_LONG


def test_the_tokenizer_covers_every_character_of_the_pretraining_examples() -> None:
    chars, rng = set(world_chars(TASK)), random.Random(1)
    for teacher in (False, True):
        for prompt, response in base_examples(TASK, rng, 50, teacher):
            assert set(prompt + response) <= chars


def test_pretraining_examples_are_in_the_graded_formats() -> None:
    rng = random.Random(2)
    for prompt, response in base_examples(TASK, rng, 50, teacher=False):
        start, steps = parse_question(prompt.removesuffix("="))
        walk = response.removeprefix("\\boxed{").removesuffix("}")
        assert len(walk) == steps + 1 and walk[0] == start and TASK.answer_parses(walk)
        assert 1 <= steps <= WalkPretrainSettings().world.max_steps
    for prompt, response in base_examples(TASK, rng, 20, teacher=True):
        assert prompt == TASK.teacher_prompt() and isinstance(TASK.parse_teacher_output(response), QAPair)


def test_the_walk_task_and_its_builtin_names_are_known() -> None:
    assert build_task("walk").name == "walk"
    assert builtin_world("builtin:walk") == builtin_world("builtin:walk/hard_train") == "walk"


@pytest.mark.parametrize("bad", [{"noisy_letters": 0}, {"noisy_letters": 27}, {"right_share": 1.0},
                                 {"right_share": 0.0}, {"max_steps": 0}, {"max_steps": 100}])
def test_a_bad_world_is_refused(bad) -> None:
    with pytest.raises(ValueError):
        WalkWorld(**bad)


def test_the_probes_stepping_stones_are_the_shortest_walks_through_a_noisy_letter() -> None:
    from soar_orl.meta.walk_probe import shortest_walks

    stones = shortest_walks(WORLD, 16, noisy=True, exclude=set())
    assert [p.metadata["steps"] for p in stones] == [1] * WORLD.noisy_letters + [2] * (16 - WORLD.noisy_letters)
    assert all(p.metadata["noisy"] > 0 for p in stones)
    easy = shortest_walks(WORLD, 16, noisy=False, exclude={"b01"})
    assert all(p.metadata["noisy"] == 0 for p in easy) and "b01" not in {p.problem for p in easy}
    with pytest.raises(ValueError, match="fewer than"):
        shortest_walks(WORLD, 10_000, noisy=True, exclude=set())


def test_a_wrong_walk_leaves_the_true_one_at_its_first_noisy_letter_only() -> None:
    from soar_orl.meta.walk_probe import wrong_walk

    step, noise = WORLD.successor(), WORLD.noise()
    for start in LETTERS:
        true, wrong = WORLD.walk(start, 6), wrong_walk(WORLD, start, 6)
        first = next((i for i, letter in enumerate(true[:-1]) if letter in noise), None)
        if first is None:
            assert wrong == true
            continue
        assert wrong[:first + 1] == true[:first + 1] and wrong[first + 1] == noise[true[first]][0]
        assert all(step[a] == b for a, b in zip(wrong[first + 1:], wrong[first + 2:]))
        assert TASK.grade(f"\\boxed{{{wrong}}}", true).outcome is not Outcome.CORRECT


def test_the_pretrained_teachers_examples_are_true_walks_of_every_length() -> None:
    from soar_orl.tasks.walk_model import teacher_examples

    pairs = [TASK.parse_teacher_output(response) for _, response in teacher_examples(TASK, random.Random(3), 400)]
    assert all(pair.answer == TASK.reference_answer(pair.question) for pair in pairs)
    assert {parse_question(pair.question)[1] for pair in pairs} == set(range(1, WORLD.max_steps + 1))
    assert builtin_world("builtin:walk-teacher") == "walk"


def test_the_committed_models_hashes_are_unchanged_and_cover_the_world() -> None:
    # RESULTS.md's walk-world numbers were measured with artifacts/walk-base-64128a1e516416df and
    # artifacts/walk-teacher-f22d6cff3e51f155: a change of settings or prompts must show as a new name.
    from dataclasses import replace

    from soar_orl.cache import content_hash
    from soar_orl.tasks.walk_model import WalkTeacherSettings, settings_key, teacher_settings_key

    settings = WalkPretrainSettings()
    assert content_hash(settings_key(settings, TASK)) == "64128a1e516416df"
    assert content_hash(teacher_settings_key(WalkTeacherSettings(), TASK)) == "f22d6cff3e51f155"
    other = replace(settings, world=WalkWorld(right_share=0.2))
    assert content_hash(settings_key(other, WalkTask(other.world))) != "64128a1e516416df"
