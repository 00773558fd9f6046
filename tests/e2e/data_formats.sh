#!/usr/bin/env bash
# data_formats.sh — the same text as .txt, .jsonl, a token file, and inside .tar.gz, .tar.zst and .zip
# gives identical token streams (`vtrans-dist tokenize`; acceptance 5 of F1).
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
tok="$fx/stories260K/tok512.bin"
eval_txt="$fx/tinystories/eval.txt"
need_files "$tok" "$eval_txt"
[[ -x "$py" ]] || py=python3
cd "$work"

# A sample: the first 40 KB of the evaluation text, cut at a document boundary; the same documents
# as JSON Lines (one record each); and the sample split in two files at a document boundary.
"$py" - "$eval_txt" <<'EOF'
import json, sys
text = open(sys.argv[1], encoding="utf-8").read()
cut = text[:40000]
cut = cut[:cut.rindex("\n\n") + 1]
open("sample.txt", "w", encoding="utf-8").write(cut)
docs = [d.strip("\n") for d in cut.split("\n\n")]
docs = [d for d in docs if d.strip()]
with open("sample.jsonl", "w", encoding="utf-8") as f:
    for d in docs:
        f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
half = cut.index("\n\n", len(cut) // 2)
open("01.txt", "w", encoding="utf-8").write(cut[:half])
open("02.txt", "w", encoding="utf-8").write(cut[half:])
EOF

run() { # run NAME DATA: tokenize DATA into out-NAME.bin
    "$VT_BIN" tokenize --tokenizer "$tok" --data "$2" --out "out-$1.bin" > "$1.log"
}

run txt sample.txt
grep -q "tokens -> out-txt.bin" txt.log
run jsonl sample.jsonl
run shard out-txt.bin # the pre-tokenized file that tokenize itself wrote
# The same ids as raw uint32.
"$py" -c '
import struct, sys
d = open("out-txt.bin", "rb").read()
magic, version, n = struct.unpack("<3i", d[:12])
assert (magic, version) == (20240520, 1), (magic, version)
ids = struct.unpack("<%dH" % n, d[1024:])
assert len(ids) > 5000 and ids[0] == 1 and max(ids) < 512, (len(ids), ids[:3])
open("ids.u32", "wb").write(struct.pack("<%dI" % n, *ids))
'
run u32 ids.u32

# Archives: the two halves, added in reverse order (members are read in name order), plus a
# directory and a file that is not data.
mkdir -p parts/notes
cp 02.txt 01.txt parts/
echo "not data" > parts/notes/README.csv
(cd parts && tar -czf ../sample.tar.gz 02.txt notes 01.txt)
(cd parts && tar --zstd -cf ../sample.tar.zst 02.txt notes 01.txt)
if command -v zip > /dev/null; then
    (cd parts && zip -qr ../sample.zip 02.txt notes 01.txt)
else
    (cd parts && "$py" -c '
import zipfile
with zipfile.ZipFile("../sample.zip", "w", zipfile.ZIP_DEFLATED) as z:
    for name in ["02.txt", "notes/README.csv", "01.txt"]:
        z.write(name)
')
fi
run targz sample.tar.gz
run tarzst sample.tar.zst
run zip sample.zip
grep -q "2 files" zip.log

for kind in jsonl shard u32 targz tarzst zip; do
    if ! cmp -s out-txt.bin "out-$kind.bin"; then
        fail "the token stream from $kind differs from the one from .txt"
    fi
done
echo "ok: txt, jsonl, token shard, u32, tar.gz, tar.zst and zip give identical token streams ($(cat txt.log))"
