"""Initialising UnIVAL from BART and the pretrained backbones (issue 23): synthetic state dicts in each source's layout
(the real files' key names, small shapes), every key mapped or dropped, mapped tensors equal to their source, and
the tensors BART lacks initialised by the original's rules; the full key lists of BART-base and of the released
towers covered; adding a tower; recipes with `init:`."""

from __future__ import annotations

import argparse
import json

import pytest
import torch
from transformers import BartConfig, BartForConditionalGeneration, BartModel

from conftest import shared_path
from tower_layouts import original_audio_shapes, original_image_shapes, original_video_shapes, random_state_dict
from modeling_unival import UnivalConfig, UnivalForConditionalGeneration
from modeling_unival.configuration_unival import RESNET_DEPTHS
from modeling_unival.conversion import (
    add_towers,
    convert_original_audio_tower_key,
    convert_original_image_tower_key,
    convert_original_key,
    convert_original_video_tower_key,
    init_from_parts,
)
from modeling_unival.conversion.state_dict import TIED_KEYS


D_MODEL, LAYERS, FFN, POSITIONS = 32, 2, 64, 128
BART_BASE_ROWS = 51201  # bart.base/model.pt: 50,264 BPE ids, 936 padding words and <mask>
VOCAB = 59457


def tiny_config(**overrides) -> UnivalConfig:
    # BART has one position table size for both sides: the decoder's must match the encoder's.
    return UnivalConfig.from_preset("unival-tiny", max_target_positions=POSITIONS, **overrides)


def fresh_model(seed: int = 0, **overrides) -> UnivalForConditionalGeneration:
    torch.manual_seed(seed)
    return UnivalForConditionalGeneration(tiny_config(**overrides))


def _randn(generator, *shape):
    return torch.randn(shape, generator=generator)


def fairseq_bart_state_dict(rows: int = BART_BASE_ROWS, dim: int = D_MODEL, layers: int = LAYERS, ffn: int = FFN,
                            positions: int = POSITIONS, seed: int = 1) -> dict[str, torch.Tensor]:
    """Every key of fairseq's `bart.base/model.pt` (`checkpoint["model"]`), written out from fairseq's BART
    (`TransformerEncoder` / `TransformerDecoder`, learned positions, embedding layer norms, one tied embedding)."""
    g = torch.Generator().manual_seed(seed)
    embedding = _randn(g, rows, dim)
    state = {"encoder.version": torch.tensor([3.0]), "decoder.version": torch.tensor([3.0])}
    for side in ("encoder", "decoder"):
        state[f"{side}.embed_tokens.weight"] = embedding
        state[f"{side}.embed_positions.weight"] = _randn(g, positions + 2, dim)
        state[f"{side}.layernorm_embedding.weight"] = 1 + 0.1 * _randn(g, dim)
        state[f"{side}.layernorm_embedding.bias"] = 0.1 * _randn(g, dim)
        attentions = ("self_attn", "encoder_attn") if side == "decoder" else ("self_attn",)
        for layer in range(layers):
            prefix = f"{side}.layers.{layer}"
            for attention in attentions:
                for projection in ("k_proj", "v_proj", "q_proj", "out_proj"):
                    state[f"{prefix}.{attention}.{projection}.weight"] = _randn(g, dim, dim)
                    state[f"{prefix}.{attention}.{projection}.bias"] = _randn(g, dim)
                for field in ("weight", "bias"):
                    state[f"{prefix}.{attention}_layer_norm.{field}"] = _randn(g, dim)
            state[f"{prefix}.fc1.weight"], state[f"{prefix}.fc1.bias"] = _randn(g, ffn, dim), _randn(g, ffn)
            state[f"{prefix}.fc2.weight"], state[f"{prefix}.fc2.bias"] = _randn(g, dim, ffn), _randn(g, dim)
            for field in ("weight", "bias"):
                state[f"{prefix}.final_layer_norm.{field}"] = _randn(g, dim)
    state["decoder.output_projection.weight"] = embedding
    return state


def save_fairseq_bart(path, state=None) -> str:
    """A fairseq checkpoint file as `bart.base/model.pt` is: the weights plus arguments and training bookkeeping."""
    checkpoint = {"model": state if state is not None else fairseq_bart_state_dict(),
                  "args": argparse.Namespace(arch="bart_base", encoder_embed_dim=D_MODEL),
                  "optimizer_history": [{"criterion_name": "CrossEntropyCriterion", "num_updates": 500000}],
                  "extra_state": {"epoch": 1}}
    torch.save(checkpoint, path)
    return str(path)


@pytest.fixture(scope="module")
def bart_file(tmp_path_factory):
    return save_fairseq_bart(tmp_path_factory.mktemp("bart") / "model.pt")


# ---------------------------------------------------------------------------------------------------------------------
# text: fairseq BART
# ---------------------------------------------------------------------------------------------------------------------
def test_fairseq_bart_every_key_is_loaded_or_dropped_and_equals_its_source(bart_file):
    model, fresh = fresh_model(), fresh_model()
    source = fairseq_bart_state_dict()
    report = init_from_parts(model, text=bart_file, seed=5)["text"]
    assert report.layout == "fairseq"
    assert set(report.dropped) == {"encoder.version", "decoder.version"}
    params = model.state_dict()
    for key, value in source.items():
        name = convert_original_key(key)
        if name is None:
            assert key in report.dropped or key.endswith(("embed_tokens.weight", "output_projection.weight"))
            continue
        assert name in report.loaded
        torch.testing.assert_close(params[name], value, rtol=0, atol=0)
    # the shared embedding: BART's rows in place (all 51,201 of bart.base), then N(0, d^-0.5) rows drawn with the seed
    shared = model.get_input_embeddings().weight
    torch.testing.assert_close(shared[:BART_BASE_ROWS], source["encoder.embed_tokens.weight"], rtol=0, atol=0)
    expected = torch.randn((VOCAB - BART_BASE_ROWS, D_MODEL), generator=torch.Generator().manual_seed(5)) * D_MODEL**-0.5
    torch.testing.assert_close(shared[BART_BASE_ROWS:], expected, rtol=0, atol=0)
    assert model.lm_head.weight.data_ptr() == shared.data_ptr()  # still tied
    # everything BART lacks keeps the freshly built model's values, and says so
    fresh_params = fresh.state_dict()
    for name, rule in report.initialised.items():
        if name.startswith("model.shared.weight["):
            continue
        torch.testing.assert_close(params[name], fresh_params[name], rtol=0, atol=0)
        assert "freshly built" in rule
    for name in ("model.encoder.layers.0.attn_ln.weight", "model.decoder.layers.1.cross_attn_ln.weight",
                 "model.encoder.layers.1.mlp.ffn_layernorm.weight", "model.decoder.layers.0.self_attn.c_attn"):
        assert torch.equal(params[name], torch.ones_like(params[name])) and report.initialised[name].startswith("ones")
    assert torch.equal(params["model.encoder.layers.0.attn_ln.bias"], torch.zeros(D_MODEL))
    table = params["model.encoder.token_rel_pos_tables.0.weight"]
    assert report.initialised["model.encoder.token_rel_pos_tables.0.weight"].startswith("normal(0, 0.02)")
    assert abs(table.std().item() - 0.02) < 0.005
    # the report covers the whole transformer, and leaves the towers alone
    transformer = {n for n in params if "_tower." not in n and n not in TIED_KEYS}
    assert transformer == set(report.loaded) | {n for n in report.initialised if "[" not in n}
    for name in params:
        if "_tower." in name:
            torch.testing.assert_close(params[name], fresh_params[name], rtol=0, atol=0)


def test_legacy_layer_norm_names_are_renamed_as_the_original_does(tmp_path):
    state = fairseq_bart_state_dict()
    for side, names in (("encoder", ("self_attn_layer_norm", "final_layer_norm")),
                        ("decoder", ("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm"))):
        for index, name in enumerate(names):
            for field in ("weight", "bias"):
                state[f"{side}.layers.0.layer_norms.{index}.{field}"] = state.pop(f"{side}.layers.0.{name}.{field}")
    model = fresh_model()
    init_from_parts(model, text=save_fairseq_bart(tmp_path / "legacy.pt", state))
    torch.testing.assert_close(model.model.decoder.layers[0].encoder_attn_layer_norm.weight,
                               state["decoder.layers.0.layer_norms.1.weight"], rtol=0, atol=0)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(dim=48), r"token embeddings have 48 dimensions, the model 32|has shape \(48"),
        (dict(layers=3), r"encoder\.layers\.2\..* maps to .*which this model does not have"),
        (dict(rows=VOCAB + 1), r"59458 token embeddings, more than the model's vocabulary of 59457"),
        (dict(positions=256), r"embed_positions\.weight has shape \(258, 32\).*max_source_positions"),
    ],
)
def test_a_bart_of_another_shape_is_refused_with_the_key_named(tmp_path, change, message):
    path = save_fairseq_bart(tmp_path / "bart.pt", fairseq_bart_state_dict(**change))
    model = fresh_model()
    with pytest.raises(ValueError, match=message):
        init_from_parts(model, text=path)
    for (name, value), fresh in zip(model.state_dict().items(), fresh_model().state_dict().values()):
        assert torch.equal(value, fresh), f"{name} changed by a refused file"


def test_a_key_bart_does_not_have_is_refused(tmp_path):
    state = fairseq_bart_state_dict()
    state["encoder.layers.0.adapter.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"'encoder\.layers\.0\.adapter\.weight' has no counterpart in UnIVAL"):
        init_from_parts(fresh_model(), text=save_fairseq_bart(tmp_path / "bart.pt", state))


def test_untied_bart_embeddings_are_refused(tmp_path):
    state = fairseq_bart_state_dict()
    state["decoder.output_projection.weight"] = state["decoder.output_projection.weight"] + 1
    with pytest.raises(ValueError, match="ties all token embeddings"):
        init_from_parts(fresh_model(), text=save_fairseq_bart(tmp_path / "bart.pt", state))


# ---------------------------------------------------------------------------------------------------------------------
# text: transformers BART
# ---------------------------------------------------------------------------------------------------------------------
def _tiny_bart(cls):
    torch.manual_seed(3)
    config = BartConfig(vocab_size=50265, d_model=D_MODEL, encoder_layers=LAYERS, decoder_layers=LAYERS,
                        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=FFN,
                        decoder_ffn_dim=FFN, max_position_embeddings=POSITIONS)
    return cls(config).eval()


@pytest.mark.parametrize("cls", [BartForConditionalGeneration, BartModel])
def test_transformers_bart_folder_covers_every_key(tmp_path, cls):
    bart = _tiny_bart(cls)
    bart.save_pretrained(tmp_path / "bart")
    model = fresh_model()
    report = init_from_parts(model, text=tmp_path / "bart")["text"]
    assert report.layout == "transformers"
    bart_state = bart.state_dict()
    params = model.state_dict()
    prefix = "model." if cls is BartForConditionalGeneration else ""
    embedding_keys = {f"{prefix}shared.weight", f"{prefix}encoder.embed_tokens.weight",
                      f"{prefix}decoder.embed_tokens.weight", "lm_head.weight"}
    covered = 0
    for key, value in bart_state.items():  # the full key list of the transformers model
        if key in embedding_keys:
            torch.testing.assert_close(params["model.shared.weight"][:50265], value, rtol=0, atol=0)
        elif key == "final_logits_bias":
            assert key in report.dropped
        else:
            name = convert_original_key(key.removeprefix("model."))
            assert name in report.loaded, key
            torch.testing.assert_close(params[name], value, rtol=0, atol=0)
        covered += 1
    assert covered == len(bart_state)
    # BART's ids are UnIVAL's first 50,265 (<mask> = 50264): the <code_i> / <bin_i> rows are new
    assert "model.shared.weight[50265:59457]" in report.initialised


def test_the_same_bart_in_both_layouts_gives_the_same_model(tmp_path):
    """A transformers BART converted from fairseq (the same tensors under transformers' names) initialises UnIVAL as
    the fairseq file does."""
    state = fairseq_bart_state_dict(rows=50265)
    bart = _tiny_bart(BartForConditionalGeneration)
    with torch.no_grad():
        for key, value in bart.state_dict().items():
            name = key.removeprefix("model.")
            source = {"shared.weight": "encoder.embed_tokens.weight", "encoder.embed_tokens.weight": "encoder.embed_tokens.weight",
                      "decoder.embed_tokens.weight": "encoder.embed_tokens.weight",
                      "lm_head.weight": "encoder.embed_tokens.weight"}.get(name, name)
            if source in state:
                value.copy_(state[source])
    bart.save_pretrained(tmp_path / "hf")
    from_hf, from_fairseq = fresh_model(), fresh_model()
    init_from_parts(from_hf, text=tmp_path / "hf", seed=2)
    init_from_parts(from_fairseq, text=save_fairseq_bart(tmp_path / "fs.pt", state), seed=2)
    for (name, a), (_, b) in zip(from_hf.state_dict().items(), from_fairseq.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_a_hub_id_is_downloaded(tmp_path):
    """`text="owner/bart"` through `huggingface_hub` (a local stand-in for the hub, in a subprocess: HF_ENDPOINT must
    be set before huggingface_hub is imported)."""
    import subprocess
    import textwrap

    from checkpoint_support import PYTHON, subprocess_env
    from conftest import REPO_ROOT
    from hub_server import LocalHub

    _tiny_bart(BartModel).save_pretrained(tmp_path / "bart")
    script = textwrap.dedent(f"""
        import torch
        from huggingface_hub import HfApi
        from safetensors.torch import load_file
        from modeling_unival import UnivalConfig, UnivalForConditionalGeneration
        from modeling_unival.conversion import init_from_parts
        api = HfApi()
        api.create_repo("someone/bart-tiny")
        api.upload_folder(repo_id="someone/bart-tiny", folder_path={str(tmp_path / "bart")!r})
        model = UnivalForConditionalGeneration(UnivalConfig.from_preset("unival-tiny", max_target_positions=128))
        report = init_from_parts(model, text="someone/bart-tiny")
        source = load_file({str(tmp_path / "bart" / "model.safetensors")!r})
        assert torch.equal(model.model.encoder.layers[0].mlp.fc1.weight, source["encoder.layers.0.fc1.weight"])
        print("LAYOUT", report["text"].layout, len(report["text"].loaded))
    """)
    with LocalHub(tmp_path / "storage", token="hf_local_test") as hub:
        env = subprocess_env(tmp_path, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_HUB_DISABLE_XET="1",
                             HF_TOKEN="hf_local_test", HF_HOME=str(tmp_path / "hf_home"))
        result = subprocess.run([PYTHON, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LAYOUT transformers 91" in result.stdout  # BartModel: every tensor but the three tied copies, + shared


def test_text_sources_that_are_not_bart(tmp_path):
    (tmp_path / "t5").mkdir()
    (tmp_path / "t5" / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(ValueError, match=r"a 't5' model; UnIVAL initialises from BART"):
        init_from_parts(fresh_model(), text=tmp_path / "t5")
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        init_from_parts(fresh_model(), text=tmp_path / "missing" / "model.pt")
    with pytest.raises(OSError, match=r"'facebook/bart-base' is no local file or folder, and the hub cannot give it"):
        init_from_parts(fresh_model(), text="facebook/bart-base")  # offline in tests
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        init_from_parts(fresh_model(), text=tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="name at least one part"):
        init_from_parts(fresh_model())


# ---------------------------------------------------------------------------------------------------------------------
# towers: files in the layouts the original reads, at the tiny model's size
# ---------------------------------------------------------------------------------------------------------------------
FRONT_END_RENAMES = {"front_end.stft_kernel_real": "spectrogram_extractor.stft.conv_real.weight",
                     "front_end.stft_kernel_imag": "spectrogram_extractor.stft.conv_imag.weight",
                     "front_end.mel_filters": "logmel_extractor.melW"}


def tower_file_state(config: UnivalConfig, part: str, seed: int = 4) -> dict[str, torch.Tensor]:
    """A backbone state dict in its source's own key names, with the classifier heads the released files have."""
    if part == "image":
        shapes = original_image_shapes(config.image_config)
    elif part == "video":
        video = config.video_config
        shapes = original_video_shapes(video.depths, video.hidden_sizes, video.cardinality, video.embedding_size,
                                       fc=True)
    else:
        shapes = original_audio_shapes(config.audio_config)
    return random_state_dict(shapes, seed)


def save_tower_file(path, part: str, state: dict) -> str:
    """The containers and prefixes of the released files: timm's plain state dict; kenshohara's
    `{"state_dict": {"module." ...}, "epoch", "arch", "optimizer"}`; PANN's `{"model": ..., "iteration"}`."""
    if part == "video":
        state = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 200, "arch": "resnext-101",
                 "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}}
    elif part == "audio":
        state = {"model": state, "iteration": 660000}
    torch.save(state, path)
    return str(path)


def _port_name(part: str, key: str) -> str | None:
    convert = {"image": convert_original_image_tower_key, "video": convert_original_video_tower_key,
               "audio": convert_original_audio_tower_key}[part]
    return convert(key)


@pytest.mark.parametrize("part", ["image", "video", "audio"])
def test_tower_files_load_every_tensor(tmp_path, part):
    model, fresh = fresh_model(), fresh_model()
    state = tower_file_state(model.config, part)
    report = init_from_parts(model, **{part: save_tower_file(tmp_path / f"{part}.pth", part, state)})[part]
    tower = getattr(model.model.encoder, f"{part}_tower").state_dict()
    front_end = set(FRONT_END_RENAMES.values())
    for key, value in state.items():
        name = _port_name(part, key)
        if name is None:
            assert "classifier" in report.dropped[key] or "AudioSet" in report.dropped[key]
        elif key in front_end:  # the model keeps its own 48 kHz front end
            assert "own STFT / mel front end" in report.dropped[key]
        else:
            torch.testing.assert_close(tower[name], value, rtol=0, atol=0)
    # the rest of the model is untouched
    prefix = f"model.encoder.{part}_tower."
    for (name, value), original in zip(model.state_dict().items(), fresh.state_dict().values()):
        if not name.startswith(prefix) or name.removeprefix(prefix) in FRONT_END_RENAMES:
            assert torch.equal(value, original), name
    expected_dropped = {"image": {"fc.weight", "fc.bias"}, "video": {"fc.weight", "fc.bias"},
                        "audio": {"fc1.weight", "fc1.bias", "fc_audioset.weight", "fc_audioset.bias", *front_end}}
    assert set(report.dropped) == expected_dropped[part]


def test_audio_front_end_from_the_file_as_the_original_loads_it(tmp_path):
    model = fresh_model()
    state = tower_file_state(model.config, "audio")
    init_from_parts(model, audio=save_tower_file(tmp_path / "pann.pth", "audio", state), audio_front_end="file")
    tower = model.model.encoder.audio_tower.state_dict()
    for ours, theirs in FRONT_END_RENAMES.items():
        torch.testing.assert_close(tower[ours], state[theirs], rtol=0, atol=0)


def test_audio_file_with_other_mel_bins_drops_bn0_and_the_filter_bank(tmp_path):
    """The original drops `logmel_extractor` and `bn0` tensors when the mel-bin counts differ."""
    model, fresh = fresh_model(), fresh_model()
    other = UnivalConfig.from_preset("unival-tiny").audio_config
    other.num_mel_bins = 32
    state = random_state_dict(original_audio_shapes(other), seed=2)
    report = init_from_parts(model, audio=save_tower_file(tmp_path / "pann.pth", "audio", state),
                             audio_front_end="file")["audio"]
    assert {k for k, why in report.dropped.items() if "32 mel bins" in why} == {
        "logmel_extractor.melW", "bn0.weight", "bn0.bias", "bn0.running_mean", "bn0.running_var",
        "bn0.num_batches_tracked"}
    torch.testing.assert_close(model.model.encoder.audio_tower.bn0.weight, fresh.model.encoder.audio_tower.bn0.weight)
    torch.testing.assert_close(model.model.encoder.audio_tower.conv_block1.conv1.weight, state["conv_block1.conv1.weight"])


@pytest.mark.parametrize("part", ["image", "video", "audio"])
def test_a_tower_file_of_another_architecture_is_refused(tmp_path, part):
    model = fresh_model()
    state = tower_file_state(model.config, part)
    deeper = {k.replace("layer1.0.", "layer1.1."): v for k, v in state.items() if k.startswith("layer1.0.")}
    if part == "audio":
        state["conv_block1.conv1.weight"] = torch.zeros(3, 1, 5, 5)
        message = r"conv_block1\.conv1\.weight has shape \(3, 1, 5, 5\)"
    else:
        state.update(deeper)
        message = r"layer1\.1\..* has no place in the model's .* tower \(the file has \(2, 1(, 1, 1)?\) blocks per stage\)"
    path = save_tower_file(tmp_path / "tower.pth", part, state)
    with pytest.raises(ValueError, match=message):
        init_from_parts(model, **{part: path})
    shallower = {k: v for k, v in tower_file_state(model.config, part).items() if not k.startswith(("layer2.", "conv_block2."))}
    with pytest.raises(ValueError, match=rf"does not cover the model's {part} tower"):
        init_from_parts(model, **{part: save_tower_file(tmp_path / "short.pth", part, shallower)})
    stray = {**tower_file_state(model.config, part), "head.weight": torch.zeros(2)}
    with pytest.raises(ValueError, match=rf"'head\.weight' is not a key of the {part} backbone"):
        init_from_parts(model, **{part: save_tower_file(tmp_path / "stray.pth", part, stray)})


def test_a_tower_the_model_lacks_and_unsafe_files_are_refused(tmp_path):
    model = fresh_model(video_config=None)
    path = save_tower_file(tmp_path / "video.pth", "video", tower_file_state(fresh_model().config, "video"))
    with pytest.raises(ValueError, match=r"the model has no video tower: add one first"):
        init_from_parts(model, video=path)

    class Payload:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"conv1.weight": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="refusing to unpickle .*Nothing from the file was executed"):
        init_from_parts(fresh_model(), image=tmp_path / "evil.pth")


def test_safetensors_tower_file(tmp_path):
    from safetensors.torch import save_file

    model = fresh_model()
    state = tower_file_state(model.config, "image")
    save_file(state, tmp_path / "resnet.safetensors")
    init_from_parts(model, image=tmp_path / "resnet.safetensors")
    torch.testing.assert_close(model.model.encoder.image_tower.embedder.embedder.convolution.weight,
                               state["conv1.weight"], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------------
# the released sizes: the full key lists of BART-base and of the released towers are covered (meta tensors)
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def released_model():
    with torch.device("meta"):
        return UnivalForConditionalGeneration(UnivalConfig.from_preset("unival-base"))


def _meta(shapes: dict) -> dict[str, torch.Tensor]:
    return {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}


def test_bart_base_key_list_is_covered_at_the_released_size(released_model):
    from modeling_unival.conversion.parts import load_text_state

    state = fairseq_bart_state_dict(rows=BART_BASE_ROWS, dim=768, layers=6, ffn=3072, positions=1024)
    report = load_text_state(released_model, {k: v.to("meta") for k, v in state.items()}, "bart.base/model.pt")
    assert len(report.loaded) == len(state) - 2 - 3 + 1  # not the two versions, one shared of three copies
    transformer = {n for n in released_model.state_dict() if "_tower." not in n and n not in TIED_KEYS}
    assert transformer == set(report.loaded) | {n for n in report.initialised if "[" not in n}
    assert report.initialised["model.shared.weight[51201:59457]"].startswith("normal(0, d_model^-0.5 = 0.0361)")


def _depths_of(names) -> tuple[int, ...]:
    blocks = {}
    for name in names:
        if ".encoder.stages." in name:
            stage, block = name.split(".encoder.stages.", 1)[1].split(".")[0:3:2]
            blocks.setdefault(int(stage), set()).add(int(block))
    return tuple(len(blocks[stage]) for stage in sorted(blocks))


def _released_tower_shapes(part: str) -> dict[str, tuple]:
    """The original's own key list where the shared tower fixtures record it (video, audio), else written out."""
    config = UnivalConfig.from_preset("unival-base")
    if part == "image":
        return original_image_shapes(config.image_config)
    fixture = torch.load(shared_path("fixtures", "towers", "towers.pt"), weights_only=True)
    entry = fixture["video_resnext101_4stage" if part == "video" else "audio_cnn14"]
    shapes = {key: tuple(shape) for key, shape in entry["recipe_keys"]}
    shapes.update({key: tuple(value.shape) for key, value in entry["buffers"].items()})
    if part == "video":
        shapes.update({"fc.weight": (400, 2048), "fc.bias": (400,)})  # the Kinetics-400 classifier
    else:
        shapes.update({"fc1.weight": (2048, 2048), "fc1.bias": (2048,), "fc_audioset.weight": (527, 2048),
                       "fc_audioset.bias": (527,)})
    return shapes


@pytest.mark.parametrize("resnet", ["resnet50", "resnet152"])
def test_other_resnet_depths_are_covered(resnet):
    """The original's `--resnet-type` choices: a ResNet-50 / -152 file initialises a model built with that depth."""
    from modeling_unival.conversion.parts import load_tower_state

    with torch.device("meta"):
        model = UnivalForConditionalGeneration(
            UnivalConfig.from_preset("unival-base-image", image_config={"depths": RESNET_DEPTHS[resnet]}))
    shapes = original_image_shapes(model.config.image_config)
    report = load_tower_state(model, "image", _meta(shapes), f"{resnet}.pth")
    assert _depths_of(report.loaded) == RESNET_DEPTHS[resnet] and set(report.dropped) == {"fc.weight", "fc.bias"}
    assert len(report.loaded) == len(model.model.encoder.image_tower.state_dict())


@pytest.mark.parametrize("part", ["image", "video", "audio"])
def test_released_tower_key_lists_are_covered(released_model, part):
    from modeling_unival.conversion.parts import load_tower_state

    shapes = _released_tower_shapes(part)
    report = load_tower_state(released_model, part, _meta(shapes), f"{part} file")
    tower = getattr(released_model.model.encoder, f"{part}_tower").state_dict()
    covered = {name.split("_tower.", 1)[1] for name in report.loaded} | {
        name.split("_tower.", 1)[1] for name in report.initialised}
    assert covered == set(tower)
    assert len(report.loaded) + len(report.dropped) == len(shapes)
    classifiers = {"image": {"fc.weight", "fc.bias"}, "video": {"fc.weight", "fc.bias"},
                   "audio": {"fc1.weight", "fc1.bias", "fc_audioset.weight", "fc_audioset.bias"}}[part]
    assert classifiers <= set(report.dropped)
    if part == "image":
        assert _depths_of(report.loaded) == RESNET_DEPTHS["resnet101"]


# ---------------------------------------------------------------------------------------------------------------------
# adding a tower, and recipes that start from pretrained parts
# ---------------------------------------------------------------------------------------------------------------------
TINY_VIDEO = {"embedding_size": 8, "hidden_sizes": [64, 64], "depths": [1, 1], "cardinality": 4}


def test_add_towers_keeps_every_weight_and_adds_a_fresh_tower():
    model = fresh_model(video_config=None, audio_config=None)
    extended = add_towers(model, video=TINY_VIDEO, audio="cnn6", seed=3)
    assert extended.config.video_config.depths == [1, 1] and extended.config.audio_config.block_type == "conv5x5"
    old = model.state_dict()
    for name, value in extended.state_dict().items():
        if name in old:
            assert torch.equal(value, old[name]), name
        else:
            assert name.startswith(("model.encoder.video_", "model.encoder.audio_", "model.encoder.embed_video_",
                                    "model.encoder.embed_audio_")), name
    assert extended.lm_head.weight.data_ptr() == extended.get_input_embeddings().weight.data_ptr()
    again = add_towers(model, video=TINY_VIDEO, audio="cnn6", seed=3)
    assert all(torch.equal(a, b) for a, b in zip(extended.state_dict().values(), again.state_dict().values()))
    with pytest.raises(ValueError, match="already has a video tower"):
        add_towers(extended, video=TINY_VIDEO)
    with pytest.raises(ValueError, match=r"unknown video backbone 'resnext101'; choose one of \['all_resnext101', 'resnext50'\]"):
        add_towers(model, video="resnext101")
    with pytest.raises(ValueError, match="every model has an image tower"):
        from modeling_unival.conversion import tower_config

        tower_config("image", {})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from training.data.synthetic import generate_world

    path = tmp_path_factory.mktemp("world") / "world"
    generate_world(path, num_examples=80, seed=1)
    return path


def _two_stage_recipe(root, world, bart, image, video) -> dict:
    def stage(name, tasks, steps, **extra):
        return {"name": name, "datasets": [{"source": "world", "tasks": tasks}], "eval_max_examples": 2,
                "training": {"max_steps": steps, "per_device_train_batch_size": 4, "learning_rate": 1e-3,
                             "save_steps": 1000, "seed": 0}, **extra}

    return {
        "name": "from-parts", "seed": 0,
        "model": {"preset": "unival-tiny",
                  "overrides": {"max_target_positions": POSITIONS, "video_config": None, "audio_config": None},
                  "init": {"text": bart, "image": image}},
        "processor": {"image_size": 64, "num_frames": 4, "video_crop_size": 32},
        "sources": {"world": {"type": "synthetic", "path": str(world), "num_examples": 80, "seed": 1}},
        "stages": [stage("s1_image", ["caption", "vqa"], 3),
                   stage("s2_video", ["caption", "video_caption"], 2,
                         model={"towers": {"video": TINY_VIDEO}, "init": {"video": video}})],
    }


def test_two_stage_recipe_from_pretrained_parts(tmp_path, world, bart_file):
    from safetensors.torch import load_file

    from generation_checks import assert_generates_without_warnings
    from training.data.synthetic import load_world
    from training.pretrain import run
    from training.recipe import parse_recipe
    from training.stages import _stage_start, initial_model, prepare_stage_model

    config = fresh_model().config
    image_state, video_state = tower_file_state(config, "image"), tower_file_state(config, "video", seed=6)
    image = save_tower_file(tmp_path / "resnet.pth", "image", image_state)
    video = save_tower_file(tmp_path / "kinetics.pth", "video", video_state)
    raw = _two_stage_recipe(tmp_path, world, bart_file, image, video)
    (tmp_path / "recipe.json").write_text(json.dumps(raw))
    recipe = parse_recipe(raw)

    # stage 1 starts from BART and the ResNet file
    start = initial_model(recipe)
    assert start.config.video_config is None
    bart = fairseq_bart_state_dict()
    torch.testing.assert_close(start.model.encoder.layers[1].mlp.fc2.weight, bart["encoder.layers.1.fc2.weight"],
                               rtol=0, atol=0)
    torch.testing.assert_close(start.model.encoder.image_tower.embedder.embedder.convolution.weight,
                               image_state["conv1.weight"], rtol=0, atol=0)

    output = tmp_path / "run"
    summaries = run(["--recipe", str(tmp_path / "recipe.json"), "--output_dir", str(output), "--report_to", "none"])
    assert [s["stage"] for s in summaries] == ["s1_image", "s2_video"]

    # stage 2's start: the video tower equals the Kinetics file, everything else stage 1's final weights
    stage1 = load_file(output / "s1_image" / "final" / "model.safetensors")
    second = prepare_stage_model(recipe.stages[1], _stage_start(recipe, 1, output), recipe.seed)
    tower = second.model.encoder.video_tower.state_dict()
    for key, value in video_state.items():
        if not key.startswith("fc."):
            torch.testing.assert_close(tower[key], value, rtol=0, atol=0, msg=key)
    state = second.state_dict()
    for name, value in stage1.items():
        torch.testing.assert_close(state[name], value, rtol=0, atol=0, msg=name)
    assert {n for n in state if n not in stage1 and n not in TIED_KEYS} == {
        n for n in state if n.startswith(("model.encoder.video_", "model.encoder.embed_video_"))}

    # the trained stage-2 model reloads with its video tower and captions a video
    final = output / "s2_video" / "final"
    reloaded = UnivalForConditionalGeneration.from_pretrained(final)
    assert reloaded.config.video_config.depths == [1, 1]
    trained = load_file(final / "model.safetensors")
    assert any(not torch.equal(trained[k], stage1[k]) for k in stage1)  # stage 2 trained
    videos = [e for e in load_world(world, splits=["train"])["train"] if e["task"] == "video_caption"][:2]
    assert_generates_without_warnings(final, videos, "video_caption")


def test_recipe_init_sections_are_checked():
    from training.recipe import parse_recipe

    base = {"sources": {"w": {"type": "synthetic"}}, "stages": [{"name": "s", "datasets": [{"source": "w"}]}]}
    with pytest.raises(ValueError, match=r"model init: unknown key\(s\) \['txt'\] \(did you mean 'text'\?\)"):
        parse_recipe({**base, "model": {"preset": "unival-tiny", "init": {"txt": "bart.pt"}}})
    with pytest.raises(ValueError, match=r"audio_front_end must be one of \('model', 'file'\)"):
        parse_recipe({**base, "model": {"init": {"audio": "pann.pth", "audio_front_end": "librosa"}}})
    stage = {"name": "s", "datasets": [{"source": "w"}], "model": {"towers": {"vidoe": "all_resnext101"}}}
    with pytest.raises(ValueError, match=r"stage 's' model towers: unknown key\(s\) \['vidoe'\] \(did you mean 'video'\?\)"):
        parse_recipe({**base, "stages": [stage]})
    shipped = __import__("training.recipe", fromlist=["load_recipe"]).load_recipe("unival_original")
    assert set(shipped.model["init"]) == {"text", "image"}
    assert shipped.stages[1].model["towers"] == {"video": "all_resnext101"} and "video" in shipped.stages[1].model["init"]


def test_command_line_writes_a_model_and_its_report(tmp_path, bart_file):
    from hub_upload.init_from_parts import REPORT_FILE, main

    image = save_tower_file(tmp_path / "resnet.pth", "image", tower_file_state(fresh_model().config, "image"))
    out = tmp_path / "init"
    assert main(["--preset", "unival-tiny", "--text", bart_file, "--image", image, "--out", str(out)]) == 1  # positions
    assert not out.exists()
    small = fairseq_bart_state_dict(positions=128 - 64)  # the tiny preset's decoder: 64 positions; encoder 128
    small["encoder.embed_positions.weight"] = torch.randn(130, D_MODEL)
    assert main(["--preset", "unival-tiny", "--text", save_fairseq_bart(tmp_path / "small.pt", small),
                 "--image", image, "--out", str(out)]) == 0
    report = json.loads((out / REPORT_FILE).read_text())
    assert set(report) == {"text", "image"} and report["image"]["dropped"] == {
        "fc.weight": "the ImageNet classifier (UnIVAL uses the last stage's feature map)",
        "fc.bias": "the ImageNet classifier (UnIVAL uses the last stage's feature map)"}
    reloaded = UnivalForConditionalGeneration.from_pretrained(out)
    torch.testing.assert_close(reloaded.model.decoder.embed_positions.weight, small["decoder.embed_positions.weight"])
    assert main(["--preset", "unival-tiny", "--text", bart_file, "--out", str(out)]) == 1  # not empty
