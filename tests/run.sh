#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need (redis-server, the
# openssl CLI for the RFC 3161 test TSA, node and the npm `soap` package for the SOAP back
# end; the bench runner installs nginx, wrk and h2load), then
# the docs check, formatting, lints, every test, doc tests, the example configs, a smoke run of
# the benchmark runner and a replay of the fuzz corpus. Used by README's quick start and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
# One build per run: incremental state would only grow the target directory.
export CARGO_INCREMENTAL=0

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# The SOAP tests' back end (tests/soap-server: the npm `soap` package at the locked version).
if [ ! -d tests/soap-server/node_modules/soap ]; then
  echo "== installing the SOAP test back end (npm ci)"
  npm ci --prefix tests/soap-server --no-audit --no-fund --loglevel=error
fi

echo "== self-contained docs"
# Nothing tracked points outside the repository: a clone must explain itself.
# (The pattern is spelled with classes so that this file does not match itself.)
if git grep -n -I -E -e '[.][.]/s[h]ared' -e 'DESIGN[.]md' -- ':!tests/run.sh'; then
  echo "tracked files point at the shared folder beside the repository or at a design file outside it (above): move the notes into the project" >&2
  exit 1
fi
# minimal.toml says at the top what it needs and where it listens and writes.
head -n 12 deploy/examples/minimal.toml | grep -q '127.0.0.1:8081' &&
  head -n 12 deploy/examples/minimal.toml | grep -q '127.0.0.1:8080' &&
  head -n 12 deploy/examples/minimal.toml | grep -q 'evidence' || {
  echo "deploy/examples/minimal.toml must say at the top: back end, listen address, evidence dir" >&2
  exit 1
}

echo "== rustfmt"
cargo fmt --all -- --check

echo "== locks"
# The fuzz workspace keeps its own lock, a copy of the root one plus libfuzzer: a stale copy
# would only fail at the corpus replay, at the end. Refresh it with
#   cd tests/fuzz && cp ../../Cargo.lock . && cargo metadata --format-version 1 >/dev/null
cargo metadata --locked --format-version 1 --manifest-path tests/fuzz/Cargo.toml >/dev/null || {
  echo "tests/fuzz/Cargo.lock is stale: refresh it as the comment above says" >&2
  exit 1
}

echo "== clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== build"
cargo build --workspace --all-targets --locked

echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi

echo "== doc tests"
cargo test --workspace --doc --locked

echo "== example configs"
bin=target/debug/penghubung
for f in deploy/examples/*.toml; do
  [ -e "$f" ] || continue
  case "$f" in
    # References files under /etc that only exist on a real server: pure validation only.
    *production.toml) "$bin" validate --offline -c "$f" ;;
    *) "$bin" validate -c "$f" ;;
  esac
done
for tmpl in deploy/bench/*.toml.tmpl; do
  [ -e "$tmpl" ] || continue
  rendered=$(mktemp --suffix=.toml)
  sed -e 's/@LISTEN@/127.0.0.1:18185/; s/@LISTEN_H2@/127.0.0.1:18285/; s/@UPSTREAM@/127.0.0.1:18080/' \
      -e 's/@THREADS@/1/; s#@RUN_DIR@#/tmp/penghubung-bench#' "$tmpl" > "$rendered"
  "$bin" validate --offline -c "$rendered"
  rm -f "$rendered"
done

echo "== bench smoke"
# The benchmark runner works from a clone: nginx origin and proxy, the debug gateway, every row
# for a few seconds, no thresholds (figures of a debug build mean nothing). Fails only when the
# runner breaks: a proxy does not start or no request succeeds.
deploy/bench/run.sh --smoke

if [ -x tests/fuzz/replay.sh ]; then
  echo "== fuzz corpus replay"
  tests/fuzz/replay.sh
fi
echo "== all green"
