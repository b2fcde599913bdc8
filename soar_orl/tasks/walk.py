"""The built-in walk world: hard problems that are long walks of one step the student knows only
unreliably.

Why this world: SOAR needs stepping stones, problems whose practice moves the student on problems
it solves 0/k. In the arithmetic world none exist at the 1M-parameter scale: the model learns
each band of sums as its own procedure, so practice on one band leaves the others where they were
(RESULTS.md). Here a hard problem asks for nothing new. A hidden successor function maps each of
the 26 letters to the next letter of one 26-cycle (`WalkWorld.successor`); the question `g07`
asks for the walk of 7 steps from `g`, and the answer is the walk itself, start included:
`\\boxed{gxmbqrst}`. The base model (tasks/walk_model.py) is pretrained on walks of every length
up to `max_steps`, but its pretraining walks step right from `noisy_letters` of the letters only
`right_share` of the time (and to one of two fixed wrong letters otherwise, each more often than
the right one, so greedy decoding is wrong there too). A long walk crosses several noisy letters
and its errors compound: those are the hard problems, solved 0 times in 64 samples although no
length is new to the model. A short walk through a noisy letter is right about a third of the
time: enough for RLOO to see right and wrong answers, and with true labels it teaches exactly the
step the long walks miss. Whether the inner RL step finds that, and whether a teacher learns to
write such walks with right labels, is what a run measures (scripts/chain_probe.py showed the
transfer with supervised practice: RESULTS.md, "A walk world").

Formats (short on purpose: the model reads characters):
- question: start letter and two-digit step count, `g07`;
- student prompt: `g07=`; student answer: `\\boxed{gxmbqrst}` (the walk, start included);
- teacher: the shared instruction/parser machinery with a one-line template, so the teacher
  writes `<question>g02</question> <answer>\\boxed{gxm}</answer>`.

Grading compares the last box with the label exactly, after stripping spaces. Model output is
only ever matched against `[a-z]{1,MAX_WALK_CHARS}`, never evaluated.
"""

from __future__ import annotations

import functools
import random
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass

from soar_orl.formats import ParserParams, TeacherPromptParams, extract_last_boxed
from soar_orl.tasks.base import Graded, Outcome, Problem, Task

LETTERS = string.ascii_lowercase
MAX_STEPS_WRITTEN = 99
"""A question's step count has two digits."""
MAX_WALK_CHARS = MAX_STEPS_WRITTEN + 1
WALK_TEMPLATE = "Write a new {subject} problem and its answer:\n{format}"
_QUESTION = re.compile(r"([a-z])([0-9]{2})")
_WALK = re.compile(rf"[a-z]{{1,{MAX_WALK_CHARS}}}")


@dataclass(frozen=True)
class WalkWorld:
    """The hidden successor function and the base model's unreliable knowledge of it (all of it
    enters the base model's cache hash)."""

    seed: int = 0
    """Draws the 26-cycle, the noisy letters and their wrong successors."""
    noisy_letters: int = 8
    """Letters whose successor the pretraining walks mostly get wrong."""
    right_share: float = 0.3
    """How often a pretraining walk steps right from a noisy letter; the rest is split evenly
    between its two wrong successors, each then more likely than the right one."""
    max_steps: int = 16
    """The longest walk in pretraining and in the problem pool: no length is new to the model."""

    def __post_init__(self) -> None:
        if not 0 < self.noisy_letters <= len(LETTERS):
            raise ValueError(f"noisy_letters must lie in [1, {len(LETTERS)}], got {self.noisy_letters}")
        if not 0 < self.right_share < 1:
            raise ValueError(f"right_share must lie in (0, 1), got {self.right_share}")
        if not 1 <= self.max_steps <= MAX_STEPS_WRITTEN:
            raise ValueError(f"max_steps must lie in [1, {MAX_STEPS_WRITTEN}], got {self.max_steps}")

    def successor(self) -> dict[str, str]:
        return _successor(self.seed)

    def noise(self) -> dict[str, tuple[str, str]]:
        """The two wrong successors of each noisy letter."""
        return _noise(self.seed, self.noisy_letters)

    def walk(self, start: str, steps: int, rng: random.Random | None = None) -> str:
        """The letters of a walk, start included: the true one, or with `rng` one as the
        pretraining data writes it (each step from a noisy letter right `right_share` of the time)."""
        step, wrong = self.successor(), self.noise()
        letters = [start]
        for _ in range(steps):
            here = letters[-1]
            if rng is not None and here in wrong and rng.random() >= self.right_share:
                letters.append(rng.choice(wrong[here]))
            else:
                letters.append(step[here])
        return "".join(letters)

    def noisy_crossings(self, start: str, steps: int) -> int:
        """How many steps of the true walk leave a noisy letter: the walk's difficulty."""
        noisy = self.noise()
        return sum(letter in noisy for letter in self.walk(start, steps)[:-1])


# The seed strings are those of the exploration that found this world (scripts/chain_probe.py), so
# its measurements and the product's are of one world.
@functools.cache
def _successor(seed: int) -> dict[str, str]:
    cycle = list(LETTERS)
    random.Random(f"chain-world:{seed}").shuffle(cycle)
    return dict(zip(cycle, cycle[1:] + cycle[:1], strict=True))


@functools.cache
def _noise(seed: int, noisy_letters: int) -> dict[str, tuple[str, str]]:
    rng, step = random.Random(f"chain-noise:{seed}"), _successor(seed)
    return {letter: tuple(rng.sample([x for x in LETTERS if x not in (letter, step[letter])], 2))
            for letter in rng.sample(LETTERS, noisy_letters)}


def walk_question(start: str, steps: int) -> str:
    return f"{start}{steps:02d}"


def parse_question(text: str) -> tuple[str, int] | None:
    """(start, steps) of a well-formed question such as `g07` (steps >= 1), else None."""
    match = _QUESTION.fullmatch(text.strip())
    if match is None or int(match.group(2)) < 1:
        return None
    return match.group(1), int(match.group(2))


def walk_problems(world: WalkWorld, lengths: Iterable[int]) -> list[Problem]:
    """Every start letter's walk of each length: the world's whole problem pool for those lengths.
    Ids are the questions; metadata holds the length and the noisy letters crossed."""
    return [
        Problem(walk_question(start, steps), walk_question(start, steps), world.walk(start, steps),
                {"steps": steps, "noisy": world.noisy_crossings(start, steps)})
        for steps in lengths for start in LETTERS
    ]


class WalkTask(Task):
    """Walks graded by exact comparison of the last box with the label."""

    name = "walk"

    def __init__(self, world: WalkWorld | None = None, prompt: TeacherPromptParams | None = None,
                 parser: ParserParams | None = None) -> None:
        self.world = world or WalkWorld()
        default_prompt = TeacherPromptParams(topics=("letters",), subject="walk", template=WALK_TEMPLATE)
        default_parser = ParserParams(max_question_chars=8, max_answer_chars=MAX_WALK_CHARS)
        super().__init__(prompt or default_prompt, parser or default_parser)

    def answer_parses(self, answer: str) -> bool:
        return _WALK.fullmatch(answer.strip()) is not None

    def student_prompt(self, question: str) -> str:
        return f"{question}="

    def reference_answer(self, question: str) -> str | None:
        parsed = parse_question(question)
        return None if parsed is None else self.world.walk(*parsed)

    def question_kind(self, question: str) -> str | None:
        parsed = parse_question(question)
        return None if parsed is None else f"{self.world.noisy_crossings(*parsed)} noisy"

    def grade(self, response: str, label: str) -> Graded:
        """CORRECT when the last box is the label's walk, WRONG otherwise, NO_ANSWER without a
        closed box. The verifier is exact, so nothing is left UNVERIFIED."""
        answer = extract_last_boxed(response)
        if answer is None:
            return Graded(Outcome.NO_ANSWER, None)
        right = self.answer_parses(answer) and answer.strip() == label.strip()
        return Graded(Outcome.CORRECT if right else Outcome.WRONG, answer)
