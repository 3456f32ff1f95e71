//! The SentencePiece tokenizer: training it from notebook text (through the C++ trainer), loading
//! it, and encoding/decoding text with the structural markers as single tokens.

use crate::sequence::{Marker, Segments};
use sentencepiece::SentencePieceProcessor;
use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

extern "C" {
    fn np_spm_train(
        keys: *const *const c_char,
        values: *const *const c_char,
        n: usize,
        model_out: *mut *mut c_char,
        model_len: *mut usize,
    ) -> *mut c_char;
    fn np_spm_free(p: *mut std::ffi::c_void);
}

#[derive(Debug, Error)]
pub enum TokenizerError {
    #[error("{path}: cannot read the tokenizer: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("tokenizer is missing marker {0:?}; it was not trained by this program")]
    MissingMarker(&'static str),
    #[error("training the tokenizer failed: {0}")]
    Train(String),
    #[error("encoding failed: {0}")]
    Encode(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Settings for training a tokenizer.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub vocab_size: usize,
    /// Sample at most this many lines for training.
    pub max_sentences: usize,
    pub threads: usize,
    /// Seeds SentencePiece's sampling, so training is repeatable.
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            vocab_size: 8000,
            max_sentences: 400_000,
            threads: 2,
            seed: 0,
        }
    }
}

/// A loaded tokenizer, with marker ids and each id's bytes for incremental decoding.
pub struct Tokenizer {
    sp: SentencePieceProcessor,
    proto: Vec<u8>,
    markers: HashMap<Marker, u32>,
    marker_of: HashMap<u32, Marker>,
    piece_bytes: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

fn parse_byte_piece(p: &str) -> Option<u8> {
    let hex = p.strip_prefix("<0x")?.strip_suffix('>')?;
    u8::from_str_radix(hex, 16).ok()
}

impl Tokenizer {
    /// Trains a tokenizer on the given text lines (newlines inside the text are handled by byte
    /// fallback, so each line is one training sentence).
    pub fn train(
        text: &[String],
        opts: &TrainOptions,
        work_dir: &Path,
    ) -> Result<Tokenizer, TokenizerError> {
        let input = work_dir.join("tokenizer-input.txt");
        {
            let io = |source| TokenizerError::Io {
                path: input.clone(),
                source,
            };
            let f = std::fs::File::create(&input).map_err(io)?;
            let mut w = std::io::BufWriter::new(f);
            for t in text {
                for line in t.lines() {
                    let line = line.trim_end_matches('\r');
                    // Marker symbols are user-defined pieces; lines made only of them teach nothing.
                    if line.trim().is_empty() || line.len() > 4000 {
                        continue;
                    }
                    writeln!(w, "{line}").map_err(io)?;
                }
            }
            w.flush().map_err(io)?;
        }
        let symbols: Vec<&str> = Marker::ALL.iter().map(|m| m.symbol()).collect();
        let args: Vec<(&str, String)> = vec![
            ("input", input.to_string_lossy().into_owned()),
            ("model_prefix", String::new()),
            ("model_type", "unigram".into()),
            ("vocab_size", opts.vocab_size.to_string()),
            ("character_coverage", "0.9995".into()),
            ("byte_fallback", "true".into()),
            ("normalization_rule_name", "identity".into()),
            ("remove_extra_whitespaces", "false".into()),
            ("add_dummy_prefix", "false".into()),
            ("allow_whitespace_only_pieces", "true".into()),
            ("split_digits", "true".into()),
            ("max_sentencepiece_length", "16".into()),
            ("max_sentence_length", "4192".into()),
            ("input_sentence_size", opts.max_sentences.to_string()),
            ("shuffle_input_sentence", "true".into()),
            ("hard_vocab_limit", "false".into()),
            ("num_threads", opts.threads.max(1).to_string()),
            ("user_defined_symbols", symbols.join(",")),
            ("unk_id", "0".into()),
            ("bos_id", "-1".into()),
            ("eos_id", "-1".into()),
            ("pad_id", "-1".into()),
            ("minloglevel", "2".into()),
            ("seed_sentencepiece_size", "200000".into()),
            ("random_seed", (opts.seed & 0xffff_ffff).to_string()),
        ];
        let proto = train_raw(&args)?;
        let _ = std::fs::remove_file(&input);
        Tokenizer::from_proto(proto).map_err(|e| TokenizerError::Train(e.to_string()))
    }

    /// Loads a tokenizer from a serialized SentencePiece model.
    pub fn from_proto(proto: Vec<u8>) -> Result<Tokenizer, TokenizerError> {
        let sp = SentencePieceProcessor::from_serialized_proto(&proto).map_err(|e| {
            TokenizerError::Load {
                path: PathBuf::from("<memory>"),
                reason: e.to_string(),
            }
        })?;
        let mut markers = HashMap::new();
        let mut marker_of = HashMap::new();
        for m in Marker::ALL {
            let id = sp
                .piece_to_id(m.symbol())
                .ok()
                .flatten()
                .ok_or(TokenizerError::MissingMarker(m.symbol()))?;
            markers.insert(m, id);
            marker_of.insert(id, m);
        }
        let pieces = proto_pieces(&proto).ok_or_else(|| TokenizerError::Load {
            path: PathBuf::from("<memory>"),
            reason: "malformed model proto".into(),
        })?;
        let unk = sp.unk_id();
        let piece_bytes = pieces
            .iter()
            .enumerate()
            .map(|(id, raw)| {
                let id = id as u32;
                if id == unk || marker_of.contains_key(&id) {
                    Vec::new()
                } else if let Some(b) = parse_byte_piece(raw) {
                    vec![b]
                } else {
                    raw.replace('\u{2581}', " ").into_bytes()
                }
            })
            .collect();
        Ok(Tokenizer {
            sp,
            proto,
            markers,
            marker_of,
            piece_bytes,
        })
    }

    /// Loads `tokenizer.model` from disk.
    pub fn load(path: &Path) -> Result<Tokenizer, TokenizerError> {
        let proto = std::fs::read(path).map_err(|e| TokenizerError::Load {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Tokenizer::from_proto(proto).map_err(|e| TokenizerError::Load {
            path: path.to_path_buf(),
            reason: match e {
                TokenizerError::Load { reason, .. } => reason,
                other => other.to_string(),
            },
        })
    }

    /// The serialized model, as written to `tokenizer.model`.
    pub fn proto(&self) -> &[u8] {
        &self.proto
    }

    pub fn vocab_size(&self) -> usize {
        self.piece_bytes.len()
    }

    pub fn marker_id(&self, m: Marker) -> u32 {
        self.markers[&m]
    }

    pub fn marker(&self, id: u32) -> Option<Marker> {
        self.marker_of.get(&id).copied()
    }

    /// The raw bytes a token stands for (empty for markers and unknown).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.piece_bytes
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Encodes plain text (no markers are recognised specially beyond SentencePiece's own
    /// user-defined symbols).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        // SentencePiece treats NUL as end of string; encode it as its byte piece.
        if text.contains('\0') {
            let mut ids = Vec::new();
            for (i, part) in text.split('\0').enumerate() {
                if i > 0 {
                    ids.push(self.byte_id(0));
                }
                ids.extend(self.encode(part)?);
            }
            return Ok(ids);
        }
        let pieces = self
            .sp
            .encode(text)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(pieces.into_iter().map(|p| p.id).collect())
    }

    fn byte_id(&self, b: u8) -> u32 {
        self.sp
            .piece_to_id(&format!("<0x{b:02X}>"))
            .ok()
            .flatten()
            .unwrap_or(0)
    }

    /// Encodes a notebook's segments: markers become their ids.
    pub fn encode_segments(&self, seg: &Segments) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::new();
        for (m, t) in &seg.0 {
            match m {
                Some(m) => ids.push(self.marker_id(*m)),
                None => ids.extend(self.encode(t)?),
            }
        }
        Ok(ids)
    }

    /// Decodes ids to text; markers are written as their symbols.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            match self.marker(id) {
                Some(m) => bytes.extend_from_slice(m.symbol().as_bytes()),
                None => bytes.extend_from_slice(self.token_bytes(id)),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// How many characters each token adds (byte pieces count a character at its lead byte).
    pub fn token_chars(&self, id: u32) -> usize {
        self.token_bytes(id)
            .iter()
            .filter(|&&b| (b & 0xC0) != 0x80)
            .count()
    }
}

/// Reads the piece strings of a serialized `ModelProto` (field 1: repeated `SentencePiece`,
/// whose field 1 is the piece). The safe processor API does not expose them.
fn proto_pieces(proto: &[u8]) -> Option<Vec<String>> {
    fn varint(b: &[u8], i: &mut usize) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*i)?;
            *i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    fn fields(b: &[u8]) -> Option<Vec<(u64, &[u8])>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            let key = varint(b, &mut i)?;
            match key & 7 {
                0 => {
                    varint(b, &mut i)?;
                }
                1 => i += 8,
                5 => i += 4,
                2 => {
                    let len = usize::try_from(varint(b, &mut i)?).ok()?;
                    let end = i.checked_add(len)?;
                    out.push((key >> 3, b.get(i..end)?));
                    i = end;
                }
                _ => return None,
            }
        }
        Some(out)
    }
    let mut pieces = Vec::new();
    for (num, body) in fields(proto)? {
        if num == 1 {
            let piece = fields(body)?
                .into_iter()
                .find(|(n, _)| *n == 1)
                .map(|(_, s)| String::from_utf8_lossy(s).into_owned())
                .unwrap_or_default();
            pieces.push(piece);
        }
    }
    Some(pieces)
}

/// Runs the C++ trainer with key/value flags and returns the serialized model.
fn train_raw(args: &[(&str, String)]) -> Result<Vec<u8>, TokenizerError> {
    let keys: Vec<CString> = args
        .iter()
        .map(|(k, _)| CString::new(*k))
        .collect::<Result<_, _>>()
        .map_err(|e| TokenizerError::Train(e.to_string()))?;
    let vals: Vec<CString> = args
        .iter()
        .filter(|(k, _)| *k != "model_prefix")
        .map(|(_, v)| CString::new(v.as_str()))
        .collect::<Result<_, _>>()
        .map_err(|e| TokenizerError::Train(e.to_string()))?;
    let keys: Vec<CString> = keys
        .into_iter()
        .filter(|k| k.as_bytes() != b"model_prefix")
        .collect();
    let kp: Vec<*const c_char> = keys.iter().map(|k| k.as_ptr()).collect();
    let vp: Vec<*const c_char> = vals.iter().map(|v| v.as_ptr()).collect();
    let mut out: *mut c_char = std::ptr::null_mut();
    let mut len: usize = 0;
    // SAFETY: kp/vp point to `n` live NUL-terminated strings; out/len are valid out-pointers.
    let err = unsafe { np_spm_train(kp.as_ptr(), vp.as_ptr(), kp.len(), &mut out, &mut len) };
    if !err.is_null() {
        // SAFETY: err is a NUL-terminated string allocated by the shim with malloc.
        let msg = unsafe { std::ffi::CStr::from_ptr(err) }
            .to_string_lossy()
            .into_owned();
        unsafe { np_spm_free(err.cast()) };
        return Err(TokenizerError::Train(msg));
    }
    // SAFETY: on success out points to `len` bytes allocated by the shim with malloc.
    let proto = unsafe { std::slice::from_raw_parts(out as *const u8, len) }.to_vec();
    unsafe { np_spm_free(out.cast()) };
    Ok(proto)
}
