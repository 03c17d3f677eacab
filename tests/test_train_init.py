"""model.whiten / model.identity_init (train/init_schemes.py): where a fresh network starts."""

import torch
import torch.nn.functional as F
from train_helpers import DIGITS_RUN, small_config

from snn2loihi.train.data import load_datasets
from snn2loihi.train.init_schemes import identity_init, initialise, patch_covariance
from snn2loihi.train.model import build_model
from snn2loihi.train.trainer import build_run


def _net(arch="cifar_fast_half", shape=(3, 16, 16)):
    torch.manual_seed(0)
    return build_model(
        arch,
        shape,
        10,
        mean=(0.5, 0.4, 0.3),
        std=(0.25, 0.2, 0.3),
        steps=4,
        step_divisor=4,
        threshold=0.25,
    )


def _images(n=200, shape=(3, 16, 16)):
    g = torch.Generator().manual_seed(1)
    base = torch.randint(0, 256, (n, 1, *shape[1:]), generator=g)
    noise = torch.randint(-40, 41, (n, *shape), generator=g)
    return (base + noise).clamp(0, 255).to(torch.uint8)  # correlated channels


def test_whitened_filters_decorrelate_layer_0s_patches():
    net, x = _net(), _images()
    before = net.layers[0].weight.detach().clone()
    initialise(net, x, whiten=True, identity=False)
    w = net.layers[0].weight.detach()
    n = min(w.shape[0] // 2, 27)  # 32 channels: 16 eigenvectors and their negations
    cov = patch_covariance(x, net, 3)
    f = w[:n].reshape(n, -1).double()
    out = f @ cov @ f.T
    eigen = torch.linalg.eigvalsh(cov).flip(0)[:n]
    expected = torch.diag(eigen / (eigen + 5e-4))
    assert torch.allclose(out, expected, atol=1e-5)
    assert torch.equal(w[n : 2 * n], -w[:n])
    assert torch.equal(w[2 * n :], before[2 * n :])  # the rest keep the default
    assert torch.equal(net.layers[1].weight, _net().layers[1].weight)  # later layers untouched


def test_identity_convs_pass_their_input_channels_through():
    net = _net()
    assert identity_init(net) == net.flatten_index - 1
    for layer in list(net.layers)[1 : net.flatten_index]:
        w = layer.weight.detach()
        c = min(w.shape[:2])
        h = torch.randn(2, w.shape[1], 6, 6)
        y = F.conv2d(h, w, padding=1)
        assert torch.allclose(y[:, :c], h[:, :c])
    assert torch.equal(net.layers[0].weight, _net().layers[0].weight)


def test_defaults_leave_the_seeded_weights_alone():
    net = _net()
    initialise(net, _images(), whiten=False, identity=False)
    for a, b in zip(net.state_dict().values(), _net().state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_a_run_starts_from_the_configured_initialisation(tmp_path):
    """build_run applies model.whiten / model.identity_init to the fresh model, from the
    training split's images; a run without them starts from the seeded default."""

    def start(*extra):
        config = small_config(tmp_path, *DIGITS_RUN, *extra)
        return build_run(config, load_datasets(config.data), torch.device("cpu"), 1, None).model

    plain = start()
    both = start("model.whiten=true", "model.identity_init=true")
    assert not torch.equal(both.layers[0].weight, plain.layers[0].weight)
    assert both.layers[1].weight[0, 0, 1, 1] == 1 and both.layers[1].weight[0, 0, 0, 0] == 0
    assert torch.equal(both.layers[2].weight, plain.layers[2].weight)  # the readout: untouched


def test_whitening_reads_images_from_the_whole_split():
    """A class-sorted split (all dark images, then all bright ones) gives the covariance of both
    halves, not of the first images only."""
    from snn2loihi.train import init_schemes

    dark = torch.full((6000, 3, 8, 8), 10, dtype=torch.uint8)
    bright = torch.full((6000, 3, 8, 8), 250, dtype=torch.uint8)
    x = torch.cat([dark, bright])
    net = _net("cifar_fast_half", (3, 8, 8))
    init_schemes.whiten_first_conv(net, x)
    w = net.layers[0].weight.detach()
    pick = torch.linspace(0, len(x) - 1, init_schemes.WHITEN_IMAGES).round().long()
    cov = patch_covariance(x[pick], net, 3)
    first = torch.linalg.eigh(cov).eigenvectors[:, -1]
    top = w[0].reshape(-1).double()
    assert abs(torch.nn.functional.cosine_similarity(top, first, dim=0)) > 0.999
    assert not torch.allclose(patch_covariance(x[:5000], net, 3), cov)
