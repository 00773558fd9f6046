#!/usr/bin/env bash
# bad_data.sh — bad data gets a clear error naming the file and the problem, exit code 1, no crash,
# and no output file (`vtrans-dist tokenize`; acceptance 6 of F1, data cases).
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tok="$fx/stories260K/tok512.bin"
need_files "$tok"
cd "$work"

# refused TITLE NEEDLE... -- ARGS: `vtrans-dist ARGS` exits 1 with every NEEDLE on stderr
# (expect_error) and creates no out.bin.
refused() {
    expect_error "$@"
    if [[ -e out.bin ]] || compgen -G "out.bin.tmp*" > /dev/null; then
        record_failure "$1" "an output file was left behind"
        rm -f out.bin out.bin.tmp*
    fi
}

printf 'A good first line.\n\nThen caf\xe9 in Latin-1.\n' > latin1.txt
refused "non-UTF-8 text" "latin1.txt" "line 3" "invalid UTF-8" -- \
    tokenize --tokenizer "$tok" --data latin1.txt --out out.bin

: > empty.txt
refused "empty text" "empty.txt" "empty data" -- tokenize --tokenizer "$tok" --data empty.txt --out out.bin

printf '\n\n   \n\t\n' > blank.txt
refused "whitespace-only text" "blank.txt" "empty data" -- \
    tokenize --tokenizer "$tok" --data blank.txt --out out.bin

printf '{"text": "fine"}\n{"text": "no closing quote}\n' > broken.jsonl
refused "invalid JSON Lines" "broken.jsonl" "line 2" "invalid JSON" -- \
    tokenize --tokenizer "$tok" --data broken.jsonl --out out.bin

mkdir -p only-notes/docs
echo "a,b" > only-notes/docs/notes.csv
(cd only-notes && tar -czf ../nothing.tar.gz docs)
refused "archive with no usable member" "nothing.tar.gz" "no usable member" -- \
    tokenize --tokenizer "$tok" --data nothing.tar.gz --out out.bin

echo "plain text, not a zip" > fake.zip
refused "not an archive" "fake.zip" -- tokenize --tokenizer "$tok" --data fake.zip --out out.bin

printf 'x' > cut.bin
refused "truncated token file" "cut.bin" "shorter than the 1024-byte token shard header" -- \
    tokenize --tokenizer "$tok" --data cut.bin --out out.bin

echo "id,text" > data.csv
refused "unknown data format" "data.csv" "unknown data format" -- \
    tokenize --tokenizer "$tok" --data data.csv --out out.bin

refused "missing data file" "missing.txt" "cannot open" -- \
    tokenize --tokenizer "$tok" --data missing.txt --out out.bin

echo "hello" > ok.txt
refused "unknown option" "--frobnicate" "unknown option" -- \
    tokenize --tokenizer "$tok" --data ok.txt --out out.bin --frobnicate 3

refused "missing --out" "missing required option --out" -- tokenize --tokenizer "$tok" --data ok.txt

head -c 50 "$tok" > cut-tok.bin
refused "truncated tokenizer" "cut-tok.bin" "truncated" -- \
    tokenize --tokenizer cut-tok.bin --data ok.txt --out out.bin

finish
