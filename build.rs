//! Build script: gives the binary a RUNPATH to libtorch and compiles the SentencePiece trainer shim.
use std::env;

fn main() {
    // torch-sys declares `links = "tch"`, so its lib folder arrives as DEP_TCH_LIBTORCH_LIB.
    if let Ok(lib) = env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        if env::var("NOTEBOOK_PREDICTOR_CUDA").is_ok_and(|v| v == "1") {
            println!(
                "cargo:rustc-link-arg=-Wl,--push-state,--no-as-needed,-ltorch_cuda,--pop-state"
            );
        }
    }
    println!("cargo:rerun-if-env-changed=NOTEBOOK_PREDICTOR_CUDA");

    cc::Build::new()
        .cpp(true)
        .flag("-std=c++17")
        .include("src/tokenizer/ffi")
        .file("src/tokenizer/ffi/trainer_shim.cc")
        .compile("np_spm_trainer_shim");
    // libsentencepiece_train.a is built by sentencepiece-sys next to libsentencepiece.a,
    // whose search path that crate already passes to the linker.
    println!("cargo:rustc-link-lib=static=sentencepiece_train");
    println!("cargo:rerun-if-changed=src/tokenizer/ffi/trainer_shim.cc");
}
