"""Pruning during training: mask layers equal removal, schedules, UpdateMasks, save / resume, strip."""
import numpy as np
import pytest

import tiny_models
import tfmc
from tfmc._keras import keras
from tfmc.graph import ChannelGraph
from tfmc.policy import PrunePolicy, kept_channels
from tfmc.prune import prune
from tfmc.prune.gradual import mask_layers, prune_during_training, update_masks
from tfmc.prune.mask_layers import ChannelMask
from tfmc.prune.select import channel_importance, select_channels
from tfmc.prune.schedules import ConstantKeepRatio, PolynomialDecay

L = keras.layers


def _random_ratios(model, seed=3):
    rng = np.random.default_rng(seed)
    return {g.name: float(rng.choice([0.3, 0.5, 0.75])) for g in ChannelGraph(model).groups if g.prunable}


@pytest.mark.parametrize("name", sorted(tiny_models.ALL))
def test_masking_equals_removal(name):
    model = tiny_models.ALL[name]()
    before = [w.copy() for w in model.get_weights()]
    ratios = _random_ratios(model)
    x = tiny_models.images()

    masked = tfmc.prunable(model, ratios, round_to=1)
    small = tfmc.strip(masked)
    pruned, details = prune(model, ratios, round_to=1, return_details=True)

    masked_out = masked(x).numpy()
    np.testing.assert_allclose(small(x).numpy(), masked_out, atol=1e-4)
    # the same importance (L1 of the consumers) picks the same channels as tfmc.prune
    np.testing.assert_allclose(masked_out, pruned(x).numpy(), atol=1e-4)
    assert np.abs(masked_out - model(x).numpy()).max() > 1e-3  # the masks matter
    assert [w.shape for w in small.get_weights()] == [w.shape for w in pruned.get_weights()]
    assert {m.group: int(m.mask.sum()) for m in mask_layers(masked)} == details["kept_channels"]
    assert not mask_layers(small) and not mask_layers(model)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_masks_sit_where_consumers_read_and_the_graph_sees_through_them():
    model = tiny_models.depthwise_cnn()
    masked = tfmc.prunable(model, 0.5)
    stem_mask = masked.get_layer("stem_channel_mask")
    # not on the stem's output (BN would add beta back) but after the depthwise conv, repeated per multiplier
    assert masked.get_layer("pw").input.node.layer is stem_mask
    assert [(g.name, g.channels, g.prunable, g.consumers) for g in tfmc.channel_groups(masked)] == [
        (g.name, g.channels, g.prunable, g.consumers) for g in tfmc.channel_groups(model)]
    concat = tfmc.prunable(tiny_models.concat_cnn(), 0.5)
    # the consumer of [a, b2, a] reads it through both groups' masks, the same instances as elsewhere
    fuse_input = concat.get_layer("fuse").input.node
    assert {fuse_input.layer.name, fuse_input.keras_inputs[0].node.layer.name} == {
        "branch_a_channel_mask", "branch_b2_channel_mask"}


def test_mask_layer_reads_writes_and_round_trips():
    masked = tfmc.prunable(tiny_models.chain_cnn(), {"conv2": 0.5}, round_to=4,
                           schedule=PolynomialDecay(begin_step=2, end_step=10, power=2))
    (mask,) = mask_layers(masked)
    assert (mask.group, mask.channels, mask.keep_ratio, mask.round_to) == ("conv2", 24, 0.5, 4)
    np.testing.assert_array_equal(mask.mask, np.ones(24, np.float32))  # step 0: before the decay begins
    mask.keep_ratio = 0.25
    assert mask.scheduled_count(10) == 8  # round(24 * 0.25) = 6, rounded to a multiple of 4
    with pytest.raises(tfmc.PolicyError, match=r"keep ratio for 'conv2' must be in \(0, 1\], got 1.5"):
        mask.keep_ratio = 1.5
    clone = ChannelMask.from_config(mask.get_config())
    assert (clone.group, clone.channels, clone.keep_ratio, clone.round_to) == ("conv2", 24, 0.25, 4)
    assert clone.schedule == PolynomialDecay(2, 10, power=2)


def test_policy_and_custom_importance():
    model = tiny_models.chain_cnn()
    masked = tfmc.prunable(model, PrunePolicy({"conv1": 0.5, "conv3": 0.25}, round_to=4))
    assert {m.group: int(m.mask.sum()) for m in mask_layers(masked)} == {"conv1": 8, "conv3": 8}

    def weakest_first(analysis):
        return {group: -scores for group, scores in channel_importance(analysis).items()}

    reversed_masks = tfmc.prunable(model, {"conv1": 0.5}, importance=weakest_first)
    analysis = ChannelGraph(model)
    expected = select_channels(analysis, {"conv1": 8}, importance=weakest_first(analysis))["conv1"]
    np.testing.assert_array_equal(reversed_masks.get_layer("conv1_channel_mask").mask, expected.astype(np.float32))
    assert not np.array_equal(expected, masked.get_layer("conv1_channel_mask").mask > 0)


def test_schedule_keep_ratio_at_given_steps():
    decay = PolynomialDecay(begin_step=10, end_step=20)
    assert [decay.keep_ratio(s, 0.2) for s in (0, 10, 15, 20, 30)] == [1.0, 1.0, 0.2 + 0.8 * 0.5**3, 0.2, 0.2]
    assert PolynomialDecay(0, 4, power=1).keep_ratio(1, 0.2) == pytest.approx(0.8)
    constant = ConstantKeepRatio(begin_step=5)
    assert [constant.keep_ratio(s, 0.3) for s in (0, 4, 5, 1000)] == [1.0, 1.0, 0.3, 0.3]
    assert [s for s in range(30) if decay.updates_at(s, every=4)] == [10, 14, 18, 20]
    assert [s for s in range(12) if ConstantKeepRatio(2, end_step=8).updates_at(s, every=3)] == [2, 5, 8]


class _Recorder(keras.callbacks.Callback):
    """Masks in force at each training step (after UpdateMasks ran for it)."""

    def __init__(self):
        super().__init__()
        self.masks = []

    def on_train_batch_begin(self, batch, logs=None):
        self.masks.append({m.group: m.mask for m in mask_layers(self.model)})


def _fit(model, steps, callbacks, batch_size=8, seed=0):
    x = tiny_models.images(steps * batch_size, seed=seed)
    y = np.arange(len(x)) % 10
    model.fit(x, y, batch_size=batch_size, epochs=1, shuffle=False, verbose=0, callbacks=callbacks)


def _compiled(masked):
    masked.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return masked


def test_update_masks_follow_the_schedule_during_fit():
    masked = _compiled(tfmc.prunable(tiny_models.chain_cnn(), 0.5, round_to=1, schedule=PolynomialDecay(0, 6)))
    update, recorder = tfmc.UpdateMasks(update_every=2), _Recorder()
    _fit(masked, 8, [update, recorder])
    assert update.updated_at == [0, 2, 4, 6]
    counts = [{g: int(m.sum()) for g, m in step.items()} for step in recorder.masks]
    # conv1 keeps round(16 * (0.5 + 0.5 * (1 - s / 6) ** 3)) at the update steps s
    assert [c["conv1"] for c in counts] == [16, 16, 10, 10, 8, 8, 8, 8]
    assert [c["conv2"] for c in counts] == [24, 24, 16, 16, 12, 12, 12, 12]
    for step in range(1, 8):
        if step not in update.updated_at:
            for group, mask in recorder.masks[step].items():
                np.testing.assert_array_equal(mask, recorder.masks[step - 1][group])
    assert {m.step for m in mask_layers(masked)} == {8}
    x = tiny_models.images()
    np.testing.assert_allclose(tfmc.strip(masked)(x).numpy(), masked(x).numpy(), atol=1e-4)


def test_save_mid_training_load_and_resume(tmp_path):
    def start():
        model = tiny_models.chain_cnn()
        return _compiled(tfmc.prunable(model, 0.5, round_to=1, schedule=PolynomialDecay(0, 6)))

    masked = start()
    _fit(masked, 3, [tfmc.UpdateMasks(update_every=2)])
    path = tmp_path / "mid.keras"
    masked.save(path)
    loaded = tfmc.io.load_model(path)  # safe loading knows the registered mask layer and schedule
    loaded = keras.models.load_model(path)  # with its optimizer state, to resume
    x = tiny_models.images()
    np.testing.assert_allclose(loaded(x).numpy(), masked(x).numpy(), atol=1e-6)
    for a, b in zip(mask_layers(masked), mask_layers(loaded)):
        assert (b.group, b.step, b.keep_ratio, b.schedule) == (a.group, 3, a.keep_ratio, PolynomialDecay(0, 6))
        np.testing.assert_array_equal(b.mask, a.mask)

    resumed, straight = tfmc.UpdateMasks(update_every=2), tfmc.UpdateMasks(update_every=2)
    _fit(loaded, 4, [resumed], seed=2)
    _fit(masked, 4, [straight], seed=2)
    assert resumed.updated_at == straight.updated_at == [4, 6]
    for a, b in zip(mask_layers(masked), mask_layers(loaded)):
        assert b.step == a.step == 7
        np.testing.assert_array_equal(b.mask, a.mask)
    np.testing.assert_allclose(loaded(x).numpy(), masked(x).numpy(), atol=1e-5)


def test_update_masks_under_a_mirrored_strategy(mirrored):
    with mirrored.scope():
        masked = _compiled(tfmc.prunable(tiny_models.residual_cnn(), 0.5, round_to=1, schedule=PolynomialDecay(0, 4)))
    update = tfmc.UpdateMasks(update_every=2)
    _fit(masked, 5, [update], batch_size=8)
    assert update.updated_at == [0, 2, 4]
    for mask in mask_layers(masked):
        replicas = [v.numpy() for v in mask.mask_variable.values]
        assert len(replicas) == 2
        np.testing.assert_array_equal(replicas[0], replicas[1])
        assert int(replicas[0].sum()) == kept_channels(mask.channels, 0.5, 1)
        assert {int(v.numpy()) for v in mask.step_variable.values} == {5}
    x = tiny_models.images()
    np.testing.assert_allclose(tfmc.strip(masked)(x).numpy(), masked(x).numpy(), atol=1e-4)


def test_update_masks_by_hand():
    masked = tfmc.prunable(tiny_models.se_cnn(), 0.5, round_to=1, schedule=PolynomialDecay(0, 10))
    assert {int(m.mask.sum()) for m in mask_layers(masked)} == {16, 8, 24}  # all channels at step 0
    keep = update_masks(masked, step=10)
    assert {g: int(k.sum()) for g, k in keep.items()} == {"conv1": 8, "se_reduce": 4, "conv2": 12}
    with pytest.raises(tfmc.UsageError, match=r"importance of group 'conv1' must have 16 scores, got \(3,\)"):
        update_masks(masked, importance={"conv1": np.ones(3)})


def test_sequential_model_becomes_a_masked_functional_model():
    keras.utils.set_random_seed(5)
    model = keras.Sequential([
        keras.Input((16, 16, 3)), L.Conv2D(16, 3, activation="relu", name="c1"), L.BatchNormalization(name="bn"),
        L.Conv2D(16, 3, activation="relu", name="c2"), L.GlobalAveragePooling2D(name="g"), L.Dense(3, name="d"),
    ])
    masked = tfmc.prunable(model, 0.5, round_to=1)
    x = tiny_models.images(4)
    np.testing.assert_allclose(tfmc.strip(masked)(x).numpy(), prune(model, 0.5, round_to=1)(x).numpy(), atol=1e-4)


def test_layers_called_with_keyword_inputs_and_constant_kwargs_keep_them():
    keras.utils.set_random_seed(2)
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 3, padding="same", name="c1")(inputs=inp)
    x = L.BatchNormalization(name="bn")(x, training=False)
    x = L.Conv2D(8, 3, name="c2")(inputs=x)
    model = keras.Model(inp, L.Dense(3, name="d")(L.GlobalAveragePooling2D(name="g")(x)))
    tiny_models._randomize_bn(model)
    masked = tfmc.prunable(model, 0.5, round_to=1)
    x = tiny_models.images(4, (8, 8, 3))
    # training=False stays on the BN call: in training mode its batch statistics would differ from prune's model
    np.testing.assert_allclose(masked(x, training=True).numpy(), prune(model, 0.5, round_to=1)(x).numpy(), atol=1e-4)
    np.testing.assert_allclose(tfmc.strip(masked)(x).numpy(), masked(x).numpy(), atol=1e-4)


def test_frozen_group_names_the_reason():
    with pytest.raises(tfmc.PolicyError,
                       match=r"^channel group 'logits' cannot be pruned: reaches model output of layer 'logits'$"):
        tfmc.prunable(tiny_models.chain_cnn(), {"logits": 0.5})


@pytest.mark.parametrize("make, message", [
    (lambda: PolynomialDecay(10, 5), r"^PolynomialDecay: the schedule ends \(end_step=5\) before it begins \(begin_step=10\)$"),
    (lambda: ConstantKeepRatio(10, 5), r"^ConstantKeepRatio: the schedule ends \(end_step=5\) before it begins \(begin_step=10\)$"),
    (lambda: PolynomialDecay(5, 5), r"^PolynomialDecay: end_step must be after begin_step \(5\), got 5$"),
    (lambda: PolynomialDecay(-1, 5), r"^PolynomialDecay: begin_step must be an integer >= 0, got -1$"),
    (lambda: PolynomialDecay(0, 5, power=0), r"^PolynomialDecay: power must be a number > 0, got 0$"),
    (lambda: tfmc.UpdateMasks(update_every=0), r"^UpdateMasks: update_every must be an integer >= 1, got 0$"),
])
def test_bad_schedules_and_callbacks(make, message):
    with pytest.raises(tfmc.UsageError, match=message):
        make()


def test_strip_without_masks_and_masks_twice_fail():
    model = tiny_models.chain_cnn()
    with pytest.raises(tfmc.UsageError, match=r"^strip: model 'chain' holds no ChannelMask layers; "
                                              r"make it with tfmc.prunable\(model, ratios\) first$"):
        tfmc.strip(model)
    masked = tfmc.prunable(model, {"conv1": 0.5})
    with pytest.raises(tfmc.UsageError, match=r"^prunable: model 'chain' already holds ChannelMask layers "
                                              r"\(conv1_channel_mask\); train it with UpdateMasks or strip it first$"):
        tfmc.prunable(masked, 0.5)
    with pytest.raises(tfmc.UsageError, match=r"^schedule must be a tfmc keep-ratio schedule .*got float$"):
        tfmc.prunable(model, 0.5, schedule=0.5)
    with pytest.raises(tfmc.UsageError, match=r"^UpdateMasks: model 'chain' holds no ChannelMask layers"):
        _fit(_compiled(model), 1, [tfmc.UpdateMasks()])
    masked.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), steps_per_execution=2)
    with pytest.raises(tfmc.UsageError, match=r"^UpdateMasks counts steps in per-batch callbacks: "
                                              r"compile with steps_per_execution=1, not 2$"):
        _fit(masked, 2, [tfmc.UpdateMasks()])


def test_prune_during_training_ends_at_the_target_channels():
    model = tiny_models.concat_cnn()
    x = tiny_models.images(48, seed=6)
    y = np.arange(48) % 10
    small, history = prune_during_training(model, {"branch_b": 0.5, "branch_b2": 0.25}, x, y, epochs=2, batch_size=16)
    assert len(history.history["loss"]) == 2
    assert (small.get_layer("branch_b").filters, small.get_layer("branch_b2").filters) == (8, 8)
    assert small.get_layer("concat_bn").get_weights()[0].shape == (24,)  # 8 + 8 + 8 after the concatenation
    with pytest.raises(tfmc.UsageError, match=r"^epochs must be an integer >= 1, got 0$"):
        prune_during_training(model, 0.5, x, y, epochs=0)


def test_cli_prunes_during_training_and_writes_the_stripped_model(tmp_path, capsys):
    from tfmc import cli

    path = tmp_path / "chain.keras"
    tiny_models.chain_cnn(input_shape=(8, 8, 1)).save(path)
    out = tmp_path / "run"
    args = ["prune", str(path), "--ratios", "0.5", "--data", "digits", "--out", str(out)]
    assert cli.main(args + ["--gradual-epochs", "1"]) == 0
    small = keras.models.load_model(out / "pruned.keras")
    assert [small.get_layer(n).filters for n in ("conv1", "conv2", "conv3")] == [8, 16, 16]
    assert not mask_layers(small)
    assert PrunePolicy.from_json(out / "policy.json").keep_ratios == {"conv1": 0.5, "conv2": 0.5, "conv3": 0.5, "fc1": 0.5}
    assert "| test accuracy (pruned during 1 epochs) | " in (out / "summary.md").read_text()
    assert f"saved {out / 'pruned.keras'}" in capsys.readouterr().out
    for extra, message in [
        (["--gradual-epochs", "0"], "--gradual-epochs must be >= 1, got 0"),
        (["--gradual-epochs", "1", "--finetune-epochs", "2"], "give --gradual-epochs or --finetune-epochs, not both"),
    ]:
        assert cli.main(args + ["--overwrite"] + extra) == 2
        assert message in capsys.readouterr().err
    assert cli.main(["prune", str(path), "--ratios", "0.5", "--gradual-epochs", "1", "--out", str(tmp_path / "x")]) == 2
    assert "--gradual-epochs trains the model while it prunes it: give --data" in capsys.readouterr().err


def test_stripped_model_goes_through_qat_to_an_int_tflite(tmp_path):
    # the README recipe: prune during fit, strip, tfmc.quantize, QAT, export
    masked = _compiled(tfmc.prunable(tiny_models.chain_cnn(), 0.5, round_to=1, schedule=PolynomialDecay(0, 4)))
    _fit(masked, 6, [tfmc.UpdateMasks(update_every=2)])
    small = tfmc.strip(masked)
    assert [small.get_layer(n).filters for n in ("conv1", "conv2", "conv3")] == [8, 12, 16]
    qat = tfmc.quantize(small, tfmc.BitPolicy({"conv1": (8, 8), "conv2": (4, 8)}))
    assert qat.get_layer("quant_conv2").weights[0].shape == small.get_layer("conv2").kernel.shape == (3, 3, 8, 12)
    x = tiny_models.images(32, seed=4)
    tfmc.train.fit(qat, x, np.arange(32) % 10, epochs=1, batch_size=16, copy=False)
    exported = tfmc.export.to_tflite(qat, str(tmp_path / "small.tflite"), mode="qat", representative_data=x)
    assert (exported.layer("conv1").ops, exported.layer("conv1").weights) == (["CONV_2D"], ["int8"])
    assert exported.layer("conv2").weights == ["int4"]
    assert exported.agreement.rate >= 0.75


def test_cli_prunes_during_training_with_a_policy_file_and_with_an_amc_search(tmp_path, capsys):
    from tfmc import cli

    path = tmp_path / "chain.keras"
    model = tiny_models.chain_cnn(input_shape=(8, 8, 1))
    model.save(path)
    policy_path = PrunePolicy({"conv2": 0.5, "fc1": 0.25}, round_to=4).to_json(tmp_path / "policy.json")
    out = tmp_path / "by_policy"
    assert cli.main(["prune", str(path), "--ratios", str(policy_path), "--data", "digits", "--out", str(out),
                     "--gradual-epochs", "1"]) == 0
    small = keras.models.load_model(out / "pruned.keras")
    assert [small.get_layer(n).filters for n in ("conv1", "conv2", "conv3")] == [16, 12, 32]
    assert small.get_layer("fc1").units == 4  # round(20 * 0.25) = 5, to a multiple of 4

    out = tmp_path / "by_amc"
    assert cli.main(["prune", str(path), "--target-macs", "0.5", "--data", "digits", "--out", str(out),
                     "--gradual-epochs", "1", "--episodes", "2", "--warmup", "2", "--calib-images", "64",
                     "--fill-budget", "--search", "ddpg", "--no-progress"]) == 0
    searched = PrunePolicy.from_json(out / "best_policy.json")
    small = keras.models.load_model(out / "pruned.keras")
    assert not mask_layers(small)
    # the AMC result's channel counts and MACs, reached by pruning during training
    assert tfmc.count_macs(small) == searched.metadata["macs"] <= 0.5 * tfmc.count_macs(model)
    assert {n: small.get_layer(n).filters for n in ("conv1", "conv2", "conv3")} == {
        n: searched.metadata["kept_channels"][n] for n in ("conv1", "conv2", "conv3")}
    summary = (out / "summary.md").read_text()
    assert "| AMC policy, reconstructed | " in summary
    assert "Pruned during training with the policy:" in summary
    assert "| test accuracy (pruned during 1 epochs) | " in summary
