# Configuration of a model compressed by Lathe's LoSparse and exported in its compact form, for Hugging Face
# transformers with trust_remote_code=True. Written by Lathe into the exported folder. The base model's own config
# keys stay at the top level; config.lathe_losparse holds the base model_type and, per replaced linear (by module
# path), its rank and kept rows of S.
from transformers import PretrainedConfig


class LatheLoSparseConfig(PretrainedConfig):
    model_type = "lathe_losparse"

    def __init__(self, lathe_losparse=None, **kwargs):
        self.lathe_losparse = lathe_losparse or {}
        super().__init__(**kwargs)
        # The base family's standard names (GPT-2 says n_layer for num_hidden_layers, ...), which generation reads.
        base_type = self.lathe_losparse.get("base_model_type")
        if base_type:
            from transformers import AutoConfig
            own = ("model_type", "auto_map", "architectures", "transformers_version", "_name_or_path")
            base = AutoConfig.for_model(base_type, **{k: v for k, v in kwargs.items() if k not in own})
            for name in getattr(base, "attribute_map", {}):
                if not hasattr(self, name):
                    setattr(self, name, getattr(base, name))
