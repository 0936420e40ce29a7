"""dllm_eval sub-package."""
