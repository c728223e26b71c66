#!/usr/bin/env bash
# Replays every seed corpus through its fuzz target on STABLE Rust, without sanitizers.
#
# libfuzzer-sys targets are ordinary binaries once built with plain `cargo build`: given file
# paths as arguments, libFuzzer runs each file through the target once and exits non-zero
# if the target panics (a failed assertion is a panic) or crashes. This catches regressions
# on the seeds (and on any crash reproducer you add to a corpus directory); it is not
# coverage-guided fuzzing — see README.md for that.
#
# Usage: tests/fuzz/replay.sh [TARGET...]        (default: all targets)
# Env:   CARGO_TARGET_DIR (default tests/fuzz/target), CARGO (default cargo),
#        EXTRA_DIRS="dir…" more input roots, each with one folder per target (e.g. EXTRA_DIRS=artifacts)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
start=$SECONDS
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(canonicalize config route_pattern evidence_bundle evidence_record evidence_tst wso2_fault wso2_token soap_xml soap_mediation)

# The fuzz crate is its own workspace (not a member of the root one) with its own committed
# Cargo.lock (the root lock's versions plus libfuzzer-sys); --locked refuses to drift from it.
target_dir="${CARGO_TARGET_DIR:-$here/target}"
echo "replay: building fuzz targets (stable, no sanitizers) into $target_dir"
"${CARGO:-cargo}" build --locked --bins --target-dir "$target_dir"
built=$SECONDS

failed=()
for t in "${targets[@]}"; do
  bin="$target_dir/debug/$t"
  dir="corpus/$t"
  [[ -x $bin ]] || { echo "replay: no binary $bin" >&2; exit 2; }
  [[ -d $dir ]] || { echo "replay: no corpus $dir" >&2; exit 2; }
  dirs=("$dir")
  for d in ${EXTRA_DIRS:-}; do [[ -d $d/$t ]] && dirs+=("$d/$t"); done
  mapfile -t inputs < <(find "${dirs[@]}" -maxdepth 1 -type f ! -name '.*' | sort)
  if [[ ${#inputs[@]} -eq 0 ]]; then
    echo "replay: $t: corpus is empty" >&2; failed+=("$t"); continue
  fi
  log="$(mktemp)"
  if "$bin" -rss_limit_mb=2048 -timeout=10 "${inputs[@]}" >"$log" 2>&1; then
    echo "replay: $t: ${#inputs[@]} inputs ok"
  else
    rc=$?
    echo "replay: $t: FAILED (exit $rc); output:" >&2
    tail -n 40 "$log" >&2
    failed+=("$t")
  fi
  rm -f "$log"
done

echo "replay: build $((built - start)) s, replay $((SECONDS - built)) s, total $((SECONDS - start)) s"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "replay: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "replay: ${#targets[@]} passed, 0 failed"
