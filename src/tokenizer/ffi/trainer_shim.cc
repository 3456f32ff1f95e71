// Thin C entry point over SentencePieceTrainer::Train(kwargs, ...), so Rust can train a model
// without Python. Keys and values are passed as parallel arrays of NUL-terminated strings. The
// key "random_seed" is not a trainer flag: it seeds SentencePiece's random generator, so the
// same input gives the same model.
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>

#include "sentencepiece_processor.h"
#include "sentencepiece_trainer.h"

extern "C" {

// Returns nullptr on success, or a malloc'ed error message the caller frees with np_spm_free.
// On success, *model_out/*model_len receive a malloc'ed serialized ModelProto.
char *np_spm_train(const char **keys, const char **values, size_t n, char **model_out,
                   size_t *model_len) {
  std::unordered_map<std::string, std::string> kwargs;
  for (size_t i = 0; i < n; ++i) kwargs[keys[i]] = values[i];
  auto seed = kwargs.find("random_seed");
  if (seed != kwargs.end()) {
    sentencepiece::SetRandomGeneratorSeed(
        static_cast<unsigned int>(std::strtoul(seed->second.c_str(), nullptr, 10)));
    kwargs.erase(seed);
  }
  std::string proto;
  auto status = sentencepiece::SentencePieceTrainer::Train(kwargs, nullptr, &proto);
  if (!status.ok()) {
    std::string msg = status.ToString();
    char *err = static_cast<char *>(std::malloc(msg.size() + 1));
    std::memcpy(err, msg.c_str(), msg.size() + 1);
    return err;
  }
  char *buf = static_cast<char *>(std::malloc(proto.size() ? proto.size() : 1));
  std::memcpy(buf, proto.data(), proto.size());
  *model_out = buf;
  *model_len = proto.size();
  return nullptr;
}

void np_spm_free(void *p) { std::free(p); }
}
