// Hugging Face model folders as transformers' save_pretrained / a tokenizer's save_pretrained
// write them: the files beside the weights that a merged or converted model keeps (config,
// generation config, tokenizer), and where a PEFT adapter folder says its base is.
//
// A profile that writes a model folder lists hf_model_folder_files(base) as its sidecars
// (checked against "never overwrite a file the user did not name" before the run) and
// copies them after the weights are written. Weights and their index are never among them.
#pragma once

#include <string>
#include <vector>

namespace ckb {

// transformers' default max_shard_size of PreTrainedModel.save_pretrained: "50GB" (decimal) in
// transformers 5 (src/transformers/modeling_utils.py, `max_shard_size: int | str = "50GB"`; older
// releases used smaller defaults). Shards are named model-0000N-of-0000M.safetensors.
inline constexpr const char* kHfDefaultShardSize = "50GB";

// The names (not paths) of the model-folder files present in `base_dir`, in a fixed order:
// config.json, generation_config.json, and the tokenizer's files (tokenizer.json,
// tokenizer_config.json, special_tokens_map.json, added_tokens.json, tokenizer.model,
// spiece.model, vocab.json, vocab.txt, merges.txt, chat_template.jinja, chat_template.json).
std::vector<std::string> hf_model_folder_files(const std::string& base_dir);

// Copies each named file from `from` into `to` (each published atomically); returns the
// paths written.
std::vector<std::string> copy_model_folder_files(const std::vector<std::string>& names, const std::string& from,
                                                 const std::string& to);

// A PEFT adapter: a folder holding adapter_config.json, or the adapter_model.safetensors
// inside one.
bool is_peft_adapter(const std::string& path);

// The base model folder an adapter names in adapter_config.json's base_model_name_or_path:
// an absolute path, or one relative to the adapter folder, that is a folder. UsageError
// otherwise (unset, a Hub model id, no such folder), saying to pass the base.
std::string peft_local_base(const std::string& adapter_dir);

}  // namespace ckb
