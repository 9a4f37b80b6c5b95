// The BPE model: a word's characters merged pair by pair, lowest rank first, as in `tokenizers`.
#include <queue>

#include "tokenizer_impl.h"

namespace lowbit::tokenizer_detail {

void BpeModel::encode(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges) {
    if (auto it = vocab.find(word); it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }

  // Initial symbols: one per character, or its <0xNN> byte tokens, or <unk>.
  std::vector<int32_t> ids;
  ids.reserve(word.size());
  bool last_unk = false;
  for (size_t pos = 0; pos < word.size();) {
    const size_t n =
        std::min(utf8_sequence_length(static_cast<unsigned char>(word[pos])), word.size() - pos);
    const std::string_view ch = word.substr(pos, n);
    pos += n;
    if (auto it = vocab.find(ch); it != vocab.end()) {
      ids.push_back(it->second);
      last_unk = false;
      continue;
    }
    if (byte_fallback) {
      bool all = true;
      for (const char c : ch) all = all && byte_ids[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        for (const char c : ch) ids.push_back(byte_ids[static_cast<unsigned char>(c)]);
        last_unk = false;
        continue;
      }
    }
    if (unk_id < 0)
      continue;  // like `tokenizers`: with no unk token, an unknown character is dropped
    if (fuse_unk && last_unk) continue;
    ids.push_back(unk_id);
    last_unk = true;
  }
  const auto n = static_cast<int32_t>(ids.size());
  if (n <= 1) {
    out.insert(out.end(), ids.begin(), ids.end());
    return;
  }

  // Symbols form a linked list over `ids`; a merge keeps the left slot and kills the right (id -1).
  // The heap holds candidate pairs by (rank, position); entries made stale by earlier merges are
  // skipped on pop.
  std::vector<int32_t> prev(n), next(n);
  for (int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    int32_t rank, pos;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::vector<Candidate> storage;
  storage.reserve(n);
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap(std::greater<>{},
                                                                              std::move(storage));
  auto consider = [&](int32_t left) {
    const int32_t right = next[left];
    if (right < 0) return;
    if (const Merge* m = find_merge(ids[left], ids[right])) heap.push({m->rank, left});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);

  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    const int32_t right = next[c.pos];
    if (ids[c.pos] < 0 || right < 0) continue;
    const Merge* m = find_merge(ids[c.pos], ids[right]);
    if (m == nullptr || m->rank != c.rank)
      continue;  // the pair changed since this entry was pushed
    ids[c.pos] = m->result;
    ids[right] = -1;
    next[c.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.pos;
    if (prev[c.pos] >= 0) consider(prev[c.pos]);
    consider(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = next[i]) out.push_back(ids[i]);
}

}  // namespace lowbit::tokenizer_detail
