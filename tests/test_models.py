"""Backbones, landmark pooling and FashionNet (tiny backbone, CPU)."""

from pathlib import Path

import pytest
import torch

from fashionnet.landmarks import ABSENT, OCCLUDED, VISIBLE
from fashionnet.models import (
    BareBackbone,
    FashionNet,
    FashionNetConfig,
    LandmarkPooling,
    PretrainedWeightsNotFound,
    create_model,
    get_backbone,
    get_model,
    list_backbones,
    list_models,
)
from fashionnet.models import efficientnet_lite as lite
from fashionnet.models.branches import soft_argmax
from fashionnet.training.losses import LandmarkL2Loss


def tiny_model(**overrides) -> FashionNet:
    torch.manual_seed(0)
    cfg = dict(backbone="tiny", embedding_dim=16, num_categories=5, num_attributes=7, image_size=64, local_dim=24, global_dim=20, landmark_hidden=32, landmark_width=8)
    cfg.update(overrides)
    return create_model(FashionNetConfig(**cfg)).eval()


# ----------------------------------------------------------------------------- landmark pooling


def hot_spot_map(height: int, width: int, row: int, col: int, channels: int = 2) -> torch.Tensor:
    fmap = torch.zeros(1, channels, height, width)
    fmap[0, :, row, col] = 10.0
    return fmap


def at_cell(row: float, col: float, stride: int, image_hw) -> list:
    """Normalised (x, y) of the centre of conv4 cell (row, col)."""
    return [(col + 0.5) * stride / image_hw[1], (row + 0.5) * stride / image_hw[0]]


@pytest.mark.parametrize("mode", ["max", "align"])
@pytest.mark.parametrize("map_hw,spot,stride", [((8, 8), (2, 6), 16), ((6, 12), (1, 9), 16), ((12, 5), (9, 1), 8)])
def test_pooling_reads_the_window_at_the_landmark(mode, map_hw, spot, stride):
    h, w = map_hw
    image_hw = (h * stride, w * stride)
    fmap = hot_spot_map(h, w, *spot)
    r, c = spot
    landmarks = torch.tensor(
        [
            [
                at_cell(r, c, stride, image_hw),  # on the spot
                at_cell(r, c + 1, stride, image_hw) if c + 1 < w else at_cell(r, c - 1, stride, image_hw),  # next cell: inside a 3-cell window
                at_cell(0, 0, stride, image_hw),  # top-left corner
                at_cell(c, r, stride, image_hw),  # x and y swapped
                at_cell(r, c, stride, (image_hw[0] * image_hw[0], image_hw[1] * image_hw[1])),  # divided twice
                at_cell(r + 3, c, stride, image_hw) if r + 3 < h else at_cell(r - 3, c, stride, image_hw),  # 3 cells away
                [0.0, 1.0],  # bottom-left corner of the image
                [1.0, 0.0],  # top-right corner
            ]
        ]
    )
    visible = torch.ones(1, 8, dtype=torch.bool)
    pooled = LandmarkPooling(stride=stride, window=3, output=2, mode=mode)(fmap, landmarks, visible, image_hw)
    assert pooled.shape == (1, 8, 2, 2, 2)
    peak = pooled.amax(dim=(2, 3, 4))[0]
    assert peak[0] > 0.5, "a landmark on the hot spot must see it"
    assert peak[1] > 0.5, "the neighbouring cell is inside a 3-cell window"
    for i in (2, 3, 4, 5, 6, 7):
        assert peak[i] == 0.0, f"landmark {i} is off the hot spot but pooled {peak[i]:.3f}"
    if mode == "max":
        assert peak[0] == 10.0


def test_pooling_window_size_in_cells():
    fmap = hot_spot_map(10, 10, 5, 5)
    image_hw = (160, 160)
    one_away = torch.tensor([[at_cell(5, 6, 16, image_hw), at_cell(5, 4, 16, image_hw), at_cell(4, 5, 16, image_hw), at_cell(6, 5, 16, image_hw)] * 2])
    two_away = torch.tensor([[at_cell(5, 7, 16, image_hw), at_cell(5, 3, 16, image_hw), at_cell(3, 5, 16, image_hw), at_cell(7, 5, 16, image_hw)] * 2])
    visible = torch.ones(1, 8, dtype=torch.bool)
    # a 3-cell window reaches exactly one cell to every side, a 5-cell window two
    assert torch.all(LandmarkPooling(16, window=3, output=1)(fmap, one_away, visible, image_hw) == 10.0)
    assert LandmarkPooling(16, window=3, output=1)(fmap, two_away, visible, image_hw).max() == 0.0
    assert torch.all(LandmarkPooling(16, window=5, output=1)(fmap, two_away, visible, image_hw) == 10.0)


def test_invisible_windows_are_zero():
    torch.manual_seed(0)
    fmap = torch.rand(2, 4, 6, 6) + 0.5  # strictly positive everywhere
    landmarks = torch.rand(2, 8, 2)
    landmarks[1, 2] = float("nan")  # absent ground truth slot: must not break pooling
    visible = torch.tensor([[True, False] * 4, [False, True, False, True, True, True, True, False]])
    pooled = LandmarkPooling(16, window=3, output=2)(fmap, landmarks, visible, (96, 96))
    per_window = pooled.abs().amax(dim=(2, 3, 4))
    assert torch.all(per_window[~visible] == 0)
    assert torch.all(per_window[visible] > 0)


def test_detail_windows_need_a_trunk_stage_at_their_stride():
    from fashionnet.models.backbones import stage_at_stride

    with pytest.raises(ValueError, match="no stage at stride 8"):
        stage_at_stride(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=16)), 8, "one_conv", "detail_window")


# ----------------------------------------------------------------------------- FashionNet


def test_fashionnet_outputs_shapes_and_normalised_embedding():
    model = tiny_model()
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        out = model(images)
    assert model.search_dim == 16 + model.appearance_dim and model.appearance_dim  # the pooled appearance is appended by default
    assert out["embedding"].shape == (3, model.search_dim) and out["embedding"].dtype == torch.float32
    assert torch.allclose(out["embedding"].norm(dim=1), torch.ones(3), atol=1e-5)
    assert out["landmarks"].shape == (3, 8, 2)
    assert out["landmarks"].min() >= 0 and out["landmarks"].max() <= 1
    assert out["visibility_logits"].shape == (3, 8, 3)
    assert out["category_logits"].shape == (3, 5)
    assert out["attribute_logits"].shape == (3, 7)
    assert out["global_feature"].shape == (3, 20)
    assert out["local_feature"].shape == (3, 24)
    # predicted-landmark mode pools where the model predicts visible landmarks
    assert torch.equal(out["pooled_visible"], out["visibility_logits"].argmax(-1) == VISIBLE)


def test_fashionnet_runs_on_non_square_images_and_zero_heads():
    model = tiny_model(num_categories=0, num_attributes=0)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 48, 80))
    assert out["embedding"].shape == (2, model.search_dim)
    assert out["category_logits"].shape == (2, 0) and out["attribute_logits"].shape == (2, 0)


def test_ground_truth_pooling_uses_given_landmarks_and_visibility():
    model = tiny_model()
    torch.manual_seed(1)
    images = torch.randn(2, 3, 64, 64)
    gt = torch.rand(2, 8, 2)
    all_visible = torch.full((2, 8), VISIBLE)
    none_visible = torch.tensor([[OCCLUDED] * 4 + [ABSENT] * 4] * 2)
    with torch.no_grad():
        features = model.forward_features(images)
        a = model.forward_head(features, gt, all_visible)
        b = model.forward_head(features, gt.flip(1), all_visible)
        hidden = model(images, pool_landmarks=gt, pool_visibility=none_visible)
        hidden_other = model(torch.randn(2, 3, 64, 64), pool_landmarks=gt, pool_visibility=none_visible)
    assert torch.equal(a["pooled_visible"], torch.ones(2, 8, dtype=torch.bool))
    assert not torch.allclose(a["local_feature"], b["local_feature"]), "pooling location must matter"
    # all windows zeroed: the local feature no longer depends on the image
    assert torch.allclose(hidden["local_feature"], hidden_other["local_feature"])
    assert torch.equal(model(images, gt, all_visible)["embedding"], a["embedding"])


def test_fashionnet_trains_on_cpu():
    from fashionnet.training.losses import CategoryLoss, LandmarkL2Loss, TripletLoss

    model = tiny_model().train()
    images = torch.randn(4, 3, 64, 64)
    out = model(images)
    loss = (
        LandmarkL2Loss()(out["landmarks"], torch.rand(4, 8, 2), torch.zeros(4, 8, dtype=torch.long))
        + CategoryLoss()(out["category_logits"], torch.tensor([0, 1, 2, -1]))
        + TripletLoss(0.3)(out["embedding"], torch.tensor([0, 0, 1, 1]))
    )
    loss.backward()
    trunk_grad = sum(p.grad.abs().sum() for p in model.trunk.parameters() if p.grad is not None)
    assert torch.isfinite(loss) and trunk_grad > 0


def test_appended_appearance_is_the_weighted_pooled_conv5_and_the_losses_leave_it_alone():
    import torch.nn.functional as F

    from fashionnet.models.checkpoint import BEFORE_THE_SETTING, state_dict_checksum
    from fashionnet.training.losses import metric_embedding

    images = torch.randn(3, 3, 64, 64)
    plain, half, one = tiny_model(appearance_weight=0.0), tiny_model(appearance_weight=0.5), tiny_model(appearance_weight=1.0)
    with torch.no_grad():
        p, h = plain(images), half(images)
        pooled = half.global_conv5(half.forward_features(images)["conv4"]).mean(dim=(2, 3))
    conv5_width = half.global_conv5[-1][0].out_channels
    assert half.search_dim == 16 + conv5_width and plain.search_dim == 16
    assert h["embedding"].shape == (3, 16 + conv5_width) and p["embedding"].shape == (3, 16)
    expected = torch.cat([F.normalize(h["fusion_feature"], dim=1), 0.5 * F.normalize(pooled, dim=1)], dim=1) / 1.25 ** 0.5
    assert torch.allclose(h["embedding"], expected, atol=1e-6)
    # the same weights without the appearance give the fusion part alone; the losses train only that
    assert torch.allclose(p["embedding"], F.normalize(h["fusion_feature"], dim=1), atol=1e-6)
    assert torch.allclose(metric_embedding(h), p["embedding"], atol=1e-6)
    # the weight is in the state dict, so an index built with one weight refuses the other
    assert state_dict_checksum(half.state_dict()) != state_dict_checksum(one.state_dict())
    config = half.config.to_dict()
    del config["appearance_weight"]  # a checkpoint from before the option
    assert FashionNetConfig.from_dict({**BEFORE_THE_SETTING, **config}).appearance_weight == 0.0
    with pytest.raises(ValueError, match="appearance_weight"):
        FashionNetConfig(backbone="tiny", appearance_weight=-1.0)


@pytest.mark.parametrize("hw,cell", [((14, 14), (3, 10)), ((7, 12), (6, 0)), ((5, 9), (1, 7))])
def test_soft_argmax_finds_the_hot_cell_centre(hw, cell):
    h, w = hw
    row, col = cell
    heat = torch.full((1, 2, h, w), -30.0)
    heat[0, 0, row, col] = 30.0
    heat[0, 1, :, :] = 0.0  # flat: the expectation is the map's centre
    xy = soft_argmax(heat)
    assert torch.allclose(xy[0, 0], torch.tensor([(col + 0.5) / w, (row + 0.5) / h]), atol=1e-4)
    assert torch.allclose(xy[0, 1], torch.tensor([0.5, 0.5]), atol=1e-4)


@pytest.mark.parametrize("head", ["heatmap", "fc"])
def test_landmark_head_learns_to_land_on_a_bright_spot(head):
    """Each image has one bright square; landmark 0 must learn to sit on it (both head types)."""
    torch.manual_seed(0)
    model = tiny_model(landmark_head=head).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def batch(n):
        centres = torch.randint(8, 56, (n, 2))
        images = torch.zeros(n, 3, 64, 64)
        for i, (x, y) in enumerate(centres.tolist()):
            images[i, :, y - 4 : y + 4, x - 4 : x + 4] = 3.0
        target = (centres.float() / 64).unsqueeze(1).repeat(1, 8, 1)
        return images, target

    visibility = torch.tensor([[VISIBLE] + [ABSENT] * 7] * 16)
    for _ in range(150):
        images, target = batch(16)
        loss = LandmarkL2Loss()(model(images)["landmarks"], target, visibility)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    images, target = batch(64)
    with torch.no_grad():
        error_px = ((model(images)["landmarks"][:, 0] - target[:, 0]) * 64).norm(dim=1)
    assert error_px.median() < 4.0, f"{head} head misses the spot by {error_px.median():.1f} px (median)"


def test_landmark_head_choice_is_checked():
    with pytest.raises(ValueError, match="landmark_head"):
        FashionNetConfig(backbone="tiny", landmark_head="argmax")
    assert FashionNetConfig(backbone="tiny").landmark_head == "heatmap"
    assert hasattr(tiny_model(landmark_head="fc").landmark_branch, "coordinates")
    assert hasattr(tiny_model().landmark_branch, "heatmaps")


def test_config_round_trip_rebuilds_the_same_model(tmp_path):
    model = tiny_model(pool_mode="align", pool_window=2.5)
    d = model.config.to_dict()
    rebuilt = create_model(FashionNetConfig.from_dict(d), load_pretrained=False).eval()
    torch.save({"config": d, "state_dict": model.state_dict()}, tmp_path / "ckpt.pt")
    ckpt = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    rebuilt.load_state_dict(ckpt["state_dict"], strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x)["embedding"], model(x)["embedding"])
    with pytest.raises(ValueError, match="pool_windw"):
        FashionNetConfig.from_dict({**d, "pool_windw": 3})
    with pytest.raises(ValueError, match="unknown backbone"):
        FashionNetConfig(backbone="alexnet")


def test_get_model_by_name():
    assert "fashionnet_tiny" in list_models()
    model = get_model("fashionnet_tiny", embedding_dim=8)
    assert model.config.backbone == "tiny" and model.fusion.out_features == 8
    with pytest.raises(ValueError, match="unknown model"):
        get_model("fashionnet_nope")


# ----------------------------------------------------------------------------- backbones


def test_backbone_split_reports_channels_and_stride():
    assert set(list_backbones()) >= {"vgg16", "resnet50", "efficientnet_lite0", "tiny"}
    backbone = get_backbone("tiny").eval()
    x = torch.randn(2, 3, 96, 64)
    conv4 = backbone(x)
    assert conv4.shape == (2, backbone.trunk_channels, 96 // backbone.trunk_stride, 64 // backbone.trunk_stride)
    branch, channels = backbone.make_conv5()
    assert branch(conv4).shape[1] == channels == backbone.conv5_channels
    # a branch is an independent copy of the (pretrained) conv5
    first = next(branch.parameters())
    assert torch.equal(first, next(backbone.conv5.parameters()))
    with torch.no_grad():
        first.add_(1.0)
    assert not torch.equal(first, next(backbone.conv5.parameters()))
    assert BareBackbone(backbone)(x).shape == (2, backbone.conv5_channels)


def test_efficientnet_lite0_loads_package_weights_strictly():
    backbone = get_backbone("efficientnet_lite0", pretrained=True)
    state = torch.load(lite.lite0_checkpoint_path(), map_location="cpu", weights_only=True)
    # strict load of the full network works, and the split backbone holds those very tensors
    net = lite.EfficientNetLite0()
    assert not net.load_state_dict(state, strict=True).missing_keys
    stem_conv = backbone.trunk[0][1]
    assert torch.equal(stem_conv.weight, state["_conv_stem.weight"])
    assert torch.equal(backbone.conv5[0]._project_conv.weight, state["_blocks.11._project_conv.weight"])
    assert torch.equal(backbone.conv5[-1][0].weight, state["_conv_head.weight"])
    assert (backbone.trunk_channels, backbone.trunk_stride, backbone.conv5_channels) == (112, 16, 1280)
    with torch.no_grad():
        assert backbone.eval()(torch.zeros(1, 3, 224, 224)).shape == (1, 112, 14, 14)


def test_efficientnet_lite0_classifies_a_photo_sensibly():
    """ImageNet sanity check of the architecture + converted weights on matplotlib's sample photo."""
    mpl = pytest.importorskip("matplotlib")
    photo = Path(mpl.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not photo.is_file():
        pytest.skip("matplotlib sample photo not installed")
    from torchvision.models import ResNet50_Weights
    from torchvision.transforms.v2 import functional as TF

    from fashionnet.data.images import load_image

    categories = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]  # class names only, no download
    net = lite.EfficientNetLite0()
    lite.load_lite0_state_dict(net, lite.lite0_checkpoint_path())
    image = TF.to_dtype(TF.to_image(load_image(photo)), torch.float32, scale=True)
    x = TF.normalize(TF.center_crop(TF.resize(image, 256), 224), lite.IMAGENET_MEAN, lite.IMAGENET_STD)[None]
    with torch.no_grad():
        top5 = net.eval()(x).softmax(1)[0].topk(5).indices.tolist()
    names = [categories[i] for i in top5]
    # Rear Admiral Grace Hopper in uniform: dress-uniform classes, not noise
    assert "military uniform" in names, names
    assert set(names) & {"academic gown", "mortarboard", "Windsor tie", "bow tie", "suit"}, names


def test_wrong_weight_files_give_clear_errors(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(PretrainedWeightsNotFound, match="nope.pth"):
        get_backbone("efficientnet_lite0", pretrained=str(missing))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        get_backbone("efficientnet_lite0", pretrained=garbage)
    other = tmp_path / "tiny.pth"
    torch.save(get_backbone("tiny").state_dict(), other)
    with pytest.raises(ValueError, match="tiny.pth.*EfficientNet-Lite0"):
        get_backbone("efficientnet_lite0", pretrained=other)
    # the right file loads
    loaded = get_backbone("tiny", pretrained=other)
    assert torch.equal(next(loaded.parameters()), torch.load(other, weights_only=True)["trunk.0.0.weight"])


@pytest.mark.parametrize("name", ["vgg16", "resnet50"])
def test_torchvision_backbones_without_cache_raise(name, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(PretrainedWeightsNotFound) as err:
        get_backbone(name, pretrained=True)
    assert str(tmp_path / "checkpoints") in str(err.value) and "--weights" in str(err.value)
    with pytest.raises(PretrainedWeightsNotFound, match="no pretrained weights"):
        get_backbone("tiny", pretrained=True)


# ----------------------------------------------------------------------------- garment box head


def garment_batch(n: int, side: int = 64, generator=None):
    """Grey-noise photos each with one coloured rectangle (the garment) of random place and size,
    and its box (x1, y1, x2, y2) in [0, 1]."""
    images = torch.randn(n, 3, side, side, generator=generator) * 0.3
    boxes = torch.zeros(n, 4)
    for i in range(n):
        w, h = (int(v) for v in torch.randint(12, 40, (2,), generator=generator))
        x, y = int(torch.randint(0, side - w, (1,), generator=generator)), int(torch.randint(0, side - h, (1,), generator=generator))
        images[i, :, y : y + h, x : x + w] = torch.tensor([2.0, -1.0, 0.5]).view(3, 1, 1)
        boxes[i] = torch.tensor([x, y, x + w, y + h]) / side
    return images, boxes


def test_box_head_outputs_an_ordered_box_inside_the_input_and_can_be_switched_off():
    model = tiny_model()
    box = model(torch.randn(3, 3, 64, 80) * 5)["box"]
    assert box.shape == (3, 4) and (box >= 0).all() and (box <= 1).all()
    assert (box[:, 2:] >= box[:, :2]).all()
    assert "box" not in tiny_model(box_head=False)(torch.randn(1, 3, 64, 64))
    assert FashionNetConfig(backbone="tiny").box_head


def test_box_head_learns_to_land_on_the_garment_pixels():
    """A few steps of the box loss on synthetic garments: held-out boxes overlap the garments."""
    from torchvision.ops import box_iou

    from fashionnet.training.losses import BoxLoss

    torch.manual_seed(0)
    model = tiny_model().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = BoxLoss()
    g = torch.Generator().manual_seed(1)
    for _ in range(300):
        images, boxes = garment_batch(16, generator=g)
        loss = loss_fn(model(images)["box"], boxes, torch.ones(16, dtype=torch.bool), images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    images, boxes = garment_batch(64, generator=torch.Generator().manual_seed(99))
    with torch.no_grad():
        iou = box_iou(model(images)["box"], boxes).diagonal()
    untrained = box_iou(tiny_model()(images)["box"].detach(), boxes).diagonal()
    assert iou.median() > 0.6 and iou.median() > untrained.median() + 0.2, (iou.median(), untrained.median())


def test_old_checkpoint_without_a_box_head_loads_and_predicts_no_box(tmp_path):
    from fashionnet.models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

    old = tiny_model(box_head=False)
    config = old.config.to_dict()
    del config["box_head"]  # written before the field existed
    save_checkpoint(tmp_path / "old.pt", model_state=old.state_dict(), model_config=config, label_maps={}, preprocessing={}, epoch=1)
    model, loaded = model_from_checkpoint(load_checkpoint(tmp_path / "old.pt"))
    assert loaded.box_head is False
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model.eval()(x)
        assert "box" not in out and torch.allclose(out["embedding"], old(x)["embedding"])
