"""Tiny random checkpoints of every transformers audio family this tool feeds, saved like real ones.

Each is built from its config class, saved with ``save_pretrained`` (config, weights, preprocessor config) and
loaded back by the tests through ``hf:<folder>``, the path a user's checkpoint takes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
CONV = {"conv_dim": (16, 16, 16), "conv_stride": (5, 4, 4), "conv_kernel": (10, 8, 8)}
POS = {"num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}

# family: (config class, model class, extra config fields); the waveform families share one extractor.
WAVEFORM: dict[str, tuple[str, str, dict[str, Any]]] = {
    "hubert": ("HubertConfig", "HubertModel", CONV | POS),
    "wavlm": ("WavLMConfig", "WavLMModel", CONV | POS | {"num_buckets": 32, "max_bucket_distance": 64}),
    "data2vec-audio": (
        "Data2VecAudioConfig",
        "Data2VecAudioModel",
        CONV | {"num_conv_pos_embeddings": 5, "num_conv_pos_embedding_groups": 4, "conv_pos_kernel_size": 5},
    ),
    "unispeech": ("UniSpeechConfig", "UniSpeechModel", CONV | POS),
    "unispeech-sat": ("UniSpeechSatConfig", "UniSpeechSatModel", CONV | POS),
    "sew": ("SEWConfig", "SEWModel", CONV | POS | {"squeeze_factor": 2}),
    "sew-d": (
        "SEWDConfig",
        "SEWDModel",
        CONV | POS | {"squeeze_factor": 2, "position_buckets": 16, "max_position_embeddings": 64},
    ),
    "wav2vec2-conformer": ("Wav2Vec2ConformerConfig", "Wav2Vec2ConformerModel", CONV | POS),
}
FAMILIES = [*WAVEFORM, "wav2vec2-bert", "whisper", "ast"]


def save_tiny(family: str, path: Path, seed: int = 0, layers: int = 2) -> Path:
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    small = {**SMALL, "num_hidden_layers": layers}
    if family in WAVEFORM:
        config_name, model_name, extra = WAVEFORM[family]
        getattr(tf, model_name)(getattr(tf, config_name)(**small, **extra)).save_pretrained(path)
        tf.Wav2Vec2FeatureExtractor(feature_size=1, do_normalize=True, return_attention_mask=True).save_pretrained(path)
    elif family == "wav2vec2-bert":
        config = tf.Wav2Vec2BertConfig(**small, feature_projection_input_dim=160, conv_depthwise_kernel_size=5)
        tf.Wav2Vec2BertModel(config).save_pretrained(path)
        tf.SeamlessM4TFeatureExtractor(feature_size=80, num_mel_bins=80, stride=2).save_pretrained(path)
    elif family == "whisper":  # a 2 s input instead of 30 s: 200 mel frames -> 100 encoder states
        sizes = {"d_model": 32, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "num_mel_bins": 16, "vocab_size": 64}
        heads = {"encoder_attention_heads": 2, "decoder_attention_heads": 2, "decoder_layers": 1}
        positions = {"max_source_positions": 100, "max_target_positions": 32}
        tokens = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "decoder_start_token_id": 3}
        suppress: dict[str, Any] = {"suppress_tokens": [], "begin_suppress_tokens": []}
        config = tf.WhisperConfig(encoder_layers=layers, **sizes, **heads, **positions, **tokens, **suppress)
        tf.WhisperForConditionalGeneration(config).save_pretrained(path)
        tf.WhisperFeatureExtractor(feature_size=16, chunk_length=2).save_pretrained(path)
    elif family == "ast":  # 200 filterbank frames (2 s) of 32 bands instead of 1024 x 128
        config = tf.ASTConfig(
            **small, patch_size=16, frequency_stride=10, time_stride=10, max_length=200, num_mel_bins=32
        )
        tf.ASTModel(config).save_pretrained(path)
        tf.ASTFeatureExtractor(num_mel_bins=32, max_length=200).save_pretrained(path)
    else:
        raise ValueError(family)
    return path


CLAP_WORDS = ["this", "is", "a", "sound", "of", "high", "low", "tone", "beep", "hum", "bird", "dog", "rain"]


def save_tiny_clap(path: Path, seed: int = 0, *, fused: bool = False) -> Path:
    """A tiny random ``ClapModel`` (HTSAT audio tower, RoBERTa text tower) with its processor: a 48 kHz
    feature extractor (2 s input, repeat-padded) and a word-level tokenizer, saved as a LAION checkpoint is."""
    import torch
    import transformers as tf
    from tokenizers import Tokenizer, models, pre_tokenizers

    torch.manual_seed(seed)
    audio = {
        "spec_size": 64, "num_mel_bins": 16, "window_size": 4, "patch_size": 4, "patch_stride": (4, 4),
        "hidden_size": 32, "depths": (1, 1), "num_attention_heads": (2, 2), "patch_embeds_hidden_size": 16,
        "projection_dim": 16, "num_hidden_layers": 2,
        **({"enable_fusion": True, "fusion_type": "aff_2d"} if fused else {}),
    }  # fmt: skip
    text = {
        "vocab_size": 32, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
        "intermediate_size": 32, "max_position_embeddings": 40, "projection_dim": 16,
    }  # fmt: skip
    tf.ClapModel(tf.ClapConfig(audio_config=audio, text_config=text, projection_dim=16)).save_pretrained(path)
    extractor = tf.ClapFeatureExtractor(
        feature_size=16,
        sampling_rate=48_000,
        hop_length=480,
        max_length_s=2,
        truncation="fusion" if fused else "rand_trunc",
    )
    vocab = {w: i for i, w in enumerate(["<s>", "<pad>", "</s>", "<unk>", *CLAP_WORDS])}
    words = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = tf.PreTrainedTokenizerFast(
        tokenizer_object=words, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    tf.ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(path)
    return path
