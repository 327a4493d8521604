"""InternVideo2 in plain PyTorch: chat encoder + Q-Former bridge, stage-2 retrieval model, loading, conversion."""

from model.internvideo2.bridge import BridgeConfig, QFormerBridge
from model.internvideo2.chat import FramesError, InternVideo2ChatEncoder, preprocess_frames
from model.internvideo2.convert import convert_chat_checkpoint, ensure_converted, merge_lora
from model.internvideo2.loading import CheckpointError, build_chat_encoder, build_retrieval
from model.internvideo2.retrieval import InternVideo2Retrieval, RetrievalConfig
from model.internvideo2.vit import PRESETS, VisionTransformer, VisionTransformerConfig, vit_preset

__all__ = [
    "PRESETS",
    "BridgeConfig",
    "CheckpointError",
    "FramesError",
    "InternVideo2ChatEncoder",
    "InternVideo2Retrieval",
    "QFormerBridge",
    "RetrievalConfig",
    "VisionTransformer",
    "VisionTransformerConfig",
    "build_chat_encoder",
    "build_retrieval",
    "convert_chat_checkpoint",
    "ensure_converted",
    "merge_lora",
    "preprocess_frames",
    "vit_preset",
]
