"""Post-training for diffusion LMs: masking strategies, SFT on the transformers Trainer, and RL.

Checkpoints are written in the model family's official format (LoRA merged), so they load with
``dllm_eval.load`` and are scored by ``lm_eval --model dllm --model_args pretrained=OUT``.

==============  =====================================================================  ==================
method          source                                                                 where
==============  =====================================================================  ==================
``random``      LLaDA, "Large Language Diffusion Models" (arXiv 2502.09992)            ``masking.py``
``blockwise``   BD3-LM, "Block Diffusion" (arXiv 2503.09573); SDAR recipe              ``masking.py``
``agdo``        "Beyond Fully Random Masking: Attention-Guided Denoising and           ``masking.py``,
                Optimization for Diffusion Language Models" (arXiv 2606.12273)         ``rl.py``
``d1``          diffu-GRPO, "d1: Scaling Reasoning in Diffusion LLMs via RL"           ``rl.py``
                (arXiv 2504.12216)
``tracerl``     TraceRL (arXiv 2509.06949)                                             ``rl.py``
GRPO / clip     DeepSeekMath (arXiv 2402.03300), PPO (arXiv 1707.06347)                ``losses.py``
==============  =====================================================================  ==================

Modules: ``masking`` (pure masking functions), ``losses`` (pure loss functions),
``attention`` (head-mean attention matrices for AGDO), ``config`` (documented option
dataclasses), ``data`` (JSONL / hub records), ``sft`` (Trainer subclass + masking collator),
``rl`` (rollouts through ``dllm_eval.generate``, rewards, estimators), ``cli``
(``dllm-eval train sft|rl``). Importing this package imports nothing heavy.
"""
