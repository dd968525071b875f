"""How the sdpa_* variants ask PyTorch whether a CUDA case is supported (the parts a CPU can check).

The real answers need a GPU (tests/test_gpu_variants.py); here PyTorch's public checks are replaced by stand-ins
to check what the variant does with their answers, and which path it takes when the API is missing.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.nn.attention import SDPBackend

import variants.sdpa as sdpa


@pytest.fixture(autouse=True)
def _fresh_cache():
    sdpa.cuda_kernel_reasons.cache_clear()
    sdpa._probe_cuda.cache_clear()
    yield
    sdpa.cuda_kernel_reasons.cache_clear()
    sdpa._probe_cuda.cache_clear()


def test_this_torch_has_the_public_checks():
    for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION):
        assert sdpa.support_check(backend) is getattr(torch.backends.cuda, sdpa._SUPPORT_CHECKS[backend])
    assert sdpa.support_check(SDPBackend.MATH) is None


def test_sdpa_params_is_built_for_this_torch():
    q = torch.empty(1, 1, 8, 16)
    params = sdpa.sdpa_params(q, causal=True)
    assert params.is_causal is True and params.query.shape == (1, 1, 8, 16)


def test_sdpa_params_falls_back_to_six_arguments(monkeypatch):
    class Six:
        def __init__(self, q, k, v, mask, dropout, causal):
            self.args = (q, k, v, mask, dropout, causal)

    monkeypatch.setattr(torch.backends.cuda, "SDPAParams", Six)
    q = torch.empty(1, 1, 4, 8)
    assert sdpa.sdpa_params(q, False).args[3:] == (None, 0.0, False)


def test_a_refusal_becomes_the_warned_reasons_and_no_kernel_runs(monkeypatch):
    seen = []

    def refuse(params, debug=False):
        seen.append((tuple(params.query.shape), params.query.dtype, params.query.requires_grad, params.is_causal,
                     debug))
        warnings.warn("Flash attention requires head_dim <= 256, got 1024. (Triggered internally at x.cpp:1.)",
                      stacklevel=1)
        warnings.warn("Flash attention requires head_dim <= 256, got 1024.", stacklevel=1)  # repeated: said once
        return False

    monkeypatch.setattr(torch.backends.cuda, "can_use_flash_attention", refuse)
    monkeypatch.setattr(sdpa, "_probe_cuda", lambda *a: pytest.fail("the probe kernel ran"))
    (reason,) = sdpa.cuda_kernel_reasons(SDPBackend.FLASH_ATTENTION, "cpu", "bfloat16", 64, 1024, True, True)
    assert seen == [((1, 1, 64, 1024), torch.bfloat16, True, True, True)]
    assert reason == (f"PyTorch {torch.__version__} has no FLASH_ATTENTION kernel for dtype=bfloat16, seq_len=64, "
                      "head_dim=1024, causal, with backward: Flash attention requires head_dim <= 256, got 1024.")


def test_a_refusal_without_words_says_so(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda, "can_use_cudnn_attention", lambda params, debug=False: False)
    (reason,) = sdpa.cuda_kernel_reasons(SDPBackend.CUDNN_ATTENTION, "cpu", "float16", 16, 64, False, False)
    assert "can_use_cudnn_attention returned False without a reason" in reason and "head_dim=64, full" in reason


def test_an_accepted_case_has_no_reason(monkeypatch):
    monkeypatch.setattr(torch.backends.cuda, "can_use_efficient_attention", lambda params, debug=False: True)
    assert sdpa.cuda_kernel_reasons(SDPBackend.EFFICIENT_ATTENTION, "cpu", "float32", 16, 64, False, False) == ()


def test_without_the_api_the_probe_is_the_fallback(monkeypatch):
    monkeypatch.delattr(torch.backends.cuda, "can_use_cudnn_attention")
    calls = []
    monkeypatch.setattr(sdpa, "_probe_cuda", lambda *a: calls.append(a) or ("probe said no",))
    assert sdpa.support_check(SDPBackend.CUDNN_ATTENTION) is None
    got = sdpa.cuda_kernel_reasons(SDPBackend.CUDNN_ATTENTION, "cuda", "bfloat16", 128, 64, True, False)
    assert got == ("probe said no",) and calls == [(SDPBackend.CUDNN_ATTENTION, "cuda", "bfloat16", 128, 64, True,
                                                    False)]


def test_the_fallback_reads_pytorchs_debug_warnings():
    """The probe path's parser, on the warning text PyTorch prints before "No available kernel"."""
    messages = ["Memory efficient kernel not used because:", "some efficient reason",
                "Flash attention kernel not used because:",
                "Flash attention only supports gpu architectures in the range [sm80, sm121]. (Triggered internally "
                "at sdp_utils.cpp:1.)"]
    text = sdpa._explain(SDPBackend.FLASH_ATTENTION, messages, "float16", 32, 64, False, False)
    assert text.endswith("Flash attention only supports gpu architectures in the range [sm80, sm121].")
    assert "efficient" not in text
