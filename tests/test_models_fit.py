"""Resources snapshot, GGUF header facts and the memory estimate."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from mindgate._assets import default_gguf_path
from mindgate.errors import ConfigurationError
from mindgate.providers.management import _fit as fit
from mindgate.providers.management import _resources as resources
from mindgate.providers.management._gguf_info import read_gguf_info


def test_snapshot_reports_this_machine_and_is_cached() -> None:
    snap = resources.snapshot(max_age=0)
    assert snap.ram_total_bytes == psutil.virtual_memory().total
    assert 0 < snap.ram_available_bytes <= snap.ram_total_bytes and snap.cpu_count >= 1
    assert snap.free_bytes(gpu=False) == snap.ram_available_bytes
    assert snap.free_bytes() == snap.ram_available_bytes + snap.vram_free_bytes
    assert resources.snapshot(max_age=60) is resources.snapshot(max_age=60)
    assert set(snap.to_dict()) >= {"ram_total_bytes", "ram_available_bytes", "gpus", "unified_memory"}


def test_format_bytes() -> None:
    assert resources.format_bytes(None) == "?"
    assert resources.format_bytes(512) == "512 B"
    assert resources.format_bytes(1536 * 2**20) == "1.5 GiB"


def test_gguf_header_of_the_shipped_model() -> None:
    info = read_gguf_info(default_gguf_path())
    assert (info.architecture, info.context_length, info.block_count) == ("llama", 8192, 30)
    assert (info.head_count, info.head_count_kv, info.embedding_length) == (9, 3, 576)
    assert info.quantization == "Q4_1" and not info.is_embedding
    assert info.size_bytes == default_gguf_path().stat().st_size
    assert info.kv_bytes_per_token == 30 * 3 * (64 + 64)
    assert read_gguf_info(default_gguf_path()) is info


def test_gguf_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not found"):
        read_gguf_info(tmp_path / "missing.gguf")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all" * 10)
    with pytest.raises(ConfigurationError, match="not a readable GGUF file"):
        read_gguf_info(junk)


def _written_gguf(path: Path, endian: str) -> Path:
    """A GGUF file written by the ``gguf`` package's own writer: per-layer numbers, long and nested arrays."""
    import gguf
    import numpy as np

    order = gguf.GGUFEndian.BIG if endian == "big" else gguf.GGUFEndian.LITTLE
    writer = gguf.GGUFWriter(path, "qwen3", endianess=order)
    writer.add_name("tiny test model")
    writer.add_context_length(32768)
    writer.add_block_count(4)
    writer.add_embedding_length(256)
    writer.add_head_count(8)
    writer.add_head_count_kv([2, 4, 2, 4])  # per layer, as hybrid models store it
    writer.add_key_length(64)
    writer.add_float32("qwen3.rope.freq_base", 1000000.0)
    writer.add_bool("tokenizer.ggml.add_bos_token", True)
    writer.add_array("tokenizer.ggml.tokens", [f"tok{i}" for i in range(20000)])
    writer.add_array("tokenizer.ggml.scores", [float(i) for i in range(20000)])
    writer.add_array("general.nested", [[1, 2], [3]])
    writer.add_string("general.after_the_arrays", "still read")
    writer.add_tensor("w", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("endian", ["little", "big"])
def test_gguf_metadata_is_what_the_gguf_packages_reader_reads(tmp_path: Path, endian: str) -> None:
    import gc

    from gguf import GGUFReader, GGUFValueType

    from mindgate.providers.management import _gguf_info

    files = [_written_gguf(tmp_path / f"{endian}.gguf", endian)]
    if endian == "little":
        files.append(default_gguf_path())
    for file in files:
        before = len(gc.get_objects())
        fields = _gguf_info._metadata(file)
        assert len(gc.get_objects()) - before < 50  # not a numpy view per token (GGUFReader: ~500,000)
        expected = {k: f for k, f in GGUFReader(str(file)).fields.items() if not k.startswith("GGUF.")}
        assert fields.keys() == expected.keys()
        for key, value in fields.items():
            field = expected[key]
            if value is _gguf_info.SKIPPED:  # arrays of strings or of arrays, and long numeric ones: stepped over
                assert field.types[0] == GGUFValueType.ARRAY
                assert field.types[1] in (GGUFValueType.STRING, GGUFValueType.ARRAY) or \
                    len(field.contents()) > _gguf_info.MAX_LIST
            elif isinstance(value, float):
                assert value == pytest.approx(field.contents()), key
            else:
                assert value == field.contents(), key
    info = read_gguf_info(files[0])
    assert (info.architecture, info.name, info.context_length) == ("qwen3", "tiny test model", 32768)
    assert (info.block_count, info.head_count, info.head_count_kv, info.key_length) == (4, 8, 4, 64)
    assert info.value_length is None


def test_a_truncated_gguf_file_is_a_clear_error(tmp_path: Path) -> None:
    whole = _written_gguf(tmp_path / "whole.gguf", "little").read_bytes()
    for cut in (3, 12, 40, len(whole) // 4):
        part = tmp_path / f"cut{cut}.gguf"
        part.write_bytes(whole[:cut])
        with pytest.raises(ConfigurationError, match="not a readable GGUF file"):
            read_gguf_info(part)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(ConfigurationError, match="not a readable GGUF file"):
        read_gguf_info(empty)


def test_kv_cache_formula() -> None:
    # Llama-3-8B: 32 layers, 8 KV heads of 128 dims, f16: 128 KiB per token -> 1 GiB at 8192 tokens
    assert fit.kv_cache_bytes(32, 8192, 8, 128) == 2**30
    shape = fit.ModelShape.from_dims(4_000_000_000, n_layers=32, n_heads=32, n_kv_heads=8, embedding_length=4096)
    estimate = fit.estimate(shape, 8192)
    assert estimate.kv_cache_bytes == 2**30 and estimate.kv_source == "metadata"
    assert estimate.total_bytes == 4_000_000_000 + 2**30 + fit.OVERHEAD_FIXED_BYTES + 200_000_000


def test_unknown_shape_estimates_kv_from_size() -> None:
    estimate = fit.estimate(fit.ModelShape(6_000_000_000), 1000)
    assert estimate.kv_source == "size" and estimate.kv_cache_bytes == 100_000_000
    assert "KV cache (estimated from size)" in estimate.describe()


def test_max_fitting_context() -> None:
    shape = fit.ModelShape(1_000_000_000, 100_000)  # 200 KB of f16 K+V per token
    base = fit.estimate(shape, 0).total_bytes
    n_ctx = fit.max_fitting_context(shape, base + 200_000 * 5000)
    assert n_ctx == 4864  # 5000 rounded down to a multiple of 256
    assert fit.estimate(shape, n_ctx).total_bytes <= base + 200_000 * 5000
    assert fit.max_fitting_context(shape, base + 200_000 * 5000, upper=1024) == 1024
    assert fit.max_fitting_context(shape, base + 200_000 * 100) is None
    assert fit.max_fitting_context(shape, base // 2) is None


def test_refusal_text_orders_loaded_alternatives_first() -> None:
    needed = fit.estimate(fit.ModelShape(8 * 2**30), 4096)
    error = fit.refusal("lm:big", needed, 2 * 2**30, shorter_context=None, alternatives=[
        fit.Alternative("lm:mid", 1 * 2**30), fit.Alternative("lm:loaded", 0, loaded=True),
        fit.Alternative("lm:huge", 16 * 2**30)])
    assert str(error).startswith("lm:big does not fit in memory: it needs about 9.0 GiB (weights 8.0 GiB + KV")
    assert "but only 2.0 GiB is free" in str(error)
    assert "smaller models that fit now: lm:loaded (already loaded), lm:mid (needs 1.0 GiB)" in str(error)
    assert "lm:huge" not in str(error) and error.http_status == 507
