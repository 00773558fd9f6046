# bad_data.sh — bad data gets a clear error naming the file and the problem, exit code 1, no crash,
# and no output file (`vtrans-dist tokenize`; acceptance 6 of F1, data cases).
set -euo pipefail

: "${VT_BIN:?VT_BIN must name the vtrans-dist binary}"
fixtures="${VT_FIXTURES:-$(dirname "$0")/../../../shared/fixtures}"
tok="$fixtures/stories260K/tok512.bin"
if [[ ! -r "$tok" ]]; then
    echo "skipped: tokenizer fixture not found under $fixtures"
    exit 77
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
failures=0

# expect_error TITLE NEEDLE... -- ARGS: `vtrans-dist ARGS` must exit 1 with every NEEDLE on stderr
# and must not create out.bin.
expect_error() {
    local title="$1"
    shift
    local needles=()
    while [[ "$1" != "--" ]]; do
        needles+=("$1")
        shift
    done
    shift
    local rc=0
    "$VT_BIN" "$@" > stdout.txt 2> stderr.txt || rc=$?
    if [[ $rc -ne 1 ]]; then
        echo "FAIL [$title]: exit code $rc, expected 1 (>= 128 is a crash)" >&2
        cat stderr.txt >&2
        failures=$((failures + 1))
        return
    fi
    for needle in "${needles[@]}"; do
        if ! grep -qF -- "$needle" stderr.txt; then
            echo "FAIL [$title]: stderr lacks '$needle':" >&2
            cat stderr.txt >&2
            failures=$((failures + 1))
            return
        fi
    done
    if [[ -e out.bin ]] || compgen -G "out.bin.tmp*" > /dev/null; then
        echo "FAIL [$title]: an output file was left behind" >&2
        failures=$((failures + 1))
        rm -f out.bin out.bin.tmp*
        return
    fi
    echo "ok [$title]: $(head -n 1 stderr.txt)"
}

printf 'A good first line.\n\nThen caf\xe9 in Latin-1.\n' > latin1.txt
expect_error "non-UTF-8 text" "latin1.txt" "line 3" "invalid UTF-8" -- \
    tokenize --tokenizer "$tok" --data latin1.txt --out out.bin

: > empty.txt
expect_error "empty text" "empty.txt" "empty data" -- tokenize --tokenizer "$tok" --data empty.txt --out out.bin

printf '\n\n   \n\t\n' > blank.txt
expect_error "whitespace-only text" "blank.txt" "empty data" -- \
    tokenize --tokenizer "$tok" --data blank.txt --out out.bin

printf '{"text": "fine"}\n{"text": "no closing quote}\n' > broken.jsonl
expect_error "invalid JSON Lines" "broken.jsonl" "line 2" "invalid JSON" -- \
    tokenize --tokenizer "$tok" --data broken.jsonl --out out.bin

mkdir -p only-notes/docs
echo "a,b" > only-notes/docs/notes.csv
(cd only-notes && tar -czf ../nothing.tar.gz docs)
expect_error "archive with no usable member" "nothing.tar.gz" "no usable member" -- \
    tokenize --tokenizer "$tok" --data nothing.tar.gz --out out.bin

echo "plain text, not a zip" > fake.zip
expect_error "not an archive" "fake.zip" -- tokenize --tokenizer "$tok" --data fake.zip --out out.bin

printf 'x' > cut.bin
expect_error "truncated token file" "cut.bin" "shorter than the 1024-byte token shard header" -- \
    tokenize --tokenizer "$tok" --data cut.bin --out out.bin

echo "id,text" > data.csv
expect_error "unknown data format" "data.csv" "unknown data format" -- \
    tokenize --tokenizer "$tok" --data data.csv --out out.bin

expect_error "missing data file" "missing.txt" "cannot open" -- \
    tokenize --tokenizer "$tok" --data missing.txt --out out.bin

echo "hello" > ok.txt
expect_error "unknown option" "--frobnicate" "unknown option" -- \
    tokenize --tokenizer "$tok" --data ok.txt --out out.bin --frobnicate 3

expect_error "missing --out" "missing required option --out" -- tokenize --tokenizer "$tok" --data ok.txt

head -c 50 "$tok" > cut-tok.bin
expect_error "truncated tokenizer" "cut-tok.bin" "truncated" -- \
    tokenize --tokenizer cut-tok.bin --data ok.txt --out out.bin

if [[ $failures -ne 0 ]]; then
    echo "$failures case(s) failed" >&2
    exit 1
fi
