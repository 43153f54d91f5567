# Configuration of a decoder (Llama family, OPT, GPT-2, Phi-2) sliced by Lathe's SliceGPT (written by Lathe next to the weights; loaded
# with trust_remote_code=True). The base model's fields are kept as they are; "lathe_slicing" holds the widths.
from transformers import PretrainedConfig


class LatheSlicedConfig(PretrainedConfig):
    model_type = "lathe_sliced"

    def __init__(self, lathe_slicing=None, **kwargs):
        self.lathe_slicing = lathe_slicing or {}
        # The modelling code takes RoPE from lathe_slicing["arch"]["inv_freq"]; the base model's rope scaling is kept
        # under another name so that transformers does not validate it against fields this config does not have.
        for key in ("rope_scaling", "rope_parameters"):
            if key in kwargs:
                kwargs["lathe_base_" + key] = kwargs.pop(key)
        # generate() sizes its cache by num_hidden_layers (GPT-2 and OPT name it otherwise).
        arch = self.lathe_slicing.get("arch", {})
        if "layers" in arch:
            kwargs.setdefault("num_hidden_layers", arch["layers"])
        super().__init__(**kwargs)
