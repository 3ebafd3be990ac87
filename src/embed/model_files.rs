//! Resolves a model source (a local directory or a Hugging Face Hub repo id) to the files of the
//! Hugging Face ONNX layout, e.g. `Xenova/clip-vit-base-patch32`:
//! `onnx/{vision,text}_model[_quantized].onnx`, `tokenizer.json`, `preprocessor_config.json`,
//! and, when present, the files that say which model family it is (`config.json`,
//! `tokenizer_config.json`, `score_head.json`; see [`super::family`]).

use std::path::{Path, PathBuf};

use super::error::LoadError;
use super::Precision;

/// The files one CLIP model needs, all present on disk.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// What the user asked for (directory or repo id), for messages and the index fingerprint.
    pub source: String,
    pub vision_model: PathBuf,
    pub text_model: PathBuf,
    pub tokenizer: PathBuf,
    pub preprocessor_config: PathBuf,
    /// `config.json`, `tokenizer_config.json`, `score_head.json`: absent from some layouts.
    pub config: Option<PathBuf>,
    pub tokenizer_config: Option<PathBuf>,
    pub score_head: Option<PathBuf>,
}

impl Precision {
    fn onnx_names(self) -> [&'static str; 2] {
        match self {
            Precision::Fp32 => ["onnx/vision_model.onnx", "onnx/text_model.onnx"],
            Precision::Quantized => ["onnx/vision_model_quantized.onnx", "onnx/text_model_quantized.onnx"],
        }
    }
}

const SHARED_FILES: [&str; 2] = ["tokenizer.json", "preprocessor_config.json"];
/// Read when present: without them the layout is taken for CLIP, as before families existed.
const OPTIONAL_FILES: [&str; 3] = ["config.json", "tokenizer_config.json", super::family::SCORE_HEAD_FILE];
/// Some exports ship one graph for both towers; VisionQuery runs the towers on their own.
const COMBINED_MODEL: &str = "onnx/model.onnx";
const SPLIT_HINT: &str = "this export has one combined onnx/model.onnx; VisionQuery needs the two towers: export them with `python scripts/export_clip_onnx.py --checkpoint <the transformers checkpoint> --out <DIR> --quantize` (or download an export that has onnx/vision_model.onnx and onnx/text_model.onnx)";

/// Finds the model's files: a directory is used as is; anything else is a Hub repo id looked up
/// in the Hugging Face cache and downloaded when missing (unless `HF_HUB_OFFLINE=1`).
pub fn resolve(source: &str, precision: Precision) -> Result<ModelFiles, LoadError> {
    let wanted: Vec<&str> = precision.onnx_names().into_iter().chain(SHARED_FILES).collect();
    let path = Path::new(source);
    if path.is_dir() {
        let missing: Vec<String> = wanted.iter().filter(|f| !path.join(f).is_file()).map(|f| f.to_string()).collect();
        if !missing.is_empty() {
            let hint = if path.join(COMBINED_MODEL).is_file() {
                SPLIT_HINT.to_string()
            } else {
                "export a checkpoint with scripts/export_clip_onnx.py or download the Hugging Face ONNX layout into this directory".into()
            };
            return Err(LoadError::MissingFiles { source_name: source.to_string(), missing, hint });
        }
        let optional = |f: &str| Some(path.join(f)).filter(|p| p.is_file());
        return Ok(files_from(source, |f| path.join(f), optional, precision));
    }
    if looks_like_path(source) {
        return Err(LoadError::File { path: path.to_path_buf(), message: "no such model directory".into() });
    }
    from_hub(source, &wanted, precision)
}

fn files_from(
    source: &str,
    locate: impl Fn(&str) -> PathBuf,
    optional: impl Fn(&str) -> Option<PathBuf>,
    precision: Precision,
) -> ModelFiles {
    let [vision, text] = precision.onnx_names();
    let [config, tokenizer_config, score_head] = OPTIONAL_FILES.map(optional);
    ModelFiles {
        source: source.to_string(),
        vision_model: locate(vision),
        text_model: locate(text),
        tokenizer: locate("tokenizer.json"),
        preprocessor_config: locate("preprocessor_config.json"),
        config,
        tokenizer_config,
        score_head,
    }
}

/// A source that names a path (`./x`, `/x`, `~/x`, `x/y/z`) is never treated as a repo id.
fn looks_like_path(source: &str) -> bool {
    source.starts_with(['.', '/', '~']) || source.matches('/').count() != 1
}

fn from_hub(repo_id: &str, wanted: &[&str], precision: Precision) -> Result<ModelFiles, LoadError> {
    let cache = hf_hub::Cache::from_env();
    let cached = cache.model(repo_id.to_string());
    let mut found = std::collections::HashMap::new();
    let mut missing = Vec::new();
    for file in wanted {
        match cached.get(file) {
            Some(p) => {
                found.insert(file.to_string(), p);
            }
            None => missing.push(file.to_string()),
        }
    }
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let mut optional: std::collections::HashMap<String, PathBuf> =
        OPTIONAL_FILES.iter().filter_map(|f| cached.get(f).map(|p| (f.to_string(), p))).collect();
    // Only while fetching the model anyway: once it is cached, a start makes no network call
    // (an air-gapped machine would wait for timeouts on every start otherwise).
    if !offline && !missing.is_empty() && optional.len() < OPTIONAL_FILES.len() {
        // Best effort: a repository without them is CLIP, or a SigLIP export without a score head.
        if let Ok(api) = hf_hub::api::sync::ApiBuilder::from_env().with_progress(false).build() {
            let repo = api.model(repo_id.to_string());
            let absent: Vec<&str> = OPTIONAL_FILES.into_iter().filter(|f| !optional.contains_key(*f)).collect();
            for file in absent {
                if let Ok(p) = repo.get(file) {
                    optional.insert(file.to_string(), p);
                }
            }
        }
    }
    if !missing.is_empty() && !offline {
        match hf_hub::api::sync::ApiBuilder::from_env().with_progress(false).build() {
            Ok(api) => {
                let repo = api.model(repo_id.to_string());
                let mut still_missing = Vec::new();
                for file in missing.drain(..) {
                    tracing::info!(repo = repo_id, file = %file, "downloading model file");
                    match repo.get(&file) {
                        Ok(p) => {
                            found.insert(file, p);
                        }
                        Err(e) => {
                            tracing::warn!(repo = repo_id, file = %file, error = %e, "download failed");
                            still_missing.push(file);
                        }
                    }
                }
                missing = still_missing;
            }
            Err(e) => tracing::warn!(error = %e, "Hugging Face Hub client unavailable"),
        }
    }
    if !missing.is_empty() {
        let dir = cache.path().join(format!("models--{}", repo_id.replace('/', "--")));
        return Err(LoadError::MissingFiles {
            source_name: repo_id.to_string(),
            missing,
            hint: format!(
                "it is not in the Hugging Face cache ({}) and could not be downloaded; download the repository's files on a connected machine and pass --model <DIR>, or run once online",
                dir.display()
            ),
        });
    }
    Ok(files_from(repo_id, |f| found.get(f).cloned().unwrap_or_default(), |f| optional.get(f).cloned(), precision))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_in_a_directory_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
        let err = resolve(dir.path().to_str().unwrap(), Precision::Quantized).unwrap_err();
        match err {
            LoadError::MissingFiles { missing, .. } => {
                assert_eq!(missing, ["onnx/vision_model_quantized.onnx", "onnx/text_model_quantized.onnx", "preprocessor_config.json"])
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn offline_uncached_repo_names_missing_files_and_where_to_put_them() {
        let cache = tempfile::tempdir().unwrap();
        // SAFETY: this test alone reads these variables; set before any thread uses them.
        unsafe {
            std::env::set_var("HF_HOME", cache.path());
            std::env::set_var("HF_HUB_OFFLINE", "1");
        }
        let err = resolve("someone/clip-model", Precision::Fp32).unwrap_err().to_string();
        assert!(err.contains("onnx/vision_model.onnx") && err.contains("tokenizer.json"), "{err}");
        assert!(err.contains("--model <DIR>"), "{err}");
    }

    #[test]
    fn a_combined_export_says_how_to_get_split_towers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("onnx")).unwrap();
        std::fs::write(dir.path().join("onnx/model.onnx"), "x").unwrap();
        let err = resolve(dir.path().to_str().unwrap(), Precision::Fp32).unwrap_err().to_string();
        assert!(err.contains("combined onnx/model.onnx") && err.contains("export_clip_onnx.py --checkpoint"), "{err}");
    }

    #[test]
    fn family_files_are_found_when_present() {
        let files = resolve(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-siglip"), Precision::Fp32).unwrap();
        assert!(files.config.is_some() && files.tokenizer_config.is_some() && files.score_head.is_some());
    }

    #[test]
    fn a_path_that_does_not_exist_is_not_taken_for_a_repo_id() {
        let err = resolve("./no/such/model", Precision::Fp32).unwrap_err();
        assert!(matches!(err, LoadError::File { .. }), "{err}");
    }
}
