"""TorchServe peer: pack the ONNX graph into a model archive, write the config, start it.

Runs TorchServe in the foreground (so the harness owns its process group), 2 workers, token
authorization off, loopback only; ``--batch`` turns on its server-side batching.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser()
    for flag in ("--model", "--name", "--work-dir"):
        ap.add_argument(flag, required=True)
    for flag in ("--port", "--management-port", "--metrics-port"):
        ap.add_argument(flag, type=int, required=True)
    ap.add_argument("--batch", action="store_true")
    args = ap.parse_args()
    work = Path(args.work_dir)
    store = work / "model-store"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    staging = work / "staging"
    staging.mkdir(exist_ok=True)
    shutil.copyfile(args.model, staging / "model.onnx")
    bindir = Path(sys.executable).parent
    subprocess.run([str(bindir / "torch-model-archiver"), "--model-name", args.name,
                    "--version", "1.0", "--handler", str(HERE / "torchserve_handler.py"),
                    "--extra-files", f"{staging / 'model.onnx'},{HERE / 'ort_common.py'}",
                    "--export-path", str(store)], check=True)
    model = {"defaultVersion": True, "marName": f"{args.name}.mar", "minWorkers": 2,
             "maxWorkers": 2, "batchSize": 32 if args.batch else 1,
             "maxBatchDelay": 1 if args.batch else 100, "responseTimeout": 120}
    config = work / "config.properties"
    config.write_text("\n".join([
        f"inference_address=http://127.0.0.1:{args.port}",
        f"management_address=http://127.0.0.1:{args.management_port}",
        f"metrics_address=http://127.0.0.1:{args.metrics_port}",
        f"model_store={store}", f"load_models={args.name}.mar",
        "disable_token_authorization=true", "enable_envvars_config=false",
        "install_py_dep_per_model=false", "default_workers_per_model=2",
        f"models={json.dumps({args.name: {'1.0': model}})}", ""]))
    os.execv(str(bindir / "torchserve"),
             [str(bindir / "torchserve"), "--start", "--foreground", "--ncs",
              "--disable-token-auth", "--ts-config", str(config), "--model-store", str(store)])


if __name__ == "__main__":
    main()
