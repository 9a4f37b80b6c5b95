// The work directory of a block-by-block quantization run (`lowbit quantize` keeps it beside --out as
// OUT.partial): after each finished transformer block, that block's Linears (quantized) and RMSNorm
// weights, the calibration hidden states after it, and a state file naming the block. An interrupted run
// continues from the last finished block with exactly the inputs an uninterrupted run would have had, so
// the result is bit for bit the same.
//
//   state.json              {"format": "lowbit-partial", "version": 1, "fingerprint": {...},
//                            "finished": K, "reports": [[layer reports of block 0], ...]}
//   block-00000.safetensors block 0's Linear tensors ("<layer>.<field>") and norms (Hugging Face names);
//                           metadata "layers": {layer: {"layout", "params"}}
//   hidden-0000K.safetensors "hidden" f32 [windows, seqlen, hidden]: the input of block K (calibrated runs)
//
// Every file is written under a temporary name and renamed; state.json is written last, so it only ever
// names blocks whose files are complete. A lock file keeps two runs from sharing the directory.
#pragma once

#include <filesystem>
#include <map>
#include <vector>

#include <nlohmann/json.hpp>

#include "lowbit/core/safetensors.h"
#include "lowbit/model/llama.h"
#include "lowbit/model/quantize_model.h"

namespace lowbit::algorithms {

class BlockCheckpoints {
 public:
  // Opens `dir` (created when missing). `fingerprint` holds everything that decides the result (model,
  // schemes, algorithm and its options, calibration data); a directory started with a different one is
  // an error naming what differs.
  BlockCheckpoints(std::filesystem::path dir, nlohmann::json fingerprint);
  ~BlockCheckpoints();
  BlockCheckpoints(const BlockCheckpoints&) = delete;
  BlockCheckpoints& operator=(const BlockCheckpoints&) = delete;

  const std::filesystem::path& dir() const { return dir_; }
  int64_t finished() const { return finished_; }  // blocks 0 .. finished() - 1 are saved

  // Writes block l's Linears and norms as `m` holds them now (step one of finishing block l).
  void save_block(const LlamaModel& m, int64_t l) const;
  // Replaces block l's Linears and norms in `m` with the saved ones (memory-mapped where the layout keeps
  // the saved tensors, not copied), and releases the file's pages the loading touched.
  void restore_block(LlamaModel& m, int64_t l);
  // Releases the resident pages of block l's file again (after running the block touched them).
  void release_block(int64_t l) const;
  // Records block l as finished (step two): the hidden states after it (calibrated runs; else null) and
  // its layer reports.
  void commit(int64_t l, const std::vector<std::vector<float>>* hidden, const std::vector<LayerReport>& reports);

  // The input of block finished() as saved (empty when the run is not calibrated or nothing is finished).
  std::vector<std::vector<float>> hidden() const;
  std::vector<LayerReport> reports() const;  // of the finished blocks, in order

  // Deletes the directory (after the result is in place).
  void remove();

 private:
  std::filesystem::path dir_;
  nlohmann::json fingerprint_;
  nlohmann::json reports_ = nlohmann::json::array();
  std::map<int64_t, SafetensorsFile> files_;  // the restored blocks' mapped files
  int64_t finished_ = 0;
  bool has_hidden_ = false;
  int lock_fd_ = -1;
};

// FNV-1a 64 of a file's bytes, as 16 hex digits (fingerprints of calibration text and recipes).
std::string file_digest(const std::filesystem::path& path);

// Drops the resident pages of a tensor that views a read-only memory-mapped file (a checkpoint's weight
// no longer needed), so that they stop counting against this process; the file stays mapped and reads
// fault the pages back in. Memory that is not such a mapping is left alone.
void release_mapped_pages(const Tensor& t);
void release_mapped_pages(const quant::LinearWeight& w);

}  // namespace lowbit::algorithms
