//! The tokenizer is lossless: a tokenizer trained on the fixture notebooks decodes every encoded
//! text back to the same bytes (whitespace, line ends, non-ASCII, emoji, NUL) and keeps the
//! marker symbols as single tokens; SentencePiece's own decoder agrees.

mod common;

use notebook_predictor::notebook::Notebook;
use notebook_predictor::sequence::{notebook_segments, Marker, TextLimits};
use notebook_predictor::tokenizer::{Tokenizer, TrainOptions};
use sentencepiece::SentencePieceProcessor;
use std::sync::OnceLock;

fn tokenizer() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        let text = fixture_text();
        let work = common::tempdir();
        let opts = TrainOptions {
            vocab_size: 400,
            max_sentences: 100_000,
            threads: 1,
            seed: 5,
        };
        Tokenizer::train(&text, &opts, work.path()).expect("train the tokenizer")
    })
}

fn fixture_text() -> Vec<String> {
    common::fixture_files("train")
        .iter()
        .map(|p| {
            let nb = Notebook::read(p).expect("fixture notebook");
            notebook_segments(&nb, &TextLimits::default()).to_text()
        })
        .collect()
}

const SAMPLES: &[&str] = &[
    "def f(x):\n\treturn x  \n\n\n    y = 1   \n",
    "\t\tindented\twith\ttabs\t\n",
    "trailing spaces   \nand more\t \n",
    "\n\n\nblank lines first\n\n",
    "a = 1\r\nb = 2\r\n\r\nprint(a + b)\r\n",
    "lone\rcarriage return",
    "café = 1\n变量 = 2\nprint(café, 变量)\n",
    "naïve_Ωμέγα = 'Ελληνικά'; итог = 'кириллица'",
    "emoji = '🎉🚀'  # 👍🏽 family: 👨‍👩‍👧",
    "nul\0inside\0\0and at end\0",
    "\0",
    "combining e\u{301} and ligature \u{fb01} and full-width ＡＢＣ１２",
    "   leading spaces",
    " ",
    "\u{feff}bom then text",
    "x = \"<|notacode|>\"  # looks like a marker but is not one",
    "",
];

#[test]
fn decode_inverts_encode() {
    let tok = tokenizer();
    for &s in SAMPLES {
        let ids = tok.encode(s).expect("encode");
        assert_eq!(tok.decode(&ids), s, "round trip of {s:?} via {ids:?}");
        // Characters add up token by token (no marker in these texts).
        let chars: usize = ids.iter().map(|&id| tok.token_chars(id)).sum();
        assert_eq!(chars, s.chars().count(), "character count of {s:?}");
        assert!(
            ids.iter().all(|&id| tok.marker(id).is_none()),
            "{s:?} gave a marker"
        );
    }
}

#[test]
fn fixture_notebooks_round_trip_with_markers() {
    let tok = tokenizer();
    for p in common::fixture_files("valid") {
        let nb = Notebook::read(&p).expect("fixture notebook");
        let seg = notebook_segments(&nb, &TextLimits::default());
        let ids = tok.encode_segments(&seg).expect("encode");
        assert_eq!(tok.decode(&ids), seg.to_text(), "{}", p.display());
        let code = tok.marker_id(Marker::Code);
        let cells = nb
            .cells
            .iter()
            .filter(|c| c.kind == notebook_predictor::notebook::CellKind::Code)
            .count();
        assert_eq!(ids.iter().filter(|&&i| i == code).count(), cells);
    }
}

#[test]
fn markers_are_single_tokens() {
    let tok = tokenizer();
    let mut seen = std::collections::HashSet::new();
    for m in Marker::ALL {
        let ids = tok.encode(m.symbol()).expect("encode");
        assert_eq!(ids, vec![tok.marker_id(m)], "{}", m.symbol());
        assert_eq!(tok.marker(ids[0]), Some(m));
        assert!(seen.insert(ids[0]), "two markers share id {}", ids[0]);
        assert_eq!(tok.decode(&ids), m.symbol());
    }
    let text = "<|code|>print(1)<|stdout|>1\n<|end|><|markdown|># T";
    let ids = tok.encode(text).expect("encode");
    let markers: Vec<Marker> = ids.iter().filter_map(|&i| tok.marker(i)).collect();
    assert_eq!(
        markers,
        vec![Marker::Code, Marker::Stdout, Marker::End, Marker::Markdown]
    );
    assert_eq!(tok.decode(&ids), text);
}

#[test]
fn sentencepiece_decoder_agrees() {
    let tok = tokenizer();
    let sp = SentencePieceProcessor::from_serialized_proto(tok.proto()).expect("load proto");
    assert_eq!(sp.len(), tok.vocab_size());
    let with_markers = "<|code|>x = 1\r\n\tcafé 🎉<|stdout|>1\n<|end|>";
    // NUL is encoded outside SentencePiece (it ends C strings), so its decoder is not asked.
    for &s in SAMPLES.iter().chain([&with_markers]) {
        if s.contains('\0') {
            continue;
        }
        let ids = tok.encode(s).expect("encode");
        let sp_ids: Vec<u32> = sp
            .encode(s)
            .expect("sp encode")
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(ids, sp_ids, "ids of {s:?}");
        let decoded = sp.decode_piece_ids(&ids).expect("sp decode");
        assert_eq!(decoded, s, "SentencePiece decode of {s:?}");
    }
}

#[test]
fn reloaded_proto_encodes_the_same() {
    let tok = tokenizer();
    let again = Tokenizer::from_proto(tok.proto().to_vec()).expect("reload");
    for &s in SAMPLES {
        assert_eq!(
            tok.encode(s).expect("a"),
            again.encode(s).expect("b"),
            "{s:?}"
        );
    }
}

#[test]
fn training_is_repeatable_with_a_seed() {
    let text = fixture_text();
    let opts = TrainOptions {
        vocab_size: 400,
        max_sentences: 100_000,
        threads: 2,
        seed: 11,
    };
    let work = common::tempdir();
    let a = Tokenizer::train(&text, &opts, work.path()).expect("train");
    let b = Tokenizer::train(&text, &opts, work.path()).expect("train");
    assert!(a.proto() == b.proto(), "same seed, different tokenizers");
}
