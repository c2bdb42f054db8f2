"""The proxy loss: item classification on learned proxies, each training item a negative at every step."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from fashionnet.checkpoint import load_checkpoint
from fashionnet.losses import ProxySoftmaxLoss
from fashionnet.training import main
from tests.conftest import TINY_TRAIN_ARGS


def test_loss_is_low_on_own_proxy_and_high_on_a_siblings():
    loss = ProxySoftmaxLoss(num_items=4, dim=3, temperature=0.1)
    with torch.no_grad():
        loss.proxies.copy_(torch.tensor([[1.0, 0, 0], [0.9, 0.44, 0], [0, 1.0, 0], [0, 0, 1.0]]))
    own = loss(loss.proxies.detach()[[0, 1]].clone(), torch.tensor([0, 1]))
    swapped = loss(loss.proxies.detach()[[1, 0]].clone(), torch.tensor([0, 1]))  # each on its sibling's proxy
    assert own < swapped
    # a temperature-scaled cross-entropy: the exact value for item 0 sitting on its own proxy
    cos = F.normalize(loss.proxies.detach(), dim=1) @ F.normalize(loss.proxies.detach()[0], dim=0)
    expected0 = -torch.log_softmax(cos / 0.1, dim=0)[0]
    single = loss(loss.proxies.detach()[[0]].clone(), torch.tensor([0]))
    torch.testing.assert_close(single, expected0)


def test_steps_separate_siblings_that_start_together():
    """Two items whose embeddings start identical end up nearest to their own proxies."""
    torch.manual_seed(0)
    loss = ProxySoftmaxLoss(num_items=6, dim=8, temperature=0.05)
    emb = torch.randn(1, 8).repeat(6, 1) + 0.01 * torch.randn(6, 8)
    emb.requires_grad_(True)
    labels = torch.arange(6)
    opt = torch.optim.SGD([emb, loss.proxies], lr=0.5)
    for _ in range(100):
        opt.zero_grad()
        loss(emb, labels).backward()
        opt.step()
    nearest = (F.normalize(emb, dim=1) @ F.normalize(loss.proxies, dim=1).T).argmax(dim=1)
    assert nearest.tolist() == labels.tolist()


def test_bad_labels_and_settings_are_refused():
    loss = ProxySoftmaxLoss(num_items=3, dim=2)
    with pytest.raises(ValueError, match=r"item labels must be in \[0, 3\)"):
        loss(torch.randn(2, 2), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="temperature"):
        ProxySoftmaxLoss(num_items=3, dim=2, temperature=0.0)
    with pytest.raises(ValueError, match="at least 2"):
        ProxySoftmaxLoss(num_items=1, dim=2)
    assert loss(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)).item() == 0.0


def test_training_with_the_proxy_loss_saves_and_resumes_its_proxies(synth_root, tmp_path):
    out = tmp_path / "run"
    common = [*TINY_TRAIN_ARGS, "--data-root", str(synth_root / "consumer2shop"), "--output-dir", str(out),
              "--batches-per-epoch", "3", "--ood-images", "0", "--proxy-weight", "1"]
    main([*common, "--joint-epochs", "1"])
    first = load_checkpoint(out / "checkpoint.pt")
    history = json.loads((out / "history.json").read_text())
    assert all(row["train"]["proxy"] > 0 for row in history)
    num_items = len(first["label_maps"]["items"]) if "items" in first["label_maps"] else None
    assert first["proxies"].shape[1] == 32 and (num_items is None or first["proxies"].shape[0] == num_items)
    # resuming puts the saved proxies back, not fresh random ones
    from fashionnet.checkpoint import model_from_checkpoint
    from fashionnet.training import build_optimizer, parse_args, resume_from

    model, config = model_from_checkpoint(first, out / "checkpoint.pt")
    proxy = ProxySoftmaxLoss(*first["proxies"].shape)
    optimizer = build_optimizer(model, parse_args(common), proxy)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    resume_from(str(out / "checkpoint.pt"), model, optimizer, scheduler, config, proxy)
    assert torch.equal(proxy.proxies.detach(), first["proxies"])
    main([*common, "--joint-epochs", "2", "--resume", "auto"])
    second = load_checkpoint(out / "checkpoint.pt")
    assert second["epoch"] == first["epoch"] + 1
    assert not torch.equal(second["proxies"], first["proxies"])
    with pytest.raises(SystemExit, match="proxy loss"):
        main([*common[:-2], "--joint-epochs", "3", "--resume", "auto"])
