"""Rollout packing into OpenRLHF's layout, and OpenRLHF flag building."""

import torch

from soar_orl.openrlhf_args import flags_to_argv
from soar_orl.student.rollout import pack_rollouts


def test_prompts_left_padded_responses_right_padded():
    batch = pack_rollouts([[5, 6], [7]], [[8], [9, 10, 11]], [1.0, 0.0], pad_id=0)
    assert batch.sequences_BT.tolist() == [[5, 6, 8, 0, 0], [0, 7, 9, 10, 11]]
    assert batch.attention_mask_BT.tolist() == [[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]]
    assert batch.action_mask_BA.tolist() == [[True, False, False], [True, True, True]]
    assert batch.rewards_B.tolist() == [1.0, 0.0]
    # OpenRLHF's Actor scores the last A positions: exactly the response columns.
    assert torch.equal(batch.sequences_BT[:, -batch.num_actions :][batch.action_mask_BA], torch.tensor([8, 9, 10, 11]))


def test_empty_response_contributes_no_action():
    batch = pack_rollouts([[1]], [[]], [0.5], pad_id=0)
    assert batch.num_actions == 1 and not batch.action_mask_BA.any()


def test_flags_to_argv():
    argv = flags_to_argv({"ds.zero_stage": 2, "train.colocate_all": True, "x.off": False, "y.none": None, "z.list": [1, 2]})
    assert argv == ["--ds.zero_stage", "2", "--train.colocate_all", "--z.list", "1", "2"]


def test_batch_moves_to_the_trainers_device_as_one():
    from soar_orl.student.rollout import require_device

    batch = pack_rollouts([[5, 6], [7]], [[8], [9, 10]], [1.0, 0.0], pad_id=0)
    moved = batch.to("meta")  # a device other than the CPU, on any machine
    tensors = dict(sequences=moved.sequences_BT, attention=moved.attention_mask_BT,
                   actions=moved.action_mask_BA, rewards=moved.rewards_B)
    require_device("meta", **tensors)
    assert {t.dtype for t in tensors.values()} == {torch.long, torch.bool, torch.float32}


def test_require_device_names_every_tensor_on_another_device():
    import pytest

    from soar_orl.student.rollout import require_device

    on_cpu, elsewhere = torch.zeros(2), torch.zeros(2, device="meta")
    require_device("cpu", kl=on_cpu, rewards=on_cpu)
    with pytest.raises(RuntimeError, match=r"not on the trainer's device cpu: kl on meta, rewards on meta"):
        require_device("cpu", kl=elsewhere, batch=on_cpu, rewards=elsewhere)
    with pytest.raises(RuntimeError, match="rewards on cpu"):
        require_device("meta", kl=elsewhere, rewards=on_cpu)


def test_require_device_compares_indices_only_when_both_name_one():
    from soar_orl.student.rollout import _same_device

    assert _same_device(torch.device("cuda", 0), torch.device("cuda"))
    assert _same_device(torch.device("cuda", 1), torch.device("cuda", 1))
    assert not _same_device(torch.device("cuda", 1), torch.device("cuda", 0))
    assert not _same_device(torch.device("cpu"), torch.device("cuda", 0))
