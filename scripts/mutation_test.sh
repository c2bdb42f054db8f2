#!/usr/bin/env bash
# Mutation testing of the core modules with mutmut 3 (`make mutation`; not part of `make test`).
#
# Mutated: fashionnet/landmarks.py, the metrics (fashionnet/evaluation/*_metrics.py, metric_inputs.py),
# fashionnet/data/transforms.py and the index store (indexer/store.py, faiss_tools.py, updates.py).
# Each mutant runs only the test files that exercise these modules (MUTATION_TESTS),
# so the run stays practical on two CPU cores. Everything happens in a scratch copy of the repository
# (build/mutation/ by default); the working tree is never modified. Results: docs/TESTING.md.
#
#   scripts/mutation_test.sh             # mutate the working tree as it is (tracked + untracked files)
#   MUTATION_REV=HEAD scripts/mutation_test.sh   # mutate a commit instead
#   MUTATION_JOBS=2 scripts/mutation_test.sh     # mutants tested in parallel (default 1)
#   MUTATED="indexer/store.py" scripts/mutation_test.sh   # mutate only some of the modules
#
# Needs the `mutation` extra: .venv/bin/pip install -e '.[mutation]'
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$REPO/.venv/bin/python}"
WORK="${MUTATION_DIR:-$REPO/build/mutation}"
JOBS="${MUTATION_JOBS:-1}"
# The index's process-kill and concurrent-writer tests (tests/test_index_durability.py) are left out:
# they take about 25 s, and would run again for every mutant of save/load.
MUTATION_TESTS="${MUTATION_TESTS:-tests/test_flip_layout.py tests/test_transforms.py tests/test_transforms_edges.py tests/test_metrics.py tests/test_metrics_edges.py tests/test_index_store.py tests/test_index_vectors.py tests/test_index_edges.py tests/test_index_rerank.py}"
# The index store is indexer/store.py (EmbeddingIndex) with its FAISS helpers (faiss_tools.py) and
# the operations on a saved index (updates.py); the on-disk layout (layout.py) is covered by the
# durability tests, which are too slow to run per mutant.
MUTATED="${MUTATED:-fashionnet/landmarks.py fashionnet/evaluation/retrieval_metrics.py fashionnet/evaluation/landmark_metrics.py fashionnet/evaluation/box_metrics.py fashionnet/evaluation/label_metrics.py fashionnet/evaluation/metric_inputs.py fashionnet/data/transforms.py indexer/store.py indexer/faiss_tools.py indexer/updates.py}"

"$PY" -c "import mutmut" 2>/dev/null || { echo "mutmut is not installed: $PY -m pip install -e '.[mutation]'" >&2; exit 2; }

rm -rf "$WORK"
mkdir -p "$WORK"
cd "$REPO"
if [[ -n "${MUTATION_REV:-}" ]]; then
    git archive "$MUTATION_REV" | tar -x -C "$WORK"
else
    git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
        | tar --null -T - -c | tar -x -C "$WORK"
fi

# mutmut reads its settings from the [mutmut] section of setup.cfg; only the scratch copy gets one.
{
    echo
    echo "[mutmut]"
    echo "source_paths ="
    echo "    fashionnet"
    echo "    indexer"
    echo "only_mutate ="
    for f in $MUTATED; do echo "    $f"; done
    echo "pytest_add_cli_args_test_selection ="
    for t in $MUTATION_TESTS; do [[ -e "$WORK/$t" ]] && echo "    $t"; done
    echo "pytest_add_cli_args ="
    echo "    -p"
    echo "    no:cacheprovider"
    echo "    -q"
    echo "    -m"
    echo "    not slow"
} >> "$WORK/setup.cfg"

cd "$WORK"
# One thread per process: the forked mutant runs must not inherit a busy OpenMP pool.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 FASHIONNET_TEST_THREADS=1
start=$(date +%s)
"$PY" -m mutmut run --max-children "$JOBS" > "$WORK/run.log" 2>&1 || { tail -40 "$WORK/run.log"; exit 1; }
"$PY" -m mutmut results --all true > "$WORK/results.txt"
echo "mutmut run took $(( $(date +%s) - start )) s; per-mutant results in $WORK/results.txt"

"$PY" - "$WORK/results.txt" <<'EOF'
import collections, re, sys

modules = {"fashionnet.landmarks": "fashionnet/landmarks.py",
           **{f"fashionnet.evaluation.{name}": f"fashionnet/evaluation/{name}.py"
              for name in ("retrieval_metrics", "landmark_metrics", "box_metrics", "label_metrics", "metric_inputs")},
           "fashionnet.data.transforms": "fashionnet/data/transforms.py", "indexer.store": "indexer/store.py",
           "indexer.faiss_tools": "indexer/faiss_tools.py", "indexer.updates": "indexer/updates.py"}
counts = collections.defaultdict(collections.Counter)
survivors = collections.defaultdict(list)
for line in open(sys.argv[1]):
    m = re.match(r"\s*(\S+): (\S.*)$", line)
    if not m:
        continue
    name, status = m.groups()
    module = next((mod for mod in sorted(modules, key=len, reverse=True) if name.startswith(mod + ".")), None)
    if module is None:
        continue
    counts[module][status] += 1
    if status != "killed":
        survivors[module].append(f"{name} ({status})")
print(f"{'module':32s} {'total':>6s} {'killed':>7s} {'other':>6s}")
for module, path in modules.items():
    c = counts[module]
    total = sum(c.values())
    print(f"{path:32s} {total:6d} {c['killed']:7d} {total - c['killed']:6d}  {dict(c)}")
for module in modules:
    for s in survivors[module]:
        print("  not killed:", s)
EOF
