"""Specification of the fast inference path (ctdenoise.runtime.prepare, ctdenoise.runtime.transfer).

The fast path must compute the same function as the plain fp32 model: BatchNorm folding and
channels-last are exact up to float rounding, and the default precision on the CPU stays within the
accuracy budget of the performance issue on a real 512x512 CT slice (mean |dHU| <= 0.5, max <= 3).
"""

from __future__ import annotations

import copy
import sys

import numpy as np
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file

from ctdenoise.errors import ConfigError, ModelError
from ctdenoise.model import CLIPDenoiser, ModelConfig
from ctdenoise.registry import available_models, load_model
from ctdenoise.runtime.denoise import denoise_hu
from ctdenoise.runtime.network import fold_encoder_batchnorm
from ctdenoise.runtime.precision import cpu_flags, cpu_has_native_bf16, resolve_precision
from ctdenoise.runtime.prepare import prepare, resolve_backend
from ctdenoise.runtime.settings import InferenceSettings
from ctdenoise.runtime.transfer import BatchTransfer

CPU = torch.device("cpu")
MEAN_HU_BUDGET = 0.5
MAX_HU_BUDGET = 3.0


@pytest.fixture(scope="module")
def model() -> CLIPDenoiser:
    """A random-weight RN50 denoiser whose encoder BatchNorm has non-trivial statistics and scales."""
    torch.manual_seed(0)
    net = CLIPDenoiser(ModelConfig()).eval()
    with torch.no_grad():
        for bn in net.encoder.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.running_mean.uniform_(-0.2, 0.2)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.1, 0.1)
    return net


def real_ct_slice_hu() -> np.ndarray:
    """A real 512x512 CT slice (pydicom-data's 693_UNCR.dcm) in HU."""
    ds = pydicom.dcmread(get_testdata_file("693_UNCR.dcm"))
    return (ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)).astype(np.float32)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert cpu_flags(info) == frozenset({"fpu", "sse", "avx512f", "avx512_bf16"})
    assert cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize(
    ("flags", "native"),
    [({"avx512f", "avx512_bf16"}, True), ({"amx_bf16", "amx_tile"}, True), ({"avx512f", "avx2"}, False), (set(), False)],
)
def test_native_bf16_needs_avx512_bf16_or_amx(flags, native):
    assert cpu_has_native_bf16(frozenset(flags)) is native


@pytest.mark.parametrize(
    ("device", "precision", "dtype"),
    [
        ("cpu", "auto", None),
        ("cpu", "fp32", None),
        ("cpu", "bf16", torch.bfloat16),
        ("cuda", "auto", torch.float16),
        ("cuda", "fp32", None),
        ("cuda", "bf16", torch.bfloat16),
    ],
)
def test_precision_auto_is_fp16_on_gpu_and_fp32_on_cpu_and_fp32_forces_it(device, precision, dtype):
    assert resolve_precision(torch.device(device), precision) is dtype


def test_unknown_precision_names_the_key():
    with pytest.raises(ConfigError, match="precision"):
        resolve_precision(CPU, "int8")


def test_folding_removes_every_encoder_batchnorm_and_keeps_the_output(model):
    folded = fold_encoder_batchnorm(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.encoder.modules())
    x = torch.rand(2, 1, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x).float(), model(x), atol=1e-5, rtol=1e-4)


def test_folding_refuses_an_encoder_in_training_mode():
    trainable = CLIPDenoiser(ModelConfig(train_encoder=True)).train()
    with pytest.raises(ModelError, match="training mode"):
        fold_encoder_batchnorm(trainable)


def test_prepare_leaves_the_original_untouched(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = prepare(model, InferenceSettings(device="cpu", precision="fp32", backend="torch"))
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.encoder.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.network.encoder.modules())
    assert fast.describe() == {
        "device": "cpu", "precision": "fp32", "batchnorm_folded": True, "channels_last": True, "compiled": False,
        "cuda_graphs": False, "onnxruntime": False,
    }
    assert fast.engines == ("eager",) and fast.fixed_batch_size is None and fast.batch_size == 2


def test_cuda_graphs_are_refused_without_a_cuda_device(model, monkeypatch):
    with pytest.raises(ConfigError, match="cuda_graphs"):
        InferenceSettings(device="cpu", cuda_graphs=True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # device auto then resolves to the CPU
    with pytest.raises(ConfigError, match="cuda_graphs backend cannot run on cpu here: it needs a CUDA device"):
        prepare(model, InferenceSettings(cuda_graphs=True, backend="torch"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")
def test_cuda_graph_replay_matches_the_plain_fast_path_and_keeps_earlier_results(model):
    hu = np.random.default_rng(2).normal(0, 300, (5, 64, 64)).astype(np.float32)
    plain = denoise_hu(model, hu, InferenceSettings(device="cuda", precision="fp16", batch_size=2))
    graphed = denoise_hu(model, hu, InferenceSettings(device="cuda", precision="fp16", batch_size=2, cuda_graphs=True))
    np.testing.assert_allclose(graphed, plain, atol=0.05)
    runner = prepare(model, InferenceSettings(device="cuda", precision="fp16", batch_size=1, cuda_graphs=True))
    assert runner.fixed_batch_size == 1 and runner.engines == ("eager", "cuda_graphs")
    x = torch.rand(2, 1, 1, 32, 32, device="cuda")
    with torch.inference_mode():
        first = runner(x[0])
        second = runner(x[1])
        assert not torch.equal(first, second) and torch.equal(first, runner(x[0]))


def test_fast_fp32_equals_the_plain_model_on_odd_sizes(model):
    hu = np.random.default_rng(0).normal(0, 300, (3, 45, 70)).astype(np.float32)
    fast = denoise_hu(model, hu, InferenceSettings(device="cpu", precision="fp32", batch_size=2))
    with torch.inference_mode():
        plain = model(torch.from_numpy((hu.clip(-1024, 3072) + 1024) / 4096)[:, None])[:, 0].numpy() * 4096 - 1024
    np.testing.assert_allclose(fast, plain, atol=0.01)


def test_cpu_default_meets_the_accuracy_budget_on_a_real_512_slice(model):
    """Default CPU settings against fp32 eager of the same weights on a real slice. Uses the shipped
    model when installed; otherwise the random-weight model (whose small outputs make the HU budget
    easier to meet: the README reports the bf16/fp16 errors of a trained model)."""
    net = load_model("default") if "default" in available_models() else model
    hu = real_ct_slice_hu()
    assert hu.shape == (512, 512)
    with torch.inference_mode():
        unit = torch.from_numpy((hu.clip(-1024, 3072) + 1024) / 4096)[None, None]
        eager = net.eval()(unit)[0, 0].numpy() * 4096 - 1024
    fast = denoise_hu(net, hu, InferenceSettings(device="cpu"))
    error = np.abs(fast - eager)
    assert error.mean() <= MEAN_HU_BUDGET and error.max() <= MAX_HU_BUDGET


def test_cpu_transfer_pads_for_fixed_batches_and_writes_results():
    transfer = BatchTransfer(CPU, (4, 2, 3))
    slices = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    batch = transfer.upload(slices, pad_to=4)
    assert batch.shape == (4, 2, 3) and torch.equal(batch[3], batch[1])
    target = np.zeros((2, 2, 3), np.float32)
    assert transfer.download(batch[:2] * 2, target) == 2 and transfer.flush() == 0
    np.testing.assert_array_equal(target, slices * 2)


@pytest.mark.slow
def test_compiled_model_matches_eager_and_pads_the_last_batch(model):
    hu = np.random.default_rng(1).normal(0, 300, (3, 64, 64)).astype(np.float32)
    eager = denoise_hu(model, hu, InferenceSettings(device="cpu", precision="fp32", batch_size=2))
    compiled = denoise_hu(model, hu, InferenceSettings(device="cpu", precision="fp32", batch_size=2, compile=True))
    np.testing.assert_allclose(compiled, eager, atol=0.05)


def test_onnxruntime_backend_meets_the_accuracy_budget_on_a_real_512_slice(model):
    """ONNX Runtime runs the prepared fp32 model (exported in memory) within the budget of fp32 eager."""
    pytest.importorskip("onnxruntime", reason="the optional extra ctdenoise[onnx] is not installed")
    net = load_model("default") if "default" in available_models() else model
    hu = real_ct_slice_hu()
    with torch.inference_mode():
        unit = torch.from_numpy((hu.clip(-1024, 3072) + 1024) / 4096)[None, None]
        eager = net.eval()(unit)[0, 0].numpy() * 4096 - 1024
    fast = denoise_hu(net, hu, InferenceSettings(backend="onnxruntime", batch_size=1))
    error = np.abs(fast - eager)
    assert error.mean() <= MEAN_HU_BUDGET and error.max() <= MAX_HU_BUDGET


def test_onnxruntime_backend_pads_odd_batches_and_matches_torch(model):
    pytest.importorskip("onnxruntime", reason="the optional extra ctdenoise[onnx] is not installed")
    hu = np.random.default_rng(3).normal(0, 300, (3, 40, 52)).astype(np.float32)
    plain = denoise_hu(model, hu, InferenceSettings(device="cpu", precision="fp32", batch_size=2, backend="torch"))
    runner = prepare(model, InferenceSettings(device="cpu", precision="fp32", batch_size=2, backend="onnxruntime"))
    assert runner.fixed_batch_size == 2 and runner.describe()["onnxruntime"] and runner.backend == "onnxruntime"
    np.testing.assert_allclose(denoise_hu(runner, hu), plain, atol=0.05)


def test_onnxruntime_backend_refuses_gpu_half_precision_and_names_the_missing_package(model, monkeypatch):
    for bad in ({"device": "cuda"}, {"precision": "bf16"}, {"compile": True}):
        with pytest.raises(ConfigError, match="onnxruntime runs fp32 on the CPU only"):
            InferenceSettings(backend="onnxruntime", **bad)
    with pytest.raises(ConfigError, match="not one of auto, torch, onnxruntime"):
        InferenceSettings(backend="tensorrt")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the optional extra were not installed
    with pytest.raises(ConfigError, match=r"needs the CPU, fp32, and the onnxruntime and onnx packages: "
                       r"pip install \"ctdenoise\[onnx\]\""):
        prepare(model, InferenceSettings(batch_size=1, backend="onnxruntime"))


def test_backend_auto_takes_onnxruntime_for_fp32_cpu_runs_when_installed_and_torch_otherwise(model, monkeypatch):
    """The default backend: ONNX Runtime where it was measured faster (fp32 on the CPU), if installed."""
    assert InferenceSettings().backend == "auto"
    monkeypatch.setattr("ctdenoise.runtime.backends.onnx_runtime.onnxruntime_installed", lambda: True)
    assert resolve_backend(InferenceSettings(device="cpu")) == "onnxruntime"
    assert resolve_backend(InferenceSettings(device="cpu", precision="fp32")) == "onnxruntime"
    for other in ({"precision": "bf16"}, {"compile": True}, {"backend": "torch"}):
        assert resolve_backend(InferenceSettings(device="cpu", **other)) == "torch"
    if torch.cuda.is_available():
        assert resolve_backend(InferenceSettings(device="auto")) == "torch"
    monkeypatch.setattr("ctdenoise.runtime.backends.onnx_runtime.onnxruntime_installed", lambda: False)
    assert resolve_backend(InferenceSettings(device="cpu")) == "torch"
    assert not prepare(model, InferenceSettings(device="cpu", batch_size=1)).describe()["onnxruntime"]


def test_backend_auto_finds_onnxruntime_missing_without_importing_it(monkeypatch):
    from ctdenoise.runtime.backends.onnx_runtime import onnxruntime_installed

    pytest.importorskip("onnxruntime", reason="the optional extra ctdenoise[onnx] is not installed")
    assert onnxruntime_installed()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the optional extra were not installed
    assert not onnxruntime_installed()
    assert resolve_backend(InferenceSettings(device="cpu")) == "torch"
