# Modelling code of a decoder compressed by Lathe's LoSparse (Li et al., ICML 2023) in its compact form, for Hugging
# Face transformers with trust_remote_code=True. Written by Lathe into the exported folder.
#
# Every replaced linear holds W = L R + S with whole rows of S pruned: the checkpoint stores, under the linear's
# module path, lowrank_left (out x r), lowrank_right (r x in), sparse_rows (k x in: the kept rows of S),
# sparse_index (k, int64: their row numbers) and the bias if any, all in the (out x in) layout whatever the family
# (GPT-2's Conv1D modules included). The rest of the checkpoint is the base model's, under its own names: the model
# is the base family's transformers class with those modules swapped, so its KV cache, padding and generate() are
# the base model's.
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin, PreTrainedModel

from .configuration_lathe_losparse import LatheLoSparseConfig

_OWN_KEYS = ("model_type", "auto_map", "architectures", "lathe_losparse", "transformers_version", "_name_or_path")


class LoSparseLinear(nn.Module):
    """y = x R^T L^T + (x S_k^T scattered to the kept rows) + b."""

    def __init__(self, out_features, in_features, rank, kept, bias):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.lowrank_left = nn.Parameter(torch.zeros(out_features, rank))
        self.lowrank_right = nn.Parameter(torch.zeros(rank, in_features))
        self.sparse_rows = nn.Parameter(torch.zeros(kept, in_features))
        self.register_buffer("sparse_index", torch.zeros(kept, dtype=torch.long))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x):
        y = (x @ self.lowrank_right.T) @ self.lowrank_left.T
        if self.sparse_rows.shape[0] > 0:
            y = y.index_add(-1, self.sparse_index, x @ self.sparse_rows.T)
        return y + self.bias if self.bias is not None else y


def _base_config(config):
    d = {k: v for k, v in config.to_dict().items() if k not in _OWN_KEYS}
    return AutoConfig.for_model(config.lathe_losparse["base_model_type"], **d)


class LatheLoSparseForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = LatheLoSparseConfig
    base_model_prefix = ""
    _supports_cache_class = True

    def __init__(self, config):
        super().__init__(config)
        inner = AutoModelForCausalLM.from_config(_base_config(config))
        for path, spec in config.lathe_losparse["linears"].items():
            parent_path, _, leaf = path.rpartition(".")
            parent = inner.get_submodule(parent_path)
            setattr(parent, leaf, LoSparseLinear(spec["out"], spec["in"], spec["rank"], spec["kept_rows"],
                                                 spec["bias"]))
        # The base model's modules become ours under the same names (so the checkpoint's names are the base
        # model's); the base model object itself is kept unregistered to run the forward pass.
        for name, child in inner.named_children():
            self.add_module(name, child)
        object.__setattr__(self, "_inner", inner)
        # The base class's tied weights (a tied head: lm_head.weight is the token embedding, not in the checkpoint).
        tied = getattr(inner, "_tied_weights_keys", None)
        if tied is not None:
            self._tied_weights_keys = tied
        # What generate() may hand the base model is what the base class supports: transformers 4.x's GPT-2 takes only
        # tuple caches, and generate() makes a Cache object when this says so.
        for flag in ("_supports_cache_class", "_supports_static_cache", "_supports_quantized_cache"):
            setattr(self, flag, getattr(inner, flag, False))
        self.post_init()
        self.generation_config = inner.generation_config

    def get_input_embeddings(self):
        return self._inner.get_input_embeddings()

    def get_output_embeddings(self):
        return self._inner.get_output_embeddings()

    # generate() checks its keyword arguments against these signatures: name the usual ones; the base model's
    # forward receives only those given.
    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None,
                inputs_embeds=None, labels=None, use_cache=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, cache_position=None, **kwargs):
        given = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                     past_key_values=past_key_values, inputs_embeds=inputs_embeds, labels=labels, use_cache=use_cache,
                     output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                     return_dict=return_dict, cache_position=cache_position)
        kwargs.update({k: v for k, v in given.items() if v is not None})
        return self._inner(**kwargs)

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None, inputs_embeds=None,
                                      **kwargs):
        return self._inner.prepare_inputs_for_generation(input_ids, past_key_values=past_key_values,
                                                         attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                                                         **kwargs)
