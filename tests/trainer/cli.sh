# The command line: help for every command, clear errors for unknown commands and options.
source "$(dirname "$0")/common.sh"
"$HARNESS" --help | grep -q 'train' || fail "harness --help does not list train"
"$HARNESS" train --help | grep -q -- '--set' || fail "train --help does not describe --set"
"$HARNESS" convert --help | grep -q 'fashion-mnist' || fail "convert --help"
"$HARNESS" --version | grep -q '^harness ' || fail "--version"
if "$HARNESS" frobnicate 2>"$WORK/err.txt"; then fail "unknown command exited 0"; fi
grep -q "unknown command 'frobnicate'" "$WORK/err.txt" || fail "unknown command message"
if "$HARNESS" train --bogus 2>"$WORK/err.txt"; then fail "unknown option exited 0"; fi
grep -q "unknown option '--bogus'" "$WORK/err.txt" || fail "unknown option message: $(cat "$WORK/err.txt")"
if "$HARNESS" convert cifar 2>"$WORK/err.txt"; then fail "unknown format exited 0"; fi
grep -q "cifar" "$WORK/err.txt" || fail "unknown format message"
echo "cli: ok"
