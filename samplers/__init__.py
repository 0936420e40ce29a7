"""dllm_eval.samplers: the one denoising engine, the sampling strategies and the commit rules.

``engine.generate`` (also ``dllm_eval.generate``) runs masked-diffusion decoding over a family
adapter; ``config.DecodeConfig`` holds every option; ``base`` defines the ``Sampler`` protocol
and the registry; one module per strategy (random, confidence, margin, entropy, sequential,
attn, agdo); ``commit`` holds the commit rules; ``parity`` is the ``dllm-eval parity``
sub-command. See samplers/README.md for the mapping from the reference decoders. Importing this
package does not import torch.
"""
