#!/usr/bin/env bash
# The one test command: installs what the tests need, then runs every test of the workspace.
# The README gives this command; .ci/run runs it after the format and lint checks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --workspace --all-targets --locked
cargo test --workspace --locked -- --test-threads=2
