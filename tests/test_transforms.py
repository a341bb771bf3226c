import numpy as np
import torch

from configs.config import AugmentConfig
from datamodules.transforms import (
    dataset_statistics,
    eval_augment,
    geometry_only,
    mean_fill,
    train_augment,
)
from lightning_modules.base import normalize


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (512, 384, 3), dtype=np.uint8)


def test_geometry_then_augment_give_cropped_uint8_tensors():
    aug = AugmentConfig()
    cropped = geometry_only(aug)(image=_image())["image"]
    assert cropped.shape == (304, 304, 3) and cropped.dtype == np.uint8
    for t in (train_augment(aug, [0.5, 0.4, 0.3]), eval_augment(), eval_augment(hflip=True)):
        out = t(image=cropped)["image"]
        assert isinstance(out, torch.Tensor)
        assert out.shape == (3, 304, 304) and out.dtype == torch.uint8


def test_eval_is_the_centre_crop_and_the_model_side_normalisation_is_exact():
    aug = AugmentConfig(resize_height=8, resize_width=6, crop=6)
    img = np.random.default_rng(1).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 0.125]
    out = eval_augment()(image=geometry_only(aug)(image=img)["image"])["image"]
    assert torch.equal(out.permute(1, 2, 0), torch.from_numpy(img[1:7]))
    normalised = normalize(out[None], torch.tensor(mean), torch.tensor(std))[0]
    expected = (img[1:7].astype(np.float32) / 255 - mean) / std
    assert np.allclose(normalised.permute(1, 2, 0).numpy(), expected, atol=1e-5)
    flipped = eval_augment(hflip=True)(image=geometry_only(aug)(image=img)["image"])["image"]
    assert torch.equal(flipped, out.flip(-1))


def test_train_augment_is_seeded():
    aug = AugmentConfig(resize_height=64, resize_width=48, crop=48)
    a, b = train_augment(aug, [0.5] * 3), train_augment(aug, [0.5] * 3)
    a.set_random_seed(7)
    b.set_random_seed(7)
    img = geometry_only(aug)(image=_image())["image"]
    assert all(torch.equal(a(image=img)["image"], b(image=img)["image"]) for _ in range(5))


def test_random_erasing_paints_the_mean_colour():
    aug = AugmentConfig(resize_height=64, resize_width=48, crop=48, geometric_p=0, color_p=0, random_erasing_p=1)
    mean = [0.2, 0.4, 0.6]
    t = train_augment(aug, mean)
    t.set_random_seed(0)
    out = t(image=np.full((48, 48, 3), 255, np.uint8))["image"].permute(1, 2, 0).reshape(-1, 3)
    painted = out[(out != 255).any(1)]
    assert len(painted) > 0
    assert (painted == torch.tensor(mean_fill(mean), dtype=torch.uint8)).all()
    assert mean_fill(mean) == (51, 102, 153)


def test_dataset_statistics():
    imgs = [np.full((4, 4, 3), 51, np.uint8), np.full((4, 4, 3), 153, np.uint8)]
    mean, std = dataset_statistics(imgs)
    assert np.allclose(mean, 0.4) and np.allclose(std, 0.2)
