"""The MoM recommender: item encoders (text, image, id), the user encoder, losses and checkpoints."""
from transrec.model.config import ImageEncoderConfig, ModelConfig, TextEncoderConfig, UserEncoderConfig
from transrec.model.items import ItemFeatures
from transrec.model.recommender import Recommender

__all__ = ["ImageEncoderConfig", "ItemFeatures", "ModelConfig", "Recommender", "TextEncoderConfig",
           "UserEncoderConfig"]
