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
