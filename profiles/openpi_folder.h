// Where openpi keeps what goes with a checkpoint's weights, as its training code writes it
// (training/checkpoints.py; ../shared/research/openpi.md §5):
//   training layout  <run>/<step>/{params, train_state, assets}: the `params` item holds
//                    {"params": weights}; with EMA on (TrainConfig.ema_decay, default 0.99)
//                    those are the EMA weights and `train_state` keeps the raw ones under its
//                    own `params` (_split_params); with EMA off `train_state`'s `params` is empty;
//   released layout  <ckpt>/{params, assets};
//   assets           assets/<asset_id>/norm_stats.json (normalize.save; an asset_id such as
//                    "lerobot/aloha_sim" nests folders).
// openpi_weights() picks the weight set of an opened checkpoint (a step, the released folder,
// the params item itself, or a CheckpointManager root's step) and openpi_assets() lists the
// files to copy beside the converted weights.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/tree.h"
#include "profiles/profile.h"

namespace ckb {

struct OpenpiWeights {
  Checkpoint checkpoint;    // root {"params": ...}: the set chosen, nothing else
  std::string folder;       // <step> or <ckpt>: the folder holding params/ (and assets/)
  std::string chosen;       // "ema" or "raw"
  std::string item;         // where they were read: "params" or "train_state/params"
  bool both = false;        // the checkpoint holds EMA and raw weights
  nlohmann::ordered_json to_json() const;
  std::string note() const;  // one line for the notes: which set, from where, how to pick the other
};

// `choice`: "" (openpi's own choice: the params item, i.e. EMA when both are present), "ema"
// or "raw". UsageError for "ema" when the checkpoint holds only one set (EMA was off: params
// holds the raw weights). `open` opens a sibling item (train_state) when the params item was
// named alone.
// The option of both openpi profiles (convert --recipe openpi, merge-lora): --weights ema|raw.
const ProfileOptionSpec& openpi_weights_option();

OpenpiWeights openpi_weights(const Checkpoint& ck, const std::string& choice,
                             const std::function<Checkpoint(const std::string&)>& open);

struct OpenpiAssets {
  std::string dir;                     // <folder>/assets; "" when there is none
  std::vector<std::string> files;      // regular files under it, relative, sorted ("robot/norm_stats.json")
  std::vector<std::string> asset_ids;  // the folders holding a norm_stats.json ("robot")
  nlohmann::ordered_json to_json() const;
};

OpenpiAssets openpi_assets(const std::string& folder);

}  // namespace ckb
