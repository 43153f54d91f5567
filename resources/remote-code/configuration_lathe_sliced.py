# Configuration of a decoder (Llama family, OPT, GPT-2, Phi-2) sliced by Lathe's SliceGPT (written by Lathe next to the weights; loaded
# with trust_remote_code=True). The base model's fields are kept as they are; "lathe_slicing" holds the widths.
from transformers import PretrainedConfig


class LatheSlicedConfig(PretrainedConfig):
    model_type = "lathe_sliced"

    def __init__(self, lathe_slicing=None, **kwargs):
        self.lathe_slicing = lathe_slicing or {}
        super().__init__(**kwargs)
