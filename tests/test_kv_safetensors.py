"""test_kv_safetensors.py — Shoal's KV-cache export read by the reference `safetensors` library.

tests/tools/kv_export writes SmolLM2's cache for a 24-token prompt as safetensors plus the same
rows raw; this reads the file with safetensors (numpy backend) and checks every tensor's name,
dtype, shape and bytes, and the metadata (model SHA-256 computed here with hashlib). Skips (77)
when the pinned reader is not installed (scripts/reference/requirements-safetensors.txt) or
the model is absent."""
import hashlib
import os
import subprocess
import sys
import tempfile


def find_python():
    """A Python that has safetensors and numpy: this one, or the reference venv's."""
    try:
        import numpy  # noqa: F401
        import safetensors  # noqa: F401
        return None
    except ImportError:
        pass
    deps = os.environ.get("SHOAL_DEPS", ".deps")
    venv = os.path.join(deps, "ref-venv", "bin", "python")
    if os.path.exists(venv):
        r = subprocess.run([venv, "-c", "import safetensors, numpy"], capture_output=True)
        if r.returncode == 0:
            return venv
    return ""


def main():
    py = find_python()
    if py == "":
        print("skip: safetensors/numpy not installed (see scripts/reference/requirements-safetensors.txt)")
        return 77
    if py is not None:
        return subprocess.run([py] + sys.argv).returncode
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file

    deps = os.environ.get("SHOAL_DEPS", ".deps")
    model = os.path.join(deps, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    tool = os.path.join(os.environ.get("SHOAL_BUILD_DIR", "build"), "kv_export")
    if not os.path.exists(model):
        print("skip: model absent")
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        out, raw = os.path.join(tmp, "kv.safetensors"), os.path.join(tmp, "kv.raw")
        line = subprocess.run([tool, model, out, raw], check=True, capture_output=True, text=True).stdout.split()
        sha, n, n_layer, kv_dim = line[0], int(line[1]), int(line[2]), int(line[3])
        with open(model, "rb") as f:
            assert sha == hashlib.sha256(f.read()).hexdigest(), "model SHA-256 differs from hashlib's"
        tensors = load_file(out)
        assert sorted(tensors) == sorted(f"layers.{i}.{w}" for i in range(n_layer) for w in "kv"), sorted(tensors)
        rows = np.fromfile(raw, dtype="<f4").reshape(n_layer, 2, n, kv_dim)
        for i in range(n_layer):
            for j, w in enumerate("kv"):
                t = tensors[f"layers.{i}.{w}"]
                assert t.dtype == np.float32 and t.shape == (n, kv_dim), (t.dtype, t.shape)
                assert t.tobytes() == rows[i, j].tobytes(), f"layers.{i}.{w} bytes differ"
        assert np.isfinite(rows).all() and np.abs(rows).max() > 0
        with safe_open(out, framework="numpy") as f:
            meta = f.metadata()
        assert meta["format"] == "shoal.kv_cache" and meta["version"] == "1", meta
        assert meta["model_sha256"] == sha and meta["architecture"] == "llama", meta
        assert (int(meta["n_layer"]), int(meta["kv_dim"]), int(meta["n_past"])) == (n_layer, kv_dim, n), meta
    print(f"{2 * n_layer} tensors [{n}, {kv_dim}] F32 read by safetensors, bytes identical")
    print("1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
