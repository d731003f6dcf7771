"""Image metrics: Fréchet distance, precision/recall, the cached classifier, Inception, grids."""

import numpy as np
import pytest
import torch
from PIL import Image

from meanflow_sci.errors import InputError
from meanflow_sci.tasks.images import (
    MetricUnavailableError,
    digit_classifier,
    evaluate_images,
    inception_extractor,
    load_digits,
    save_panels,
)
from meanflow_sci.tasks.images.grid import make_grid, save_image_grid
from meanflow_sci.tasks.images.metrics import (
    DigitClassifierConfig,
    frechet_distance,
    precision_recall,
)

TINY = DigitClassifierConfig(width=8, feature_dim=16, epochs=3, batch_size=32)


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """A cache folder holding one tiny classifier, trained once for this file's tests."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("classifier_cache")
    digit_classifier(config=TINY, cache=folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tiny_cache):
    return digit_classifier(config=TINY, cache=tiny_cache)


def test_frechet_distance_matches_closed_form_for_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 3))
    b = rng.normal(size=(20000, 3)) * 2.0 + 1.0
    # N(0, I) vs N(1, 4I): |mu|^2 + tr(I + 4I - 2*2I) = 3 + 3 = 6.
    assert frechet_distance(a, b) == pytest.approx(6.0, rel=0.03)
    assert frechet_distance(a, a) < 1e-9


def test_precision_recall_separates_fidelity_and_diversity():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(500, 2))
    collapsed = rng.normal(size=(500, 2)) * 0.1  # inside the real manifold, little diversity
    pr = precision_recall(real, collapsed, k=3)
    assert pr.precision > 0.95 and pr.recall < 0.3
    same = precision_recall(real, real, k=3)
    assert same.precision == same.recall == same.coverage == 1.0
    with pytest.raises(InputError, match="k: expected fewer"):
        precision_recall(real[:3], real[:3], k=3)


def test_metric_zero_against_itself_and_grows_with_noise(tiny):
    ex = tiny
    real = load_digits().images[:400]
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(real.shape, generator=gen)
    fds = [
        evaluate_images(real, real + s * noise, extractor=ex).frechet_distance
        for s in (0.0, 0.1, 0.3)
    ]
    assert fds[0] < 1e-6
    assert fds[0] < fds[1] < fds[2]
    m = evaluate_images(real, real, extractor=ex)
    assert m.extractor.startswith("digits-cnn") and m.n_real == m.n_fake == 400
    assert m.extractor_accuracy == ex.test_accuracy


def test_classifier_is_cached_and_reports_accuracy(tiny, tiny_cache, tmp_path, monkeypatch):
    from meanflow_sci.tasks.images import metrics

    assert tiny.path is not None and tiny.path.parent == tiny_cache and tiny.path.is_file()
    assert 0.5 < tiny.test_accuracy <= 1.0  # three short epochs beat chance (0.1) by far
    # Loading never trains: make training fail loudly, then load from the env-var cache folder.
    monkeypatch.setattr(metrics, "_train_digit_classifier", lambda cfg: pytest.fail("retrained"))
    monkeypatch.setenv("MEANFLOW_SCI_CACHE", str(tiny_cache))
    second = digit_classifier(config=TINY)
    for p, q in zip(tiny.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert second.test_accuracy == tiny.test_accuracy
    # A damaged cache file is rebuilt rather than trusted (training stubbed to stay fast).
    bad = tmp_path / tiny.path.name
    bad.write_bytes(b"garbage")
    fake = metrics.DigitClassifier(TINY.width, TINY.feature_dim)
    monkeypatch.setattr(metrics, "_train_digit_classifier", lambda cfg: (fake, 0.5, 359))
    with pytest.warns(UserWarning, match="unreadable"):
        third = digit_classifier(config=TINY, cache=tmp_path)
    assert third.test_accuracy == 0.5 and third.path == bad
    assert digit_classifier(config=TINY, cache=tmp_path).test_accuracy == 0.5  # rewritten


def test_label_accuracy_and_wrong_channels(tiny):
    ex = tiny
    data = load_digits(size=16)
    m = evaluate_images(data.images, data.images, extractor=ex, fake_labels=data.labels)
    assert m.label_accuracy == pytest.approx(ex.test_accuracy, abs=0.15)
    wrong = evaluate_images(data.images, data.images, extractor=ex, fake_labels=data.labels * 0)
    assert wrong.label_accuracy < 0.3
    with pytest.raises(InputError, match="channel"):
        evaluate_images(
            data.images.repeat(1, 3, 1, 1), data.images.repeat(1, 3, 1, 1), extractor=ex
        )
    with pytest.raises(InputError, match="size"):
        evaluate_images(data.images, load_digits().images, extractor=ex)
    with pytest.raises(InputError, match="extractor"):
        evaluate_images(data.images, data.images, extractor="vgg")


def test_inception_unavailable_gives_clear_message(tmp_path):
    try:
        ex = inception_extractor(
            weights_path=tmp_path / "weights-inception-2015-12-05-6726825d.pth"
        )
    except MetricUnavailableError as err:
        assert "pip install torch-fidelity" in str(err) and "downloaded" in str(err)
    else:  # pragma: no cover - only where the library and weights are really installed
        assert ex.name.startswith("inception")


def test_grids_write_pngs(tmp_path):
    imgs = torch.linspace(-1, 1, 5 * 3 * 4 * 4).reshape(5, 3, 4, 4)
    grid = make_grid(imgs, nrow=3, padding=1, scale=2)
    assert grid.shape == (2 * 9 + 1, 3 * 9 + 1, 3) and grid.dtype == np.uint8
    path = save_image_grid(load_digits().images[:20], tmp_path / "g.png", nrow=5)
    with Image.open(path) as im:
        assert im.size == (5 * 9 + 1, 4 * 9 + 1) and im.mode == "L"
    path = save_panels({"a": imgs, "b": imgs[:2]}, tmp_path / "p.png")
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.size[0] > 2 * 13


def test_fd_mean_term_separates_a_shift_from_missing_variety(tiny):
    real = load_digits().images[:400]
    # A brighter copy of every image: the feature means move, so the mean term carries the
    # distance. A copy of one quarter of the set, repeated: the mean stays near, variety is lost.
    shifted = evaluate_images(real, (real + 0.4).clamp(-1, 1), extractor=tiny)
    narrow = evaluate_images(real, real[:100].repeat(4, 1, 1, 1), extractor=tiny)
    assert shifted.fd_mean_term <= shifted.frechet_distance + 1e-9
    assert shifted.fd_mean_term > 0.5 * shifted.frechet_distance
    assert narrow.fd_mean_term < 0.5 * narrow.frechet_distance
    assert evaluate_images(real, real, extractor=tiny).fd_mean_term < 1e-9
