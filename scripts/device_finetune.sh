#!/usr/bin/env bash
# One prepared run on a lent GPU machine (no hub, no registry there): scripts/gpu_check.py on the packaged
# image backbone, then one task's fine-tuning stages (every tuned method, the cpu profile's runs) at the
# learning rates the CPU run searched, so that only the device differs. Results come back as one archive.
#
# Needs, carried beside the working tree (the device tool's `carry`):
#   .whl/                      wheels the machine lacks (evaluate, datasets, dill, multiprocess, EfficientNet-Lite0)
#   .gpu/data/{prepared,shift}/<task>, .gpu/data/probe_heads/<task>/   the CPU run's prepared inputs
#   .gpu/hparams/<method>.csv  the CPU run's LR search (results/<task>/hparams/)
#   .gpu/params.yaml           the params.yaml the CPU run used
# Usage: bash scripts/device_finetune.sh TASK OUT_DIR SECONDS   (SECONDS: wall-clock budget for everything)
set -u -o pipefail
task=${1:?task}
out=${2:?output folder}
budget=${3:?seconds}
start=$(date +%s)
left() { echo $(( budget - ($(date +%s) - start) )); }

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "error: could not install the carried wheels in .whl/" >&2; exit 3; }
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
  TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1  # every input below is already prepared: no data root needed

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/nvidia-smi.csv" 2>&1
python3 - > "$out/versions.json" 2>&1 <<'EOF'
import json, platform
import accelerate, datasets, evaluate, peft, pyarrow, sklearn, torch, transformers
print(json.dumps({"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                  "transformers": transformers.__version__, "peft": peft.__version__,
                  "accelerate": accelerate.__version__, "datasets": datasets.__version__,
                  "evaluate": evaluate.__version__, "pyarrow": pyarrow.__version__, "sklearn": sklearn.__version__,
                  "device": torch.cuda.get_device_name() if torch.cuda.is_available() else None}))
EOF
cat "$out/versions.json"

# the text backbone's packaged weights (88 MB) are over what travels to the machine; the image one travels
timeout 120 python3 scripts/gpu_check.py --kinds image --steps 50 --batch 64 --peak-tflops 989 \
  > "$out/gpu_check.jsonl" 2> "$out/gpu_check.log"
echo "gpu_check rc=$? $(cat "$out/gpu_check.jsonl")"

# a root of its own: the CPU run's inputs and LR picks, nothing else of the checkout's results
root=/tmp/gpu_root
mkdir -p "$root/data" "$root/results/$task/hparams"
cp -r .gpu/data/* "$root/data/"
cp .gpu/hparams/*.csv "$root/results/$task/hparams/"
cp .gpu/params.yaml "$root/params.yaml"
for method in partial full lp_ft lora; do
  remaining=$(left)
  if (( remaining < 30 )); then echo "skipped $method: budget spent" | tee -a "$out/finetune.log"; continue; fi
  t0=$(date +%s)
  timeout "$((remaining - 20))" python3 -m embedtune.cli --params "$root/params.yaml" --root "$root" \
    finetune --task "$task" --method "$method" >> "$out/finetune.log" 2>&1
  echo "finetune $task $method rc=$? seconds=$(( $(date +%s) - t0 ))" | tee -a "$out/finetune.log"
done
tar czf "$out/gpu-$task.tar.gz" -C "$root" results metrics 2>/dev/null || tar czf "$out/gpu-$task.tar.gz" -C "$root" results
echo "done in $(( $(date +%s) - start )) s"
