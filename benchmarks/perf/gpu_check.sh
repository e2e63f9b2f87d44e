#!/usr/bin/env bash
# The GPU checks in one call: install what the GPU image lacks, then run benchmarks/perf/gpu_checks.py.
#
#   bash benchmarks/perf/gpu_check.sh OUT_DIR [gpu_checks.py options]
#
# The image has torch and torchvision but not pydantic or submitit: wheels brought along in .whl/ (see
# benchmarks/perf/README.md, "GPU checks") are installed into /tmp/site, and the harness itself (no
# dependencies, no network) as an editable install, as DEVELOPERS.md does. With HARNESS_GPU_CHECK_NO_INSTALL=1 the environment's own
# installation is used (the CPU rehearsal: `... OUT --quick --device cpu --deadline 300`).
set -uo pipefail
out=${1:?usage: gpu_check.sh OUT_DIR [options]}
shift
mkdir -p "$out"
cd "$(dirname "$0")/../.."
exec > >(tee -a "$out/gpu_check.log") 2>&1
echo "gpu_check.sh $(date -Is) in $(pwd), revision $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ "${HARNESS_GPU_CHECK_NO_INSTALL:-0}" != 1 ]; then
    if [ -d .whl ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl || exit 1
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    if ! python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir -e .; then
        # No build backend there: the checkout on the path, and the entry points the plugins are found by.
        echo "editable install failed; using the checkout on PYTHONPATH with a hand-written dist-info"
        d=/tmp/site/ssseg_harness-0.0.0+checkout.dist-info
        mkdir -p "$d"
        printf 'Metadata-Version: 2.1\nName: ssseg-harness\nVersion: 0.0.0+checkout\n' > "$d/METADATA"
        python3 - "$d/entry_points.txt" <<'PY' || exit 1
import sys, tomllib
eps = tomllib.load(open("pyproject.toml", "rb"))["project"]["entry-points"]["harness"]
open(sys.argv[1], "w").write("[harness]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))
PY
        export PYTHONPATH=/tmp/site:$(pwd)
    fi
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
exec python3 -u benchmarks/perf/gpu_checks.py --out "$out" "$@"
