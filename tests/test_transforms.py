import numpy as np
import torch

from configs.config import AugmentConfig
from datamodules.transforms import dataset_statistics, eval_transforms, train_transforms


def _image(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (512, 384, 3), dtype=np.uint8)


def test_train_and_eval_give_cropped_float_tensors():
    aug = AugmentConfig()
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.2, 0.2]
    for t in (train_transforms(aug, mean, std), eval_transforms(aug, mean, std)):
        out = t(image=_image())["image"]
        assert isinstance(out, torch.Tensor)
        assert out.shape == (3, 304, 304) and out.dtype == torch.float32


def test_eval_normalises_exactly_with_the_given_statistics_and_flips():
    aug = AugmentConfig(resize_height=8, resize_width=6, crop=6)
    img = np.random.default_rng(1).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 0.125]
    out = eval_transforms(aug, mean, std)(image=img)["image"]
    expected = (img[1:7].astype(np.float32) / 255 - mean) / std
    assert np.allclose(out.permute(1, 2, 0).numpy(), expected, atol=1e-5)
    flipped = eval_transforms(aug, mean, std, hflip=True)(image=img)["image"]
    assert torch.allclose(flipped, out.flip(-1))


def test_train_transforms_are_seeded():
    aug = AugmentConfig(resize_height=64, resize_width=48, crop=48)
    a, b = train_transforms(aug, [0.5] * 3, [0.2] * 3), train_transforms(aug, [0.5] * 3, [0.2] * 3)
    a.set_random_seed(7)
    b.set_random_seed(7)
    img = _image()
    assert all(torch.equal(a(image=img)["image"], b(image=img)["image"]) for _ in range(5))


def test_dataset_statistics():
    imgs = [np.full((4, 4, 3), 51, np.uint8), np.full((4, 4, 3), 153, np.uint8)]
    mean, std = dataset_statistics(imgs)
    assert np.allclose(mean, 0.4) and np.allclose(std, 0.2)
