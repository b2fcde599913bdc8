"""The probe's pure pieces (meta/probe.py) and the arithmetic probe datasets' (meta/arith_probe.py)."""

import json
import math
import random

import pytest

from soar_orl.formats import QAPair
from soar_orl.meta.arith_probe import fresh_sums, select_stones, wrong_label
from soar_orl.meta.probe import (
    PlannedJob,
    ProbeDataset,
    dataset_stats,
    job_key,
    load_dataset,
    pass_at_k_table,
    plan_jobs,
    q_r_draws,
    read_finished,
    reward_stats,
    unique_names,
    write_report,
)
from soar_orl.tasks.arith import ArithTask, Band, parse_sum
from soar_orl.tasks.base import Problem


def write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_load_dataset_reads_question_or_problem_and_names_bad_lines(tmp_path):
    data = load_dataset(write(tmp_path / "stones.jsonl", [{"question": "1+2", "answer": 3}, {"problem": " 4+5 ", "answer": "9"}]))
    assert data.name == "stones" and data.pairs == (QAPair("1+2", "3"), QAPair("4+5", "9"))
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        load_dataset(write(tmp_path / "bad.jsonl", [{"question": "1+2", "answer": 3}, {"q": "x", "answer": 1}]))
    with pytest.raises(ValueError, match="no rows"):
        load_dataset(write(tmp_path / "empty.jsonl", []))


def test_load_dataset_reads_a_builtin_set_named_after_its_split():
    data = load_dataset("builtin:arith/edge_train")  # the committed artifact: no engine runs
    assert data.name == "edge_train" and len(data.pairs) == 174
    assert all(parse_sum(pair.question) for pair in data.pairs)
    with pytest.raises(ValueError, match="unknown built-in problem set"):
        load_dataset("builtin:arith/nope")


def test_dataset_names_must_differ():
    pairs = (QAPair("1+1", "2"),)
    with pytest.raises(ValueError, match="a"):
        unique_names([ProbeDataset("a", "x/a.jsonl", pairs), ProbeDataset("a", "y/a.jsonl", pairs)])


def test_q_r_draws_are_seeded_independent_samples_of_the_split():
    hard = [QAPair(f"{i}+1", str(i + 1)) for i in range(50)]
    draws = q_r_draws(hard, 20, 3, seed=0)
    assert draws == q_r_draws(hard, 20, 3, seed=0)
    assert len({frozenset(d) for d in draws}) == 3 and all(len(set(d)) == 20 and set(d) <= set(hard) for d in draws)
    assert q_r_draws(hard, 20, 3, seed=1) != draws
    with pytest.raises(ValueError, match="q_r_size"):
        q_r_draws(hard, 51, 1, seed=0)


def test_plan_has_one_baseline_per_draw_and_distinct_seeds():
    jobs = plan_jobs(["a", "b"], draws=2, runs=3, steps=8, seed=0)
    assert len(jobs) == 2 * (1 + 2 * 3) and len({j.job_id for j in jobs}) == len(jobs)
    baselines = [j for j in jobs if j.dataset is None]
    assert [(j.draw, j.steps) for j in baselines] == [(0, 0), (1, 0)]
    trained = [j for j in jobs if j.dataset is not None]
    assert all(j.steps == 8 for j in trained) and len({j.seed for j in trained}) == len(trained)


def test_job_key_covers_what_decides_a_job():
    job, pairs, q_r = PlannedJob("d0-a-r0", "a", 0, 0, 8, 5), (QAPair("1+1", "2"),), (QAPair("9+9", "18"),)
    key = job_key(job, pairs, q_r, {"lr": 1e-3})
    assert key == job_key(job, pairs, q_r, {"lr": 1e-3})
    assert len({key, job_key(job, pairs, q_r, {"lr": 3e-4}), job_key(job, (QAPair("1+1", "3"),), q_r, {"lr": 1e-3}),
                job_key(PlannedJob("d0-a-r0", "a", 0, 0, 8, 6), pairs, q_r, {"lr": 1e-3})}) == 4
    # A baseline does not train, so its dataset does not matter.
    baseline = PlannedJob("d0-baseline", None, 0, 0, 0, 0)
    assert job_key(baseline, pairs, q_r, {}) == job_key(baseline, (QAPair("2+2", "4"),), q_r, {})


def test_reward_stats():
    stats = reward_stats([0.10, 0.05, 0.20, 0.05], [0.05, 0.05, 0.10, 0.10])
    rewards = [0.05, 0.0, 0.10, -0.05]
    assert stats.jobs == 4 and math.isclose(stats.mean, 0.025)
    std = math.sqrt(sum((r - 0.025) ** 2 for r in rewards) / 3)
    assert math.isclose(stats.std, std) and math.isclose(stats.sem, std / 2)
    assert math.isclose(stats.trained_accuracy, 0.1) and math.isclose(stats.baseline_accuracy, 0.075)
    assert not stats.clearly_above(0.01)
    assert reward_stats([0.5, 0.52, 0.5], [0.1, 0.1, 0.1]).clearly_above(0.01)
    single = reward_stats([0.5], [0.0])
    assert single.std is None and single.sem is None and not single.clearly_above(0.01)
    with pytest.raises(ValueError):
        reward_stats([0.1], [0.1, 0.2])


def test_dataset_stats_subtracts_each_jobs_own_draw_baseline():
    rows = [
        {"dataset": None, "draw": 0, "accuracy": 0.1}, {"dataset": None, "draw": 1, "accuracy": 0.3},
        {"dataset": "a", "draw": 0, "accuracy": 0.2}, {"dataset": "a", "draw": 1, "accuracy": 0.3},
    ]
    stats = dataset_stats(rows, ["a"])["a"]
    assert math.isclose(stats.mean, 0.05) and math.isclose(stats.baseline_accuracy, 0.2)


def test_report_files(tmp_path):
    pairs = (QAPair("1+1", "2"),)
    datasets = [ProbeDataset("a", "a.jsonl", pairs), ProbeDataset("b", "b.jsonl", pairs)]
    rows = [{"dataset": None, "draw": 0, "accuracy": 0.25, "seconds": 1.0}]
    rows += [{"dataset": name, "draw": 0, "run": j, "accuracy": acc, "seconds": 2.0}
             for name, accs in (("a", (0.5, 0.5)), ("b", (0.25, 0.0))) for j, acc in enumerate(accs)]
    setting = {"student": {"inner_steps": 8, "batch_prompts": 8, "group_size": 4, "lr": 1e-3}, "q_r_size": 4}
    markdown = write_report(tmp_path, "bash run.sh probe x", setting, datasets, rows, 1, 0.01, {"a": 0.0, "b": 1.0},
                            3.0, (1, 8))
    assert "| a | 1 | 2 | 0.5000 | 0.2500 | +0.2500 | 0.0000 | 0.0000 | yes | 0.0 |" in markdown
    assert "| b | 1 | 2 | 0.1250 | 0.2500 | -0.1250 |" in markdown
    saved = json.loads((tmp_path / "probe.json").read_text())
    assert saved["datasets"]["a"]["clearly_above_tau"] and not saved["datasets"]["b"]["clearly_above_tau"]
    assert (tmp_path / "probe.md").read_text() == markdown
    assert "reward = greedy Q_R accuracy (one problem = 0.2500)" in markdown
    setting["student"]["q_r_samples"] = 8
    sampled = write_report(tmp_path, "x", setting, datasets, rows, 1, 0.01, {"a": 0.0, "b": 1.0}, 3.0, (1, 8))
    assert "reward = mean success of 8 samples per Q_R problem (one sample = 0.03125)" in sampled
    assert "pass@k on Q_R" not in sampled  # rows without per-problem counts
    counted = write_report(tmp_path, "x", setting, datasets, [row | {"correct_Q": [2]} for row in rows], 1, 0.01,
                           {"a": 0.0, "b": 1.0}, 3.0, (1, 8))
    assert "pass@k on Q_R" in counted and "| b | 2 | 25.00 ± 0.00 | 100.00 ± 0.00 |" in counted


def test_pass_at_k_table_over_jobs_from_per_problem_counts():
    datasets = [ProbeDataset("a", "a.jsonl", (QAPair("1+1", "2"),))]
    rows = [{"dataset": None, "draw": 0, "correct_Q": [0, 4]},
            {"dataset": "a", "draw": 0, "correct_Q": [4, 4]}, {"dataset": "a", "draw": 0, "correct_Q": [0, 0]}]
    table = pass_at_k_table(datasets, rows, 4, (1, 8))
    assert table.splitlines()[0] == "| students | jobs | pass@1 | pass@4 |"  # pass@8 needs 8 samples
    assert pass_at_k_table(datasets, rows, 4, (2,)).splitlines()[0] == "| students | jobs | pass@2 | pass@4 |"
    assert "| baseline | 1 | 50.00 ± 0.00 | 50.00 ± 0.00 |" in table
    assert "| a | 2 | 50.00 ± 70.71 | 50.00 ± 70.71 |" in table  # one job all right, one all wrong
    rows[0]["correct_Q"] = [1, 0]
    assert "| baseline | 1 | 12.50 ± 0.00 | 50.00 ± 0.00 |" in pass_at_k_table(datasets, rows, 4, (1,))
    assert pass_at_k_table(datasets, rows, 1, (1,)) is None  # greedy or one sample: no pass@k
    assert pass_at_k_table(datasets, [*rows[:2], {"dataset": "a", "draw": 0}], 4, (1,)) is None  # an old row


def test_read_finished_by_key(tmp_path):
    assert read_finished(tmp_path) == {}
    write(tmp_path / "jobs.jsonl", [{"key": "k1", "accuracy": 0.5}, {"key": "k2", "accuracy": 0.0}])
    assert read_finished(tmp_path)["k2"]["accuracy"] == 0.0


# ---------------------------------------------------------------------------- arithmetic datasets


def test_select_stones_takes_problems_inside_the_range_round_robin_then_the_best_below():
    def problem(i, band, text):
        return Problem(f"p{i}", text, "0", {"band": band})

    problems = [problem(0, "3,1", "100+1"), problem(1, "3,1", "100+2"), problem(2, "3,1", "100+3"),
                problem(3, "1,3", "1+100"), problem(4, "3,2", "100+10"), problem(5, "3,2", "100+11"),
                problem(6, "3,2", "100+12")]
    correct = {"p0": 4, "p1": 8, "p2": 2, "p3": 3, "p4": 0, "p5": 1, "p6": 16}  # of 16 samples
    chosen = select_stones(problems, correct, 16, 3, exclude={"100+2"}, low=0.1, high=0.6)
    assert [p.id for p in chosen] == ["p0", "p3", "p2"]  # p1 excluded, p6 too easy, round-robin over bands
    more = select_stones(problems, correct, 16, 5, exclude=(), low=0.1, high=0.6)
    assert [p.id for p in more] == ["p0", "p3", "p1", "p2", "p5"]  # p5 (1/16) is the best below the range
    with pytest.raises(ValueError, match="stepping stones"):
        select_stones(problems, correct, 16, 7, exclude=(), low=0.1, high=0.6)


def test_fresh_sums_are_distinct_round_robin_and_avoid_excluded():
    bands = [Band((3, 1)), Band((1, 3))]
    first = fresh_sums(bands, 6, seed=8, exclude=())
    excluded = {first[0].question, first[3].question}
    again = fresh_sums(bands, 6, seed=8, exclude=excluded)
    assert len({p.question for p in again}) == 6 and not excluded & {p.question for p in again}
    shapes = [tuple(map(len, parse_sum(p.question))) for p in first]
    assert shapes == [(3, 1), (1, 3)] * 3
    task = ArithTask()
    assert all(task.reference_answer(p.question) == p.answer for p in first)
    with pytest.raises(ValueError, match="fewer"):
        fresh_sums([Band((1, 1))], 101, seed=8, exclude=())  # only 100 distinct 1+1-digit sums


def test_wrong_label_is_a_near_miss_never_the_truth():
    rng = random.Random(0)
    for answer in ["0", "7", "10", "465", "1098"]:
        for _ in range(50):
            wrong = wrong_label(answer, rng)
            assert wrong != answer and len(wrong) == len(answer) and wrong.isdigit()
            assert sum(a != b for a, b in zip(wrong, answer)) == 1
            assert len(wrong) == 1 or wrong[0] != "0"
