#!/usr/bin/env bash
# Fail if nbdev_clean, nbdev_export or the README export change any file: notebooks must be committed
# clean and lpd/ + README.md must be what the notebooks generate. Compares the tree before and after,
# so it also works in a checkout with uncommitted edits.
set -euo pipefail
BIN=${1:-.venv/bin}
if ! git rev-parse --git-dir >/dev/null 2>&1; then echo "check_sync: not a git checkout, skipped"; exit 0; fi
state() { git status --porcelain=v1 --untracked-files=all -- nbs lpd README.md; git diff -- nbs lpd README.md | sha1sum; }
before=$(state)
"$BIN/nbdev_clean" >/dev/null
"$BIN/nbdev_export"
"$BIN/python" .ci/readme.py >/dev/null
after=$(state)
if [ "$before" != "$after" ]; then
  echo "check_sync: nbdev_clean / nbdev_export / .ci/readme.py changed files; commit the result:" >&2
  diff <(echo "$before") <(echo "$after") >&2 || true
  exit 1
fi
echo "check_sync: notebooks clean, lpd/ and README.md in sync"
