"""Self-supervised objective: SSIM, appearance, smoothness, photometric loss on a synthetic shifted pair."""

import pytest
import torch

from stereo_depth_ros.losses import (PhotometricLossConfig, appearance_error, edge_aware_smoothness,
                                     photometric_error_map, self_supervised_stereo_loss, ssim)


def _textured_pair(shift: int, height: int = 32, width: int = 64, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    # Smooth random texture (blurred noise) so that bilinear sampling is meaningful.
    base = torch.rand(1, 3, height, width + shift, generator=generator)
    base = torch.nn.functional.avg_pool2d(base, 3, 1, 1)
    right = base[..., :width]
    left = base[..., :width].clone()
    left[..., shift:] = base[..., : width - shift]
    return left, right


def test_ssim_is_one_for_identical_images_and_lower_otherwise():
    x = torch.rand(1, 3, 16, 16)
    assert torch.allclose(ssim(x, x), torch.ones_like(x), atol=1e-4)
    assert ssim(x, torch.rand(1, 3, 16, 16)).mean() < 0.5
    with pytest.raises(ValueError):
        ssim(x, torch.rand(1, 3, 16, 17))


def test_appearance_error_is_zero_for_identical_and_matches_the_formula():
    x = torch.rand(2, 3, 8, 8)
    assert appearance_error(x, x).abs().max() < 1e-4
    y = torch.clamp(x + 0.1, 0, 1)
    expected = (0.85 * torch.clamp((1 - ssim(x, y)) / 2, 0, 1) + 0.15 * (x - y).abs()).mean(1, keepdim=True)
    torch.testing.assert_close(appearance_error(x, y), expected)


def test_photometric_loss_is_near_zero_for_the_true_disparity_and_larger_for_a_wrong_one():
    left, right = _textured_pair(shift=6)
    true_disparity = torch.full((1, 1, 32, 64), 6.0)
    error_true, in_view = photometric_error_map(left, right, true_disparity)
    error_wrong, _ = photometric_error_map(left, right, true_disparity + 3.0)
    interior = in_view.bool().clone()
    interior[..., :7] = False  # the 3x3 SSIM window of the first in-view column still sees out-of-view pixels
    assert error_true[interior].mean() < 1e-3
    assert error_wrong[interior].mean() > 20 * error_true[interior].mean()
    # Pixels whose source leaves the image are masked out.
    assert in_view[..., :6].sum() == 0


def test_stage_weights_and_out_of_view_mask_in_the_total_loss():
    left, right = _textured_pair(shift=4)
    good = torch.full((1, 1, 32, 64), 4.0)
    bad = torch.full((1, 1, 32, 64), 9.0)
    config = PhotometricLossConfig(smoothness_weight=0.0)
    losses = self_supervised_stereo_loss(left, right, [bad, good], config=config)
    assert losses.per_stage[1] < losses.per_stage[0]
    expected = 0.25 * losses.per_stage[0] + 0.5 * losses.per_stage[1]
    assert losses.total.item() == pytest.approx(expected, rel=1e-5)
    # A valid mask that excludes every pixel leaves nothing to count.
    empty = self_supervised_stereo_loss(left, right, [bad], valid=torch.zeros(1, 1, 32, 64), config=config)
    assert empty.total.item() == 0.0


def test_edge_aware_smoothness_is_zero_for_constant_disparity_and_weaker_at_image_edges():
    image = torch.zeros(1, 3, 8, 8)
    assert edge_aware_smoothness(torch.full((1, 1, 8, 8), 3.0), image) == 0
    step = torch.ones(1, 1, 8, 8)
    step[..., 4:] = 2.0
    flat_image_cost = edge_aware_smoothness(step, image)
    edge_image = torch.zeros(1, 3, 8, 8)
    edge_image[..., 4:] = 1.0
    assert edge_aware_smoothness(step, edge_image) < flat_image_cost


def test_left_right_consistency_term_is_zero_for_consistent_disparities():
    left, right = _textured_pair(shift=4)
    disparity = torch.full((1, 1, 32, 64), 4.0)
    config = PhotometricLossConfig(smoothness_weight=0.0, left_right_weight=1.0)
    consistent = self_supervised_stereo_loss(left, right, [disparity], config=config, right_stages=[disparity])
    inconsistent = self_supervised_stereo_loss(left, right, [disparity], config=config,
                                               right_stages=[disparity + 2.0])
    assert inconsistent.total.item() - consistent.total.item() == pytest.approx(0.25 * 2.0, rel=1e-3)


def test_loss_gradient_points_towards_the_true_disparity():
    left, right = _textured_pair(shift=5)
    disparity = torch.full((1, 1, 32, 64), 4.0, requires_grad=True)
    self_supervised_stereo_loss(left, right, [disparity],
                                config=PhotometricLossConfig(smoothness_weight=0.0)).total.backward()
    assert disparity.grad.sum() < 0  # increasing the disparity lowers the loss


def test_smoothness_does_not_reward_a_larger_mean_disparity():
    image = torch.zeros(1, 3, 8, 8)
    disparity = torch.rand(1, 1, 8, 8) + 5.0
    offset = torch.zeros((), requires_grad=True)
    edge_aware_smoothness(disparity + offset, image).backward()
    # Adding a constant leaves the gradients of d unchanged; the loss must not pull the disparity up (or down).
    assert abs(offset.grad.item()) < 1e-6


def test_per_stage_smoothness_weights_apply_to_their_own_stage():
    left, right = _textured_pair(shift=4)
    rough = torch.full((1, 1, 32, 64), 4.0)
    rough[..., ::2, :] = 5.0  # a disparity that the smoothness term penalises
    stages = [rough] * 4
    plain = self_supervised_stereo_loss(left, right, stages, config=PhotometricLossConfig(smoothness_weight=0.0))
    only_stage2 = self_supervised_stereo_loss(left, right, stages,
                                              config=PhotometricLossConfig(smoothness_weight=(0, 0, 0.5, 0)))
    added = [b - a for a, b in zip(plain.per_stage, only_stage2.per_stage)]
    assert added[0] == added[1] == added[3] == 0
    assert added[2] == pytest.approx(0.5 * edge_aware_smoothness(rough, left).item(), rel=1e-5)
    # One number is every stage's weight.
    same = self_supervised_stereo_loss(left, right, stages, config=PhotometricLossConfig(smoothness_weight=0.5))
    assert same.per_stage[0] == pytest.approx(only_stage2.per_stage[2], rel=1e-6)
    with pytest.raises(ValueError, match="one per stage"):
        PhotometricLossConfig(smoothness_weight=(0.1, 0.2))
    with pytest.raises(ValueError, match=">= 0"):
        PhotometricLossConfig(smoothness_weight=(0.1, -0.2, 0.1, 0.1))
